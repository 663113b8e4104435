/* bench-lowerbound: the lower bound for a full catalog sync.
 *
 * A bare concurrent fetcher: it pages through DescribeRepositories and then
 * DescribeImages of every repository of every registry in a list, with the
 * same caps as hgfleet (requests in flight per registry and in total) and a
 * client-side token bucket per (registry, operation) at the simulator's
 * quota, so that it is never the quota that it measures. It keeps one COPY
 * row per image digest in memory, and only after the last page COPYs them
 * into a fresh PostgreSQL table, so the two phases are timed apart.
 *
 *   bench-lowerbound --endpoint URL --registries FILE [--copy-db CONNINFO]
 *                    [--per-registry 4] [--total 256] [--quota OP=RATE]...
 *
 * FILE holds "account,region" (or "account region") lines; a header line
 * starting with "account_id" is skipped. Credentials come from
 * AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (default: ecrsim's default key).
 * Prints one JSON object on stdout; exits 1 when any page failed for good. */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "hgfleet/buf.h"
#include "hgfleet/sigv4.h"

#define TARGET_PREFIX "AmazonEC2ContainerRegistry_V20150921."
#define PAGE_SIZE 1000
#define MAX_ATTEMPTS 5
#define THROTTLE_PAUSE_S 0.2
#define COPY_CHUNK (1 << 20)
#define BOUND_TABLE "bench_bound_images"

enum { OP_REPOS = 0, OP_IMAGES = 1, N_OPS = 2 };
static const char *const OP_NAMES[N_OPS] = {"DescribeRepositories", "DescribeImages"};

typedef struct bucket {
    double rate;    /* tokens per second; 0 = unlimited */
    double tokens;  /* the burst is the rate, as in ecrsim */
    double last;
} bucket;

/* One page to fetch. */
typedef struct page_req {
    int op;
    size_t repo;   /* OP_IMAGES: index into the registry's repositories */
    char *token;   /* nextToken, or NULL for the first page */
    int attempts;
} page_req;

typedef struct registry {
    char account[16];
    char region[40];
    char **repos;
    size_t n_repos, cap_repos;
    page_req *queue;   /* FIFO: queue[q_head .. q_head + q_len) */
    size_t q_head, q_len, q_cap;
    int inflight;
    double not_before; /* set by a throttle */
    bucket buckets[N_OPS];
} registry;

typedef struct stats {
    long calls, throttled, retried, repositories, images;
    size_t bytes;
} stats;

typedef struct bench {
    const char *endpoint, *registries_file, *copy_db;
    int per_registry, total;
    double quota[N_OPS];
    char host[256];
    const char *akid, *secret;
    registry *regs;
    size_t n_regs, next_new;
    registry **active;
    size_t n_active;
    CURLM *multi;
    int inflight;
    double wake;       /* earliest time a waiting registry may send again */
    stats st;
    hgf_buf rows;      /* COPY text, one line per image digest */
    int failed;
    char fail_msg[512];
} bench;

typedef struct transfer {
    bench *b;
    registry *reg;
    page_req r;
    char *payload;
    struct curl_slist *headers;
    hgf_buf body;
} transfer;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void fail(bench *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Only the first failure is kept: later ones are usually its consequences. */
static void fail(bench *b, const char *fmt, ...)
{
    if (b->failed++)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->fail_msg, sizeof b->fail_msg, fmt, ap);
    va_end(ap);
}

/* ---- token buckets ------------------------------------------------------- */

static int bucket_take(bucket *k, double now, double *wait)
{
    if (k->rate <= 0)
        return 1;
    k->tokens = fmin(k->rate, k->tokens + (now - k->last) * k->rate);
    k->last = now;
    if (k->tokens >= 1) {
        k->tokens -= 1;
        return 1;
    }
    *wait = now + (1 - k->tokens) / k->rate;
    return 0;
}

/* ---- registries and their queues ---------------------------------------- */

static int queue_push(registry *g, page_req r)
{
    if (g->q_head + g->q_len == g->q_cap) {
        if (g->q_head > 0) {
            memmove(g->queue, g->queue + g->q_head, g->q_len * sizeof *g->queue);
            g->q_head = 0;
        } else {
            size_t cap = g->q_cap ? g->q_cap * 2 : 16;
            page_req *q = realloc(g->queue, cap * sizeof *q);
            if (!q)
                return -1;
            g->queue = q;
            g->q_cap = cap;
        }
    }
    g->queue[g->q_head + g->q_len++] = r;
    return 0;
}

static page_req queue_pop(registry *g)
{
    g->q_len--;
    return g->queue[g->q_head++];
}

static int add_repo(registry *g, const char *name, size_t *index)
{
    if (g->n_repos == g->cap_repos) {
        size_t cap = g->cap_repos ? g->cap_repos * 2 : 16;
        char **r = realloc(g->repos, cap * sizeof *r);
        if (!r)
            return -1;
        g->repos = r;
        g->cap_repos = cap;
    }
    if (!(g->repos[g->n_repos] = strdup(name)))
        return -1;
    *index = g->n_repos++;
    return 0;
}

static void registry_free(registry *g)
{
    for (size_t i = 0; i < g->n_repos; i++)
        free(g->repos[i]);
    free(g->repos);
    for (size_t i = 0; i < g->q_len; i++)
        free(g->queue[g->q_head + i].token);
    free(g->queue);
}

static int parse_registry_line(char *line, registry *g)
{
    char *save = NULL;
    char *acct = strtok_r(line, ", \t\r\n", &save);
    char *region = acct ? strtok_r(NULL, ", \t\r\n", &save) : NULL;
    if (!acct || !region || strlen(acct) != 12 || strlen(region) >= sizeof g->region)
        return -1;
    memset(g, 0, sizeof *g);
    snprintf(g->account, sizeof g->account, "%s", acct);
    snprintf(g->region, sizeof g->region, "%s", region);
    return 0;
}

static int load_registries(bench *b)
{
    FILE *f = fopen(b->registries_file, "r");
    if (!f) {
        fprintf(stderr, "bench-lowerbound: %s: %s\n", b->registries_file, strerror(errno));
        return -1;
    }
    char line[256];
    size_t cap = 0;
    int rc = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        if (line[0] == '\n' || line[0] == '#' || !strncmp(line, "account_id", 10))
            continue;
        if (b->n_regs == cap) {
            cap = cap ? cap * 2 : 256;
            registry *r = realloc(b->regs, cap * sizeof *r);
            rc = r ? 0 : -1;
            b->regs = r ? r : b->regs;
        }
        if (!rc && parse_registry_line(line, &b->regs[b->n_regs]) != 0) {
            fprintf(stderr, "bench-lowerbound: %s: bad line '%.60s'\n", b->registries_file, line);
            rc = -1;
        }
        b->n_regs += rc ? 0 : 1;
    }
    fclose(f);
    b->active = rc ? NULL : calloc(b->n_regs ? b->n_regs : 1, sizeof *b->active);
    return rc || !b->active ? -1 : 0;
}

/* ---- one signed request -------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    transfer *t = arg;
    return hgf_buf_append(&t->body, p, size * n) ? 0 : size * n;
}

static char *request_body(const registry *g, const page_req *r)
{
    json_t *o = json_pack("{s:s, s:i}", "registryId", g->account, "maxResults", PAGE_SIZE);
    if (o && r->op == OP_IMAGES)
        json_object_set_new(o, "repositoryName", json_string(g->repos[r->repo]));
    if (o && r->token)
        json_object_set_new(o, "nextToken", json_string(r->token));
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

static struct curl_slist *signed_headers(const bench *b, const registry *g, const char *target,
                                         const char *payload)
{
    char amzdate[17];
    time_t when = time(NULL);
    hgf_sigv4_amz_date(when, amzdate);
    hgf_sigv4_header hs[] = {{"content-type", "application/x-amz-json-1.1"},
                             {"host", b->host},
                             {"x-amz-date", amzdate},
                             {"x-amz-target", target}};
    hgf_sigv4_request req = {"POST", "/", NULL, hs, 4, payload, strlen(payload)};
    hgf_sigv4_creds creds = {b->akid, b->secret, NULL};
    hgf_sigv4_scope scope = {g->region, "ecr", when};
    hgf_buf authz = HGF_BUF_INIT, line = HGF_BUF_INIT;
    if (hgf_sigv4_authorization(&req, &creds, &scope, &authz, NULL) != 0) {
        hgf_buf_free(&authz);
        return NULL;
    }
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/x-amz-json-1.1");
    hgf_buf_printf(&line, "X-Amz-Date: %s", amzdate);
    h = curl_slist_append(h, line.data);
    hgf_buf_reset(&line);
    hgf_buf_printf(&line, "X-Amz-Target: %s", target);
    h = curl_slist_append(h, line.data);
    hgf_buf_reset(&line);
    hgf_buf_printf(&line, "Authorization: %s", hgf_buf_str(&authz));
    h = curl_slist_append(h, line.data);
    h = curl_slist_append(h, "Expect:");
    hgf_buf_free(&line);
    hgf_buf_free(&authz);
    return h;
}

static void transfer_free(transfer *t)
{
    free(t->payload);
    free(t->r.token);
    curl_slist_free_all(t->headers);
    hgf_buf_free(&t->body);
    free(t);
}

static int send_page(bench *b, registry *g, page_req r)
{
    char target[96];
    snprintf(target, sizeof target, TARGET_PREFIX "%s", OP_NAMES[r.op]);
    transfer *t = calloc(1, sizeof *t);
    CURL *e = curl_easy_init();
    if (t) {
        *t = (transfer){.b = b, .reg = g, .r = r};
        t->payload = request_body(g, &r);
    }
    if (t && t->payload)
        t->headers = signed_headers(b, g, target, t->payload);
    if (!t || !e || !t->headers) {
        curl_easy_cleanup(e);
        if (t)
            transfer_free(t);
        else
            free(r.token);
        fail(b, "cannot build a request");
        return -1;
    }
    curl_easy_setopt(e, CURLOPT_URL, b->endpoint);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->payload);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(t->payload));
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_PRIVATE, t);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, 60L);
    curl_multi_add_handle(b->multi, e);
    g->inflight++;
    b->inflight++;
    b->st.calls++;
    return 0;
}

/* ---- pages --------------------------------------------------------------- */

/* COPY text needs backslash, tab, newline and CR escaped. */
static void copy_escape(hgf_buf *out, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '\\': hgf_buf_puts(out, "\\\\"); break;
        case '\t': hgf_buf_puts(out, "\\t"); break;
        case '\n': hgf_buf_puts(out, "\\n"); break;
        case '\r': hgf_buf_puts(out, "\\r"); break;
        default: hgf_buf_putc(out, *s);
        }
    }
}

/* A text[] literal, each element quoted, then COPY-escaped as a whole. */
static void copy_tags(hgf_buf *out, json_t *tags)
{
    hgf_buf lit = HGF_BUF_INIT;
    size_t i;
    json_t *v;
    hgf_buf_putc(&lit, '{');
    json_array_foreach(tags, i, v) {
        hgf_buf_puts(&lit, i ? ",\"" : "\"");
        for (const char *s = json_string_value(v); s && *s; s++) {
            if (*s == '"' || *s == '\\')
                hgf_buf_putc(&lit, '\\');
            hgf_buf_putc(&lit, *s);
        }
        hgf_buf_putc(&lit, '"');
    }
    hgf_buf_putc(&lit, '}');
    copy_escape(out, lit.data);
    hgf_buf_free(&lit);
}

static void iso8601(double epoch, char out[96])
{
    time_t whole = (time_t)floor(epoch);
    struct tm tm;
    gmtime_r(&whole, &tm);
    int ms = (int)((epoch - (double)whole) * 1000.0);
    snprintf(out, 96, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

static void add_row(bench *b, const registry *g, const char *repo, json_t *img)
{
    hgf_buf *o = &b->rows;
    char when[96];
    const char *mt = json_string_value(json_object_get(img, "imageManifestMediaType"));
    iso8601(json_number_value(json_object_get(img, "imagePushedAt")), when);
    hgf_buf_printf(o, "%s\t%s\t", g->account, g->region);
    copy_escape(o, repo);
    hgf_buf_putc(o, '\t');
    copy_escape(o, json_string_value(json_object_get(img, "imageDigest")));
    hgf_buf_putc(o, '\t');
    copy_tags(o, json_object_get(img, "imageTags"));
    hgf_buf_printf(o, "\t%lld\t%s\t",
                   (long long)json_integer_value(json_object_get(img, "imageSizeInBytes")), when);
    if (mt)
        copy_escape(o, mt);
    else
        hgf_buf_puts(o, "\\N");
    hgf_buf_putc(o, '\n');
    b->st.images++;
}

static int queue_next_page(registry *g, int op, size_t repo, json_t *page)
{
    const char *next = json_string_value(json_object_get(page, "nextToken"));
    if (!next)
        return 0;
    page_req r = {.op = op, .repo = repo, .token = strdup(next)};
    return r.token ? queue_push(g, r) : -1;
}

static int on_repos_page(bench *b, registry *g, json_t *page)
{
    size_t i, index;
    json_t *repo;
    json_array_foreach(json_object_get(page, "repositories"), i, repo) {
        const char *name = json_string_value(json_object_get(repo, "repositoryName"));
        if (!name || add_repo(g, name, &index) ||
            queue_push(g, (page_req){.op = OP_IMAGES, .repo = index}))
            return -1;
        b->st.repositories++;
    }
    return queue_next_page(g, OP_REPOS, 0, page);
}

static int on_images_page(bench *b, registry *g, size_t repo, json_t *page)
{
    size_t i;
    json_t *img;
    json_array_foreach(json_object_get(page, "imageDetails"), i, img)
        add_row(b, g, g->repos[repo], img);
    return queue_next_page(g, OP_IMAGES, repo, page);
}

/* The error code as AWS SDKs classify it: after any '#', before any ':'. */
static void aws_code(json_t *doc, char out[96])
{
    const char *t = json_string_value(json_object_get(doc, "__type"));
    const char *hash = t ? strrchr(t, '#') : NULL;
    snprintf(out, 96, "%s", hash ? hash + 1 : t ? t : "");
    char *colon = strchr(out, ':');
    if (colon)
        *colon = '\0';
}

static void retry_later(bench *b, transfer *t, double pause)
{
    if (++t->r.attempts >= MAX_ATTEMPTS) {
        fail(b, "%s: gave up after retries (%s)", OP_NAMES[t->r.op], t->reg->account);
        return;
    }
    b->st.retried++;
    t->reg->not_before = now_s() + pause;
    if (queue_push(t->reg, t->r) == 0)
        t->r.token = NULL;  /* the queue owns it now */
}

static void on_done(bench *b, transfer *t, CURLcode cc, long status)
{
    b->st.bytes += t->body.len;
    if (cc != CURLE_OK) {
        retry_later(b, t, THROTTLE_PAUSE_S);
        return;
    }
    json_t *doc = json_loadb(t->body.data ? t->body.data : "", t->body.len, 0, NULL);
    char code[96];
    aws_code(doc, code);
    int rc = 0;
    if (status == 200 && doc)
        rc = t->r.op == OP_REPOS ? on_repos_page(b, t->reg, doc)
                                 : on_images_page(b, t->reg, t->r.repo, doc);
    else if (strstr(code, "Throttl")) {
        b->st.throttled++;
        retry_later(b, t, THROTTLE_PAUSE_S);
    } else if (status >= 500) {
        retry_later(b, t, THROTTLE_PAUSE_S);
    } else {
        fail(b, "%s: %s", OP_NAMES[t->r.op], code[0] ? code : "unexpected answer");
    }
    if (rc)
        fail(b, "out of memory or a malformed page");
    json_decref(doc);
}

/* ---- the loop ------------------------------------------------------------ */

static int may_send(bench *b, registry *g, double now)
{
    if (!g->q_len || g->inflight >= b->per_registry || b->inflight >= b->total)
        return 0;
    double wait = now;
    if (now < g->not_before)
        wait = g->not_before;
    else if (bucket_take(&g->buckets[g->queue[g->q_head].op], now, &wait))
        return 1;
    if (b->wake == 0 || wait < b->wake)
        b->wake = wait;
    return 0;
}

static void activate(bench *b, registry *g, double now)
{
    for (int op = 0; op < N_OPS; op++)
        g->buckets[op] = (bucket){.rate = b->quota[op], .tokens = b->quota[op], .last = now};
    if (queue_push(g, (page_req){.op = OP_REPOS}) != 0)
        fail(b, "out of memory");
    b->active[b->n_active++] = g;
}

/* Fills free slots: registries already started first, then new ones, so
 * that a registry's pages are fetched as close together as the caps allow. */
static void fill(bench *b)
{
    double now = now_s();
    size_t keep = 0;
    b->wake = 0;
    for (size_t i = 0; i < b->n_active; i++) {
        registry *g = b->active[i];
        while (!b->failed && may_send(b, g, now))
            send_page(b, g, queue_pop(g));
        if (g->q_len || g->inflight)
            b->active[keep++] = g;
    }
    b->n_active = keep;
    while (!b->failed && b->inflight < b->total && b->next_new < b->n_regs) {
        registry *g = &b->regs[b->next_new++];
        activate(b, g, now);
        while (!b->failed && may_send(b, g, now))
            send_page(b, g, queue_pop(g));
    }
}

static void reap(bench *b)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(b->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        transfer *t = NULL;
        long status = 0;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&t);
        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
        CURLcode cc = m->data.result;
        curl_multi_remove_handle(b->multi, m->easy_handle);
        curl_easy_cleanup(m->easy_handle);
        t->reg->inflight--;
        b->inflight--;
        on_done(b, t, cc, status);
        transfer_free(t);
    }
}

static int poll_timeout_ms(const bench *b)
{
    if (b->wake == 0)
        return 1000;
    double ms = (b->wake - now_s()) * 1000.0;
    return ms < 1 ? 1 : ms > 1000 ? 1000 : (int)ms;
}

static void fetch_all(bench *b)
{
    int running = 0;
    fill(b);
    while (!b->failed && (b->inflight || b->n_active || b->next_new < b->n_regs)) {
        curl_multi_perform(b->multi, &running);
        reap(b);
        fill(b);
        if (b->inflight)
            curl_multi_poll(b->multi, NULL, 0, poll_timeout_ms(b), NULL);
        else if (b->n_active) {
            struct timespec ts = {0, (long)poll_timeout_ms(b) * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
}

/* ---- COPY ---------------------------------------------------------------- */

static int exec_ok(PGconn *c, const char *sql, ExecStatusType want)
{
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == want;
    if (!ok)
        fprintf(stderr, "bench-lowerbound: %s", PQerrorMessage(c));
    PQclear(r);
    return ok;
}

static int put_rows(PGconn *c, const hgf_buf *rows)
{
    for (size_t off = 0; off < rows->len; off += COPY_CHUNK) {
        size_t n = rows->len - off < COPY_CHUNK ? rows->len - off : COPY_CHUNK;
        if (PQputCopyData(c, rows->data + off, (int)n) != 1)
            return -1;
    }
    return PQputCopyEnd(c, NULL) == 1 ? 0 : -1;
}

/* Rows COPYed, or -1. The table is dropped and made anew for each run. */
static long copy_rows(const char *conninfo, const hgf_buf *rows)
{
    PGconn *c = PQconnectdb(conninfo);
    long n = -1;
    if (PQstatus(c) == CONNECTION_OK &&
        exec_ok(c, "DROP TABLE IF EXISTS " BOUND_TABLE, PGRES_COMMAND_OK) &&
        exec_ok(c, "CREATE TABLE " BOUND_TABLE " (account_id text, region text, repository text,"
                   " digest text, tags text[], size_bytes bigint, pushed_at timestamptz,"
                   " media_type text)", PGRES_COMMAND_OK) &&
        exec_ok(c, "COPY " BOUND_TABLE " FROM STDIN", PGRES_COPY_IN) && put_rows(c, rows) == 0) {
        PGresult *r = PQgetResult(c);
        if (PQresultStatus(r) == PGRES_COMMAND_OK)
            n = atol(PQcmdTuples(r));
        else
            fprintf(stderr, "bench-lowerbound: COPY: %s", PQerrorMessage(c));
        PQclear(r);
    } else if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "bench-lowerbound: %s", PQerrorMessage(c));
    }
    PQfinish(c);
    return n;
}

/* ---- flags and main ------------------------------------------------------ */

static const char USAGE[] =
    "usage: bench-lowerbound --endpoint URL --registries FILE [--copy-db CONNINFO]\n"
    "                        [--per-registry N] [--total N] [--quota OP=RATE]...\n"
    "  OP is DescribeRepositories or DescribeImages; RATE calls/s per (account, region)\n";

static int parse_quota(bench *b, const char *s)
{
    const char *eq = strchr(s, '=');
    for (int op = 0; eq && op < N_OPS; op++) {
        if (strlen(OP_NAMES[op]) == (size_t)(eq - s) && !strncmp(s, OP_NAMES[op], (size_t)(eq - s))) {
            b->quota[op] = atof(eq + 1);
            return b->quota[op] > 0 ? 0 : -1;
        }
    }
    return eq ? 0 : -1;  /* other operations are not called here */
}

static int parse_args(int argc, char **argv, bench *b)
{
    static const struct option opts[] = {
        {"endpoint", required_argument, NULL, 'e'}, {"registries", required_argument, NULL, 'r'},
        {"copy-db", required_argument, NULL, 'c'},  {"per-registry", required_argument, NULL, 'p'},
        {"total", required_argument, NULL, 't'},    {"quota", required_argument, NULL, 'q'},
        {NULL, 0, NULL, 0}};
    int c, rc = 0;
    while (!rc && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'e': b->endpoint = optarg; break;
        case 'r': b->registries_file = optarg; break;
        case 'c': b->copy_db = optarg; break;
        case 'p': b->per_registry = atoi(optarg); break;
        case 't': b->total = atoi(optarg); break;
        case 'q': rc = parse_quota(b, optarg); break;
        default: rc = -1;
        }
    }
    if (rc || optind != argc || !b->endpoint || !b->registries_file || b->per_registry < 1 ||
        b->total < 1) {
        fputs(USAGE, stderr);
        return -1;
    }
    return 0;
}

/* "host[:port]" exactly as curl will send it in Host, which is signed. */
static int endpoint_host(bench *b)
{
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL;
    int rc = !u || curl_url_set(u, CURLUPART_URL, b->endpoint, 0) ||
             curl_url_get(u, CURLUPART_HOST, &host, 0);
    if (!rc) {
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_NO_DEFAULT_PORT);
        snprintf(b->host, sizeof b->host, port ? "%s:%s" : "%s", host, port ? port : "");
    }
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    if (rc)
        fprintf(stderr, "bench-lowerbound: --endpoint: not a URL: %s\n", b->endpoint);
    return rc ? -1 : 0;
}

static void print_result(const bench *b, double fetch_s, double fetch_cpu, double copy_s,
                         long copied)
{
    json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:I, s:I, s:I}",
                          "registries", (json_int_t)b->n_regs,
                          "repositories", (json_int_t)b->st.repositories,
                          "images", (json_int_t)b->st.images,
                          "calls", (json_int_t)b->st.calls,
                          "throttled", (json_int_t)b->st.throttled,
                          "retried", (json_int_t)b->st.retried,
                          "bytes", (json_int_t)b->st.bytes,
                          "fetch_seconds", fetch_s, "fetch_cpu_seconds", fetch_cpu,
                          "copy_seconds", copy_s, "rows_copied", (json_int_t)copied,
                          "per_registry", (json_int_t)b->per_registry,
                          "total", (json_int_t)b->total);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    printf("%s\n", s ? s : "{}");
    free(s);
    json_decref(o);
}

static int run(bench *b)
{
    double t0 = now_s(), c0 = cpu_s();
    fetch_all(b);
    double fetch_s = now_s() - t0, fetch_cpu = cpu_s() - c0;
    if (b->failed) {
        fprintf(stderr, "bench-lowerbound: %s\n", b->fail_msg);
        return 1;
    }
    long copied = 0;
    double copy_s = 0;
    if (b->copy_db) {
        t0 = now_s();
        copied = copy_rows(b->copy_db, &b->rows);
        copy_s = now_s() - t0;
    }
    print_result(b, fetch_s, fetch_cpu, copy_s, copied);
    return copied < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    bench b = {.per_registry = 4, .total = 256};
    const char *akid = getenv("AWS_ACCESS_KEY_ID"), *secret = getenv("AWS_SECRET_ACCESS_KEY");
    b.akid = akid && *akid ? akid : "AKIDECRSIMDEFAULT";
    b.secret = secret && *secret ? secret : "ecrsim-default-secret";
    if (parse_args(argc, argv, &b) != 0)
        return 2;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0 || endpoint_host(&b) != 0 ||
        load_registries(&b) != 0)
        return 2;
    b.multi = curl_multi_init();
    /* Keep every connection of a full window alive between pages. */
    curl_multi_setopt(b.multi, CURLMOPT_MAXCONNECTS, (long)b.total);
    int rc = b.multi ? run(&b) : 1;
    curl_multi_cleanup(b.multi);
    for (size_t i = 0; i < b.n_regs; i++)
        registry_free(&b.regs[i]);
    free(b.regs);
    free(b.active);
    hgf_buf_free(&b.rows);
    curl_global_cleanup();
    return rc;
}
