/* The scanner front: HGFLEET_SCANNER parsing, target validation, the FIFO of
 * scans waiting for a process slot, and the single delivery path. */
#include "scan_internal.h"

#include <ctype.h>
#include <ev.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hgfleet/registry.h"

#define DEFAULT_TIMEOUT_S 600
#define DEFAULT_MAX_STDOUT ((size_t)64 << 20)
#define DEFAULT_MAX_STDERR ((size_t)64 << 10)
#define DEFAULT_MAX_RUNNING 4
#define MAX_CREDENTIAL 16384

static const char *const kind_names[] = {"none", "trivy", "grype", "harbor"};

const char *hgf_scan_kind_name(enum scan_kind k)
{
    return kind_names[k];
}

/* ------------------------------------------------------------------ */
/* construction                                                        */

static int bad_spec(const char *spec, hgf_err *err)
{
    char shown[160];
    hgf_scan_excerpt(spec, strlen(spec), 64, shown, sizeof shown);
    return hgf_err_set(err, HGF_EINPUT,
                       "HGFLEET_SCANNER: expected none, trivy, grype or harbor:<adapter URL>, "
                       "got '%s'", shown);
}

/* http(s)://host[:port][/path] without a query, a fragment or userinfo
 * (credentials in a URL end up in error messages). */
static int valid_adapter_url(const char *u)
{
    const char *host = NULL;
    if (strncmp(u, "http://", 7) == 0)
        host = u + 7;
    else if (strncmp(u, "https://", 8) == 0)
        host = u + 8;
    if (!host || !*host || *host == '/')
        return 0;
    for (const char *p = u; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == '?' || *p == '#' || (unsigned char)*p >= 0x7f)
            return 0;
    const char *end = strchr(host, '/');
    const char *at = strchr(host, '@');
    return !(at && (!end || at < end));
}

static int parse_spec(hgf_scanner *s, const char *spec, hgf_err *err)
{
    if (!spec || !*spec)
        return bad_spec("", err);
    for (int k = SCAN_NONE; k <= SCAN_GRYPE; k++)
        if (strcmp(spec, kind_names[k]) == 0) {
            s->kind = (enum scan_kind)k;
            return 0;
        }
    if (strncmp(spec, "harbor:", 7) == 0 && strchr(spec, '@'))
        return hgf_err_set(err, HGF_EINPUT,
                           "HGFLEET_SCANNER: the Harbor adapter URL must not carry credentials "
                           "(expected harbor:<adapter URL>)");
    if (strncmp(spec, "harbor:", 7) || !valid_adapter_url(spec + 7))
        return bad_spec(spec, err);
    s->kind = SCAN_HARBOR;
    s->adapter_url = strdup(spec + 7);
    if (!s->adapter_url)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    size_t n = strlen(s->adapter_url);
    while (n > 0 && s->adapter_url[n - 1] == '/')
        s->adapter_url[--n] = '\0';
    return 0;
}

static char *search_path(const char *name)
{
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    hgf_buf b = HGF_BUF_INIT;
    for (const char *p = path;; p++) {
        const char *colon = strchr(p, ':');
        size_t n = colon ? (size_t)(colon - p) : strlen(p);
        hgf_buf_reset(&b);
        /* An empty PATH element would mean the working directory: never that. */
        if (n > 0 && p[0] == '/' && hgf_buf_printf(&b, "%.*s/%s", (int)n, p, name) == 0 &&
            access(b.data, X_OK) == 0)
            return hgf_buf_detach(&b);
        if (!colon)
            break;
        p = colon;
    }
    hgf_buf_free(&b);
    return NULL;
}

static int find_tool(hgf_scanner *s, const char *path, hgf_err *err)
{
    const char *name = hgf_scan_kind_name(s->kind);
    if (path && *path) {
        if (path[0] != '/' || access(path, X_OK) != 0)
            return hgf_err_set(err, HGF_EINPUT,
                               "HGFLEET_SCANNER=%s: %s is not an executable absolute path",
                               name, path);
        s->tool = strdup(path);
    } else {
        s->tool = search_path(name);
        if (!s->tool)
            return hgf_err_set(err, HGF_EINPUT, "HGFLEET_SCANNER=%s: %s not found on PATH",
                               name, name);
    }
    return s->tool ? 0 : hgf_err_set(err, HGF_ENOMEM, "out of memory");
}

static int apply_opts(hgf_scanner *s, const hgf_scanner_opts *o, hgf_err *err)
{
    hgf_scanner_opts none = {0};
    if (!o)
        o = &none;
    s->timeout_s = o->timeout_seconds > 0 ? o->timeout_seconds : DEFAULT_TIMEOUT_S;
    s->max_stdout = o->max_stdout ? o->max_stdout : DEFAULT_MAX_STDOUT;
    s->max_stderr = o->max_stderr ? o->max_stderr : DEFAULT_MAX_STDERR;
    s->max_running = o->max_running > 0 ? o->max_running : DEFAULT_MAX_RUNNING;
    s->poll_min = o->poll_min_seconds > 0 ? o->poll_min_seconds : 1;
    s->poll_max = o->poll_max_seconds > 0 ? o->poll_max_seconds : 60;
    if (s->poll_max < s->poll_min)
        s->poll_max = s->poll_min;
    s->metrics = o->metrics;
    s->home = strdup(o->home_dir && *o->home_dir ? o->home_dir : "/tmp");
    if (o->adapter_authorization)
        s->adapter_auth = strdup(o->adapter_authorization);
    if (!s->home || (o->adapter_authorization && !s->adapter_auth))
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    if (s->kind == SCAN_TRIVY || s->kind == SCAN_GRYPE)
        return find_tool(s, o->tool_path, err);
    return 0;
}

static int check_loop(const hgf_scanner *s, hgf_err *err)
{
    if ((s->kind == SCAN_TRIVY || s->kind == SCAN_GRYPE) && !ev_is_default_loop(s->loop))
        return hgf_err_set(err, HGF_EINPUT,
                           "HGFLEET_SCANNER=%s: process scanners need the default libev loop",
                           hgf_scan_kind_name(s->kind));
    if (s->kind == SCAN_HARBOR && !s->http)
        return hgf_err_set(err, HGF_EINPUT, "HGFLEET_SCANNER=harbor: no HTTP client given");
    return 0;
}

static void describe_metrics(hgf_metrics *m)
{
    if (!m)
        return;
    hgf_metrics_describe(m, "hgfleet_scans_total", HGF_METRIC_COUNTER,
                         "Scans finished, by scanner and outcome.");
    hgf_metrics_describe(m, "hgfleet_scan_seconds", HGF_METRIC_HISTOGRAM,
                         "Scan duration, by scanner.");
}

int hgf_scanner_new(struct ev_loop *loop, hgf_http *http, const char *spec,
                    const hgf_scanner_opts *opts, hgf_scanner **out, hgf_err *err)
{
    *out = NULL;
    hgf_scanner *s = calloc(1, sizeof *s);
    if (!s)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    s->loop = loop;
    s->http = http;
    int rc = parse_spec(s, spec, err);
    if (rc == 0)
        rc = check_loop(s, err);
    if (rc == 0)
        rc = apply_opts(s, opts, err);
    if (rc) {
        hgf_scanner_free(s);
        return rc;
    }
    describe_metrics(s->metrics);
    *out = s;
    return 0;
}

int hgf_scanner_check(const char *spec, hgf_err *err)
{
    hgf_scanner *s = calloc(1, sizeof *s);
    if (!s)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    int rc = parse_spec(s, spec, err);
    if (rc == 0)
        rc = apply_opts(s, NULL, err);
    hgf_scanner_free(s);
    return rc;
}

const char *hgf_scanner_name(const hgf_scanner *s)
{
    return hgf_scan_kind_name(s->kind);
}

/* ------------------------------------------------------------------ */
/* jobs                                                                */

static void wipe_free(char *p)
{
    if (p) {
        OPENSSL_cleanse(p, strlen(p));
        free(p);
    }
}

void hgf_scan_job_free(scan_job *j)
{
    free(j->host);
    free(j->registry_url);
    free(j->repository);
    free(j->digest);
    free(j->tag);
    free(j->media_type);
    free(j->username);
    wipe_free(j->password);
    hgf_buf_free(&j->p.out);
    hgf_buf_free(&j->p.errb);
    free(j);
}

static void unlink_job(hgf_scanner *s, scan_job *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        s->head = j->next;
    if (j->next)
        j->next->prev = j->prev;
    else
        s->tail = j->prev;
    j->prev = j->next = NULL;
}

static void start_job(scan_job *j)
{
    hgf_scanner *s = j->s;
    j->queued = 0;
    j->started = ev_time();
    if (s->kind == SCAN_NONE)
        hgf_scan_job_fail_later(j, 0, 0, "%s", "");
    else if (s->kind == SCAN_HARBOR)
        hgf_scan_harbor_start(j);
    else {
        j->has_slot = 1;
        s->running++;
        hgf_scan_proc_start(j);
    }
}

static void pump(hgf_scanner *s)
{
    for (scan_job *j = s->head; j && s->running < s->max_running; j = j->next)
        if (j->queued)
            start_job(j);
}

double hgf_scan_job_remaining(const scan_job *j)
{
    return j->started + j->s->timeout_s - ev_time();
}

static void count_outcome(hgf_scanner *s, const hgf_scan_result *res)
{
    if (!s->metrics)
        return;
    const char *outcome = res->rc == 0               ? "ok"
                          : res->rc == HGF_ENOTFOUND ? "notfound"
                                                     : "failed";
    char labels[96];
    snprintf(labels, sizeof labels, "scanner=\"%s\",outcome=\"%s\"", res->scanner, outcome);
    hgf_metrics_inc(s->metrics, "hgfleet_scans_total", labels, 1);
    snprintf(labels, sizeof labels, "scanner=\"%s\"", res->scanner);
    hgf_metrics_observe(s->metrics, "hgfleet_scan_seconds", labels, res->seconds);
}

void hgf_scan_job_deliver(scan_job *j, const hgf_scan_result *res)
{
    hgf_scanner *s = j->s;
    ev_timer_stop(s->loop, &j->deadline);
    ev_timer_stop(s->loop, &j->aux);
    unlink_job(s, j);
    if (j->has_slot) {
        j->has_slot = 0;
        s->running--;
    }
    pump(s);
    count_outcome(s, res);
    j->s = NULL;
    /* The callback may free the scanner: nothing below touches s. */
    j->cb(res, j->arg);
    if (!j->h.http_pending)
        hgf_scan_job_free(j);
}

static void deliver_fail(scan_job *j)
{
    hgf_scan_result res = {.rc = j->fail.code, .retryable = j->fail_retry, .err = j->fail,
                           .scanner = hgf_scan_kind_name(j->s->kind), .version = ""};
    res.seconds = ev_time() - j->started;
    hgf_scan_job_deliver(j, &res);
}

static void on_deferred(struct ev_loop *loop, ev_timer *w, int revents)
{
    deliver_fail(w->data);
}

static void set_fail(scan_job *j, int rc, int retryable, const char *fmt, va_list ap)
{
    hgf_err_clear(&j->fail);
    j->fail.code = rc;
    vsnprintf(j->fail.msg, sizeof j->fail.msg, fmt, ap);
    j->fail_retry = retryable;
}

void hgf_scan_job_fail_later(scan_job *j, int rc, int retryable, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_fail(j, rc, retryable, fmt, ap);
    va_end(ap);
    ev_timer_stop(j->s->loop, &j->aux);
    ev_timer_init(&j->aux, on_deferred, 0., 0.);
    j->aux.data = j;
    ev_timer_start(j->s->loop, &j->aux);
}

void hgf_scan_job_fail_now(scan_job *j, int rc, int retryable, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_fail(j, rc, retryable, fmt, ap);
    va_end(ap);
    deliver_fail(j);
}

/* ------------------------------------------------------------------ */
/* targets                                                             */

static int valid_repository(const char *r)
{
    size_t n = strlen(r);
    if (n == 0 || n > 256 || !isalnum((unsigned char)r[0]) || r[n - 1] == '/' ||
        strstr(r, "//"))
        return 0;
    for (const char *p = r; *p; p++)
        if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) && !strchr("._-/", *p))
            return 0;
    return 1;
}

static int valid_tag(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 128 || !(isalnum((unsigned char)t[0]) || t[0] == '_'))
        return 0;
    for (const char *p = t; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("._-", *p))
            return 0;
    return 1;
}

/* host[:port]; it becomes part of an image reference on a command line. */
static int valid_host(const char *h)
{
    size_t n = strlen(h);
    if (n == 0 || n > 253 || !isalnum((unsigned char)h[0]))
        return 0;
    for (const char *p = h; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr(".-:", *p))
            return 0;
    return 1;
}

static int valid_credentials(const hgf_scan_target *t)
{
    if (!t->username && !t->password)
        return 1;
    if (!t->username || !t->password || !*t->username || strchr(t->username, ':'))
        return 0;
    return strlen(t->username) < MAX_CREDENTIAL && strlen(t->password) < MAX_CREDENTIAL;
}

static int validate_target(const hgf_scanner *s, const hgf_scan_target *t, hgf_err *err)
{
    if (!t->repository || !valid_repository(t->repository))
        return hgf_err_set(err, HGF_EINPUT, "scan target: repository is not a valid name");
    if (!t->digest || !hgf_registry_is_digest(t->digest))
        return hgf_err_set(err, HGF_EINPUT, "scan target: digest is not sha256:<64 hex>");
    if (t->tag && !valid_tag(t->tag))
        return hgf_err_set(err, HGF_EINPUT, "scan target: tag is not a valid tag");
    if (!valid_credentials(t))
        return hgf_err_set(err, HGF_EINPUT,
                           "scan target: username and password go together (username without ':')");
    if ((s->kind == SCAN_TRIVY || s->kind == SCAN_GRYPE) &&
        (!t->registry_host || !valid_host(t->registry_host)))
        return hgf_err_set(err, HGF_EINPUT, "scan target: registry_host is not host[:port]");
    if (s->kind == SCAN_HARBOR && (!t->registry_url || !valid_adapter_url(t->registry_url)))
        return hgf_err_set(err, HGF_EINPUT, "scan target: registry_url is not an http(s) URL");
    if (s->kind == SCAN_HARBOR && (!t->media_type || !*t->media_type))
        return hgf_err_set(err, HGF_EINPUT, "scan target: media_type is required by Harbor");
    return 0;
}

static int dup_opt(char **dst, const char *src)
{
    if (!src)
        return 0;
    *dst = strdup(src);
    return *dst ? 0 : -1;
}

static scan_job *copy_target(const hgf_scan_target *t)
{
    scan_job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->p.out_w.fd = j->p.err_w.fd = -1;
    if (dup_opt(&j->host, t->registry_host) || dup_opt(&j->registry_url, t->registry_url) ||
        dup_opt(&j->repository, t->repository) || dup_opt(&j->digest, t->digest) ||
        dup_opt(&j->tag, t->tag) || dup_opt(&j->media_type, t->media_type) ||
        dup_opt(&j->username, t->username) || dup_opt(&j->password, t->password)) {
        hgf_scan_job_free(j);
        return NULL;
    }
    return j;
}

int hgf_scanner_scan(hgf_scanner *s, const hgf_scan_target *t, hgf_scan_cb cb, void *arg,
                     hgf_err *err)
{
    if (!t || !cb)
        return hgf_err_set(err, HGF_EINPUT, "scan: no target or no callback");
    int rc = validate_target(s, t, err);
    if (rc)
        return rc;
    scan_job *j = copy_target(t);
    if (!j)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    j->s = s;
    j->cb = cb;
    j->arg = arg;
    j->queued = 1;
    ev_init(&j->deadline, NULL);
    ev_init(&j->aux, NULL);
    j->prev = s->tail;
    if (s->tail)
        s->tail->next = j;
    else
        s->head = j;
    s->tail = j;
    if (s->kind == SCAN_HARBOR || s->kind == SCAN_NONE || s->running < s->max_running)
        start_job(j);
    return 0;
}

/* ------------------------------------------------------------------ */
/* teardown                                                            */

static void cancel_job(hgf_scanner *s, scan_job *j)
{
    ev_timer_stop(s->loop, &j->deadline);
    ev_timer_stop(s->loop, &j->aux);
    j->s = NULL;
    if (j->h.http_pending)
        return;  /* the HTTP callback sees j->s == NULL and frees it */
    hgf_scan_proc_cancel(s->loop, j);
    hgf_scan_job_free(j);
}

void hgf_scanner_free(hgf_scanner *s)
{
    if (!s)
        return;
    for (scan_job *j = s->head, *next; j; j = next) {
        next = j->next;
        cancel_job(s, j);
    }
    free(s->tool);
    free(s->adapter_url);
    wipe_free(s->adapter_auth);
    free(s->home);
    free(s);
}
