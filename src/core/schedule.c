#include "hgfleet/schedule.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define DAY 86400
#define WEEK (7 * DAY)
#define JITTER_CAP 300
/* Times outside 1970..9999 are not meaningful to a scheduler, and the bound
 * keeps every sum below far from int64 overflow. */
#define TIME_MAX ((int64_t)253402300799)
/* The Gregorian calendar repeats every 400 years, so a cron that has not
 * fired by then never will. */
#define CRON_SEARCH_YEARS 401

static const char EXPECTED[] =
    "expected manual, on_push, every:<duration>, daily[@HH:MM], weekly[@day HH:MM], "
    "cron:<5 fields> or on_push+<time spec>";

/* ---- errors ------------------------------------------------------------ */

/* Every message starts with what was being parsed: `schedule "<spec>": `. */
typedef struct ctx {
    const char *label;
    const char *whole;
    hgf_err *err;
} ctx;

static int bad(const ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int bad(const ctx *c, const char *fmt, ...)
{
    char detail[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return hgf_err_set(c->err, HGF_EINPUT, "%s \"%.256s\": %s", c->label, c->whole, detail);
}

/* ---- small text helpers ------------------------------------------------ */

typedef struct span {
    const char *p;
    size_t n;
} span;

static int span_ieq(span s, const char *word)
{
    return strlen(word) == s.n && strncasecmp(s.p, word, s.n) == 0;
}

static int span_iprefix(span s, const char *prefix, span *rest)
{
    size_t k = strlen(prefix);
    if (s.n < k || strncasecmp(s.p, prefix, k) != 0)
        return 0;
    rest->p = s.p + k;
    rest->n = s.n - k;
    return 1;
}

static int all_digits(span s)
{
    if (s.n == 0)
        return 0;
    for (size_t i = 0; i < s.n; i++)
        if (!isdigit((unsigned char)s.p[i]))
            return 0;
    return 1;
}

/* Digits to a number; anything above `cap` comes back as cap + 1 so range
 * checks reject it without overflow. */
static int64_t span_num(span s, int64_t cap)
{
    int64_t v = 0;
    for (size_t i = 0; i < s.n; i++) {
        v = v * 10 + (s.p[i] - '0');
        if (v > cap)
            return cap + 1;
    }
    return v;
}

static span trim(const char *text)
{
    span s = {text, strlen(text)};
    while (s.n && isspace((unsigned char)s.p[0])) {
        s.p++;
        s.n--;
    }
    while (s.n && isspace((unsigned char)s.p[s.n - 1]))
        s.n--;
    return s;
}

/* ---- durations --------------------------------------------------------- */

static const struct unit {
    char name;
    int64_t seconds;
} UNITS[] = {{'d', DAY}, {'h', 3600}, {'m', 60}, {'s', 1}};

static int unit_index(span u)
{
    for (int i = 0; i < 4; i++)
        if (u.n == 1 && u.p[0] == UNITS[i].name)
            return i;
    return -1;
}

static span take_while(span *s, int (*pred)(int))
{
    span head = {s->p, 0};
    while (head.n < s->n && pred((unsigned char)s->p[head.n]))
        head.n++;
    s->p += head.n;
    s->n -= head.n;
    return head;
}

/* One "<number><unit>" term; `rank` is the index of the previous unit so
 * units must come largest first, each once. */
static int dur_term(span *s, int *rank, int64_t *total, const ctx *c)
{
    span num = take_while(s, isdigit);
    if (num.n == 0)
        return bad(c, "expected a number at \"%.*s\" in duration (e.g. 6h, 1h30m, 7d)", (int)s->n,
                   s->p);
    span u = take_while(s, isalpha);
    if (u.n == 0)
        return bad(c, "number \"%.*s\" has no unit in duration (use s, m, h, d)", (int)num.n,
                   num.p);
    int i = unit_index(u);
    if (i < 0)
        return bad(c, "unknown unit \"%.*s\" in duration (use s, m, h, d)", (int)u.n, u.p);
    if (i <= *rank)
        return bad(c, "unit \"%c\" is repeated or out of order in duration (largest first, e.g. "
                      "1d2h30m)", UNITS[i].name);
    *rank = i;
    int64_t v = span_num(num, HGF_DURATION_MAX_SECONDS);
    if (v > HGF_DURATION_MAX_SECONDS / UNITS[i].seconds)
        return bad(c, "duration is too large (at most 36500d)");
    *total += v * UNITS[i].seconds;
    if (*total > HGF_DURATION_MAX_SECONDS)
        return bad(c, "duration is too large (at most 36500d)");
    return 0;
}

static int dur_parse(span s, const ctx *c, int64_t *out)
{
    if (s.n == 0)
        return bad(c, "duration is empty (e.g. 6h, 1h30m, 7d)");
    if (s.p[0] == '-')
        return bad(c, "duration must be positive (at least 1s)");
    int64_t total = 0;
    int rank = -1;
    while (s.n) {
        int rc = dur_term(&s, &rank, &total, c);
        if (rc)
            return rc;
    }
    if (total < 1)
        return bad(c, "duration must be at least 1s");
    *out = total;
    return 0;
}

int hgf_duration_parse(const char *text, const char *field, int64_t *seconds, hgf_err *err)
{
    ctx c = {field ? field : "duration", text ? text : "", err};
    if (!text || strlen(text) > HGF_SCHEDULE_SPEC_MAX)
        return bad(&c, "expected a duration such as 6h, 1h30m or 7d");
    return dur_parse(trim(text), &c, seconds);
}

int hgf_duration_format(int64_t seconds, char *out, size_t n)
{
    if (n == 0)
        return HGF_EFAIL;
    out[0] = '\0';
    if (seconds < 1)
        return HGF_EFAIL;
    size_t len = 0;
    for (int i = 0; i < 4; i++) {
        int64_t k = seconds / UNITS[i].seconds;
        seconds %= UNITS[i].seconds;
        if (k == 0)
            continue;
        int w = snprintf(out + len, n - len, "%lld%c", (long long)k, UNITS[i].name);
        if (w < 0 || (size_t)w >= n - len)
            return HGF_EFAIL;
        len += (size_t)w;
    }
    return 0;
}

/* ---- calendar arithmetic (proleptic Gregorian, days since 1970-01-01) --- */

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
    static const int DIM[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : DIM[m];
}

/* Howard Hinnant's days_from_civil / civil_from_days. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int weekday(int64_t days)
{
    return (int)(((days % 7) + 11) % 7); /* 1970-01-01 was a Thursday (4) */
}

/* ---- daily / weekly ---------------------------------------------------- */

static int parse_hhmm(span s, const ctx *c, int *hour, int *minute)
{
    const char *colon = memchr(s.p, ':', s.n);
    span h = {s.p, colon ? (size_t)(colon - s.p) : 0};
    span m = {colon ? colon + 1 : s.p, colon ? s.n - h.n - 1 : 0};
    if (!colon || !all_digits(h) || h.n > 2 || !all_digits(m) || m.n != 2)
        return bad(c, "expected HH:MM, got \"%.*s\"", (int)s.n, s.p);
    *hour = (int)span_num(h, 99);
    *minute = (int)span_num(m, 99);
    if (*hour > 23)
        return bad(c, "hour %d is out of range 0-23", *hour);
    if (*minute > 59)
        return bad(c, "minute %d is out of range 0-59", *minute);
    return 0;
}

static const char *const DAY_NAMES[7] = {"sunday",   "monday", "tuesday", "wednesday",
                                         "thursday", "friday", "saturday"};

/* Weekly accepts "mon" and "monday"; cron only the three-letter form. */
static int weekday_index(span s, int full_ok)
{
    for (int i = 0; i < 7; i++)
        if ((s.n == 3 && strncasecmp(s.p, DAY_NAMES[i], 3) == 0) ||
            (full_ok && span_ieq(s, DAY_NAMES[i])))
            return i;
    return -1;
}

static int parse_daily(span rest, hgf_schedule *out, const ctx *c)
{
    out->kind = HGF_SCHED_DAILY;
    if (rest.n == 0)
        return 0;
    span t;
    if (!span_iprefix(rest, "@", &t))
        return bad(c, "expected daily or daily@HH:MM");
    return parse_hhmm(t, c, &out->hour, &out->minute);
}

static int parse_weekly(span rest, hgf_schedule *out, const ctx *c)
{
    out->kind = HGF_SCHED_WEEKLY;
    out->wday = 1;
    if (rest.n == 0)
        return 0;
    span t;
    if (!span_iprefix(rest, "@", &t))
        return bad(c, "expected weekly or weekly@<day> HH:MM");
    span day = take_while(&t, isalnum);
    if (day.n == 0 && t.n == 0)
        return bad(c, "missing day after \"weekly@\" (e.g. weekly@mon 03:00)");
    if (day.n == 0 || (isdigit((unsigned char)day.p[0]) && t.n && t.p[0] == ':'))
        return bad(c, "missing day before the time (e.g. weekly@mon 03:00)");
    out->wday = weekday_index(day, 1);
    if (out->wday < 0)
        return bad(c, "unknown day \"%.*s\" (use mon..sun)", (int)day.n, day.p);
    if (t.n == 0)
        return 0;
    span gap = take_while(&t, isspace);
    if (gap.n == 0 || t.n == 0)
        return bad(c, "expected a space and HH:MM after the day, got \"%.*s\"",
                   (int)(gap.n + t.n), gap.p);
    return parse_hhmm(t, c, &out->hour, &out->minute);
}

/* ---- cron -------------------------------------------------------------- */

typedef struct field_def {
    const char *name;
    int lo, hi;
    const char *const *names; /* three-letter names, index lo.. */
    const char *noun;         /* for "unknown <noun>" when names are allowed */
    const char *hint;
} field_def;

static const char *const MONTH_NAMES[12] = {"jan", "feb", "mar", "apr", "may", "jun",
                                            "jul", "aug", "sep", "oct", "nov", "dec"};

enum { F_MIN, F_HOUR, F_DOM, F_MON, F_DOW };
static const field_def FIELDS[5] = {
    {"minute", 0, 59, NULL, NULL, NULL},
    {"hour", 0, 23, NULL, NULL, NULL},
    {"day-of-month", 1, 31, NULL, NULL, NULL},
    {"month", 1, 12, MONTH_NAMES, "month", "jan..dec or 1-12"},
    {"day-of-week", 0, 7, NULL, "day", "sun..sat or 0-7"},
};

static const struct macro {
    const char *name;
    const char *expr;
} MACROS[] = {{"@hourly", "0 * * * *"},  {"@daily", "0 0 * * *"},  {"@midnight", "0 0 * * *"},
              {"@weekly", "0 0 * * 0"},  {"@monthly", "0 0 1 * *"}, {"@yearly", "0 0 1 1 *"},
              {"@annually", "0 0 1 1 *"}};

/* The field being parsed, for messages that quote it. */
typedef struct fctx {
    const ctx *c;
    const field_def *f;
    span text;
} fctx;

static int name_value(const fctx *x, span tok)
{
    if (x->f == &FIELDS[F_DOW])
        return weekday_index(tok, 0);
    if (!x->f->names || tok.n != 3)
        return -1;
    for (int i = 0; i <= x->f->hi - x->f->lo; i++)
        if (strncasecmp(tok.p, x->f->names[i], 3) == 0)
            return x->f->lo + i;
    return -1;
}

static int out_of_range(const fctx *x, span tok)
{
    const field_def *f = x->f;
    if (tok.n == x->text.n)
        return bad(x->c, "%s field \"%.*s\" is out of range %d-%d", f->name, (int)tok.n, tok.p,
                   f->lo, f->hi);
    return bad(x->c, "%s field \"%.*s\": %.*s is out of range %d-%d", f->name, (int)x->text.n,
               x->text.p, (int)tok.n, tok.p, f->lo, f->hi);
}

static int field_value(const fctx *x, span tok, int *v)
{
    const field_def *f = x->f;
    if (tok.n == 0)
        return bad(x->c, "%s field \"%.*s\": a value is missing", f->name, (int)x->text.n,
                   x->text.p);
    if (all_digits(tok)) {
        *v = (int)span_num(tok, 1000);
        return (*v < f->lo || *v > f->hi) ? out_of_range(x, tok) : 0;
    }
    *v = name_value(x, tok);
    if (*v >= 0)
        return 0;
    if (f->noun)
        return bad(x->c, "%s field \"%.*s\": unknown %s \"%.*s\" (use %s)", f->name,
                   (int)x->text.n, x->text.p, f->noun, (int)tok.n, tok.p, f->hint);
    return bad(x->c, "%s field \"%.*s\": \"%.*s\" is not a number", f->name, (int)x->text.n,
               x->text.p, (int)tok.n, tok.p);
}

static int item_step(const fctx *x, span step, int *out)
{
    const field_def *f = x->f;
    int span_len = f->hi - f->lo + 1;
    if (!all_digits(step))
        return bad(x->c, "%s field \"%.*s\": step \"%.*s\" is not a number", f->name,
                   (int)x->text.n, x->text.p, (int)step.n, step.p);
    *out = (int)span_num(step, 1000);
    if (*out < 1 || *out > span_len)
        return bad(x->c, "%s field \"%.*s\": step %.*s is out of range 1-%d", f->name,
                   (int)x->text.n, x->text.p, (int)step.n, step.p, span_len);
    return 0;
}

/* base: '*' | value | value-value; with "/n", a lone value runs to the max. */
static int item_bounds(const fctx *x, span base, int has_step, int *a, int *b)
{
    if (span_ieq(base, "*")) {
        if (memchr(x->text.p, ',', x->text.n))
            return bad(x->c, "%s field \"%.*s\": '*' must stand alone (or as */n), not in a list",
                       x->f->name, (int)x->text.n, x->text.p);
        *a = x->f->lo;
        *b = x->f->hi;
        return 0;
    }
    const char *dash = memchr(base.p, '-', base.n);
    span lo = {base.p, dash ? (size_t)(dash - base.p) : base.n};
    int rc = field_value(x, lo, a);
    if (rc)
        return rc;
    if (!dash) {
        *b = has_step ? x->f->hi : *a;
        return 0;
    }
    span hi = {dash + 1, base.n - lo.n - 1};
    if ((rc = field_value(x, hi, b)))
        return rc;
    if (*a > *b)
        return bad(x->c, "%s field \"%.*s\": range %.*s is reversed", x->f->name,
                   (int)x->text.n, x->text.p, (int)base.n, base.p);
    return 0;
}

static int parse_item(const fctx *x, span item, uint64_t *mask)
{
    if (item.n == 0)
        return bad(x->c, "%s field \"%.*s\": empty list item", x->f->name, (int)x->text.n,
                   x->text.p);
    const char *slash = memchr(item.p, '/', item.n);
    span base = {item.p, slash ? (size_t)(slash - item.p) : item.n};
    int step = 1, a, b, rc;
    if (slash && (rc = item_step(x, (span){slash + 1, item.n - base.n - 1}, &step)))
        return rc;
    if ((rc = item_bounds(x, base, slash != NULL, &a, &b)))
        return rc;
    for (int v = a; v <= b; v += step)
        *mask |= (uint64_t)1 << v;
    return 0;
}

static int parse_field(const ctx *c, int which, span text, uint64_t *mask)
{
    fctx x = {c, &FIELDS[which], text};
    *mask = 0;
    span rest = text;
    for (;;) {
        const char *comma = memchr(rest.p, ',', rest.n);
        span item = {rest.p, comma ? (size_t)(comma - rest.p) : rest.n};
        int rc = parse_item(&x, item, mask);
        if (rc || !comma)
            return rc;
        rest.p = comma + 1;
        rest.n -= item.n + 1;
    }
}

static int not_space(int ch)
{
    return !isspace(ch);
}

static int split_fields(span s, span fields[5], const ctx *c)
{
    int count = 0;
    for (;;) {
        take_while(&s, isspace);
        if (s.n == 0)
            break;
        span f = take_while(&s, not_space);
        if (count < 5)
            fields[count] = f;
        count++;
    }
    if (count != 5)
        return bad(c, "expected 5 cron fields (minute hour day-of-month month day-of-week), got %d",
                   count);
    return 0;
}

/* Statically impossible: day-of-week is '*' (so the date alone decides) and
 * no chosen day of month exists in any chosen month. */
static int cron_never(const hgf_cron *cr)
{
    if (!cr->dow_star || cr->dom_star)
        return 0;
    for (int m = 1; m <= 12; m++) {
        uint64_t days = ((uint64_t)1 << (days_in_month(2000, m) + 1)) - 2;
        if ((cr->months >> m & 1) && (cr->mdays & days))
            return 0;
    }
    return 1;
}

static int cron_expand_macro(span *s, const ctx *c)
{
    if (s->n == 0 || s->p[0] != '@')
        return 0;
    for (size_t i = 0; i < sizeof MACROS / sizeof MACROS[0]; i++)
        if (span_ieq(*s, MACROS[i].name)) {
            *s = (span){MACROS[i].expr, strlen(MACROS[i].expr)};
            return 0;
        }
    return bad(c, "unknown cron macro \"%.*s\" (use @hourly, @daily, @weekly, @monthly, @yearly "
                  "or @annually)", (int)s->n, s->p);
}

static int parse_cron(span s, hgf_cron *cr, const ctx *c)
{
    span f[5];
    uint64_t m[5];
    int rc = cron_expand_macro(&s, c);
    if (rc || (rc = split_fields(s, f, c)))
        return rc;
    for (int i = 0; i < 5; i++)
        if ((rc = parse_field(c, i, f[i], &m[i])))
            return rc;
    cr->minutes = m[F_MIN];
    cr->hours = (uint32_t)m[F_HOUR];
    cr->mdays = (uint32_t)m[F_DOM];
    cr->months = (uint16_t)m[F_MON];
    /* Vixie cron: 7 is Sunday too. */
    cr->wdays = (uint8_t)((m[F_DOW] | m[F_DOW] >> 7) & 0x7f);
    cr->dom_star = f[F_DOM].p[0] == '*';
    cr->dow_star = f[F_DOW].p[0] == '*';
    cr->never = (uint8_t)cron_never(cr);
    return 0;
}

/* ---- spec -------------------------------------------------------------- */

static int parse_timed(span s, hgf_schedule *out, const ctx *c)
{
    span rest;
    if (span_iprefix(s, "every:", &rest)) {
        out->kind = HGF_SCHED_EVERY;
        return dur_parse(rest, c, &out->every_seconds);
    }
    if (span_iprefix(s, "daily", &rest))
        return parse_daily(rest, out, c);
    if (span_iprefix(s, "weekly", &rest))
        return parse_weekly(rest, out, c);
    if (span_iprefix(s, "cron:", &rest)) {
        out->kind = HGF_SCHED_CRON;
        return parse_cron(rest, &out->cron, c);
    }
    return bad(c, "%s", EXPECTED);
}

static int parse_push_combo(span rest, hgf_schedule *out, const ctx *c)
{
    out->on_push = 1;
    if (rest.n == 0)
        return bad(c, "missing time spec after \"on_push+\" (e.g. on_push+every:6h)");
    if (span_ieq(rest, "manual") || span_ieq(rest, "on_push"))
        return bad(c, "\"%.*s\" cannot follow on_push+ (use every:, daily, weekly or cron:)",
                   (int)rest.n, rest.p);
    return parse_timed(rest, out, c);
}

int hgf_schedule_parse(const char *spec, hgf_schedule *out, hgf_err *err)
{
    ctx c = {"schedule", spec ? spec : "", err};
    memset(out, 0, sizeof *out);
    if (!spec || strlen(spec) > HGF_SCHEDULE_SPEC_MAX)
        return bad(&c, "too long or missing (at most %d characters)", HGF_SCHEDULE_SPEC_MAX);
    span s = trim(spec), rest;
    int rc = 0;
    if (span_ieq(s, "on_push"))
        out->on_push = 1;
    else if (span_iprefix(s, "on_push+", &rest))
        rc = parse_push_combo(rest, out, &c);
    else if (!span_ieq(s, "manual"))
        rc = parse_timed(s, out, &c);
    if (rc)
        memset(out, 0, sizeof *out);
    return rc;
}

/* ---- next -------------------------------------------------------------- */

static int64_t next_daily(int hour, int minute, int64_t after)
{
    int64_t t = after / DAY * DAY + hour * 3600 + minute * 60;
    return t > after ? t : t + DAY;
}

static int64_t next_weekly(int wday, int hour, int minute, int64_t after)
{
    int64_t days = after / DAY;
    int64_t t = (days + (wday - weekday(days) + 7) % 7) * DAY + hour * 3600 + minute * 60;
    return t > after ? t : t + WEEK;
}

typedef struct cursor {
    int64_t y;
    int mon, day, hour, min;
} cursor;

static void next_month(cursor *k)
{
    if (++k->mon > 12) {
        k->mon = 1;
        k->y++;
    }
    k->day = 1;
    k->hour = k->min = 0;
}

static void next_day(cursor *k)
{
    if (++k->day > days_in_month(k->y, k->mon)) {
        next_month(k);
        return;
    }
    k->hour = k->min = 0;
}

/* Lowest set bit at or above `from`, or -1. */
static int bit_at_or_after(uint64_t mask, int from)
{
    if (from > 63)
        return -1;
    uint64_t m = mask >> from;
    return m ? from + __builtin_ctzll(m) : -1;
}

/* Vixie cron: with either day field '*', both must match; otherwise either. */
static int cron_day_ok(const hgf_cron *cr, const cursor *k)
{
    int dom = (int)(cr->mdays >> k->day & 1);
    int dow = cr->wdays >> weekday(days_from_civil(k->y, k->mon, k->day)) & 1;
    return (cr->dom_star || cr->dow_star) ? (dom && dow) : (dom || dow);
}

/* Advances the cursor to the first matching minute; skips whole months,
 * days and hours that cannot match, so a search costs at most a few
 * thousand steps even across leap-year gaps. */
static int cron_seek(const hgf_cron *cr, cursor *k)
{
    int64_t stop = k->y + CRON_SEARCH_YEARS;
    while (k->y <= stop) {
        if (!(cr->months >> k->mon & 1)) {
            next_month(k);
        } else if (!cron_day_ok(cr, k)) {
            next_day(k);
        } else {
            int h = bit_at_or_after(cr->hours, k->hour);
            if (h < 0) {
                next_day(k);
                continue;
            }
            if (h != k->hour)
                k->min = 0;
            k->hour = h;
            int m = bit_at_or_after(cr->minutes, k->min);
            if (m >= 0) {
                k->min = m;
                return 0;
            }
            k->min = 0;
            if (++k->hour > 23)
                next_day(k);
        }
    }
    return -1;
}

static int64_t next_cron(const hgf_cron *cr, int64_t after)
{
    if (cr->never)
        return -1;
    int64_t t = after / 60 * 60 + 60;
    cursor k;
    civil_from_days(t / DAY, &k.y, &k.mon, &k.day);
    k.hour = (int)(t % DAY / 3600);
    k.min = (int)(t % 3600 / 60);
    if (cron_seek(cr, &k) < 0)
        return -1;
    return days_from_civil(k.y, k.mon, k.day) * DAY + k.hour * 3600 + k.min * 60;
}

int64_t hgf_schedule_next(const hgf_schedule *s, int64_t after)
{
    if (after < 0 || after > TIME_MAX)
        return -1;
    switch (s->kind) {
    case HGF_SCHED_EVERY:
        if (s->every_seconds < 1)
            return -1;
        return after / s->every_seconds * s->every_seconds + s->every_seconds;
    case HGF_SCHED_DAILY:
        return next_daily(s->hour, s->minute, after);
    case HGF_SCHED_WEEKLY:
        return next_weekly(s->wday, s->hour, s->minute, after);
    case HGF_SCHED_CRON:
        return next_cron(&s->cron, after);
    default:
        return -1;
    }
}

int64_t hgf_schedule_interval(const hgf_schedule *s, int64_t now)
{
    switch (s->kind) {
    case HGF_SCHED_EVERY:
        return s->every_seconds > 0 ? s->every_seconds : 0;
    case HGF_SCHED_DAILY:
        return DAY;
    case HGF_SCHED_WEEKLY:
        return WEEK;
    case HGF_SCHED_CRON: {
        int64_t a = hgf_schedule_next(s, now);
        int64_t b = a < 0 ? -1 : hgf_schedule_next(s, a);
        return b < 0 ? 0 : b - a;
    }
    default:
        return 0;
    }
}

/* splitmix64: consecutive connection ids map to well-spread offsets. */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

int64_t hgf_schedule_jitter(const hgf_schedule *s, uint64_t seed, int64_t now)
{
    int64_t max = hgf_schedule_interval(s, now) / 10;
    if (max > JITTER_CAP)
        max = JITTER_CAP;
    if (max <= 0)
        return 0;
    return (int64_t)(mix64(seed) % (uint64_t)(max + 1));
}

int64_t hgf_schedule_next_jittered(const hgf_schedule *s, uint64_t seed, int64_t after)
{
    if (after < 0 || after > TIME_MAX)
        return -1; /* as hgf_schedule_next, and after - j cannot overflow */
    int64_t j = hgf_schedule_jitter(s, seed, after);
    int64_t base = hgf_schedule_next(s, after - j);
    return base < 0 ? -1 : base + j;
}

/* ---- canonical text ---------------------------------------------------- */

typedef struct writer {
    char *out;
    size_t n, len;
    int truncated;
} writer;

static void put(writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(writer *w, const char *fmt, ...)
{
    if (w->truncated)
        return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(w->out + w->len, w->n - w->len, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= w->n - w->len) {
        w->truncated = 1;
        return;
    }
    w->len += (size_t)k;
}

static int bits_list(uint64_t mask, int v[64])
{
    int count = 0;
    for (int i = 0; i < 64; i++)
        if (mask >> i & 1)
            v[count++] = i;
    return count;
}

/* '*' fields only ever come from "*" or "*\/n", so the gap between the first
 * two values is n. */
static void put_star(writer *w, const field_def *f, const int *v, int count)
{
    int step = count > 1 ? v[1] - v[0] : f->hi - f->lo + 1;
    if (step == 1)
        put(w, "*");
    else
        put(w, "*/%d", step);
}

static int is_progression(const int *v, int count)
{
    for (int i = 2; i < count; i++)
        if (v[i] - v[i - 1] != v[1] - v[0])
            return 0;
    return count >= 3;
}

/* Runs of three or more become a-b; a single even progression a-b/n. */
static void put_set(writer *w, const int *v, int count)
{
    if (is_progression(v, count)) {
        put(w, "%d-%d", v[0], v[count - 1]);
        if (v[1] - v[0] > 1)
            put(w, "/%d", v[1] - v[0]);
        return;
    }
    for (int i = 0; i < count;) {
        int j = i;
        while (j + 1 < count && v[j + 1] == v[j] + 1)
            j++;
        if (j - i >= 2)
            put(w, "%s%d-%d", i ? "," : "", v[i], v[j]);
        else
            for (int k = i; k <= j; k++)
                put(w, "%s%d", k ? "," : "", v[k]);
        i = j + 1;
    }
}

/* Whether the set is what "*" or "*\/n" would give: lo, lo+n, ... up to
 * the last value that fits. Two values read better as a list ("1,7"). */
static int star_shaped(const field_def *f, const int *v, int count)
{
    return is_progression(v, count) && v[0] == f->lo && v[count - 1] + (v[1] - v[0]) > f->hi;
}

/* Only the day fields remember whether they were written with '*' (it
 * changes the day-matching rule); the others render "*" whenever it fits. */
static void put_field(writer *w, int which, uint64_t mask, int day_field, int star)
{
    int v[64];
    int count = bits_list(mask, v);
    if (star || (!day_field && star_shaped(&FIELDS[which], v, count)))
        put_star(w, &FIELDS[which], v, count);
    else
        put_set(w, v, count);
}

static void put_cron(writer *w, const hgf_cron *cr)
{
    put(w, "cron:");
    put_field(w, F_MIN, cr->minutes, 0, 0);
    put(w, " ");
    put_field(w, F_HOUR, cr->hours, 0, 0);
    put(w, " ");
    put_field(w, F_DOM, cr->mdays, 1, cr->dom_star);
    put(w, " ");
    put_field(w, F_MON, cr->months, 0, 0);
    put(w, " ");
    put_field(w, F_DOW, cr->wdays, 1, cr->dow_star);
}

static void put_timed(writer *w, const hgf_schedule *s)
{
    char d[32] = "";
    switch (s->kind) {
    case HGF_SCHED_EVERY:
        if (hgf_duration_format(s->every_seconds, d, sizeof d) != 0)
            w->truncated = 1;
        put(w, "every:%s", d);
        break;
    case HGF_SCHED_DAILY:
        put(w, "daily@%02d:%02d", s->hour, s->minute);
        break;
    case HGF_SCHED_WEEKLY:
        put(w, "weekly@%.3s %02d:%02d", DAY_NAMES[s->wday % 7], s->hour, s->minute);
        break;
    case HGF_SCHED_CRON:
        put_cron(w, &s->cron);
        break;
    }
}

int hgf_schedule_format(const hgf_schedule *s, char *out, size_t n)
{
    if (n == 0)
        return HGF_EFAIL;
    writer w = {out, n, 0, 0};
    out[0] = '\0';
    if (s->kind == HGF_SCHED_NONE)
        put(&w, s->on_push ? "on_push" : "manual");
    else {
        if (s->on_push)
            put(&w, "on_push+");
        put_timed(&w, s);
    }
    return w.truncated ? HGF_EFAIL : 0;
}
