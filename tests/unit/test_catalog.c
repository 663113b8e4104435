/* The catalog views without a database: input validation that names the
 * field (with the CLI's "--" prefix or none for the API), the parameters a
 * builder hands to libpq, keyset paging, and the result readers, fed
 * hand-made PGresults: connections never carry a secret, missing ids and
 * reports are told apart, and garbage from the database is an error. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hgfleet/catalog.h"

/* ---- helpers --------------------------------------------------------- */

/* A TUPLES_OK result with ncols text columns and rows given row-major
 * (NULL: SQL NULL). */
static PGresult *result(int ncols, int nrows, const char *const *cells)
{
    PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc *att = calloc((size_t)ncols, sizeof *att);
    char names[64][12];
    for (int c = 0; c < ncols; c++) {
        snprintf(names[c], sizeof names[c], "c%d", c);
        att[c] = (PGresAttDesc){.name = names[c], .typid = 25, .typlen = -1, .atttypmod = -1};
    }
    assert_true(PQsetResultAttrs(r, ncols, att));
    free(att);
    for (int i = 0; i < nrows; i++)
        for (int c = 0; c < ncols; c++) {
            const char *v = cells[i * ncols + c];
            assert_true(PQsetvalue(r, i, c, (char *)v, v ? (int)strlen(v) : -1));
        }
    return r;
}

static int run_reader(const hgf_catalog_query *q, PGresult *r, json_t **out, hgf_err *err)
{
    *out = NULL;
    hgf_err_clear(err);
    int rc = q->to_json(r, q, out, err);
    PQclear(r);
    return rc;
}

static void has(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle))
        print_error("\"%s\" lacks \"%s\"\n", haystack, needle);
    assert_non_null(strstr(haystack, needle));
}

/* ---- parsing --------------------------------------------------------- */

static void test_parse_limit(void **state)
{
    hgf_err err;
    int n = -1;
    assert_int_equal(hgf_catalog_parse_limit(NULL, "limit", 100, 1000, &n, &err), 0);
    assert_int_equal(n, 100);
    assert_int_equal(hgf_catalog_parse_limit("1", "limit", 100, 1000, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(hgf_catalog_parse_limit("1000", "limit", 100, 1000, &n, &err), 0);
    assert_int_equal(n, 1000);
    const char *bad[] = {"0", "1001", "-1", "+5", " 5", "5 ", "abc", "", "10x", "1e3",
                         "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        n = 42;
        assert_int_equal(hgf_catalog_parse_limit(bad[i], "--limit", 100, 1000, &n, &err),
                         HGF_EINPUT);
        assert_int_equal(n, 42);
        has(err.msg, "--limit: expected a whole number from 1 to 1000");
    }
}

static void test_parse_id(void **state)
{
    hgf_err err;
    int64_t id = 0;
    assert_int_equal(hgf_catalog_parse_id("7", "id", &id, &err), 0);
    assert_int_equal(id, 7);
    assert_int_equal(hgf_catalog_parse_id("9223372036854775807", "id", &id, &err), 0);
    assert_true(id == INT64_MAX);
    const char *bad[] = {"0", "-3", "abc", "", "1.5", "9223372036854775808", "7/", "0x10", NULL};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(hgf_catalog_parse_id(bad[i], "id", &id, &err), HGF_EINPUT);
        has(err.msg, "id: expected a positive whole number");
    }
}

/* ---- builders -------------------------------------------------------- */

static void test_images_builder(void **state)
{
    hgf_catalog_query q;
    hgf_err err;
    hgf_catalog_images_filter f = {
        .registry = "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/",
        .state = "deleted",
        .limit = 25,
    };
    assert_int_equal(hgf_catalog_images(&q, &f, "", &err), 0);
    assert_int_equal(q.nparams, 7);
    /* The registry's key, so that its -fips URL names the same one. */
    assert_string_equal(q.param[0], "aws/123456789012/eu-west-1");
    assert_true(q.is_null[1]);          /* any repository */
    assert_string_equal(q.param[2], "deleted");
    for (int i = 3; i < 6; i++)
        assert_true(q.is_null[i]);      /* the first page */
    assert_string_equal(q.param[6], "25");
    assert_null(q.bad_field);

    json_t *last = json_pack("{s:s, s:s, s:s}", "registry", "r.example", "repository", "team/app",
                             "digest", "sha256:ab");
    assert_int_equal(hgf_catalog_images_after(&q, last, &err), 0);
    assert_string_equal(q.param[3], "r.example");
    assert_string_equal(q.param[4], "team/app");
    assert_string_equal(q.param[5], "sha256:ab");
    assert_false(q.is_null[3]);
    json_object_del(last, "digest");
    assert_int_equal(hgf_catalog_images_after(&q, last, &err), HGF_EINPUT);
    has(err.msg, "digest");
    json_decref(last);
}

static void rejects_images(hgf_catalog_images_filter f, const char *prefix, const char *field,
                           const char *needle)
{
    hgf_catalog_query q;
    hgf_err err;
    hgf_err_clear(&err);
    assert_int_equal(hgf_catalog_images(&q, &f, prefix, &err), HGF_EINPUT);
    assert_non_null(q.bad_field);
    assert_string_equal(q.bad_field, field);
    char start[64];
    snprintf(start, sizeof start, "%s%s: ", prefix, field);
    assert_true(strncmp(err.msg, start, strlen(start)) == 0);
    has(err.msg, needle);
}

static void test_images_rejects(void **state)
{
    char long_repo[300];
    memset(long_repo, 'r', sizeof long_repo - 1);
    long_repo[sizeof long_repo - 1] = '\0';
    rejects_images((hgf_catalog_images_filter){.registry = "nope", .limit = 1}, "--", "registry",
                   "registry");
    rejects_images((hgf_catalog_images_filter){.registry = "public.ecr.aws", .limit = 1}, "",
                   "registry", "not supported");
    rejects_images((hgf_catalog_images_filter){.state = "sideways", .limit = 1}, "", "state",
                   "\"sideways\"");
    rejects_images((hgf_catalog_images_filter){.state = "", .limit = 1}, "--", "state",
                   "present or deleted");
    rejects_images((hgf_catalog_images_filter){.repository = "", .limit = 1}, "", "repository",
                   "1 to 256");
    rejects_images((hgf_catalog_images_filter){.repository = "a b", .limit = 1}, "", "repository",
                   "printable");
    rejects_images((hgf_catalog_images_filter){.repository = long_repo, .limit = 1}, "",
                   "repository", "1 to 256");
    rejects_images((hgf_catalog_images_filter){.limit = 0}, "", "limit", "at least 1");
}

static void test_jobs_builder(void **state)
{
    hgf_catalog_query q;
    hgf_err err;
    assert_int_equal(hgf_catalog_jobs(&q, NULL, "scan", 3, "", &err), 0);
    assert_int_equal(q.nparams, 3);
    assert_true(q.is_null[0]);
    assert_string_equal(q.param[1], "scan");
    assert_string_equal(q.param[2], "3");
    assert_int_equal(hgf_catalog_jobs(&q, "bogus", NULL, 3, "--", &err), HGF_EINPUT);
    assert_string_equal(q.bad_field, "state");
    has(err.msg, "--state: expected queued, running, done or failed, got \"bogus\"");
    assert_int_equal(hgf_catalog_jobs(&q, "done", "nope", 3, "", &err), HGF_EINPUT);
    assert_string_equal(q.bad_field, "kind");
    has(err.msg, "kind: expected sync, scan or sweep");
    assert_int_equal(hgf_catalog_jobs(&q, NULL, NULL, 0, "", &err), HGF_EINPUT);
    assert_string_equal(q.bad_field, "limit");
}

static void test_id_builders(void **state)
{
    hgf_catalog_query q;
    const hgf_catalog_query *p = hgf_catalog_connection(&q, 42);
    assert_ptr_equal(p, &q);
    assert_int_equal(q.nparams, 1);
    assert_string_equal(q.param[0], "42");
    has(q.sql, "removed_at IS NULL"); /* a removed connection is not served */
    assert_int_equal(hgf_catalog_sweep_report(&q, 9)->id, 9);
    assert_string_equal(q.param[0], "9");
    assert_int_equal(hgf_catalog_sweeps(&q, 100)->nparams, 1);
    assert_string_equal(q.param[0], "100");
    assert_int_equal(hgf_catalog_connections(&q)->nparams, 0);
}

/* ---- readers --------------------------------------------------------- */

/* HGF_CONN_COLUMNS, in order, for one static-key connection. */
static const char *const CONN_ROW[] = {
    "7", "prod", "123456789012", "us-east-1", "f", "static", "AKIAIOSFODNN7EXAMPLE",
    "v1:0badc0de:SEALEDSECRETCIPHERTEXT", NULL, "external-id-secret", NULL, NULL, "0", "daily",
    "[\"v*\"]", "[]", NULL, "2026-01-02T03:04:05Z", "ok", NULL, "2026-01-01T00:00:00Z", NULL, "f"};

static void test_connections_never_hold_secrets(void **state)
{
    hgf_catalog_query q;
    hgf_err err;
    json_t *out;
    int ncols = (int)(sizeof CONN_ROW / sizeof CONN_ROW[0]);
    assert_int_equal(run_reader(hgf_catalog_connections(&q), result(ncols, 1, CONN_ROW), &out,
                                &err), 0);
    assert_int_equal(json_array_size(out), 1);
    json_t *c = json_array_get(out, 0);
    assert_int_equal(json_integer_value(json_object_get(c, "id")), 7);
    assert_string_equal(json_string_value(json_object_get(c, "registry")),
                        "123456789012.dkr.ecr.us-east-1.amazonaws.com");
    assert_true(json_is_true(json_object_get(c, "external_id_set")));
    char *text = json_dumps(out, 0);
    assert_null(strstr(text, "SEALED"));
    assert_null(strstr(text, "external-id-secret"));
    assert_null(strstr(text, "secret_sealed"));
    free(text);
    json_decref(out);

    assert_int_equal(run_reader(hgf_catalog_connection(&q, 7), result(ncols, 1, CONN_ROW), &out,
                                &err), 0);
    assert_true(json_is_object(out));
    assert_string_equal(json_string_value(json_object_get(out, "name")), "prod");
    json_decref(out);
    assert_int_equal(run_reader(hgf_catalog_connection(&q, 8), result(ncols, 0, NULL), &out, &err),
                     HGF_ENOTFOUND);
    assert_null(out);
    has(err.msg, "no connection with id 8");
}

static void test_array_and_object_readers(void **state)
{
    hgf_catalog_query q;
    hgf_err err;
    json_t *out;
    const char *arr[] = {"[{\"id\":2},{\"id\":1}]"};
    assert_int_equal(run_reader(hgf_catalog_sweeps(&q, 10), result(1, 1, arr), &out, &err), 0);
    assert_int_equal(json_array_size(out), 2);
    json_decref(out);
    const char *garbage[] = {"{not json"};
    assert_int_equal(run_reader(&q, result(1, 1, garbage), &out, &err), HGF_EDB);
    assert_null(out);
    const char *object[] = {"{\"id\":1}"};
    assert_int_equal(run_reader(&q, result(1, 1, object), &out, &err), HGF_EDB); /* not an array */
    assert_int_equal(run_reader(&q, result(1, 0, NULL), &out, &err), HGF_EDB);

    assert_int_equal(run_reader(hgf_catalog_sweep(&q, 5), result(1, 1, object), &out, &err), 0);
    assert_int_equal(json_integer_value(json_object_get(out, "id")), 1);
    json_decref(out);
    assert_int_equal(run_reader(&q, result(1, 0, NULL), &out, &err), HGF_ENOTFOUND);
    has(err.msg, "sweep 5 does not exist");
}

static void test_report_reader(void **state)
{
    hgf_catalog_query q;
    hgf_err err;
    json_t *out;
    hgf_catalog_sweep_report(&q, 3);
    const char *done[] = {"complete", "{\"sweep_id\":3,\"status\":\"complete\"}"};
    assert_int_equal(run_reader(&q, result(2, 1, done), &out, &err), 0);
    assert_int_equal(json_integer_value(json_object_get(out, "sweep_id")), 3);
    json_decref(out);
    const char *running[] = {"running", NULL};
    assert_int_equal(run_reader(&q, result(2, 1, running), &out, &err), HGF_EFAIL);
    has(err.msg, "sweep 3 has no report (status running)");
    assert_int_equal(run_reader(&q, result(2, 0, NULL), &out, &err), HGF_ENOTFOUND);
    has(err.msg, "sweep 3 does not exist");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_limit),
        cmocka_unit_test(test_parse_id),
        cmocka_unit_test(test_images_builder),
        cmocka_unit_test(test_images_rejects),
        cmocka_unit_test(test_jobs_builder),
        cmocka_unit_test(test_id_builders),
        cmocka_unit_test(test_connections_never_hold_secrets),
        cmocka_unit_test(test_array_and_object_readers),
        cmocka_unit_test(test_report_reader),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
