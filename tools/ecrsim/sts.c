#include "sts.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "hgfleet/timeutil.h"

#define MAX_FIELDS 64
#define CHAIN_LIMIT_S 3600
#define DEFAULT_DURATION_S 3600
#define SESSION_CHARS \
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+=,.@-"
#define EXTERNAL_ID_CHARS SESSION_CHARS ":/"

struct hgf_sim_sts {
    hgf_sim_auth *auth;
    hgf_sim_iam *iam;
    hgf_sim_faults *faults;
};

/* A decoded application/x-www-form-urlencoded body; keys and values point
 * into `copy`. */
typedef struct form {
    char *copy;
    const char *key[MAX_FIELDS];
    const char *val[MAX_FIELDS];
    size_t n;
} form;

/* What an operation needs besides its parameters. */
typedef struct call {
    hgf_sim_sts *sts;
    const form *f;
    const hgf_sim_caller *caller;  /* NULL for the unsigned operation */
    time_t now;
} call;

typedef int (*op_fn)(const call *c, hgf_buf *result, hgf_err *err);

int hgf_sim_sts_create(hgf_sim_auth *auth, hgf_sim_iam *iam, hgf_sim_faults *faults,
                       hgf_sim_sts **out)
{
    hgf_sim_sts *s = calloc(1, sizeof *s);
    if (!s)
        return HGF_ENOMEM;
    s->auth = auth;
    s->iam = iam;
    s->faults = faults;
    *out = s;
    return 0;
}

void hgf_sim_sts_free(hgf_sim_sts *sts)
{
    free(sts);
}

/* ---- form decoding ----------------------------------------------------- */

static int hexval(char c)
{
    return isdigit((unsigned char)c) ? c - '0'
           : isxdigit((unsigned char)c) ? tolower((unsigned char)c) - 'a' + 10
                                        : -1;
}

static void url_decode(char *s)
{
    char *w = s;
    for (; *s; s++) {
        if (*s == '+') {
            *w++ = ' ';
        } else if (*s == '%' && hexval(s[1]) >= 0 && hexval(s[2]) >= 0) {
            *w++ = (char)(hexval(s[1]) * 16 + hexval(s[2]));
            s += 2;
        } else {
            *w++ = *s;
        }
    }
    *w = '\0';
}

/* Fields past MAX_FIELDS are ignored: no operation here has that many. */
static int form_parse(const char *body, size_t len, form *f)
{
    memset(f, 0, sizeof *f);
    f->copy = strndup(body ? body : "", len);
    if (!f->copy)
        return HGF_ENOMEM;
    char *save = NULL;
    for (char *pair = strtok_r(f->copy, "&", &save); pair && f->n < MAX_FIELDS;
         pair = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(pair, '=');
        if (eq)
            *eq++ = '\0';
        url_decode(pair);
        if (eq)
            url_decode(eq);
        f->key[f->n] = pair;
        f->val[f->n++] = eq ? eq : "";
    }
    return 0;
}

static void form_free(form *f)
{
    if (f->copy) {
        /* The body may hold a web identity token. */
        OPENSSL_cleanse(f->copy, strlen(f->copy));
        free(f->copy);
    }
    f->copy = NULL;
}

static const char *form_get(const form *f, const char *key)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->key[i], key) == 0)
            return f->val[i];
    return NULL;
}

static int is_name(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n < 64 &&
           strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") == n;
}

void hgf_sim_sts_action(const hgf_sim_req *req, char *out, size_t n)
{
    form f;
    out[0] = '\0';
    if (form_parse(req->body, req->body_len, &f) != 0)
        return;
    const char *action = form_get(&f, "Action");
    if (action)
        snprintf(out, n, "%s", is_name(action) ? action : "(invalid)");
    form_free(&f);
}

/* ---- XML --------------------------------------------------------------- */

static int put_elem(hgf_buf *out, const char *name, const char *value)
{
    int rc = hgf_buf_printf(out, "<%s>", name);
    if (!rc)
        rc = hgf_sim_xml_escape(out, value);
    return rc ? rc : hgf_buf_printf(out, "</%s>", name);
}

static int status_of(const char *code)
{
    static const struct {
        const char *code;
        int status;
    } table[] = {
        {"AccessDenied", 403},          {"InvalidClientTokenId", 403},
        {"SignatureDoesNotMatch", 403}, {"MissingAuthenticationToken", 403},
        {"ExpiredToken", 403},          {"IDPRejectedClaim", 403},
        {"RegionDisabledException", 403}, {"InternalFailure", 500},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(table[i].code, code) == 0)
            return table[i].status;
    return 400;
}

void hgf_sim_sts_error(hgf_sim_resp *resp, const hgf_err *e)
{
    const char *code = e->aws_code[0] ? e->aws_code : "InternalFailure";
    int status = status_of(code);
    hgf_buf_reset(&resp->body);
    int rc = hgf_buf_printf(&resp->body,
                            "<ErrorResponse xmlns=\"" HGF_SIM_STS_XMLNS "\"><Error><Type>%s</Type>",
                            status >= 500 ? "Receiver" : "Sender");
    if (!rc)
        rc = put_elem(&resp->body, "Code", code);
    if (!rc)
        rc = put_elem(&resp->body, "Message", e->msg);
    if (!rc)
        rc = hgf_buf_printf(&resp->body, "</Error><RequestId>%s</RequestId></ErrorResponse>",
                            resp->request_id);
    snprintf(resp->error_code, sizeof resp->error_code, "%s", code);
    resp->status = rc ? 500 : status;
    resp->content_type = "text/xml";
}

static int put_credentials(hgf_buf *out, const hgf_sim_session *s)
{
    char expires[32];
    hgf_time_format_iso(s->expires, expires, sizeof expires);
    int rc = hgf_buf_puts(out, "<Credentials>");
    if (!rc)
        rc = put_elem(out, "AccessKeyId", s->access_key_id);
    if (!rc)
        rc = put_elem(out, "SecretAccessKey", s->secret_access_key);
    if (!rc)
        rc = put_elem(out, "SessionToken", s->session_token);
    if (!rc)
        rc = put_elem(out, "Expiration", expires);
    return rc ? rc : hgf_buf_puts(out, "</Credentials>");
}

static int put_assumed_user(hgf_buf *out, const hgf_sim_caller *who)
{
    int rc = hgf_buf_puts(out, "<AssumedRoleUser>");
    if (!rc)
        rc = put_elem(out, "AssumedRoleId", who->user_id);
    if (!rc)
        rc = put_elem(out, "Arn", who->arn);
    return rc ? rc : hgf_buf_puts(out, "</AssumedRoleUser>");
}

/* ---- validation (STS's wording) ---------------------------------------- */

static int invalid(hgf_err *err, const char *value, const char *field, const char *constraint)
{
    if (!value)
        return hgf_sim_awserr(err, "ValidationError",
                              "1 validation error detected: Value null at '%s' failed to satisfy "
                              "constraint: %s",
                              field, constraint);
    return hgf_sim_awserr(err, "ValidationError",
                          "1 validation error detected: Value '%.128s' at '%s' failed to "
                          "satisfy constraint: %s",
                          value, field, constraint);
}

/* `secret` fields are checked without echoing their value. */
static int check_string(const char *v, const char *field, size_t min, size_t max,
                        const char *chars, const char *pattern, int secret, hgf_err *err)
{
    char constraint[160];
    const char *shown = secret ? "***" : v;
    if (!v)
        return invalid(err, NULL, field, "Member must not be null");
    size_t n = strlen(v);
    if (n < min || n > max) {
        snprintf(constraint, sizeof constraint, "Member must have length %s or equal to %zu",
                 n < min ? "greater than" : "less than", n < min ? min : max);
        return invalid(err, shown, field, constraint);
    }
    if (chars && strspn(v, chars) != n) {
        snprintf(constraint, sizeof constraint,
                 "Member must satisfy regular expression pattern: %s", pattern);
        return invalid(err, shown, field, constraint);
    }
    return 0;
}

static int get_duration(const form *f, long *out, hgf_err *err)
{
    const char *v = form_get(f, "DurationSeconds");
    char *end;
    *out = DEFAULT_DURATION_S;
    if (!v)
        return 0;
    long d = strtol(v, &end, 10);
    if (!*v || *end)
        return invalid(err, v, "durationSeconds", "Member must be an integer");
    if (d < 900 || d > 43200)
        return invalid(err, v, "durationSeconds",
                       d < 900 ? "Member must have value greater than or equal to 900"
                               : "Member must have value less than or equal to 43200");
    *out = d;
    return 0;
}

/* RoleArn, RoleSessionName and DurationSeconds, common to both AssumeRoles. */
static int role_params(const form *f, long *duration, hgf_err *err)
{
    int rc = check_string(form_get(f, "RoleArn"), "roleArn", 20, 2048, NULL, NULL, 0, err);
    if (!rc)
        rc = check_string(form_get(f, "RoleSessionName"), "roleSessionName", 2, 64,
                          SESSION_CHARS, "[\\w+=,.@-]*", 0, err);
    return rc ? rc : get_duration(f, duration, err);
}

/* ---- issuing ----------------------------------------------------------- */

static void partition_of(const char *arn, char out[16])
{
    const char *p = strncmp(arn, "arn:", 4) == 0 ? arn + 4 : "aws";
    size_t n = strcspn(p, ":");
    snprintf(out, 16, "%.*s", (int)(n < 15 ? n : 15), p);
}

static int issue(hgf_sim_sts *sts, const hgf_sim_role *role, const char *session_name,
                 long duration, time_t now, hgf_sim_caller *who, hgf_sim_session *out)
{
    char partition[16];
    long cap = hgf_sim_iam_credential_cap(sts->iam);
    partition_of(role->arn, partition);
    memset(who, 0, sizeof *who);
    who->kind = HGF_SIM_CALLER_SESSION;
    snprintf(who->account, sizeof who->account, "%s", role->account);
    snprintf(who->arn, sizeof who->arn, "arn:%s:sts::%s:assumed-role/%s/%s", partition,
             role->account, role->name, session_name);
    snprintf(who->user_id, sizeof who->user_id, "%s:%s", role->role_id, session_name);
    snprintf(who->role_arn, sizeof who->role_arn, "%s", role->arn);
    who->expires = now + (cap > 0 && cap < duration ? cap : duration);
    return hgf_sim_auth_issue(sts->auth, who, now, out);
}

int hgf_sim_sts_issue(hgf_sim_sts *sts, const char *role_arn, const char *session_name,
                      long duration, time_t now, hgf_sim_session *out)
{
    hgf_sim_role role;
    hgf_sim_caller who;
    if (hgf_sim_iam_role(sts->iam, role_arn, &role) == HGF_EINPUT)
        return HGF_EINPUT;
    return issue(sts, &role, session_name, duration, now, &who, out);
}

/* Credentials plus AssumedRoleUser, then wipes the secrets. */
static int issue_into(const call *c, const hgf_sim_role *role, long duration, hgf_buf *result,
                      hgf_err *err)
{
    hgf_sim_caller who;
    hgf_sim_session s;
    int rc = issue(c->sts, role, form_get(c->f, "RoleSessionName"), duration, c->now, &who, &s);
    if (rc)
        return hgf_sim_awserr(err, "InternalFailure", "ecrsim: cannot issue credentials");
    rc = put_credentials(result, &s);
    if (!rc)
        rc = put_assumed_user(result, &who);
    OPENSSL_cleanse(&s, sizeof s);
    return rc;
}

/* ---- operations -------------------------------------------------------- */

static int not_authorized(hgf_err *err, const hgf_sim_caller *caller, const char *role_arn)
{
    return hgf_sim_awserr(err, "AccessDenied",
                          "User: %s is not authorized to perform: sts:AssumeRole on resource: "
                          "%.512s",
                          caller->arn, role_arn);
}

/* The caller's own policy must allow sts:AssumeRole on the role (a --key is
 * allowed everything), and the role's trust policy must admit the caller
 * with this ExternalId. */
static int may_assume(const call *c, const char *role_arn, const char *external_id,
                      hgf_sim_role *role, hgf_err *err)
{
    hgf_sim_access a = {.action = "sts:AssumeRole", .resource = role_arn};
    int defined = hgf_sim_iam_role(c->sts->iam, role_arn, role) == 0;
    if (hgf_sim_iam_authorize(c->sts->iam, c->caller, &a) != HGF_SIM_ALLOW || !defined ||
        !hgf_sim_iam_trusts(c->sts->iam, role_arn, c->caller, external_id))
        return not_authorized(err, c->caller, role_arn);
    return 0;
}

static int check_duration(const hgf_sim_caller *caller, const hgf_sim_role *role, long duration,
                          hgf_err *err)
{
    if (caller && caller->kind == HGF_SIM_CALLER_SESSION && duration > CHAIN_LIMIT_S)
        return hgf_sim_awserr(err, "ValidationError",
                              "The requested DurationSeconds exceeds the 1 hour session limit "
                              "for roles assumed by role chaining.");
    if (duration > role->max_session)
        return hgf_sim_awserr(err, "ValidationError",
                              "The requested DurationSeconds exceeds the MaxSessionDuration set "
                              "for this role.");
    return 0;
}

static int assume_role(const call *c, hgf_buf *result, hgf_err *err)
{
    long duration;
    hgf_sim_role role;
    const char *external_id = form_get(c->f, "ExternalId");
    int rc = role_params(c->f, &duration, err);
    if (!rc && external_id)
        rc = check_string(external_id, "externalId", 2, 1224, EXTERNAL_ID_CHARS,
                          "[\\w+=,.@:\\/-]*", 1, err);
    if (!rc)
        rc = may_assume(c, form_get(c->f, "RoleArn"), external_id, &role, err);
    if (!rc)
        rc = check_duration(c->caller, &role, duration, err);
    return rc ? rc : issue_into(c, &role, duration, result, err);
}

static int web_identity_allowed(const call *c, const char *role_arn, hgf_sim_role *role,
                                hgf_err *err)
{
    int rc = hgf_sim_iam_web_identity(c->sts->iam, form_get(c->f, "WebIdentityToken"), role_arn);
    if (rc == HGF_ENOTFOUND)
        return hgf_sim_awserr(err, "InvalidIdentityToken",
                              "The web identity token that was passed could not be validated by "
                              "AWS. Get a new identity token from the identity provider and then "
                              "retry the request.");
    if (rc || hgf_sim_iam_role(c->sts->iam, role_arn, role) != 0)
        return hgf_sim_awserr(err, "AccessDenied",
                              "Not authorized to perform sts:AssumeRoleWithWebIdentity");
    return 0;
}

static int assume_role_with_web_identity(const call *c, hgf_buf *result, hgf_err *err)
{
    long duration;
    hgf_sim_role role;
    const char *role_arn = form_get(c->f, "RoleArn");
    int rc = role_params(c->f, &duration, err);
    if (!rc)
        rc = check_string(form_get(c->f, "WebIdentityToken"), "webIdentityToken", 4, 20000,
                          NULL, NULL, 1, err);
    if (!rc)
        rc = web_identity_allowed(c, role_arn, &role, err);
    if (!rc)
        rc = check_duration(NULL, &role, duration, err);
    if (!rc)
        rc = issue_into(c, &role, duration, result, err);
    if (!rc)
        rc = hgf_buf_printf(result,
                            "<SubjectFromWebIdentityToken>system:serviceaccount:ecrsim:%s"
                            "</SubjectFromWebIdentityToken><Audience>sts.amazonaws.com</Audience>"
                            "<Provider>arn:aws:iam::%s:oidc-provider/oidc.ecrsim.local</Provider>",
                            role.name, role.account);
    return rc;
}

static int get_caller_identity(const call *c, hgf_buf *result, hgf_err *err)
{
    char account[13];
    hgf_sim_arn_account(c->caller->arn, account);
    int rc = put_elem(result, "Arn", c->caller->arn);
    if (!rc)
        rc = put_elem(result, "UserId", c->caller->user_id);
    return rc ? rc : put_elem(result, "Account", account);
}

static const struct {
    const char *name;
    op_fn fn;
    int unsigned_ok;
} OPS[] = {
    {"AssumeRole", assume_role, 0},
    {"AssumeRoleWithWebIdentity", assume_role_with_web_identity, 1},
    {"GetCallerIdentity", get_caller_identity, 0},
};

/* ---- dispatch ---------------------------------------------------------- */

static int find_op(const char *action)
{
    for (size_t i = 0; action && i < sizeof OPS / sizeof OPS[0]; i++)
        if (strcmp(OPS[i].name, action) == 0)
            return (int)i;
    return -1;
}

static int respond(const call *c, const char *action, op_fn fn, hgf_sim_resp *resp,
                   hgf_err *err)
{
    hgf_buf result = HGF_BUF_INIT;
    int rc = fn(c, &result, err);
    if (!rc) {
        hgf_buf_reset(&resp->body);
        rc = hgf_buf_printf(&resp->body,
                            "<%sResponse xmlns=\"" HGF_SIM_STS_XMLNS "\"><%sResult>%s</%sResult>"
                            "<ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata>"
                            "</%sResponse>",
                            action, action, hgf_buf_str(&result), action, resp->request_id,
                            action);
        resp->status = 200;
        resp->content_type = "text/xml";
    }
    if (result.data)
        OPENSSL_cleanse(result.data, result.len);
    hgf_buf_free(&result);
    return rc;
}

/* Quotas count per (account, region, Action); an unsigned call counts
 * against the role's account. */
static int admit(const call *c, const char *action, hgf_err *err)
{
    char account[13] = "";
    const char *region = c->caller ? c->caller->region : "-";
    if (c->caller)
        hgf_sim_arn_account(c->caller->arn, account);
    else
        hgf_sim_arn_account(form_get(c->f, "RoleArn") ? form_get(c->f, "RoleArn") : "", account);
    if (hgf_sim_faults_admit(c->sts->faults, account, region, action))
        return 0;
    return hgf_sim_awserr(err, "Throttling", "Rate exceeded");
}

static int serve(hgf_sim_sts *sts, const hgf_sim_req *req, const form *f, time_t now,
                 hgf_sim_resp *resp, hgf_sim_caller *caller, hgf_err *err, hgf_err *why)
{
    const char *action = form_get(f, "Action");
    int i = find_op(action);
    call c = {.sts = sts, .f = f, .now = now};
    if (i < 0 || !OPS[i].unsigned_ok) {
        int rc = hgf_sim_auth_check(sts->auth, req, "sts", now, caller, err, why);
        if (rc)
            return rc;
        c.caller = caller;
    }
    if (!action)
        return hgf_sim_awserr(err, "MissingAction", "Missing Action");
    if (i < 0)
        return hgf_sim_awserr(err, "InvalidAction",
                              "Could not find operation %.64s for version 2011-06-15", action);
    int rc = admit(&c, action, err);
    return rc ? rc : respond(&c, action, OPS[i].fn, resp, err);
}

void hgf_sim_sts_handle(hgf_sim_sts *sts, const hgf_sim_req *req, time_t now,
                        hgf_sim_resp *resp, hgf_sim_caller *caller, hgf_err *why)
{
    hgf_err err;
    form f;
    hgf_err_clear(&err);
    hgf_err_clear(why);
    memset(caller, 0, sizeof *caller);
    int rc = form_parse(req->body, req->body_len, &f);
    if (!rc)
        rc = serve(sts, req, &f, now, resp, caller, &err, why);
    form_free(&f);
    if (!rc)
        return;
    if (err.code != HGF_EAWS)
        hgf_sim_awserr(&err, "InternalFailure", "ecrsim: internal error");
    hgf_sim_sts_error(resp, &err);
}
