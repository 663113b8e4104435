#include "hgfleet/jobs.h"
#include "hgfleet/posture.h"
#include "hgfleet/report.h"
#include "hgfleet/schedule.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const SEVERITIES[] = {"critical", "high", "medium", "low", "unknown"};
#define N_SEV 5

/* The checks judged from policies and configs (posture.h), per repository
 * or per image. What could not be judged is counted under a reason and is
 * never a pass. */
enum { K_NO_LIFECYCLE, K_OPEN_POLICY, K_ROOT, K_RACE, N_CHECKS };
static const char *const CHECKS[N_CHECKS] = {
    "no_lifecycle_policy", "repository_policy_allows_everyone", "image_runs_as_root",
    "lifecycle_expires_untagged_before_scan",
};

enum {
    R_LC_NOT_COLLECTED, R_LC_DENIED, R_LC_UNREADABLE, R_RP_NOT_COLLECTED, R_RP_DENIED,
    R_RP_UNREADABLE, R_CONFIG_NOT_READ, R_CONFIG_UNREADABLE, R_SCHEDULE, N_REASONS
};
static const char *const REASONS[N_REASONS] = {
    "not evaluated: lifecycle policies not collected yet (a sweep collects them)",
    "not evaluated: missing ecr:GetLifecyclePolicy",
    "not evaluated: the lifecycle policy cannot be read",
    "not evaluated: repository policies not collected yet (a sweep collects them)",
    "not evaluated: missing ecr:GetRepositoryPolicy",
    "not evaluated: the repository policy cannot be read",
    "not evaluated: image config not read yet (an image's first scan reads it)",
    "not evaluated: the image config is not readable",
    "not evaluated: the connection's schedule cannot be read",
};

/* One connection's posture tallies. */
typedef struct tally {
    int64_t id;
    hgf_schedule sched;
    int sched_ok;
    long long viol[N_CHECKS], judged[N_CHECKS], ne[N_CHECKS][N_REASONS];
} tally;

/* Column order of CONN_SQL after the identity columns. */
enum {
    C_ID, C_REGISTRY, C_ACCOUNT, C_REGION, C_DIAG, C_ERROR, C_REPOS, C_IMAGES, C_SCANNED,
    C_SEV0, C_SOP_OFF = C_SEV0 + N_SEV, C_MUTABLE, C_STALE, C_PILES, C_SCHEDULE
};

/* The latest ok scan of each present image decides "scanned" and its findings. */
static const char CONN_SQL[] =
    "WITH c AS (SELECT id, registry, account_id, region, last_diagnosis, last_error, schedule "
    "             FROM connections WHERE id = ANY($1::bigint[])), "
    "r AS (SELECT rp.id, rp.connection_id, rp.scan_on_push, rp.tag_mutability "
    "        FROM repositories rp JOIN c ON c.id = rp.connection_id WHERE rp.deleted_at IS NULL), "
    "im AS (SELECT r.connection_id, i.repository_id, i.pushed_at, ls.summary, ls.ok, "
    "              EXISTS (SELECT 1 FROM image_tags t WHERE t.image_id = i.id) AS tagged "
    "         FROM images i JOIN r ON r.id = i.repository_id "
    "         LEFT JOIN LATERAL (SELECT s.summary, true AS ok FROM scans s "
    "                             WHERE s.image_id = i.id AND s.status = 'ok' "
    "                             ORDER BY s.id DESC LIMIT 1) ls ON true "
    "        WHERE i.deleted_at IS NULL), "
    "ia AS (SELECT connection_id, count(*) AS n, count(*) FILTER (WHERE ok) AS scanned, "
    "  coalesce(sum((summary->>'critical')::bigint), 0) AS crit, "
    "  coalesce(sum((summary->>'high')::bigint), 0) AS high, "
    "  coalesce(sum((summary->>'medium')::bigint), 0) AS med, "
    "  coalesce(sum((summary->>'low')::bigint), 0) AS low, "
    "  coalesce(sum((summary->>'unknown')::bigint), 0) AS unk, "
    "  count(*) FILTER (WHERE tagged AND pushed_at < now() - make_interval(days => $2::int)) "
    "    AS stale "
    "  FROM im GROUP BY connection_id), "
    "ra AS (SELECT connection_id, count(*) AS n, "
    "  count(*) FILTER (WHERE scan_on_push IS FALSE) AS sop_off, "
    "  count(*) FILTER (WHERE tag_mutability = 'MUTABLE') AS mutable "
    "  FROM r GROUP BY connection_id), "
    "ua AS (SELECT connection_id, count(*) AS piles FROM ("
    "  SELECT connection_id, repository_id FROM im WHERE NOT tagged GROUP BY 1, 2 "
    "  HAVING count(*) > $3::int) x GROUP BY 1) "
    "SELECT c.id, c.registry, c.account_id, c.region, c.last_diagnosis::text, c.last_error, "
    "  coalesce(ra.n, 0), coalesce(ia.n, 0), coalesce(ia.scanned, 0), coalesce(ia.crit, 0), "
    "  coalesce(ia.high, 0), coalesce(ia.med, 0), coalesce(ia.low, 0), coalesce(ia.unk, 0), "
    "  coalesce(ra.sop_off, 0), coalesce(ra.mutable, 0), coalesce(ia.stale, 0), "
    "  coalesce(ua.piles, 0), c.schedule "
    "FROM c LEFT JOIN ra ON ra.connection_id = c.id LEFT JOIN ia ON ia.connection_id = c.id "
    "LEFT JOIN ua ON ua.connection_id = c.id ORDER BY c.account_id, c.region, c.id";

/* Repositories grouped by their policies: most share a handful of texts. */
static const char POLICY_SQL[] =
    "SELECT connection_id, lifecycle_policy_status, lifecycle_policy::text, "
    "       repository_policy_status, repository_policy::text, count(*) "
    "  FROM repositories WHERE connection_id = ANY($1::bigint[]) AND deleted_at IS NULL "
    " GROUP BY 1, 2, 3, 4, 5";

static const char CONFIG_SQL[] =
    "SELECT rp.connection_id, i.config_kind, i.config_user, count(*) "
    "  FROM images i JOIN repositories rp ON rp.id = i.repository_id "
    " WHERE rp.connection_id = ANY($1::bigint[]) AND rp.deleted_at IS NULL "
    "   AND i.deleted_at IS NULL "
    " GROUP BY 1, 2, 3";

static const char WORST_SQL[] =
    "SELECT c.registry, c.account_id, c.region, rp.name, i.digest, "
    "  coalesce((SELECT string_agg(t.tag, ',' ORDER BY t.tag) FROM image_tags t "
    "             WHERE t.image_id = i.id), ''), "
    "  (ls.summary->>'critical')::bigint, (ls.summary->>'high')::bigint, "
    "  (ls.summary->>'medium')::bigint, (ls.summary->>'low')::bigint, "
    "  (ls.summary->>'unknown')::bigint "
    "FROM connections c JOIN repositories rp ON rp.connection_id = c.id AND rp.deleted_at IS NULL "
    "JOIN images i ON i.repository_id = rp.id AND i.deleted_at IS NULL "
    "JOIN LATERAL (SELECT s.summary FROM scans s WHERE s.image_id = i.id AND s.status = 'ok' "
    "              ORDER BY s.id DESC LIMIT 1) ls ON true "
    "WHERE c.id = ANY($1::bigint[]) AND ls.summary IS NOT NULL "
    "  AND coalesce((ls.summary->>'critical')::bigint, 0) "
    "    + coalesce((ls.summary->>'high')::bigint, 0) > 0 "
    "ORDER BY 7 DESC NULLS LAST, 8 DESC NULLS LAST, 9 DESC NULLS LAST, c.registry, rp.name, "
    "  i.digest LIMIT $2::int";

int hgf_report_format_parse(const char *name, const char *field, hgf_report_format *out,
                            hgf_err *err)
{
    static const char *const NAMES[] = {"json", "csv", "html"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, NAMES[i])) {
            *out = (hgf_report_format)i;
            return 0;
        }
    return hgf_err_set(err, HGF_EINPUT, "%s \"%s\": unknown report format (use json, csv or html)",
                       field, name);
}

static json_int_t num(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static int is_failed(int64_t id, const int64_t *failed, int n)
{
    for (int i = 0; i < n; i++)
        if (failed[i] == id)
            return 1;
    return 0;
}

/* ---- posture tallies ------------------------------------------------- */

static long long ne_total(const tally *t, int k)
{
    long long n = 0;
    for (int r = 0; r < N_REASONS; r++)
        n += t->ne[k][r];
    return n;
}

/* The violations among what was judged; null when nothing could be judged
 * but something should have been: never a pass. */
static json_t *check_value(const tally *t, int k)
{
    if (!t->judged[k] && ne_total(t, k))
        return json_null();
    return json_integer(t->viol[k]);
}

/* "reason; reason" of the reasons with a count, into b. */
static void reasons_text(const long long ne[N_REASONS], hgf_buf *b)
{
    for (int r = 0; r < N_REASONS; r++)
        if (ne[r])
            hgf_buf_printf(b, "%s%s", b->len ? "; " : "", REASONS[r]);
}

/* check -> {"count", "reason"} for the checks with unjudged items. */
static json_t *not_evaluated_of(const tally *t)
{
    json_t *o = json_object();
    for (int k = 0; o && k < N_CHECKS; k++) {
        long long n = ne_total(t, k);
        if (!n)
            continue;
        hgf_buf b = HGF_BUF_INIT;
        reasons_text(t->ne[k], &b);
        json_object_set_new(o, CHECKS[k], json_pack("{s:I, s:s}", "count", (json_int_t)n,
                                                    "reason", hgf_buf_str(&b)));
        hgf_buf_free(&b);
    }
    return o;
}

static int cmp_tally(const void *a, const void *b)
{
    int64_t x = ((const tally *)a)->id, y = ((const tally *)b)->id;
    return (x > y) - (x < y);
}

static tally *tally_find(tally *ts, int n, const char *id)
{
    tally key = {.id = strtoll(id, NULL, 10)};
    return bsearch(&key, ts, (size_t)n, sizeof key, cmp_tally);
}

/* Why a lifecycle row cannot be judged, or -1; *days is its window. */
static int lifecycle_reason(const char *status, const char *text, long *days)
{
    hgf_err e;
    *days = -1;
    if (!status)
        return R_LC_NOT_COLLECTED;
    if (!strcmp(status, "denied"))
        return R_LC_DENIED;
    if (strcmp(status, "ok"))
        return -1;
    return text && !hgf_posture_lifecycle_untagged_days(text, strlen(text), days, &e)
               ? -1
               : R_LC_UNREADABLE;
}

/* A lifecycle row: the no-policy check and the race with the schedule. */
static void judge_lifecycle(tally *t, const char *status, const char *text, long long n)
{
    long days;
    int reason = lifecycle_reason(status, text, &days);
    /* An unreadable policy still exists: only its window is unknown. */
    if (reason == R_LC_NOT_COLLECTED || reason == R_LC_DENIED) {
        t->ne[K_NO_LIFECYCLE][reason] += n;
    } else {
        t->judged[K_NO_LIFECYCLE] += n;
        t->viol[K_NO_LIFECYCLE] += !strcmp(status, "none") ? n : 0;
    }
    if (reason >= 0) {
        t->ne[K_RACE][reason] += n;
    } else if (!t->sched_ok) {
        t->ne[K_RACE][R_SCHEDULE] += n;
    } else {
        t->judged[K_RACE] += n;
        t->viol[K_RACE] +=
            hgf_posture_expiry_races_scan(days, &t->sched, (int64_t)time(NULL)) ? n : 0;
    }
}

static void judge_policy(tally *t, const char *status, const char *text, long long n)
{
    int open = 0;
    hgf_err e;
    if (!status)
        t->ne[K_OPEN_POLICY][R_RP_NOT_COLLECTED] += n;
    else if (!strcmp(status, "denied"))
        t->ne[K_OPEN_POLICY][R_RP_DENIED] += n;
    else if (!strcmp(status, "ok") &&
             (!text || hgf_posture_policy_allows_everyone(text, strlen(text), &open, &e)))
        t->ne[K_OPEN_POLICY][R_RP_UNREADABLE] += n;
    else {
        t->judged[K_OPEN_POLICY] += n;
        t->viol[K_OPEN_POLICY] += open ? n : 0;
    }
}

static void judge_config(tally *t, const char *kind, const char *user, long long n)
{
    if (!kind)
        t->ne[K_ROOT][R_CONFIG_NOT_READ] += n;
    else if (!strcmp(kind, "unreadable"))
        t->ne[K_ROOT][R_CONFIG_UNREADABLE] += n;
    else if (!strcmp(kind, "image")) {
        t->judged[K_ROOT] += n;
        t->viol[K_ROOT] += hgf_posture_user_is_root(user ? user : "") ? n : 0;
    }
}

static const char *opt(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static int tally_policies(hgf_store *s, const char *ids, tally *ts, int n, hgf_err *err)
{
    PGresult *r = NULL;
    const char *p[] = {ids};
    int rc = hgf_store_exec(s, POLICY_SQL, 1, p, &r, err);
    for (int i = 0; !rc && i < PQntuples(r); i++) {
        tally *t = tally_find(ts, n, PQgetvalue(r, i, 0));
        long long count = strtoll(PQgetvalue(r, i, 5), NULL, 10);
        if (!t)
            continue;
        judge_lifecycle(t, opt(r, i, 1), opt(r, i, 2), count);
        judge_policy(t, opt(r, i, 3), opt(r, i, 4), count);
    }
    PQclear(r);
    return rc;
}

static int tally_configs(hgf_store *s, const char *ids, tally *ts, int n, hgf_err *err)
{
    PGresult *r = NULL;
    const char *p[] = {ids};
    int rc = hgf_store_exec(s, CONFIG_SQL, 1, p, &r, err);
    for (int i = 0; !rc && i < PQntuples(r); i++) {
        tally *t = tally_find(ts, n, PQgetvalue(r, i, 0));
        if (t)
            judge_config(t, opt(r, i, 1), opt(r, i, 2), strtoll(PQgetvalue(r, i, 3), NULL, 10));
    }
    PQclear(r);
    return rc;
}

/* One tally per row of CONN_SQL, sorted by connection id. */
static int tally_all(hgf_store *s, const PGresult *conns, const int64_t *ids, int n_ids,
                     tally **out, hgf_err *err)
{
    int n = PQntuples(conns);
    tally *ts = calloc((size_t)n + 1, sizeof *ts);
    if (!ts)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory building the report");
    for (int i = 0; i < n; i++) {
        hgf_err e;
        ts[i].id = strtoll(PQgetvalue(conns, i, C_ID), NULL, 10);
        ts[i].sched_ok = !hgf_schedule_parse(PQgetvalue(conns, i, C_SCHEDULE), &ts[i].sched, &e);
    }
    qsort(ts, (size_t)n, sizeof *ts, cmp_tally);
    hgf_buf arr = HGF_BUF_INIT;
    hgf_jobs_id_array(ids, n_ids, &arr);
    int rc = tally_policies(s, hgf_buf_str(&arr), ts, n, err);
    if (!rc)
        rc = tally_configs(s, hgf_buf_str(&arr), ts, n, err);
    hgf_buf_free(&arr);
    if (rc)
        free(ts);
    else
        *out = ts;
    return rc;
}

/* posture: the catalog checks' counts, then the judged ones. */
static json_t *posture_of(const json_int_t counts[4], int stale_days, const tally *t)
{
    char stale[48];
    snprintf(stale, sizeof stale, "tagged_image_older_than_%dd", stale_days);
    json_t *p = json_pack("{s:I, s:I, s:I, s:I}", "scan_on_push_disabled", counts[0],
                          "tag_mutability_mutable", counts[1], stale, counts[2],
                          "untagged_images_piling_up", counts[3]);
    for (int k = 0; p && k < N_CHECKS; k++)
        json_object_set_new(p, CHECKS[k], check_value(t, k));
    return p;
}

/* The report's check -> "reason; ..." over every connection. */
static json_t *not_evaluated(const tally *ts, int n)
{
    json_t *o = json_object();
    for (int k = 0; o && k < N_CHECKS; k++) {
        long long ne[N_REASONS] = {0};
        for (int i = 0; i < n; i++)
            for (int r = 0; r < N_REASONS; r++)
                ne[r] += ts[i].ne[k][r];
        hgf_buf b = HGF_BUF_INIT;
        reasons_text(ne, &b);
        if (b.len)
            json_object_set_new(o, CHECKS[k], json_string(hgf_buf_str(&b)));
        hgf_buf_free(&b);
    }
    return o;
}

static json_t *findings_of(const PGresult *r, int row, int col0)
{
    json_t *f = json_object();
    for (int i = 0; f && i < N_SEV; i++)
        json_object_set_new(f, SEVERITIES[i], json_integer(num(r, row, col0 + i)));
    return f;
}

/* Its listing worked but its scans were refused (the guide's "repos
 * enumerate, but scans fail with denied"): a scan's diagnosis is stored and
 * some present image has no ok scan. A refusal since mended by ok scans of
 * every image does not count. */
static int scans_refused(const PGresult *r, int row)
{
    if (PQgetisnull(r, row, C_DIAG) || num(r, row, C_SCANNED) >= num(r, row, C_IMAGES))
        return 0;
    json_t *d = json_loads(PQgetvalue(r, row, C_DIAG), 0, NULL);
    const char *source = json_string_value(json_object_get(d, "source"));
    int refused = source && !strcmp(source, "scan");
    json_decref(d);
    return refused;
}

static json_t *connection_row(const PGresult *r, int row, const int64_t *failed, int n_failed,
                              int stale_days, tally *ts, int n_ts)
{
    const tally *t = tally_find(ts, n_ts, PQgetvalue(r, row, C_ID));
    int64_t id = (int64_t)num(r, row, C_ID);
    int bad = is_failed(id, failed, n_failed) || scans_refused(r, row);
    json_int_t counts[4] = {num(r, row, C_SOP_OFF), num(r, row, C_MUTABLE), num(r, row, C_STALE),
                            num(r, row, C_PILES)};
    json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:s}", "connection_id", (json_int_t)id, "registry",
                          PQgetvalue(r, row, C_REGISTRY), "account_id",
                          PQgetvalue(r, row, C_ACCOUNT), "region", PQgetvalue(r, row, C_REGION),
                          "status", bad ? "failed" : "ok");
    if (!o)
        return NULL;
    if (bad) {
        json_t *d = PQgetisnull(r, row, C_DIAG) ? NULL
                                                : json_loads(PQgetvalue(r, row, C_DIAG), 0, NULL);
        json_object_set_new(o, "diagnosis", d ? d : json_null());
        if (!PQgetisnull(r, row, C_ERROR))
            json_object_set_new(o, "error", json_string(PQgetvalue(r, row, C_ERROR)));
    }
    json_object_set_new(o, "repositories", json_integer(num(r, row, C_REPOS)));
    json_object_set_new(o, "images", json_integer(num(r, row, C_IMAGES)));
    json_object_set_new(o, "images_scanned", json_integer(num(r, row, C_SCANNED)));
    json_object_set_new(o, "findings", findings_of(r, row, C_SEV0));
    json_object_set_new(o, "posture", posture_of(counts, stale_days, t));
    json_object_set_new(o, "posture_not_evaluated", not_evaluated_of(t));
    return o;
}

/* Adds every integer of src into dst under the same key (nulls stay null). */
static void add_counts(json_t *dst, const json_t *src)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)src, k, v) {
        json_t *cur = json_object_get(dst, k);
        if (json_is_integer(v))
            json_object_set_new(dst, k,
                                json_integer(json_integer_value(cur) + json_integer_value(v)));
        else if (!cur)
            json_object_set_new(dst, k, json_null());
    }
}

/* Adds each check's not-evaluated count into dst (check -> count). */
static void add_not_evaluated(json_t *dst, const json_t *src)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)src, k, v) {
        json_int_t n = json_integer_value(json_object_get(v, "count"));
        json_object_set_new(dst, k, json_integer(json_integer_value(json_object_get(dst, k)) + n));
    }
}

static json_t *totals_of(const json_t *conns)
{
    json_t *t = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:o}", "connections",
                          (json_int_t)json_array_size(conns), "connections_failed", (json_int_t)0,
                          "repositories", (json_int_t)0, "images", (json_int_t)0,
                          "images_scanned", (json_int_t)0, "connections_ok", (json_int_t)0,
                          "findings", json_object(), "posture", json_object(),
                          "posture_not_evaluated", json_object());
    size_t i;
    json_t *c;
    json_array_foreach(conns, i, c) {
        static const char *const KEYS[] = {"repositories", "images", "images_scanned"};
        for (int k = 0; k < 3; k++)
            json_object_set_new(t, KEYS[k],
                                json_integer(json_integer_value(json_object_get(t, KEYS[k])) +
                                             json_integer_value(json_object_get(c, KEYS[k]))));
        const char *which = strcmp(json_string_value(json_object_get(c, "status")), "ok")
                                ? "connections_failed" : "connections_ok";
        json_object_set_new(t, which, json_integer(json_integer_value(json_object_get(t, which)) + 1));
        add_counts(json_object_get(t, "findings"), json_object_get(c, "findings"));
        add_counts(json_object_get(t, "posture"), json_object_get(c, "posture"));
        add_not_evaluated(json_object_get(t, "posture_not_evaluated"),
                          json_object_get(c, "posture_not_evaluated"));
    }
    for (int s = 0; s < N_SEV; s++) /* an empty fleet still has every severity */
        if (!json_object_get(json_object_get(t, "findings"), SEVERITIES[s]))
            json_object_set_new(json_object_get(t, "findings"), SEVERITIES[s], json_integer(0));
    return t;
}

static int query_ids(hgf_store *s, const char *sql, const int64_t *ids, int n, const char *p2,
                     const char *p3, PGresult **res, hgf_err *err)
{
    hgf_buf arr = HGF_BUF_INIT;
    hgf_jobs_id_array(ids, n, &arr);
    const char *p[] = {hgf_buf_str(&arr), p2, p3};
    int rc = hgf_store_exec(s, sql, p3 ? 3 : 2, p, res, err);
    hgf_buf_free(&arr);
    return rc;
}

static json_t *worst_row(const PGresult *r, int row)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "registry", PQgetvalue(r, row, 0),
                          "account_id", PQgetvalue(r, row, 1), "region", PQgetvalue(r, row, 2),
                          "repository", PQgetvalue(r, row, 3), "digest", PQgetvalue(r, row, 4),
                          "tags", PQgetvalue(r, row, 5));
    if (o)
        json_object_set_new(o, "findings", findings_of(r, row, 6));
    return o;
}

static int build_worst(hgf_store *s, const int64_t *ids, int n, json_t *report, hgf_err *err)
{
    char limit[16];
    snprintf(limit, sizeof limit, "%d", HGF_REPORT_WORST_IMAGES);
    PGresult *r = NULL;
    int rc = query_ids(s, WORST_SQL, ids, n, limit, NULL, &r, err);
    if (rc)
        return rc;
    json_t *a = json_array();
    for (int i = 0; a && i < PQntuples(r); i++)
        json_array_append_new(a, worst_row(r, i));
    PQclear(r);
    json_object_set_new(report, "worst_images", a);
    return 0;
}

int hgf_report_build(hgf_store *s, const int64_t *conn_ids, int n_conns, const int64_t *failed,
                     int n_failed, int stale_days, json_t **out, hgf_err *err)
{
    char days[16], limit[16];
    snprintf(days, sizeof days, "%d", stale_days);
    snprintf(limit, sizeof limit, "%d", HGF_REPORT_UNTAGGED_LIMIT);
    PGresult *r = NULL;
    tally *ts = NULL;
    int rc = query_ids(s, CONN_SQL, conn_ids, n_conns, days, limit, &r, err);
    if (!rc)
        rc = tally_all(s, r, conn_ids, n_conns, &ts, err);
    if (rc) {
        PQclear(r);
        return rc;
    }
    int n_ts = PQntuples(r);
    json_t *conns = json_array();
    for (int i = 0; conns && i < n_ts; i++)
        json_array_append_new(conns, connection_row(r, i, failed, n_failed, stale_days, ts, n_ts));
    PQclear(r);
    json_t *report = json_object();
    if (!conns || !report) {
        json_decref(conns);
        json_decref(report);
        free(ts);
        return hgf_err_set(err, HGF_ENOMEM, "out of memory building the report");
    }
    json_object_set_new(report, "totals", totals_of(conns));
    json_object_set_new(report, "connections", conns);
    json_object_set_new(report, "posture_not_evaluated", not_evaluated(ts, n_ts));
    free(ts);
    rc = build_worst(s, conn_ids, n_conns, report, err);
    if (rc) {
        json_decref(report);
        return rc;
    }
    *out = report;
    return 0;
}
