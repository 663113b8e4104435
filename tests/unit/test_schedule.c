/* Unit tests for schedule specs, durations, next fire times and jitter.
 * Expected instants come from libc's timegm/gmtime_r, independent of the
 * calendar arithmetic inside schedule.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "hgfleet/schedule.h"

/* ---- helpers ----------------------------------------------------------- */

static int64_t ts(int y, int mon, int d, int h, int mi)
{
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    return (int64_t)timegm(&tm);
}

static hgf_schedule must_parse(const char *spec)
{
    hgf_schedule s;
    hgf_err err;
    hgf_err_clear(&err);
    int rc = hgf_schedule_parse(spec, &s, &err);
    if (rc != 0)
        print_error("parse(\"%s\") failed: %s\n", spec, err.msg);
    assert_int_equal(rc, 0);
    return s;
}

static void expect_error(const char *spec, const char *phrase)
{
    hgf_schedule s;
    hgf_err err;
    hgf_err_clear(&err);
    int rc = hgf_schedule_parse(spec, &s, &err);
    if (rc != HGF_EINPUT || !strstr(err.msg, phrase))
        print_error("spec \"%s\": rc %d, msg \"%s\", wanted \"%s\"\n", spec, rc, err.msg, phrase);
    assert_int_equal(rc, HGF_EINPUT);
    assert_int_equal(err.code, HGF_EINPUT);
    assert_non_null(strstr(err.msg, phrase));
    char prefix[400];
    snprintf(prefix, sizeof prefix, "schedule \"%s\": ", spec);
    assert_memory_equal(err.msg, prefix, strlen(prefix));
}

static void expect_format(const char *spec, const char *canonical)
{
    hgf_schedule s = must_parse(spec);
    char out[HGF_SCHEDULE_TEXT_MAX];
    assert_int_equal(hgf_schedule_format(&s, out, sizeof out), 0);
    assert_string_equal(out, canonical);
}

static void assert_same_schedule(const hgf_schedule *a, const hgf_schedule *b)
{
    assert_int_equal(a->on_push, b->on_push);
    assert_int_equal(a->kind, b->kind);
    assert_int_equal(a->every_seconds, b->every_seconds);
    assert_int_equal(a->hour, b->hour);
    assert_int_equal(a->minute, b->minute);
    assert_int_equal(a->wday, b->wday);
    assert_int_equal(a->cron.minutes, b->cron.minutes);
    assert_int_equal(a->cron.hours, b->cron.hours);
    assert_int_equal(a->cron.mdays, b->cron.mdays);
    assert_int_equal(a->cron.months, b->cron.months);
    assert_int_equal(a->cron.wdays, b->cron.wdays);
    assert_int_equal(a->cron.dom_star, b->cron.dom_star);
    assert_int_equal(a->cron.dow_star, b->cron.dow_star);
    assert_int_equal(a->cron.never, b->cron.never);
}

static void expect_next(const char *spec, int64_t after, int64_t want)
{
    hgf_schedule s = must_parse(spec);
    int64_t got = hgf_schedule_next(&s, after);
    if (got != want) {
        char a[32], g[32], w[32];
        time_t ta = (time_t)after, tg = (time_t)got, tw = (time_t)want;
        strftime(a, sizeof a, "%F %T %a", gmtime(&ta));
        strftime(g, sizeof g, "%F %T %a", gmtime(&tg));
        strftime(w, sizeof w, "%F %T %a", gmtime(&tw));
        print_error("%s after %s: got %s, want %s\n", spec, a, g, w);
    }
    assert_int_equal(got, want);
}

/* A slow, obviously-correct oracle: scan minute by minute with gmtime_r. */
static int oracle_matches(const hgf_cron *c, time_t t)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    if (!(c->minutes >> tm.tm_min & 1) || !(c->hours >> tm.tm_hour & 1) ||
        !(c->months >> (tm.tm_mon + 1) & 1))
        return 0;
    int dom = c->mdays >> tm.tm_mday & 1, dow = c->wdays >> tm.tm_wday & 1;
    if (c->dom_star || c->dow_star)
        return dom && dow;
    return dom || dow;
}

static int64_t oracle_next(const hgf_cron *c, int64_t after, int64_t horizon)
{
    for (int64_t t = after - after % 60 + 60; t <= after + horizon; t += 60)
        if (oracle_matches(c, (time_t)t))
            return t;
    return -1;
}

/* ---- parse and canonical form ----------------------------------------- */

static void test_parse_simple_forms(void **state)
{
    (void)state;
    hgf_schedule s = must_parse("manual");
    assert_int_equal(s.kind, HGF_SCHED_NONE);
    assert_int_equal(s.on_push, 0);
    s = must_parse("on_push");
    assert_int_equal(s.kind, HGF_SCHED_NONE);
    assert_int_equal(s.on_push, 1);
    s = must_parse("every:6h");
    assert_int_equal(s.kind, HGF_SCHED_EVERY);
    assert_int_equal(s.every_seconds, 6 * 3600);
    s = must_parse("daily");
    assert_int_equal(s.kind, HGF_SCHED_DAILY);
    assert_int_equal(s.hour, 0);
    assert_int_equal(s.minute, 0);
    s = must_parse("daily@02:30");
    assert_int_equal(s.hour, 2);
    assert_int_equal(s.minute, 30);
    s = must_parse("weekly");
    assert_int_equal(s.kind, HGF_SCHED_WEEKLY);
    assert_int_equal(s.wday, 1);
    assert_int_equal(s.hour, 0);
    s = must_parse("weekly@mon");
    assert_int_equal(s.wday, 1);
    assert_int_equal(s.hour, 0);
    s = must_parse("weekly@SUNDAY 23:59");
    assert_int_equal(s.wday, 0);
    assert_int_equal(s.hour, 23);
    assert_int_equal(s.minute, 59);
    s = must_parse("weekly@Fri 03:00");
    assert_int_equal(s.wday, 5);
    assert_int_equal(s.hour, 3);
    s = must_parse("  on_push+daily@02:00  ");
    assert_int_equal(s.on_push, 1);
    assert_int_equal(s.kind, HGF_SCHED_DAILY);
    assert_int_equal(s.hour, 2);
}

static void test_parse_durations(void **state)
{
    (void)state;
    struct {
        const char *text;
        int64_t seconds;
    } cases[] = {{"1s", 1},          {"90s", 90},          {"6h", 21600},
                 {"1h30m", 5400},    {"1d12h", 129600},    {"7d", 604800},
                 {"1d2h3m4s", 93784}, {"36500d", HGF_DURATION_MAX_SECONDS}, {"0h1s", 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t v = -1;
        hgf_err err;
        hgf_err_clear(&err);
        assert_int_equal(hgf_duration_parse(cases[i].text, "HGFLEET_RESCAN_AFTER", &v, &err), 0);
        assert_int_equal(v, cases[i].seconds);
    }
}

static void test_duration_errors(void **state)
{
    (void)state;
    struct {
        const char *text, *phrase;
    } cases[] = {
        {"0s", "at least 1s"},
        {"0", "has no unit"},
        {"5", "number \"5\" has no unit in duration (use s, m, h, d)"},
        {"1h30", "number \"30\" has no unit"},
        {"5x", "unknown unit \"x\" in duration (use s, m, h, d)"},
        {"5min", "unknown unit \"min\""},
        {"5M", "unknown unit \"M\""},
        {"-5m", "must be positive"},
        {"", "duration is empty"},
        {"h", "expected a number"},
        {"1h 30m", "expected a number"},
        {"30m1h", "out of order"},
        {"1h1h", "repeated"},
        {"36501d", "too large"},
        {"99999999999999999999999s", "too large"},
        {"36500d1s", "too large"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t v = 0;
        hgf_err err;
        hgf_err_clear(&err);
        int rc = hgf_duration_parse(cases[i].text, "HGFLEET_RESCAN_AFTER", &v, &err);
        if (rc != HGF_EINPUT || !strstr(err.msg, cases[i].phrase))
            print_error("\"%s\": rc %d msg \"%s\"\n", cases[i].text, rc, err.msg);
        assert_int_equal(rc, HGF_EINPUT);
        assert_non_null(strstr(err.msg, cases[i].phrase));
        char prefix[128];
        snprintf(prefix, sizeof prefix, "HGFLEET_RESCAN_AFTER \"%s\": ", cases[i].text);
        assert_memory_equal(err.msg, prefix, strlen(prefix));
    }
}

static void test_duration_format(void **state)
{
    (void)state;
    char out[32];
    struct {
        int64_t s;
        const char *text;
    } cases[] = {{1, "1s"},        {90, "1m30s"},   {5400, "1h30m"}, {86400, "1d"},
                 {129600, "1d12h"}, {93784, "1d2h3m4s"}, {3600, "1h"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(hgf_duration_format(cases[i].s, out, sizeof out), 0);
        assert_string_equal(out, cases[i].text);
    }
    assert_int_equal(hgf_duration_format(0, out, sizeof out), HGF_EFAIL);
    assert_int_equal(hgf_duration_format(93784, out, 4), HGF_EFAIL);
}

static void test_canonical_format(void **state)
{
    (void)state;
    expect_format("manual", "manual");
    expect_format("ON_PUSH", "on_push");
    expect_format("every:90s", "every:1m30s");
    expect_format("every:90m", "every:1h30m");
    expect_format("every:24h", "every:1d");
    expect_format("daily", "daily@00:00");
    expect_format("daily@2:05", "daily@02:05");
    expect_format("weekly", "weekly@mon 00:00");
    expect_format("weekly@mon", "weekly@mon 00:00");
    expect_format("weekly@Saturday 3:00", "weekly@sat 03:00");
    expect_format("on_push+every:6h", "on_push+every:6h");
    expect_format("on_push+daily@02:00", "on_push+daily@02:00");
    expect_format("on_push+cron:0 */4 * * *", "on_push+cron:0 */4 * * *");
    expect_format("cron:*/15 * * * *", "cron:*/15 * * * *");
    expect_format("cron:0,15,30,45 * * * *", "cron:*/15 * * * *");
    expect_format("cron:0 9-17/2 * * 1-5", "cron:0 9-17/2 * * 1-5");
    expect_format("cron:0 9,11,13,15,17 * * mon-fri", "cron:0 9-17/2 * * 1-5");
    expect_format("cron:30 2 1 * *", "cron:30 2 1 * *");
    expect_format("cron:0 12 * jan,jul mon", "cron:0 12 * 1,7 1");
    expect_format("cron:0 0 * * 7", "cron:0 0 * * 0");
    expect_format("cron:0 0 * * 5-7", "cron:0 0 * * 0,5,6");
    expect_format("cron:0 0 * * 1-7", "cron:0 0 * * 0-6");
    expect_format("cron:0 0 1-31 * *", "cron:0 0 1-31 * *");
    expect_format("cron:0 0 */2 * *", "cron:0 0 */2 * *");
    expect_format("cron:5/20 * * * *", "cron:5-45/20 * * * *");
    expect_format("cron:0-59 0-23 * 1-12 *", "cron:* * * * *");
    expect_format("cron:1,2,5,6,7,9 * * * *", "cron:1,2,5-7,9 * * * *");
    expect_format("cron:@hourly", "cron:0 * * * *");
    expect_format("cron:@daily", "cron:0 0 * * *");
    expect_format("cron:@weekly", "cron:0 0 * * 0");
    expect_format("cron:@monthly", "cron:0 0 1 * *");
    expect_format("cron:@yearly", "cron:0 0 1 1 *");
    expect_format("cron:@annually", "cron:0 0 1 1 *");
    expect_format("CRON:  0   0  *  *  *  ", "cron:0 0 * * *");
}

static void test_canonical_round_trip(void **state)
{
    (void)state;
    const char *specs[] = {
        "manual", "on_push", "every:1s", "every:1d12h", "on_push+weekly@thu 13:37",
        "cron:*/7 * * * *", "cron:0 0 */31 * *", "cron:0 0 * * */7", "cron:0 0 * * */2",
        "cron:0 0 13 * fri", "cron:0 0 */5 * 1,3", "cron:1-4,6,8-9 2-23/3 1,15 2-11/3 sun-sat",
        "cron:0 0 31 2 *", "cron:59 23 31 12 *", "cron:0,1 0,23 1,31 1,12 0,6",
        "cron:3-59/7 */5 2-30/4 */4 */3",
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        hgf_schedule a = must_parse(specs[i]);
        char text[HGF_SCHEDULE_TEXT_MAX];
        assert_int_equal(hgf_schedule_format(&a, text, sizeof text), 0);
        hgf_schedule b = must_parse(text);
        assert_same_schedule(&a, &b);
        char again[HGF_SCHEDULE_TEXT_MAX];
        assert_int_equal(hgf_schedule_format(&b, again, sizeof again), 0);
        assert_string_equal(text, again);
    }
}

static void test_format_small_buffer(void **state)
{
    (void)state;
    hgf_schedule s = must_parse("on_push+cron:0 9-17/2 * * 1-5");
    char out[10];
    assert_int_equal(hgf_schedule_format(&s, out, sizeof out), HGF_EFAIL);
    assert_int_equal(strlen(out), sizeof out - 1);
}

static void test_cron_masks(void **state)
{
    (void)state;
    hgf_schedule s = must_parse("cron:*/15 9-17/2 1,15 jan-mar mon-fri");
    assert_int_equal(s.kind, HGF_SCHED_CRON);
    assert_int_equal(s.cron.minutes, (1ULL << 0) | (1ULL << 15) | (1ULL << 30) | (1ULL << 45));
    assert_int_equal(s.cron.hours, (1u << 9) | (1u << 11) | (1u << 13) | (1u << 15) | (1u << 17));
    assert_int_equal(s.cron.mdays, (1u << 1) | (1u << 15));
    assert_int_equal(s.cron.months, (1u << 1) | (1u << 2) | (1u << 3));
    assert_int_equal(s.cron.wdays, 0x3e);
    assert_int_equal(s.cron.dom_star, 0);
    assert_int_equal(s.cron.dow_star, 0);
    s = must_parse("cron:5/20 * */10 * 0,7");
    assert_int_equal(s.cron.minutes, (1ULL << 5) | (1ULL << 25) | (1ULL << 45));
    assert_int_equal(s.cron.hours, 0xffffffu);
    assert_int_equal(s.cron.mdays, (1u << 1) | (1u << 11) | (1u << 21) | (1u << 31));
    assert_int_equal(s.cron.months, 0x1ffeu);
    assert_int_equal(s.cron.wdays, 1);
    assert_int_equal(s.cron.dom_star, 1);
    assert_int_equal(s.cron.dow_star, 0);
    s = must_parse("cron:0 0 * * *");
    assert_int_equal(s.cron.minutes, 1);
    assert_int_equal(s.cron.mdays, 0xfffffffeu);
    assert_int_equal(s.cron.wdays, 0x7f);
    assert_int_equal(s.cron.never, 0);
    s = must_parse("cron:0 0 31 2 *");
    assert_int_equal(s.cron.never, 1);
    s = must_parse("cron:0 0 30,31 2 *");
    assert_int_equal(s.cron.never, 1);
    s = must_parse("cron:0 0 31 4,6,9,11 *");
    assert_int_equal(s.cron.never, 1);
    s = must_parse("cron:0 0 31 2 mon"); /* OR rule: Mondays in February */
    assert_int_equal(s.cron.never, 0);
    s = must_parse("cron:0 0 29 2 *");
    assert_int_equal(s.cron.never, 0);
}

static void test_schedule_errors(void **state)
{
    (void)state;
    expect_error("foo", "expected manual, on_push, every:<duration>, daily[@HH:MM], "
                        "weekly[@day HH:MM], cron:<5 fields> or on_push+<time spec>");
    expect_error("", "expected manual, on_push");
    expect_error("every 6h", "expected manual, on_push");
    expect_error("cron:61 * * * *", "minute field \"61\" is out of range 0-59");
    expect_error("cron:1,61 * * * *", "minute field \"1,61\": 61 is out of range 0-59");
    expect_error("cron:0 24 * * *", "hour field \"24\" is out of range 0-23");
    expect_error("cron:0 0 0 * *", "day-of-month field \"0\" is out of range 1-31");
    expect_error("cron:0 0 32 * *", "day-of-month field \"32\" is out of range 1-31");
    expect_error("cron:0 0 * 13 *", "month field \"13\" is out of range 1-12");
    expect_error("cron:0 0 * * 8", "day-of-week field \"8\" is out of range 0-7");
    expect_error("cron:0 0 * foo *", "month field \"foo\": unknown month \"foo\" (use jan..dec");
    expect_error("cron:0 0 * * fun", "day-of-week field \"fun\": unknown day \"fun\" (use sun..sat");
    expect_error("cron:0 0 * * monday", "unknown day \"monday\"");
    expect_error("cron:x * * * *", "minute field \"x\": \"x\" is not a number");
    expect_error("cron:*/0 * * * *", "minute field \"*/0\": step 0 is out of range 1-60");
    expect_error("cron:*/61 * * * *", "step 61 is out of range 1-60");
    expect_error("cron:*/x * * * *", "step \"x\" is not a number");
    expect_error("cron:0 17-9 * * *", "hour field \"17-9\": range 17-9 is reversed");
    expect_error("cron:0 0 * * fri-sun", "range fri-sun is reversed");
    expect_error("cron:1,,2 * * * *", "minute field \"1,,2\": empty list item");
    expect_error("cron:1, * * * *", "empty list item");
    expect_error("cron:1- * * * *", "a value is missing");
    expect_error("cron:*,5 * * * *", "'*' must stand alone");
    expect_error("cron:* * * *", "expected 5 cron fields (minute hour day-of-month month "
                                 "day-of-week), got 4");
    expect_error("cron:* * * * * *", "got 6");
    expect_error("cron:", "got 0");
    expect_error("cron:@reboot", "unknown cron macro \"@reboot\"");
    expect_error("every:5x", "unknown unit \"x\" in duration (use s, m, h, d)");
    expect_error("every:0s", "at least 1s");
    expect_error("every:-5m", "must be positive");
    expect_error("every:5", "has no unit");
    expect_error("every:", "duration is empty");
    expect_error("every:99999999999999999999d", "too large");
    expect_error("daily@25:00", "hour 25 is out of range 0-23");
    expect_error("daily@12:60", "minute 60 is out of range 0-59");
    expect_error("daily@noon", "expected HH:MM, got \"noon\"");
    expect_error("daily@", "expected HH:MM");
    expect_error("daily@1200", "expected HH:MM");
    expect_error("daily@12:5", "expected HH:MM");
    expect_error("daily 02:00", "expected daily or daily@HH:MM");
    expect_error("weekly@funday", "unknown day \"funday\" (use mon..sun)");
    expect_error("weekly@03:00", "missing day before the time");
    expect_error("weekly@", "missing day after");
    expect_error("weekly@mon 24:00", "hour 24 is out of range 0-23");
    expect_error("weekly@mon,03:00", "expected a space and HH:MM");
    expect_error("weekly mon", "expected weekly or weekly@<day> HH:MM");
    expect_error("on_push+manual", "\"manual\" cannot follow on_push+");
    expect_error("on_push+on_push", "\"on_push\" cannot follow on_push+");
    expect_error("on_push+", "missing time spec after \"on_push+\"");
    expect_error("on_push+bogus", "expected manual, on_push");
    expect_error("on_push+every:5x", "unknown unit \"x\"");
    expect_error("manual+on_push", "expected manual, on_push");
}

static void test_parse_error_clears_output(void **state)
{
    (void)state;
    hgf_schedule s = must_parse("every:6h");
    hgf_err err;
    assert_int_equal(hgf_schedule_parse("on_push+every:5x", &s, &err), HGF_EINPUT);
    assert_int_equal(s.kind, HGF_SCHED_NONE);
    assert_int_equal(s.on_push, 0);
    assert_int_equal(s.every_seconds, 0);
    assert_int_equal(hgf_schedule_parse("bogus", &s, NULL), HGF_EINPUT);
    char long_spec[HGF_SCHEDULE_SPEC_MAX + 10];
    memset(long_spec, '1', sizeof long_spec - 1);
    long_spec[sizeof long_spec - 1] = '\0';
    memcpy(long_spec, "every:", 6);
    assert_int_equal(hgf_schedule_parse(long_spec, &s, &err), HGF_EINPUT);
    assert_non_null(strstr(err.msg, "too long"));
}

/* ---- next: every, daily, weekly, none ---------------------------------- */

static void test_next_none(void **state)
{
    (void)state;
    int64_t now = ts(2026, 3, 10, 12, 0);
    hgf_schedule s = must_parse("manual");
    assert_int_equal(hgf_schedule_next(&s, now), -1);
    s = must_parse("on_push");
    assert_int_equal(hgf_schedule_next(&s, now), -1);
    assert_int_equal(hgf_schedule_interval(&s, now), 0);
    assert_int_equal(hgf_schedule_jitter(&s, 42, now), 0);
    assert_int_equal(hgf_schedule_next_jittered(&s, 42, now), -1);
}

static void test_next_every(void **state)
{
    (void)state;
    int64_t base = ts(2026, 3, 10, 12, 0);
    expect_next("every:6h", base, ts(2026, 3, 10, 18, 0));
    expect_next("every:6h", base - 1, base);
    expect_next("every:6h", base + 1, ts(2026, 3, 10, 18, 0));
    expect_next("every:6h", ts(2026, 3, 10, 23, 59), ts(2026, 3, 11, 0, 0));
    expect_next("every:90s", base + 10, base + 90);
    expect_next("every:1s", base, base + 1);
    expect_next("on_push+every:1h30m", base + 60, ts(2026, 3, 10, 13, 30));
    hgf_schedule s = must_parse("every:7d");
    int64_t t = base;
    for (int i = 0; i < 5; i++) {
        int64_t n = hgf_schedule_next(&s, t);
        assert_true(n > t);
        assert_int_equal(n % (7 * 86400), 0);
        if (i)
            assert_int_equal(n - t, 7 * 86400);
        t = n;
    }
}

static void test_next_daily(void **state)
{
    (void)state;
    expect_next("daily@02:00", ts(2026, 3, 10, 1, 59), ts(2026, 3, 10, 2, 0));
    expect_next("daily@02:00", ts(2026, 3, 10, 2, 0), ts(2026, 3, 11, 2, 0));
    expect_next("daily@02:00", ts(2026, 3, 10, 2, 0) - 1, ts(2026, 3, 10, 2, 0));
    expect_next("daily@02:00", ts(2026, 3, 10, 14, 0), ts(2026, 3, 11, 2, 0));
    expect_next("daily", ts(2026, 12, 31, 23, 59), ts(2027, 1, 1, 0, 0));
    expect_next("daily@23:59", ts(2028, 2, 28, 23, 59), ts(2028, 2, 29, 23, 59));
}

static void test_next_weekly(void **state)
{
    (void)state;
    /* 2026-03-09 is a Monday. */
    expect_next("weekly", ts(2026, 3, 9, 0, 0) - 1, ts(2026, 3, 9, 0, 0));
    expect_next("weekly", ts(2026, 3, 9, 0, 0), ts(2026, 3, 16, 0, 0));
    expect_next("weekly@mon 03:00", ts(2026, 3, 9, 2, 0), ts(2026, 3, 9, 3, 0));
    expect_next("weekly@mon 03:00", ts(2026, 3, 9, 3, 0), ts(2026, 3, 16, 3, 0));
    expect_next("weekly@mon 03:00", ts(2026, 3, 12, 8, 0), ts(2026, 3, 16, 3, 0));
    expect_next("weekly@sun 23:30", ts(2026, 3, 9, 0, 0), ts(2026, 3, 15, 23, 30));
    expect_next("weekly@sat 10:00", ts(2026, 3, 14, 10, 1), ts(2026, 3, 21, 10, 0));
    /* week wrap across a year end: 2026-12-31 is a Thursday */
    expect_next("weekly@tue", ts(2026, 12, 31, 12, 0), ts(2027, 1, 5, 0, 0));
    expect_next("weekly@thursday 11:00", ts(2026, 12, 31, 12, 0), ts(2027, 1, 7, 11, 0));
}

/* ---- next: cron -------------------------------------------------------- */

static void test_cron_quarter_hours(void **state)
{
    (void)state;
    expect_next("cron:*/15 * * * *", ts(2026, 3, 10, 12, 0), ts(2026, 3, 10, 12, 15));
    expect_next("cron:*/15 * * * *", ts(2026, 3, 10, 12, 0) - 1, ts(2026, 3, 10, 12, 0));
    expect_next("cron:*/15 * * * *", ts(2026, 3, 10, 12, 7) + 30, ts(2026, 3, 10, 12, 15));
    expect_next("cron:*/15 * * * *", ts(2026, 3, 10, 23, 50), ts(2026, 3, 11, 0, 0));
}

static void test_cron_business_hours(void **state)
{
    (void)state;
    const char *spec = "cron:0 9-17/2 * * 1-5";
    /* 2026-03-13 is a Friday */
    expect_next(spec, ts(2026, 3, 13, 8, 0), ts(2026, 3, 13, 9, 0));
    expect_next(spec, ts(2026, 3, 13, 9, 0), ts(2026, 3, 13, 11, 0));
    expect_next(spec, ts(2026, 3, 13, 10, 0), ts(2026, 3, 13, 11, 0));
    expect_next(spec, ts(2026, 3, 13, 17, 0), ts(2026, 3, 16, 9, 0));
    expect_next(spec, ts(2026, 3, 14, 12, 0), ts(2026, 3, 16, 9, 0));
}

static void test_cron_monthly(void **state)
{
    (void)state;
    expect_next("cron:30 2 1 * *", ts(2026, 3, 10, 0, 0), ts(2026, 4, 1, 2, 30));
    expect_next("cron:30 2 1 * *", ts(2026, 4, 1, 2, 29), ts(2026, 4, 1, 2, 30));
    expect_next("cron:30 2 1 * *", ts(2026, 4, 1, 2, 30), ts(2026, 5, 1, 2, 30));
    expect_next("cron:30 2 1 * *", ts(2026, 12, 5, 0, 0), ts(2027, 1, 1, 2, 30));
}

static void test_cron_dom_dow_or(void **state)
{
    (void)state;
    /* 2026-03-13 is a Friday the 13th; 2026-02-13 a Friday; 2026-04-13 a Monday */
    const char *both = "cron:0 0 13 * fri";
    expect_next(both, ts(2026, 3, 10, 0, 0), ts(2026, 3, 13, 0, 0));
    expect_next(both, ts(2026, 3, 13, 0, 0), ts(2026, 3, 20, 0, 0));
    expect_next(both, ts(2026, 4, 10, 0, 0), ts(2026, 4, 13, 0, 0)); /* Monday the 13th */
    expect_next(both, ts(2026, 4, 13, 0, 0), ts(2026, 4, 17, 0, 0)); /* the next Friday */
    const char *fridays = "cron:0 0 * * fri";
    expect_next(fridays, ts(2026, 4, 10, 0, 0), ts(2026, 4, 17, 0, 0));
    expect_next(fridays, ts(2026, 4, 11, 0, 0), ts(2026, 4, 17, 0, 0));
    const char *thirteenths = "cron:0 0 13 * *";
    expect_next(thirteenths, ts(2026, 3, 13, 0, 0), ts(2026, 4, 13, 0, 0));
    expect_next(thirteenths, ts(2026, 4, 13, 0, 0), ts(2026, 5, 13, 0, 0));
    /* a '*'-led day-of-month (even with a step) makes it an AND */
    const char *and_rule = "cron:0 0 */2 * 1";
    expect_next(and_rule, ts(2026, 3, 1, 0, 0), ts(2026, 3, 9, 0, 0)); /* Mon the 9th */
    expect_next(and_rule, ts(2026, 3, 9, 0, 0), ts(2026, 3, 23, 0, 0));
}

static void test_cron_sunday_and_names(void **state)
{
    (void)state;
    /* 2026-03-15 is a Sunday */
    expect_next("cron:0 0 * * 7", ts(2026, 3, 10, 0, 0), ts(2026, 3, 15, 0, 0));
    expect_next("cron:0 0 * * 0", ts(2026, 3, 10, 0, 0), ts(2026, 3, 15, 0, 0));
    expect_next("cron:0 0 * * SUN", ts(2026, 3, 10, 0, 0), ts(2026, 3, 15, 0, 0));
    hgf_schedule a = must_parse("cron:0 0 * * 7"), b = must_parse("cron:0 0 * * sun");
    assert_same_schedule(&a, &b);
    /* first Monday noon in January or July: 2026-07-06, then 2027-01-04 */
    const char *spec = "cron:0 12 * jan,jul mon";
    expect_next(spec, ts(2026, 3, 1, 0, 0), ts(2026, 7, 6, 12, 0));
    expect_next(spec, ts(2026, 7, 27, 12, 0), ts(2027, 1, 4, 12, 0));
    expect_next("cron:0 0 1 Jan-Mar/2 *", ts(2026, 1, 1, 0, 0), ts(2026, 3, 1, 0, 0));
}

static void test_cron_steps(void **state)
{
    (void)state;
    const char *spec = "cron:5/20 * * * *";
    expect_next(spec, ts(2026, 3, 10, 12, 0), ts(2026, 3, 10, 12, 5));
    expect_next(spec, ts(2026, 3, 10, 12, 5), ts(2026, 3, 10, 12, 25));
    expect_next(spec, ts(2026, 3, 10, 12, 45), ts(2026, 3, 10, 13, 5));
    expect_next("cron:10-30/10 1-5/2 * * *", ts(2026, 3, 10, 1, 30), ts(2026, 3, 10, 3, 10));
    expect_next("cron:10-30/10 1-5/2 * * *", ts(2026, 3, 10, 5, 30), ts(2026, 3, 11, 1, 10));
}

static void test_cron_leap_day(void **state)
{
    (void)state;
    expect_next("cron:0 0 29 2 *", ts(2026, 1, 1, 0, 0), ts(2028, 2, 29, 0, 0));
    expect_next("cron:0 0 29 2 *", ts(2028, 2, 29, 0, 0), ts(2032, 2, 29, 0, 0));
    /* 2100 is not a leap year */
    expect_next("cron:0 0 29 2 *", ts(2097, 1, 1, 0, 0), ts(2104, 2, 29, 0, 0));
    expect_next("cron:0 0 28 2 *", ts(2028, 2, 28, 0, 0), ts(2029, 2, 28, 0, 0));
}

static void test_cron_month_ends(void **state)
{
    (void)state;
    const char *spec = "cron:0 0 31 * *";
    expect_next(spec, ts(2026, 1, 31, 0, 0), ts(2026, 3, 31, 0, 0)); /* skips February */
    expect_next(spec, ts(2026, 3, 31, 0, 0), ts(2026, 5, 31, 0, 0)); /* skips April */
    expect_next(spec, ts(2026, 7, 31, 0, 0), ts(2026, 8, 31, 0, 0));
    expect_next(spec, ts(2026, 8, 31, 0, 0), ts(2026, 10, 31, 0, 0)); /* skips September */
    expect_next("cron:59 23 * * *", ts(2026, 2, 28, 23, 58), ts(2026, 2, 28, 23, 59));
    expect_next("cron:0 0 * * *", ts(2026, 2, 28, 23, 59), ts(2026, 3, 1, 0, 0));
}

static void test_cron_year_wrap(void **state)
{
    (void)state;
    expect_next("cron:* * * * *", ts(2026, 12, 31, 23, 59), ts(2027, 1, 1, 0, 0));
    expect_next("cron:59 23 31 12 *", ts(2026, 12, 31, 23, 59), ts(2027, 12, 31, 23, 59));
    expect_next("cron:0 0 1 1 *", ts(2026, 12, 31, 23, 59) + 59, ts(2027, 1, 1, 0, 0));
}

static void test_cron_impossible(void **state)
{
    (void)state;
    int64_t now = ts(2026, 3, 10, 0, 0);
    hgf_schedule s = must_parse("cron:0 0 31 2 *");
    assert_int_equal(hgf_schedule_next(&s, now), -1);
    assert_int_equal(hgf_schedule_interval(&s, now), 0);
    assert_int_equal(hgf_schedule_jitter(&s, 7, now), 0);
    /* the search bound alone must also stop: clear the static flag */
    s.cron.never = 0;
    assert_int_equal(hgf_schedule_next(&s, now), -1);
    s = must_parse("cron:0 0 30 2 *");
    assert_int_equal(hgf_schedule_next(&s, now), -1);
}

static void test_cron_macros(void **state)
{
    (void)state;
    int64_t t = ts(2026, 3, 10, 12, 34);
    expect_next("cron:@hourly", t, ts(2026, 3, 10, 13, 0));
    expect_next("cron:@daily", t, ts(2026, 3, 11, 0, 0));
    expect_next("cron:@weekly", t, ts(2026, 3, 15, 0, 0));
    expect_next("cron:@monthly", t, ts(2026, 4, 1, 0, 0));
    expect_next("cron:@yearly", t, ts(2027, 1, 1, 0, 0));
    expect_next("cron:@ANNUALLY", t, ts(2027, 1, 1, 0, 0));
    expect_next("on_push+cron:0 */4 * * *", t, ts(2026, 3, 10, 16, 0));
}

/* The skipping search agrees with a minute-by-minute oracle. */
static void test_cron_matches_oracle(void **state)
{
    (void)state;
    const char *specs[] = {
        "cron:*/15 * * * *",       "cron:0 9-17/2 * * 1-5",  "cron:30 2 1 * *",
        "cron:0 0 13 * fri",       "cron:0 0 * * fri",       "cron:0 0 13 * *",
        "cron:0 12 * jan,jul mon", "cron:5/20 3 * * *",      "cron:0 0 31 * *",
        "cron:17 */5 */3 * 2",     "cron:0 0 1,15 * 3",      "cron:45 23 * * 0,6",
        "cron:0 0 */2 * 1",        "cron:1-4,6 2-23/3 1,15 2-11/3 sun-sat",
    };
    int64_t starts[] = {ts(2026, 1, 31, 23, 59), ts(2026, 2, 27, 13, 7) + 13,
                        ts(2027, 12, 30, 23, 0), ts(2028, 2, 28, 12, 0)};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        hgf_schedule s = must_parse(specs[i]);
        for (size_t j = 0; j < sizeof starts / sizeof starts[0]; j++) {
            int64_t t = starts[j];
            for (int k = 0; k < 3; k++) {
                int64_t want = oracle_next(&s.cron, t, 400LL * 86400);
                assert_true(want > 0);
                expect_next(specs[i], t, want);
                t = want;
            }
        }
    }
}

static void test_next_is_fast(void **state)
{
    (void)state;
    hgf_schedule s = must_parse("cron:0 0 29 2 1"); /* OR: Feb 29 or Mondays */
    hgf_schedule leap = must_parse("cron:59 23 29 2 *");
    clock_t c0 = clock();
    int64_t t = ts(2026, 1, 1, 0, 0);
    for (int i = 0; i < 2000; i++) {
        int64_t n = hgf_schedule_next(&leap, t + i * 86400LL);
        assert_true(n > t);
        assert_true(hgf_schedule_next(&s, t + i * 3600LL) > 0);
    }
    double secs = (double)(clock() - c0) / CLOCKS_PER_SEC;
    /* a minute-by-minute scan would need minutes here, not milliseconds */
    assert_true(secs < 2.0);
}

/* ---- interval and jitter ----------------------------------------------- */

static void test_interval(void **state)
{
    (void)state;
    int64_t now = ts(2026, 3, 13, 10, 0); /* Friday */
    struct {
        const char *spec;
        int64_t interval;
    } cases[] = {
        {"manual", 0},
        {"on_push", 0},
        {"every:6h", 21600},
        {"on_push+every:90s", 90},
        {"daily@02:00", 86400},
        {"weekly@mon 03:00", 604800},
        {"cron:*/15 * * * *", 900},
        {"cron:@hourly", 3600},
        {"cron:0 9-17/2 * * 1-5", 7200},        /* 11:00 -> 13:00 */
        {"cron:0 17 * * 1-5", 3 * 86400},       /* Fri 17:00 -> Mon 17:00 */
        {"cron:0 0 1 * *", 30 * 86400},         /* Apr 1 -> May 1 */
        {"cron:0 0 29 2 *", 4 * 365 * 86400 + 86400}, /* 2028 -> 2032 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hgf_schedule s = must_parse(cases[i].spec);
        assert_int_equal(hgf_schedule_interval(&s, now), cases[i].interval);
    }
}

static void test_jitter_bounds(void **state)
{
    (void)state;
    int64_t now = ts(2026, 3, 13, 10, 0);
    struct {
        const char *spec;
        int64_t max;
    } cases[] = {{"every:1h", 300},  {"every:10m", 60}, {"every:1m", 6},
                 {"every:9s", 0},    {"every:1s", 0},   {"daily", 300},
                 {"cron:*/15 * * * *", 90}, {"on_push", 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hgf_schedule s = must_parse(cases[i].spec);
        int64_t seen_max = 0;
        for (uint64_t seed = 0; seed < 2000; seed++) {
            int64_t j = hgf_schedule_jitter(&s, seed, now);
            assert_true(j >= 0);
            assert_true(j <= cases[i].max);
            assert_true(j * 10 <= hgf_schedule_interval(&s, now));
            assert_true(j <= 300);
            if (j > seen_max)
                seen_max = j;
        }
        /* the whole allowed window gets used, not just a corner of it */
        assert_true(seen_max * 10 >= cases[i].max * 9);
    }
}

static void test_jitter_deterministic_and_spread(void **state)
{
    (void)state;
    int64_t now = ts(2026, 3, 13, 10, 0);
    hgf_schedule s = must_parse("every:1h");
    hgf_schedule copy = must_parse("on_push+every:1h");
    int used[301] = {0};
    int distinct = 0;
    for (uint64_t seed = 1; seed <= 4000; seed++) {
        int64_t j = hgf_schedule_jitter(&s, seed, now);
        assert_int_equal(j, hgf_schedule_jitter(&s, seed, now + 12345));
        assert_int_equal(j, hgf_schedule_jitter(&copy, seed, now));
        assert_true(j >= 0 && j <= 300);
        if (!used[j]++)
            distinct++;
    }
    assert_true(distinct >= 200);
    /* no offset takes an outsized share of the fleet */
    for (int i = 0; i <= 300; i++)
        assert_true(used[i] < 60);
}

static void test_next_jittered(void **state)
{
    (void)state;
    hgf_schedule s = must_parse("every:1h");
    int64_t t = ts(2026, 3, 13, 10, 0);
    uint64_t seed = 99;
    int64_t j = hgf_schedule_jitter(&s, seed, t);
    int64_t first = hgf_schedule_next_jittered(&s, seed, t);
    assert_true(first > t);
    assert_int_equal((first - j) % 3600, 0);
    int64_t prev = first;
    for (int i = 0; i < 24; i++) {
        int64_t n = hgf_schedule_next_jittered(&s, seed, prev);
        assert_int_equal(n - prev, 3600);
        prev = n;
    }
    /* a scheduler that wakes late still lands on the next slot, not a double */
    assert_int_equal(hgf_schedule_next_jittered(&s, seed, first + 17), first + 3600);
    hgf_schedule daily = must_parse("daily@02:00");
    for (uint64_t k = 0; k < 50; k++) {
        int64_t n = hgf_schedule_next_jittered(&daily, k, t);
        int64_t base = ts(2026, 3, 14, 2, 0);
        assert_true(n >= base && n <= base + 300);
    }
}

static void test_out_of_range_times(void **state)
{
    (void)state;
    hgf_schedule s = must_parse("every:1h");
    assert_int_equal(hgf_schedule_next(&s, -5), -1);
    assert_int_equal(hgf_schedule_next(&s, INT64_MAX), -1);
    s = must_parse("cron:* * * * *");
    assert_int_equal(hgf_schedule_next(&s, INT64_MAX - 10), -1);
    assert_int_equal(hgf_schedule_next(&s, 0), 60);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_simple_forms),
        cmocka_unit_test(test_parse_durations),
        cmocka_unit_test(test_duration_errors),
        cmocka_unit_test(test_duration_format),
        cmocka_unit_test(test_canonical_format),
        cmocka_unit_test(test_canonical_round_trip),
        cmocka_unit_test(test_format_small_buffer),
        cmocka_unit_test(test_cron_masks),
        cmocka_unit_test(test_schedule_errors),
        cmocka_unit_test(test_parse_error_clears_output),
        cmocka_unit_test(test_next_none),
        cmocka_unit_test(test_next_every),
        cmocka_unit_test(test_next_daily),
        cmocka_unit_test(test_next_weekly),
        cmocka_unit_test(test_cron_quarter_hours),
        cmocka_unit_test(test_cron_business_hours),
        cmocka_unit_test(test_cron_monthly),
        cmocka_unit_test(test_cron_dom_dow_or),
        cmocka_unit_test(test_cron_sunday_and_names),
        cmocka_unit_test(test_cron_steps),
        cmocka_unit_test(test_cron_leap_day),
        cmocka_unit_test(test_cron_month_ends),
        cmocka_unit_test(test_cron_year_wrap),
        cmocka_unit_test(test_cron_impossible),
        cmocka_unit_test(test_cron_macros),
        cmocka_unit_test(test_cron_matches_oracle),
        cmocka_unit_test(test_next_is_fast),
        cmocka_unit_test(test_interval),
        cmocka_unit_test(test_jitter_bounds),
        cmocka_unit_test(test_jitter_deterministic_and_spread),
        cmocka_unit_test(test_next_jittered),
        cmocka_unit_test(test_out_of_range_times),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
