/* STS: XML replies (success, ErrorResponse, malformed), the Query form
 * body, and validation of auth specs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hgfleet/buf.h"
#include "hgfleet/credprov.h"
#include "hgfleet/err.h"
#include "hgfleet/sts.h"
#include "hgfleet/timeutil.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
#define TOKEN "IQoJb3JpZ2luX2VjEOT//////////wEaCXVzLWVhc3QtMSJHMEUCIQDtokenEXAMPLE="

/* Shapes as STS sends them (namespaced, indented, with ResponseMetadata). */
static const char ASSUME_ROLE[] =
    "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
    "  <AssumeRoleResult>\n"
    "    <SourceIdentity>Alice</SourceIdentity>\n"
    "    <AssumedRoleUser>\n"
    "      <Arn>arn:aws:sts::123456789012:assumed-role/demo/TestAR</Arn>\n"
    "      <AssumedRoleId>ARO123EXAMPLE123:TestAR</AssumedRoleId>\n"
    "    </AssumedRoleUser>\n"
    "    <Credentials>\n"
    "      <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>\n"
    "      <SecretAccessKey>" SECRET "</SecretAccessKey>\n"
    "      <SessionToken>\n       " TOKEN "\n      </SessionToken>\n"
    "      <Expiration>2019-11-09T13:34:41Z</Expiration>\n"
    "    </Credentials>\n"
    "    <PackedPolicySize>6</PackedPolicySize>\n"
    "  </AssumeRoleResult>\n"
    "  <ResponseMetadata>\n"
    "    <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>\n"
    "  </ResponseMetadata>\n"
    "</AssumeRoleResponse>\n";

static const char WEB_IDENTITY[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
    "  <AssumeRoleWithWebIdentityResult>\n"
    "    "
    "<SubjectFromWebIdentityToken>amzn1.account.AF6RHO7KZU5XRVQJGXK6HB56KR2A</"
    "SubjectFromWebIdentityToken>\n"
    "    <Audience>client.5498841531868486423.1548@apps.example.com</Audience>\n"
    "    <AssumedRoleUser>\n"
    "      <Arn>arn:aws:sts::123456789012:assumed-role/FederatedWebIdentityRole/app1</Arn>\n"
    "      <AssumedRoleId>AROACLKWSDQRAOEXAMPLE:app1</AssumedRoleId>\n"
    "    </AssumedRoleUser>\n"
    "    <Credentials>\n"
    "      <SessionToken>" TOKEN "</SessionToken>\n"
    "      <SecretAccessKey>" SECRET "</SecretAccessKey>\n"
    "      <Expiration>2014-10-24T23:00:23.123Z</Expiration>\n"
    "      <AccessKeyId>ASgeIAIOSFODNN7EXAMPLE</AccessKeyId>\n"
    "    </Credentials>\n"
    "    <Provider>www.amazon.com</Provider>\n"
    "  </AssumeRoleWithWebIdentityResult>\n"
    "  "
    "<ResponseMetadata><RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId></"
    "ResponseMetadata>\n"
    "</AssumeRoleWithWebIdentityResponse>\n";

static const char CALLER[] =
    "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
    "  <GetCallerIdentityResult>\n"
    "    <Arn>arn:aws:iam::123456789012:user/Alice</Arn>\n"
    "    <UserId>AKIAI44QH8DHBEXAMPLE</UserId>\n"
    "    <Account>123456789012</Account>\n"
    "  </GetCallerIdentityResult>\n"
    "  <ResponseMetadata>\n"
    "    <RequestId>01234567-89ab-cdef-0123-456789abcdef</RequestId>\n"
    "  </ResponseMetadata>\n"
    "</GetCallerIdentityResponse>\n";

static const char DENIED[] =
    "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
    "  <Error>\n"
    "    <Type>Sender</Type>\n"
    "    <Code>AccessDenied</Code>\n"
    "    <Message>User: arn:aws:iam::111111111111:user/x is not authorized to perform: "
    "sts:AssumeRole on resource: arn:aws:iam::222222222222:role/r</Message>\n"
    "  </Error>\n"
    "  <RequestId>4d3a2c1b-0000-1111-2222-333344445555</RequestId>\n"
    "</ErrorResponse>\n";

static void test_parse_assume_role(void **state)
{
    hgf_sts_result r;
    hgf_err err;
    assert_int_equal(hgf_sts_parse_response(ASSUME_ROLE, strlen(ASSUME_ROLE), &r, &err), 0);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.action, "AssumeRole");
    assert_string_equal(r.creds.access_key_id, "ASIAIOSFODNN7EXAMPLE");
    assert_string_equal(r.creds.secret_access_key, SECRET);
    assert_string_equal(r.creds.session_token, TOKEN); /* surrounding whitespace trimmed */
    assert_int_equal(r.creds.expiration, hgf_time_parse_iso("2019-11-09T13:34:41Z"));
    assert_int_equal(r.creds.expiration, 1573306481);
    assert_string_equal(r.creds.source, "assume_role");
    assert_string_equal(r.arn, "arn:aws:sts::123456789012:assumed-role/demo/TestAR");
    assert_string_equal(r.user_id, "ARO123EXAMPLE123:TestAR");
    assert_string_equal(r.request_id, "c6104cbe-af31-11e0-8154-cbc7ccf896c7");
    hgf_creds_clear(&r.creds);
}

static void test_parse_web_identity(void **state)
{
    hgf_sts_result r;
    assert_int_equal(hgf_sts_parse_response(WEB_IDENTITY, strlen(WEB_IDENTITY), &r, NULL), 0);
    assert_string_equal(r.action, "AssumeRoleWithWebIdentity");
    assert_string_equal(r.creds.access_key_id, "ASgeIAIOSFODNN7EXAMPLE");
    assert_string_equal(r.creds.session_token, TOKEN);
    assert_int_equal(r.creds.expiration, 1414191623); /* fraction dropped */
    assert_string_equal(r.creds.source, "web_identity");
    assert_string_equal(r.arn,
                        "arn:aws:sts::123456789012:assumed-role/FederatedWebIdentityRole/app1");
    assert_string_equal(r.request_id, "ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE");
    hgf_creds_clear(&r.creds);
}

static void test_parse_caller_identity(void **state)
{
    hgf_sts_result r;
    hgf_err err;
    assert_int_equal(hgf_sts_parse_response(CALLER, strlen(CALLER), &r, &err), 0);
    assert_string_equal(r.action, "GetCallerIdentity");
    assert_string_equal(r.arn, "arn:aws:iam::123456789012:user/Alice");
    assert_string_equal(r.account, "123456789012");
    assert_string_equal(r.user_id, "AKIAI44QH8DHBEXAMPLE");
    assert_null(r.creds.access_key_id);
}

static void test_parse_error_response(void **state)
{
    hgf_sts_result r;
    hgf_err err;
    assert_int_equal(hgf_sts_parse_response(DENIED, strlen(DENIED), &r, &err), HGF_EAWS);
    assert_int_equal(r.rc, HGF_EAWS);
    assert_string_equal(err.aws_code, "AccessDenied");
    assert_string_equal(r.err.aws_code, "AccessDenied");
    assert_string_equal(err.msg, "STS: AccessDenied: User: arn:aws:iam::111111111111:user/x is not "
                                 "authorized to perform: sts:AssumeRole on resource: "
                                 "arn:aws:iam::222222222222:role/r");
    assert_string_equal(r.request_id, "4d3a2c1b-0000-1111-2222-333344445555");
    assert_null(r.creds.access_key_id);

    static const char expired[] =
        "<ErrorResponse><Error><Type>Sender</Type><Code>ExpiredToken</Code>"
        "<Message>The security token included in the request is expired</Message></Error>"
        "</ErrorResponse>";
    assert_int_equal(hgf_sts_parse_response(expired, strlen(expired), &r, &err), HGF_EAWS);
    assert_string_equal(err.aws_code, "ExpiredToken");
    assert_non_null(strstr(err.msg, "ExpiredToken: The security token"));
}

static void assert_parse_fails(const char *xml, size_t len, int code, const char *needle)
{
    hgf_sts_result r;
    hgf_err err;
    hgf_err_clear(&err);
    int rc = hgf_sts_parse_response(xml, len, &r, &err);
    if (rc != code || !strstr(err.msg, needle))
        fail_msg("parse of \"%.60s\": rc %d (want %d), msg \"%s\" (want \"%s\")", xml ? xml : "",
                 rc, code, err.msg, needle);
    assert_null(r.creds.access_key_id);
    assert_null(strstr(err.msg, SECRET));
    assert_null(strstr(err.msg, TOKEN));
}

static void test_parse_malformed(void **state)
{
    assert_parse_fails("", 0, HGF_EHTTP, "not valid XML");
    assert_parse_fails(NULL, 0, HGF_EHTTP, "not valid XML");
    assert_parse_fails("{\"__type\":\"x\"}", 14, HGF_EHTTP, "not valid XML");
    /* Cut in the middle: a truncated reply must not yield credentials. */
    assert_parse_fails(ASSUME_ROLE, strlen(ASSUME_ROLE) / 2, HGF_EHTTP, "not valid XML");
    assert_parse_fails("<a><b></a>", 10, HGF_EHTTP, "mismatched tag");
    assert_parse_fails("<Foo/>", 6, HGF_EHTTP, "unexpected reply element <Foo>");

    /* Well-formed but missing a credential field. */
    static const char no_token[] =
        "<AssumeRoleResponse><AssumeRoleResult><Credentials>"
        "<AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId><SecretAccessKey>" SECRET
        "</SecretAccessKey>"
        "<Expiration>2019-11-09T13:34:41Z</Expiration></Credentials></AssumeRoleResult>"
        "</AssumeRoleResponse>";
    assert_parse_fails(no_token, strlen(no_token), HGF_EHTTP, "no Credentials/SessionToken");
    static const char bad_time[] =
        "<AssumeRoleResponse><AssumeRoleResult><Credentials>"
        "<AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId><SecretAccessKey>" SECRET
        "</SecretAccessKey>"
        "<SessionToken>" TOKEN "</SessionToken><Expiration>tomorrow</Expiration></Credentials>"
        "</AssumeRoleResult></AssumeRoleResponse>";
    assert_parse_fails(bad_time, strlen(bad_time), HGF_EHTTP, "not an ISO 8601 time");
    static const char no_account[] =
        "<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>arn:aws:iam::1:user/a</Arn>"
        "</GetCallerIdentityResult></GetCallerIdentityResponse>";
    assert_parse_fails(no_account, strlen(no_account), HGF_EHTTP, "no Account");

    /* Entity declarations (the billion-laughs family) are refused outright. */
    static const char bomb[] =
        "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\">"
        "<!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">]><ErrorResponse><Error><Code>&b;</Code>"
        "</Error></ErrorResponse>";
    assert_parse_fails(bomb, strlen(bomb), HGF_EHTTP, "declares XML entities");

    /* An oversized element stops the parser rather than growing without bound. */
    size_t big = 70 * 1024;
    char *huge = malloc(big + 128);
    assert_non_null(huge);
    int n = snprintf(huge, 64, "<ErrorResponse><Error><Message>");
    memset(huge + n, 'x', big);
    strcpy(huge + n + big, "</Message></Error></ErrorResponse>");
    assert_parse_fails(huge, strlen(huge), HGF_EHTTP, "longer than");
    free(huge);

    /* Every proper prefix of a real reply fails cleanly (the last byte is
     * the newline after the closing tag, so stop before it). */
    for (size_t i = 0; i < strlen(ASSUME_ROLE) - 1; i++) {
        hgf_sts_result r;
        hgf_err err;
        int rc = hgf_sts_parse_response(ASSUME_ROLE, i, &r, &err);
        assert_int_not_equal(rc, 0);
        assert_null(r.creds.access_key_id);
        assert_null(strstr(err.msg, SECRET));
    }
}

static void test_form_body(void **state)
{
    hgf_buf b = HGF_BUF_INIT;
    hgf_err err;
    const char *params[] = {"RoleArn",
                            "arn:aws:iam::123456789012:role/path/x-y_z",
                            "RoleSessionName",
                            "hgfleet-1@a.b",
                            "ExternalId",
                            "a+b=c,d.e@f:g/h-i_j",
                            "Policy",
                            NULL, /* left out */
                            "DurationSeconds",
                            "3600",
                            NULL};
    assert_int_equal(hgf_sts_form_body("AssumeRole", params, &b, &err), 0);
    assert_string_equal(hgf_buf_str(&b),
                        "Action=AssumeRole&Version=2011-06-15"
                        "&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fpath%2Fx-y_z"
                        "&RoleSessionName=hgfleet-1%40a.b"
                        "&ExternalId=a%2Bb%3Dc%2Cd.e%40f%3Ag%2Fh-i_j"
                        "&DurationSeconds=3600");
    hgf_buf_reset(&b);
    /* Space, '&', '%', '~' and UTF-8: nothing can break out of its value. */
    const char *odd[] = {"WebIdentityToken", "a b&c=d%e~f\xc3\xa9", NULL};
    assert_int_equal(hgf_sts_form_body("AssumeRoleWithWebIdentity", odd, &b, &err), 0);
    assert_string_equal(hgf_buf_str(&b), "Action=AssumeRoleWithWebIdentity&Version=2011-06-15"
                                         "&WebIdentityToken=a%20b%26c%3Dd%25e~f%C3%A9");
    hgf_buf_reset(&b);
    assert_int_equal(hgf_sts_form_body("GetCallerIdentity", NULL, &b, &err), 0);
    assert_string_equal(hgf_buf_str(&b), "Action=GetCallerIdentity&Version=2011-06-15");
    assert_int_equal(hgf_sts_form_body("Assume&Role", NULL, &b, &err), HGF_EINPUT);
    assert_int_equal(hgf_sts_form_body("", NULL, &b, &err), HGF_EINPUT);
    hgf_buf_free(&b);
}

/* ---- validation -------------------------------------------------------- */

#define ROLE "arn:aws:iam::123456789012:role/hgfleet-reader"
#define VIA "arn:aws:iam::111111111111:role/hub"

static hgf_auth_spec role_spec(void)
{
    return (hgf_auth_spec){.mode = "assume_role", .role_arn = ROLE, .region = "us-east-1"};
}

static void expect_ok(const hgf_auth_spec *s)
{
    hgf_err err;
    hgf_err_clear(&err);
    if (hgf_credprov_validate(s, &err) != 0)
        fail_msg("expected a valid spec, got: %s", err.msg);
}

static void expect_bad(const hgf_auth_spec *s, const char *flag, const char *needle)
{
    hgf_err err;
    hgf_err_clear(&err);
    int rc = hgf_credprov_validate(s, &err);
    if (rc != HGF_EINPUT || strncmp(err.msg, flag, strlen(flag)) || !strstr(err.msg, needle))
        fail_msg("rc %d, msg \"%s\": want HGF_EINPUT, \"%s...\" containing \"%s\"", rc, err.msg,
                 flag, needle);
}

static void test_validate_role_arn(void **state)
{
    hgf_auth_spec s = role_spec();
    expect_ok(&s);
    const char *good[] = {"arn:aws:iam::123456789012:role/a",
                          "arn:aws:iam::123456789012:role/service-role/my.role+x=y,z@w_v-u",
                          "arn:aws-cn:iam::123456789012:role/a/b/c/name",
                          "arn:aws-us-gov:iam::123456789012:role/" /* 64-char name */
                          "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        s.role_arn = good[i];
        expect_ok(&s);
    }
    struct {
        const char *arn, *why;
    } bad[] = {
        {"hgfleet-reader", "20 to 2048"},
        {"xrn:aws:iam::123456789012:role/abc", "start with arn:"},
        {"arn:azure:iam::123456789012:role/abc", "unknown partition"},
        {"arn:aws:s3:::bucket/with/long/name", "service must be iam"},
        {"arn:aws:iam:us-east-1:123456789012:role/a", "service must be iam"},
        {"arn:aws:iam::12345678901:role/abcdef", "12 digits"},
        {"arn:aws:iam::1234567890123:role/abcde", "12 digits"},
        {"arn:aws:iam::123456789012:user/alice", "role/<name>"},
        {"arn:aws:iam::123456789012:role/", "role name"},
        {"arn:aws:iam::123456789012:role/a b", "role name"},
        {"arn:aws:iam::123456789012:role/p//name", "role path"},
        {"arn:aws:iam::123456789012:role/pa th/name", "role path"},
        {"arn:aws:iam::123456789012:role/"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
         "role name"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s.role_arn = bad[i].arn;
        expect_bad(&s, "--role-arn: expected arn:aws:iam::<12-digit account>:role/<name>, got \"",
                   bad[i].why);
    }
    s = role_spec();
    s.role_arn = "arn:aws:iam::123:role/\x01\n";
    expect_bad(&s, "--role-arn:", "got \"arn:aws:iam::123:role/??\""); /* no raw control chars */
    s = role_spec();
    s.role_arn = NULL;
    expect_bad(&s, "--role-arn:", "required");
}

static void test_validate_external_id_and_session(void **state)
{
    hgf_auth_spec s = role_spec();
    s.external_id = "a+b=c,d.e@f:g/h-i_j";
    expect_ok(&s);
    char max[1225];
    memset(max, 'x', 1224);
    max[1224] = '\0';
    s.external_id = max;
    expect_ok(&s);
    char over[1226];
    memset(over, 'x', 1225);
    over[1225] = '\0';
    s.external_id = over;
    expect_bad(&s, "--external-id:", "2 to 1224 characters of [\\w+=,.@:/-]");
    const char *bad_ext[] = {"x", "", "has space", "semi;colon", "quote\"", "t\xc3\xa9"};
    for (size_t i = 0; i < sizeof bad_ext / sizeof bad_ext[0]; i++) {
        s.external_id = bad_ext[i];
        expect_bad(&s, "--external-id:", "2 to 1224 characters");
    }
    s = role_spec();
    s.session_name = "hgfleet-1@x.y+z=w,v_u";
    expect_ok(&s);
    const char *bad_session[] = {
        "a", "colon:no", "slash/no", "sp ace",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    for (size_t i = 0; i < sizeof bad_session / sizeof bad_session[0]; i++) {
        s.session_name = bad_session[i];
        expect_bad(&s, "--session-name:", "2 to 64 characters of [\\w+=,.@-]");
    }
}

static void test_validate_duration_and_chain(void **state)
{
    hgf_auth_spec s = role_spec();
    int ok[] = {0, 900, 3600, 43200};
    for (size_t i = 0; i < 4; i++) {
        s.duration_seconds = ok[i];
        expect_ok(&s);
    }
    int bad[] = {899, 43201, -1, 1};
    for (size_t i = 0; i < 4; i++) {
        s.duration_seconds = bad[i];
        expect_bad(&s, "--duration:", "900 to 43200");
    }
    s.via_role_arn = VIA;
    s.duration_seconds = 3600;
    expect_ok(&s);
    s.duration_seconds = 3601;
    expect_bad(&s, "--duration:", "STS caps role chains (--via-role-arn) at 1 hour");
    s.duration_seconds = 0;
    s.via_role_arn = "arn:aws:iam::111111111111:user/hub";
    expect_bad(&s, "--via-role-arn: expected arn:aws:iam::", "role/<name>");

    hgf_auth_spec h = {.mode = "host", .via_role_arn = VIA};
    expect_bad(&h, "--via-role-arn:", "requires --role-arn");
    h = (hgf_auth_spec){.mode = "host", .external_id = "abc"};
    expect_bad(&h, "--external-id:", "requires --role-arn");
    h = (hgf_auth_spec){.mode = "host", .duration_seconds = 900};
    expect_bad(&h, "--duration:", "requires --role-arn");
    h = (hgf_auth_spec){.mode = "host", .session_name = "abc"};
    expect_bad(&h, "--session-name:", "requires --role-arn");
}

static void test_validate_modes_and_keys(void **state)
{
    hgf_auth_spec s = {.mode = "host"};
    expect_ok(&s);
    s.region = "eu-central-2";
    expect_ok(&s);
    s.region = "mars-1";
    expect_bad(&s, "region:", "not an AWS region");
    s = (hgf_auth_spec){
        .mode = "static", .access_key_id = "AKIAIOSFODNN7EXAMPLE", .secret_access_key = SECRET};
    expect_ok(&s);
    s.secret_access_key = NULL;
    expect_bad(&s, "--secret-access-key-file:", "required with --access-key-id");
    s = (hgf_auth_spec){
        .mode = "static", .access_key_id = "akia-lower-case-x", .secret_access_key = SECRET};
    expect_bad(&s, "--access-key-id:", "upper-case");
    s = (hgf_auth_spec){.mode = "static"};
    expect_bad(&s, "--access-key-id:", "required");
    s = (hgf_auth_spec){
        .mode = "host", .access_key_id = "AKIAIOSFODNN7EXAMPLE", .secret_access_key = SECRET};
    expect_bad(&s, "--access-key-id:", "host mode");
    s = (hgf_auth_spec){.mode = "host", .role_arn = ROLE};
    expect_bad(&s, "--role-arn:", "only used in assume_role");
    s = role_spec();
    s.access_key_id = "AKIAIOSFODNN7EXAMPLE";
    s.secret_access_key = SECRET;
    expect_ok(&s);
    s.access_key_id = NULL;
    expect_bad(&s, "--access-key-id:", "required with --secret-access-key-file");
    s = (hgf_auth_spec){.mode = "sso"};
    expect_bad(&s, "auth mode:", "static, host or assume_role, got \"sso\"");
    s = (hgf_auth_spec){0};
    expect_bad(&s, "auth mode:", "got \"\"");
    hgf_err err;
    assert_int_equal(hgf_credprov_validate(NULL, &err), HGF_EINPUT);
    /* No error ever quotes the secret. */
    s = (hgf_auth_spec){.mode = "static", .access_key_id = "AKIA", .secret_access_key = SECRET};
    assert_int_equal(hgf_credprov_validate(&s, &err), HGF_EINPUT);
    assert_null(strstr(err.msg, SECRET));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_assume_role),
        cmocka_unit_test(test_parse_web_identity),
        cmocka_unit_test(test_parse_caller_identity),
        cmocka_unit_test(test_parse_error_response),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_form_body),
        cmocka_unit_test(test_validate_role_arn),
        cmocka_unit_test(test_validate_external_id_and_session),
        cmocka_unit_test(test_validate_duration_and_chain),
        cmocka_unit_test(test_validate_modes_and_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
