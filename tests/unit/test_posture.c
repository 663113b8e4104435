/* Unit tests for the posture parsers: repository policies, lifecycle
 * policies, image config users and the lifecycle/scan race, with the
 * hostile inputs a registry or an account owner could hand us. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hgfleet/posture.h"

/* ---- helpers ----------------------------------------------------------- */

static int everyone(const char *text)
{
    hgf_err err;
    hgf_err_clear(&err);
    int out = -1;
    int rc = hgf_posture_policy_allows_everyone(text, strlen(text), &out, &err);
    if (rc) {
        print_error("policy %s: %s\n", text, err.msg);
        fail();
    }
    return out;
}

/* The error message for a policy that cannot be judged. */
static const char *policy_error(const char *text, size_t len, hgf_err *err)
{
    int out = -1;
    hgf_err_clear(err);
    assert_int_equal(hgf_posture_policy_allows_everyone(text, len, &out, err), HGF_EINPUT);
    assert_int_equal(out, 0);
    return err->msg;
}

static long window(const char *text)
{
    hgf_err err;
    hgf_err_clear(&err);
    long days = -2;
    int rc = hgf_posture_lifecycle_untagged_days(text, strlen(text), &days, &err);
    if (rc) {
        print_error("lifecycle %s: %s\n", text, err.msg);
        fail();
    }
    return days;
}

static const char *window_error(const char *text, hgf_err *err)
{
    long days = -2;
    hgf_err_clear(err);
    assert_int_equal(hgf_posture_lifecycle_untagged_days(text, strlen(text), &days, err),
                     HGF_EINPUT);
    assert_int_equal(days, -1);
    return err->msg;
}

#define RULE(status, type, unit, number, action)                                           \
    "{\"rulePriority\":1,\"selection\":{\"tagStatus\":\"" status "\",\"countType\":\"" type \
    "\",\"countUnit\":\"" unit "\",\"countNumber\":" number "},\"action\":{\"type\":\"" action \
    "\"}}"

/* ---- repository policies ----------------------------------------------- */

static void test_policy_open_forms(void **state)
{
    assert_int_equal(everyone("{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\","
                              "\"Principal\":\"*\",\"Action\":\"ecr:BatchGetImage\"}]}"),
                     1);
    assert_int_equal(everyone("{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":"
                              "\"*\"},\"Action\":[\"ecr:*\"]}]}"),
                     1);
    assert_int_equal(everyone("{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":"
                              "[\"arn:aws:iam::111111111111:root\",\"*\"]}}]}"),
                     1);
    /* A single statement object, as IAM's grammar allows. */
    assert_int_equal(everyone("{\"Statement\":{\"Effect\":\"Allow\",\"Principal\":\"*\"}}"), 1);
    /* The second statement is the open one. */
    assert_int_equal(everyone("{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":"
                              "\"arn:aws:iam::111111111111:role/ci\"}},{\"Effect\":\"Allow\","
                              "\"Principal\":\"*\"}]}"),
                     1);
    /* Allow with NotPrincipal admits everyone but the few it names. */
    assert_int_equal(everyone("{\"Statement\":[{\"Effect\":\"Allow\",\"NotPrincipal\":{\"AWS\":"
                              "\"arn:aws:iam::111111111111:root\"}}]}"),
                     1);
}

static void test_policy_closed_forms(void **state)
{
    assert_int_equal(everyone("{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":"
                              "\"arn:aws:iam::111111111111:role/ci\"}}]}"),
                     0);
    assert_int_equal(everyone("{\"Statement\":[{\"Effect\":\"Deny\",\"Principal\":\"*\"}]}"), 0);
    assert_int_equal(everyone("{\"Statement\":[]}"), 0);
    /* "**" and "arn:*" are not the wildcard principal. */
    assert_int_equal(everyone("{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":"
                              "[\"**\",\"arn:*\"]}}]}"),
                     0);
    assert_int_equal(everyone("{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"*\","
                              "\"Condition\":{\"StringEquals\":{\"aws:PrincipalOrgID\":"
                              "\"o-abc123\"}}}]}"),
                     0);
    assert_int_equal(everyone("{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":"
                              "\"*\"},\"Condition\":{\"ForAnyValue:StringLike\":{"
                              "\"AWS:SOURCEACCOUNT\":[\"111111111111\"]}}}]}"),
                     0);
}

static void test_policy_conditions_that_do_not_narrow(void **state)
{
    static const char *const CONDS[] = {
        "{\"StringNotEquals\":{\"aws:PrincipalOrgID\":\"o-abc123\"}}",
        "{\"StringEqualsIfExists\":{\"aws:PrincipalOrgID\":\"o-abc123\"}}",
        "{\"ForAllValues:StringEquals\":{\"aws:PrincipalOrgID\":[\"o-abc123\"]}}",
        "{\"Null\":{\"aws:PrincipalOrgID\":\"false\"}}",
        "{\"StringLike\":{\"aws:PrincipalOrgID\":\"*\"}}",
        "{\"StringLike\":{\"aws:PrincipalOrgID\":[\"o-1\",\"*\"]}}",
        "{\"StringEquals\":{\"aws:PrincipalOrgID\":[]}}",
        "{\"Bool\":{\"aws:SecureTransport\":\"true\"}}",
        "{\"StringEquals\":\"aws:PrincipalOrgID\"}",
        "[]",
    };
    for (size_t i = 0; i < sizeof CONDS / sizeof CONDS[0]; i++) {
        char text[512];
        snprintf(text, sizeof text,
                 "{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Condition\":%s}]}",
                 CONDS[i]);
        if (everyone(text) != 1) {
            print_error("condition %s was taken as narrowing\n", CONDS[i]);
            fail();
        }
    }
}

static void test_policy_hostile(void **state)
{
    hgf_err err;
    static const char *const BAD[] = {
        "",
        "not json",
        "{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"*\"}",
        "[{\"Effect\":\"Allow\",\"Principal\":\"*\"}]",
        "\"*\"",
        "{}",
        "{\"Statement\":42}",
        "{\"Statement\":[\"Allow *\"]}",
        "{\"Statement\":[{\"Principal\":\"*\"}]}",
        "{\"Statement\":[{\"Effect\":[\"Allow\"],\"Principal\":\"*\"}]}",
        /* Which Principal would AWS have read? Not judged. */
        "{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"arn:aws:iam::1:root\","
        "\"Principal\":\"*\"}]}",
        "{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"\\u0000*\"}]}",
        "{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"\xff\xfe\"}]}",
    };
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        const char *msg = policy_error(BAD[i], strlen(BAD[i]), &err);
        assert_non_null(strstr(msg, "policy"));
    }
    static const char no_effect[] = "{\"Statement\":[{\"Principal\":\"*\"}]}";
    assert_non_null(
        strstr(policy_error(no_effect, strlen(no_effect), &err), "Statement[0].Effect"));
    /* The length is what counts: bytes after an embedded NUL are not JSON. */
    static const char nul[] = "{\"Statement\":[]}\0garbage";
    policy_error(nul, sizeof nul - 1, &err);
    int out = 7;
    assert_int_equal(hgf_posture_policy_allows_everyone(nul, strlen(nul), &out, &err), 0);
    assert_int_equal(out, 0);
    policy_error(NULL, 0, &err);
    /* A later malformed statement voids an earlier open one: not a verdict. */
    static const char later[] = "{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"*\"},7]}";
    policy_error(later, strlen(later), &err);
}

static void test_policy_deep_and_large(void **state)
{
    enum { DEPTH = 100000 };
    char *deep = malloc(2 * DEPTH + 64);
    assert_non_null(deep);
    static const char head[] = "{\"Statement\":";
    memcpy(deep, head, sizeof head - 1);
    size_t n = sizeof head - 1;
    memset(deep + n, '[', DEPTH);
    memset(deep + n + DEPTH, ']', DEPTH);
    n += 2 * DEPTH;
    deep[n++] = '}';
    hgf_err err;
    policy_error(deep, n, &err);
    free(deep);

    /* 10,000 closed statements then an open one. */
    size_t cap = 10001 * 96 + 64, len = 0;
    char *big = malloc(cap);
    assert_non_null(big);
    len += (size_t)sprintf(big + len, "{\"Statement\":[");
    for (int i = 0; i < 10000; i++)
        len += (size_t)sprintf(big + len, "{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":"
                                          "\"arn:aws:iam::%012d:root\"}},",
                               i);
    len += (size_t)sprintf(big + len, "{\"Effect\":\"Allow\",\"Principal\":\"*\"}]}");
    int out = 0;
    assert_int_equal(hgf_posture_policy_allows_everyone(big, len, &out, &err), 0);
    assert_int_equal(out, 1);
    free(big);
}

/* ---- lifecycle policies ------------------------------------------------ */

static void test_lifecycle_windows(void **state)
{
    assert_int_equal(window("{\"rules\":[" RULE("untagged", "sinceImagePushed", "days", "14",
                                                "expire") "]}"),
                     14);
    assert_int_equal(window("{\"rules\":[" RULE("any", "sinceImagePushed", "days", "30",
                                                "expire") "]}"),
                     30);
    /* The shortest of several. */
    assert_int_equal(window("{\"rules\":[" RULE("untagged", "sinceImagePushed", "days", "9",
                                                "expire") "," RULE("any", "sinceImagePushed",
                                                                   "days", "2", "expire") "]}"),
                     2);
    /* Rules that keep a count, touch tagged images only, or archive: no window. */
    assert_int_equal(window("{\"rules\":[" RULE("untagged", "imageCountMoreThan", "", "5",
                                                "expire") "," RULE("tagged", "sinceImagePushed",
                                                                   "days", "1", "expire") "]}"),
                     -1);
    assert_int_equal(window("{\"rules\":[" RULE("untagged", "sinceImagePushed", "days", "1",
                                                "transition") "]}"),
                     -1);
    assert_int_equal(window("{\"rules\":[]}"), -1);
    /* AWS spells these in lower case; another case still expires images. */
    assert_int_equal(window("{\"rules\":[" RULE("UNTAGGED", "SinceImagePushed", "Days", "3",
                                                "EXPIRE") "]}"),
                     3);
    assert_int_equal(window("{\"rules\":[" RULE("untagged", "sinceImagePushed", "days",
                                                "99999999999", "expire") "]}"),
                     36500);
}

static void test_lifecycle_hostile(void **state)
{
    hgf_err err;
    assert_non_null(strstr(window_error("{\"rules\":[" RULE("untagged", "sinceImagePushed",
                                                            "hours", "3", "expire") "]}",
                                        &err),
                           "rules[0].selection.countUnit"));
    static const char *const NUMBERS[] = {"0", "-1", "\"5\"", "1.5", "null", "true"};
    for (size_t i = 0; i < sizeof NUMBERS / sizeof NUMBERS[0]; i++) {
        char text[512];
        snprintf(text, sizeof text,
                 "{\"rules\":[{\"selection\":{\"tagStatus\":\"untagged\",\"countType\":"
                 "\"sinceImagePushed\",\"countUnit\":\"days\",\"countNumber\":%s},"
                 "\"action\":{\"type\":\"expire\"}}]}",
                 NUMBERS[i]);
        assert_non_null(strstr(window_error(text, &err), "rules[0].selection.countNumber"));
    }
    static const char *const BAD[] = {
        "", "{", "[]", "{\"rules\":{}}", "{}", "{\"rules\":[1]}",
        "{\"rules\":[{\"selection\":[],\"action\":{}}]}",
        "{\"rules\":[{\"selection\":{},\"action\":\"expire\"}]}",
        "{\"rules\":[],\"rules\":[]}",
    };
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++)
        assert_non_null(strstr(window_error(BAD[i], &err), "lifecycle policy"));
    long days = 5;
    assert_int_equal(hgf_posture_lifecycle_untagged_days(NULL, 0, &days, &err), HGF_EINPUT);
    assert_int_equal(days, -1);
}

/* ---- image configs ----------------------------------------------------- */

static int user_of(const char *config, char *user)
{
    hgf_err err;
    hgf_err_clear(&err);
    return hgf_posture_config_user(config, strlen(config), user, HGF_POSTURE_USER_MAX, &err);
}

static void test_config_user(void **state)
{
    char user[HGF_POSTURE_USER_MAX];
    assert_int_equal(user_of("{\"config\":{\"User\":\"1000:1000\",\"Env\":[]}}", user), 0);
    assert_string_equal(user, "1000:1000");
    assert_int_equal(user_of("{\"architecture\":\"amd64\",\"config\":{\"Env\":[]}}", user), 0);
    assert_string_equal(user, "");
    assert_int_equal(user_of("{\"architecture\":\"amd64\"}", user), 0);
    assert_string_equal(user, "");
    assert_int_equal(user_of("{\"config\":null}", user), 0);
    assert_string_equal(user, "");
    assert_int_equal(user_of("{\"config\":{\"User\":null}}", user), 0);
    assert_string_equal(user, "");
    /* container_config is the build container's, not the image's. */
    assert_int_equal(user_of("{\"config\":{\"User\":\"app\"},\"container_config\":{\"User\":"
                             "\"root\"}}",
                             user),
                     0);
    assert_string_equal(user, "app");
}

static void test_config_hostile(void **state)
{
    char user[HGF_POSTURE_USER_MAX];
    hgf_err err;
    static const char *const BAD[] = {
        "", "null", "[]", "{\"config\":\"root\"}", "{\"config\":{\"User\":0}}",
        "{\"config\":{\"User\":[\"root\"]}}", "{\"config\":{\"User\":\"a\\u0000b\"}}",
        "{\"config\":{\"User\":\"x\",\"User\":\"root\"}}",
    };
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        strcpy(user, "stale");
        hgf_err_clear(&err);
        assert_int_equal(hgf_posture_config_user(BAD[i], strlen(BAD[i]), user, sizeof user, &err),
                         HGF_EINPUT);
        assert_string_equal(user, "");
        assert_non_null(strstr(err.msg, "image config"));
    }
    char text[HGF_POSTURE_USER_MAX + 64];
    snprintf(text, sizeof text, "{\"config\":{\"User\":\"%0*d\"}}", HGF_POSTURE_USER_MAX, 7);
    assert_int_equal(hgf_posture_config_user(text, strlen(text), user, sizeof user, &err),
                     HGF_EINPUT);
    assert_non_null(strstr(err.msg, "config.User"));
    /* A small caller buffer is never overrun. */
    char small[4] = "zzz";
    assert_int_equal(hgf_posture_config_user("{\"config\":{\"User\":\"1000\"}}", 26, small,
                                             sizeof small, &err),
                     HGF_EINPUT);
    assert_string_equal(small, "");
}

static void test_user_is_root(void **state)
{
    static const struct {
        const char *user;
        int root;
    } CASES[] = {
        {"", 1},       {"root", 1},      {"0", 1},       {"0:0", 1},      {"root:root", 1},
        {"root:1000", 1}, {"0:1000", 1}, {"000", 1},     {":0", 1},       {":", 1},
        {"1000", 0},   {"1000:0", 0},    {"nobody", 0},  {"65532:65532", 0}, {"rooted", 0},
        {"Root", 0},   {"10", 0},        {"0a", 0},      {" root", 0},    {"app:root", 0},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++)
        if (hgf_posture_user_is_root(CASES[i].user) != CASES[i].root) {
            print_error("user \"%s\": expected root=%d\n", CASES[i].user, CASES[i].root);
            fail();
        }
}

static void test_image_config_types(void **state)
{
    assert_int_equal(hgf_posture_is_image_config("application/vnd.oci.image.config.v1+json"), 1);
    assert_int_equal(
        hgf_posture_is_image_config("application/vnd.docker.container.image.v1+json"), 1);
    assert_int_equal(hgf_posture_is_image_config("application/vnd.cncf.helm.config.v1+json"), 0);
    assert_int_equal(hgf_posture_is_image_config(""), 0);
    assert_int_equal(hgf_posture_is_image_config(NULL), 0);
}

/* ---- the race ---------------------------------------------------------- */

static int races(const char *spec, long days)
{
    hgf_schedule s;
    hgf_err err;
    assert_int_equal(hgf_schedule_parse(spec, &s, &err), 0);
    return hgf_posture_expiry_races_scan(days, &s, 1767225600 /* 2026-01-01 */);
}

static void test_expiry_races_scan(void **state)
{
    assert_int_equal(races("every:7d", 3), 1);
    assert_int_equal(races("every:7d", 6), 1);
    assert_int_equal(races("every:7d", 7), 0);
    assert_int_equal(races("every:7d", 30), 0);
    assert_int_equal(races("weekly", 1), 1);
    assert_int_equal(races("weekly@fri 10:00", 7), 0);
    assert_int_equal(races("daily", 1), 0);
    assert_int_equal(races("every:36h", 1), 1);
    assert_int_equal(races("every:6h", 1), 0);
    assert_int_equal(races("cron:0 3 * * 0", 3), 1);
    assert_int_equal(races("cron:0 3 * * *", 3), 0);
    /* Push events scan at once; manual has no interval to keep up with. */
    assert_int_equal(races("on_push", 1), 0);
    assert_int_equal(races("on_push+weekly", 1), 0);
    assert_int_equal(races("manual", 365), 1);
    /* No untagged window: nothing races. */
    assert_int_equal(races("manual", -1), 0);
    assert_int_equal(races("weekly", -1), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy_open_forms),
        cmocka_unit_test(test_policy_closed_forms),
        cmocka_unit_test(test_policy_conditions_that_do_not_narrow),
        cmocka_unit_test(test_policy_hostile),
        cmocka_unit_test(test_policy_deep_and_large),
        cmocka_unit_test(test_lifecycle_windows),
        cmocka_unit_test(test_lifecycle_hostile),
        cmocka_unit_test(test_config_user),
        cmocka_unit_test(test_config_hostile),
        cmocka_unit_test(test_user_is_root),
        cmocka_unit_test(test_image_config_types),
        cmocka_unit_test(test_expiry_races_scan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
