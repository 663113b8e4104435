/* How a sync hands its listing to the catalog's apply (sql/014): each field
 * a PostgreSQL array literal, built element by element with
 * hgf_sync_append_elem. Every element is quoted, so the characters that are
 * special to array_in (braces, commas, blanks, a bare NULL) come through as
 * text; quotes and backslashes are escaped; only a NULL pointer is NULL.
 * tests/integration/test_apply_sync.sh sends the same literals to the
 * database and reads the values back. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "hgfleet/buf.h"
#include "hgfleet/sync.h"

/* The literal of the given elements ("" when there are none, as the caller
 * then writes "{}"), closed. */
static char *literal(const char *const *elems, int n)
{
    hgf_buf b = HGF_BUF_INIT;
    for (int i = 0; i < n; i++)
        assert_int_equal(hgf_sync_append_elem(&b, elems[i]), 0);
    if (b.len)
        assert_int_equal(hgf_buf_putc(&b, '}'), 0);
    return hgf_buf_detach(&b);
}

static void test_plain_values(void **state)
{
    (void)state;
    const char *e[] = {"app/web", "sha256:0123abcd", "application/vnd.oci.image.manifest.v1+json"};
    char *l = literal(e, 3);
    assert_string_equal(l, "{\"app/web\",\"sha256:0123abcd\","
                           "\"application/vnd.oci.image.manifest.v1+json\"}");
    free(l);
}

static void test_null_and_empty(void **state)
{
    (void)state;
    const char *e[] = {NULL, "", "NULL", NULL};
    char *l = literal(e, 4);
    assert_string_equal(l, "{NULL,\"\",\"NULL\",NULL}");
    free(l);
    l = literal(e, 0);
    assert_string_equal(l, "");
    free(l);
}

static void test_special_characters(void **state)
{
    (void)state;
    const char *e[] = {"a\"b", "back\\slash", "{x,y}", " lead and trail ", "\\\"", "\"\""};
    char *l = literal(e, 6);
    assert_string_equal(l, "{\"a\\\"b\",\"back\\\\slash\",\"{x,y}\",\" lead and trail \","
                           "\"\\\\\\\"\",\"\\\"\\\"\"}");
    free(l);
}

/* A long value with escapes spread through it: every run between them is
 * copied whole and none is lost at a boundary. */
static void test_long_value(void **state)
{
    (void)state;
    char in[3001], want[6100];
    size_t w = 0;
    want[w++] = '{';
    want[w++] = '"';
    for (int i = 0; i < 3000; i++) {
        in[i] = i % 97 == 0 ? '"' : i % 89 == 0 ? '\\' : (char)('a' + i % 26);
        if (in[i] == '"' || in[i] == '\\')
            want[w++] = '\\';
        want[w++] = in[i];
    }
    in[3000] = '\0';
    want[w++] = '"';
    want[w++] = '}';
    want[w] = '\0';
    const char *e[] = {in};
    char *l = literal(e, 1);
    assert_string_equal(l, want);
    free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_values),
        cmocka_unit_test(test_null_and_empty),
        cmocka_unit_test(test_special_characters),
        cmocka_unit_test(test_long_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
