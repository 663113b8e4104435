/* Scenario format (ecrsim --scenario FILE, POST /_sim/scenario), one JSON
 * object; every member is optional and unknown members are rejected:
 *
 * {
 *  "principals": [ {"arn": "arn:aws:iam::100007000000:user/ci",
 *                   "access_key_id": "AKIA...", "secret_access_key": "...",
 *                   "policy": [ {"actions": ["ecr:*", "sts:AssumeRole"],
 *                                "resources": ["*"]},
 *                               {"effect": "Deny", "actions": ["ecr:GetLifecyclePolicy"]} ] } ],
 *  "roles": [ {"arn": "arn:aws:iam::100007000001:role/harborguard-sensor",
 *              "trust": [ {"principal": "arn:aws:iam::100007000000:user/ci",
 *                          "external_id": "optional-required-id"} ],
 *              "policy": [ {"actions": ["ecr:Describe*"], "resources": ["*"]} ],
 *              "max_session_duration": 3600 } ],
 *  "repository_policies": { "100007000001": [ {"repositories": ["*"],
 *        "principal": "arn:aws:iam::100007000000:role/x",
 *        "actions": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]} ] },
 *  "instance_role": "arn:aws:iam::100007000000:role/node",     IMDSv2
 *  "container_role": "arn:aws:iam::100007000000:role/task",    /_sim/container-credentials
 *  "container_token": "secret-token",
 *  "web_identity_tokens": { "<token>": "arn:aws:iam::100007000000:role/irsa" },
 *  "credential_duration_seconds": 900      cap on every issued credential's lifetime
 * }
 *
 * A statement matches when one of its actions and one of its resources
 * match: actions are case-insensitive globs ("*", "ecr:*", "ecr:Describe*"),
 * resources case-sensitive globs over ARNs ("*" when "resources" is left
 * out). "effect" is "Allow" (the default) or "Deny"; as in IAM, a matching
 * Deny wins over any Allow, and what no statement allows is denied. A trust principal is a full ARN (a
 * role's ARN also admits its sessions), "arn:aws:iam::<acct>:root" or a
 * bare account id (anyone in that account) or "*"; external_id, when set,
 * must be passed as ExternalId. Repository policies name repositories
 * (globs) in the account they are filed under, one principal in the trust
 * syntax, and actions. Roles absent from "roles" cannot be assumed and
 * grant nothing. max_session_duration is 3600..43200 (default 3600). */
#include "iam.h"

#include <ctype.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#define ARN_CHARS \
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789:/_+=,.@-*?"
#define ALNUM "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
#define NAME_CHARS ALNUM "_+=,.@-"

typedef struct statement {
    int deny;            /* "effect": "Deny" */
    char **actions;
    size_t n_actions;
    char **resources;
    size_t n_resources;
} statement;

typedef struct policy {
    statement *stmts;
    size_t n;
} policy;

typedef struct user {
    char *arn;
    char *akid;
    char *secret;
    char user_id[32];
    policy pol;
} user;

typedef struct trust {
    char *principal;
    char *external_id;  /* NULL: not required */
} trust;

typedef struct role {
    char *arn;
    char account[13];
    char name[129];
    char role_id[32];
    trust *trusts;
    size_t n_trusts;
    policy pol;
    int max_session;
} role;

typedef struct grant {
    char account[13];
    char **repos;
    size_t n_repos;
    char *principal;
    char **actions;
    size_t n_actions;
} grant;

typedef struct web_token {
    char *token;
    char *role_arn;
} web_token;

typedef struct scenario {
    user *users;       /* sorted by access key id */
    size_t n_users;
    user **by_arn;     /* the same users sorted by ARN */
    role *roles;       /* sorted by ARN */
    size_t n_roles;
    grant *grants;
    size_t n_grants;
    web_token *tokens; /* sorted by token */
    size_t n_tokens;
    char *instance_role;
    char *container_role;
    char *container_token;
    long cred_cap;
} scenario;

struct hgf_sim_iam {
    pthread_rwlock_t lock;
    scenario *cur;
};

static int set_role_name(role *r, const char *field, hgf_err *err);

/* ---- freeing ----------------------------------------------------------- */

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

static void free_policy(policy *p)
{
    for (size_t i = 0; p->stmts && i < p->n; i++) {
        free_strings(p->stmts[i].actions, p->stmts[i].n_actions);
        free_strings(p->stmts[i].resources, p->stmts[i].n_resources);
    }
    free(p->stmts);
}

static void free_secret(char *s)
{
    if (s)
        OPENSSL_cleanse(s, strlen(s));
    free(s);
}

static void free_scenario(scenario *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_users; i++) {
        free(s->users[i].arn);
        free(s->users[i].akid);
        free_secret(s->users[i].secret);
        free_policy(&s->users[i].pol);
    }
    for (size_t i = 0; i < s->n_roles; i++) {
        free(s->roles[i].arn);
        for (size_t k = 0; k < s->roles[i].n_trusts; k++) {
            free(s->roles[i].trusts[k].principal);
            free(s->roles[i].trusts[k].external_id);
        }
        free(s->roles[i].trusts);
        free_policy(&s->roles[i].pol);
    }
    for (size_t i = 0; i < s->n_grants; i++) {
        free_strings(s->grants[i].repos, s->grants[i].n_repos);
        free_strings(s->grants[i].actions, s->grants[i].n_actions);
        free(s->grants[i].principal);
    }
    for (size_t i = 0; i < s->n_tokens; i++) {
        free_secret(s->tokens[i].token);
        free(s->tokens[i].role_arn);
    }
    free(s->users);
    free(s->by_arn);
    free(s->roles);
    free(s->grants);
    free(s->tokens);
    free(s->instance_role);
    free(s->container_role);
    free_secret(s->container_token);
    free(s);
}

int hgf_sim_iam_create(hgf_sim_iam **out)
{
    hgf_sim_iam *iam = calloc(1, sizeof *iam);
    if (!iam)
        return HGF_ENOMEM;
    iam->cur = calloc(1, sizeof *iam->cur);
    if (!iam->cur) {
        free(iam);
        return HGF_ENOMEM;
    }
    pthread_rwlock_init(&iam->lock, NULL);
    *out = iam;
    return 0;
}

void hgf_sim_iam_free(hgf_sim_iam *iam)
{
    if (!iam)
        return;
    free_scenario(iam->cur);
    pthread_rwlock_destroy(&iam->lock);
    free(iam);
}

/* ---- names ------------------------------------------------------------- */

void hgf_sim_arn_account(const char *arn, char out[13])
{
    /* arn:partition:service:region:account:resource */
    const char *p = arn;
    out[0] = '\0';
    for (int colons = 0; p && colons < 4; colons++) {
        p = strchr(p, ':');
        p = p ? p + 1 : NULL;
    }
    if (p && strspn(p, "0123456789") == 12 && p[12] == ':') {
        memcpy(out, p, 12);
        out[12] = '\0';
    }
}

/* "arn:<partition>:iam::<12 digits>:<kind>/<rest>" */
static int is_iam_arn(const char *s, const char *kind)
{
    if (strncmp(s, "arn:", 4) != 0 || strlen(s) >= HGF_SIM_ARN_MAX ||
        strspn(s, ARN_CHARS) != strlen(s))
        return 0;
    const char *p = strchr(s + 4, ':');
    if (!p || strncmp(p, ":iam::", 6) != 0)
        return 0;
    p += 6;
    if (strspn(p, "0123456789") != 12 || p[12] != ':')
        return 0;
    p += 13;
    size_t k = strlen(kind);
    return kind[0] ? strncmp(p, kind, k) == 0 && p[k] == '/' && p[k + 1] : strchr(p, '/') != NULL;
}

/* Stable, AWS-looking unique ids ("AROA" + 17 base32 characters) derived
 * from the ARN, so the same scenario always gives the same ids. */
static void make_id(const char *prefix, const char *arn, char out[32])
{
    static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    uint64_t h = 0xcbf29ce484222325ULL, g = 0x84222325cbf29ce4ULL;
    for (const char *p = arn; *p; p++) {
        h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
        g = (g ^ (unsigned char)*p) * 0x100000001b3ULL + (g >> 17);
    }
    size_t n = strlen(prefix);
    memcpy(out, prefix, n);
    for (size_t i = 0; i < 17; i++) {
        uint64_t v = i < 12 ? h >> (5 * i) : g >> (5 * (i - 12));
        out[n + i] = b32[v & 31];
    }
    out[n + 17] = '\0';
}

/* ---- matching ---------------------------------------------------------- */

static int same_char(char a, char b, int fold)
{
    return fold ? tolower((unsigned char)a) == tolower((unsigned char)b) : a == b;
}

/* IAM's wildcards: '*' is any run, '?' any one character. */
static int glob_match(const char *p, const char *s, int fold)
{
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (*p == '*') {
            star = p++;
            resume = s;
        } else if (*p && (*p == '?' || same_char(*p, *s, fold))) {
            p++;
            s++;
        } else if (star) {
            p = star + 1;
            s = ++resume;
        } else {
            return 0;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

static int any_glob(char *const *pats, size_t n, const char *s, int fold)
{
    for (size_t i = 0; i < n; i++)
        if (glob_match(pats[i], s, fold))
            return 1;
    return 0;
}

/* HGF_SIM_ALLOW, HGF_SIM_EXPLICIT_DENY when a Deny statement matches (it
 * wins), else HGF_SIM_NO_IDENTITY_POLICY. */
static enum hgf_sim_verdict policy_decides(const policy *p, const char *action,
                                           const char *resource)
{
    int allowed = 0;
    for (size_t i = 0; p && i < p->n; i++) {
        if (!any_glob(p->stmts[i].actions, p->stmts[i].n_actions, action, 1) ||
            !any_glob(p->stmts[i].resources, p->stmts[i].n_resources, resource, 0))
            continue;
        if (p->stmts[i].deny)
            return HGF_SIM_EXPLICIT_DENY;
        allowed = 1;
    }
    return allowed ? HGF_SIM_ALLOW : HGF_SIM_NO_IDENTITY_POLICY;
}

/* The caller's account for trust and resource policies: a --key valid in
 * any account still has a home account in its ARN. */
static void home_account(const hgf_sim_caller *c, char out[13])
{
    if (c->account[0])
        snprintf(out, 13, "%s", c->account);
    else
        hgf_sim_arn_account(c->arn, out);
}

static int principal_matches(const char *principal, const hgf_sim_caller *c)
{
    char home[13], acct[13];
    if (strcmp(principal, "*") == 0)
        return 1;
    home_account(c, home);
    if (strspn(principal, "0123456789") == 12 && principal[12] == '\0')
        return strcmp(principal, home) == 0;
    size_t n = strlen(principal);
    if (n > 5 && strcmp(principal + n - 5, ":root") == 0) {
        hgf_sim_arn_account(principal, acct);
        return acct[0] && strcmp(acct, home) == 0;
    }
    return strcmp(principal, c->arn) == 0 ||
           (c->kind == HGF_SIM_CALLER_SESSION && strcmp(principal, c->role_arn) == 0);
}

/* ---- lookups (with the lock held) -------------------------------------- */

static int cmp_user_akid(const void *a, const void *b)
{
    return strcmp(((const user *)a)->akid, ((const user *)b)->akid);
}

static int cmp_user_arn(const void *a, const void *b)
{
    return strcmp((*(user *const *)a)->arn, (*(user *const *)b)->arn);
}

static int cmp_role(const void *a, const void *b)
{
    return strcmp(((const role *)a)->arn, ((const role *)b)->arn);
}

static int cmp_token(const void *a, const void *b)
{
    return strcmp(((const web_token *)a)->token, ((const web_token *)b)->token);
}

static const role *find_role(const scenario *s, const char *arn)
{
    role key = {.arn = (char *)arn};
    return s->n_roles ? bsearch(&key, s->roles, s->n_roles, sizeof key, cmp_role) : NULL;
}

static const user *find_user_by_arn(const scenario *s, const char *arn)
{
    user key = {.arn = (char *)arn};
    user *pk = &key;
    user **u = s->n_users ? bsearch(&pk, s->by_arn, s->n_users, sizeof pk, cmp_user_arn) : NULL;
    return u ? *u : NULL;
}

static const policy *identity_policy(const scenario *s, const hgf_sim_caller *c)
{
    if (c->kind == HGF_SIM_CALLER_SESSION) {
        const role *r = find_role(s, c->role_arn);
        return r ? &r->pol : NULL;
    }
    const user *u = find_user_by_arn(s, c->arn);
    return u ? &u->pol : NULL;
}

static int repository_policy_allows(const scenario *s, const hgf_sim_caller *c,
                                    const hgf_sim_access *a)
{
    for (size_t i = 0; i < s->n_grants; i++) {
        const grant *g = &s->grants[i];
        if (strcmp(g->account, a->account) == 0 && principal_matches(g->principal, c) &&
            any_glob(g->actions, g->n_actions, a->action, 1) &&
            any_glob(g->repos, g->n_repos, a->repository ? a->repository : "", 0))
            return 1;
    }
    return 0;
}

/* A grant's principal as a policy's Principal: "*" or {"AWS": <ARN>}, a
 * bare account id spelled as that account's root. */
static json_t *grant_principal(const char *principal, const char *partition)
{
    char root[HGF_SIM_ARN_MAX];
    if (strcmp(principal, "*") == 0)
        return json_string("*");
    if (strspn(principal, "0123456789") == 12 && !principal[12]) {
        snprintf(root, sizeof root, "arn:%s:iam::%s:root", partition, principal);
        principal = root;
    }
    return json_pack("{s:s}", "AWS", principal);
}

static json_t *grant_statement(const grant *g, size_t index, const char *partition)
{
    char sid[48];
    snprintf(sid, sizeof sid, "ScenarioGrant%zu", index);
    json_t *actions = json_array();
    for (size_t k = 0; actions && k < g->n_actions; k++)
        if (json_array_append_new(actions, json_string(g->actions[k])) != 0) {
            json_decref(actions);
            actions = NULL;
        }
    return json_pack("{s:s, s:s, s:o, s:o}", "Sid", sid, "Effect", "Allow", "Principal",
                     grant_principal(g->principal, partition), "Action", actions);
}

/* ---- public queries ---------------------------------------------------- */

int hgf_sim_iam_repository_statements(hgf_sim_iam *iam, const char *account,
                                      const char *partition, const char *repository,
                                      json_t *statements, int *everyone)
{
    int rc = 0;
    pthread_rwlock_rdlock(&iam->lock);
    const scenario *s = iam->cur;
    for (size_t i = 0; !rc && i < s->n_grants; i++) {
        const grant *g = &s->grants[i];
        if (strcmp(g->account, account) != 0 || !any_glob(g->repos, g->n_repos, repository, 0))
            continue;
        json_t *st = grant_statement(g, i, partition);
        rc = st && json_array_append_new(statements, st) == 0 ? 0 : HGF_ENOMEM;
        *everyone |= strcmp(g->principal, "*") == 0;
    }
    pthread_rwlock_unlock(&iam->lock);
    return rc;
}

int hgf_sim_iam_find_user(hgf_sim_iam *iam, const char *akid, hgf_sim_caller *caller,
                          char *secret, size_t n)
{
    pthread_rwlock_rdlock(&iam->lock);
    const scenario *s = iam->cur;
    user key = {.akid = (char *)akid};
    const user *u = s->n_users ? bsearch(&key, s->users, s->n_users, sizeof key, cmp_user_akid)
                               : NULL;
    if (u) {
        caller->kind = HGF_SIM_CALLER_USER;
        snprintf(caller->access_key_id, sizeof caller->access_key_id, "%s", u->akid);
        snprintf(caller->arn, sizeof caller->arn, "%s", u->arn);
        snprintf(caller->user_id, sizeof caller->user_id, "%s", u->user_id);
        hgf_sim_arn_account(u->arn, caller->account);
        snprintf(secret, n, "%s", u->secret);
    }
    pthread_rwlock_unlock(&iam->lock);
    return u ? 0 : HGF_ENOTFOUND;
}

static enum hgf_sim_verdict key_verdict(const hgf_sim_caller *c, const hgf_sim_access *a)
{
    /* --key principals keep their historical meaning: everything in their
     * account; another account's resources need a policy they cannot have. */
    if (!c->account[0] || !a->account || strcmp(c->account, a->account) == 0)
        return HGF_SIM_ALLOW;
    return HGF_SIM_NO_RESOURCE_POLICY;
}

enum hgf_sim_verdict hgf_sim_iam_authorize(hgf_sim_iam *iam, const hgf_sim_caller *c,
                                           const hgf_sim_access *a)
{
    if (c->kind == HGF_SIM_CALLER_KEY)
        return key_verdict(c, a);
    pthread_rwlock_rdlock(&iam->lock);
    enum hgf_sim_verdict v = policy_decides(identity_policy(iam->cur, c), a->action,
                                            a->resource);
    if (v == HGF_SIM_ALLOW && a->pull && a->account && strcmp(a->account, c->account) != 0 &&
        !repository_policy_allows(iam->cur, c, a))
        v = HGF_SIM_NO_RESOURCE_POLICY;
    pthread_rwlock_unlock(&iam->lock);
    return v;
}

void hgf_sim_iam_denial(const hgf_sim_caller *c, const hgf_sim_access *a,
                        enum hgf_sim_verdict v, char *out, size_t n)
{
    if (v == HGF_SIM_EXPLICIT_DENY)
        snprintf(out, n,
                 "User: %s is not authorized to perform: %s on resource: %s with an explicit "
                 "deny in an identity-based policy",
                 c->arn, a->action, a->resource);
    else
        snprintf(out, n,
                 "User: %s is not authorized to perform: %s on resource: %s because no %s "
                 "policy allows the %s action",
                 c->arn, a->action, a->resource,
                 v == HGF_SIM_NO_RESOURCE_POLICY ? "resource-based" : "identity-based",
                 a->action);
}

static int describe_undefined(const char *arn, hgf_sim_role *out)
{
    role r;
    memset(&r, 0, sizeof r);
    r.arn = (char *)arn;
    hgf_err ignored;
    if (!is_iam_arn(arn, "role") || set_role_name(&r, "role", &ignored) != 0)
        return HGF_EINPUT;
    snprintf(out->arn, sizeof out->arn, "%s", arn);
    snprintf(out->account, sizeof out->account, "%s", r.account);
    snprintf(out->name, sizeof out->name, "%s", r.name);
    snprintf(out->role_id, sizeof out->role_id, "%s", r.role_id);
    out->max_session = 3600;
    return HGF_ENOTFOUND;
}

int hgf_sim_iam_role(hgf_sim_iam *iam, const char *arn, hgf_sim_role *out)
{
    pthread_rwlock_rdlock(&iam->lock);
    const role *r = find_role(iam->cur, arn);
    if (r) {
        snprintf(out->arn, sizeof out->arn, "%s", r->arn);
        snprintf(out->account, sizeof out->account, "%s", r->account);
        snprintf(out->name, sizeof out->name, "%s", r->name);
        snprintf(out->role_id, sizeof out->role_id, "%s", r->role_id);
        out->max_session = r->max_session;
    }
    pthread_rwlock_unlock(&iam->lock);
    return r ? 0 : describe_undefined(arn, out);
}

int hgf_sim_iam_trusts(hgf_sim_iam *iam, const char *role_arn, const hgf_sim_caller *c,
                       const char *external_id)
{
    int ok = 0;
    pthread_rwlock_rdlock(&iam->lock);
    const role *r = find_role(iam->cur, role_arn);
    for (size_t i = 0; r && !ok && i < r->n_trusts; i++) {
        const trust *t = &r->trusts[i];
        ok = principal_matches(t->principal, c) &&
             (!t->external_id || (external_id && strcmp(t->external_id, external_id) == 0));
    }
    pthread_rwlock_unlock(&iam->lock);
    return ok;
}

int hgf_sim_iam_web_identity(hgf_sim_iam *iam, const char *token, const char *role_arn)
{
    pthread_rwlock_rdlock(&iam->lock);
    const scenario *s = iam->cur;
    web_token key = {.token = (char *)token};
    const web_token *t =
        s->n_tokens ? bsearch(&key, s->tokens, s->n_tokens, sizeof key, cmp_token) : NULL;
    int rc = !t ? HGF_ENOTFOUND : strcmp(t->role_arn, role_arn) == 0 ? 0 : HGF_EFAIL;
    pthread_rwlock_unlock(&iam->lock);
    return rc;
}

int hgf_sim_iam_host_role(hgf_sim_iam *iam, enum hgf_sim_host which, char out[HGF_SIM_ARN_MAX])
{
    pthread_rwlock_rdlock(&iam->lock);
    const char *arn = which == HGF_SIM_HOST_INSTANCE ? iam->cur->instance_role
                                                     : iam->cur->container_role;
    if (arn)
        snprintf(out, HGF_SIM_ARN_MAX, "%s", arn);
    pthread_rwlock_unlock(&iam->lock);
    return arn ? 0 : HGF_ENOTFOUND;
}

int hgf_sim_iam_container_token_ok(hgf_sim_iam *iam, const char *given)
{
    pthread_rwlock_rdlock(&iam->lock);
    const char *want = iam->cur->container_token;
    int ok = want && given && strlen(want) == strlen(given) &&
             CRYPTO_memcmp(want, given, strlen(want)) == 0;
    pthread_rwlock_unlock(&iam->lock);
    return ok;
}

long hgf_sim_iam_credential_cap(hgf_sim_iam *iam)
{
    pthread_rwlock_rdlock(&iam->lock);
    long cap = iam->cur->cred_cap;
    pthread_rwlock_unlock(&iam->lock);
    return cap;
}

/* ---- parsing ----------------------------------------------------------- */

static int bad(hgf_err *err, const char *field, const char *what)
{
    return hgf_err_set(err, HGF_EINPUT, "scenario: %s: %s", field, what);
}

/* Rejects members the format does not know, so a typo is not silently
 * ignored. `known` is a NULL-terminated list. */
static int check_members(json_t *obj, const char *field, const char *const *known, hgf_err *err)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        int ok = 0;
        for (size_t i = 0; known[i] && !ok; i++)
            ok = strcmp(key, known[i]) == 0;
        if (!ok)
            return hgf_err_set(err, HGF_EINPUT, "scenario: %s: unknown member '%.64s'", field,
                               key);
    }
    return 0;
}

static int get_str(json_t *obj, const char *name, const char *field, int required,
                   const char **out, hgf_err *err)
{
    json_t *v = json_object_get(obj, name);
    char path[256];
    snprintf(path, sizeof path, "%.200s.%s", field, name);
    *out = NULL;
    if (!v && !required)
        return 0;
    if (!v)
        return bad(err, path, "missing");
    if (!json_is_string(v) || json_string_length(v) == 0)
        return bad(err, path, "expected a non-empty string");
    *out = json_string_value(v);
    return 0;
}

static int dup_into(char **dst, const char *src, hgf_err *err)
{
    *dst = strdup(src);
    return *dst ? 0 : hgf_err_set(err, HGF_ENOMEM, "scenario: out of memory");
}

static int parse_strings(json_t *v, const char *field, char ***out, size_t *n, hgf_err *err)
{
    if (!json_is_array(v) || json_array_size(v) == 0)
        return bad(err, field, "expected a non-empty list of strings");
    *out = calloc(json_array_size(v), sizeof **out);
    if (!*out)
        return hgf_err_set(err, HGF_ENOMEM, "scenario: out of memory");
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item) {
        char path[256];
        snprintf(path, sizeof path, "%.200s[%zu]", field, i);
        if (!json_is_string(item) || json_string_length(item) == 0)
            return bad(err, path, "expected a non-empty string");
        if (dup_into(&(*out)[i], json_string_value(item), err))
            return HGF_ENOMEM;
        *n = i + 1;
    }
    return 0;
}

static int parse_effect(json_t *v, const char *field, statement *st, hgf_err *err)
{
    const char *effect;
    int rc = get_str(v, "effect", field, 0, &effect, err);
    if (rc || !effect)
        return rc;
    if (strcmp(effect, "Allow") != 0 && strcmp(effect, "Deny") != 0) {
        char path[256];
        snprintf(path, sizeof path, "%.200s.effect", field);
        return bad(err, path, "expected \"Allow\" or \"Deny\"");
    }
    st->deny = effect[0] == 'D';
    return 0;
}

static int parse_statement(json_t *v, const char *field, statement *st, hgf_err *err)
{
    static const char *const known[] = {"effect", "actions", "resources", NULL};
    char path[256];
    if (!json_is_object(v))
        return bad(err, field, "expected an object with actions and resources");
    int rc = check_members(v, field, known, err);
    if (!rc)
        rc = parse_effect(v, field, st, err);
    snprintf(path, sizeof path, "%.200s.actions", field);
    if (!rc)
        rc = parse_strings(json_object_get(v, "actions"), path, &st->actions, &st->n_actions,
                           err);
    for (size_t i = 0; !rc && i < st->n_actions; i++)
        if (strcmp(st->actions[i], "*") != 0 && !strchr(st->actions[i], ':'))
            rc = hgf_err_set(err, HGF_EINPUT,
                             "scenario: %s[%zu]: '%.64s' is not service:Action or '*'", path, i,
                             st->actions[i]);
    snprintf(path, sizeof path, "%.200s.resources", field);
    json_t *res = json_object_get(v, "resources");
    if (!rc && res)
        return parse_strings(res, path, &st->resources, &st->n_resources, err);
    if (!rc) {
        st->resources = calloc(1, sizeof *st->resources);
        st->n_resources = st->resources ? 1 : 0;
        rc = st->resources ? dup_into(&st->resources[0], "*", err) : HGF_ENOMEM;
    }
    return rc;
}

static int parse_policy(json_t *v, const char *field, policy *p, hgf_err *err)
{
    if (!v)
        return 0;
    if (!json_is_array(v))
        return bad(err, field, "expected a list of statements");
    p->stmts = calloc(json_array_size(v) + 1, sizeof *p->stmts);
    if (!p->stmts)
        return hgf_err_set(err, HGF_ENOMEM, "scenario: out of memory");
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item) {
        char path[256];
        snprintf(path, sizeof path, "%.200s[%zu]", field, i);
        p->n = i + 1;
        int rc = parse_statement(item, path, &p->stmts[i], err);
        if (rc)
            return rc;
    }
    return 0;
}

static int parse_user(json_t *v, const char *field, user *u, hgf_err *err)
{
    static const char *const known[] = {"arn", "access_key_id", "secret_access_key", "policy",
                                        NULL};
    const char *arn = NULL, *akid, *secret;
    char path[256];
    if (!json_is_object(v))
        return bad(err, field, "expected an object");
    int rc = check_members(v, field, known, err);
    if (!rc)
        rc = get_str(v, "arn", field, 1, &arn, err);
    if (!rc && !is_iam_arn(arn, ""))
        rc = bad(err, field, "arn: expected arn:aws:iam::<12 digits>:user/<name>");
    if (!rc)
        rc = get_str(v, "access_key_id", field, 1, &akid, err);
    if (!rc && (strlen(akid) > 128 || strspn(akid, ALNUM) != strlen(akid)))
        rc = bad(err, field, "access_key_id: expected 1..128 letters and digits");
    if (!rc)
        rc = get_str(v, "secret_access_key", field, 1, &secret, err);
    if (!rc && strlen(secret) > 256)
        rc = bad(err, field, "secret_access_key: longer than 256 characters");
    if (!rc && (dup_into(&u->arn, arn, err) || dup_into(&u->akid, akid, err) ||
                dup_into(&u->secret, secret, err)))
        rc = HGF_ENOMEM;
    snprintf(path, sizeof path, "%.200s.policy", field);
    if (!rc)
        rc = parse_policy(json_object_get(v, "policy"), path, &u->pol, err);
    make_id("AIDA", arn ? arn : "", u->user_id);
    return rc;
}

static int parse_trust(json_t *v, const char *field, trust *t, hgf_err *err)
{
    static const char *const known[] = {"principal", "external_id", NULL};
    const char *principal, *external;
    if (!json_is_object(v))
        return bad(err, field, "expected an object with a principal");
    int rc = check_members(v, field, known, err);
    if (!rc)
        rc = get_str(v, "principal", field, 1, &principal, err);
    if (!rc && strcmp(principal, "*") != 0 && !is_iam_arn(principal, "") &&
        !(strspn(principal, "0123456789") == 12 && !principal[12]) &&
        !(strncmp(principal, "arn:", 4) == 0 && strstr(principal, ":root")))
        rc = bad(err, field, "principal: expected an IAM ARN, arn:aws:iam::<acct>:root, an "
                             "account id or '*'");
    if (!rc)
        rc = get_str(v, "external_id", field, 0, &external, err);
    if (!rc)
        rc = dup_into(&t->principal, principal, err);
    if (!rc && external)
        rc = dup_into(&t->external_id, external, err);
    return rc;
}

static int parse_trusts(json_t *v, const char *field, role *r, hgf_err *err)
{
    if (!v)
        return 0;
    if (!json_is_array(v))
        return bad(err, field, "expected a list of {principal, external_id}");
    r->trusts = calloc(json_array_size(v) + 1, sizeof *r->trusts);
    if (!r->trusts)
        return hgf_err_set(err, HGF_ENOMEM, "scenario: out of memory");
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item) {
        char path[256];
        snprintf(path, sizeof path, "%.200s[%zu]", field, i);
        r->n_trusts = i + 1;
        int rc = parse_trust(item, path, &r->trusts[i], err);
        if (rc)
            return rc;
    }
    return 0;
}

static int parse_max_session(json_t *v, const char *field, role *r, hgf_err *err)
{
    r->max_session = 3600;
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 3600 || json_integer_value(v) > 43200)
        return bad(err, field, "expected an integer in 3600..43200");
    r->max_session = (int)json_integer_value(v);
    return 0;
}

static int set_role_name(role *r, const char *field, hgf_err *err)
{
    const char *slash = strrchr(r->arn, '/');
    const char *name = slash ? slash + 1 : "";
    if (!*name || strlen(name) > 64 || strspn(name, NAME_CHARS) != strlen(name))
        return bad(err, field, "arn: the role name must be 1..64 of [A-Za-z0-9_+=,.@-]");
    snprintf(r->name, sizeof r->name, "%s", name);
    hgf_sim_arn_account(r->arn, r->account);
    make_id("AROA", r->arn, r->role_id);
    return 0;
}

static int parse_role(json_t *v, const char *field, role *r, hgf_err *err)
{
    static const char *const known[] = {"arn", "trust", "policy", "max_session_duration", NULL};
    const char *arn;
    char path[256];
    if (!json_is_object(v))
        return bad(err, field, "expected an object");
    int rc = check_members(v, field, known, err);
    if (!rc)
        rc = get_str(v, "arn", field, 1, &arn, err);
    if (!rc && (!is_iam_arn(arn, "role") || strpbrk(arn, "*?")))
        rc = bad(err, field, "arn: expected arn:aws:iam::<12 digits>:role/<name>");
    if (!rc)
        rc = dup_into(&r->arn, arn, err);
    if (!rc)
        rc = set_role_name(r, field, err);
    snprintf(path, sizeof path, "%.200s.trust", field);
    if (!rc)
        rc = parse_trusts(json_object_get(v, "trust"), path, r, err);
    snprintf(path, sizeof path, "%.200s.policy", field);
    if (!rc)
        rc = parse_policy(json_object_get(v, "policy"), path, &r->pol, err);
    snprintf(path, sizeof path, "%.200s.max_session_duration", field);
    if (!rc)
        rc = parse_max_session(json_object_get(v, "max_session_duration"), path, r, err);
    return rc;
}

static int parse_grant(json_t *v, const char *account, const char *field, grant *g, hgf_err *err)
{
    static const char *const known[] = {"repositories", "principal", "actions", NULL};
    const char *principal;
    char path[256];
    if (!json_is_object(v))
        return bad(err, field, "expected an object with repositories, principal and actions");
    snprintf(g->account, sizeof g->account, "%s", account);
    int rc = check_members(v, field, known, err);
    snprintf(path, sizeof path, "%.200s.repositories", field);
    if (!rc)
        rc = parse_strings(json_object_get(v, "repositories"), path, &g->repos, &g->n_repos,
                           err);
    snprintf(path, sizeof path, "%.200s.actions", field);
    if (!rc)
        rc = parse_strings(json_object_get(v, "actions"), path, &g->actions, &g->n_actions, err);
    if (!rc)
        rc = get_str(v, "principal", field, 1, &principal, err);
    return rc ? rc : dup_into(&g->principal, principal, err);
}

static int parse_grants(json_t *v, scenario *s, hgf_err *err)
{
    const char *account;
    json_t *list;
    size_t total = 0;
    if (!v)
        return 0;
    if (!json_is_object(v))
        return bad(err, "repository_policies", "expected an object keyed by account id");
    json_object_foreach(v, account, list) {
        if (strspn(account, "0123456789") != 12 || account[12])
            return hgf_err_set(err, HGF_EINPUT,
                               "scenario: repository_policies: '%.40s' is not a 12-digit account "
                               "id",
                               account);
        if (!json_is_array(list))
            return hgf_err_set(err, HGF_EINPUT,
                               "scenario: repository_policies.%s: expected a list", account);
        total += json_array_size(list);
    }
    s->grants = calloc(total + 1, sizeof *s->grants);
    if (!s->grants)
        return hgf_err_set(err, HGF_ENOMEM, "scenario: out of memory");
    json_object_foreach(v, account, list) {
        size_t i;
        json_t *item;
        json_array_foreach(list, i, item) {
            char path[256];
            snprintf(path, sizeof path, "repository_policies.%s[%zu]", account, i);
            int rc = parse_grant(item, account, path, &s->grants[s->n_grants++], err);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static int parse_users(json_t *v, scenario *s, hgf_err *err)
{
    if (!v)
        return 0;
    if (!json_is_array(v))
        return bad(err, "principals", "expected a list");
    s->users = calloc(json_array_size(v) + 1, sizeof *s->users);
    s->by_arn = calloc(json_array_size(v) + 1, sizeof *s->by_arn);
    if (!s->users || !s->by_arn)
        return hgf_err_set(err, HGF_ENOMEM, "scenario: out of memory");
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item) {
        char path[64];
        snprintf(path, sizeof path, "principals[%zu]", i);
        s->n_users = i + 1;
        int rc = parse_user(item, path, &s->users[i], err);
        if (rc)
            return rc;
    }
    qsort(s->users, s->n_users, sizeof *s->users, cmp_user_akid);
    for (i = 0; i < s->n_users; i++)
        s->by_arn[i] = &s->users[i];
    qsort(s->by_arn, s->n_users, sizeof *s->by_arn, cmp_user_arn);
    for (i = 1; i < s->n_users; i++) {
        if (strcmp(s->users[i - 1].akid, s->users[i].akid) == 0)
            return hgf_err_set(err, HGF_EINPUT,
                               "scenario: principals: access key id %s is given twice",
                               s->users[i].akid);
        if (strcmp(s->by_arn[i - 1]->arn, s->by_arn[i]->arn) == 0)
            return hgf_err_set(err, HGF_EINPUT, "scenario: principals: %s is given twice",
                               s->by_arn[i]->arn);
    }
    return 0;
}

static int parse_roles(json_t *v, scenario *s, hgf_err *err)
{
    if (!v)
        return 0;
    if (!json_is_array(v))
        return bad(err, "roles", "expected a list");
    s->roles = calloc(json_array_size(v) + 1, sizeof *s->roles);
    if (!s->roles)
        return hgf_err_set(err, HGF_ENOMEM, "scenario: out of memory");
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item) {
        char path[64];
        snprintf(path, sizeof path, "roles[%zu]", i);
        s->n_roles = i + 1;
        int rc = parse_role(item, path, &s->roles[i], err);
        if (rc)
            return rc;
    }
    qsort(s->roles, s->n_roles, sizeof *s->roles, cmp_role);
    for (i = 1; i < s->n_roles; i++)
        if (strcmp(s->roles[i - 1].arn, s->roles[i].arn) == 0)
            return hgf_err_set(err, HGF_EINPUT, "scenario: roles: %s is given twice",
                               s->roles[i].arn);
    return 0;
}

static int parse_tokens(json_t *v, scenario *s, hgf_err *err)
{
    const char *token;
    json_t *arn;
    if (!v)
        return 0;
    if (!json_is_object(v))
        return bad(err, "web_identity_tokens", "expected an object mapping tokens to role ARNs");
    s->tokens = calloc(json_object_size(v) + 1, sizeof *s->tokens);
    if (!s->tokens)
        return hgf_err_set(err, HGF_ENOMEM, "scenario: out of memory");
    json_object_foreach(v, token, arn) {
        /* The index, not the token: tokens are credentials. */
        char path[64];
        snprintf(path, sizeof path, "web_identity_tokens[%zu]", s->n_tokens);
        if (strlen(token) < 4)
            return bad(err, path, "a token has at least 4 characters");
        if (!json_is_string(arn) || !is_iam_arn(json_string_value(arn), "role"))
            return bad(err, path, "expected a role ARN as the value");
        web_token *t = &s->tokens[s->n_tokens++];
        if (dup_into(&t->token, token, err) || dup_into(&t->role_arn, json_string_value(arn), err))
            return HGF_ENOMEM;
    }
    qsort(s->tokens, s->n_tokens, sizeof *s->tokens, cmp_token);
    return 0;
}

static int parse_host(json_t *doc, scenario *s, hgf_err *err)
{
    const char *instance, *container, *token;
    json_t *cap = json_object_get(doc, "credential_duration_seconds");
    int rc = get_str(doc, "instance_role", "scenario", 0, &instance, err);
    if (!rc)
        rc = get_str(doc, "container_role", "scenario", 0, &container, err);
    if (!rc)
        rc = get_str(doc, "container_token", "scenario", 0, &token, err);
    if (rc)
        return rc;
    if (instance && !is_iam_arn(instance, "role"))
        return bad(err, "instance_role", "expected arn:aws:iam::<12 digits>:role/<name>");
    if (container && !is_iam_arn(container, "role"))
        return bad(err, "container_role", "expected arn:aws:iam::<12 digits>:role/<name>");
    if (container && !token)
        return bad(err, "container_token", "required with container_role");
    if (token && strpbrk(token, "\r\n"))
        return bad(err, "container_token", "must not contain CR or LF");
    if (cap && (!json_is_integer(cap) || json_integer_value(cap) < 1 ||
                json_integer_value(cap) > 43200))
        return bad(err, "credential_duration_seconds", "expected an integer in 1..43200");
    s->cred_cap = cap ? (long)json_integer_value(cap) : 0;
    if ((instance && dup_into(&s->instance_role, instance, err)) ||
        (container && dup_into(&s->container_role, container, err)) ||
        (token && dup_into(&s->container_token, token, err)))
        return HGF_ENOMEM;
    return 0;
}

static int parse_scenario(json_t *doc, scenario *s, hgf_err *err)
{
    static const char *const known[] = {
        "principals", "roles", "repository_policies", "instance_role", "container_role",
        "container_token", "web_identity_tokens", "credential_duration_seconds", NULL};
    if (!json_is_object(doc))
        return hgf_err_set(err, HGF_EINPUT, "scenario: expected a JSON object");
    int rc = check_members(doc, "(top level)", known, err);
    if (!rc)
        rc = parse_users(json_object_get(doc, "principals"), s, err);
    if (!rc)
        rc = parse_roles(json_object_get(doc, "roles"), s, err);
    if (!rc)
        rc = parse_grants(json_object_get(doc, "repository_policies"), s, err);
    if (!rc)
        rc = parse_tokens(json_object_get(doc, "web_identity_tokens"), s, err);
    if (!rc)
        rc = parse_host(doc, s, err);
    return rc;
}

int hgf_sim_iam_load(hgf_sim_iam *iam, json_t *doc, hgf_err *err)
{
    scenario *s = calloc(1, sizeof *s);
    if (!s)
        return hgf_err_set(err, HGF_ENOMEM, "scenario: out of memory");
    int rc = parse_scenario(doc, s, err);
    if (rc) {
        free_scenario(s);
        return rc;
    }
    pthread_rwlock_wrlock(&iam->lock);
    scenario *old = iam->cur;
    iam->cur = s;
    pthread_rwlock_unlock(&iam->lock);
    free_scenario(old);
    return 0;
}

int hgf_sim_iam_load_file(hgf_sim_iam *iam, const char *path, hgf_err *err)
{
    json_error_t jerr;
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc)
        return hgf_err_set(err, HGF_EINPUT, "--scenario %.200s: line %d: %.200s", path, jerr.line,
                           jerr.text);
    int rc = hgf_sim_iam_load(iam, doc, err);
    json_decref(doc);
    return rc;
}

/* ---- summary ----------------------------------------------------------- */

static json_t *summary_of(const scenario *s)
{
    json_t *users = json_array(), *roles = json_array(), *grants = json_object();
    for (size_t i = 0; users && i < s->n_users; i++)
        json_array_append_new(users, json_pack("{s:s, s:s}", "arn", s->users[i].arn,
                                               "access_key_id", s->users[i].akid));
    for (size_t i = 0; roles && i < s->n_roles; i++)
        json_array_append_new(roles, json_pack("{s:s, s:s, s:i, s:i}", "arn", s->roles[i].arn,
                                               "role_id", s->roles[i].role_id, "trust",
                                               (int)s->roles[i].n_trusts,
                                               "max_session_duration", s->roles[i].max_session));
    for (size_t i = 0; grants && i < s->n_grants; i++) {
        json_t *n = json_object_get(grants, s->grants[i].account);
        json_object_set_new(grants, s->grants[i].account,
                            json_integer(n ? json_integer_value(n) + 1 : 1));
    }
    return json_pack("{s:o, s:o, s:o, s:s?, s:s?, s:b, s:I, s:I}", "principals", users, "roles",
                     roles, "repository_policies", grants, "instance_role", s->instance_role,
                     "container_role", s->container_role, "container_token",
                     s->container_token != NULL, "web_identity_tokens",
                     (json_int_t)s->n_tokens, "credential_duration_seconds",
                     (json_int_t)s->cred_cap);
}

json_t *hgf_sim_iam_summary(hgf_sim_iam *iam)
{
    pthread_rwlock_rdlock(&iam->lock);
    json_t *j = summary_of(iam->cur);
    pthread_rwlock_unlock(&iam->lock);
    return j;
}
