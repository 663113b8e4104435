/* The scheduler: turns connection schedules into sync jobs, on every replica
 * at once with no leader.
 *
 * Each second a replica claims up to 100 due connections in one statement
 * (FOR UPDATE SKIP LOCKED), moving their next_sync_at 5 minutes ahead as a
 * provisional lease, so no other replica takes them. It then computes each
 * one's real next fire in C (hgf_schedule_next_jittered, seeded with the
 * connection id) and, in a second statement, writes it back and queues the
 * sync jobs (dedup key sync:<id>, priority 0). A replica that dies between
 * the two leaves the connection to fire again when the 5 minutes pass.
 *
 * Due means next_sync_at <= now(), or no next_sync_at at all while the
 * schedule has a timer (that is how a changed schedule takes effect: the
 * update clears next_sync_at). manual and on_push connections keep
 * next_sync_at NULL and never fire; a timer that can never fire (cron for
 * 31 February) or a schedule that does not parse parks the connection at
 * 'infinity'.
 *
 * Sweeps: with HGFLEET_SWEEP_SCHEDULE set, every replica also computes the
 * schedule's due times (no jitter: one sweep covers the organization) and,
 * when one passes, calls hgf_sweep_enqueue_due. The database keeps the last
 * due time handled, so however many replicas fire it, one sweep is queued
 * per due time; a due time that finds a sweep still running is folded into
 * it. A due time missed while no replica ran is not made up.
 *
 * Ownership: hgf_scheduler_new returns an object freed with
 * hgf_scheduler_free, after hgf_runtime_close (its store callbacks may fire
 * while the store closes). It borrows the runtime. */
#ifndef HGF_SCHEDULER_H
#define HGF_SCHEDULER_H

#include <stdint.h>

#include "hgfleet/err.h"
#include "hgfleet/runtime.h"

/* hgf_sched_plan.next values besides an epoch time. */
#define HGF_SCHED_NO_TIMER (-1)      /* store NULL: manual, on_push */
#define HGF_SCHED_NEVER INT64_MAX    /* store 'infinity' */

typedef struct hgf_sched_plan {
    int fire;       /* queue a sync now */
    int64_t next;   /* the next_sync_at to store (epoch seconds), or one of the above */
} hgf_sched_plan;

/* What to do with a claimed connection: was_due is 0 when it had no
 * next_sync_at (a new or changed schedule: plan, do not fire). now is the
 * database's clock. A spec that does not parse is HGF_EINPUT with the plan
 * set to park the connection. */
int hgf_scheduler_plan(const char *spec, int64_t connection_id, int was_due, int64_t now,
                       hgf_sched_plan *out, hgf_err *err);

typedef struct hgf_scheduler hgf_scheduler;

/* Starts ticking (every second) on rt's loop. */
hgf_scheduler *hgf_scheduler_new(hgf_runtime *rt, hgf_err *err);
/* Stops claiming; a batch in flight still gets its next fire times written. */
void hgf_scheduler_stop(hgf_scheduler *s);
/* 1 while a claimed batch is not yet written back (wait for it on shutdown). */
int hgf_scheduler_busy(const hgf_scheduler *s);
void hgf_scheduler_free(hgf_scheduler *s);

#endif
