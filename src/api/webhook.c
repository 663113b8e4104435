/* POST /api/webhooks/ecr: ECR push events as EventBridge API destinations
 * deliver them. Authenticated in constant time, validated before anything
 * reaches the database, and applied in one round trip (hgf_apply_push). */
#include "hgfleet/api.h"
#include "hgfleet/buf.h"
#include "hgfleet/endpoint.h"
#include "hgfleet/event.h"
#include "hgfleet/log.h"
#include "hgfleet/secret.h"
#include "hgfleet/timeutil.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* EventBridge gives the target 5 s. MHD does not time out a suspended
 * request, so a database that stops answering (rather than refusing) would
 * hold every push until the server's connection limit: each waits at most
 * this long for its apply, then gets the 503 that makes EventBridge retry. */
#define APPLY_TIMEOUT_S 4.0

typedef struct pending {
    hgf_server_req *req; /* NULL once answered by the timeout */
    hgf_runtime *rt;
    int64_t start_ms;
    ev_timer timeout;
    char registry[160];
} pending;

static void observe(hgf_runtime *rt, int64_t start_ms, unsigned status)
{
    char labels[32];
    snprintf(labels, sizeof labels, "code=\"%u\"", status);
    hgf_metrics_inc(rt->metrics, "hgfleet_webhook_requests_total", labels, 1);
    hgf_metrics_observe(rt->metrics, "hgfleet_webhook_seconds", "",
                        (double)(hgf_time_now_ms() - start_ms) / 1000.0);
}

static void reply(hgf_server_req *req, hgf_runtime *rt, int64_t start, unsigned status, json_t *body)
{
    observe(rt, start, status);
    hgf_server_reply_json(req, status, body);
}

static void ignored(hgf_server_req *req, hgf_runtime *rt, int64_t start, const char *reason)
{
    reply(req, rt, start, 200, json_pack("{s:s, s:s}", "status", "ignored", "reason", reason));
}

static int basic_matches(const char *b64, const char *token)
{
    hgf_buf raw = HGF_BUF_INIT;
    hgf_err e;
    int ok = 0;
    if (hgf_base64_decode(b64, &raw, &e) == 0) {
        const char *colon = memchr(raw.data, ':', raw.len);
        if (colon)
            ok = hgf_api_token_equal(colon + 1, raw.len - (size_t)(colon + 1 - raw.data), token);
    }
    hgf_secret_wipe_buf(&raw);
    return ok;
}

static int authenticated(hgf_server_req *req, const hgf_config *cfg)
{
    if (!cfg->webhook_token)
        return 0; /* no token configured: refuse everyone rather than no one */
    const char *key = hgf_server_req_header(req, cfg->webhook_api_key_header);
    if (key && hgf_api_token_equal(key, strlen(key), cfg->webhook_token))
        return 1;
    const char *auth = hgf_server_req_header(req, "authorization");
    if (!auth)
        return 0;
    if (!strncasecmp(auth, "Bearer ", 7))
        return hgf_api_token_equal(auth + 7, strlen(auth + 7), cfg->webhook_token);
    if (!strncasecmp(auth, "Basic ", 6))
        return basic_matches(auth + 6, cfg->webhook_token);
    return 0;
}

static void on_apply_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    pending *p = w->data;
    hgf_log_warn("webhook.db_timeout", "registry=%s the database did not answer within %.0f s",
                 p->registry, APPLY_TIMEOUT_S);
    reply(p->req, p->rt, p->start_ms, 503,
          json_pack("{s:s}", "error", "database did not answer in time; retry later"));
    p->req = NULL; /* on_applied frees p */
}

static void on_applied(PGresult *res, const hgf_err *err, void *arg)
{
    pending *p = arg;
    hgf_err e;
    ev_timer_stop(p->rt->loop, &p->timeout);
    if (!p->req) {
        /* Answered 503 already; the event, if applied now, is kept, and
         * EventBridge's retry finds it (the apply is idempotent). */
        hgf_log_info("webhook.late_apply", "registry=%s %s", p->registry,
                     err ? err->msg : "applied after its 503");
    } else if (err || hgf_store_check(res, &e)) {
        hgf_log_warn("webhook.db", "registry=%s %s", p->registry, err ? err->msg : e.msg);
        reply(p->req, p->rt, p->start_ms, 503,
              json_pack("{s:s}", "error", "database unavailable; retry later"));
    } else if (PQntuples(res) == 0) {
        char why[220];
        snprintf(why, sizeof why, "unknown registry %s", p->registry);
        ignored(p->req, p->rt, p->start_ms, why);
    } else {
        json_t *r = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
        json_t *job = json_object_get(r, "job_id");
        if (json_is_integer(job)) {
            reply(p->req, p->rt, p->start_ms, 202,
                  json_pack("{s:s, s:O}", "status", "queued", "job_id", job));
        } else {
            json_object_set_new(r, "status", json_string(json_object_get(r, "deleted") ? "deleted"
                                                                                     : "recorded"));
            if (!json_object_get(r, "deleted"))
                json_object_set_new(r, "reason", json_string("digest already known: no scan"));
            reply(p->req, p->rt, p->start_ms, 200, json_incref(r));
        }
        json_decref(r);
    }
    PQclear(res);
    free(p);
}

static void apply(hgf_server_req *req, hgf_runtime *rt, int64_t start, const hgf_ecr_event *ev)
{
    pending *p = calloc(1, sizeof *p);
    if (!p) {
        reply(req, rt, start, 503, json_pack("{s:s}", "error", "out of memory"));
        return;
    }
    p->req = req;
    p->rt = rt;
    p->start_ms = start;
    /* The registry's host in the region's partition (.amazonaws.com.cn in
     * China), for the log and the "unknown registry" reason. */
    hgf_registry reg;
    hgf_err ignored_err;
    if (hgf_endpoint_registry_from_parts(ev->account, ev->region, 0, &reg, &ignored_err) == 0)
        snprintf(p->registry, sizeof p->registry, "%s", reg.host);
    else
        snprintf(p->registry, sizeof p->registry, "%s.dkr.ecr.%s", ev->account, ev->region);
    char at[40];
    hgf_time_format_iso(ev->time ? hgf_time_parse_iso(ev->time) : time(NULL), at, sizeof at);
    const char *params[] = {ev->account, ev->region, ev->repo, ev->digest, ev->tag, ev->action, at};
    /* Started first: the query's callback, which stops it, may run at once. */
    ev_timer_init(&p->timeout, on_apply_timeout, APPLY_TIMEOUT_S, 0.);
    p->timeout.data = p;
    ev_timer_start(rt->loop, &p->timeout);
    hgf_server_suspend(req);
    /* Self-contained, so off the main connection: a push never queues behind
     * the claims and outcomes it causes, and its NOTIFY wakes the claimer. */
    int rc = hgf_store_query_bulk(rt->store,
                                  "SELECT hgf_apply_push(c.id, $3, $4, $5, $6, "
                                  "$7::timestamptz)::text FROM connections c "
                                  "WHERE c.account_id = $1 AND c.region = $2 "
                                  "AND c.removed_at IS NULL",
                                  7, params, on_applied, p);
    if (rc) {
        ev_timer_stop(rt->loop, &p->timeout);
        reply(req, rt, start, 503, json_pack("{s:s}", "error", "database unavailable; retry later"));
        free(p);
    }
}

static int json_content_type(const char *ct)
{
    return ct && !strncasecmp(ct, "application/json", 16) &&
           (ct[16] == '\0' || ct[16] == ';' || ct[16] == ' ');
}

void hgf_api_webhook_ecr(hgf_server_req *req, void *arg)
{
    int64_t start = hgf_time_now_ms();
    hgf_runtime *rt = hgf_api_runtime(arg);
    /* Authentication first, with the process's config: a caller without the
     * token gets 401 even before the database has been reached. */
    if (!authenticated(req, hgf_api_config(arg))) {
        if (rt)
            observe(rt, start, 401);
        hgf_server_reply_json(req, 401, json_pack("{s:s}", "error", "bad or missing credentials"));
        hgf_server_reply_header(req, "WWW-Authenticate", "Bearer realm=\"hgfleet-webhook\"");
        return;
    }
    if (!rt) {
        hgf_server_reply_json(req, 503, json_pack("{s:s}", "error", "not ready: no database yet"));
        return;
    }
    if (!json_content_type(hgf_server_req_header(req, "content-type"))) {
        reply(req, rt, start, 415, json_pack("{s:s}", "error", "Content-Type must be application/json"));
        return;
    }
    size_t len = 0;
    const char *body = hgf_server_req_body(req, &len);
    json_error_t je;
    json_t *root = len ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &je) : NULL;
    if (!root) {
        char msg[256];
        snprintf(msg, sizeof msg, "body: malformed JSON (%s)", len ? je.text : "empty");
        reply(req, rt, start, 400, json_pack("{s:s, s:s}", "error", msg, "field", "body"));
        return;
    }
    hgf_ecr_event ev;
    hgf_err e;
    if (hgf_event_parse(root, &ev, &e)) {
        reply(req, rt, start, 400, json_pack("{s:s, s:s}", "error", e.msg, "field", ev.bad_field));
    } else if (!ev.image_action) {
        ignored(req, rt, start, "not an aws.ecr \"ECR Image Action\" event");
    } else if (strcmp(ev.result, "SUCCESS")) {
        ignored(req, rt, start, "the push did not succeed (result is not SUCCESS)");
    } else if (strcmp(ev.action, "PUSH") && strcmp(ev.action, "DELETE")) {
        ignored(req, rt, start, "action-type is neither PUSH nor DELETE");
    } else {
        apply(req, rt, start, &ev);
    }
    json_decref(root);
}
