/* SigV4 canonicalization of arbitrary requests, and the Authorization
 * parser. Input lines: method, path, query (empty: none), then "name:value"
 * headers up to an empty line; the rest is the body. A request signed here
 * must verify, and the whole input is also tried as an Authorization value. */
#include "fuzz.h"

#include "hgfleet/sigv4.h"

#include <strings.h>

#define MAX_HEADERS 16

static const hgf_sigv4_creds CREDS = {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                      NULL};

static int token_name(const char *s)
{
    return *s && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") ==
                     strlen(s);
}

static int reserved(const char *name)
{
    /* A signed x-amz-content-sha256 must match the body to verify (botocore's rule). */
    return !strcasecmp(name, "host") || !strcasecmp(name, "x-amz-date") ||
           !strcasecmp(name, "x-amz-content-sha256");
}

/* Returns the number of headers; the body starts at *rest. */
static size_t headers(char **rest, hgf_sigv4_header *h)
{
    size_t n = 0;
    h[n++] = (hgf_sigv4_header){"Host", "example.amazonaws.com"};
    h[n++] = (hgf_sigv4_header){"X-Amz-Date", "20150830T123600Z"};
    while (**rest) {
        char *line = *rest;
        *rest = fuzz_next_line(line);
        if (!*line)
            break;
        char *colon = strchr(line, ':');
        if (!colon || n == MAX_HEADERS)
            continue;
        *colon = '\0';
        if (token_name(line) && !reserved(line))
            h[n++] = (hgf_sigv4_header){line, colon + 1};
    }
    return n;
}

static void sign_and_verify(const hgf_sigv4_request *req)
{
    hgf_sigv4_scope scope = {"us-east-1", "service", 1440938160};
    hgf_buf auth = HGF_BUF_INIT, creq = HGF_BUF_INIT, sh = HGF_BUF_INIT;
    hgf_err e;
    if (hgf_sigv4_canonical_request(req, 1, &creq, &sh, &e) == 0) {
        FUZZ_CHECK(strstr(hgf_buf_str(&creq), hgf_buf_str(&sh)) != NULL);
    }
    if (hgf_sigv4_authorization(req, &CREDS, &scope, &auth, &e) == 0 && auth.len < 1800) {
        hgf_sigv4_auth parsed;
        FUZZ_CHECK(hgf_sigv4_parse_authorization(hgf_buf_str(&auth), &parsed, &e) == 0);
        if (hgf_sigv4_verify(req, &parsed, CREDS.secret_access_key, &e)) {
            fprintf(stderr, "invariant failed: own signature rejected: %s\n", e.msg);
            abort();
        }
    }
    hgf_buf_reset(&creq);
    /* The raw path too: no normalization must not crash either. */
    hgf_sigv4_canonical_request(req, 0, &creq, NULL, &e);
    hgf_buf_free(&auth);
    hgf_buf_free(&creq);
    hgf_buf_free(&sh);
}

static void parse_auth(const uint8_t *data, size_t size)
{
    char *value = fuzz_cstr(data, size);
    hgf_sigv4_auth a;
    hgf_err e;
    if (hgf_sigv4_parse_authorization(value, &a, &e) == 0)
        FUZZ_CHECK(a.access_key_id && a.date && a.region && a.service && a.signed_headers &&
                   a.signature);
    (void)hgf_sigv4_parse_amz_date(value);
    free(value);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    parse_auth(data, size);
    char *in = fuzz_cstr(data, size);
    char *path = fuzz_next_line(in);
    char *query = fuzz_next_line(path);
    char *rest = fuzz_next_line(query);
    hgf_sigv4_header h[MAX_HEADERS];
    size_t n = headers(&rest, h);
    hgf_sigv4_request req = {
        .method = in,
        .path = *path ? path : "/",
        .query = *query ? query : NULL,
        .headers = h,
        .n_headers = n,
        .body = rest,
        .body_len = strlen(rest),
    };
    sign_and_verify(&req);
    free(in);
    return 0;
}
