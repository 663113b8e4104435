/* AWS credentials: a value type plus the static and environment providers.
 * (The web-identity, container and IMDSv2 providers and STS assume-role
 * build on this type.)
 *
 * Ownership: an hgf_creds owns its strings; hgf_creds_clear wipes and frees
 * them. Secrets are never formatted into errors or logs: use
 * hgf_creds_describe for a safe one-line description. */
#ifndef HGF_CREDS_H
#define HGF_CREDS_H

#include <stddef.h>
#include <time.h>

#include "hgfleet/err.h"

typedef struct hgf_creds {
    char *access_key_id;
    char *secret_access_key;
    char *session_token;   /* NULL when none */
    time_t expiration;     /* 0 = does not expire */
    char source[32];       /* "env", "static", ... */
} hgf_creds;

/* Copies the strings (token may be NULL). */
int hgf_creds_set(hgf_creds *c, const char *akid, const char *secret, const char *token,
                  time_t expiration, const char *source, hgf_err *err);
void hgf_creds_clear(hgf_creds *c);
int hgf_creds_copy(hgf_creds *dst, const hgf_creds *src, hgf_err *err);

/* AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN.
 * HGF_ENOTFOUND when the key id is unset; HGF_EINPUT when only half is set. */
int hgf_creds_from_env(hgf_creds *out, hgf_err *err);

/* An access key id is 16-128 characters of [A-Z0-9]. */
int hgf_creds_validate_access_key_id(const char *akid, const char *field, hgf_err *err);

/* "AKIA****WXYZ (static)": the key id masked but for its ends, never the secret. */
void hgf_creds_describe(const hgf_creds *c, char *out, size_t n);

#endif
