/* One case per row of the guide's troubleshooting table, plus the pitfalls
 * that connection test names (token scope, ExternalId, chain duration). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "hgfleet/diagnose.h"

static hgf_err aws(const char *code, const char *msg)
{
    hgf_err e;
    hgf_err_set(&e, HGF_EAWS, "%s: %s", code, msg);
    strcpy(e.aws_code, code);
    return e;
}

static hgf_diag_ctx ctx(const char *step)
{
    hgf_diag_ctx c = {.step = step, .auth_mode = "assume_role",
                      .caller_arn = "arn:aws:sts::111111111111:assumed-role/harborguard-sensor/s",
                      .caller_account = "111111111111", .registry_account = "111111111111",
                      .region = "us-east-1", .role_arn = "arn:aws:iam::111111111111:role/harborguard-sensor",
                      .clock_offset = HGF_DIAG_NO_OFFSET};
    return c;
}

#define HAS(field, text) assert_non_null(strstr((field), (text)))

static void test_scans_denied(void **state)
{
    hgf_err e = aws("DENIED", "not authorized to perform: ecr:BatchGetImage");
    hgf_diag_ctx c = ctx("ManifestHead");
    c.http_status = 403;
    hgf_diagnosis d;
    hgf_diag_classify(&e, &c, &d);
    assert_string_equal(d.code, "pull_denied");
    HAS(d.symptom, "Repos enumerate, but scans fail with denied");
    HAS(d.cause, "ecr:BatchGetImage");
    HAS(d.cause, "ecr:GetDownloadUrlForLayer");
}

static void test_zero_repos(void **state)
{
    hgf_diag_ctx c = ctx("DescribeRepositories");
    c.region = "eu-west-1";
    hgf_diagnosis d;
    hgf_diag_zero_repositories(&c, &d);
    assert_string_equal(d.code, "zero_repositories");
    HAS(d.cause, "different region than the URL");
    HAS(d.cause, "eu-west-1");
}

static void test_clock_drift(void **state)
{
    hgf_err e = aws("InvalidSignatureException",
                    "Signature expired: 20261130T031500Z is now earlier than 20261130T033000Z "
                    "(20261130T033500Z - 5 min.)");
    hgf_diag_ctx c = ctx("DescribeRepositories");
    hgf_diagnosis d;
    hgf_diag_classify(&e, &c, &d);
    assert_string_equal(d.code, "clock_drift");
    HAS(d.symptom, "InvalidSignatureException");
    HAS(d.cause, "Clock drift on the sensor host > 5 minutes");
    assert_int_equal(d.clock_offset, 1200);
    HAS(d.cause, "1200 s behind");
    /* A plain signature mismatch with a sane clock is bad keys, not drift. */
    hgf_err e2 = aws("InvalidSignatureException", "The request signature we calculated does not match");
    c.clock_offset = 3;
    hgf_diag_classify(&e2, &c, &d);
    assert_string_equal(d.code, "invalid_credentials");
    c.clock_offset = -900;
    hgf_diag_classify(&e2, &c, &d);
    assert_string_equal(d.code, "clock_drift");
    HAS(d.cause, "900 s ahead");
}

static void test_cross_account(void **state)
{
    hgf_err e = aws("DENIED", "because no resource-based policy allows the ecr:BatchGetImage action");
    hgf_diag_ctx c = ctx("ManifestHead");
    c.registry_account = "222222222222";
    c.http_status = 403;
    hgf_diagnosis d;
    hgf_diag_classify(&e, &c, &d);
    assert_string_equal(d.code, "cross_account_pull");
    HAS(d.symptom, "Cross-account: list works, pull fails");
    HAS(d.cause, "Repository policy missing on the target account 222222222222");
}

static void test_role_chain_expired(void **state)
{
    hgf_err e = aws("ExpiredTokenException", "The security token included in the request is expired");
    hgf_diag_ctx c = ctx("DescribeImages");
    c.role_chain = 1;
    hgf_diagnosis d;
    hgf_diag_classify(&e, &c, &d);
    assert_string_equal(d.code, "role_chain_expired");
    HAS(d.symptom, "eventually 401s");
    HAS(d.fix, "AWS_ROLE_ARN");
    HAS(d.fix, "IRSA");
    HAS(d.fix, "IMDSv2");
}

static void test_token_scope(void **state)
{
    hgf_err e = aws("AccessDeniedException", "User: x is not authorized to perform: "
                                             "ecr:GetAuthorizationToken on resource: *");
    hgf_diag_ctx c = ctx("GetAuthorizationToken");
    hgf_diagnosis d;
    hgf_diag_classify(&e, &c, &d);
    assert_string_equal(d.code, "auth_token_scope");
    HAS(d.fix, "\"Resource\": \"*\"");
}

static void test_external_id(void **state)
{
    hgf_err e = aws("AccessDenied", "User: arn:aws:iam::111111111111:user/ci is not authorized to "
                                    "perform: sts:AssumeRole on resource: arn:aws:iam::2:role/r");
    hgf_diag_ctx c = ctx("AssumeRole");
    c.has_external_id = 1;
    hgf_diagnosis d;
    hgf_diag_classify(&e, &c, &d);
    assert_string_equal(d.code, "assume_role_denied");
    HAS(d.cause, "Wrong ExternalId");
    hgf_err v = aws("ValidationError", "The requested DurationSeconds exceeds the 1 hour session "
                                       "limit for roles assumed by role chaining.");
    hgf_diag_classify(&v, &c, &d);
    assert_string_equal(d.code, "role_chain_duration");
}

static void test_access_denied_names_action(void **state)
{
    hgf_err e = aws("AccessDeniedException", "User: arn:aws:iam::1:user/ci is not authorized to "
                                             "perform: ecr:DescribeImages on resource: arn");
    hgf_diag_ctx c = ctx("DescribeImages");
    hgf_diagnosis d;
    hgf_diag_classify(&e, &c, &d);
    assert_string_equal(d.code, "access_denied");
    HAS(d.cause, "ecr:DescribeImages");
    HAS(d.cause, "harborguard-sensor/s");
    /* A sync does not know its caller: AWS's message names it. */
    c.caller_arn = NULL;
    hgf_diag_classify(&e, &c, &d);
    HAS(d.cause, "The IAM principal arn:aws:iam::1:user/ci lacks ecr:DescribeImages");
    HAS(d.fix, "region (us-east-1)"); /* the wrong-region pitfall */
}

static void test_offset_parse(void **state)
{
    assert_int_equal(hgf_diag_offset_from_message("nothing here"), HGF_DIAG_NO_OFFSET);
    assert_int_equal(hgf_diag_offset_from_message(
                         "Signature expired: 20261130T040000Z is now earlier than "
                         "20261130T034000Z (20261130T034500Z - 5 min.)"),
                     -900);
}

/* STS answers a wrong secret with SignatureDoesNotMatch: the clock is the
 * cause only when a skew was seen. */
static void test_wrong_secret_is_not_clock(void **state)
{
    hgf_err e = aws("SignatureDoesNotMatch", "The request signature we calculated does not match "
                                             "the signature you provided. Check your AWS Secret "
                                             "Access Key and signing method.");
    hgf_diag_ctx c = ctx("GetCallerIdentity");
    c.auth_mode = "static";
    hgf_diagnosis d;
    hgf_diag_classify(&e, &c, &d);
    assert_string_equal(d.code, "invalid_credentials");
    HAS(d.cause, "secret access key");
    c.clock_offset = 0;
    hgf_diag_classify(&e, &c, &d);
    assert_string_equal(d.code, "invalid_credentials");
    c.clock_offset = -1200;
    hgf_diag_classify(&e, &c, &d);
    assert_string_equal(d.code, "clock_drift");
    hgf_err skew = aws("SignatureDoesNotMatch",
                       "Signature expired: 20261130T031500Z is now earlier than 20261130T033000Z "
                       "(20261130T033500Z - 5 min.)");
    c.clock_offset = HGF_DIAG_NO_OFFSET;
    hgf_diag_classify(&skew, &c, &d);
    assert_string_equal(d.code, "clock_drift");
}

/* A scan knows no caller: AWS's message names it, and its account tells a
 * cross-account pull from a missing permission. */
static void test_pull_caller_from_message(void **state)
{
    hgf_err e = aws("DENIED", "User: arn:aws:iam::222222222222:user/full is not authorized to "
                              "perform: ecr:BatchGetImage on resource: arn:aws:ecr:us-east-1:"
                              "111111111111:repository/app because no resource-based policy "
                              "allows the ecr:BatchGetImage action");
    hgf_diag_ctx c = {.step = "ManifestHead", .auth_mode = "static",
                      .registry_account = "111111111111", .region = "us-east-1",
                      .clock_offset = HGF_DIAG_NO_OFFSET, .http_status = 403};
    hgf_diagnosis d;
    hgf_diag_classify(&e, &c, &d);
    assert_string_equal(d.code, "cross_account_pull");
    HAS(d.cause, "arn:aws:iam::222222222222:user/full");
    c.registry_account = "222222222222";
    hgf_diag_classify(&e, &c, &d);
    assert_string_equal(d.code, "pull_denied");
    HAS(d.cause, "arn:aws:iam::222222222222:user/full");
    hgf_err deny = aws("DENIED", "User: arn:aws:iam::222222222222:user/full is not authorized to "
                                 "perform: ecr:BatchGetImage on resource: x with an explicit deny");
    hgf_diag_classify(&deny, &c, &d);
    HAS(d.cause, "explicit Deny");
    hgf_err anon = aws("DENIED", "denied");
    hgf_diag_classify(&anon, &c, &d);
    assert_string_equal(d.code, "pull_denied");
    HAS(d.cause, "no repository policy there allows it");
}

static void test_assume_denied_names_every_cause(void **state)
{
    hgf_err e = aws("AccessDenied", "User: arn:aws:iam::111111111111:user/noassume is not "
                                    "authorized to perform: sts:AssumeRole on resource: r");
    hgf_diag_ctx c = ctx("AssumeRole");
    c.caller_arn = NULL;
    hgf_diagnosis d;
    hgf_diag_classify(&e, &c, &d);
    assert_string_equal(d.code, "assume_role_denied");
    HAS(d.cause, "arn:aws:iam::111111111111:user/noassume");
    HAS(d.cause, "lacks sts:AssumeRole");
    HAS(d.cause, "does not name the caller");
}

/* The host chain found nothing: the fix names the places it looked. */
static void test_host_credentials(void **state)
{
    hgf_err e;
    hgf_err_set(&e, HGF_EFAIL, "no credentials: environment unset, no web identity token, no "
                               "container endpoint, IMDS: connection refused");
    hgf_diag_ctx c = ctx("credentials");
    c.auth_mode = "host";
    hgf_diagnosis d;
    hgf_diag_classify(&e, &c, &d);
    assert_string_equal(d.code, "host_credentials");
    HAS(d.fix, "AWS_ROLE_ARN");
    HAS(d.fix, "IRSA");
    HAS(d.fix, "IMDSv2");
    HAS(d.cause, "IMDS: connection refused");
    c.auth_mode = "assume_role"; /* its source is the host chain too */
    hgf_diag_classify(&e, &c, &d);
    assert_string_equal(d.code, "host_credentials");
    c.auth_mode = "static";
    hgf_diag_classify(&e, &c, &d);
    assert_string_equal(d.code, "aws_error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scans_denied),     cmocka_unit_test(test_zero_repos),
        cmocka_unit_test(test_clock_drift),      cmocka_unit_test(test_cross_account),
        cmocka_unit_test(test_role_chain_expired), cmocka_unit_test(test_token_scope),
        cmocka_unit_test(test_external_id),      cmocka_unit_test(test_access_denied_names_action),
        cmocka_unit_test(test_offset_parse),     cmocka_unit_test(test_wrong_secret_is_not_clock),
        cmocka_unit_test(test_pull_caller_from_message),
        cmocka_unit_test(test_assume_denied_names_every_cause),
        cmocka_unit_test(test_host_credentials),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
