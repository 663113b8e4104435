#include "hgfleet/scheduler.h"
#include "hgfleet/log.h"
#include "hgfleet/metrics.h"
#include "hgfleet/schedule.h"
#include "hgfleet/report.h"
#include "hgfleet/sweep.h"

#include <ev.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TICK_S 1.0
#define BATCH "100"

struct hgf_scheduler {
    hgf_runtime *rt;
    struct ev_loop *loop;   /* rt->loop, kept for after hgf_runtime_close */
    ev_timer tick;
    int busy;      /* a claim or its write-back is in flight */
    int again;     /* the last batch was full: claim again at once */
    int stopped;
    char last_error[sizeof(((hgf_err *)0)->msg)];  /* logged once until it changes */
    int has_sweeps;          /* HGFLEET_SWEEP_SCHEDULE is set */
    hgf_schedule sweeps;
    int64_t sweep_due;       /* the next due time (epoch seconds) */
    int sweep_busy;          /* its enqueue is in flight */
};

static void log_failure(hgf_scheduler *s, const char *event, const char *msg)
{
    if (!strcmp(msg, s->last_error))
        return;
    snprintf(s->last_error, sizeof s->last_error, "%s", msg);
    hgf_log_warn(event, "%s", msg);
}

int hgf_scheduler_plan(const char *spec, int64_t connection_id, int was_due, int64_t now,
                       hgf_sched_plan *out, hgf_err *err)
{
    out->fire = 0;
    out->next = HGF_SCHED_NEVER;
    hgf_schedule s;
    int rc = hgf_schedule_parse(spec ? spec : "", &s, err);
    if (rc)
        return rc;
    if (s.kind == HGF_SCHED_NONE) {
        out->next = HGF_SCHED_NO_TIMER;
        return 0;
    }
    int64_t next = hgf_schedule_next_jittered(&s, (uint64_t)connection_id, now);
    out->next = next < 0 ? HGF_SCHED_NEVER : next;
    out->fire = was_due && next >= 0;
    return 0;
}

/* Claims due connections; the provisional next_sync_at is returned as text
 * so the write-back can tell whether someone changed the row meanwhile. */
static const char CLAIM_SQL[] =
    "WITH due AS (SELECT id, next_sync_at FROM connections WHERE removed_at IS NULL AND"
    " (next_sync_at <= now() OR (next_sync_at IS NULL AND"
    "  lower(btrim(schedule)) NOT IN ('manual', 'on_push')))"
    " ORDER BY next_sync_at NULLS FIRST, id LIMIT " BATCH " FOR UPDATE SKIP LOCKED)"
    " UPDATE connections c SET next_sync_at = now() + interval '5 minutes'"
    " FROM due WHERE c.id = due.id"
    " RETURNING c.id, c.schedule, due.next_sync_at IS NOT NULL, c.next_sync_at::text,"
    " floor(extract(epoch FROM now()))::bigint";

/* One round trip: write the real next fires (unless the row changed since
 * the claim, e.g. a schedule update cleared it) and queue the due syncs. */
static const char PLAN_SQL[] =
    "WITH v AS (SELECT * FROM jsonb_to_recordset($1::jsonb)"
    "   AS v(id bigint, next double precision, never boolean, fire boolean, prov text)),"
    " upd AS (UPDATE connections c SET next_sync_at = CASE WHEN v.never THEN 'infinity'"
    "   ELSE to_timestamp(v.next) END, updated_at = now()"
    "   FROM v WHERE c.id = v.id AND c.removed_at IS NULL"
    "   AND c.next_sync_at = v.prov::timestamptz RETURNING c.id)"
    " INSERT INTO jobs (kind, payload, priority, dedup_key)"
    " SELECT 'sync', jsonb_build_object('connection_id', v.id), 0, 'sync:' || v.id"
    " FROM v JOIN upd ON upd.id = v.id WHERE v.fire"
    " ON CONFLICT (dedup_key) WHERE state IN ('queued', 'running') DO NOTHING RETURNING id";

static void arm(hgf_scheduler *s, double after)
{
    ev_timer_stop(s->loop, &s->tick);
    ev_timer_set(&s->tick, after, TICK_S);
    ev_timer_start(s->loop, &s->tick);
}

static void planned(PGresult *res, const hgf_err *err, void *arg)
{
    hgf_scheduler *s = arg;
    s->busy = 0;
    hgf_err e;
    if (err || hgf_store_check(res, &e)) {
        log_failure(s, "scheduler.plan_failed", err ? err->msg : e.msg);
    } else if (PQntuples(res) > 0) {
        hgf_metrics_inc(s->rt->metrics, "hgfleet_scheduler_syncs_queued_total", NULL,
                        PQntuples(res));
        hgf_log_info("scheduler.queued", "syncs=%d", PQntuples(res));
    }
    PQclear(res);
    if (s->again && !s->stopped)
        arm(s, 0.);
}

static json_t *plan_row(const PGresult *res, int i)
{
    int64_t id = atoll(PQgetvalue(res, i, 0));
    const char *spec = PQgetvalue(res, i, 1);
    int was_due = PQgetvalue(res, i, 2)[0] == 't';
    hgf_sched_plan plan;
    hgf_err e;
    if (hgf_scheduler_plan(spec, id, was_due, atoll(PQgetvalue(res, i, 4)), &plan, &e))
        hgf_log_warn("scheduler.bad_schedule", "connection=%lld %s; it will not be synced on a "
                     "timer until its schedule is fixed", (long long)id, e.msg);
    json_t *next = plan.next == HGF_SCHED_NO_TIMER || plan.next == HGF_SCHED_NEVER
                       ? json_null()
                       : json_integer((json_int_t)plan.next);
    return json_pack("{s:I, s:o, s:b, s:b, s:s}", "id", (json_int_t)id, "next", next, "never",
                     plan.next == HGF_SCHED_NEVER, "fire", plan.fire, "prov",
                     PQgetvalue(res, i, 3));
}

static void claimed(PGresult *res, const hgf_err *err, void *arg)
{
    hgf_scheduler *s = arg;
    hgf_err e;
    if (err || hgf_store_check(res, &e)) {
        log_failure(s, "scheduler.claim_failed", err ? err->msg : e.msg);
        PQclear(res);
        s->busy = 0;
        return;
    }
    s->last_error[0] = '\0';
    int n = PQntuples(res);
    s->again = n >= atoi(BATCH);
    json_t *rows = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(rows, plan_row(res, i));
    PQclear(res);
    char *text = json_dumps(rows, JSON_COMPACT);
    json_decref(rows);
    const char *p[] = {text};
    if (n == 0 || !text || hgf_store_query(s->rt->store, PLAN_SQL, 1, p, planned, s))
        s->busy = 0; /* nothing due, or the store went down: rows left provisional */
    free(text);
}

/* ---- org-wide sweeps ---------------------------------------------------- */

static void sweep_queued(PGresult *res, const hgf_err *err, void *arg)
{
    hgf_scheduler *s = arg;
    s->sweep_busy = 0;
    hgf_err e;
    if (err || hgf_store_check(res, &e)) {
        /* sweep_due stays: the next tick fires the same due time again. */
        log_failure(s, "scheduler.sweep_failed", err ? err->msg : e.msg);
        PQclear(res);
        return;
    }
    if (PQntuples(res) == 1 && PQgetvalue(res, 0, 2)[0] == 't') {
        hgf_metrics_inc(s->rt->metrics, "hgfleet_scheduler_sweeps_queued_total", NULL, 1);
        hgf_log_info("scheduler.sweep_queued", "sweep=%s job=%s due=%lld", PQgetvalue(res, 0, 0),
                     PQgetvalue(res, 0, 1), (long long)s->sweep_due);
    } else if (PQntuples(res) == 1) {
        hgf_log_info("scheduler.sweep_running", "sweep=%s is still running at due=%lld; not "
                     "queuing another", PQgetvalue(res, 0, 0), (long long)s->sweep_due);
    }
    PQclear(res);
    s->sweep_due = hgf_schedule_next(&s->sweeps, time(NULL));
}

/* Every replica fires every due time; the database lets the first one queue. */
static void tick_sweeps(hgf_scheduler *s)
{
    if (!s->has_sweeps || s->sweep_busy || s->sweep_due < 0 || time(NULL) < s->sweep_due)
        return;
    hgf_sweep_opts o = {.requested_by = "schedule", .rescan_after_s = s->rt->cfg->rescan_after_s,
                        .active_within_s = HGF_SWEEP_DEFAULT_ACTIVE_S,
                        .stale_days = HGF_REPORT_STALE_DAYS};
    if (hgf_sweep_enqueue_due(s->rt->store, &o, s->sweep_due, sweep_queued, s) == 0)
        s->sweep_busy = 1;
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    hgf_scheduler *s = w->data;
    if (s->stopped || !hgf_store_is_up(s->rt->store))
        return;
    tick_sweeps(s);
    if (s->busy)
        return;
    s->again = 0;
    if (hgf_store_query(s->rt->store, CLAIM_SQL, 0, NULL, claimed, s) == 0)
        s->busy = 1;
}

hgf_scheduler *hgf_scheduler_new(hgf_runtime *rt, hgf_err *err)
{
    hgf_scheduler *s = calloc(1, sizeof *s);
    if (!s) {
        hgf_err_set(err, HGF_ENOMEM, "out of memory");
        return NULL;
    }
    s->rt = rt;
    s->loop = rt->loop;
    hgf_metrics_describe(rt->metrics, "hgfleet_scheduler_syncs_queued_total", HGF_METRIC_COUNTER,
                         "Sync jobs this replica's scheduler queued for due connections.");
    hgf_metrics_describe(rt->metrics, "hgfleet_scheduler_sweeps_queued_total", HGF_METRIC_COUNTER,
                         "Sweeps this replica's scheduler queued for HGFLEET_SWEEP_SCHEDULE.");
    if (rt->cfg->sweep_schedule) {
        if (hgf_schedule_parse(rt->cfg->sweep_schedule, &s->sweeps, err)) {
            free(s);
            return NULL;
        }
        s->has_sweeps = 1;
        s->sweep_due = hgf_schedule_next(&s->sweeps, time(NULL));
    }
    ev_init(&s->tick, on_tick);
    s->tick.data = s;
    arm(s, 0.);
    return s;
}

void hgf_scheduler_stop(hgf_scheduler *s)
{
    s->stopped = 1;
    ev_timer_stop(s->loop, &s->tick);
}

int hgf_scheduler_busy(const hgf_scheduler *s)
{
    return s->busy || s->sweep_busy;
}

void hgf_scheduler_free(hgf_scheduler *s)
{
    if (!s)
        return;
    ev_timer_stop(s->loop, &s->tick);
    free(s);
}
