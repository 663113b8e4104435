/* AWS Signature Version 4: signing (the client) and verification (ecrsim).
 *
 * Canonicalization follows botocore byte for byte for the services we call
 * (ECR JSON 1.1, STS Query, Organizations): header names lowercased, values
 * trimmed with inner runs of spaces folded, headers sorted, query parameters
 * sorted by encoded key then value, path normalized (RFC 3986 dot segments,
 * repeated slashes) unless normalize_path is 0.
 *
 * The path is taken as it appears on the request line (already
 * percent-encoded) and is encoded once more, as botocore does for every
 * service but S3. A signed x-amz-content-sha256 header replaces the body hash
 * in the canonical request (botocore's rule).
 *
 * Ownership: every struct passed in is borrowed for the duration of the call.
 * Output is appended to caller-owned hgf_buf values. */
#ifndef HGF_SIGV4_H
#define HGF_SIGV4_H

#include <stddef.h>
#include <time.h>

#include "hgfleet/buf.h"
#include "hgfleet/err.h"

typedef struct hgf_sigv4_header {
    const char *name;   /* any case; duplicates are joined with ',' in order */
    const char *value;  /* raw value; may contain obs-fold line breaks */
} hgf_sigv4_header;

typedef struct hgf_sigv4_request {
    const char *method;            /* "GET", "POST", ... */
    const char *path;              /* raw request path, no query, e.g. "/" */
    const char *query;             /* raw query without '?', or NULL */
    const hgf_sigv4_header *headers; /* the headers to sign; must include host */
    size_t n_headers;
    const void *body;              /* may be NULL when body_len == 0 */
    size_t body_len;
} hgf_sigv4_request;

typedef struct hgf_sigv4_creds {
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token;     /* NULL when none */
} hgf_sigv4_creds;

typedef struct hgf_sigv4_scope {
    const char *region;            /* e.g. "us-east-1" */
    const char *service;           /* e.g. "ecr", "sts" */
    time_t when;                   /* signing time, UTC epoch seconds */
} hgf_sigv4_scope;

/* "20150830T123600Z" into out (at least 17 bytes). */
void hgf_sigv4_amz_date(time_t when, char out[17]);

/* The canonical request (step 1) into creq, and the ';'-joined signed header
 * names into signed_headers (either may be NULL). */
int hgf_sigv4_canonical_request(const hgf_sigv4_request *req, int normalize_path,
                                hgf_buf *creq, hgf_buf *signed_headers, hgf_err *err);

/* The string to sign (step 2) for a canonical request. */
int hgf_sigv4_string_to_sign(const char *creq, const hgf_sigv4_scope *scope, hgf_buf *sts);

/* Hex signature (step 3/4) of a string to sign. */
int hgf_sigv4_signature(const char *sts, const hgf_sigv4_creds *creds,
                        const hgf_sigv4_scope *scope, hgf_buf *sig_hex);

/* All of the above: the full Authorization header value
 * ("AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...").
 * The request's headers must already contain host and x-amz-date (and
 * x-amz-security-token when a session token is used). */
int hgf_sigv4_authorization(const hgf_sigv4_request *req, const hgf_sigv4_creds *creds,
                            const hgf_sigv4_scope *scope, hgf_buf *authorization, hgf_err *err);

/* A parsed Authorization header, for verification. Strings point into the
 * caller's copy (`storage`), which must outlive the struct. */
typedef struct hgf_sigv4_auth {
    char storage[2048];
    const char *access_key_id;
    const char *date;       /* yyyymmdd from the credential scope */
    const char *region;
    const char *service;
    const char *signed_headers; /* "host;x-amz-date;..." */
    const char *signature;  /* hex */
} hgf_sigv4_auth;

/* Parses "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/svc/aws4_request,
 * SignedHeaders=a;b, Signature=hex". HGF_EINPUT with a message naming the
 * missing or malformed component (AWS's IncompleteSignature cases). */
int hgf_sigv4_parse_authorization(const char *value, hgf_sigv4_auth *out, hgf_err *err);

/* Verifies a request that was signed with `auth` against the given secret:
 * recomputes the signature over exactly the headers named in SignedHeaders
 * (taken from req->headers), at the time given by the request's x-amz-date
 * header. Returns 0 when the signature matches, HGF_EFAIL otherwise (err
 * says why: signature mismatch, a signed header that is missing, ...).
 * Does not check the clock; callers compare x-amz-date with their own.
 * The path is normalized (every service but S3), host must be signed, and a
 * signed x-amz-content-sha256 must equal the body's SHA-256. */
int hgf_sigv4_verify(const hgf_sigv4_request *req, const hgf_sigv4_auth *auth,
                     const char *secret_access_key, hgf_err *err);

/* Parses "20150830T123600Z" to epoch seconds; -1 when malformed. */
time_t hgf_sigv4_parse_amz_date(const char *s);

#endif
