/* The simulated IAM: a scenario (principals with access keys, roles with
 * trust and identity policies, repository policies, the host's roles, web
 * identity tokens, a cap on credential lifetimes) and the evaluation every
 * ECR, registry and STS request passes. The scenario format is documented
 * at the top of iam.c and in `ecrsim --help`.
 *
 * The scenario can be replaced while requests are served; each call below
 * sees either the old or the new one, never a mix.
 *
 * Ownership: the iam object owns its scenario and wipes the secrets it
 * holds when they are replaced or freed. Every result is copied into
 * caller-owned storage; secrets only leave through hgf_sim_iam_find_user's
 * buffer, which the caller must wipe. No message names a secret. */
#ifndef ECRSIM_IAM_H
#define ECRSIM_IAM_H

#include <stddef.h>
#include <time.h>

#include <jansson.h>

#include "hgfleet/err.h"

#define HGF_SIM_ARN_MAX 320

enum hgf_sim_caller_kind {
    HGF_SIM_CALLER_KEY = 0,  /* a --key: full access in its account (or any) */
    HGF_SIM_CALLER_USER,     /* a scenario principal: its own policy */
    HGF_SIM_CALLER_SESSION,  /* STS-issued credentials: the role's policy */
};

/* Who signed a request. A plain value the caller owns. */
typedef struct hgf_sim_caller {
    int kind;                        /* enum hgf_sim_caller_kind */
    char access_key_id[129];
    char account[13];   /* the principal's account; "" for a --key valid in any account */
    char region[64];    /* the credential scope's region: the request's region */
    char arn[HGF_SIM_ARN_MAX];       /* user ARN or arn:aws:sts::A:assumed-role/R/S */
    char user_id[160];               /* GetCallerIdentity's UserId */
    char role_arn[HGF_SIM_ARN_MAX];  /* sessions: the role whose policy applies */
    time_t expires;                  /* sessions: expiry; 0 otherwise */
} hgf_sim_caller;

/* One permission question. */
typedef struct hgf_sim_access {
    const char *action;      /* "ecr:BatchGetImage", "sts:AssumeRole" */
    const char *resource;    /* an ARN, or "*" */
    const char *account;     /* the resource's account; NULL for "*" */
    const char *repository;  /* the repository name, for repository policies */
    int pull;                /* a pull: cross-account callers need a repository policy */
} hgf_sim_access;

enum hgf_sim_verdict {
    HGF_SIM_ALLOW = 0,
    HGF_SIM_NO_IDENTITY_POLICY,
    HGF_SIM_NO_RESOURCE_POLICY,
    HGF_SIM_EXPLICIT_DENY,       /* an identity policy's Deny statement matched */
};

/* What STS needs to know about a role. */
typedef struct hgf_sim_role {
    char arn[HGF_SIM_ARN_MAX];
    char account[13];
    char name[129];
    char role_id[32];   /* "AROA..." */
    int max_session;    /* seconds */
} hgf_sim_role;

enum hgf_sim_host { HGF_SIM_HOST_INSTANCE, HGF_SIM_HOST_CONTAINER };

typedef struct hgf_sim_iam hgf_sim_iam;

int hgf_sim_iam_create(hgf_sim_iam **out);
void hgf_sim_iam_free(hgf_sim_iam *iam);

/* Replaces the scenario with doc's. On error the old one stays and err
 * (HGF_EINPUT) names the field, e.g. "roles[1].trust[0].principal: ...". */
int hgf_sim_iam_load(hgf_sim_iam *iam, json_t *doc, hgf_err *err);
int hgf_sim_iam_load_file(hgf_sim_iam *iam, const char *path, hgf_err *err);
/* The scenario without its secrets and tokens (a new reference). */
json_t *hgf_sim_iam_summary(hgf_sim_iam *iam);

/* A scenario principal by access key: fills the caller's identity and
 * copies the secret into secret (size n). 0 or HGF_ENOTFOUND. */
int hgf_sim_iam_find_user(hgf_sim_iam *iam, const char *akid, hgf_sim_caller *caller,
                          char *secret, size_t n);

enum hgf_sim_verdict hgf_sim_iam_authorize(hgf_sim_iam *iam, const hgf_sim_caller *c,
                                           const hgf_sim_access *a);
/* AWS's AccessDenied message for a denial, into out. */
void hgf_sim_iam_denial(const hgf_sim_caller *c, const hgf_sim_access *a,
                        enum hgf_sim_verdict v, char *out, size_t n);

/* Appends to `statements` (a JSON array) one Allow statement per scenario
 * repository_policies grant that covers `repository` in `account`, as
 * GetRepositoryPolicy shows it (partition: "aws", "aws-cn"); sets
 * *everyone when such a grant's principal is "*". 0 or HGF_ENOMEM. */
int hgf_sim_iam_repository_statements(hgf_sim_iam *iam, const char *account,
                                      const char *partition, const char *repository,
                                      json_t *statements, int *everyone);

/* 0 when the scenario defines the role; HGF_ENOTFOUND when it does not,
 * HGF_EINPUT when arn is no role ARN. *out is filled from the scenario, or
 * from the ARN alone (max_session 3600) for an undefined role, so the host
 * roles can be served without being defined (they then grant nothing). */
int hgf_sim_iam_role(hgf_sim_iam *iam, const char *arn, hgf_sim_role *out);
/* 1 when the role's trust policy lets c assume it with external_id (NULL
 * when none was given), else 0. */
int hgf_sim_iam_trusts(hgf_sim_iam *iam, const char *role_arn, const hgf_sim_caller *c,
                       const char *external_id);
/* 0 when token maps to role_arn; HGF_ENOTFOUND for an unknown token;
 * HGF_EFAIL when it belongs to another role. */
int hgf_sim_iam_web_identity(hgf_sim_iam *iam, const char *token, const char *role_arn);
/* The instance or container role's ARN into out: 0 or HGF_ENOTFOUND. */
int hgf_sim_iam_host_role(hgf_sim_iam *iam, enum hgf_sim_host which,
                          char out[HGF_SIM_ARN_MAX]);
/* 1 when given is the container credential endpoint's token. */
int hgf_sim_iam_container_token_ok(hgf_sim_iam *iam, const char *given);
/* credential_duration_seconds, 0 when unset. */
long hgf_sim_iam_credential_cap(hgf_sim_iam *iam);

/* The 12-digit account of an ARN into out; "" when there is none. */
void hgf_sim_arn_account(const char *arn, char out[13]);

#endif
