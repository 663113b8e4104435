#include "hgfleet/diagnose.h"
#include "hgfleet/sigv4.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void set(hgf_diagnosis *d, const char *code, const char *symptom)
{
    snprintf(d->code, sizeof d->code, "%s", code);
    snprintf(d->symptom, sizeof d->symptom, "%s", symptom);
}

static int tls_failure(const hgf_err *err);

static int code_is(const hgf_err *err, const char *code)
{
    return !strcmp(err->aws_code, code);
}

static int msg_has(const hgf_err *err, const char *needle)
{
    return strstr(err->msg, needle) != NULL;
}

long hgf_diag_offset_from_message(const char *m)
{
    const char *p = m ? strstr(m, "Signature expired: ") : NULL;
    if (!p)
        p = m ? strstr(m, "Signature not yet current: ") : NULL;
    if (!p)
        return HGF_DIAG_NO_OFFSET;
    char signed_at[17] = "", server_now[17] = "";
    const char *a = strchr(p, ':') + 2;
    const char *paren = strchr(a, '(');
    if (!paren || sscanf(a, "%16s", signed_at) != 1 || sscanf(paren + 1, "%16s", server_now) != 1)
        return HGF_DIAG_NO_OFFSET;
    time_t t1 = hgf_sigv4_parse_amz_date(signed_at), t2 = hgf_sigv4_parse_amz_date(server_now);
    return t1 < 0 || t2 < 0 ? HGF_DIAG_NO_OFFSET : (long)(t2 - t1);
}

static void clock_drift(const hgf_err *err, const hgf_diag_ctx *ctx, hgf_diagnosis *d)
{
    long off = ctx->clock_offset != HGF_DIAG_NO_OFFSET ? ctx->clock_offset
                                                       : hgf_diag_offset_from_message(err->msg);
    d->clock_offset = off;
    set(d, "clock_drift", "\"InvalidSignatureException\"");
    if (off != HGF_DIAG_NO_OFFSET)
        snprintf(d->cause, sizeof d->cause,
                 "Clock drift on the sensor host > 5 minutes: this host's clock is %ld s %s AWS's",
                 labs(off), off > 0 ? "behind" : "ahead of");
    else
        snprintf(d->cause, sizeof d->cause, "Clock drift on the sensor host > 5 minutes");
    snprintf(d->fix, sizeof d->fix,
             "Synchronise the host clock (chrony/NTP, or the Amazon Time Sync Service at "
             "169.254.169.123). hgfleet corrects its own signing time from AWS's Date header and "
             "retries once, but other tools on the host will keep failing.");
}

static void role_chain_expired(const hgf_diag_ctx *ctx, hgf_diagnosis *d)
{
    set(d, "role_chain_expired", "Sensor mode authenticates but eventually 401s");
    snprintf(d->cause, sizeof d->cause,
             "Role-chain credentials expired and were not refreshed (auth mode %s%s)",
             ctx->auth_mode ? ctx->auth_mode : "?", ctx->role_chain ? ", two-hop chain" : "");
    snprintf(d->fix, sizeof d->fix,
             "Confirm AWS_ROLE_ARN and IRSA (AWS_WEB_IDENTITY_TOKEN_FILE mounted and the service "
             "account annotated with eks.amazonaws.com/role-arn) or IMDSv2 access "
             "(hop limit >= 2 for pods) so credentials can be refreshed. A chained role session "
             "lasts at most 1 hour.");
}

/* AWS names the caller in a denial the job could not attribute: "User:
 * arn:aws:iam::<account>:... is not authorized to perform: ...". */
static void caller_from_message(const hgf_err *err, char arn[256], char account[13])
{
    const char *user = strstr(err->msg, "User: ");
    arn[0] = account[0] = '\0';
    if (!user || sscanf(user + 6, "%255[^ ]", arn) != 1)
        return;
    const char *p = strstr(arn, "::");
    if (p && strspn(p + 2, "0123456789") == 12)
        snprintf(account, 13, "%.12s", p + 2);
}

static void assume_denied(const hgf_err *err, const hgf_diag_ctx *ctx, hgf_diagnosis *d)
{
    char arn[256], account[13];
    caller_from_message(err, arn, account);
    const char *caller = ctx->caller_arn ? ctx->caller_arn : *arn ? arn : "(the caller)";
    const char *role = ctx->role_arn ? ctx->role_arn : "the role";
    set(d, "assume_role_denied", "AssumeRole is denied");
    /* STS words all of these the same way ("not authorized to perform:
     * sts:AssumeRole"), so the cause lists them rather than guess. */
    if (ctx->has_external_id)
        snprintf(d->cause, sizeof d->cause,
                 "Wrong ExternalId (the trust policy's sts:ExternalId condition differs from "
                 "--external-id), or the trust policy of %s does not name the caller %s, or the "
                 "caller's own policy lacks sts:AssumeRole on it, or the role does not exist",
                 role, caller);
    else
        snprintf(d->cause, sizeof d->cause,
                 "The trust policy of %s does not name the caller %s, or the caller's own policy "
                 "lacks sts:AssumeRole on it, or the role does not exist",
                 role, caller);
    snprintf(d->fix, sizeof d->fix,
             "In the role's account, add the caller's ARN to the trust policy (Principal.AWS) "
             "with the same sts:ExternalId condition as --external-id, and allow sts:AssumeRole "
             "on the role in the caller's own policy.");
}

/* The host's own chain (environment, IRSA web identity, container endpoint,
 * IMDSv2) gave nothing usable: the guide's fix for row 5 names the same
 * three places. */
static void host_credentials(const hgf_err *err, hgf_diagnosis *d)
{
    set(d, "host_credentials", "The host's own credentials cannot be obtained");
    snprintf(d->cause, sizeof d->cause,
             "No provider of the host's credential chain (environment, IRSA web identity, "
             "ECS/EKS container endpoint, IMDSv2) returned credentials: %.400s", err->msg);
    snprintf(d->fix, sizeof d->fix,
             "Confirm AWS_ROLE_ARN and IRSA (AWS_WEB_IDENTITY_TOKEN_FILE mounted and the service "
             "account annotated with eks.amazonaws.com/role-arn), or EKS Pod Identity / ECS "
             "(AWS_CONTAINER_CREDENTIALS_FULL_URI and its token), or IMDSv2 access (hop limit >= "
             "2 for pods); or give the connection static keys or a role.");
}

static void chain_duration(hgf_diagnosis *d)
{
    set(d, "role_chain_duration", "AssumeRole rejects the session duration");
    snprintf(d->cause, sizeof d->cause, "A role chain is capped at 1 hour by STS");
    snprintf(d->fix, sizeof d->fix, "Use --duration 3600 or less with --via-role-arn.");
}

static void token_scope(hgf_diagnosis *d)
{
    set(d, "auth_token_scope", "Repos enumerate, but GetAuthorizationToken is denied");
    snprintf(d->cause, sizeof d->cause,
             "ecr:GetAuthorizationToken resource scope: it is granted on a repository ARN (or "
             "not at all), which silently fails token exchange");
    snprintf(d->fix, sizeof d->fix,
             "Grant ecr:GetAuthorizationToken with \"Resource\": \"*\" in a statement of its own.");
}

static void pull_denied(const hgf_err *err, const hgf_diag_ctx *in, hgf_diagnosis *d)
{
    hgf_diag_ctx c = *in;
    const hgf_diag_ctx *ctx = &c;
    char arn[256], account[13];
    caller_from_message(err, arn, account);
    if (!c.caller_arn && *arn)
        c.caller_arn = arn;
    if (!(c.caller_account && *c.caller_account) && *account)
        c.caller_account = account;
    int cross = ctx->caller_account && ctx->registry_account && *ctx->caller_account &&
                strcmp(ctx->caller_account, ctx->registry_account);
    if (cross) {
        set(d, "cross_account_pull", "Cross-account: list works, pull fails");
        snprintf(d->cause, sizeof d->cause,
                 "Repository policy missing on the target account %s for principal %s",
                 ctx->registry_account, ctx->caller_arn ? ctx->caller_arn : "(caller)");
        snprintf(d->fix, sizeof d->fix,
                 "In account %s, attach a repository policy to each scanned repository allowing "
                 "%s: ecr:BatchGetImage, ecr:GetDownloadUrlForLayer, "
                 "ecr:BatchCheckLayerAvailability, ecr:DescribeImages, ecr:ListImages.",
                 ctx->registry_account, ctx->caller_arn ? ctx->caller_arn : "the sensor's role");
        return;
    }
    set(d, "pull_denied", "Repos enumerate, but scans fail with denied");
    if (msg_has(err, "explicit deny"))
        snprintf(d->cause, sizeof d->cause,
                 "An explicit Deny of ecr:BatchGetImage / ecr:GetDownloadUrlForLayer applies to "
                 "%s (an identity policy, a permissions boundary, an SCP or the repository "
                 "policy)", ctx->caller_arn ? ctx->caller_arn : "the principal");
    else if (ctx->caller_arn)
        snprintf(d->cause, sizeof d->cause,
                 "Missing ecr:BatchGetImage / ecr:GetDownloadUrlForLayer for %s",
                 ctx->caller_arn);
    else
        snprintf(d->cause, sizeof d->cause,
                 "Missing ecr:BatchGetImage / ecr:GetDownloadUrlForLayer for the principal, or, "
                 "when it is in another account than %s, no repository policy there allows it",
                 ctx->registry_account ? ctx->registry_account : "the registry's");
    snprintf(d->fix, sizeof d->fix,
             "Allow ecr:BatchGetImage, ecr:GetDownloadUrlForLayer and "
             "ecr:BatchCheckLayerAvailability on arn:aws:ecr:%s:%s:repository/*.",
             ctx->region ? ctx->region : "<region>",
             ctx->registry_account ? ctx->registry_account : "<account>");
}

static void access_denied(const hgf_err *err, const hgf_diag_ctx *ctx, hgf_diagnosis *d)
{
    const char *action = strstr(err->msg, "perform: ");
    char act[80] = "";
    if (action)
        sscanf(action + 9, "%79[^ ]", act);
    char who[256], account[13];
    caller_from_message(err, who, account);
    set(d, "access_denied", "Access denied");
    snprintf(d->cause, sizeof d->cause, "The IAM principal %s lacks %s",
             ctx->caller_arn ? ctx->caller_arn : *who ? who : "(unknown)",
             *act ? act : "a required ecr: action");
    /* ECR is regional: a policy written for another region denies this one
     * in the same words (the guide's wrong-region pitfall). */
    snprintf(d->fix, sizeof d->fix,
             "Attach the minimum policy from docs/iam.md: ecr:GetAuthorizationToken on \"*\", and "
             "ecr:DescribeRepositories, ecr:ListImages, ecr:DescribeImages, ecr:BatchGetImage, "
             "ecr:GetDownloadUrlForLayer, ecr:BatchCheckLayerAvailability on the repositories. "
             "If the policy has them, check its Resource ARNs and aws:RequestedRegion conditions "
             "name this registry's region (%s).",
             ctx->region ? ctx->region : "the URL's");
}

static void bad_keys(const hgf_err *err, const hgf_diag_ctx *ctx, hgf_diagnosis *d)
{
    set(d, "invalid_credentials", "The security token included in the request is invalid");
    int sig = code_is(err, "SignatureDoesNotMatch") || code_is(err, "InvalidSignatureException");
    snprintf(d->cause, sizeof d->cause,
             sig ? "%s sign with a secret access key that does not match the access key id "
                   "(a mistyped or rotated secret); the clock is not the cause: no skew was seen"
                 : "%s are not valid AWS credentials (deleted or mistyped key, or a session token "
                   "missing or from another key)",
             ctx->auth_mode && !strcmp(ctx->auth_mode, "static") ? "The connection's static keys"
                                                                 : "The credentials used");
    snprintf(d->fix, sizeof d->fix,
             "Check the access key in IAM and update it with 'hgfleet connection update ... "
             "--access-key-id ID --secret-access-key-file FILE'.");
}

/* libcurl's wording for a peer that failed verification (untrusted issuer,
 * expired, another host name) and for an unusable CA file. */
static int tls_failure(const hgf_err *err)
{
    return !err->aws_code[0] &&
           (msg_has(err, "SSL certificate problem") || msg_has(err, "SSL peer certificate") ||
            msg_has(err, "certificate subject name") || msg_has(err, "CA cert") ||
            msg_has(err, "error setting certificate"));
}

static void tls_certificate(const hgf_diag_ctx *ctx, hgf_diagnosis *d)
{
    set(d, "tls_certificate", "The AWS endpoint's TLS certificate is not trusted");
    snprintf(d->cause, sizeof d->cause,
             "During %s the server's certificate failed verification (an unknown issuer, such as "
             "a TLS-inspecting proxy's or a private endpoint's CA, an expired certificate, or "
             "one for another host name), or the CA bundle could not be read",
             ctx->step ? ctx->step : "the call");
    snprintf(d->fix, sizeof d->fix,
             "Point AWS_CA_BUNDLE at a PEM file holding the CA that issued the endpoint's "
             "certificate, and check AWS_ENDPOINT_URL_* names a host in that certificate. "
             "hgfleet never turns verification off.");
}

static void generic(const hgf_err *err, const hgf_diag_ctx *ctx, hgf_diagnosis *d)
{
    if (tls_failure(err)) {
        tls_certificate(ctx, d);
        return;
    }
    if (!strcmp(err->aws_code, "") && (err->code == 0 || err->code == -6)) {
        set(d, "network", "The AWS endpoint cannot be reached");
        snprintf(d->cause, sizeof d->cause, "Network failure during %s", ctx->step);
        snprintf(d->fix, sizeof d->fix,
                 "Check DNS, proxies, security groups and VPC endpoints (com.amazonaws.%s.ecr.api, "
                 ".ecr.dkr, .sts) for this host.", ctx->region ? ctx->region : "<region>");
        return;
    }
    set(d, "aws_error", "AWS returned an error");
    snprintf(d->cause, sizeof d->cause, "%s failed with %s", ctx->step,
             err->aws_code[0] ? err->aws_code : "an error");
    snprintf(d->fix, sizeof d->fix, "See the AWS message above.");
}

void hgf_diag_classify(const hgf_err *err, const hgf_diag_ctx *ctx, hgf_diagnosis *d)
{
    memset(d, 0, sizeof *d);
    d->clock_offset = HGF_DIAG_NO_OFFSET;
    snprintf(d->step, sizeof d->step, "%s", ctx->step ? ctx->step : "");
    snprintf(d->detail, sizeof d->detail, "%.690s", err->msg);
    const char *step = ctx->step ? ctx->step : "";
    int pull_step = !strcmp(step, "ManifestHead") || !strcmp(step, "BatchGetImage") ||
                    !strcmp(step, "Scan");
    if (hgf_diag_offset_from_message(err->msg) != HGF_DIAG_NO_OFFSET ||
        code_is(err, "RequestTimeTooSkewed") || code_is(err, "RequestExpired") ||
        code_is(err, "RequestInTheFuture") ||
        ((code_is(err, "InvalidSignatureException") || code_is(err, "SignatureDoesNotMatch")) &&
         ctx->clock_offset != HGF_DIAG_NO_OFFSET && labs(ctx->clock_offset) >= 300))
        clock_drift(err, ctx, d);
    else if (code_is(err, "ExpiredTokenException") || code_is(err, "ExpiredToken") ||
             (ctx->http_status == 401 && !pull_step && strcmp(ctx->auth_mode ? ctx->auth_mode : "", "static")))
        role_chain_expired(ctx, d);
    else if (!strcmp(step, "credentials") && strcmp(ctx->auth_mode ? ctx->auth_mode : "", "static") &&
             !tls_failure(err) && !code_is(err, "AccessDenied") &&
             !code_is(err, "AccessDeniedException"))
        host_credentials(err, d);
    else if (!strcmp(step, "AssumeRole") && code_is(err, "ValidationError") &&
             msg_has(err, "role chaining"))
        chain_duration(d);
    else if (!strcmp(step, "AssumeRole") && (code_is(err, "AccessDenied") || code_is(err, "AccessDeniedException")))
        assume_denied(err, ctx, d);
    else if (!strcmp(step, "GetAuthorizationToken") && (code_is(err, "AccessDeniedException") || code_is(err, "AccessDenied")))
        token_scope(d);
    else if (pull_step && (code_is(err, "DENIED") || code_is(err, "AccessDeniedException") ||
                           ctx->http_status == 403))
        pull_denied(err, ctx, d);
    else if (code_is(err, "AccessDeniedException") || code_is(err, "AccessDenied"))
        access_denied(err, ctx, d);
    else if (code_is(err, "UnrecognizedClientException") || code_is(err, "InvalidClientTokenId") ||
             code_is(err, "InvalidSignatureException") || code_is(err, "SignatureDoesNotMatch"))
        bad_keys(err, ctx, d);
    else
        generic(err, ctx, d);
}

void hgf_diag_zero_repositories(const hgf_diag_ctx *ctx, hgf_diagnosis *d)
{
    memset(d, 0, sizeof *d);
    d->clock_offset = HGF_DIAG_NO_OFFSET;
    snprintf(d->step, sizeof d->step, "DescribeRepositories");
    set(d, "zero_repositories", "Test connection succeeds, sync produces zero repos");
    snprintf(d->cause, sizeof d->cause,
             "The IAM principal has access in a different region than the URL (%s), or the "
             "registry really is empty", ctx->region ? ctx->region : "?");
    snprintf(d->fix, sizeof d->fix,
             "ECR is regional: check that the repositories live in %s of account %s, and add one "
             "connection per region.", ctx->region ? ctx->region : "the URL's region",
             ctx->registry_account ? ctx->registry_account : "?");
}

json_t *hgf_diag_to_json(const hgf_diagnosis *d)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "code", d->code, "symptom",
                          d->symptom, "cause", d->cause, "fix", d->fix, "step", d->step, "detail",
                          d->detail);
    if (d->clock_offset != HGF_DIAG_NO_OFFSET)
        json_object_set_new(o, "clock_offset_seconds", json_integer(d->clock_offset));
    return o;
}

char *hgf_diag_to_text(const hgf_diagnosis *d, const char *source)
{
    json_t *o = hgf_diag_to_json(d);
    json_object_set_new(o, "source", json_string(source));
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}
