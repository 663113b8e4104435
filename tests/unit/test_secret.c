/* Secrets at rest: base64, master keys, AES-256-GCM seal/open. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "hgfleet/buf.h"
#include "hgfleet/err.h"
#include "hgfleet/secret.h"

/* bytes 0x00..0x1f; sha256 of them starts 630dcd29 */
#define KEY_B64 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define KEY_ID "630dcd29"
#define FIELD "HGFLEET_MASTER_KEY"

/* ---- base64 ----------------------------------------------------------- */

static void test_base64_rfc4648_vectors(void **state)
{
    (void)state;
    static const char *const v[][2] = {
        {"", ""},         {"f", "Zg=="},        {"fo", "Zm8="},      {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        hgf_buf enc = HGF_BUF_INIT, dec = HGF_BUF_INIT;
        hgf_err err;
        hgf_err_clear(&err);
        assert_int_equal(hgf_base64_encode(v[i][0], strlen(v[i][0]), &enc), 0);
        assert_string_equal(hgf_buf_str(&enc), v[i][1]);
        assert_int_equal(hgf_base64_decode(v[i][1], &dec, &err), 0);
        assert_int_equal(dec.len, strlen(v[i][0]));
        assert_memory_equal(hgf_buf_str(&dec), v[i][0], dec.len);
        hgf_buf_free(&enc);
        hgf_buf_free(&dec);
    }
}

static void test_base64_binary_and_append(void **state)
{
    (void)state;
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    for (size_t n = 0; n <= sizeof all; n += 37) {
        hgf_buf enc = HGF_BUF_INIT, dec = HGF_BUF_INIT;
        hgf_err err;
        hgf_err_clear(&err);
        assert_int_equal(hgf_base64_encode(all, n, &enc), 0);
        assert_int_equal(enc.len, 4 * ((n + 2) / 3));
        assert_int_equal(hgf_base64_decode(hgf_buf_str(&enc), &dec, &err), 0);
        assert_int_equal(dec.len, n);
        if (n)
            assert_memory_equal(dec.data, all, n);
        hgf_buf_free(&enc);
        hgf_buf_free(&dec);
    }
    /* Both append to what the buffer already holds. */
    hgf_buf b = HGF_BUF_INIT;
    hgf_err err;
    hgf_err_clear(&err);
    hgf_buf_puts(&b, "x=");
    assert_int_equal(hgf_base64_encode("hi", 2, &b), 0);
    assert_string_equal(b.data, "x=aGk=");
    assert_int_equal(hgf_base64_decode("Zm9v", &b, &err), 0);
    assert_string_equal(b.data, "x=aGk=foo");
    hgf_buf_free(&b);
}

static void test_base64_rejects_invalid(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "Zg",        /* no padding */
        "Zg=",       /* short padding */
        "Zm9vY",     /* length 5 */
        "Z===",      /* too much padding */
        "====",      /* padding only */
        "Zg==Zg==",  /* padding in the middle */
        "Zm=v",      /* '=' before data */
        "Zm9v YmFy", /* space */
        "Zm9v\n",    /* newline */
        " Zm9v",     /* leading space */
        "Zm9vYmFy\r\n",
        "Zh==",      /* non-zero pad bits (canonical is Zg==) */
        "Zm9=",      /* non-zero pad bits (canonical is Zm8=) */
        "-_8=",      /* base64url alphabet */
        "Zm9v\x80YmE",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hgf_buf out = HGF_BUF_INIT;
        hgf_err err;
        hgf_err_clear(&err);
        int rc = hgf_base64_decode(bad[i], &out, &err);
        if (rc != HGF_EINPUT)
            fail_msg("bad[%zu] decoded with rc %d", i, rc);
        assert_true(strlen(err.msg) > 0);
        assert_null(strstr(err.msg, bad[i][0] ? bad[i] : "\x01"));
        assert_int_equal(out.len, 0);
        hgf_buf_free(&out);
    }
    hgf_err err;
    hgf_buf out = HGF_BUF_INIT;
    assert_int_equal(hgf_base64_decode(NULL, &out, &err), HGF_EINPUT);
}

/* ---- master keys ------------------------------------------------------ */

static void test_key_parse_good(void **state)
{
    (void)state;
    hgf_secret_key k;
    hgf_err err;
    hgf_err_clear(&err);
    assert_int_equal(hgf_secret_key_parse(KEY_B64, FIELD, &k, &err), 0);
    for (int i = 0; i < HGF_SECRET_KEY_LEN; i++)
        assert_int_equal(k.bytes[i], i);
    assert_string_equal(k.id, KEY_ID);
    /* A key file's trailing newline is fine. */
    hgf_secret_key k2;
    assert_int_equal(hgf_secret_key_parse(KEY_B64 "\n", FIELD, &k2, &err), 0);
    assert_memory_equal(k.bytes, k2.bytes, HGF_SECRET_KEY_LEN);
    assert_string_equal(k2.id, KEY_ID);
}

static void expect_bad_key(const char *value, const char *needle)
{
    hgf_secret_key k;
    hgf_err err;
    hgf_err_clear(&err);
    assert_int_equal(hgf_secret_key_parse(value, FIELD, &k, &err), HGF_EINPUT);
    if (!strstr(err.msg, FIELD) || !strstr(err.msg, needle))
        fail_msg("key error \"%s\" lacks \"%s\" or the field name", err.msg, needle);
    if (value && strlen(value) >= 4 && strstr(err.msg, value))
        fail_msg("key error \"%s\" echoes the value", err.msg);
    /* Nothing of a rejected key is left in the output. */
    static const hgf_secret_key zero;
    assert_memory_equal(&k, &zero, sizeof k);
}

static void test_key_parse_bad(void **state)
{
    (void)state;
    /* 31 and 33 bytes of valid base64. */
    expect_bad_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==", "31 bytes");
    expect_bad_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g", "33 bytes");
    expect_bad_key("c2VjcmV0LXBhc3N3b3Jk", "15 bytes");
    expect_bad_key("not base64 at all!!", "not valid base64");
    expect_bad_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", "not valid base64");
    expect_bad_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=AAAA", "not valid base64");
    expect_bad_key("", "empty");
    expect_bad_key(" \n", "empty");
    expect_bad_key(NULL, "not set");
}

/* ---- seal and open ---------------------------------------------------- */

static hgf_secret_key test_key(const char *b64)
{
    hgf_secret_key k;
    hgf_err err;
    hgf_err_clear(&err);
    assert_int_equal(hgf_secret_key_parse(b64, FIELD, &k, &err), 0);
    return k;
}

static void seal(const hgf_secret_key *k, const void *p, size_t n, hgf_buf *out)
{
    hgf_err err;
    hgf_err_clear(&err);
    assert_int_equal(hgf_secret_seal(k, p, n, out, &err), 0);
}

static void test_round_trip(void **state)
{
    (void)state;
    hgf_secret_key k = test_key(KEY_B64);
    static const char *const texts[] = {"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "", "x"};
    for (size_t i = 0; i < 3; i++) {
        hgf_buf sealed = HGF_BUF_INIT, plain = HGF_BUF_INIT;
        hgf_err err;
        hgf_err_clear(&err);
        size_t n = strlen(texts[i]);
        seal(&k, texts[i], n, &sealed);
        assert_int_equal(strncmp(sealed.data, "v1:" KEY_ID ":", 12), 0);
        assert_int_equal(sealed.len, 12 + 4 * ((12 + n + 16 + 2) / 3));
        if (n >= 8) /* a short text can turn up in base64 by chance */
            assert_null(strstr(sealed.data, texts[i]));
        char id[9];
        assert_int_equal(hgf_secret_sealed_keyid(sealed.data, id), 0);
        assert_string_equal(id, KEY_ID);
        assert_int_equal(hgf_secret_open(&k, sealed.data, &plain, &err), 0);
        assert_int_equal(plain.len, n);
        assert_string_equal(hgf_buf_str(&plain), texts[i]);
        hgf_secret_wipe_buf(&plain);
        assert_null(plain.data);
        hgf_buf_free(&sealed);
    }
    /* Binary with NULs survives. */
    unsigned char bin[100];
    for (size_t i = 0; i < sizeof bin; i++)
        bin[i] = (unsigned char)(i * 7);
    hgf_buf sealed = HGF_BUF_INIT, plain = HGF_BUF_INIT;
    hgf_err err;
    seal(&k, bin, sizeof bin, &sealed);
    assert_int_equal(hgf_secret_open(&k, sealed.data, &plain, &err), 0);
    assert_int_equal(plain.len, sizeof bin);
    assert_memory_equal(plain.data, bin, sizeof bin);
    hgf_secret_wipe_buf(&plain);
    hgf_buf_free(&sealed);
}

static void test_seals_differ(void **state)
{
    (void)state;
    hgf_secret_key k = test_key(KEY_B64);
    hgf_buf a = HGF_BUF_INIT, b = HGF_BUF_INIT;
    seal(&k, "same secret", 11, &a);
    seal(&k, "same secret", 11, &b);
    assert_string_not_equal(a.data, b.data);
    /* Different nonces, not just different tags: the first 16 base64 chars
     * after the header cover the first 12 bytes, which are the nonce. */
    assert_memory_not_equal(a.data + 12, b.data + 12, 16);
    hgf_buf_free(&a);
    hgf_buf_free(&b);
}

static void test_wrong_key(void **state)
{
    (void)state;
    hgf_secret_key k = test_key(KEY_B64);
    hgf_secret_key other = test_key("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=");
    hgf_buf sealed = HGF_BUF_INIT, plain = HGF_BUF_INIT;
    hgf_err err;
    hgf_err_clear(&err);
    seal(&k, "top secret", 10, &sealed);
    assert_int_equal(hgf_secret_open(&other, sealed.data, &plain, &err), HGF_EFAIL);
    assert_non_null(strstr(err.msg, KEY_ID));
    assert_non_null(strstr(err.msg, other.id));
    assert_int_equal(plain.len, 0);
    /* Same key id but different bytes: only the GCM tag can tell. */
    memcpy(other.id, k.id, sizeof other.id);
    assert_int_equal(hgf_secret_open(&other, sealed.data, &plain, &err), HGF_EFAIL);
    assert_non_null(strstr(err.msg, "does not authenticate"));
    assert_int_equal(plain.len, 0);
    assert_null(strstr(err.msg, "top secret"));
    hgf_buf_free(&sealed);
    hgf_buf_free(&plain);
}

/* Re-encodes a sealed value with byte `at` of its payload flipped. */
static void tamper(const char *sealed, size_t at, hgf_buf *out)
{
    hgf_buf blob = HGF_BUF_INIT;
    hgf_err err;
    hgf_err_clear(&err);
    assert_int_equal(hgf_base64_decode(sealed + 12, &blob, &err), 0);
    assert_true(at < blob.len);
    blob.data[at] ^= 0x01;
    hgf_buf_append(out, sealed, 12);
    assert_int_equal(hgf_base64_encode(blob.data, blob.len, out), 0);
    hgf_buf_free(&blob);
}

static void test_tampered(void **state)
{
    (void)state;
    hgf_secret_key k = test_key(KEY_B64);
    hgf_buf sealed = HGF_BUF_INIT;
    seal(&k, "a session secret", 16, &sealed);
    /* nonce, ciphertext start and end, tag start and end */
    static const size_t at[] = {0, 11, 12, 27, 28, 43};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        hgf_buf bad = HGF_BUF_INIT, plain = HGF_BUF_INIT;
        hgf_err err;
        hgf_err_clear(&err);
        tamper(sealed.data, at[i], &bad);
        int rc = hgf_secret_open(&k, bad.data, &plain, &err);
        if (rc != HGF_EFAIL)
            fail_msg("flipping payload byte %zu: rc %d", at[i], rc);
        assert_int_equal(plain.len, 0);
        hgf_buf_free(&bad);
        hgf_buf_free(&plain);
    }
    hgf_buf_free(&sealed);
}

static void test_malformed(void **state)
{
    (void)state;
    hgf_secret_key k = test_key(KEY_B64);
    /* 27 payload bytes: one short of nonce + tag. */
    hgf_buf short_blob = HGF_BUF_INIT;
    unsigned char zeros[27] = {0};
    hgf_buf_puts(&short_blob, "v1:" KEY_ID ":");
    hgf_base64_encode(zeros, sizeof zeros, &short_blob);
    const char *bad[] = {
        "",
        "garbage",
        "v2:" KEY_ID ":AAAA",
        "v1:" KEY_ID,
        "v1:630DCD29:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1:630dcd2:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1:630dcd29AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1:" KEY_ID ":",
        "v1:" KEY_ID ":!!!!",
        "v1:" KEY_ID ":AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",
        "v1:" KEY_ID ":AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        short_blob.data,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hgf_buf plain = HGF_BUF_INIT;
        hgf_err err;
        hgf_err_clear(&err);
        int rc = hgf_secret_open(&k, bad[i], &plain, &err);
        if (rc != HGF_EINPUT)
            fail_msg("\"%s\": rc %d, want HGF_EINPUT (%s)", bad[i], rc, err.msg);
        assert_int_equal(plain.len, 0);
    }
    hgf_buf plain = HGF_BUF_INIT;
    hgf_err err;
    assert_int_equal(hgf_secret_open(&k, NULL, &plain, &err), HGF_EINPUT);
    char id[9];
    assert_int_equal(hgf_secret_sealed_keyid("v1:0123abcd:xyz", id), 0);
    assert_string_equal(id, "0123abcd");
    assert_int_equal(hgf_secret_sealed_keyid("v1:0123abcg:xyz", id), HGF_EINPUT);
    assert_int_equal(hgf_secret_sealed_keyid("v1:0123abcd", id), HGF_EINPUT);
    assert_int_equal(hgf_secret_sealed_keyid(NULL, id), HGF_EINPUT);
    hgf_buf_free(&short_blob);
}

static void test_wipe(void **state)
{
    (void)state;
    char s[] = "secret";
    hgf_secret_wipe(s, sizeof s);
    for (size_t i = 0; i < sizeof s; i++)
        assert_int_equal(s[i], 0);
    hgf_secret_wipe(NULL, 5);
    hgf_buf b = HGF_BUF_INIT;
    hgf_secret_wipe_buf(&b);
    hgf_buf_puts(&b, "plaintext");
    hgf_secret_wipe_buf(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64_rfc4648_vectors),
        cmocka_unit_test(test_base64_binary_and_append),
        cmocka_unit_test(test_base64_rejects_invalid),
        cmocka_unit_test(test_key_parse_good),
        cmocka_unit_test(test_key_parse_bad),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_seals_differ),
        cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_tampered),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_wipe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
