/* Registry URL parsing, partitions and service endpoints. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hgfleet/endpoint.h"
#include "hgfleet/err.h"

typedef struct good_case {
    const char *url;
    const char *account, *region, *partition, *suffix;
    int fips;
    const char *host, *api;
} good_case;

static const good_case GOOD[] = {
    {"123456789012.dkr.ecr.us-east-1.amazonaws.com", "123456789012", "us-east-1", "aws",
     "amazonaws.com", 0, "123456789012.dkr.ecr.us-east-1.amazonaws.com",
     "https://api.ecr.us-east-1.amazonaws.com"},
    {"https://123456789012.dkr.ecr.eu-central-2.amazonaws.com/", "123456789012", "eu-central-2",
     "aws", "amazonaws.com", 0, "123456789012.dkr.ecr.eu-central-2.amazonaws.com",
     "https://api.ecr.eu-central-2.amazonaws.com"},
    {"https://000000000001.dkr.ecr.ap-southeast-7.amazonaws.com", "000000000001",
     "ap-southeast-7", "aws", "amazonaws.com", 0,
     "000000000001.dkr.ecr.ap-southeast-7.amazonaws.com",
     "https://api.ecr.ap-southeast-7.amazonaws.com"},
    {"210987654321.dkr.ecr.il-central-1.amazonaws.com/", "210987654321", "il-central-1", "aws",
     "amazonaws.com", 0, "210987654321.dkr.ecr.il-central-1.amazonaws.com",
     "https://api.ecr.il-central-1.amazonaws.com"},
    {"123456789012.dkr.ecr.mx-central-1.amazonaws.com", "123456789012", "mx-central-1", "aws",
     "amazonaws.com", 0, "123456789012.dkr.ecr.mx-central-1.amazonaws.com",
     "https://api.ecr.mx-central-1.amazonaws.com"},
    {"123456789012.dkr.ecr-fips.us-west-2.amazonaws.com", "123456789012", "us-west-2", "aws",
     "amazonaws.com", 1, "123456789012.dkr.ecr-fips.us-west-2.amazonaws.com",
     "https://ecr-fips.us-west-2.amazonaws.com"},
    {"https://123456789012.dkr.ecr-fips.us-east-1.amazonaws.com/", "123456789012", "us-east-1",
     "aws", "amazonaws.com", 1, "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com",
     "https://ecr-fips.us-east-1.amazonaws.com"},
    {"https://123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", "123456789012", "cn-north-1",
     "aws-cn", "amazonaws.com.cn", 0, "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
     "https://api.ecr.cn-north-1.amazonaws.com.cn"},
    {"123456789012.dkr.ecr.cn-northwest-1.amazonaws.com.cn/", "123456789012", "cn-northwest-1",
     "aws-cn", "amazonaws.com.cn", 0, "123456789012.dkr.ecr.cn-northwest-1.amazonaws.com.cn",
     "https://api.ecr.cn-northwest-1.amazonaws.com.cn"},
    {"123456789012.dkr.ecr.us-gov-west-1.amazonaws.com", "123456789012", "us-gov-west-1",
     "aws-us-gov", "amazonaws.com", 0, "123456789012.dkr.ecr.us-gov-west-1.amazonaws.com",
     "https://api.ecr.us-gov-west-1.amazonaws.com"},
    {"123456789012.dkr.ecr-fips.us-gov-east-1.amazonaws.com", "123456789012", "us-gov-east-1",
     "aws-us-gov", "amazonaws.com", 1, "123456789012.dkr.ecr-fips.us-gov-east-1.amazonaws.com",
     "https://ecr-fips.us-gov-east-1.amazonaws.com"},
};

static void check_registry(const good_case *g, const hgf_registry *r)
{
    assert_string_equal(r->account_id, g->account);
    assert_string_equal(r->region, g->region);
    assert_string_equal(r->partition, g->partition);
    assert_string_equal(r->dns_suffix, g->suffix);
    assert_int_equal(r->fips, g->fips);
    assert_string_equal(r->host, g->host);
    assert_string_equal(r->api_endpoint, g->api);
}

static void test_parse_good(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof GOOD / sizeof GOOD[0]; i++) {
        hgf_registry r;
        hgf_err err;
        hgf_err_clear(&err);
        int rc = hgf_endpoint_parse_registry(GOOD[i].url, &r, &err);
        if (rc != 0)
            fail_msg("%s: rc %d: %s", GOOD[i].url, rc, err.msg);
        check_registry(&GOOD[i], &r);
    }
}

/* Up to three substrings the error must contain. */
typedef struct bad_case {
    const char *url;
    const char *needle[3];
} bad_case;

#define GENERIC "expected <12-digit account>.dkr.ecr.<region>.amazonaws.com"
#define ACCT "123456789012"

static const bad_case BAD[] = {
    {"foo", {"registry URL \"foo\": ", GENERIC}},
    {"", {"empty", GENERIC}},
    {"https://", {GENERIC}},
    {"https:///", {GENERIC}},
    {"123456789012", {"registry URL \"123456789012\"", GENERIC}},
    {"123456789012.ecr.us-east-1.amazonaws.com", {GENERIC}},
    {"123456789012.dkr.ecr.us-east-1", {GENERIC}},
    {"123456789012.dkr.ecr.us-east-1.amazonaws.org", {"unexpected domain \"amazonaws.org\"", GENERIC}},
    {"123456789012.dkr.ecr.us-east-1.amazonaws.com.cn.evil.example", {"unexpected domain", GENERIC}},
    {"public.ecr.aws", {"ECR Public", "different service", "not supported"}},
    {"https://public.ecr.aws/nginx/nginx:latest", {"ECR Public", "different API", "not supported"}},
    {"public.ecr.aws/", {"ECR Public", "different service"}},
    {"PUBLIC.ECR.AWS", {"ECR Public", "not supported"}},
    {"http://public.ecr.aws", {"ECR Public"}},
    {"https://api.ecr-public.us-east-1.amazonaws.com", {"ECR Public"}},
    {"http://" ACCT ".dkr.ecr.us-east-1.amazonaws.com", {"only https://", GENERIC}},
    {"ftp://" ACCT ".dkr.ecr.us-east-1.amazonaws.com", {"unsupported scheme \"ftp://\"", "https://"}},
    {"https://" ACCT ".dkr.ecr.us-east-1.amazonaws.com/v2/app", {"unexpected path \"/v2/app\"", "at most one '/'"}},
    {ACCT ".dkr.ecr.us-east-1.amazonaws.com/team/app", {"unexpected path \"/team/app\""}},
    {ACCT ".dkr.ecr.us-east-1.amazonaws.com//", {"unexpected path \"//\""}},
    {ACCT ".dkr.ecr.us-east-1.amazonaws.com:443", {"port", GENERIC}},
    {"https://" ACCT ".dkr.ecr.us-east-1.amazonaws.com:8443/", {"port"}},
    {ACCT ".dkr.ecr.us-east-1.amazonaws.com?x=1", {"query string"}},
    {ACCT ".dkr.ecr.us-east-1.amazonaws.com/#frag", {"fragment"}},
    {"user@" ACCT ".dkr.ecr.us-east-1.amazonaws.com", {"user info"}},
    {"12345678901.dkr.ecr.us-east-1.amazonaws.com", {"account ID \"12345678901\" must be exactly 12 digits"}},
    {"1234567890123.dkr.ecr.us-east-1.amazonaws.com", {"account ID \"1234567890123\"", "12 digits"}},
    {"12345678901a.dkr.ecr.us-east-1.amazonaws.com", {"account ID \"12345678901a\"", "12 digits"}},
    {"my-account.dkr.ecr.us-east-1.amazonaws.com", {"account ID \"my-account\""}},
    {ACCT ".dkr.ecr.us-east-one.amazonaws.com", {"region \"us-east-one\" is not an AWS region name"}},
    {ACCT ".dkr.ecr.useast1.amazonaws.com", {"region \"useast1\"", "e.g. us-east-1"}},
    {ACCT ".dkr.ecr.xx-east-1.amazonaws.com", {"region \"xx-east-1\""}},
    {ACCT ".dkr.ecr..amazonaws.com", {"region \"\""}},
    {ACCT ".dkr.ecr.us_east_1.amazonaws.com", {"region \"us_east_1\""}},
    {ACCT ".dkr.ecr.US-EAST-1.amazonaws.com", {"lowercase", GENERIC}},
    {"HTTPS://" ACCT ".dkr.ecr.us-east-1.amazonaws.com", {"lowercase"}},
    {ACCT ".DKR.ECR.us-east-1.amazonaws.com", {"lowercase"}},
    {ACCT ".dkr.ecr.us-east-1.amazonaws.com.cn", {".amazonaws.com.cn is only for China", "partition aws", "<12-digit account>.dkr.ecr.us-east-1.amazonaws.com"}},
    {ACCT ".dkr.ecr.us-gov-west-1.amazonaws.com.cn", {"only for China", "aws-us-gov"}},
    {ACCT ".dkr.ecr.cn-north-1.amazonaws.com", {"China region", "aws-cn", "dkr.ecr.cn-north-1.amazonaws.com.cn"}},
    {ACCT ".dkr.ecr-fips.cn-north-1.amazonaws.com.cn", {"FIPS", "aws-cn"}},
    {ACCT ".dkr.ecr.us-iso-east-1.amazonaws.com", {"partition aws-iso", "does not support"}},
    {ACCT ".dkr.ecr.eusc-de-east-1.amazonaws.com", {"partition aws-eusc", "does not support"}},
    {" " ACCT ".dkr.ecr.us-east-1.amazonaws.com", {"whitespace", GENERIC}},
    {ACCT ".dkr.ecr.us-east-1.amazonaws.com\n", {"leading or trailing whitespace"}},
    {ACCT ".dkr.ecr.us-east-1 .amazonaws.com", {"whitespace is not allowed"}},
};

static void test_parse_bad(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        hgf_registry r;
        memset(&r, 'x', sizeof r);
        hgf_err err;
        hgf_err_clear(&err);
        int rc = hgf_endpoint_parse_registry(BAD[i].url, &r, &err);
        if (rc != HGF_EINPUT)
            fail_msg("\"%s\": rc %d, want HGF_EINPUT (%s)", BAD[i].url, rc, err.msg);
        for (int k = 0; k < 3 && BAD[i].needle[k]; k++)
            if (!strstr(err.msg, BAD[i].needle[k]))
                fail_msg("\"%s\": message \"%s\" lacks \"%s\"", BAD[i].url, err.msg,
                         BAD[i].needle[k]);
        /* A failed parse leaves nothing half-filled behind. */
        assert_string_equal(r.account_id, "");
        assert_string_equal(r.api_endpoint, "");
    }
}

static void test_parse_null_and_hostile(void **state)
{
    (void)state;
    hgf_registry r;
    hgf_err err;
    hgf_err_clear(&err);
    assert_int_equal(hgf_endpoint_parse_registry(NULL, &r, &err), HGF_EINPUT);
    assert_non_null(strstr(err.msg, "empty"));
    /* Control characters are neither accepted nor echoed. */
    assert_int_equal(hgf_endpoint_parse_registry(ACCT ".dkr.ecr.us-east-1.amazonaws.com\x1b[2J",
                                                 &r, &err),
                     HGF_EINPUT);
    assert_null(strchr(err.msg, '\x1b'));
    assert_non_null(strstr(err.msg, "control or non-ASCII"));
    /* Very long input is cut in the message. */
    char longurl[600];
    memset(longurl, 'a', sizeof longurl - 1);
    longurl[sizeof longurl - 1] = '\0';
    assert_int_equal(hgf_endpoint_parse_registry(longurl, &r, &err), HGF_EINPUT);
    assert_non_null(strstr(err.msg, "...\""));
    assert_true(strlen(err.msg) < 700);
}

static void test_from_parts(void **state)
{
    (void)state;
    hgf_registry r;
    hgf_err err;
    hgf_err_clear(&err);
    assert_int_equal(hgf_endpoint_registry_from_parts(ACCT, "us-east-2", 0, &r, &err), 0);
    check_registry(&(good_case){NULL, ACCT, "us-east-2", "aws", "amazonaws.com", 0,
                                ACCT ".dkr.ecr.us-east-2.amazonaws.com",
                                "https://api.ecr.us-east-2.amazonaws.com"},
                   &r);
    assert_int_equal(hgf_endpoint_registry_from_parts(ACCT, "cn-northwest-1", 0, &r, &err), 0);
    check_registry(&(good_case){NULL, ACCT, "cn-northwest-1", "aws-cn", "amazonaws.com.cn", 0,
                                ACCT ".dkr.ecr.cn-northwest-1.amazonaws.com.cn",
                                "https://api.ecr.cn-northwest-1.amazonaws.com.cn"},
                   &r);
    assert_int_equal(hgf_endpoint_registry_from_parts(ACCT, "us-gov-west-1", 1, &r, &err), 0);
    assert_string_equal(r.api_endpoint, "https://ecr-fips.us-gov-west-1.amazonaws.com");
    assert_string_equal(r.partition, "aws-us-gov");

    assert_int_equal(hgf_endpoint_registry_from_parts("12345", "us-east-1", 0, &r, &err), HGF_EINPUT);
    assert_non_null(strstr(err.msg, "account ID \"12345\" must be exactly 12 digits"));
    assert_null(strstr(err.msg, "registry URL"));
    assert_int_equal(hgf_endpoint_registry_from_parts(NULL, "us-east-1", 0, &r, &err), HGF_EINPUT);
    assert_non_null(strstr(err.msg, "account ID"));
    assert_int_equal(hgf_endpoint_registry_from_parts(ACCT, "Us-East-1", 0, &r, &err), HGF_EINPUT);
    assert_non_null(strstr(err.msg, "region \"Us-East-1\""));
    assert_int_equal(hgf_endpoint_registry_from_parts(ACCT, NULL, 0, &r, &err), HGF_EINPUT);
    assert_non_null(strstr(err.msg, "region"));
    assert_int_equal(hgf_endpoint_registry_from_parts(ACCT, "cn-north-1", 1, &r, &err), HGF_EINPUT);
    assert_non_null(strstr(err.msg, "FIPS"));
    assert_int_equal(hgf_endpoint_registry_from_parts(ACCT, "us-isob-east-1", 0, &r, &err),
                     HGF_EINPUT);
    assert_non_null(strstr(err.msg, "aws-iso-b"));
}

static void test_partitions(void **state)
{
    (void)state;
    static const char *const map[][2] = {
        {"us-east-1", "aws"},          {"eu-central-2", "aws"},
        {"af-south-1", "aws"},         {"ap-southeast-5", "aws"},
        {"ca-west-1", "aws"},          {"me-central-1", "aws"},
        {"sa-east-1", "aws"},          {"il-central-1", "aws"},
        {"mx-central-1", "aws"},       {"cn-north-1", "aws-cn"},
        {"cn-northwest-1", "aws-cn"},  {"us-gov-west-1", "aws-us-gov"},
        {"us-gov-east-1", "aws-us-gov"}, {"us-iso-east-1", "aws-iso"},
        {"us-isob-east-1", "aws-iso-b"}, {"eu-isoe-west-1", "aws-iso-e"},
        {"us-isof-south-1", "aws-iso-f"}, {"eusc-de-east-1", "aws-eusc"},
        {"nonsense", "aws"},           {"", "aws"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(hgf_endpoint_partition_for_region(map[i][0]), map[i][1]) != 0)
            fail_msg("%s: got %s, want %s", map[i][0],
                     hgf_endpoint_partition_for_region(map[i][0]), map[i][1]);
    assert_string_equal(hgf_endpoint_partition_for_region(NULL), "aws");
}

static void test_region_valid(void **state)
{
    (void)state;
    static const char *const good[] = {"us-east-1", "us-gov-west-1", "cn-northwest-1",
                                       "eu-central-2", "ap-northeast-3", "us-iso-east-1",
                                       "eu-west-10"};
    static const char *const bad[] = {"", "us-east", "us-east-1a", "US-EAST-1", "us_east_1",
                                      "xx-east-1", "us-east-1 ", " us-east-1", "us-east-1.",
                                      "us--1", "us-east-", "-us-east-1", "cn-north",
                                      "us-eastaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-1"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (!hgf_endpoint_region_valid(good[i]))
            fail_msg("\"%s\" should be valid", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (hgf_endpoint_region_valid(bad[i]))
            fail_msg("\"%s\" should be invalid", bad[i]);
    assert_false(hgf_endpoint_region_valid(NULL));
}

/* ---- service endpoints ------------------------------------------------ */

static int clear_env(void **state)
{
    (void)state;
    unsetenv("AWS_ENDPOINT_URL");
    unsetenv("AWS_ENDPOINT_URL_ECR");
    unsetenv("AWS_ENDPOINT_URL_STS");
    unsetenv("AWS_ENDPOINT_URL_ORGANIZATIONS");
    return 0;
}

static void expect_url(const char *svc, const hgf_registry *reg, const char *want)
{
    char out[256];
    hgf_err err;
    hgf_err_clear(&err);
    int rc = hgf_endpoint_service_url(svc, reg, out, sizeof out, &err);
    if (rc != 0)
        fail_msg("%s: rc %d: %s", svc, rc, err.msg);
    assert_string_equal(out, want);
}

static void expect_url_error(const char *svc, const hgf_registry *reg, size_t size,
                             const char *needle)
{
    char out[256];
    hgf_err err;
    hgf_err_clear(&err);
    assert_int_equal(hgf_endpoint_service_url(svc, reg, out, size, &err), HGF_EINPUT);
    if (!strstr(err.msg, needle))
        fail_msg("%s: message \"%s\" lacks \"%s\"", svc ? svc : "(null)", err.msg, needle);
}

static void parse_ok(const char *url, hgf_registry *r)
{
    hgf_err err;
    hgf_err_clear(&err);
    assert_int_equal(hgf_endpoint_parse_registry(url, r, &err), 0);
}

static void test_service_defaults(void **state)
{
    (void)state;
    hgf_registry aws, cn, gov, fips;
    parse_ok(ACCT ".dkr.ecr.eu-west-1.amazonaws.com", &aws);
    parse_ok(ACCT ".dkr.ecr.cn-north-1.amazonaws.com.cn", &cn);
    parse_ok(ACCT ".dkr.ecr.us-gov-east-1.amazonaws.com", &gov);
    parse_ok(ACCT ".dkr.ecr-fips.us-east-2.amazonaws.com", &fips);
    expect_url("ECR", &aws, "https://api.ecr.eu-west-1.amazonaws.com");
    expect_url("STS", &aws, "https://sts.eu-west-1.amazonaws.com");
    expect_url("ORGANIZATIONS", &aws, "https://organizations.us-east-1.amazonaws.com");
    expect_url("ECR", &cn, "https://api.ecr.cn-north-1.amazonaws.com.cn");
    expect_url("STS", &cn, "https://sts.cn-north-1.amazonaws.com.cn");
    expect_url("ORGANIZATIONS", &cn, "https://organizations.cn-northwest-1.amazonaws.com.cn");
    expect_url("ECR", &gov, "https://api.ecr.us-gov-east-1.amazonaws.com");
    expect_url("ORGANIZATIONS", &gov, "https://organizations.us-gov-west-1.amazonaws.com");
    expect_url("ECR", &fips, "https://ecr-fips.us-east-2.amazonaws.com");
    expect_url("STS", &fips, "https://sts.us-east-2.amazonaws.com");

    assert_string_equal(hgf_endpoint_signing_region("ECR", &cn), "cn-north-1");
    assert_string_equal(hgf_endpoint_signing_region("STS", &aws), "eu-west-1");
    assert_string_equal(hgf_endpoint_signing_region("ORGANIZATIONS", &aws), "us-east-1");
    assert_string_equal(hgf_endpoint_signing_region("ORGANIZATIONS", &cn), "cn-northwest-1");
    assert_string_equal(hgf_endpoint_signing_region("ORGANIZATIONS", &gov), "us-gov-west-1");
}

static void test_service_overrides(void **state)
{
    (void)state;
    hgf_registry aws;
    parse_ok(ACCT ".dkr.ecr.eu-west-1.amazonaws.com", &aws);
    setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566/", 1);
    expect_url("ECR", &aws, "http://127.0.0.1:4566");
    expect_url("STS", &aws, "http://127.0.0.1:4566");
    expect_url("ORGANIZATIONS", NULL, "http://127.0.0.1:4566");
    /* The service-specific variable wins; trailing slashes go. */
    setenv("AWS_ENDPOINT_URL_ECR", "https://ecr.sim.test:9443//", 1);
    expect_url("ECR", &aws, "https://ecr.sim.test:9443");
    expect_url("STS", &aws, "http://127.0.0.1:4566");
    /* An empty variable counts as unset. */
    setenv("AWS_ENDPOINT_URL_STS", "", 1);
    expect_url("STS", &aws, "http://127.0.0.1:4566");
    setenv("AWS_ENDPOINT_URL_STS", "http://sts.sim.test/base/", 1);
    expect_url("STS", &aws, "http://sts.sim.test/base");
    unsetenv("AWS_ENDPOINT_URL");
    expect_url("ORGANIZATIONS", &aws, "https://organizations.us-east-1.amazonaws.com");

    setenv("AWS_ENDPOINT_URL_STS", "localhost:9000", 1);
    expect_url_error("STS", &aws, 256, "AWS_ENDPOINT_URL_STS: \"localhost:9000\" is not an http");
    setenv("AWS_ENDPOINT_URL_STS", "https://", 1);
    expect_url_error("STS", &aws, 256, "AWS_ENDPOINT_URL_STS");
    setenv("AWS_ENDPOINT_URL", "ftp://x", 1);
    expect_url_error("ORGANIZATIONS", &aws, 256, "AWS_ENDPOINT_URL:");
    expect_url_error("ECR", &aws, 10, "AWS_ENDPOINT_URL_ECR: URL is longer than 9 bytes");
    clear_env(NULL);
}

static void test_service_errors(void **state)
{
    (void)state;
    hgf_registry aws;
    parse_ok(ACCT ".dkr.ecr.eu-west-1.amazonaws.com", &aws);
    expect_url_error("S3", &aws, 256, "no default endpoint for service S3");
    expect_url_error("S3", &aws, 256, "AWS_ENDPOINT_URL_S3");
    expect_url_error("ecr", &aws, 256, "service id \"ecr\"");
    expect_url_error("", &aws, 256, "service id");
    expect_url_error(NULL, &aws, 256, "service id");
    expect_url_error("ECR", NULL, 256, "no registry");
    expect_url_error("ECR", &aws, 20, "longer than 19 bytes");
    setenv("AWS_ENDPOINT_URL_S3", "http://s3.sim.test", 1);
    expect_url("S3", NULL, "http://s3.sim.test");
    unsetenv("AWS_ENDPOINT_URL_S3");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_parse_null_and_hostile),
        cmocka_unit_test(test_from_parts),
        cmocka_unit_test(test_partitions),
        cmocka_unit_test(test_region_valid),
        cmocka_unit_test_setup(test_service_defaults, clear_env),
        cmocka_unit_test_setup(test_service_overrides, clear_env),
        cmocka_unit_test_setup(test_service_errors, clear_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
