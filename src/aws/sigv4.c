#include "hgfleet/sigv4.h"
#include "hgfleet/secret.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define ALGORITHM "AWS4-HMAC-SHA256"
#define TERMINATOR "aws4_request"
#define SHA256_LEN 32
#define SIG_HEX_LEN 64

/* One request header after canonicalization; idx keeps duplicates in the
 * order they were given when sorting. */
typedef struct canon_hdr {
    char *name;
    char *value;
    size_t idx;
} canon_hdr;

/* ---- small helpers ---------------------------------------------------- */

static int is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static int is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.' || c == '~';
}

static int is_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int lower_eq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        unsigned char x = (unsigned char)*a, y = (unsigned char)*b;
        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z')
            y = (unsigned char)(y - 'A' + 'a');
        if (x != y)
            return 0;
    }
    return *a == *b;
}

static int sha256_hex(const void *p, size_t n, hgf_buf *out)
{
    unsigned char md[SHA256_LEN];
    unsigned int len = 0;
    if (!EVP_Digest(p ? p : "", n, md, &len, EVP_sha256(), NULL))
        return HGF_EFAIL;
    return hgf_buf_put_hex(out, md, len);
}

static int hmac(const void *key, size_t klen, const char *msg, unsigned char out[SHA256_LEN])
{
    unsigned int len = 0;
    if (klen > INT_MAX)
        return HGF_EINPUT;
    if (!HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &len))
        return HGF_EFAIL;
    return 0;
}

/* botocore's Trimall: whitespace runs (including obs-fold line breaks)
 * become one space, ends trimmed. */
static char *trimall(const char *v)
{
    size_t n = strlen(v);
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    int pending_space = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (is_ws(c)) {
            pending_space = o > 0;
            continue;
        }
        if (pending_space)
            out[o++] = ' ';
        pending_space = 0;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return out;
}

static char *lowercase_dup(const char *s)
{
    char *d = strdup(s);
    if (!d)
        return NULL;
    for (char *p = d; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return d;
}

static const char *find_header(const hgf_sigv4_header *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (h[i].name && lower_eq(h[i].name, name))
            return h[i].value ? h[i].value : "";
    return NULL;
}

/* ---- canonical URI and query ------------------------------------------ */

static int uri_encode(hgf_buf *out, const char *p, size_t n, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        int rc;
        if (is_unreserved(c) || (keep_slash && c == '/')) {
            rc = hgf_buf_putc(out, (char)c);
        } else {
            char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
            rc = hgf_buf_append(out, esc, 3);
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* botocore's remove_dot_segments: RFC 3986 dot segments plus collapsing of
 * repeated slashes, which AWS services (but not S3) expect. Each kept
 * segment is stored with a leading '/', so ".." truncates to the last '/'. */
static int remove_dot_segments(const char *path, hgf_buf *out)
{
    hgf_buf segs = HGF_BUF_INIT;
    int rc = 0;
    const char *p = path;
    while (!rc && *p) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.') {
            char *slash = segs.len ? strrchr(segs.data, '/') : NULL;
            if (slash) {
                segs.len = (size_t)(slash - segs.data);
                segs.data[segs.len] = '\0';
            }
        } else if (n > 0 && !(n == 1 && p[0] == '.')) {
            rc = hgf_buf_putc(&segs, '/');
            if (!rc)
                rc = hgf_buf_append(&segs, p, n);
        }
        p += n + (end ? 1 : 0);
    }
    if (!rc) {
        size_t len = strlen(path);
        const char *s = hgf_buf_str(&segs);
        if (path[0] != '/' && *s)
            s++;
        if (path[0] == '/' && !*s)
            rc = hgf_buf_putc(out, '/');
        else
            rc = hgf_buf_puts(out, s);
        if (!rc && segs.len && len && path[len - 1] == '/')
            rc = hgf_buf_putc(out, '/');
    }
    hgf_buf_free(&segs);
    return rc;
}

static int canonical_uri(const char *path, int normalize, hgf_buf *out)
{
    if (!path || !*path)
        return hgf_buf_putc(out, '/');
    if (!normalize)
        return uri_encode(out, path, strlen(path), 1);
    hgf_buf norm = HGF_BUF_INIT;
    int rc = remove_dot_segments(path, &norm);
    if (!rc)
        rc = uri_encode(out, hgf_buf_str(&norm), norm.len, 1);
    hgf_buf_free(&norm);
    return rc;
}

/* Decodes %XX (a malformed escape stays literal, so it is re-encoded as
 * %25) and re-encodes with the SigV4 unreserved set, so an already-encoded
 * query and a raw one canonicalize the same way. */
static int query_part(hgf_buf *out, const char *p, size_t n)
{
    hgf_buf dec = HGF_BUF_INIT;
    int rc = hgf_buf_reserve(&dec, n);
    for (size_t i = 0; !rc && i < n; i++) {
        int hi = -1, lo = -1;
        if (p[i] == '%' && i + 2 < n) {
            hi = hexval((unsigned char)p[i + 1]);
            lo = hexval((unsigned char)p[i + 2]);
        }
        if (hi >= 0 && lo >= 0) {
            rc = hgf_buf_putc(&dec, (char)(hi * 16 + lo));
            i += 2;
        } else {
            rc = hgf_buf_putc(&dec, p[i]);
        }
    }
    if (!rc)
        rc = uri_encode(out, hgf_buf_str(&dec), dec.len, 0);
    hgf_buf_free(&dec);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* One parameter as "key\x01value": \x01 sorts below every character an
 * encoded key can hold, so a plain strcmp orders by key, then by value. */
static char *query_pair(const char *p, size_t n)
{
    const char *eq = memchr(p, '=', n);
    size_t klen = eq ? (size_t)(eq - p) : n;
    hgf_buf b = HGF_BUF_INIT;
    int rc = query_part(&b, p, klen);
    if (!rc)
        rc = hgf_buf_putc(&b, '\x01');
    if (!rc && eq)
        rc = query_part(&b, eq + 1, n - klen - 1);
    if (rc) {
        hgf_buf_free(&b);
        return NULL;
    }
    return hgf_buf_detach(&b);
}

static int canonical_query(const char *query, hgf_buf *out)
{
    if (!query || !*query)
        return 0;
    size_t cap = 1;
    for (const char *q = query; *q; q++)
        cap += *q == '&';
    char **pairs = calloc(cap, sizeof *pairs);
    if (!pairs)
        return HGF_ENOMEM;
    size_t n = 0;
    int rc = 0;
    for (const char *p = query; !rc && *p;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len > 0 && !(pairs[n++] = query_pair(p, len)))
            rc = HGF_ENOMEM;
        p += len + (amp ? 1 : 0);
    }
    if (!rc)
        qsort(pairs, n, sizeof *pairs, cmp_str);
    for (size_t i = 0; !rc && i < n; i++) {
        if (i)
            rc = hgf_buf_putc(out, '&');
        char *sep = strchr(pairs[i], '\x01');
        *sep = '=';
        if (!rc)
            rc = hgf_buf_puts(out, pairs[i]);
    }
    free_strv(pairs, n);
    return rc;
}

/* ---- canonical headers ------------------------------------------------ */

static int cmp_hdr(const void *a, const void *b)
{
    const canon_hdr *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static void free_hdrs(canon_hdr *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(h[i].name);
        if (h[i].value)
            hgf_secret_wipe(h[i].value, strlen(h[i].value));
        free(h[i].value);
    }
    free(h);
}

/* Visible ASCII except ':'; looser than RFC 9110's tchar on purpose, since
 * the signer only has to agree with what the HTTP layer will send. */
static int is_name_char(unsigned char c)
{
    return c >= 0x21 && c <= 0x7e && c != ':';
}

static int valid_header_name(const char *s)
{
    if (!s || !*s)
        return 0;
    for (; *s; s++)
        if (!is_name_char((unsigned char)*s))
            return 0;
    return 1;
}

static int collect_headers(const hgf_sigv4_request *req, canon_hdr **out, hgf_err *err)
{
    canon_hdr *h = calloc(req->n_headers ? req->n_headers : 1, sizeof *h);
    if (!h)
        return HGF_ENOMEM;
    for (size_t i = 0; i < req->n_headers; i++) {
        const hgf_sigv4_header *src = &req->headers[i];
        if (!valid_header_name(src->name)) {
            free_hdrs(h, i);
            return hgf_err_set(err, HGF_EINPUT, "sigv4: header #%zu has an invalid name", i + 1);
        }
        h[i].name = lowercase_dup(src->name);
        h[i].value = trimall(src->value ? src->value : "");
        h[i].idx = i;
        if (!h[i].name || !h[i].value) {
            free_hdrs(h, i + 1);
            return HGF_ENOMEM;
        }
    }
    qsort(h, req->n_headers, sizeof *h, cmp_hdr);
    *out = h;
    return 0;
}

/* Sorted "name:v1,v2\n" lines, then the ';'-joined names. */
static int canonical_headers(const canon_hdr *h, size_t n, hgf_buf *lines, hgf_buf *names)
{
    int rc = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        int first = i == 0 || strcmp(h[i - 1].name, h[i].name) != 0;
        int last = i + 1 == n || strcmp(h[i + 1].name, h[i].name) != 0;
        if (first) {
            rc = hgf_buf_printf(lines, "%s:", h[i].name);
            if (!rc && names->len)
                rc = hgf_buf_putc(names, ';');
            if (!rc)
                rc = hgf_buf_puts(names, h[i].name);
        } else {
            rc = hgf_buf_putc(lines, ',');
        }
        if (!rc)
            rc = hgf_buf_puts(lines, h[i].value);
        if (!rc && last)
            rc = hgf_buf_putc(lines, '\n');
    }
    return rc;
}

static int has_host(const canon_hdr *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(h[i].name, "host") == 0)
            return 1;
    return 0;
}

/* botocore uses a caller-provided X-Amz-Content-SHA256 as the payload hash
 * (S3's UNSIGNED-PAYLOAD, streaming); otherwise the body's SHA-256. */
static int payload_hash(const hgf_sigv4_request *req, const canon_hdr *h, size_t n, hgf_buf *out)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(h[i].name, "x-amz-content-sha256") == 0)
            return hgf_buf_puts(out, h[i].value);
    return sha256_hex(req->body, req->body_len, out);
}

static int put_method(hgf_buf *creq, const char *method)
{
    for (const char *m = method; *m; m++) {
        char c = *m >= 'a' && *m <= 'z' ? (char)(*m - 'a' + 'A') : *m;
        if (hgf_buf_putc(creq, c))
            return HGF_ENOMEM;
    }
    return hgf_buf_putc(creq, '\n');
}

static int build_creq(const hgf_sigv4_request *req, int normalize, const canon_hdr *h,
                      size_t n, hgf_buf *creq, hgf_buf *names)
{
    int rc = put_method(creq, req->method);
    if (!rc)
        rc = canonical_uri(req->path, normalize, creq);
    if (!rc)
        rc = hgf_buf_putc(creq, '\n');
    if (!rc)
        rc = canonical_query(req->query, creq);
    if (!rc)
        rc = hgf_buf_putc(creq, '\n');
    if (!rc)
        rc = canonical_headers(h, n, creq, names);
    if (!rc)
        rc = hgf_buf_putc(creq, '\n');
    if (!rc)
        rc = hgf_buf_puts(creq, hgf_buf_str(names));
    if (!rc)
        rc = hgf_buf_putc(creq, '\n');
    if (!rc)
        rc = payload_hash(req, h, n, creq);
    return rc;
}

int hgf_sigv4_canonical_request(const hgf_sigv4_request *req, int normalize_path,
                                hgf_buf *creq, hgf_buf *signed_headers, hgf_err *err)
{
    if (!req || !req->method || !*req->method)
        return hgf_err_set(err, HGF_EINPUT, "sigv4: request method is required");
    if (req->n_headers && !req->headers)
        return hgf_err_set(err, HGF_EINPUT, "sigv4: request headers are missing");
    if (req->body_len && !req->body)
        return hgf_err_set(err, HGF_EINPUT, "sigv4: request body is NULL but body_len is not 0");
    canon_hdr *h = NULL;
    int rc = collect_headers(req, &h, err);
    if (rc)
        return rc;
    if (!has_host(h, req->n_headers)) {
        free_hdrs(h, req->n_headers);
        return hgf_err_set(err, HGF_EINPUT, "sigv4: the host header must be signed");
    }
    hgf_buf tmp_creq = HGF_BUF_INIT, names = HGF_BUF_INIT;
    rc = build_creq(req, normalize_path, h, req->n_headers, &tmp_creq, &names);
    free_hdrs(h, req->n_headers);
    if (!rc && creq)
        rc = hgf_buf_append(creq, hgf_buf_str(&tmp_creq), tmp_creq.len);
    if (!rc && signed_headers)
        rc = hgf_buf_append(signed_headers, hgf_buf_str(&names), names.len);
    hgf_secret_wipe_buf(&tmp_creq);
    hgf_buf_free(&names);
    if (rc == HGF_ENOMEM)
        return hgf_err_set(err, rc, "sigv4: out of memory");
    return rc ? hgf_err_set(err, rc, "sigv4: cannot build the canonical request") : 0;
}

/* ---- string to sign and signature ------------------------------------- */

void hgf_sigv4_amz_date(time_t when, char out[17])
{
    struct tm tm;
    gmtime_r(&when, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

static int valid_scope_part(const char *s)
{
    if (!s || !*s)
        return 0;
    for (; *s; s++)
        if (*s == '/' || is_ws((unsigned char)*s))
            return 0;
    return 1;
}

static int put_scope(hgf_buf *out, const char *amz_date, const hgf_sigv4_scope *scope)
{
    return hgf_buf_printf(out, "%.8s/%s/%s/" TERMINATOR, amz_date, scope->region, scope->service);
}

int hgf_sigv4_string_to_sign(const char *creq, const hgf_sigv4_scope *scope, hgf_buf *sts)
{
    if (!creq || !scope || !valid_scope_part(scope->region) || !valid_scope_part(scope->service))
        return HGF_EINPUT;
    char amz[17];
    hgf_sigv4_amz_date(scope->when, amz);
    int rc = hgf_buf_printf(sts, ALGORITHM "\n%s\n", amz);
    if (!rc)
        rc = put_scope(sts, amz, scope);
    if (!rc)
        rc = hgf_buf_putc(sts, '\n');
    if (!rc)
        rc = sha256_hex(creq, strlen(creq), sts);
    return rc;
}

/* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service),
 * "aws4_request"). */
static int signing_key(const char *secret, const hgf_sigv4_scope *scope,
                       unsigned char key[SHA256_LEN])
{
    size_t slen = strlen(secret);
    char *k0 = malloc(slen + 5);
    if (!k0)
        return HGF_ENOMEM;
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, secret, slen + 1);
    char amz[17];
    hgf_sigv4_amz_date(scope->when, amz);
    amz[8] = '\0';
    unsigned char k1[SHA256_LEN], k2[SHA256_LEN], k3[SHA256_LEN];
    int rc = hmac(k0, slen + 4, amz, k1);
    if (!rc)
        rc = hmac(k1, sizeof k1, scope->region, k2);
    if (!rc)
        rc = hmac(k2, sizeof k2, scope->service, k3);
    if (!rc)
        rc = hmac(k3, sizeof k3, TERMINATOR, key);
    OPENSSL_cleanse(k0, slen + 4);
    free(k0);
    OPENSSL_cleanse(k1, sizeof k1);
    OPENSSL_cleanse(k2, sizeof k2);
    OPENSSL_cleanse(k3, sizeof k3);
    return rc;
}

int hgf_sigv4_signature(const char *sts, const hgf_sigv4_creds *creds,
                        const hgf_sigv4_scope *scope, hgf_buf *sig_hex)
{
    if (!sts || !creds || !creds->secret_access_key || !*creds->secret_access_key || !scope ||
        !valid_scope_part(scope->region) || !valid_scope_part(scope->service))
        return HGF_EINPUT;
    unsigned char key[SHA256_LEN], sig[SHA256_LEN];
    int rc = signing_key(creds->secret_access_key, scope, key);
    if (!rc)
        rc = hmac(key, sizeof key, sts, sig);
    OPENSSL_cleanse(key, sizeof key);
    if (!rc)
        rc = hgf_buf_put_hex(sig_hex, sig, sizeof sig);
    return rc;
}

/* ---- Authorization header --------------------------------------------- */

static int check_sign_inputs(const hgf_sigv4_request *req, const hgf_sigv4_creds *creds,
                             const hgf_sigv4_scope *scope, hgf_err *err)
{
    if (!req || !creds || !scope)
        return hgf_err_set(err, HGF_EINPUT, "sigv4: request, credentials and scope are required");
    if (!valid_scope_part(creds->access_key_id) || strchr(creds->access_key_id, ','))
        return hgf_err_set(err, HGF_EINPUT, "sigv4: access_key_id is empty or malformed");
    if (!creds->secret_access_key || !*creds->secret_access_key)
        return hgf_err_set(err, HGF_EINPUT, "sigv4: secret_access_key is empty");
    if (!valid_scope_part(scope->region))
        return hgf_err_set(err, HGF_EINPUT, "sigv4: region is empty or contains '/' or spaces");
    if (!valid_scope_part(scope->service))
        return hgf_err_set(err, HGF_EINPUT, "sigv4: service is empty or contains '/' or spaces");
    char amz[17];
    hgf_sigv4_amz_date(scope->when, amz);
    const char *date = find_header(req->headers, req->n_headers, "x-amz-date");
    if (!date)
        return hgf_err_set(err, HGF_EINPUT, "sigv4: the x-amz-date header must be set (to %s)", amz);
    if (strcmp(date, amz) != 0)
        return hgf_err_set(err, HGF_EINPUT,
                           "sigv4: x-amz-date header \"%.32s\" does not match the signing time %s",
                           date, amz);
    const char *tok = find_header(req->headers, req->n_headers, "x-amz-security-token");
    if (creds->session_token && (!tok || strcmp(tok, creds->session_token) != 0))
        return hgf_err_set(err, HGF_EINPUT,
                           "sigv4: the x-amz-security-token header must carry the session token");
    return 0;
}

static int format_authorization(const char *akid, const char *amz, const hgf_sigv4_scope *scope,
                                 const char *names, const char *sig, hgf_buf *out)
{
    int rc = hgf_buf_printf(out, ALGORITHM " Credential=%s/", akid);
    if (!rc)
        rc = put_scope(out, amz, scope);
    if (!rc)
        rc = hgf_buf_printf(out, ", SignedHeaders=%s, Signature=%s", names, sig);
    return rc;
}

int hgf_sigv4_authorization(const hgf_sigv4_request *req, const hgf_sigv4_creds *creds,
                            const hgf_sigv4_scope *scope, hgf_buf *authorization, hgf_err *err)
{
    int rc = check_sign_inputs(req, creds, scope, err);
    if (rc)
        return rc;
    hgf_buf creq = HGF_BUF_INIT, names = HGF_BUF_INIT, sts = HGF_BUF_INIT, sig = HGF_BUF_INIT;
    rc = hgf_sigv4_canonical_request(req, 1, &creq, &names, err);
    if (!rc) {
        char amz[17];
        hgf_sigv4_amz_date(scope->when, amz);
        rc = hgf_sigv4_string_to_sign(hgf_buf_str(&creq), scope, &sts);
        if (!rc)
            rc = hgf_sigv4_signature(hgf_buf_str(&sts), creds, scope, &sig);
        if (!rc)
            rc = format_authorization(creds->access_key_id, amz, scope, hgf_buf_str(&names),
                                      hgf_buf_str(&sig), authorization);
        if (rc)
            hgf_err_set(err, rc, "sigv4: signing failed");
    }
    hgf_secret_wipe_buf(&creq);
    hgf_buf_free(&names);
    hgf_buf_free(&sts);
    hgf_buf_free(&sig);
    return rc;
}

/* ---- parsing and verification ----------------------------------------- */

time_t hgf_sigv4_parse_amz_date(const char *s)
{
    if (!s || strlen(s) != 16 || !is_digits(s, 8) || s[8] != 'T' || !is_digits(s + 9, 6) ||
        s[15] != 'Z')
        return -1;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (sscanf(s, "%4d%2d%2dT%2d%2d%2dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec) != 6)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    struct tm want = tm;
    time_t t = timegm(&tm);
    /* timegm normalizes out-of-range fields (Feb 30 -> Mar 2); reject those. */
    struct tm back;
    if (t == (time_t)-1 || !gmtime_r(&t, &back) || back.tm_year != want.tm_year ||
        back.tm_mon != want.tm_mon || back.tm_mday != want.tm_mday ||
        back.tm_hour != want.tm_hour || back.tm_min != want.tm_min || back.tm_sec != want.tm_sec)
        return -1;
    return t;
}

static char *trim_inplace(char *s)
{
    while (is_ws((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && is_ws((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* Credential=<akid>/<yyyymmdd>/<region>/<service>/aws4_request, split in
 * place. */
static int parse_credential(char *v, hgf_sigv4_auth *out, hgf_err *err)
{
    char *part[6] = {0};
    size_t n = 0;
    for (char *p = v; n < 6; n++) {
        part[n] = p;
        char *slash = strchr(p, '/');
        if (!slash) {
            n++;
            break;
        }
        *slash = '\0';
        p = slash + 1;
    }
    if (n != 5)
        return hgf_err_set(err, HGF_EINPUT,
                           "Authorization header: Credential must be <access key id>/<yyyymmdd>/"
                           "<region>/<service>/" TERMINATOR);
    if (!*part[0])
        return hgf_err_set(err, HGF_EINPUT, "Authorization header: Credential has an empty access key id");
    if (strlen(part[1]) != 8 || !is_digits(part[1], 8))
        return hgf_err_set(err, HGF_EINPUT,
                           "Authorization header: Credential date \"%.16s\" is not yyyymmdd", part[1]);
    if (!valid_scope_part(part[2]))
        return hgf_err_set(err, HGF_EINPUT, "Authorization header: Credential has an empty region");
    if (!valid_scope_part(part[3]))
        return hgf_err_set(err, HGF_EINPUT, "Authorization header: Credential has an empty service");
    if (strcmp(part[4], TERMINATOR) != 0)
        return hgf_err_set(err, HGF_EINPUT,
                           "Authorization header: Credential should be scoped with a valid "
                           "terminator: '" TERMINATOR "', not '%.32s'", part[4]);
    out->access_key_id = part[0];
    out->date = part[1];
    out->region = part[2];
    out->service = part[3];
    return 0;
}

static int parse_signed_headers(const char *v, hgf_err *err)
{
    int empty_item = !*v || *v == ';' || v[strlen(v) - 1] == ';' || strstr(v, ";;");
    for (const char *p = v; !empty_item && *p; p++) {
        if (*p >= 'A' && *p <= 'Z')
            return hgf_err_set(err, HGF_EINPUT,
                               "Authorization header: SignedHeaders must be lowercase");
        if (*p != ';' && !is_name_char((unsigned char)*p))
            return hgf_err_set(err, HGF_EINPUT,
                               "Authorization header: SignedHeaders has an invalid character");
    }
    if (empty_item)
        return hgf_err_set(err, HGF_EINPUT,
                           "Authorization header: SignedHeaders has an empty header name");
    return 0;
}

static int parse_signature(const char *v, hgf_err *err)
{
    size_t n = strlen(v);
    int ok = n == SIG_HEX_LEN;
    for (size_t i = 0; ok && i < n; i++)
        ok = (v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f');
    if (!ok)
        return hgf_err_set(err, HGF_EINPUT,
                           "Authorization header: Signature must be 64 lowercase hex digits");
    return 0;
}

static int dup_component(const char *key, hgf_err *err)
{
    return hgf_err_set(err, HGF_EINPUT, "Authorization header: %s appears twice", key);
}

static int parse_component(char *comp, hgf_sigv4_auth *out, hgf_err *err)
{
    char *eq = strchr(comp, '=');
    if (!eq)
        return hgf_err_set(err, HGF_EINPUT,
                           "Authorization header: component \"%.40s\" is not key=value", comp);
    *eq = '\0';
    char *key = trim_inplace(comp), *val = trim_inplace(eq + 1);
    int rc;
    if (strcmp(key, "Credential") == 0) {
        return out->access_key_id ? dup_component(key, err) : parse_credential(val, out, err);
    } else if (strcmp(key, "SignedHeaders") == 0) {
        if (out->signed_headers)
            return dup_component(key, err);
        if (!(rc = parse_signed_headers(val, err)))
            out->signed_headers = val;
        return rc;
    } else if (strcmp(key, "Signature") == 0) {
        if (out->signature)
            return dup_component(key, err);
        if (!(rc = parse_signature(val, err)))
            out->signature = val;
        return rc;
    }
    return hgf_err_set(err, HGF_EINPUT, "Authorization header: unknown component \"%.40s\"", key);
}

static int require_components(const hgf_sigv4_auth *a, hgf_err *err)
{
    const char *missing = !a->access_key_id    ? "Credential"
                          : !a->signed_headers ? "SignedHeaders"
                          : !a->signature      ? "Signature"
                                               : NULL;
    if (missing)
        return hgf_err_set(err, HGF_EINPUT,
                           "Authorization header requires '%s' parameter", missing);
    return 0;
}

int hgf_sigv4_parse_authorization(const char *value, hgf_sigv4_auth *out, hgf_err *err)
{
    memset(out, 0, sizeof *out);
    if (!value || !*value)
        return hgf_err_set(err, HGF_EINPUT, "Authorization header is missing");
    size_t n = strlen(value);
    if (n >= sizeof out->storage)
        return hgf_err_set(err, HGF_EINPUT, "Authorization header is longer than %zu bytes",
                           sizeof out->storage - 1);
    memcpy(out->storage, value, n + 1);
    size_t alen = strlen(ALGORITHM);
    if (strncmp(out->storage, ALGORITHM, alen) != 0 || out->storage[alen] != ' ')
        return hgf_err_set(err, HGF_EINPUT,
                           "Authorization header: unsupported algorithm, expected " ALGORITHM);
    char *p = out->storage + alen + 1;
    while (*p) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        char *comp = trim_inplace(p);
        int rc = *comp ? parse_component(comp, out, err) : 0;
        if (rc)
            return rc;
        if (!comma)
            break;
        p = comma + 1;
    }
    return require_components(out, err);
}

/* The request headers named in SignedHeaders, in request order. */
static int signed_subset(const hgf_sigv4_request *req, const char *signed_headers,
                         hgf_sigv4_header *out, size_t cap, size_t *n_out, hgf_err *err)
{
    char *names = strdup(signed_headers);
    if (!names)
        return HGF_ENOMEM;
    int rc = 0;
    for (char *save = NULL, *name = strtok_r(names, ";", &save); !rc && name;
         name = strtok_r(NULL, ";", &save)) {
        size_t before = *n_out;
        for (size_t i = 0; !rc && i < req->n_headers; i++) {
            if (!req->headers[i].name || !lower_eq(req->headers[i].name, name))
                continue;
            /* Only a name listed twice can take more slots than there are headers. */
            if (*n_out == cap)
                rc = hgf_err_set(err, HGF_EFAIL, "SignedHeaders lists '%.64s' twice", name);
            else
                out[(*n_out)++] = req->headers[i];
        }
        if (!rc && *n_out == before)
            rc = hgf_err_set(err, HGF_EFAIL,
                             "header '%.64s' is listed in SignedHeaders but absent from the request",
                             name);
    }
    free(names);
    return rc;
}

/* When the client signed x-amz-content-sha256, the canonical request trusts
 * that value instead of hashing the body, so it must match the body. */
static int check_content_sha(const hgf_sigv4_request *req, const hgf_sigv4_header *h, size_t n,
                             hgf_err *err)
{
    const char *claimed = find_header(h, n, "x-amz-content-sha256");
    if (!claimed)
        return 0;
    hgf_buf actual = HGF_BUF_INIT;
    char *want = trimall(claimed);
    int rc = want ? sha256_hex(req->body, req->body_len, &actual) : HGF_ENOMEM;
    if (!rc && strcmp(want, hgf_buf_str(&actual)) != 0)
        rc = hgf_err_set(err, HGF_EFAIL,
                         "x-amz-content-sha256 does not match the SHA-256 of the request body");
    free(want);
    hgf_buf_free(&actual);
    return rc;
}

static int verify_time(const hgf_sigv4_request *req, const hgf_sigv4_auth *auth, time_t *when,
                       hgf_err *err)
{
    const char *raw = find_header(req->headers, req->n_headers, "x-amz-date");
    if (!raw)
        return hgf_err_set(err, HGF_EFAIL, "the request has no x-amz-date header");
    char date[17] = "";
    snprintf(date, sizeof date, "%s", raw);
    *when = strlen(raw) == 16 ? hgf_sigv4_parse_amz_date(date) : -1;
    if (*when == -1)
        return hgf_err_set(err, HGF_EFAIL, "x-amz-date header is not yyyymmddThhmmssZ");
    if (strncmp(date, auth->date, 8) != 0)
        return hgf_err_set(err, HGF_EFAIL,
                           "Date in Credential scope does not match YYYYMMDD from x-amz-date "
                           "(%s vs %.8s)", auth->date, date);
    return 0;
}

static int compare_signature(const hgf_sigv4_request *req, const hgf_sigv4_auth *auth,
                             const char *secret, time_t when, hgf_err *err)
{
    hgf_sigv4_creds creds = {auth->access_key_id, secret, NULL};
    hgf_sigv4_scope scope = {auth->region, auth->service, when};
    hgf_buf creq = HGF_BUF_INIT, names = HGF_BUF_INIT, sts = HGF_BUF_INIT, sig = HGF_BUF_INIT;
    int rc = hgf_sigv4_canonical_request(req, 1, &creq, &names, err);
    if (rc == HGF_EINPUT)
        rc = HGF_EFAIL;  /* keep err's message: it names the bad header */
    if (!rc && strcmp(hgf_buf_str(&names), auth->signed_headers) != 0)
        rc = hgf_err_set(err, HGF_EFAIL,
                         "SignedHeaders must be sorted, lowercase and without duplicates");
    if (!rc)
        rc = hgf_sigv4_string_to_sign(hgf_buf_str(&creq), &scope, &sts);
    if (!rc)
        rc = hgf_sigv4_signature(hgf_buf_str(&sts), &creds, &scope, &sig);
    if (!rc && (sig.len != SIG_HEX_LEN || CRYPTO_memcmp(sig.data, auth->signature, SIG_HEX_LEN)))
        rc = hgf_err_set(err, HGF_EFAIL,
                         "The request signature we calculated does not match the signature you "
                         "provided. Check your AWS Secret Access Key and signing method.");
    hgf_secret_wipe_buf(&creq);
    hgf_buf_free(&names);
    hgf_buf_free(&sts);
    hgf_buf_free(&sig);
    return rc;
}

int hgf_sigv4_verify(const hgf_sigv4_request *req, const hgf_sigv4_auth *auth,
                     const char *secret_access_key, hgf_err *err)
{
    if (!req || !auth || !auth->access_key_id || !auth->signed_headers || !auth->signature)
        return hgf_err_set(err, HGF_EFAIL, "sigv4: no parsed Authorization header to verify");
    if (!secret_access_key || !*secret_access_key)
        return hgf_err_set(err, HGF_EFAIL, "sigv4: no secret access key to verify against");
    if (req->n_headers && !req->headers)
        return hgf_err_set(err, HGF_EFAIL, "sigv4: request headers are missing");
    time_t when = 0;
    int rc = verify_time(req, auth, &when, err);
    if (rc)
        return rc;
    hgf_sigv4_header *subset = calloc(req->n_headers ? req->n_headers : 1, sizeof *subset);
    if (!subset)
        return hgf_err_set(err, HGF_ENOMEM, "sigv4: out of memory");
    size_t n = 0;
    rc = signed_subset(req, auth->signed_headers, subset, req->n_headers, &n, err);
    if (!rc)
        rc = check_content_sha(req, subset, n, err);
    if (!rc) {
        hgf_sigv4_request signed_req = *req;
        signed_req.headers = subset;
        signed_req.n_headers = n;
        rc = compare_signature(&signed_req, auth, secret_access_key, when, err);
    }
    free(subset);
    if (rc == HGF_ENOMEM)
        return hgf_err_set(err, rc, "sigv4: out of memory");
    return rc;
}
