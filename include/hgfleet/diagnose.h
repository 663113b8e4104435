/* Connection diagnosis in the words of the guide's troubleshooting table.
 *
 * hgf_diag_classify maps one failed step (or a suspicious success, such as
 * zero repositories) to a diagnosis: the symptom, the likely cause and the
 * fix. It is pure, so the same mapping serves `connection test`, a failed
 * scheduled sync, and the sweep report.
 *
 * Ownership: everything is filled into caller-owned structs; JSON returned
 * by hgf_diag_to_json is a new reference the caller decrefs. */
#ifndef HGF_DIAGNOSE_H
#define HGF_DIAGNOSE_H

#include <jansson.h>
#include <limits.h>

#include "hgfleet/err.h"

#define HGF_DIAG_NO_OFFSET LONG_MIN

typedef struct hgf_diagnosis {
    char code[48];      /* stable id, e.g. "clock_drift", "pull_denied" */
    char symptom[200];  /* what the user sees (the guide's Symptom column) */
    char cause[600];    /* the likely cause (the guide's column), made specific */
    char fix[600];      /* what to change */
    char step[48];      /* the step that failed: "AssumeRole", "GetAuthorizationToken", ... */
    char detail[700];   /* the error as AWS worded it */
    long clock_offset;  /* server minus local seconds, or HGF_DIAG_NO_OFFSET */
} hgf_diagnosis;

typedef struct hgf_diag_ctx {
    const char *step;             /* the step that failed or is being judged */
    const char *auth_mode;        /* host | static | assume_role */
    const char *caller_arn;       /* identity that made the call, if known */
    const char *caller_account;   /* its account, if known */
    const char *registry_account; /* the registry's account */
    const char *region;           /* the registry's region */
    const char *role_arn;         /* the role assumed, if any */
    int role_chain;               /* 1 when via_role_arn is set */
    int has_external_id;
    long clock_offset;            /* measured from a Date header, or HGF_DIAG_NO_OFFSET */
    long http_status;
} hgf_diag_ctx;

/* Fills d from a failed step. Always succeeds; unknown errors get a generic
 * diagnosis that still names the step and AWS's code. */
void hgf_diag_classify(const hgf_err *err, const hgf_diag_ctx *ctx, hgf_diagnosis *d);

/* A successful DescribeRepositories that found nothing: suspect the region. */
void hgf_diag_zero_repositories(const hgf_diag_ctx *ctx, hgf_diagnosis *d);

json_t *hgf_diag_to_json(const hgf_diagnosis *d);
/* The JSON text stored in connections.last_diagnosis, naming what produced
 * it ("sync", "scan", ...). malloc'd; the caller frees. */
char *hgf_diag_to_text(const hgf_diagnosis *d, const char *source);

/* Parses AWS's skew message ("Signature expired: 20261130T031500Z is now
 * earlier than 20261130T033000Z (20261130T033500Z - 5 min.)") into the
 * server-minus-client offset; HGF_DIAG_NO_OFFSET when it is not one. */
long hgf_diag_offset_from_message(const char *message);

#endif
