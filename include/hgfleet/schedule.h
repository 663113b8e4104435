/* Connection schedules and durations.
 *
 * A schedule spec is one of (see DESIGN.md "CLI contract"):
 *   manual | on_push | every:<duration> | daily[@HH:MM] | weekly[@<day>[ HH:MM]]
 *   | cron:<5 fields or @macro> | on_push+<one of the timed forms>
 * Cron macros: @hourly @daily @midnight @weekly @monthly @yearly @annually.
 * All times are UTC; there is no DST anywhere.
 *
 * Ownership: hgf_schedule is a plain value with no pointers inside; the
 * caller owns it and nothing needs freeing. Text results go into
 * caller-provided arrays. No function keeps state between calls. */
#ifndef HGF_SCHEDULE_H
#define HGF_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>

#include "hgfleet/err.h"

enum hgf_sched_kind {
    HGF_SCHED_NONE = 0, /* manual, or on_push alone: no timer */
    HGF_SCHED_EVERY,
    HGF_SCHED_DAILY,
    HGF_SCHED_WEEKLY,
    HGF_SCHED_CRON,
};

/* Longest spec hgf_schedule_parse accepts. */
#define HGF_SCHEDULE_SPEC_MAX 256
/* A buffer this large always holds hgf_schedule_format's output. */
#define HGF_SCHEDULE_TEXT_MAX 512
/* Longest duration hgf_duration_parse accepts: 36500d (about 100 years). */
#define HGF_DURATION_MAX_SECONDS ((int64_t)36500 * 86400)

/* A parsed Vixie cron expression as bit sets. */
typedef struct hgf_cron {
    uint64_t minutes; /* bit n: minute n, 0-59 */
    uint32_t hours;   /* bit n: hour n, 0-23 */
    uint32_t mdays;   /* bit n: day of month n, 1-31 */
    uint16_t months;  /* bit n: month n, 1-12 */
    uint8_t wdays;    /* bit n: weekday n, 0 = Sunday .. 6 (7 folded onto 0) */
    /* Field began with '*': decides the day-of-month / day-of-week OR rule. */
    uint8_t dom_star;
    uint8_t dow_star;
    /* No date can ever match (e.g. "0 0 31 2 *"); hgf_schedule_next returns -1. */
    uint8_t never;
} hgf_cron;

typedef struct hgf_schedule {
    int on_push;           /* push events trigger a sync */
    int kind;              /* enum hgf_sched_kind: the timed part */
    int64_t every_seconds; /* EVERY */
    int hour, minute;      /* DAILY, WEEKLY */
    int wday;              /* WEEKLY: 0 = Sunday .. 6 */
    hgf_cron cron;         /* CRON */
} hgf_schedule;

/* Parses a spec (surrounding whitespace ignored; keywords and names are
 * case-insensitive, duration units are not since "M" could mean month).
 * Returns 0, or HGF_EINPUT with a message naming the bad part, e.g.
 * `schedule "daily@25:00": hour 25 is out of range 0-23`. *out is zeroed
 * first and only meaningful on success. */
int hgf_schedule_parse(const char *spec, hgf_schedule *out, hgf_err *err);

/* The next fire time strictly after `after` (epoch seconds), or -1 when the
 * schedule has no timer (manual, on_push) or can never fire.
 * every:<d> fires on the grid of whole multiples of d since the epoch, so
 * every replica computes the same instants; jitter spreads connections. */
int64_t hgf_schedule_next(const hgf_schedule *s, int64_t after);

/* The nominal interval in seconds: every -> its duration, daily -> 86400,
 * weekly -> 604800, cron -> the gap between its next two fires after `now`;
 * 0 when there is no timer or the cron never fires. */
int64_t hgf_schedule_interval(const hgf_schedule *s, int64_t now);

/* A deterministic per-connection offset in [0, min(interval / 10, 300)]
 * seconds, derived from `seed` (the connection id) so that many connections
 * on one schedule spread out while each keeps the same offset. */
int64_t hgf_schedule_jitter(const hgf_schedule *s, uint64_t seed, int64_t now);

/* What the scheduler stores as next_sync_at: the next jittered fire strictly
 * after `after`, i.e. next(after - j) + j with j = the connection's jitter.
 * Running it again from its own result yields the following fire, never the
 * same one. -1 when there is no timer. */
int64_t hgf_schedule_next_jittered(const hgf_schedule *s, uint64_t seed, int64_t after);

/* Writes the canonical spec (e.g. "on_push+every:1h30m", "daily@02:00",
 * "weekly@mon 00:00", "cron:0 9-17/2 * * 1-5"); parsing it gives back an
 * equal schedule. Returns 0, or HGF_EFAIL when n is too small (out is then
 * truncated but NUL-terminated). */
int hgf_schedule_format(const hgf_schedule *s, char *out, size_t n);

/* Parses a duration such as "90s", "6h", "1h30m", "1d12h" (units d, h, m, s,
 * largest first, each at most once; at least 1s, at most 36500d). `field`
 * names the flag or variable in the message, e.g.
 * `HGFLEET_RESCAN_AFTER "7x": unknown unit "x" in duration (use s, m, h, d)`. */
int hgf_duration_parse(const char *text, const char *field, int64_t *seconds, hgf_err *err);

/* Writes the canonical duration ("1d12h", "1m30s") into out. Returns 0, or
 * HGF_EFAIL when seconds < 1 or n is too small. 32 bytes always suffice. */
int hgf_duration_format(int64_t seconds, char *out, size_t n);

#endif
