#include "webhook.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "hgfleet/buf.h"
#include "hgfleet/timeutil.h"

#define MAX_URL 2048
#define MAX_SECRET 4096
#define MAX_TIMEOUT_MS 60000
#define USER_AGENT "Amazon/EventBridge/ApiDestinations"

/* What a delivery needs, copied out of the configuration so it can change
 * meanwhile. auth_header is the whole "Name: value" line (a secret). */
typedef struct target {
    char *url;
    char *auth_header;
    long timeout_ms;
} target;

typedef struct attempt {
    int status;
    float ms;
    char error[64];
} attempt;

typedef struct record {
    hgf_sim_event ev;  /* repository and tag point at the copies below */
    char *repository;
    char *tag;
    attempt attempts[HGF_SIM_WEBHOOK_ATTEMPTS];
    hgf_sim_delivery d;
    int64_t delivered_ms;
} record;

struct hgf_sim_webhook {
    pthread_mutex_t lock;
    target cfg;        /* url NULL: none configured */
    char *auth_type;   /* "API_KEY", "BASIC", "BEARER" or NULL */
    char *auth_name;   /* the API key's header, or the Basic user name */
    atomic_int stopping;
    record *log;       /* a ring once it holds HGF_SIM_WEBHOOK_LOG_CAP */
    size_t n_log, cap_log, head;
    uint64_t total;
};

static void free_target(target *t)
{
    free(t->url);
    if (t->auth_header)
        OPENSSL_cleanse(t->auth_header, strlen(t->auth_header));
    free(t->auth_header);
    memset(t, 0, sizeof *t);
}

int hgf_sim_webhook_create(hgf_sim_webhook **out)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return HGF_EFAIL;
    hgf_sim_webhook *w = calloc(1, sizeof *w);
    if (!w) {
        curl_global_cleanup();
        return HGF_ENOMEM;
    }
    pthread_mutex_init(&w->lock, NULL);
    atomic_init(&w->stopping, 0);
    *out = w;
    return 0;
}

static void free_record(record *r)
{
    free(r->repository);
    free(r->tag);
}

void hgf_sim_webhook_events_clear(hgf_sim_webhook *w)
{
    pthread_mutex_lock(&w->lock);
    for (size_t i = 0; i < w->n_log; i++)
        free_record(&w->log[i]);
    free(w->log);
    w->log = NULL;
    w->n_log = w->cap_log = w->head = 0;
    pthread_mutex_unlock(&w->lock);
}

static void clear_config(hgf_sim_webhook *w)
{
    free_target(&w->cfg);
    free(w->auth_type);
    free(w->auth_name);
    w->auth_type = w->auth_name = NULL;
}

void hgf_sim_webhook_free(hgf_sim_webhook *w)
{
    if (!w)
        return;
    hgf_sim_webhook_events_clear(w);
    clear_config(w);
    pthread_mutex_destroy(&w->lock);
    free(w);
    curl_global_cleanup();
}

void hgf_sim_webhook_stop(hgf_sim_webhook *w)
{
    atomic_store(&w->stopping, 1);
}

/* ---- configuration ----------------------------------------------------- */

static int only_members(json_t *obj, const char *where, const char *const *known, hgf_err *err)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        int ok = 0;
        for (size_t i = 0; known[i] && !ok; i++)
            ok = strcmp(key, known[i]) == 0;
        if (!ok)
            return hgf_err_set(err, HGF_EINPUT, "%s: unknown member '%.64s'", where, key);
    }
    return 0;
}

/* A string member without CR or LF (it ends up in a header line). */
static int header_safe(json_t *obj, const char *member, const char *path, int required,
                       const char **out, hgf_err *err)
{
    json_t *v = json_object_get(obj, member);
    *out = NULL;
    if (!v && !required)
        return 0;
    if (!json_is_string(v) || json_string_length(v) == 0)
        return hgf_err_set(err, HGF_EINPUT, "%s: expected a non-empty string", path);
    *out = json_string_value(v);
    if (strlen(*out) != json_string_length(v) || strpbrk(*out, "\r\n") ||
        strlen(*out) > MAX_SECRET)
        return hgf_err_set(err, HGF_EINPUT, "%s: must be one line of at most %d bytes", path,
                           MAX_SECRET);
    return 0;
}

static int base64_of(const char *s, hgf_buf *out)
{
    size_t len = strlen(s);
    int rc = hgf_buf_reserve(out, 4 * ((len + 2) / 3) + 1);
    if (rc)
        return rc;
    int n = EVP_EncodeBlock((unsigned char *)out->data + out->len, (const unsigned char *)s,
                            (int)len);
    out->len += (size_t)n;
    out->data[out->len] = '\0';
    return 0;
}

/* The "Name: value" line of an auth object, and what may be shown of it. */
static int auth_line(json_t *auth, hgf_buf *line, const char **type, const char **name,
                     hgf_err *err)
{
    static const char *const api_key[] = {"type", "header", "value", NULL};
    static const char *const basic[] = {"type", "username", "password", NULL};
    static const char *const bearer[] = {"type", "token", NULL};
    const char *a = NULL, *b = NULL;
    int rc = header_safe(auth, "type", "auth.type", 1, type, err);
    if (rc)
        return rc;
    if (strcmp(*type, "API_KEY") == 0) {
        rc = only_members(auth, "auth", api_key, err);
        if (!rc)
            rc = header_safe(auth, "header", "auth.header", 0, &a, err);
        if (!rc && a && strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                  "0123456789-_") != strlen(a))
            rc = hgf_err_set(err, HGF_EINPUT, "auth.header: '%.64s' is not a header name", a);
        if (!rc)
            rc = header_safe(auth, "value", "auth.value", 1, &b, err);
        *name = a ? a : "X-Api-Key";
        return rc ? rc : hgf_buf_printf(line, "%s: %s", *name, b);
    }
    if (strcmp(*type, "BASIC") == 0) {
        hgf_buf pair = HGF_BUF_INIT;
        rc = only_members(auth, "auth", basic, err);
        if (!rc)
            rc = header_safe(auth, "username", "auth.username", 1, &a, err);
        if (!rc && strchr(a, ':'))
            rc = hgf_err_set(err, HGF_EINPUT, "auth.username: must not contain ':'");
        if (!rc)
            rc = header_safe(auth, "password", "auth.password", 1, &b, err);
        if (!rc)
            rc = hgf_buf_printf(&pair, "%s:%s", a, b);
        if (!rc)
            rc = hgf_buf_puts(line, "Authorization: Basic ");
        if (!rc)
            rc = base64_of(hgf_buf_str(&pair), line);
        if (pair.data)
            OPENSSL_cleanse(pair.data, pair.len);
        hgf_buf_free(&pair);
        *name = a;
        return rc;
    }
    if (strcmp(*type, "BEARER") == 0) {
        rc = only_members(auth, "auth", bearer, err);
        if (!rc)
            rc = header_safe(auth, "token", "auth.token", 1, &a, err);
        *name = NULL;
        return rc ? rc : hgf_buf_printf(line, "Authorization: Bearer %s", a);
    }
    return hgf_err_set(err, HGF_EINPUT,
                       "auth.type: expected API_KEY, BASIC or BEARER, got '%.64s'", *type);
}

static int parse_timeout(json_t *doc, long *out, hgf_err *err)
{
    json_t *v = json_object_get(doc, "timeout_ms");
    *out = HGF_SIM_WEBHOOK_TIMEOUT_MS;
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 1 ||
        json_integer_value(v) > MAX_TIMEOUT_MS)
        return hgf_err_set(err, HGF_EINPUT, "timeout_ms: expected an integer in 1..%d",
                           MAX_TIMEOUT_MS);
    *out = (long)json_integer_value(v);
    return 0;
}

static int parse_url(json_t *doc, const char **url, hgf_err *err)
{
    int rc = header_safe(doc, "url", "url", 1, url, err);
    if (rc)
        return rc;
    if ((strncmp(*url, "http://", 7) != 0 && strncmp(*url, "https://", 8) != 0) ||
        strlen(*url) > MAX_URL)
        return hgf_err_set(err, HGF_EINPUT, "url: expected an http:// or https:// URL");
    return 0;
}

int hgf_sim_webhook_configure(hgf_sim_webhook *w, json_t *doc, hgf_err *err)
{
    static const char *const known[] = {"url", "auth", "timeout_ms", NULL};
    const char *url = NULL, *type = NULL, *name = NULL;
    hgf_buf line = HGF_BUF_INIT;
    long timeout = HGF_SIM_WEBHOOK_TIMEOUT_MS;
    if (!json_is_object(doc))
        return hgf_err_set(err, HGF_EINPUT, "webhook: expected a JSON object");
    json_t *auth = json_object_get(doc, "auth");
    int rc = only_members(doc, "webhook", known, err);
    if (!rc)
        rc = parse_url(doc, &url, err);
    if (!rc)
        rc = parse_timeout(doc, &timeout, err);
    if (!rc && auth && !json_is_null(auth))
        rc = json_is_object(auth) ? auth_line(auth, &line, &type, &name, err)
                                  : hgf_err_set(err, HGF_EINPUT, "auth: expected an object");
    target t = {.url = rc ? NULL : strdup(url), .timeout_ms = timeout};
    char *type_copy = type ? strdup(type) : NULL, *name_copy = name ? strdup(name) : NULL;
    if (!rc && line.len)
        t.auth_header = hgf_buf_detach(&line);
    if (!rc && (!t.url || (type && (!type_copy || !t.auth_header)) || (name && !name_copy)))
        rc = hgf_err_set(err, HGF_ENOMEM, "webhook: out of memory");
    if (line.data)
        OPENSSL_cleanse(line.data, line.len);
    hgf_buf_free(&line);
    if (rc) {
        free_target(&t);
        free(type_copy);
        free(name_copy);
        return rc;
    }
    pthread_mutex_lock(&w->lock);
    clear_config(w);
    w->cfg = t;
    w->auth_type = type_copy;
    w->auth_name = name_copy;
    pthread_mutex_unlock(&w->lock);
    return 0;
}

void hgf_sim_webhook_clear(hgf_sim_webhook *w)
{
    pthread_mutex_lock(&w->lock);
    clear_config(w);
    pthread_mutex_unlock(&w->lock);
}

int hgf_sim_webhook_enabled(hgf_sim_webhook *w)
{
    pthread_mutex_lock(&w->lock);
    int on = w->cfg.url != NULL;
    pthread_mutex_unlock(&w->lock);
    return on;
}

json_t *hgf_sim_webhook_config_json(hgf_sim_webhook *w)
{
    pthread_mutex_lock(&w->lock);
    json_t *auth = !w->auth_type ? json_null()
                   : strcmp(w->auth_type, "API_KEY") == 0
                       ? json_pack("{s:s, s:s}", "type", w->auth_type, "header", w->auth_name)
                   : strcmp(w->auth_type, "BASIC") == 0
                       ? json_pack("{s:s, s:s}", "type", w->auth_type, "username", w->auth_name)
                       : json_pack("{s:s}", "type", w->auth_type);
    json_t *doc = json_pack("{s:s?, s:o, s:I}", "url", w->cfg.url, "auth", auth, "timeout_ms",
                            (json_int_t)(w->cfg.url ? w->cfg.timeout_ms : 0));
    pthread_mutex_unlock(&w->lock);
    return doc;
}

static int snapshot(hgf_sim_webhook *w, target *t)
{
    memset(t, 0, sizeof *t);
    pthread_mutex_lock(&w->lock);
    int rc = w->cfg.url ? 0 : HGF_EINPUT;
    if (!rc) {
        t->url = strdup(w->cfg.url);
        t->auth_header = w->cfg.auth_header ? strdup(w->cfg.auth_header) : NULL;
        t->timeout_ms = w->cfg.timeout_ms;
        if (!t->url || (w->cfg.auth_header && !t->auth_header))
            rc = HGF_ENOMEM;
    }
    pthread_mutex_unlock(&w->lock);
    if (rc)
        free_target(t);
    return rc;
}

/* ---- events ------------------------------------------------------------ */

void hgf_sim_webhook_event_init(hgf_sim_event *ev)
{
    unsigned char b[16];
    memset(ev, 0, sizeof *ev);
    if (RAND_bytes(b, sizeof b) != 1)
        memset(b, 0, sizeof b);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);  /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);  /* RFC 4122 variant */
    snprintf(ev->id, sizeof ev->id,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
}

json_t *hgf_sim_webhook_event_json(const hgf_sim_event *ev)
{
    char when[32];
    hgf_time_format_iso((time_t)(ev->time_ms / 1000), when, sizeof when);
    json_t *detail = json_pack("{s:s, s:s, s:s, s:s}", "result", ev->result, "repository-name",
                               ev->repository, "image-digest", ev->digest, "action-type",
                               ev->action);
    if (detail && ev->tag && *ev->tag &&
        json_object_set_new(detail, "image-tag", json_string(ev->tag)) != 0) {
        json_decref(detail);
        detail = NULL;
    }
    if (!detail)
        return NULL;
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:[], s:o}", "version", "0", "id",
                     ev->id, "detail-type", "ECR Image Action", "source", "aws.ecr", "account",
                     ev->account, "time", when, "region", ev->region, "resources", "detail",
                     detail);
}

/* ---- delivery ---------------------------------------------------------- */

static size_t discard(char *data, size_t size, size_t n, void *ctx)
{
    return size * n;
}

static int abort_if_stopping(void *ctx, curl_off_t dt, curl_off_t dn, curl_off_t ut,
                             curl_off_t un)
{
    return atomic_load((atomic_int *)ctx) ? 1 : 0;
}

static double since_ms(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* EventBridge retries these; other answers are final. */
static int retryable(int status)
{
    return status == 0 || status == 401 || status == 407 || status == 409 || status == 429 ||
           status >= 500;
}

static void prepare(CURL *c, hgf_sim_webhook *w, const target *t, const hgf_buf *body,
                    struct curl_slist *headers)
{
    curl_easy_setopt(c, CURLOPT_URL, t->url);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body->data);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body->len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, t->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, t->timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, abort_if_stopping);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &w->stopping);
}

static void one_attempt(CURL *c, attempt *a)
{
    struct timespec t0;
    long status = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CURLcode cc = curl_easy_perform(c);
    a->ms = (float)since_ms(&t0);
    if (cc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    a->status = (int)status;
    snprintf(a->error, sizeof a->error, "%s", cc == CURLE_OK ? "" : curl_easy_strerror(cc));
}

static void pause_ms(hgf_sim_webhook *w, unsigned ms)
{
    /* In slices, so a shutdown is not held up. */
    for (unsigned done = 0; done < ms && !atomic_load(&w->stopping); done += 20) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* "Expect:" keeps curl from waiting for a 100-continue on larger bodies. */
static int headers_for(const target *t, struct curl_slist **out)
{
    const char *lines[] = {"Content-Type: application/json", "User-Agent: " USER_AGENT,
                           "Expect:", t->auth_header};
    struct curl_slist *h = NULL;
    for (size_t i = 0; i < sizeof lines / sizeof lines[0] && lines[i]; i++) {
        struct curl_slist *next = curl_slist_append(h, lines[i]);
        if (!next) {
            curl_slist_free_all(h);
            return HGF_ENOMEM;
        }
        h = next;
    }
    *out = h;
    return 0;
}

static void log_delivery(hgf_sim_webhook *w, const hgf_sim_event *ev, const attempt *attempts,
                         const hgf_sim_delivery *d);

static int post_event(hgf_sim_webhook *w, CURL *c, const target *t, const hgf_sim_event *ev,
                      hgf_sim_delivery *out)
{
    attempt attempts[HGF_SIM_WEBHOOK_ATTEMPTS];
    struct curl_slist *headers = NULL;
    hgf_buf body = HGF_BUF_INIT;
    json_t *doc = hgf_sim_webhook_event_json(ev);
    char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(doc);
    int rc = text ? hgf_buf_puts(&body, text) : HGF_ENOMEM;
    free(text);
    if (!rc)
        rc = headers_for(t, &headers);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    memset(attempts, 0, sizeof attempts);
    memset(out, 0, sizeof *out);
    if (!rc)
        prepare(c, w, t, &body, headers);
    while (!rc && out->attempts < HGF_SIM_WEBHOOK_ATTEMPTS && !atomic_load(&w->stopping)) {
        if (out->attempts)
            pause_ms(w, HGF_SIM_WEBHOOK_RETRY_MS);
        attempt *a = &attempts[out->attempts++];
        one_attempt(c, a);
        out->status = a->status;
        if (!retryable(a->status))
            break;
    }
    out->latency_ms = since_ms(&t0);
    out->ok = out->status >= 200 && out->status < 300;
    if (!rc)
        log_delivery(w, ev, attempts, out);
    curl_slist_free_all(headers);
    hgf_buf_free(&body);
    return rc;
}

void hgf_sim_webhook_handle_free(void *handle)
{
    if (handle)
        curl_easy_cleanup(handle);
}

int hgf_sim_webhook_deliver(hgf_sim_webhook *w, const hgf_sim_event *ev, void **handle,
                            hgf_sim_delivery *out)
{
    target t;
    memset(out, 0, sizeof *out);
    int rc = snapshot(w, &t);
    if (rc)
        return rc;
    CURL *c = handle && *handle ? *handle : curl_easy_init();
    if (c && handle)
        *handle = c;
    rc = c ? post_event(w, c, &t, ev, out) : HGF_ENOMEM;
    if (c && !handle)
        curl_easy_cleanup(c);
    else if (c)
        curl_easy_reset(c);  /* keeps the connection, drops the headers about to be freed */
    free_target(&t);
    return rc;
}

/* ---- the log ----------------------------------------------------------- */

static int copy_event(record *r, const hgf_sim_event *ev)
{
    r->ev = *ev;
    r->repository = strdup(ev->repository ? ev->repository : "");
    r->tag = ev->tag && *ev->tag ? strdup(ev->tag) : NULL;
    r->ev.repository = r->repository;
    r->ev.tag = r->tag;
    if (r->repository && (r->tag || !ev->tag || !*ev->tag))
        return 0;
    free_record(r);
    return HGF_ENOMEM;
}

static int grow_log(hgf_sim_webhook *w)
{
    size_t cap = w->cap_log ? w->cap_log * 2 : 64;
    cap = cap > HGF_SIM_WEBHOOK_LOG_CAP ? HGF_SIM_WEBHOOK_LOG_CAP : cap;
    record *log = realloc(w->log, cap * sizeof *log);
    if (!log)
        return HGF_ENOMEM;
    w->log = log;
    w->cap_log = cap;
    return 0;
}

static void log_delivery(hgf_sim_webhook *w, const hgf_sim_event *ev, const attempt *attempts,
                         const hgf_sim_delivery *d)
{
    record r = {.d = *d, .delivered_ms = hgf_time_now_ms()};
    memcpy(r.attempts, attempts, sizeof r.attempts);
    if (copy_event(&r, ev) != 0)
        return;
    pthread_mutex_lock(&w->lock);
    w->total++;
    if (w->n_log == HGF_SIM_WEBHOOK_LOG_CAP) {
        /* Full: the oldest record, at head, gives way. */
        free_record(&w->log[w->head]);
        w->log[w->head] = r;
        w->head = (w->head + 1) % HGF_SIM_WEBHOOK_LOG_CAP;
    } else if (w->n_log < w->cap_log || grow_log(w) == 0) {
        w->log[w->n_log++] = r;
    } else {
        free_record(&r);
    }
    pthread_mutex_unlock(&w->lock);
}

static json_t *record_json(const record *r)
{
    char when[40];
    hgf_time_format_iso_ms(r->delivered_ms, when, sizeof when);
    json_t *attempts = json_array();
    for (int i = 0; attempts && i < r->d.attempts; i++) {
        const attempt *a = &r->attempts[i];
        json_array_append_new(attempts,
                              json_pack("{s:i, s:f, s:s?}", "status", a->status, "latency_ms",
                                        round((double)a->ms * 1000) / 1000, "error",
                                        a->error[0] ? a->error : NULL));
    }
    json_t *batch = r->ev.batch ? json_integer((json_int_t)r->ev.batch) : json_null();
    return json_pack("{s:o, s:o, s:i, s:o, s:f, s:s}", "event", hgf_sim_webhook_event_json(&r->ev),
                     "batch", batch, "status", r->d.status, "attempts", attempts, "latency_ms",
                     round(r->d.latency_ms * 1000) / 1000, "delivered_at", when);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double percentile(const double *sorted, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)ceil(p * (double)n);
    return sorted[i ? i - 1 : 0];
}

static json_t *summary_json(double *lat, size_t n, size_t ok, size_t attempts)
{
    qsort(lat, n, sizeof *lat, cmp_double);
    return json_pack("{s:I, s:I, s:I, s:{s:f, s:f, s:f, s:f}}", "events", (json_int_t)n, "ok",
                     (json_int_t)ok, "attempts", (json_int_t)attempts, "latency_ms", "p50",
                     percentile(lat, n, 0.50), "p90", percentile(lat, n, 0.90), "p99",
                     percentile(lat, n, 0.99), "max", n ? lat[n - 1] : 0.0);
}

json_t *hgf_sim_webhook_events_json(hgf_sim_webhook *w, uint64_t batch)
{
    json_t *events = json_array();
    pthread_mutex_lock(&w->lock);
    double *lat = malloc((w->n_log ? w->n_log : 1) * sizeof *lat);
    size_t n = 0, ok = 0, attempts = 0;
    /* Oldest first: before the ring is full, head is 0. */
    for (size_t k = 0; events && lat && k < w->n_log; k++) {
        const record *r = &w->log[(w->head + k) % w->n_log];
        if (batch && r->ev.batch != batch)
            continue;
        lat[n++] = r->d.latency_ms;
        ok += (size_t)r->d.ok;
        attempts += (size_t)r->d.attempts;
        json_array_append_new(events, record_json(r));
    }
    json_t *doc = NULL;
    if (events && lat)
        doc = json_pack("{s:I, s:I, s:o, s:o}", "total", (json_int_t)w->total, "logged",
                        (json_int_t)w->n_log, "summary", summary_json(lat, n, ok, attempts),
                        "events", events);
    else
        json_decref(events);
    pthread_mutex_unlock(&w->lock);
    free(lat);
    return doc;
}
