/* Master-key rotation of one sealed value (hgf_rekey_value). The table-wide
 * transaction is covered by tests/integration/test_rotate_key.sh. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "hgfleet/buf.h"
#include "hgfleet/err.h"
#include "hgfleet/rekey.h"
#include "hgfleet/secret.h"

/* bytes 0x00..0x1f, and 32 bytes of 0xff */
#define OLD_B64 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define NEW_B64 "//////////////////////////////////////////8="
#define OTHER_B64 "ERERERERERERERERERERERERERERERERERERERERERE="
#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

typedef struct keys {
    hgf_secret_key old_key, new_key, other;
} keys;

static int setup(void **state)
{
    static keys k;
    hgf_err err;
    assert_int_equal(hgf_secret_key_parse(OLD_B64, "old", &k.old_key, &err), 0);
    assert_int_equal(hgf_secret_key_parse(NEW_B64, "new", &k.new_key, &err), 0);
    assert_int_equal(hgf_secret_key_parse(OTHER_B64, "other", &k.other, &err), 0);
    *state = &k;
    return 0;
}

static void seal(const hgf_secret_key *key, const char *plain, hgf_buf *out)
{
    hgf_err err;
    hgf_err_clear(&err);
    assert_int_equal(hgf_secret_seal(key, plain, strlen(plain), out, &err), 0);
}

static void test_reseals_under_new_key(void **state)
{
    keys *k = *state;
    hgf_buf sealed = HGF_BUF_INIT, out = HGF_BUF_INIT, plain = HGF_BUF_INIT;
    hgf_err err;
    hgf_err_clear(&err);
    seal(&k->old_key, SECRET, &sealed);
    assert_int_equal(hgf_rekey_value(&k->old_key, &k->new_key, sealed.data, &out, &err), 0);
    char id[9];
    assert_int_equal(hgf_secret_sealed_keyid(out.data, id), 0);
    assert_string_equal(id, k->new_key.id);
    assert_null(strstr(out.data, SECRET));
    /* The new value opens only under the new key, to the same secret. */
    assert_int_equal(hgf_secret_open(&k->new_key, out.data, &plain, &err), 0);
    assert_string_equal(plain.data, SECRET);
    assert_int_equal(hgf_secret_open(&k->old_key, out.data, &plain, &err), HGF_EFAIL);
    hgf_buf_free(&sealed);
    hgf_buf_free(&out);
    hgf_secret_wipe_buf(&plain);
}

static void test_already_new_is_left_alone(void **state)
{
    keys *k = *state;
    hgf_buf sealed = HGF_BUF_INIT, out = HGF_BUF_INIT;
    hgf_err err;
    hgf_err_clear(&err);
    seal(&k->new_key, SECRET, &sealed);
    assert_int_equal(hgf_rekey_value(&k->old_key, &k->new_key, sealed.data, &out, &err), 1);
    assert_int_equal(out.len, 0);
    hgf_buf_free(&sealed);
    hgf_buf_free(&out);
}

static void test_third_key_names_both_ids(void **state)
{
    keys *k = *state;
    hgf_buf sealed = HGF_BUF_INIT, out = HGF_BUF_INIT;
    hgf_err err;
    hgf_err_clear(&err);
    seal(&k->other, SECRET, &sealed);
    assert_int_equal(hgf_rekey_value(&k->old_key, &k->new_key, sealed.data, &out, &err),
                     HGF_EFAIL);
    assert_non_null(strstr(err.msg, k->other.id));
    assert_non_null(strstr(err.msg, k->old_key.id));
    assert_non_null(strstr(err.msg, k->new_key.id));
    assert_int_equal(out.len, 0);
    hgf_buf_free(&sealed);
    hgf_buf_free(&out);
}

/* Same key id, but the ciphertext was altered: authentication fails and
 * nothing is produced. */
static void test_tampered_fails(void **state)
{
    keys *k = *state;
    hgf_buf sealed = HGF_BUF_INIT, out = HGF_BUF_INIT;
    hgf_err err;
    hgf_err_clear(&err);
    seal(&k->old_key, SECRET, &sealed);
    size_t at = 12 + 20; /* inside the ciphertext's base64 */
    sealed.data[at] = sealed.data[at] == 'A' ? 'B' : 'A';
    assert_int_equal(hgf_rekey_value(&k->old_key, &k->new_key, sealed.data, &out, &err),
                     HGF_EFAIL);
    assert_non_null(strstr(err.msg, "authenticate"));
    assert_null(strstr(err.msg, SECRET));
    assert_int_equal(out.len, 0);
    hgf_buf_free(&sealed);
    hgf_buf_free(&out);
}

static void test_malformed_is_input_error(void **state)
{
    keys *k = *state;
    hgf_buf out = HGF_BUF_INIT;
    hgf_err err;
    static const char *const bad[] = {"", SECRET, "v1:zzzzzzzz:AAAA", "v2:00000000:AAAA"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hgf_err_clear(&err);
        assert_int_equal(hgf_rekey_value(&k->old_key, &k->new_key, bad[i], &out, &err),
                         HGF_EINPUT);
        assert_non_null(strstr(err.msg, "malformed"));
        assert_null(strstr(err.msg, SECRET));
    }
    hgf_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reseals_under_new_key),
        cmocka_unit_test(test_already_new_is_left_alone),
        cmocka_unit_test(test_third_key_names_both_ids),
        cmocka_unit_test(test_tampered_fails),
        cmocka_unit_test(test_malformed_is_input_error),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
