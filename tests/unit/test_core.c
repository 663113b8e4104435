/* Unit tests for the small core pieces: buffers and number text, ISO times, AWS JSON error
 * parsing, credential handling, tag filters and database descriptions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hgfleet/awsjson.h"
#include "hgfleet/buf.h"
#include "hgfleet/config.h"
#include "hgfleet/creds.h"
#include "hgfleet/sync.h"
#include "hgfleet/timeutil.h"

static void test_buf(void **state)
{
    hgf_buf b = HGF_BUF_INIT;
    assert_string_equal(hgf_buf_str(&b), "");
    for (int i = 0; i < 1000; i++)
        hgf_buf_printf(&b, "%d,", i);
    assert_int_equal(b.len, strlen(b.data));
    assert_memory_equal(b.data, "0,1,2,", 6);
    hgf_buf_reset(&b);
    unsigned char raw[] = {0x00, 0xab, 0xff};
    hgf_buf_put_hex(&b, raw, 3);
    assert_string_equal(b.data, "00abff");
    char *d = hgf_buf_detach(&b);
    assert_string_equal(d, "00abff");
    assert_null(b.data);
    free(d);
}

/* A printf that fits the spare capacity and one that does not. */
static void test_buf_printf_growth(void **state)
{
    (void)state;
    hgf_buf b = HGF_BUF_INIT;
    hgf_buf_reserve(&b, 100);
    size_t cap = b.cap;
    assert_int_equal(hgf_buf_printf(&b, "%s-%d", "ab", 7), 0);
    assert_string_equal(b.data, "ab-7");
    assert_int_equal(b.cap, cap);
    char big[300];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(hgf_buf_printf(&b, "[%s]", big), 0);
    assert_int_equal(b.len, 4 + 301);
    assert_int_equal(b.data[4], '[');
    assert_int_equal(b.data[b.len - 1], ']');
    assert_int_equal(b.data[b.len], '\0');
    hgf_buf_free(&b);
}

static void expect_real(double v, const char *text)
{
    char t[HGF_FMT_MAX];
    assert_int_equal(hgf_fmt_real(t, v), strlen(text));
    assert_string_equal(t, text);
    assert_true(strtod(t, NULL) == v);
}

static void test_fmt_numbers(void **state)
{
    (void)state;
    char t[HGF_FMT_MAX];
    const long long ints[] = {0, 7, -7, 1700000000123LL, LLONG_MAX, LLONG_MIN};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        char want[HGF_FMT_MAX];
        snprintf(want, sizeof want, "%lld", ints[i]);
        assert_int_equal(hgf_fmt_i64(t, ints[i]), strlen(want));
        assert_string_equal(t, want);
    }
    /* AWS's epoch times: the shortest text, and integers as "%.17g" has them. */
    expect_real(1700000000.0, "1700000000");
    expect_real(1700000000.5, "1700000000.5");
    expect_real(1700000000.123, "1700000000.123");
    expect_real(1700000000.05, "1700000000.05");
    expect_real(0.001, "0.001");
    expect_real(0.0, "0");
    /* Everything else reads back exactly through "%.17g". */
    expect_real(-0.0, "-0");
    expect_real(-1.5, "-1.5");
    expect_real(1700000000.0001, "1700000000.0000999");
    expect_real(0.1 + 0.2, "0.30000000000000004");
    expect_real(1e12, "1000000000000");
    expect_real(1e300, "1.0000000000000001e+300");
    /* Every millisecond of a second reads back as itself. */
    for (int ms = 0; ms < 1000; ms++) {
        double v = 1764500000.0 + ms / 1000.0;
        hgf_fmt_real(t, v);
        assert_true(strtod(t, NULL) == v);
    }
    hgf_buf b = HGF_BUF_INIT;
    assert_int_equal(hgf_buf_put_i64(&b, -42), 0);
    assert_int_equal(hgf_buf_put_real(&b, 2.25), 0);
    assert_string_equal(b.data, "-422.25");
    hgf_buf_free(&b);
}

static void test_iso(void **state)
{
    assert_int_equal(hgf_time_parse_iso("2019-11-16T01:54:34Z"), 1573869274);
    assert_int_equal(hgf_time_parse_iso("2019-11-16T01:54:34.123Z"), 1573869274);
    assert_int_equal(hgf_time_parse_iso("2019-11-16T03:54:34+02:00"), 1573869274);
    assert_int_equal(hgf_time_parse_iso("2019-11-16 01:54:34Z"), -1);
    assert_int_equal(hgf_time_parse_iso("2019-13-16T01:54:34Z"), -1);
    assert_int_equal(hgf_time_parse_iso("2019-11-16T01:54:34"), -1);
    char out[40];
    hgf_time_format_iso(1573869274, out, sizeof out);
    assert_string_equal(out, "2019-11-16T01:54:34Z");
    hgf_time_format_iso_ms(1573869274005LL, out, sizeof out);
    assert_string_equal(out, "2019-11-16T01:54:34.005Z");
}

static void test_aws_error_parse(void **state)
{
    hgf_err e;
    const char *body = "{\"__type\":\"com.amazonaws.ecr#RepositoryNotFoundException:http://x\","
                       "\"message\":\"The repository with name 'x' does not exist\"}";
    assert_int_equal(hgf_awsjson_parse_error("DescribeImages", 400, body, strlen(body), NULL, &e),
                     HGF_EAWS);
    assert_string_equal(e.aws_code, "RepositoryNotFoundException");
    assert_non_null(strstr(e.msg, "DescribeImages: RepositoryNotFoundException: The repository"));
    const char *b2 = "{\"__type\":\"AccessDeniedException\",\"Message\":\"denied\"}";
    hgf_awsjson_parse_error("DescribeRepositories", 403, b2, strlen(b2), NULL, &e);
    assert_string_equal(e.aws_code, "AccessDeniedException");
    assert_non_null(strstr(e.msg, "denied"));
    /* No JSON at all: fall back to the header, then to the status. */
    hgf_awsjson_parse_error("X", 400, "<html>", 6, "ThrottlingException:http://y", &e);
    assert_string_equal(e.aws_code, "ThrottlingException");
    hgf_awsjson_parse_error("X", 503, "", 0, NULL, &e);
    assert_string_equal(e.aws_code, "HTTP503");
}

static void test_creds_env(void **state)
{
    hgf_creds c = {0};
    hgf_err e;
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
    assert_int_equal(hgf_creds_from_env(&c, &e), HGF_ENOTFOUND);
    setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value", 1);
    assert_int_equal(hgf_creds_from_env(&c, &e), HGF_EINPUT);
    assert_null(strstr(e.msg, "s3cr3t-value"));
    setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE", 1);
    setenv("AWS_SESSION_TOKEN", "tok", 1);
    assert_int_equal(hgf_creds_from_env(&c, &e), 0);
    assert_string_equal(c.secret_access_key, "s3cr3t-value");
    assert_string_equal(c.session_token, "tok");
    char d[64];
    hgf_creds_describe(&c, d, sizeof d);
    assert_string_equal(d, "AKIA****MPLE (env)");
    hgf_creds_clear(&c);
    assert_null(c.secret_access_key);
    setenv("AWS_ACCESS_KEY_ID", "akia-lower", 1);
    assert_int_equal(hgf_creds_from_env(&c, &e), HGF_EINPUT);
    assert_non_null(strstr(e.msg, "AWS_ACCESS_KEY_ID"));
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
}

static int filter(const char *tags_json, char **inc, int ni, char **exc, int ne, char *kept_out)
{
    json_t *tags = json_loads(tags_json, 0, NULL);
    json_t *kept = json_array();
    int keep = hgf_sync_filter_tags(tags, inc, ni, exc, ne, kept);
    char *k = json_dumps(kept, JSON_COMPACT);
    strcpy(kept_out, k);
    free(k);
    json_decref(tags);
    json_decref(kept);
    return keep;
}

static void test_tag_filters(void **state)
{
    char kept[256];
    char *inc[] = {"v*"};
    char *exc[] = {"latest", "*-rc*"};
    assert_true(filter("[\"latest\",\"v1\"]", NULL, 0, NULL, 0, kept));
    assert_string_equal(kept, "[\"latest\",\"v1\"]");
    assert_true(filter("[\"latest\",\"v1\"]", inc, 1, NULL, 0, kept));
    assert_string_equal(kept, "[\"v1\"]");
    assert_false(filter("[\"latest\"]", inc, 1, NULL, 0, kept));
    assert_true(filter("[\"latest\",\"v2-rc1\",\"v2\"]", NULL, 0, exc, 2, kept));
    assert_string_equal(kept, "[\"v2\"]");
    assert_false(filter("[\"latest\"]", NULL, 0, exc, 2, kept));
    /* Untagged images: kept unless an include list asks for tags. */
    assert_true(filter("[]", NULL, 0, exc, 2, kept));
    assert_false(filter("[]", inc, 1, NULL, 0, kept));
}

static void test_describe_db(void **state)
{
    char *d = hgf_config_describe_db("postgresql://u:hunter2@db.example:6543/catalog");
    assert_non_null(strstr(d, "db.example"));
    assert_non_null(strstr(d, "6543"));
    assert_non_null(strstr(d, "catalog"));
    assert_null(strstr(d, "hunter2"));
    free(d);
    d = hgf_config_describe_db("host=10.0.0.9 password=hunter2 dbname=x");
    assert_non_null(strstr(d, "10.0.0.9"));
    assert_null(strstr(d, "hunter2"));
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf),          cmocka_unit_test(test_buf_printf_growth),
        cmocka_unit_test(test_fmt_numbers),  cmocka_unit_test(test_iso),
        cmocka_unit_test(test_aws_error_parse), cmocka_unit_test(test_creds_env),
        cmocka_unit_test(test_tag_filters),  cmocka_unit_test(test_describe_db),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
