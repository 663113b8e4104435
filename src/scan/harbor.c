/* A client of the Harbor Pluggable Scanner API v1.1: check the adapter's
 * metadata, POST the scan request (registry URL and a Basic authorization the
 * adapter pulls with), then poll the report: 302 + Refresh-After means not
 * ready yet, 200 is the vulnerability report v1.1. */
#include "scan_internal.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METADATA_MIME "application/vnd.scanner.adapter.metadata+json; version=1.0"
#define SCAN_REQUEST_MIME "application/vnd.scanner.adapter.scan.request+json; version=1.0"
#define SCAN_RESPONSE_MIME "application/vnd.scanner.adapter.scan.response+json; version=1.0"
#define REPORT_MIME "application/vnd.security.vulnerability.report; version=1.1"
#define REQUEST_TIMEOUT_MS 30000L
#define DEFAULT_REFRESH_S 5
#define MESSAGE_SHOWN 300

static void on_metadata(const hgf_http_resp *r, void *arg);
static void on_scan(const hgf_http_resp *r, void *arg);
static void on_report(const hgf_http_resp *r, void *arg);

/* ------------------------------------------------------------------ */
/* requests                                                            */

static long request_timeout_ms(const scan_job *j)
{
    double left = hgf_scan_job_remaining(j) + 1.0;
    long ms = left > 0 ? (long)(left * 1000.0) : 1000L;
    return ms < REQUEST_TIMEOUT_MS ? ms : REQUEST_TIMEOUT_MS;
}

/* Header lines: Accept, then Content-Type when there is a body, then the
 * adapter's own Authorization when configured. */
static int header_lines(const scan_job *j, const char *accept, const char *ctype, hgf_buf *h,
                        const char *lines[4])
{
    size_t n = 0, off[3];
    off[n++] = h->len;
    if (hgf_buf_printf(h, "Accept: %s", accept) || hgf_buf_putc(h, '\0'))
        return HGF_ENOMEM;
    if (ctype) {
        off[n++] = h->len;
        if (hgf_buf_printf(h, "Content-Type: %s", ctype) || hgf_buf_putc(h, '\0'))
            return HGF_ENOMEM;
    }
    if (j->s->adapter_auth) {
        off[n++] = h->len;
        if (hgf_buf_printf(h, "Authorization: %s", j->s->adapter_auth))
            return HGF_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        lines[i] = h->data + off[i];
    lines[n] = NULL;
    return 0;
}

static void send_req(scan_job *j, const char *method, const char *path, const char *accept,
                     const char *ctype, const char *body, hgf_http_cb cb)
{
    hgf_buf url = HGF_BUF_INIT, h = HGF_BUF_INIT;
    const char *lines[4];
    hgf_err e;
    int rc = hgf_buf_printf(&url, "%s%s", j->s->adapter_url, path);
    if (rc == 0)
        rc = header_lines(j, accept, ctype, &h, lines);
    if (rc == 0) {
        hgf_http_req req = {.method = method, .url = url.data, .headers = lines,
                            .body = body, .body_len = body ? strlen(body) : 0,
                            .limit_key = "harbor-adapter", .timeout_ms = request_timeout_ms(j),
                            .max_body = j->s->max_stdout};
        rc = hgf_http_send(j->s->http, &req, cb, j, &e);
        if (rc == 0)
            j->h.http_pending = 1;
        else
            hgf_scan_job_fail_later(j, rc, 0, "harbor: %s %s: %s", method, path, e.msg);
    } else {
        hgf_scan_job_fail_later(j, HGF_ENOMEM, 1, "harbor: out of memory");
    }
    if (h.data)
        OPENSSL_cleanse(h.data, h.len);
    hgf_buf_free(&h);
    hgf_buf_free(&url);
}

/* The job, or NULL when it was cancelled or already ended (then freed). */
static scan_job *resume(void *arg)
{
    scan_job *j = arg;
    j->h.http_pending = 0;
    if (j->s)
        return j;
    hgf_scan_job_free(j);
    return NULL;
}

static int basic_token(const scan_job *j, hgf_buf *out)
{
    hgf_buf plain = HGF_BUF_INIT;
    int rc = hgf_buf_printf(&plain, "%s:%s", j->username, j->password);
    if (rc == 0)
        rc = hgf_buf_reserve(out, 4 * (plain.len / 3 + 1) + 1);
    if (rc == 0) {
        int n = EVP_EncodeBlock((unsigned char *)out->data, (const unsigned char *)plain.data,
                                (int)plain.len);
        out->len = (size_t)n;
        out->data[n] = '\0';
    }
    if (plain.data)
        OPENSSL_cleanse(plain.data, plain.len);
    hgf_buf_free(&plain);
    return rc;
}

/* ------------------------------------------------------------------ */
/* failures                                                            */

/* The adapter's {"error":{"message":...}}, or the start of its body, with
 * anything that could be our credentials removed. */
static void adapter_message(const scan_job *j, const hgf_http_resp *r, char *out, size_t n)
{
    json_t *doc = json_loadb(r->body, r->body_len, 0, NULL);
    const char *msg = json_string_value(json_object_get(json_object_get(doc, "error"), "message"));
    const char *text = msg ? msg : r->body;
    size_t len = msg ? strlen(msg) : r->body_len;
    hgf_buf a = HGF_BUF_INIT, b = HGF_BUF_INIT, tok = HGF_BUF_INIT;
    if (j->username && basic_token(j, &tok))
        hgf_buf_reset(&tok);
    if (hgf_scan_redact(text, len, j->password, &a) == 0 &&
        hgf_scan_redact(hgf_buf_str(&a), a.len, tok.data, &b) == 0)
        hgf_scan_excerpt(hgf_buf_str(&b), b.len, MESSAGE_SHOWN, out, n);
    else
        snprintf(out, n, "(no message)");
    if (tok.data)
        OPENSSL_cleanse(tok.data, tok.len);
    hgf_buf_free(&tok);
    hgf_buf_free(&a);
    hgf_buf_free(&b);
    json_decref(doc);
}

static void fail_resp(scan_job *j, const char *what, const hgf_http_resp *r)
{
    if (r->status == 0) {
        hgf_scan_job_fail_now(j, HGF_EHTTP, 1, "harbor: %s: %s", what, r->error);
        return;
    }
    char shown[MESSAGE_SHOWN * 4 + 8];
    adapter_message(j, r, shown, sizeof shown);
    int retry = r->status >= 500 || r->status == 429;
    hgf_scan_job_fail_now(j, HGF_EFAIL, retry, "harbor: %s: HTTP %ld: %s", what, r->status,
                          shown[0] ? shown : "(empty body)");
}

/* ------------------------------------------------------------------ */
/* metadata                                                            */

/* MIME types compare without case and without blanks around parameters. */
static int mime_eq(const char *a, const char *b)
{
    for (;;) {
        while (*a == ' ' || *a == '\t')
            a++;
        while (*b == ' ' || *b == '\t')
            b++;
        if (!*a || !*b)
            return !*a && !*b;
        if (tolower((unsigned char)*a++) != tolower((unsigned char)*b++))
            return 0;
    }
}

static int list_has(json_t *list, const char *mime)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) {
        if (json_is_string(v) && mime_eq(json_string_value(v), mime))
            return 1;
    }
    return 0;
}

static int can_scan(json_t *meta, const char *media_type)
{
    size_t i;
    json_t *cap;
    json_array_foreach(json_object_get(meta, "capabilities"), i, cap) {
        /* v1.1 types capabilities; v1.0 ones are all vulnerability scans. */
        const char *type = json_string_value(json_object_get(cap, "type"));
        if (type && strcmp(type, "vulnerability") != 0)
            continue;
        if (list_has(json_object_get(cap, "consumes_mime_types"), media_type) &&
            list_has(json_object_get(cap, "produces_mime_types"), REPORT_MIME))
            return 1;
    }
    return 0;
}

static void post_scan(scan_job *j);

static void on_metadata(const hgf_http_resp *r, void *arg)
{
    scan_job *j = resume(arg);
    if (!j)
        return;
    if (r->status != 200) {
        fail_resp(j, "GET /api/v1/metadata", r);
        return;
    }
    json_t *meta = json_loadb(r->body, r->body_len, 0, NULL);
    if (!json_is_array(json_object_get(meta, "capabilities"))) {
        hgf_scan_job_fail_now(j, HGF_EFAIL, 0, "harbor: GET /api/v1/metadata: no capabilities");
    } else if (!can_scan(meta, j->media_type)) {
        char mt[200];
        hgf_scan_excerpt(j->media_type, strlen(j->media_type), 120, mt, sizeof mt);
        hgf_scan_job_fail_now(j, HGF_EFAIL, 0, "harbor: the adapter cannot scan %s into %s", mt,
                              REPORT_MIME);
    } else {
        post_scan(j);
    }
    json_decref(meta);
}

/* ------------------------------------------------------------------ */
/* scan request                                                        */

static json_t *scan_request(const scan_job *j)
{
    json_t *registry = json_pack("{s:s}", "url", j->registry_url);
    json_t *artifact = json_pack("{s:s,s:s,s:s}", "repository", j->repository, "digest",
                                 j->digest, "mime_type", j->media_type);
    json_t *req = json_object();
    if (!registry || !artifact || !req)
        goto fail;
    if (j->tag && json_object_set_new(artifact, "tag", json_string(j->tag)))
        goto fail;
    if (j->username) {
        hgf_buf tok = HGF_BUF_INIT, auth = HGF_BUF_INIT;
        int rc = basic_token(j, &tok);
        if (rc == 0)
            rc = hgf_buf_printf(&auth, "Basic %s", tok.data);
        if (rc == 0)
            rc = json_object_set_new(registry, "authorization", json_string(auth.data));
        if (tok.data)
            OPENSSL_cleanse(tok.data, tok.len);
        if (auth.data)
            OPENSSL_cleanse(auth.data, auth.len);
        hgf_buf_free(&tok);
        hgf_buf_free(&auth);
        if (rc)
            goto fail;
    }
    json_object_set_new(req, "registry", registry);
    json_object_set_new(req, "artifact", artifact);
    return req;
fail:
    json_decref(registry);
    json_decref(artifact);
    json_decref(req);
    return NULL;
}

static void post_scan(scan_job *j)
{
    json_t *req = scan_request(j);
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!body) {
        hgf_scan_job_fail_now(j, HGF_ENOMEM, 1, "harbor: out of memory");
        return;
    }
    send_req(j, "POST", "/api/v1/scan", SCAN_RESPONSE_MIME, SCAN_REQUEST_MIME, body, on_scan);
    OPENSSL_cleanse(body, strlen(body));
    free(body);
}

/* Scan ids go into a URL path: keep to characters that need no escaping. */
static int valid_id(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n >= sizeof ((scan_harbor *)0)->id)
        return 0;
    for (const char *p = id; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("-._~", *p))
            return 0;
    return 1;
}

static void get_report(scan_job *j)
{
    char path[200];
    snprintf(path, sizeof path, "/api/v1/scan/%s/report", j->h.id);
    j->h.polls++;
    send_req(j, "GET", path, REPORT_MIME, NULL, NULL, on_report);
}

static void on_scan(const hgf_http_resp *r, void *arg)
{
    scan_job *j = resume(arg);
    if (!j)
        return;
    if (r->status != 202) {
        fail_resp(j, "POST /api/v1/scan", r);
        return;
    }
    json_t *doc = json_loadb(r->body, r->body_len, 0, NULL);
    const char *id = json_string_value(json_object_get(doc, "id"));
    if (valid_id(id)) {
        snprintf(j->h.id, sizeof j->h.id, "%s", id);
        get_report(j);
    } else {
        hgf_scan_job_fail_now(j, HGF_EFAIL, 0, "harbor: POST /api/v1/scan: no usable scan id");
    }
    json_decref(doc);
}

/* ------------------------------------------------------------------ */
/* report                                                              */

static void on_poll(struct ev_loop *loop, ev_timer *w, int revents)
{
    get_report(w->data);
}

static int refresh_after(const scan_job *j, const hgf_http_resp *r)
{
    const char *v = hgf_http_resp_header(r, "Refresh-After");
    char *end = NULL;
    long secs = v ? strtol(v, &end, 10) : -1;
    if (!v || end == v || secs < 0)
        secs = DEFAULT_REFRESH_S;
    if (secs < j->s->poll_min)
        secs = j->s->poll_min;
    if (secs > j->s->poll_max)
        secs = j->s->poll_max;
    return (int)secs;
}

static void report_ready(scan_job *j, const hgf_http_resp *r)
{
    hgf_scan_result res = {.scanner = "harbor"};
    char version[128];
    int rc = hgf_scan_parse(SCAN_HARBOR, r->body, r->body_len, &res.summary, &res.report, version,
                            sizeof version, &res.err);
    if (rc) {
        hgf_scan_job_fail_now(j, rc, 0, "%s", res.err.msg);
        return;
    }
    res.version = version;
    res.seconds = ev_time() - j->started;
    hgf_scan_job_deliver(j, &res);
    json_decref(res.report);
}

static void on_report(const hgf_http_resp *r, void *arg)
{
    scan_job *j = resume(arg);
    if (!j)
        return;
    if (r->status == 200) {
        report_ready(j, r);
    } else if (r->status == 302) {
        ev_timer_init(&j->aux, on_poll, refresh_after(j, r), 0.);
        j->aux.data = j;
        ev_timer_start(j->s->loop, &j->aux);
    } else {
        char what[200];
        snprintf(what, sizeof what, "GET /api/v1/scan/%s/report", j->h.id);
        fail_resp(j, what, r);
    }
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    scan_job *j = w->data;
    if (j->h.id[0])
        hgf_scan_job_fail_now(j, HGF_EFAIL, 1, "harbor: timed out after %d s (scan %s, %d polls)",
                              j->s->timeout_s, j->h.id, j->h.polls);
    else
        hgf_scan_job_fail_now(j, HGF_EFAIL, 1, "harbor: timed out after %d s", j->s->timeout_s);
}

void hgf_scan_harbor_start(scan_job *j)
{
    ev_timer_init(&j->deadline, on_deadline, j->s->timeout_s, 0.);
    j->deadline.data = j;
    ev_timer_start(j->s->loop, &j->deadline);
    send_req(j, "GET", "/api/v1/metadata", METADATA_MIME, NULL, NULL, on_metadata);
}

/* ------------------------------------------------------------------ */
/* the report format                                                   */

int hgf_scan_harbor_parse(json_t *root, hgf_scan_summary *sum, char *version, size_t vn,
                          const char **why)
{
    json_t *vulns = json_is_object(root) ? json_object_get(root, "vulnerabilities") : NULL;
    int empty = (!vulns || json_is_null(vulns)) &&
                json_is_string(json_object_get(root, "generated_at"));
    if (!json_is_array(vulns) && !empty) {
        *why = "not a Harbor vulnerability report: no vulnerabilities array";
        return -1;
    }
    size_t i;
    json_t *v;
    json_array_foreach(vulns, i, v) {
        if (!json_is_object(v)) {
            *why = "a vulnerability is not an object";
            return -1;
        }
        hgf_scan_count(sum, json_string_value(json_object_get(v, "severity")));
    }
    json_t *sc = json_object_get(root, "scanner");
    const char *name = json_string_value(json_object_get(sc, "name"));
    const char *ver = json_string_value(json_object_get(sc, "version"));
    if (name && ver && vn)
        snprintf(version, vn, "%s %s", name, ver);
    return 0;
}
