/* Asynchronous HTTP client: curl's multi_socket interface on a libev loop.
 *
 * curl tells us which sockets to watch (sock_cb) and when to wake it up
 * (tm_cb); libev tells curl when a socket is ready or the timer expired
 * (io_cb, timer_cb), and after every curl_multi_socket_action we collect
 * finished transfers (drain).
 *
 * Bounds: a request first needs a slot in its key (at most max_per_key held
 * per key; the rest wait in the key's FIFO). Holding one, it joins the ready
 * FIFO, from which requests start while fewer than max_total are in flight.
 * So every step is O(1) however many keys and waiters there are, and a
 * finished request hands its key slot straight to the key's next waiter.
 *
 * Requests only ever start from the `kick` timer, so no callback can run
 * inside hgf_http_send. Callbacks may free the client: `depth` notes that a
 * callback is running, and the watcher that called it does the real free
 * once it is back in control. */
#include "hgfleet/http.h"

#include <curl/curl.h>
#include <ev.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "hgfleet/buf.h"

#ifndef HGF_VERSION
#define HGF_VERSION "0"
#endif

enum {
    DEF_MAX_TOTAL = 256,
    DEF_MAX_PER_KEY = 4,
    MAX_SPARE = 256,     /* idle easy handles kept for reuse */
    KEYTAB_MIN = 64,
};
#define DEF_CONNECT_MS 5000L
#define DEF_TIMEOUT_MS 30000L
#define DEF_MAX_BODY ((size_t)64 << 20)
#define MAX_REDIRS 5L

struct xfer;

struct xlist {
    struct xfer *head, *tail;
    size_t n;
};

/* A concurrency group. `slots` counts its requests that are ready or in
 * flight (never more than max_per_key); the others wait in `waiting`. */
struct hkey {
    struct hkey *next;  /* hash bucket chain */
    struct xlist waiting;
    int slots;
    char name[];
};

struct keytab {
    struct hkey **b;
    size_t nb, n;
};

struct sockw {
    ev_io io;
    hgf_http *h;
    struct sockw *prev, *next;
};

struct xfer {
    hgf_http *h;
    struct xfer *prev, *next;  /* in a key's waiting list, ready or active */
    struct hkey *key;
    CURL *easy;                /* only while started */
    char *method, *url, *body;
    size_t body_len, max_body;
    struct curl_slist *headers;
    long timeout_ms;
    int follow, truncated;
    hgf_http_cb cb;
    void *arg;
    double t_sent, queued_s;
    hgf_buf resp;
    hgf_buf hdrs;              /* "name\0value\0" pairs of the final response */
    char errbuf[CURL_ERROR_SIZE];
};

struct hgf_http {
    struct ev_loop *loop;
    CURLM *multi;
    ev_timer timer;  /* curl's own timeout */
    ev_timer kick;   /* starts ready requests from the loop */
    int max_total, max_per_key;
    long connect_ms, timeout_ms;
    char *ca_bundle, *user_agent;
    struct xlist ready, active;
    size_t queued;   /* waiting in keys + ready */
    struct keytab keys;
    struct sockw *socks;
    CURL **spare;
    size_t nspare, spare_cap;
    int depth, freeing;
    hgf_http_stats st;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- intrusive FIFO lists ---- */

static void xl_push(struct xlist *l, struct xfer *x)
{
    x->next = NULL;
    x->prev = l->tail;
    if (l->tail)
        l->tail->next = x;
    else
        l->head = x;
    l->tail = x;
    l->n++;
}

static void xl_unlink(struct xlist *l, struct xfer *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        l->head = x->next;
    if (x->next)
        x->next->prev = x->prev;
    else
        l->tail = x->prev;
    x->prev = x->next = NULL;
    l->n--;
}

static struct xfer *xl_pop(struct xlist *l)
{
    struct xfer *x = l->head;
    if (x)
        xl_unlink(l, x);
    return x;
}

/* ---- key table: chained hash, doubled when as full as it is wide ---- */

static size_t key_hash(const char *s)
{
    uint64_t v = 1469598103934665603ULL;  /* FNV-1a */
    for (; *s; s++)
        v = (v ^ (unsigned char)*s) * 1099511628211ULL;
    return (size_t)v;
}

static struct hkey **key_link(const struct keytab *t, const char *name)
{
    struct hkey **p = &t->b[key_hash(name) & (t->nb - 1)];
    while (*p && strcmp((*p)->name, name) != 0)
        p = &(*p)->next;
    return p;
}

static int keytab_grow(struct keytab *t)
{
    size_t nb = t->nb ? t->nb * 2 : KEYTAB_MIN;
    struct hkey **b = calloc(nb, sizeof *b);
    if (!b)
        return HGF_ENOMEM;
    for (size_t i = 0; i < t->nb; i++) {
        struct hkey *k = t->b[i], *next;
        for (; k; k = next) {
            next = k->next;
            size_t j = key_hash(k->name) & (nb - 1);
            k->next = b[j];
            b[j] = k;
        }
    }
    free(t->b);
    t->b = b;
    t->nb = nb;
    return 0;
}

static struct hkey *key_get(struct keytab *t, const char *name)
{
    if (t->nb) {
        struct hkey *k = *key_link(t, name);
        if (k)
            return k;
    }
    if (t->n >= t->nb && keytab_grow(t))
        return NULL;
    size_t len = strlen(name);
    struct hkey *k = calloc(1, sizeof *k + len + 1);
    if (!k)
        return NULL;
    memcpy(k->name, name, len + 1);
    struct hkey **p = key_link(t, name);
    *p = k;
    t->n++;
    return k;
}

/* Keys live only while some request holds or waits for one of their slots,
 * so thousands of short-lived keys do not pile up. */
static void key_drop_if_idle(struct keytab *t, struct hkey *k)
{
    if (k->slots || k->waiting.n)
        return;
    struct hkey **p = key_link(t, k->name);
    *p = k->next;
    t->n--;
    free(k);
}

/* ---- requests ---- */

static void xfer_free(struct xfer *x)
{
    free(x->method);
    free(x->url);
    free(x->body);
    curl_slist_free_all(x->headers);
    hgf_buf_free(&x->resp);
    hgf_buf_free(&x->hdrs);
    free(x);
}

static int copy_headers(struct xfer *x, const char *const *headers)
{
    for (size_t i = 0; headers && headers[i]; i++) {
        struct curl_slist *l = curl_slist_append(x->headers, headers[i]);
        if (!l)
            return HGF_ENOMEM;
        x->headers = l;
    }
    return 0;
}

static int copy_body(struct xfer *x, const hgf_http_req *req)
{
    if (!req->body)
        return 0;
    x->body = malloc(req->body_len ? req->body_len : 1);
    if (!x->body)
        return HGF_ENOMEM;
    if (req->body_len)
        memcpy(x->body, req->body, req->body_len);
    x->body_len = req->body_len;
    return 0;
}

static struct xfer *xfer_new(hgf_http *h, const hgf_http_req *req, hgf_http_cb cb, void *arg)
{
    struct xfer *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->h = h;
    x->cb = cb;
    x->arg = arg;
    x->timeout_ms = req->timeout_ms ? req->timeout_ms : h->timeout_ms;
    x->max_body = req->max_body ? req->max_body : DEF_MAX_BODY;
    x->follow = req->follow_redirects != 0;
    x->t_sent = now_s();
    x->method = strdup(req->method);
    x->url = strdup(req->url);
    if (!x->method || !x->url || copy_headers(x, req->headers) || copy_body(x, req)) {
        xfer_free(x);
        return NULL;
    }
    return x;
}

/* ---- curl callbacks that fill a response ---- */

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct xfer *x = ud;
    size_t len = size * n, room = x->max_body - x->resp.len;
    if (len > room) {
        /* Stop the transfer: fill_resp turns this write error back into a
         * response with body_truncated set. */
        if (hgf_buf_append(&x->resp, p, room) == 0)
            x->truncated = 1;
        return 0;
    }
    return hgf_buf_append(&x->resp, p, len) ? 0 : len;
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct xfer *x = ud;
    size_t len = size * n;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        /* A new response (after a 100 or a followed redirect): only the
         * final one's headers and body count. */
        hgf_buf_reset(&x->hdrs);
        hgf_buf_reset(&x->resp);
        x->truncated = 0;
        return len;
    }
    const char *colon = memchr(p, ':', len);
    /* Skips the blank end line, obsolete folded lines, and lines with NULs
     * that would break the name\0value\0 layout. */
    if (!colon || colon == p || is_blank(p[0]) || memchr(p, '\0', len))
        return len;
    const char *ne = colon, *v = colon + 1, *ve = p + len;
    while (ne > p && is_blank(ne[-1]))
        ne--;
    while (v < ve && is_blank(*v))
        v++;
    while (ve > v && is_blank(ve[-1]))
        ve--;
    if (hgf_buf_append(&x->hdrs, p, (size_t)(ne - p)) || hgf_buf_putc(&x->hdrs, '\0') ||
        hgf_buf_append(&x->hdrs, v, (size_t)(ve - v)) || hgf_buf_putc(&x->hdrs, '\0'))
        return 0;
    return len;
}

const char *hgf_http_resp_header(const hgf_http_resp *resp, const char *name)
{
    if (!resp || !resp->priv || !name)
        return NULL;
    const hgf_buf *b = &((const struct xfer *)resp->priv)->hdrs;
    if (!b->data)
        return NULL;
    const char *found = NULL, *p = b->data, *end = b->data + b->len;
    while (p < end) {
        const char *val = p + strlen(p) + 1;
        if (strcasecmp(p, name) == 0)
            found = val;
        p = val + strlen(val) + 1;
    }
    return found;
}

/* ---- easy handle set-up ---- */

static CURLcode setup_method(CURL *e, const struct xfer *x)
{
    CURLcode rc = CURLE_OK;
    if (strcmp(x->method, "HEAD") == 0)
        return curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    if (strcmp(x->method, "GET") == 0)
        return CURLE_OK;
    if (x->body || strcmp(x->method, "POST") == 0 || strcmp(x->method, "PUT") == 0) {
        /* Empty bodies still go out, as Content-Length: 0. */
        rc = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body_len);
        if (!rc)
            rc = curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body ? x->body : "");
    }
    if (!rc && strcmp(x->method, "POST") != 0)
        rc = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, x->method);
    return rc;
}

static CURLcode setup_protocols(CURL *e, const struct xfer *x)
{
    /* No downgrade: an https request may only be redirected to https. */
    int https = strncasecmp(x->url, "https://", 8) == 0;
#if LIBCURL_VERSION_NUM >= 0x075500
    CURLcode rc = curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (!rc)
        rc = curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, https ? "https" : "http,https");
#else
    CURLcode rc = curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    if (!rc)
        rc = curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS,
                              https ? (long)CURLPROTO_HTTPS : (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    return rc;
}

static CURLcode setup_redirects(CURL *e, const struct xfer *x)
{
    /* curl drops a custom Authorization header when a redirect changes
     * host unless UNRESTRICTED_AUTH is set; we pin it off. */
    CURLcode rc = curl_easy_setopt(e, CURLOPT_UNRESTRICTED_AUTH, 0L);
    if (!rc)
        rc = curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, x->follow ? 1L : 0L);
    if (!rc)
        rc = curl_easy_setopt(e, CURLOPT_MAXREDIRS, MAX_REDIRS);
    return rc;
}

static CURLcode setup_transport(const hgf_http *h, CURL *e, const struct xfer *x)
{
    CURLcode rc = curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    if (!rc)
        rc = curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    if (!rc)
        rc = curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (!rc && h->ca_bundle)
        rc = curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_bundle);
    if (!rc)
        rc = curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, h->connect_ms);
    if (!rc)
        rc = curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, x->timeout_ms);
    if (!rc)
        rc = curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    if (!rc)
        rc = curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    if (!rc)
        rc = curl_easy_setopt(e, CURLOPT_USERAGENT, h->user_agent);
    return rc;
}

static CURLcode setup_io(CURL *e, struct xfer *x)
{
    CURLcode rc = curl_easy_setopt(e, CURLOPT_URL, x->url);
    if (!rc)
        rc = curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)x);
    if (!rc)
        rc = curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    if (!rc)
        rc = curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    if (!rc)
        rc = curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    if (!rc)
        rc = curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)x);
    if (!rc)
        rc = curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    if (!rc)
        rc = curl_easy_setopt(e, CURLOPT_HEADERDATA, (void *)x);
    return rc;
}

static CURLcode setup(hgf_http *h, struct xfer *x)
{
    CURLcode rc = setup_io(x->easy, x);
    if (!rc)
        rc = setup_transport(h, x->easy, x);
    if (!rc)
        rc = setup_protocols(x->easy, x);
    if (!rc)
        rc = setup_redirects(x->easy, x);
    if (!rc)
        rc = setup_method(x->easy, x);
    return rc;
}

static CURL *take_easy(hgf_http *h)
{
    if (h->nspare)
        return h->spare[--h->nspare];
    return curl_easy_init();
}

static void put_easy(hgf_http *h, CURL *e)
{
    curl_easy_reset(e);
    if (h->nspare < h->spare_cap)
        h->spare[h->nspare++] = e;
    else
        curl_easy_cleanup(e);
}

/* ---- scheduling ---- */

static void kick(hgf_http *h)
{
    if (!ev_is_active(&h->kick)) {
        ev_timer_set(&h->kick, 0., 0.);
        ev_timer_start(h->loop, &h->kick);
    }
}

static void enqueue(hgf_http *h, struct xfer *x)
{
    struct hkey *k = x->key;
    h->queued++;
    if (k && k->slots >= h->max_per_key) {
        xl_push(&k->waiting, x);
        return;
    }
    if (k)
        k->slots++;
    xl_push(&h->ready, x);
}

/* Hands a finished request's key slot to the key's oldest waiter. */
static void release_slot(hgf_http *h, struct hkey *k)
{
    if (!k)
        return;
    k->slots--;
    struct xfer *next = xl_pop(&k->waiting);
    if (next) {
        k->slots++;
        xl_push(&h->ready, next);
        return;
    }
    key_drop_if_idle(&h->keys, k);
}

static void fill_resp(const struct xfer *x, CURLcode rc, hgf_http_resp *r)
{
    memset(r, 0, sizeof *r);
    if (rc == CURLE_WRITE_ERROR && x->truncated)
        rc = CURLE_OK;  /* on_body stopped it at max_body */
    if (x->easy)
        curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME, &r->total_seconds);
    r->error = "";
    if (rc == CURLE_OK && x->easy)
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &r->status);
    else {
        r->transport_error = rc;
        r->error = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
    }
    r->body = hgf_buf_str(&x->resp);
    r->body_len = x->resp.len;
    r->body_truncated = x->truncated;
    r->queued_seconds = x->queued_s;
    r->priv = x;
}

/* Ends a request that is in no list any more: stats, slot, callback, free. */
static void finish(hgf_http *h, struct xfer *x, CURLcode rc)
{
    hgf_http_resp r;
    fill_resp(x, rc, &r);
    if (r.transport_error)
        h->st.failed++;
    else
        h->st.completed++;
    if (x->easy) {
        long conns = 0;
        curl_easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &conns);
        h->st.connections_opened += (unsigned long)conns;
        put_easy(h, x->easy);
        x->easy = NULL;
    }
    release_slot(h, x->key);
    kick(h);
    h->depth++;
    x->cb(&r, x->arg);
    h->depth--;
    xfer_free(x);
}

static void start(hgf_http *h, struct xfer *x)
{
    h->queued--;
    h->st.started++;
    x->queued_s = now_s() - x->t_sent;
    CURLcode rc = CURLE_OUT_OF_MEMORY;
    x->easy = take_easy(h);
    if (x->easy)
        rc = setup(h, x);
    if (!rc) {
        CURLMcode mc = curl_multi_add_handle(h->multi, x->easy);
        if (mc != CURLM_OK)
            rc = mc == CURLM_OUT_OF_MEMORY ? CURLE_OUT_OF_MEMORY : CURLE_FAILED_INIT;
    }
    if (rc) {
        finish(h, x, rc);
        return;
    }
    xl_push(&h->active, x);
}

static void destroy(hgf_http *h);

/* Called last by every watcher: completes a free requested by a callback. */
static void reap(hgf_http *h)
{
    if (h->freeing && h->depth == 0)
        destroy(h);
}

static void kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    hgf_http *h = w->data;
    while (!h->freeing && h->active.n < (size_t)h->max_total && h->ready.head)
        start(h, xl_pop(&h->ready));
    reap(h);
}

static void drain(hgf_http *h)
{
    CURLMsg *m;
    int left;
    while (!h->freeing && (m = curl_multi_info_read(h->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *e = m->easy_handle;
        CURLcode rc = m->data.result;
        char *priv = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
        struct xfer *x = (struct xfer *)(void *)priv;
        curl_multi_remove_handle(h->multi, e);
        xl_unlink(&h->active, x);
        finish(h, x, rc);
    }
}

/* ---- the libev / curl glue ---- */

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    hgf_http *h = w->data;
    int running = 0;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain(h);
    reap(h);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    hgf_http *h = ((struct sockw *)w->data)->h;  /* w may be freed below */
    int action = ((revents & EV_READ) ? CURL_CSELECT_IN : 0) |
                 ((revents & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    int running = 0;
    curl_multi_socket_action(h->multi, w->fd, action, &running);
    if (running == 0)
        ev_timer_stop(h->loop, &h->timer);
    drain(h);
    reap(h);
}

static void sock_drop(hgf_http *h, struct sockw *sw)
{
    ev_io_stop(h->loop, &sw->io);
    if (sw->prev)
        sw->prev->next = sw->next;
    else
        h->socks = sw->next;
    if (sw->next)
        sw->next->prev = sw->prev;
    free(sw);
}

static struct sockw *sock_add(hgf_http *h, curl_socket_t s)
{
    struct sockw *sw = calloc(1, sizeof *sw);
    if (!sw)
        return NULL;
    sw->h = h;
    sw->next = h->socks;
    if (h->socks)
        h->socks->prev = sw;
    h->socks = sw;
    ev_init(&sw->io, io_cb);
    sw->io.data = sw;
    curl_multi_assign(h->multi, s, sw);
    return sw;
}

static int sock_cb(CURL *e, curl_socket_t s, int what, void *userp, void *sockp)
{
    hgf_http *h = userp;
    struct sockw *sw = sockp;
    if (what == CURL_POLL_REMOVE) {
        if (sw)
            sock_drop(h, sw);
        return 0;
    }
    if (!sw && !(sw = sock_add(h, s)))
        return -1;
    int events = ((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    ev_io_stop(h->loop, &sw->io);
    ev_io_set(&sw->io, s, events);
    ev_io_start(h->loop, &sw->io);
    return 0;
}

static int tm_cb(CURLM *m, long timeout_ms, void *userp)
{
    hgf_http *h = userp;
    ev_timer_stop(h->loop, &h->timer);
    if (timeout_ms >= 0) {
        /* A zero timeout still goes through the loop: curl forbids calling
         * socket_action from inside its own callbacks. */
        ev_timer_set(&h->timer, (double)timeout_ms / 1000.0, 0.);
        ev_timer_start(h->loop, &h->timer);
    }
    return 0;
}

/* ---- lifetime ---- */

static void free_keys(struct keytab *t)
{
    for (size_t i = 0; i < t->nb; i++) {
        struct hkey *k = t->b[i], *next;
        for (; k; k = next) {
            next = k->next;
            struct xfer *x;
            while ((x = xl_pop(&k->waiting)))
                xfer_free(x);
            free(k);
        }
    }
    free(t->b);
}

static void drop_requests(hgf_http *h)
{
    struct xfer *x;
    while ((x = xl_pop(&h->active))) {
        curl_multi_remove_handle(h->multi, x->easy);
        curl_easy_cleanup(x->easy);
        xfer_free(x);
    }
    while ((x = xl_pop(&h->ready)))
        xfer_free(x);
    free_keys(&h->keys);
    while (h->nspare)
        curl_easy_cleanup(h->spare[--h->nspare]);
}

static void destroy(hgf_http *h)
{
    ev_timer_stop(h->loop, &h->kick);
    if (h->multi) {
        drop_requests(h);
        curl_multi_cleanup(h->multi);
    }
    while (h->socks)
        sock_drop(h, h->socks);
    ev_timer_stop(h->loop, &h->timer);  /* curl may have re-armed it above */
    free(h->spare);
    free(h->ca_bundle);
    free(h->user_agent);
    free(h);
    curl_global_cleanup();
}

/* The next request to end: in flight first, then ready ones (each end
 * hands its key slot to that key's next waiter, which joins ready). */
static struct xfer *next_to_cancel(hgf_http *h)
{
    struct xfer *x = h->active.head;
    if (x) {
        curl_multi_remove_handle(h->multi, x->easy);
        xl_unlink(&h->active, x);
        return x;
    }
    x = xl_pop(&h->ready);
    if (x) { /* counted as started, so started = completed + failed + in_flight */
        h->queued--;
        h->st.started++;
    }
    return x;
}

void hgf_http_cancel_all(hgf_http *h)
{
    if (!h || h->freeing)
        return;
    /* Bounded: a callback that resent on every failure would never end. */
    size_t budget = 2 * (h->active.n + h->queued) + 256;
    struct xfer *x;
    while (budget-- > 0 && !h->freeing && (x = next_to_cancel(h))) {
        snprintf(x->errbuf, sizeof x->errbuf, "cancelled: the HTTP client is shutting down");
        finish(h, x, CURLE_ABORTED_BY_CALLBACK);
    }
    reap(h);
}

void hgf_http_free(hgf_http *h)
{
    if (!h)
        return;
    if (h->depth) {
        h->freeing = 1;  /* reap() finishes once the callback returns */
        return;
    }
    destroy(h);
}

static int check_opts(struct ev_loop *loop, const hgf_http_opts *o, hgf_err *err)
{
    if (!loop)
        return hgf_err_set(err, HGF_EINPUT, "http: loop is required");
    if (o->max_total < 0)
        return hgf_err_set(err, HGF_EINPUT, "http: max_total must be >= 0, got %d", o->max_total);
    if (o->max_per_key < 0)
        return hgf_err_set(err, HGF_EINPUT, "http: max_per_key must be >= 0, got %d", o->max_per_key);
    if (o->connect_timeout_ms < 0)
        return hgf_err_set(err, HGF_EINPUT, "http: connect_timeout_ms must be >= 0, got %ld",
                           o->connect_timeout_ms);
    if (o->timeout_ms < 0)
        return hgf_err_set(err, HGF_EINPUT, "http: timeout_ms must be >= 0, got %ld", o->timeout_ms);
    return 0;
}

static int init_fields(hgf_http *h, struct ev_loop *loop, const hgf_http_opts *o)
{
    h->loop = loop;
    h->max_total = o->max_total ? o->max_total : DEF_MAX_TOTAL;
    h->max_per_key = o->max_per_key ? o->max_per_key : DEF_MAX_PER_KEY;
    h->connect_ms = o->connect_timeout_ms ? o->connect_timeout_ms : DEF_CONNECT_MS;
    h->timeout_ms = o->timeout_ms ? o->timeout_ms : DEF_TIMEOUT_MS;
    h->spare_cap = h->max_total < MAX_SPARE ? (size_t)h->max_total : MAX_SPARE;
    h->spare = calloc(h->spare_cap, sizeof *h->spare);
    h->user_agent = strdup(o->user_agent ? o->user_agent : "hgfleet/" HGF_VERSION);
    if (o->ca_bundle && !(h->ca_bundle = strdup(o->ca_bundle)))
        return HGF_ENOMEM;
    if (!h->spare || !h->user_agent || keytab_grow(&h->keys))
        return HGF_ENOMEM;
    ev_timer_init(&h->timer, timer_cb, 0., 0.);
    h->timer.data = h;
    ev_timer_init(&h->kick, kick_cb, 0., 0.);
    h->kick.data = h;
    return 0;
}

static int init_multi(hgf_http *h)
{
    h->multi = curl_multi_init();
    if (!h->multi)
        return HGF_ENOMEM;
    CURLMcode mc = curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    if (!mc)
        mc = curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, (void *)h);
    if (!mc)
        mc = curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, tm_cb);
    if (!mc)
        mc = curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, (void *)h);
    if (!mc)  /* the connection cache: one idle connection per possible transfer */
        mc = curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)h->max_total);
    return mc ? HGF_EFAIL : 0;
}

hgf_http *hgf_http_new(struct ev_loop *loop, const hgf_http_opts *opts, hgf_err *err)
{
    hgf_http_opts o = {0};
    if (opts)
        o = *opts;
    if (check_opts(loop, &o, err))
        return NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        hgf_err_set(err, HGF_EFAIL, "http: curl_global_init failed");
        return NULL;
    }
    hgf_http *h = calloc(1, sizeof *h);
    if (!h) {
        curl_global_cleanup();
        hgf_err_set(err, HGF_ENOMEM, "http: out of memory creating the client");
        return NULL;
    }
    int rc = init_fields(h, loop, &o);
    if (!rc)
        rc = init_multi(h);
    if (rc) {
        destroy(h);
        hgf_err_set(err, rc, "http: cannot set up the curl multi handle");
        return NULL;
    }
    return h;
}

/* ---- sending ---- */

static int is_token(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < 'A' || *s > 'Z')
            return 0;
    return 1;
}

static int has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

/* Messages never quote URLs or header values: presigned URLs and
 * Authorization headers carry secrets. */
static int check_headers(const char *const *headers, hgf_err *err)
{
    for (size_t i = 0; headers && headers[i]; i++) {
        const char *hd = headers[i];
        if (hd[0] == ':' || !strpbrk(hd, ":;") || has_ctl(hd))
            return hgf_err_set(err, HGF_EINPUT,
                               "http: headers[%zu] must be \"Name: value\" on one line", i);
    }
    return 0;
}

static int check_req(const hgf_http *h, const hgf_http_req *req, hgf_http_cb cb, hgf_err *err)
{
    if (!h || !req || !cb)
        return hgf_err_set(err, HGF_EINPUT, "http: client, request and callback are required");
    if (h->freeing)
        return hgf_err_set(err, HGF_EINPUT, "http: the client is being freed");
    if (!req->method || !is_token(req->method))
        return hgf_err_set(err, HGF_EINPUT, "http: method must be an upper-case word like GET");
    if (!req->url || !*req->url || has_ctl(req->url))
        return hgf_err_set(err, HGF_EINPUT, "http: url must be a non-empty string without control characters");
    if (!req->body && req->body_len)
        return hgf_err_set(err, HGF_EINPUT, "http: body is NULL but body_len is %zu", req->body_len);
    if (req->body && (!strcmp(req->method, "GET") || !strcmp(req->method, "HEAD")))
        return hgf_err_set(err, HGF_EINPUT, "http: body is not allowed with %s", req->method);
    if (req->timeout_ms < 0)
        return hgf_err_set(err, HGF_EINPUT, "http: timeout_ms must be >= 0, got %ld", req->timeout_ms);
    return check_headers(req->headers, err);
}

int hgf_http_send(hgf_http *h, const hgf_http_req *req, hgf_http_cb cb, void *arg, hgf_err *err)
{
    int rc = check_req(h, req, cb, err);
    if (rc)
        return rc;
    struct xfer *x = xfer_new(h, req, cb, arg);
    if (x && req->limit_key && !(x->key = key_get(&h->keys, req->limit_key))) {
        xfer_free(x);
        x = NULL;
    }
    if (!x)
        return hgf_err_set(err, HGF_ENOMEM, "http: out of memory queueing a %s request", req->method);
    enqueue(h, x);
    kick(h);
    return 0;
}

void hgf_http_get_stats(const hgf_http *h, hgf_http_stats *out)
{
    *out = h->st;
    out->in_flight = (int)h->active.n;
    out->queued = (int)h->queued;
}

/* ---- failures a retry cannot fix ----------------------------------------- */

/* Failures of our own making that a retry cannot fix; ABORTED_BY_CALLBACK
 * is a request ended by hgf_http_cancel_all (the process is closing). */
static const int LOCAL_CURL_ERRORS[] = {
    CURLE_UNSUPPORTED_PROTOCOL, CURLE_FAILED_INIT,   CURLE_URL_MALFORMAT,
    CURLE_NOT_BUILT_IN,         CURLE_OUT_OF_MEMORY, CURLE_BAD_FUNCTION_ARGUMENT,
    CURLE_UNKNOWN_OPTION,       CURLE_ABORTED_BY_CALLBACK,
};

/* The peer's certificate was checked and refused: the same certificate
 * meets the same trust store on every attempt (a wrong AWS_CA_BUNDLE, or a
 * proxy intercepting TLS), so a retry only delays the error. */
static const int TLS_TRUST_ERRORS[] = {
    CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_ISSUER_ERROR, CURLE_SSL_PINNEDPUBKEYNOTMATCH,
    CURLE_SSL_INVALIDCERTSTATUS,
};

/* The local trust material cannot be used (an unreadable or malformed CA
 * bundle, CRL file or client certificate). */
static const int TLS_SETUP_ERRORS[] = {
    CURLE_SSL_CACERT_BADFILE, CURLE_SSL_CRL_BADFILE, CURLE_SSL_CERTPROBLEM,
};

static int in_codes(int code, const int *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (code == list[i])
            return 1;
    return 0;
}

#define IN_CODES(code, list) in_codes((code), (list), sizeof(list) / sizeof((list)[0]))

const char *hgf_http_tls_suffix(int transport_error)
{
    if (IN_CODES(transport_error, TLS_TRUST_ERRORS))
        return ": the endpoint's TLS certificate is not trusted: point AWS_CA_BUNDLE at the PEM "
               "file of the CA that issued it (a proxy intercepting TLS has its own CA); not "
               "retried";
    if (IN_CODES(transport_error, TLS_SETUP_ERRORS))
        return ": the CA bundle or a certificate file cannot be used: check that AWS_CA_BUNDLE "
               "names a readable PEM file; not retried";
    return "";
}

const char *hgf_http_tls_hint(int transport_error)
{
    const char *s = hgf_http_tls_suffix(transport_error);
    return *s ? s + 2 : NULL;
}

int hgf_http_error_is_local(int transport_error)
{
    return IN_CODES(transport_error, LOCAL_CURL_ERRORS);
}
