/* The sweep views of the catalog: what `sweep list` and `sweep show` print
 * and GET /api/sweeps... serves. */
#include "catalog_internal.h"

#define ISO HGF_CATALOG_ISO

#define SWEEP_OBJECT                                                                              \
    "json_build_object('id', id, 'requested_by', requested_by,"                                   \
    " 'started_at', " ISO("started_at") ", 'finished_at', " ISO("finished_at") ","                \
    " 'status', status, 'totals', report->'totals')"

static const char LIST_SQL[] =
    "SELECT coalesce(json_agg(" SWEEP_OBJECT " ORDER BY id DESC), '[]')::text"
    " FROM (SELECT * FROM sweeps ORDER BY id DESC LIMIT $1::int) s";

static const char ONE_SQL[] = "SELECT " SWEEP_OBJECT "::text FROM sweeps WHERE id = $1";

static const char REPORT_SQL[] = "SELECT status, report::text FROM sweeps WHERE id = $1";

static int read_sweep(const PGresult *res, const hgf_catalog_query *q, json_t **out, hgf_err *err)
{
    return hgf_catalog_read_object(res, q, "sweep", out, err);
}

/* A running sweep has no report yet: HGF_EFAIL, which callers tell apart
 * from a sweep that does not exist. */
static int read_report(const PGresult *res, const hgf_catalog_query *q, json_t **out,
                       hgf_err *err)
{
    long long id = (long long)q->id;
    if (PQntuples(res) == 0)
        return hgf_err_set(err, HGF_ENOTFOUND, "sweep %lld does not exist", id);
    if (PQgetisnull(res, 0, 1))
        return hgf_err_set(err, HGF_EFAIL, "sweep %lld has no report (status %s)", id,
                           PQgetvalue(res, 0, 0));
    *out = json_loads(PQgetvalue(res, 0, 1), 0, NULL);
    if (!*out)
        return hgf_err_set(err, HGF_EDB, "sweep %lld: stored report is not JSON", id);
    return 0;
}

const hgf_catalog_query *hgf_catalog_sweeps(hgf_catalog_query *q, int limit)
{
    hgf_catalog_reset(q, LIST_SQL, hgf_catalog_read_array);
    hgf_catalog_set_int(q, 0, limit);
    return q;
}

static const hgf_catalog_query *by_id(hgf_catalog_query *q, const char *sql,
                                      hgf_catalog_to_json to_json, int64_t id)
{
    hgf_catalog_reset(q, sql, to_json);
    q->id = id;
    hgf_catalog_set_int(q, 0, id);
    return q;
}

const hgf_catalog_query *hgf_catalog_sweep(hgf_catalog_query *q, int64_t id)
{
    return by_id(q, ONE_SQL, read_sweep, id);
}

const hgf_catalog_query *hgf_catalog_sweep_report(hgf_catalog_query *q, int64_t id)
{
    return by_id(q, REPORT_SQL, read_report, id);
}
