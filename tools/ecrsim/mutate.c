#include "mutate.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ECR's repository name pattern, as ecr_api.c checks it. */
#define REPO_NAME_RE \
    "^[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*$"
#define TAG_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"
#define MAX_RATE 100000.0
/* A tag with its "-<i>" suffix (check_tag leaves room for it). */
#define NUMBERED_TAG_SIZE (HGF_SIM_TAG_MAX + 24)

typedef struct batch batch;

typedef struct worker {
    batch *b;
    unsigned index;
    pthread_t thread;
} worker;

/* A bulk push: worker k pushes images k, k + n, k + 2n, ... each at its
 * slot t0 + i / rate, so a slow delivery delays only its own worker. */
struct batch {
    hgf_sim_mutate *m;
    uint64_t id;
    char account[13];
    char region[64];
    char repository[257];
    char tag[HGF_SIM_TAG_MAX + 1];  /* "" for untagged pushes */
    int immutable, force, scan_on_push, deliver, index;
    unsigned count;
    double rate;
    struct timespec t0;  /* CLOCK_MONOTONIC */
    atomic_uint pushed, refused, failed, delivered, undelivered;
    worker workers[HGF_SIM_BATCH_THREADS];
    unsigned n_workers;
    unsigned running;    /* under m->lock */
    int cancelled;       /* under m->lock: not all workers could start */
    int joined;          /* under m->lock */
    double elapsed_ms;   /* when the last worker ended; under m->lock */
};

struct hgf_sim_mutate {
    hgf_sim_fleet *fleet;
    hgf_sim_webhook *webhook;
    regex_t repo_re;
    pthread_mutex_t lock;
    pthread_cond_t wake;  /* on CLOCK_MONOTONIC: paces the workers, ends them */
    int stopping;
    batch **batches;
    size_t n_batches, cap_batches;
};

/* What one request asked for. */
typedef struct params {
    hgf_sim_change c;
    long long count;
    double rate;   /* 0: not bulk */
    int deliver;   /* -1: the default */
} params;

/* An event's fate. */
typedef struct outcome {
    int sent;
    char event_id[37];
    hgf_sim_delivery d;
} outcome;

int hgf_sim_mutate_create(hgf_sim_fleet *fleet, hgf_sim_webhook *webhook, hgf_sim_mutate **out,
                          hgf_err *err)
{
    hgf_sim_mutate *m = calloc(1, sizeof *m);
    pthread_condattr_t attr;
    if (!m)
        return hgf_err_set(err, HGF_ENOMEM, "mutate: out of memory");
    if (regcomp(&m->repo_re, REPO_NAME_RE, REG_EXTENDED | REG_NOSUB) != 0) {
        free(m);
        return hgf_err_set(err, HGF_EFAIL, "mutate: cannot compile the repository pattern");
    }
    m->fleet = fleet;
    m->webhook = webhook;
    pthread_mutex_init(&m->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&m->wake, &attr);
    pthread_condattr_destroy(&attr);
    *out = m;
    return 0;
}

static void join_batch(batch *b)
{
    for (unsigned k = 0; k < b->n_workers; k++)
        pthread_join(b->workers[k].thread, NULL);
    b->joined = 1;
}

void hgf_sim_mutate_free(hgf_sim_mutate *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    m->stopping = 1;
    pthread_cond_broadcast(&m->wake);
    pthread_mutex_unlock(&m->lock);
    hgf_sim_webhook_stop(m->webhook);
    for (size_t i = 0; i < m->n_batches; i++) {
        if (!m->batches[i]->joined)
            join_batch(m->batches[i]);
        free(m->batches[i]);
    }
    free(m->batches);
    pthread_cond_destroy(&m->wake);
    pthread_mutex_destroy(&m->lock);
    regfree(&m->repo_re);
    free(m);
}

/* ---- replies ----------------------------------------------------------- */

static void reply(hgf_sim_resp *resp, int status, json_t *doc)
{
    if (!doc || hgf_sim_resp_json(resp, status, "application/json", doc) != 0) {
        hgf_sim_resp_text(resp, 500, "application/json", "{\"error\":\"out of memory\"}");
        return;
    }
}

/* {"error": message, "code": code} (no code member when code is NULL). */
static void reply_error(hgf_sim_resp *resp, int status, const char *code, const char *message)
{
    json_t *doc = json_pack("{s:s}", "error", message);
    if (doc && code && json_object_set_new(doc, "code", json_string(code)) != 0) {
        json_decref(doc);
        doc = NULL;
    }
    reply(resp, status, doc);
}

static void reply_err(hgf_sim_resp *resp, const hgf_err *err)
{
    if (err->code == HGF_ENOMEM)
        reply_error(resp, 500, NULL, "out of memory");
    else
        reply_error(resp, 400, NULL, err->msg);
}

/* ---- parameters -------------------------------------------------------- */

static int only_members(json_t *doc, const char *const *known, hgf_err *err)
{
    const char *key;
    json_t *v;
    json_object_foreach(doc, key, v) {
        int ok = 0;
        for (size_t i = 0; known[i] && !ok; i++)
            ok = strcmp(key, known[i]) == 0;
        if (!ok)
            return hgf_err_set(err, HGF_EINPUT, "%.64s: unknown member", key);
    }
    return 0;
}

static int get_str(json_t *doc, const char *field, int required, const char **out,
                   hgf_err *err)
{
    json_t *v = json_object_get(doc, field);
    *out = NULL;
    if ((!v || json_is_null(v)) && !required)
        return 0;
    if (!v)
        return hgf_err_set(err, HGF_EINPUT, "%s: required", field);
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
        return hgf_err_set(err, HGF_EINPUT, "%s: expected a string", field);
    *out = json_string_value(v);
    return 0;
}

/* -1 when absent. */
static int get_bool(json_t *doc, const char *field, int *out, hgf_err *err)
{
    json_t *v = json_object_get(doc, field);
    *out = -1;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return hgf_err_set(err, HGF_EINPUT, "%s: expected true or false", field);
    *out = json_is_true(v);
    return 0;
}

static int check_registry(json_t *doc, hgf_sim_change *c, hgf_err *err)
{
    int rc = get_str(doc, "account", 1, &c->account, err);
    if (!rc && (strlen(c->account) != 12 || strspn(c->account, "0123456789") != 12))
        rc = hgf_err_set(err, HGF_EINPUT, "account: expected a 12-digit account id");
    if (!rc)
        rc = get_str(doc, "region", 1, &c->region, err);
    if (!rc && (!*c->region || strlen(c->region) > 32 ||
                strspn(c->region, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(c->region)))
        rc = hgf_err_set(err, HGF_EINPUT, "region: expected a region name like us-east-1");
    return rc;
}

static int check_repository(const hgf_sim_mutate *m, json_t *doc, int required,
                            hgf_sim_change *c, hgf_err *err)
{
    int rc = get_str(doc, "repository", required, &c->repository, err);
    if (rc || !c->repository)
        return rc;
    size_t n = strlen(c->repository);
    if (n < 2 || n > 256 || regexec(&m->repo_re, c->repository, 0, NULL, 0) != 0)
        return hgf_err_set(err, HGF_EINPUT,
                           "repository: '%.256s' is not an ECR repository name (2-256 "
                           "characters: lowercase letters, digits, . _ - and /)",
                           c->repository);
    return 0;
}

/* reserve: room left for a "-<i>" suffix. */
static int check_tag(json_t *doc, int required, size_t reserve, hgf_sim_change *c, hgf_err *err)
{
    int rc = get_str(doc, "tag", required, &c->tag, err);
    if (rc || !c->tag)
        return rc;
    size_t n = strlen(c->tag);
    if (n < 1 || n + reserve > HGF_SIM_TAG_MAX || strspn(c->tag, TAG_CHARS) != n ||
        c->tag[0] == '.' || c->tag[0] == '-')
        return hgf_err_set(err, HGF_EINPUT,
                           "tag: '%.300s' is not an image tag (1-%zu characters: letters, "
                           "digits, _ . -, not starting with . or -)",
                           c->tag, (size_t)HGF_SIM_TAG_MAX - reserve);
    return 0;
}

static int check_digest(json_t *doc, int required, hgf_sim_change *c, hgf_err *err)
{
    int rc = get_str(doc, "digest", required, &c->digest, err);
    if (rc || !c->digest)
        return rc;
    if (strlen(c->digest) != 71 || strncmp(c->digest, "sha256:", 7) != 0 ||
        strspn(c->digest + 7, "0123456789abcdef") != 64)
        return hgf_err_set(err, HGF_EINPUT, "digest: expected sha256:<64 lowercase hex digits>");
    return 0;
}

static int check_deliver(hgf_sim_mutate *m, json_t *doc, params *p, hgf_err *err)
{
    int rc = get_bool(doc, "deliver", &p->deliver, err);
    if (!rc && p->deliver == -1)
        p->deliver = hgf_sim_webhook_enabled(m->webhook);
    if (!rc && p->deliver && !hgf_sim_webhook_enabled(m->webhook))
        rc = hgf_err_set(err, HGF_EINPUT,
                         "deliver: no webhook is configured (POST /_sim/webhook first)");
    return rc;
}

static int check_count(json_t *doc, params *p, hgf_err *err)
{
    json_t *count = json_object_get(doc, "count"), *rate = json_object_get(doc, "rate");
    p->count = 1;
    if (count && !json_is_null(count)) {
        if (!json_is_integer(count) || json_integer_value(count) < 1 ||
            json_integer_value(count) > HGF_SIM_MAX_PUSH_COUNT)
            return hgf_err_set(err, HGF_EINPUT, "count: expected an integer in 1..%d",
                               HGF_SIM_MAX_PUSH_COUNT);
        p->count = json_integer_value(count);
    }
    if (rate && !json_is_null(rate)) {
        if (!json_is_number(rate) || !(json_number_value(rate) > 0) ||
            json_number_value(rate) > MAX_RATE)
            return hgf_err_set(err, HGF_EINPUT, "rate: expected pushes per second in (0, %g]",
                               MAX_RATE);
        p->rate = json_number_value(rate);
    }
    if (!p->rate && p->count > HGF_SIM_MAX_SYNC_COUNT)
        return hgf_err_set(err, HGF_EINPUT,
                           "count: more than %d pushes need a \"rate\" (a background batch)",
                           HGF_SIM_MAX_SYNC_COUNT);
    return 0;
}

static json_t *parse_body(const hgf_sim_req *req, const char *const *known, hgf_sim_resp *resp)
{
    json_error_t jerr;
    hgf_err err;
    hgf_err_clear(&err);
    json_t *doc = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc || !json_is_object(doc)) {
        char msg[300];
        snprintf(msg, sizeof msg, "the body is not a JSON object%s%.200s", doc ? "" : ": ",
                 doc ? "" : jerr.text);
        json_decref(doc);
        reply_error(resp, 400, NULL, msg);
        return NULL;
    }
    if (only_members(doc, known, &err) != 0) {
        json_decref(doc);
        reply_err(resp, &err);
        return NULL;
    }
    return doc;
}

/* "index": "oci" | "docker" | null: a multi-arch push. */
static int check_index(json_t *doc, hgf_sim_change *c, hgf_err *err)
{
    const char *v;
    int rc = get_str(doc, "index", 0, &v, err);
    if (rc || !v)
        return rc;
    c->index = strcmp(v, "oci") == 0      ? HGF_SIM_PUSH_OCI_INDEX
               : strcmp(v, "docker") == 0 ? HGF_SIM_PUSH_DOCKER_LIST
                                          : 0;
    return c->index ? 0
                    : hgf_err_set(err, HGF_EINPUT,
                                  "index: expected \"oci\" (an OCI image index) or \"docker\" (a "
                                  "Docker manifest list)");
}

static int parse_push(hgf_sim_mutate *m, json_t *doc, params *p, hgf_err *err)
{
    int immutable = -1, scan = -1, force = -1;
    int rc = check_count(doc, p, err);
    if (!rc)
        rc = check_registry(doc, &p->c, err);
    if (!rc)
        rc = check_repository(m, doc, 1, &p->c, err);
    if (!rc)
        rc = check_tag(doc, 0, p->count > 1 ? 8 : 0, &p->c, err);
    if (!rc)
        rc = get_bool(doc, "immutable", &immutable, err);
    if (!rc)
        rc = get_bool(doc, "scan_on_push", &scan, err);
    if (!rc)
        rc = get_bool(doc, "force", &force, err);
    if (!rc)
        rc = check_deliver(m, doc, p, err);
    if (!rc)
        rc = check_index(doc, &p->c, err);
    p->c.immutable = immutable;
    p->c.scan_on_push = scan == 1;
    p->c.force = force == 1;
    return rc;
}

/* ---- events ------------------------------------------------------------ */

static void emit(hgf_sim_mutate *m, const hgf_sim_change *c, const hgf_sim_change_result *r,
                 const char *action, const char *tag, uint64_t batch_id, void **handle,
                 outcome *o)
{
    hgf_sim_event ev;
    hgf_sim_webhook_event_init(&ev);
    ev.action = action;
    ev.result = r->status == HGF_SIM_MUT_OK ? "SUCCESS" : "FAILURE";
    snprintf(ev.account, sizeof ev.account, "%s", c->account);
    snprintf(ev.region, sizeof ev.region, "%s", c->region);
    ev.repository = c->repository;
    snprintf(ev.digest, sizeof ev.digest, "%s", r->digest);
    ev.tag = tag;
    ev.time_ms = r->at_ms;
    ev.batch = batch_id;
    memset(o, 0, sizeof *o);
    /* Only a missing webhook (cleared meanwhile) or memory stops a delivery. */
    o->sent = hgf_sim_webhook_deliver(m->webhook, &ev, handle, &o->d) == 0;
    memcpy(o->event_id, ev.id, sizeof o->event_id);
}

/* ---- answers ----------------------------------------------------------- */

static int http_status(enum hgf_sim_mut s)
{
    switch (s) {
    case HGF_SIM_MUT_OK:
        return 200;
    case HGF_SIM_MUT_TAG_EXISTS:
    case HGF_SIM_MUT_IMAGE_EXISTS:
        return 409;
    case HGF_SIM_MUT_MUTABILITY:
        return 400;
    default:
        return 404;
    }
}

/* AWS's code and message for a status; NULL code for success. */
static const char *describe(const hgf_sim_change *c, const hgf_sim_change_result *r,
                            const char *tag, char *msg, size_t n)
{
    switch (r->status) {
    case HGF_SIM_MUT_NO_REGISTRY:
        snprintf(msg, n, "account: the fleet has no registry of account '%s' in region '%s'",
                 c->account, c->region);
        return "RegistryNotFound";
    case HGF_SIM_MUT_NO_REPO:
        snprintf(msg, n,
                 "repository: The repository with name '%s' does not exist in the registry "
                 "with id '%s'",
                 c->repository, c->account);
        return "RepositoryNotFoundException";
    case HGF_SIM_MUT_NO_IMAGE:
        snprintf(msg, n,
                 "%s: The image with imageId {imageDigest:'%s', imageTag:'%s'} does not exist "
                 "within the repository with name '%s' in the registry with id '%s'",
                 c->tag ? "tag" : "digest", c->digest ? c->digest : "null",
                 c->tag ? c->tag : "null", c->repository, c->account);
        return "ImageNotFoundException";
    case HGF_SIM_MUT_TAG_EXISTS:
        snprintf(msg, n,
                 "The image tag '%s' already exists in the '%s' repository and cannot be "
                 "overwritten because the repository is immutable.",
                 tag, c->repository);
        return "ImageTagAlreadyExistsException";
    case HGF_SIM_MUT_IMAGE_EXISTS:
        snprintf(msg, n,
                 "Image with digest '%s' and tag '%s' already exists in the repository with "
                 "name '%s' in registry with id '%s'",
                 r->digest, tag, c->repository, c->account);
        return "ImageAlreadyExistsException";
    case HGF_SIM_MUT_MUTABILITY:
        snprintf(msg, n, "immutable: repository '%s' already exists and is %s", c->repository,
                 r->immutable ? "IMMUTABLE" : "MUTABLE");
        return "InvalidParameterException";
    default:
        msg[0] = '\0';
        return NULL;
    }
}

static json_t *or_null(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

/* The answer for one change; tag is the event's. */
static json_t *change_json(const hgf_sim_change *c, const hgf_sim_change_result *r,
                           const char *tag, const outcome *o)
{
    static const outcome none = {0};
    char msg[1024];
    const char *code = describe(c, r, tag, msg, sizeof msg);
    o = o ? o : &none;
    json_t *doc = json_pack("{s:o, s:s, s:o, s:o, s:o, s:o, s:i, s:b, s:b}", "digest",
                            or_null(r->digest), "repository", c->repository, "tag",
                            or_null(tag), "previous_digest", or_null(r->previous), "event_id",
                            o->sent ? json_string(o->event_id) : json_null(),
                            "delivered_status",
                            o->sent ? json_integer(o->d.status) : json_null(), "attempts",
                            o->d.attempts, "created_repository", r->created_repo, "immutable",
                            r->immutable);
    if (doc && r->children[0][0] &&
        json_object_set_new(doc, "children",
                            json_pack("[s,s]", r->children[0], r->children[1])) != 0) {
        json_decref(doc);
        return NULL;
    }
    if (doc && code &&
        (json_object_set_new(doc, "error", json_string(msg)) != 0 ||
         json_object_set_new(doc, "code", json_string(code)) != 0)) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

/* A refusal without any change: just the error. */
static int refused_outright(enum hgf_sim_mut s)
{
    return s != HGF_SIM_MUT_OK && s != HGF_SIM_MUT_TAG_EXISTS && s != HGF_SIM_MUT_IMAGE_EXISTS;
}

static void reply_change(hgf_sim_resp *resp, const hgf_sim_change *c,
                         const hgf_sim_change_result *r, const char *tag, const outcome *o)
{
    char msg[1024];
    const char *code = describe(c, r, tag, msg, sizeof msg);
    if (refused_outright(r->status))
        reply_error(resp, http_status(r->status), code, msg);
    else
        reply(resp, http_status(r->status), change_json(c, r, tag, o));
}

/* ---- push -------------------------------------------------------------- */

/* One push; its event when delivery is on. tag may differ from p->c.tag. */
static int push_one(hgf_sim_mutate *m, const params *p, const char *tag, uint64_t batch_id,
                    void **handle, hgf_sim_change_result *r, outcome *o)
{
    hgf_sim_change c = p->c;
    c.tag = tag;
    memset(o, 0, sizeof *o);
    int rc = hgf_sim_fleet_push(m->fleet, &c, r);
    int evented = r->status == HGF_SIM_MUT_OK || r->status == HGF_SIM_MUT_TAG_EXISTS;
    /* A multi-arch push's platform manifests are pushed (untagged) first. */
    for (unsigned k = 0; !rc && evented && p->deliver && k < 2 && r->children[k][0]; k++) {
        hgf_sim_change_result kid = *r;
        outcome ko;
        memcpy(kid.digest, r->children[k], sizeof kid.digest);
        kid.previous[0] = '\0';
        emit(m, &c, &kid, "PUSH", NULL, batch_id, handle, &ko);
    }
    if (!rc && evented && p->deliver)
        emit(m, &c, r, "PUSH", tag, batch_id, handle, o);
    return rc;
}

static void numbered_tag(const char *tag, long long i, char *out, size_t n)
{
    if (tag)
        snprintf(out, n, "%s-%lld", tag, i);
    else
        out[0] = '\0';
}

static void push_many(hgf_sim_mutate *m, const params *p, hgf_sim_resp *resp)
{
    json_t *list = json_array();
    int status = 200;
    void *handle = NULL;
    char tag[NUMBERED_TAG_SIZE];
    for (long long i = 1; list && i <= p->count; i++) {
        hgf_sim_change_result r;
        outcome o;
        numbered_tag(p->c.tag, i, tag, sizeof tag);
        hgf_sim_change c = p->c;
        c.tag = tag[0] ? tag : NULL;
        if (push_one(m, p, c.tag, 0, &handle, &r, &o) != 0) {
            status = 500;
            break;
        }
        if (refused_outright(r.status)) {
            hgf_sim_webhook_handle_free(handle);
            json_decref(list);
            reply_change(resp, &c, &r, c.tag, &o);
            return;
        }
        status = status == 200 ? http_status(r.status) : status;
        json_array_append_new(list, change_json(&c, &r, c.tag, &o));
    }
    hgf_sim_webhook_handle_free(handle);
    if (status == 500) {
        json_decref(list);
        reply_error(resp, 500, NULL, "out of memory");
        return;
    }
    reply(resp, status, json_pack("{s:I, s:o}", "count", (json_int_t)p->count, "pushes", list));
}

/* ---- bulk batches ------------------------------------------------------ */

/* Sleeps until b's t0 + offset_s; nonzero when the batch must end. */
static int wait_slot(batch *b, double offset_s)
{
    hgf_sim_mutate *m = b->m;
    struct timespec at = b->t0;
    double whole = floor(offset_s);
    at.tv_sec += (time_t)whole;
    at.tv_nsec += (long)((offset_s - whole) * 1e9);
    if (at.tv_nsec >= 1000000000L) {
        at.tv_sec++;
        at.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&m->lock);
    while (!m->stopping && !b->cancelled &&
           pthread_cond_timedwait(&m->wake, &m->lock, &at) == 0)
        ;
    int end = m->stopping || b->cancelled;
    pthread_mutex_unlock(&m->lock);
    return end;
}

static double elapsed_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

static void bulk_push(batch *b, unsigned i, void **handle)
{
    params p = {.c = {.account = b->account, .region = b->region, .repository = b->repository,
                      .immutable = b->immutable, .scan_on_push = b->scan_on_push,
                      .force = b->force, .index = b->index},
                .deliver = b->deliver};
    char tag[NUMBERED_TAG_SIZE];
    hgf_sim_change_result r;
    outcome o;
    numbered_tag(b->tag[0] ? b->tag : NULL, (long long)i, tag, sizeof tag);
    if (push_one(b->m, &p, tag[0] ? tag : NULL, b->id, handle, &r, &o) != 0 ||
        refused_outright(r.status)) {
        atomic_fetch_add(&b->failed, 1);
        return;
    }
    atomic_fetch_add(r.status == HGF_SIM_MUT_OK ? &b->pushed : &b->refused, 1);
    if (o.sent)
        atomic_fetch_add(o.d.ok ? &b->delivered : &b->undelivered, 1);
}

static void *run_worker(void *arg)
{
    worker *w = arg;
    batch *b = w->b;
    void *handle = NULL;
    for (unsigned i = w->index; i < b->count; i += b->n_workers) {
        if (wait_slot(b, (double)i / b->rate))
            break;
        bulk_push(b, i + 1, &handle);
    }
    hgf_sim_webhook_handle_free(handle);
    pthread_mutex_lock(&b->m->lock);
    if (--b->running == 0)
        b->elapsed_ms = elapsed_since(&b->t0);
    pthread_mutex_unlock(&b->m->lock);
    return NULL;
}

/* With m->lock: joins the threads of finished batches, so that a long run
 * of batches does not pile up exited threads. */
static void reap(hgf_sim_mutate *m)
{
    for (size_t i = 0; i < m->n_batches; i++)
        if (!m->batches[i]->joined && m->batches[i]->running == 0)
            join_batch(m->batches[i]);
}

static batch *new_batch(const params *p)
{
    batch *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    snprintf(b->account, sizeof b->account, "%s", p->c.account);
    snprintf(b->region, sizeof b->region, "%s", p->c.region);
    snprintf(b->repository, sizeof b->repository, "%s", p->c.repository);
    snprintf(b->tag, sizeof b->tag, "%s", p->c.tag ? p->c.tag : "");
    b->immutable = p->c.immutable;
    b->force = p->c.force;
    b->index = p->c.index;
    b->scan_on_push = p->c.scan_on_push;
    b->deliver = p->deliver;
    b->count = (unsigned)p->count;
    b->rate = p->rate;
    b->n_workers = b->count < HGF_SIM_BATCH_THREADS ? b->count : HGF_SIM_BATCH_THREADS;
    return b;
}

/* With m->lock: lists b (*listed) and starts its workers. When a worker
 * cannot start, the batch is cancelled and the started ones end at once
 * (they wait for m->lock before their first push). */
static int start_batch(hgf_sim_mutate *m, batch *b, int *listed)
{
    *listed = 0;
    if (m->n_batches == m->cap_batches) {
        size_t cap = m->cap_batches ? m->cap_batches * 2 : 16;
        batch **list = realloc(m->batches, cap * sizeof *list);
        if (!list)
            return HGF_ENOMEM;
        m->batches = list;
        m->cap_batches = cap;
    }
    b->m = m;
    b->id = m->n_batches + 1;
    m->batches[m->n_batches++] = b;
    *listed = 1;
    clock_gettime(CLOCK_MONOTONIC, &b->t0);
    unsigned want = b->n_workers;
    for (b->n_workers = 0; b->n_workers < want; b->n_workers++, b->running++) {
        worker *w = &b->workers[b->n_workers];
        *w = (worker){.b = b, .index = b->n_workers};
        if (pthread_create(&w->thread, NULL, run_worker, w) != 0) {
            b->cancelled = 1;
            return HGF_EFAIL;
        }
    }
    return 0;
}

/* The registry must exist and the repository's mutability agree before a
 * batch starts: otherwise every push of it would fail the same way. */
static int preflight(hgf_sim_mutate *m, const params *p, hgf_sim_resp *resp)
{
    hgf_sim_change_result r = {.status = HGF_SIM_MUT_OK};
    hgf_sim_fleet_lock(m->fleet);
    hgf_sim_registry *reg = hgf_sim_fleet_registry_find(m->fleet, p->c.account, p->c.region);
    hgf_sim_repo *repo = reg ? hgf_sim_fleet_repo_find(reg, p->c.repository) : NULL;
    if (!reg)
        r.status = HGF_SIM_MUT_NO_REGISTRY;
    else if (repo && p->c.immutable >= 0 && p->c.immutable != repo->immutable)
        r.status = HGF_SIM_MUT_MUTABILITY;
    r.immutable = repo ? repo->immutable : 0;
    hgf_sim_fleet_unlock(m->fleet);
    if (r.status)
        reply_change(resp, &p->c, &r, NULL, NULL);
    return r.status;
}

static void push_bulk(hgf_sim_mutate *m, const params *p, hgf_sim_resp *resp)
{
    if (preflight(m, p, resp) != 0)
        return;
    batch *b = new_batch(p);
    if (!b) {
        reply_error(resp, 500, NULL, "out of memory");
        return;
    }
    int listed = 0;
    pthread_mutex_lock(&m->lock);
    reap(m);
    int rc = m->stopping ? HGF_EFAIL : start_batch(m, b, &listed);
    uint64_t id = b->id;
    pthread_mutex_unlock(&m->lock);
    if (!listed)
        free(b);
    if (rc) {
        reply_error(resp, 500, NULL, "could not start the batch's threads");
        return;
    }
    reply(resp, 202, json_pack("{s:I, s:I, s:f}", "batch", (json_int_t)id, "count",
                               (json_int_t)p->count, "rate", p->rate));
}

void hgf_sim_mutate_push(hgf_sim_mutate *m, const hgf_sim_req *req, hgf_sim_resp *resp)
{
    static const char *const known[] = {"account", "region", "repository", "tag", "count",
                                        "rate", "deliver", "immutable", "force",
                                        "scan_on_push", "index", NULL};
    params p = {.deliver = -1};
    hgf_err err;
    hgf_err_clear(&err);
    json_t *doc = parse_body(req, known, resp);
    if (!doc)
        return;
    int rc = parse_push(m, doc, &p, &err);
    if (rc)
        reply_err(resp, &err);
    else if (p.rate > 0)
        push_bulk(m, &p, resp);
    else if (p.count > 1)
        push_many(m, &p, resp);
    else {
        hgf_sim_change_result r;
        outcome o;
        if (push_one(m, &p, p.c.tag, 0, NULL, &r, &o) != 0)
            reply_error(resp, 500, NULL, "out of memory");
        else
            reply_change(resp, &p.c, &r, p.c.tag, &o);
    }
    json_decref(doc);
}

/* ---- retag, delete ----------------------------------------------------- */

void hgf_sim_mutate_retag(hgf_sim_mutate *m, const hgf_sim_req *req, hgf_sim_resp *resp)
{
    static const char *const known[] = {"account", "region", "repository", "digest", "tag",
                                        "force", "deliver", NULL};
    params p = {.deliver = -1};
    int force = -1;
    hgf_err err;
    hgf_err_clear(&err);
    json_t *doc = parse_body(req, known, resp);
    if (!doc)
        return;
    int rc = check_registry(doc, &p.c, &err);
    if (!rc)
        rc = check_repository(m, doc, 1, &p.c, &err);
    if (!rc)
        rc = check_digest(doc, 1, &p.c, &err);
    if (!rc)
        rc = check_tag(doc, 1, 0, &p.c, &err);
    if (!rc)
        rc = get_bool(doc, "force", &force, &err);
    if (!rc)
        rc = check_deliver(m, doc, &p, &err);
    p.c.force = force == 1;
    hgf_sim_change_result r;
    outcome o = {0};
    if (!rc && (rc = hgf_sim_fleet_retag(m->fleet, &p.c, &r)) != 0)
        hgf_err_set(&err, rc, "out of memory");
    /* A refused re-tag is a failed PutImage: ECR reports it too. */
    if (!rc && p.deliver && (r.status == HGF_SIM_MUT_OK || r.status == HGF_SIM_MUT_TAG_EXISTS))
        emit(m, &p.c, &r, "PUSH", p.c.tag, 0, NULL, &o);
    if (rc)
        reply_err(resp, &err);
    else
        reply_change(resp, &p.c, &r, p.c.tag, &o);
    json_decref(doc);
}

void hgf_sim_mutate_delete(hgf_sim_mutate *m, const hgf_sim_req *req, hgf_sim_resp *resp)
{
    static const char *const known[] = {"account", "region", "repository", "digest", "tag",
                                        "deliver", NULL};
    params p = {.deliver = -1};
    hgf_err err;
    hgf_err_clear(&err);
    json_t *doc = parse_body(req, known, resp);
    if (!doc)
        return;
    int rc = check_registry(doc, &p.c, &err);
    if (!rc)
        rc = check_repository(m, doc, 1, &p.c, &err);
    if (!rc)
        rc = check_digest(doc, 0, &p.c, &err);
    if (!rc)
        rc = check_tag(doc, 0, 0, &p.c, &err);
    if (!rc && !p.c.digest == !p.c.tag)
        rc = hgf_err_set(&err, HGF_EINPUT, "digest: give either \"digest\" or \"tag\"");
    if (!rc)
        rc = check_deliver(m, doc, &p, &err);
    hgf_sim_change_result r;
    outcome o = {0};
    if (!rc && (rc = hgf_sim_fleet_delete(m->fleet, &p.c, &r)) != 0)
        hgf_err_set(&err, rc, "out of memory");
    if (!rc && p.deliver && r.status == HGF_SIM_MUT_OK)
        emit(m, &p.c, &r, "DELETE", r.tag, 0, NULL, &o);
    if (rc)
        reply_err(resp, &err);
    else
        reply_change(resp, &p.c, &r, r.status == HGF_SIM_MUT_OK ? r.tag : p.c.tag, &o);
    json_decref(doc);
}

/* ---- lifecycle --------------------------------------------------------- */

static int parse_lifecycle(json_t *doc, hgf_sim_lifecycle_change *lc, hgf_err *err)
{
    json_t *after = json_object_get(doc, "untagged_expire_after_seconds");
    int trap;
    int rc = get_bool(doc, "delete_on_next_manifest_get", &trap, err);
    if (rc)
        return rc;
    lc->set_trap = trap >= 0;
    lc->trap = trap == 1;
    lc->set_expiry = after != NULL;
    lc->after_ms = -1;
    if (after && !json_is_null(after)) {
        if (!json_is_integer(after) || json_integer_value(after) < 0 ||
            json_integer_value(after) > 10LL * 366 * 86400)
            return hgf_err_set(err, HGF_EINPUT,
                               "untagged_expire_after_seconds: expected whole seconds >= 0 "
                               "(null removes the rule)");
        lc->after_ms = json_integer_value(after) * 1000;
    }
    if (!lc->set_trap && !lc->set_expiry)
        return hgf_err_set(err, HGF_EINPUT,
                           "untagged_expire_after_seconds: give it or "
                           "delete_on_next_manifest_get");
    return 0;
}

void hgf_sim_mutate_lifecycle(hgf_sim_mutate *m, const hgf_sim_req *req, hgf_sim_resp *resp)
{
    static const char *const known[] = {"account", "region", "repository",
                                        "untagged_expire_after_seconds",
                                        "delete_on_next_manifest_get", NULL};
    params p = {.deliver = 0};
    hgf_sim_lifecycle_change lc;
    hgf_sim_change_result r = {0};
    hgf_err err;
    hgf_err_clear(&err);
    json_t *doc = parse_body(req, known, resp);
    if (!doc)
        return;
    int rc = check_registry(doc, &p.c, &err);
    if (!rc)
        rc = check_repository(m, doc, 0, &p.c, &err);
    if (!rc)
        rc = parse_lifecycle(doc, &lc, &err);
    if (!rc && (rc = hgf_sim_fleet_set_lifecycle(m->fleet, p.c.account, p.c.region,
                                                 p.c.repository, &lc, &r.status)) != 0)
        hgf_err_set(&err, rc, "out of memory");
    if (rc) {
        reply_err(resp, &err);
    } else if (r.status) {
        reply_change(resp, &p.c, &r, NULL, NULL);
    } else {
        json_t *out = json_pack("{s:s, s:s, s:o}", "account", p.c.account, "region",
                                p.c.region, "repository", or_null(p.c.repository));
        if (out && lc.set_expiry)
            json_object_set_new(out, "untagged_expire_after_seconds",
                                lc.after_ms < 0 ? json_null()
                                                : json_integer(lc.after_ms / 1000));
        if (out && lc.set_trap)
            json_object_set_new(out, "delete_on_next_manifest_get", json_boolean(lc.trap));
        reply(resp, 200, out);
    }
    json_decref(doc);
}

/* ---- events ------------------------------------------------------------ */

/* "batch=<id>" in the query: 0 when absent, -1 when malformed. */
static long long batch_param(const char *query)
{
    for (const char *q = query; q && *q; q = strchr(q, '&') ? strchr(q, '&') + 1 : "") {
        if (strncmp(q, "batch=", 6) != 0)
            continue;
        char *end;
        long long id = strtoll(q + 6, &end, 10);
        return end == q + 6 || (*end && *end != '&') || id < 1 ? -1 : id;
    }
    return 0;
}

static json_t *batch_json(hgf_sim_mutate *m, const batch *b)
{
    pthread_mutex_lock(&m->lock);
    int done = b->running == 0;
    double elapsed = done ? b->elapsed_ms : elapsed_since(&b->t0);
    pthread_mutex_unlock(&m->lock);
    return json_pack("{s:I, s:s, s:s, s:s, s:s?, s:I, s:f, s:I, s:I, s:I, s:I, s:I, s:b, s:f}",
                     "id", (json_int_t)b->id, "account", b->account, "region", b->region,
                     "repository", b->repository, "tag", b->tag[0] ? b->tag : NULL, "count",
                     (json_int_t)b->count, "rate", b->rate, "pushed",
                     (json_int_t)atomic_load(&b->pushed), "refused",
                     (json_int_t)atomic_load(&b->refused), "failed",
                     (json_int_t)atomic_load(&b->failed), "delivered",
                     (json_int_t)atomic_load(&b->delivered), "undelivered",
                     (json_int_t)atomic_load(&b->undelivered), "done", done, "elapsed_ms",
                     round(elapsed * 1000) / 1000);
}

void hgf_sim_mutate_events(hgf_sim_mutate *m, const hgf_sim_req *req, hgf_sim_resp *resp)
{
    if (strcmp(req->method, "DELETE") == 0) {
        hgf_sim_webhook_events_clear(m->webhook);
        reply(resp, 200, json_pack("{s:b}", "cleared", 1));
        return;
    }
    long long id = batch_param(req->query);
    batch *b = NULL;
    pthread_mutex_lock(&m->lock);
    if (id > 0 && (size_t)id <= m->n_batches)
        b = m->batches[id - 1];
    pthread_mutex_unlock(&m->lock);
    if (id < 0 || (id > 0 && !b)) {
        reply_error(resp, id < 0 ? 400 : 404, NULL,
                    id < 0 ? "batch: expected a batch id" : "batch: no such batch");
        return;
    }
    /* The batch's progress first: a delivery is logged before it is counted,
     * so the events read after it hold every delivery it counts. (In the
     * other order a batch could read done, 200 delivered, beside 198 events.) */
    json_t *progress = b ? batch_json(m, b) : NULL;
    json_t *doc = hgf_sim_webhook_events_json(m->webhook, (uint64_t)(id > 0 ? id : 0));
    if (doc && b && (!progress || json_object_set_new(doc, "batch", progress) != 0)) {
        json_decref(doc);
        doc = NULL;
    } else if (!doc) {
        json_decref(progress);
    }
    reply(resp, 200, doc);
}
