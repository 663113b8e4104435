#include "hgfleet/jobs.h"
#include "hgfleet/report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const SEVERITIES[] = {"critical", "high", "medium", "low", "unknown"};
#define N_SEV 5

/* Checks that need data hgfleet does not collect yet: reported with the
 * reason, never counted as a pass. */
static const struct {
    const char *check, *reason;
} NOT_EVALUATED[] = {
    {"no_lifecycle_policy",
     "not evaluated: hgfleet does not yet collect lifecycle policies (ecr:GetLifecyclePolicy)"},
    {"repository_policy_allows_everyone",
     "not evaluated: hgfleet does not yet collect repository policies (ecr:GetRepositoryPolicy)"},
    {"image_runs_as_root",
     "not evaluated: hgfleet does not yet read image config blobs (the config's User field)"},
    {"lifecycle_expires_untagged_before_scan",
     "not evaluated: missing lifecycle policies (ecr:GetLifecyclePolicy) to compare with scan "
     "times"},
};
#define N_NOT_EVALUATED ((int)(sizeof NOT_EVALUATED / sizeof NOT_EVALUATED[0]))

/* Column order of CONN_SQL after the identity columns. */
enum {
    C_ID, C_REGISTRY, C_ACCOUNT, C_REGION, C_DIAG, C_ERROR, C_REPOS, C_IMAGES, C_SCANNED,
    C_SEV0, C_SOP_OFF = C_SEV0 + N_SEV, C_MUTABLE, C_STALE, C_PILES
};

/* The latest ok scan of each present image decides "scanned" and its findings. */
static const char CONN_SQL[] =
    "WITH c AS (SELECT id, registry, account_id, region, last_diagnosis, last_error "
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
    "  coalesce(ua.piles, 0) "
    "FROM c LEFT JOIN ra ON ra.connection_id = c.id LEFT JOIN ia ON ia.connection_id = c.id "
    "LEFT JOIN ua ON ua.connection_id = c.id ORDER BY c.account_id, c.region, c.id";

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

/* posture: the evaluated checks' counts, then the others as null. */
static json_t *posture_of(const json_int_t counts[4], int stale_days)
{
    char stale[48];
    snprintf(stale, sizeof stale, "tagged_image_older_than_%dd", stale_days);
    json_t *p = json_pack("{s:I, s:I, s:I, s:I}", "scan_on_push_disabled", counts[0],
                          "tag_mutability_mutable", counts[1], stale, counts[2],
                          "untagged_images_piling_up", counts[3]);
    for (int i = 0; p && i < N_NOT_EVALUATED; i++)
        json_object_set_new(p, NOT_EVALUATED[i].check, json_null());
    return p;
}

static json_t *not_evaluated(void)
{
    json_t *o = json_object();
    for (int i = 0; o && i < N_NOT_EVALUATED; i++)
        json_object_set_new(o, NOT_EVALUATED[i].check, json_string(NOT_EVALUATED[i].reason));
    return o;
}

static json_t *findings_of(const PGresult *r, int row, int col0)
{
    json_t *f = json_object();
    for (int i = 0; f && i < N_SEV; i++)
        json_object_set_new(f, SEVERITIES[i], json_integer(num(r, row, col0 + i)));
    return f;
}

static json_t *connection_row(const PGresult *r, int row, const int64_t *failed, int n_failed,
                              int stale_days)
{
    int64_t id = (int64_t)num(r, row, C_ID);
    int bad = is_failed(id, failed, n_failed);
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
    json_object_set_new(o, "posture", posture_of(counts, stale_days));
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

static json_t *totals_of(const json_t *conns)
{
    json_t *t = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o}", "connections",
                          (json_int_t)json_array_size(conns), "connections_failed", (json_int_t)0,
                          "repositories", (json_int_t)0, "images", (json_int_t)0,
                          "images_scanned", (json_int_t)0, "connections_ok", (json_int_t)0,
                          "findings", json_object(), "posture", json_object());
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
    int rc = query_ids(s, CONN_SQL, conn_ids, n_conns, days, limit, &r, err);
    if (rc)
        return rc;
    json_t *conns = json_array();
    for (int i = 0; conns && i < PQntuples(r); i++)
        json_array_append_new(conns, connection_row(r, i, failed, n_failed, stale_days));
    PQclear(r);
    json_t *report = json_object();
    if (!conns || !report) {
        json_decref(conns);
        json_decref(report);
        return hgf_err_set(err, HGF_ENOMEM, "out of memory building the report");
    }
    json_object_set_new(report, "totals", totals_of(conns));
    json_object_set_new(report, "connections", conns);
    json_object_set_new(report, "posture_not_evaluated", not_evaluated());
    rc = build_worst(s, conn_ids, n_conns, report, err);
    if (rc) {
        json_decref(report);
        return rc;
    }
    *out = report;
    return 0;
}
