#include "hgfleet/scan.h"
#include "hgfleet/conn.h"
#include "hgfleet/conntest.h"
#include "hgfleet/diagnose.h"
#include "hgfleet/log.h"
#include "hgfleet/posture.h"
#include "hgfleet/registry.h"
#include "hgfleet/scanner.h"
#include "hgfleet/secret.h"
#include "hgfleet/timeutil.h"
#include "hgfleet/worker.h"

#include <ev.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GONE_REMEDY                                                                         \
    "manifest not found: the image was deleted between catalog sync and scan (a lifecycle " \
    "policy expiring untagged images?). Keep the policy's untagged window at least as long " \
    "as the scan interval."

#define MANIFEST_MAX_RETRIES 4

/* A scan's own rows (its scans row, the image's config user) are written
 * through the bulk connections: the main one carries the job claims, which a
 * burst of push events must not find queued behind the scans they caused.
 * Each statement stands alone; the worker records the job's outcome on the
 * main connection only after the scans row is written. */

/* The job; hgf_scan is its public name. */
typedef struct hgf_scan {
    hgf_runtime *rt;
    hgf_connection conn;
    hgf_auth_spec spec;
    char *secret;
    char repo[257], digest[80], tag[300], ecr_endpoint[256];
    char fresh_after[64];    /* a sweep's: an ok scan finished since then will do */
    int64_t image_id, scan_id;
    char attempt[16];        /* the job's attempt this run holds the lease for, as text */
    char *password;          /* decoded from the ECR token */
    char *basic;             /* the token as given (base64 "AWS:<password>") */
    char proxy[512], media_type[160];
    int need_config;         /* the image's config user was never read */
    int token_refreshed;     /* a refused token was replaced once already */
    int manifest_retries;
    int already_ok;          /* a run that died stored this job's scan, or one fresh enough is */
    int in_scanner;          /* hgf_scanner_scan runs for it */
    ev_timer manifest_timer; /* a retry of the manifest's first request */
    /* the outcome, kept until it is stored */
    const char *fin_status;
    hgf_err fin_err;
    int fin_has_err, fin_retry;
    json_t *fin_result;
    int cancelled;           /* hgf_scan_cancel: callbacks only find it, hgf_scan_free frees it */
    hgf_scan_done_cb cb;
    void *arg;
} scan_job;

static void drop_secret(char **p)
{
    if (*p) {
        hgf_secret_wipe(*p, strlen(*p));
        free(*p);
        *p = NULL;
    }
}

static void job_free(scan_job *j)
{
    ev_timer_stop(j->rt->loop, &j->manifest_timer);
    json_decref(j->fin_result);
    drop_secret(&j->secret);
    drop_secret(&j->password);
    drop_secret(&j->basic);
    hgf_conn_free(&j->conn);
    free(j);
}

static void ignore(PGresult *res, const hgf_err *err, void *arg)
{
    PQclear(res);
}

/* Records the outcome (the scan row, and for a vanished image the image
 * row) and ends the job. */
/* The job's result: which scan, of what, ending how. */
static json_t *scan_result(const scan_job *j, const char *status)
{
    return json_pack("{s:I, s:s, s:s, s:s}", "scan_id", (json_int_t)j->scan_id, "status", status,
                     "repository", j->repo, "digest", j->digest);
}

/* The worker hears of the outcome only once it is stored: a scan whose row
 * could not be written (the database went away) is run again, never
 * reported done with nothing to show for it. */
static void report_outcome(scan_job *j, const hgf_err *db_err)
{
    hgf_err e = j->fin_err;
    if (db_err) {
        hgf_err_set(&e, HGF_EDB, "recording scan %lld: %s", (long long)j->scan_id, db_err->msg);
        j->cb("failed", &e, 1, j->fin_result, j->arg);
    } else {
        j->cb(j->fin_status, j->fin_has_err ? &e : NULL, j->fin_retry, j->fin_result, j->arg);
    }
    job_free(j);
}

/* A cancelled job's callbacks end here: its owner frees it. */
static int cancelled(scan_job *j, PGresult *res)
{
    if (!j->cancelled)
        return 0;
    PQclear(res);
    return 1;
}

static void on_recorded(PGresult *res, const hgf_err *err, void *arg)
{
    hgf_err e;
    if (cancelled(arg, res))
        return;
    if (!err && res && PQresultStatus(res) != PGRES_COMMAND_OK) {
        hgf_store_check(res, &e);
        PQclear(res);
        report_outcome(arg, &e);
        return;
    }
    /* No row: the job's lease passed to another run (its lease expired while
     * the database was away); that run's result is the one that counts. */
    int fenced = !err && res && !strcmp(PQcmdTuples(res), "0");
    PQclear(res);
    if (fenced)
        hgf_err_set(&e, HGF_EDB, "scan result not stored: this job's lease has passed to another run");
    report_outcome(arg, fenced ? &e : err);
}

/* A run holds its job while the job runs under this process and the run's
 * attempt: the fence on both the scan's open and its outcome. JOB, OWNER and
 * ATTEMPT are SQL expressions. */
#define JOB_HELD(job, owner, attempt)                                                      \
    "EXISTS (SELECT 1 FROM jobs WHERE jobs.id = " job " AND jobs.state = 'running'"       \
    " AND jobs.lease_owner = " owner " AND jobs.attempts = " attempt "::int)"

static void finish(scan_job *j, const char *status, const hgf_err *err, int retry,
                   const hgf_scan_summary *sum, json_t *report)
{
    char sid[24], iid[24];
    snprintf(sid, sizeof sid, "%lld", (long long)j->scan_id);
    snprintf(iid, sizeof iid, "%lld", (long long)j->image_id);
    json_t *summary = sum ? json_pack("{s:i, s:i, s:i, s:i, s:i}", "critical", sum->critical,
                                      "high", sum->high, "medium", sum->medium, "low", sum->low,
                                      "unknown", sum->unknown)
                          : NULL;
    char *sum_text = summary ? json_dumps(summary, JSON_COMPACT) : NULL;
    char *rep_text = report ? json_dumps(report, JSON_COMPACT) : NULL;
    if (rep_text && strlen(rep_text) > HGF_SCAN_MAX_REPORT) {
        free(rep_text);
        rep_text = strdup("{\"truncated\":true,\"reason\":\"report larger than the stored limit\"}");
    }
    j->fin_status = status;
    j->fin_has_err = err != NULL;
    if (err)
        j->fin_err = *err;
    j->fin_retry = retry;
    j->fin_result = scan_result(j, status);
    if (summary)
        json_object_set_new(j->fin_result, "summary", summary);
    char cid[24];
    snprintf(cid, sizeof cid, "%lld", (long long)j->conn.id);
    const char *p[] = {sid, status, sum_text, rep_text, err ? err->msg : NULL, j->rt->owner,
                       iid, j->attempt, cid};
    /* One statement: a vanished image is marked deleted before the outcome
     * is reported (two bulk statements could commit in either order). The
     * scan row is fenced by the lease: a run whose job was taken over (its
     * lease expired during a database outage while it scanned) stores
     * nothing, so a digest is never stored as scanned twice. The attempt
     * too: the same replica may hold the job again, and a stale run whose
     * open came late has a row of its own. */
    int rc = hgf_store_query_bulk(j->rt->store,
                                  "WITH gone AS (UPDATE images SET deleted_at = "
                                  "coalesce(deleted_at, now()) WHERE id = $7 AND $2 = 'skipped'), "
                                  "healed AS (UPDATE connections SET last_diagnosis = NULL "
                                  "WHERE id = $9 AND $2 = 'ok' "
                                  "AND last_diagnosis->>'source' = 'scan') "
                                  "UPDATE scans SET status = $2, finished_at = now(), "
                                  "summary = $3::jsonb, report = $4::jsonb, error = $5 "
                                  "WHERE id = $1 AND (scans.job_id IS NULL OR "
                                  JOB_HELD("scans.job_id", "$6", "$8") ")",
                                  9, p, on_recorded, j);
    free(sum_text);
    free(rep_text);
    if (rc) {
        hgf_err e;
        hgf_err_set(&e, HGF_EDB, "the database is unreachable");
        report_outcome(j, &e);
    }
}

/* A scan's diagnosis stays on the connection, through syncs that succeed,
 * until a scan of the connection ends ok (finish clears it). */
static void store_diagnosis(scan_job *j, const char *step, const hgf_err *err, long status)
{
    hgf_diag_ctx dc = {.step = step, .auth_mode = j->conn.auth_mode,
                       .registry_account = j->conn.reg.account_id, .region = j->conn.reg.region,
                       .role_arn = j->conn.role_arn, .clock_offset = HGF_DIAG_NO_OFFSET,
                       .http_status = status};
    hgf_diagnosis d;
    hgf_diag_classify(err, &dc, &d);
    char *text = hgf_diag_to_text(&d, "scan");
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long)j->conn.id);
    const char *p[] = {id, text};
    hgf_store_query_bulk(j->rt->store,
                         "UPDATE connections SET last_diagnosis = $2::jsonb WHERE id = $1", 2, p,
                         ignore, NULL);
    free(text);
}

static void on_scanned(const hgf_scan_result *r, void *arg)
{
    scan_job *j = arg;
    j->in_scanner = 0;
    if (j->cancelled)
        return;
    if (r->rc == HGF_ENOTFOUND) {
        hgf_err e;
        hgf_err_set(&e, HGF_ENOTFOUND, "%s", GONE_REMEDY);
        finish(j, "skipped", &e, 0, NULL, NULL);
    } else if (r->rc) {
        finish(j, "failed", &r->err, r->retryable, NULL, NULL);
    } else {
        finish(j, "ok", NULL, 0, &r->summary, r->report);
    }
}

static void run_scanner(scan_job *j)
{
    /* The tools take host[:port]; a simulator's proxyEndpoint may carry a path. */
    const char *start = strstr(j->proxy, "://");
    start = start ? start + 3 : j->proxy;
    char host[256];
    snprintf(host, sizeof host, "%.*s", (int)strcspn(start, "/"), start);
    hgf_scan_target t = {.registry_host = host, .registry_url = j->proxy, .repository = j->repo,
                         .digest = j->digest, .tag = j->tag[0] ? j->tag : NULL,
                         .media_type = j->media_type, .username = "AWS", .password = j->password};
    hgf_err err;
    j->in_scanner = 1;
    if (hgf_scanner_scan(j->rt->scanner, &t, on_scanned, j, &err)) {
        j->in_scanner = 0;
        finish(j, "failed", &err, 0, NULL, NULL);
    }
}

/* ---- the config user (posture) ---------------------------------------- */

/* The config descriptor's mediaType in the image manifest, into out. */
static void config_type(const hgf_registry_image *img, char *out, size_t n)
{
    json_t *m = json_loadb(img->manifest, img->manifest_len, 0, NULL);
    const char *mt = json_string_value(json_object_get(json_object_get(m, "config"),
                                                       "mediaType"));
    snprintf(out, n, "%s", mt ? mt : "");
    json_decref(m);
}

static void store_config(scan_job *j, const char *kind, const char *user)
{
    char iid[24];
    snprintf(iid, sizeof iid, "%lld", (long long)j->image_id);
    const char *p[] = {iid, kind, user};
    hgf_store_query_bulk(j->rt->store,
                         "UPDATE images SET config_kind = $2, config_user = $3, "
                         "config_read_at = now() WHERE id = $1",
                         3, p, ignore, NULL);
}

/* What a config blob holds: an image's user, or no image at all. */
static void judge_config(scan_job *j, const hgf_registry_image *img)
{
    char mt[160], user[HGF_POSTURE_USER_MAX];
    hgf_err e;
    config_type(img, mt, sizeof mt);
    if (!hgf_posture_is_image_config(mt)) {
        store_config(j, "artifact", NULL);
    } else if (hgf_posture_config_user(img->config_body, img->config_len, user, sizeof user, &e)) {
        hgf_log_warn("scan.config_unreadable", "registry=%s repository=%s digest=%s %s",
                     j->conn.reg.host, j->repo, j->digest, e.msg);
        store_config(j, "unreadable", NULL);
    } else {
        store_config(j, "image", user);
    }
}

static int manifest_failed(scan_job *j, int rc, long status, const hgf_err *err);

/* The manifest's GET stands for the HEAD here, so its failure is handled as
 * the HEAD's would be. A failure after it (the platform manifest, the config)
 * stores nothing, so the next scan tries again, and the scan goes on. */
static void on_config(const hgf_registry_image *img, void *arg)
{
    scan_job *j = arg;
    if (j->cancelled)
        return;
    if (img->rc && !img->reference_fetched) {
        manifest_failed(j, img->rc, img->status, &img->err);
        return;
    }
    snprintf(j->media_type, sizeof j->media_type, "%s", img->reference_media_type);
    if (img->rc)
        hgf_log_warn("scan.config_failed", "registry=%s repository=%s digest=%s %s",
                     j->conn.reg.host, j->repo, j->digest, img->err.msg);
    else
        judge_config(j, img);
    run_scanner(j);
}

static void read_config(scan_job *j)
{
    hgf_buf auth = HGF_BUF_INIT;
    hgf_buf_printf(&auth, "Basic %s", j->basic ? j->basic : "");
    hgf_registry_req req = {.http = j->rt->http, .proxy_endpoint = j->proxy,
                            .authorization = auth.data, .repository = j->repo,
                            .reference = j->digest, .limit_key = j->conn.reg.host};
    hgf_err e;
    int rc = hgf_registry_image_config(&req, on_config, j, &e);
    hgf_secret_wipe_buf(&auth);
    if (rc)
        finish(j, "failed", &e, 0, NULL, NULL);
}

static void request_token(scan_job *j);
static void on_manifest(const hgf_registry_result *r, void *arg);

static void send_head(scan_job *j)
{
    hgf_buf auth = HGF_BUF_INIT;
    hgf_err e;
    hgf_buf_printf(&auth, "Basic %s", j->basic ? j->basic : "");
    hgf_registry_req req = {.http = j->rt->http, .proxy_endpoint = j->proxy,
                            .authorization = auth.data, .repository = j->repo,
                            .reference = j->digest, .limit_key = j->conn.reg.host, .head = 1};
    int rc = hgf_registry_manifest(&req, on_manifest, j, &e);
    hgf_secret_wipe_buf(&auth);
    if (rc)
        finish(j, "failed", &e, 0, NULL, NULL);
}

/* The image's first registry request: a first scan GETs the manifest on its
 * way to the config (a HEAD before it would ask for the same manifest
 * twice); a later one only HEADs it. Either tells whether the image is
 * there and the token is good. */
static void send_manifest(scan_job *j)
{
    if (j->need_config)
        read_config(j);
    else
        send_head(j);
}

static void on_manifest_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    send_manifest(w->data);
}

/* A registry that throttles (429), fails (5xx) or drops the connection is
 * asked again after the SDKs' backoff, as ECR's own API calls are. */
static int retry_manifest(scan_job *j, int rc, long status)
{
    int transient = status == 429 || status >= 500 || (rc == HGF_EHTTP && !status);
    if (!transient || j->manifest_retries >= MANIFEST_MAX_RETRIES)
        return 0;
    double delay = hgf_awsctl_backoff(j->manifest_retries++, (double)rand() / RAND_MAX);
    ev_timer_set(&j->manifest_timer, delay, 0.);
    ev_timer_start(j->rt->loop, &j->manifest_timer);
    return 1;
}

/* 0 when the manifest's first request succeeded; else it is retried, or the
 * image is gone, or the token is replaced, or the job ends, and 1. */
static int manifest_failed(scan_job *j, int rc, long status, const hgf_err *err)
{
    if (!rc)
        return 0;
    if (retry_manifest(j, rc, status))
        return 1;
    if (rc == HGF_ENOTFOUND) {
        hgf_err e;
        hgf_err_set(&e, HGF_ENOTFOUND, "%s", GONE_REMEDY);
        hgf_log_info("scan.gone", "registry=%s repository=%s digest=%s", j->conn.reg.host,
                     j->repo, j->digest);
        finish(j, "skipped", &e, 0, NULL, NULL);
        return 1;
    }
    if ((status == 401 || status == 403) && !j->token_refreshed) {
        /* A registry refuses an expired token as it refuses a missing
         * permission: a fresh token tells the two apart. */
        j->token_refreshed = 1;
        hgf_credmgr_invalidate_ecr_token(j->rt->creds, &j->spec, j->conn.reg.account_id,
                                         j->ecr_endpoint, j->basic);
        request_token(j);
        return 1;
    }
    if (status == 401 || status == 403)
        store_diagnosis(j, "ManifestHead", err, status);
    finish(j, "failed", err, rc == HGF_EHTTP || status >= 500, NULL, NULL);
    return 1;
}

static void on_manifest(const hgf_registry_result *r, void *arg)
{
    scan_job *j = arg;
    if (j->cancelled || manifest_failed(j, r->rc, r->status, &r->err))
        return;
    snprintf(j->media_type, sizeof j->media_type, "%s", r->media_type);
    run_scanner(j);
}

static int decode_password(scan_job *j, const char *token, hgf_err *err)
{
    hgf_buf raw = HGF_BUF_INIT;
    int rc = hgf_base64_decode(token, &raw, err);
    const char *colon = rc ? NULL : memchr(raw.data, ':', raw.len);
    if (!rc && !colon)
        rc = hgf_err_set(err, HGF_EFAIL, "GetAuthorizationToken: token is not user:password");
    if (!rc)
        j->password = strdup(colon + 1);
    hgf_secret_wipe_buf(&raw);
    return rc;
}

static void on_token(int rc, const hgf_err *err, const char *token, const char *proxy, void *arg)
{
    scan_job *j = arg;
    hgf_err e;
    if (j->cancelled)
        return;
    if (rc) {
        int expired = !strcmp(err->aws_code, "ExpiredTokenException");
        if (expired)
            hgf_credmgr_invalidate(j->rt->creds, &j->spec);
        /* The guide's commonest pitfall (the token granted on a repository
         * ARN) fails here, in every scan, while syncs succeed. */
        if (!strcmp(err->aws_code, "AccessDeniedException") || !strcmp(err->aws_code, "AccessDenied"))
            store_diagnosis(j, "GetAuthorizationToken", err, 0);
        finish(j, "failed", err, expired || !hgf_worker_error_is_permanent(err), NULL, NULL);
        return;
    }
    drop_secret(&j->password);
    drop_secret(&j->basic);
    if (decode_password(j, token, &e)) {
        finish(j, "failed", &e, 0, NULL, NULL);
        return;
    }
    j->basic = strdup(token);
    snprintf(j->proxy, sizeof j->proxy, "%s", proxy);
    send_manifest(j);
}

static void request_token(scan_job *j)
{
    hgf_err err;
    if (hgf_credmgr_ecr_token(j->rt->creds, &j->spec, j->conn.reg.account_id, j->ecr_endpoint,
                              on_token, j, &err))
        finish(j, "failed", &err, 0, NULL, NULL);
}

static int copy_payload(scan_job *j, json_t *payload, hgf_err *err)
{
    json_t *cid = json_object_get(payload, "connection_id");
    json_t *iid = json_object_get(payload, "image_id");
    const char *repo = json_string_value(json_object_get(payload, "repository"));
    const char *digest = json_string_value(json_object_get(payload, "digest"));
    const char *tag = json_string_value(json_object_get(payload, "tag"));
    json_t *fresh = json_object_get(payload, "fresh_after");
    /* Checked here so that a bad value names its field, not PostgreSQL's
     * cast error at the open. */
    if (fresh && (!json_is_string(fresh) || json_string_length(fresh) >= sizeof j->fresh_after ||
                  hgf_time_parse_iso(json_string_value(fresh)) < 0))
        return hgf_err_set(err, HGF_EINPUT,
                           "scan payload: fresh_after must be an ISO 8601 timestamp");
    if (!json_is_integer(cid) || !json_is_integer(iid) || !repo || !digest ||
        strlen(repo) >= sizeof j->repo || !hgf_registry_is_digest(digest))
        return hgf_err_set(err, HGF_EINPUT, "scan payload needs connection_id, image_id, "
                                            "repository and a sha256 digest");
    j->conn.id = json_integer_value(cid);
    j->image_id = json_integer_value(iid);
    snprintf(j->repo, sizeof j->repo, "%s", repo);
    snprintf(j->digest, sizeof j->digest, "%s", digest);
    snprintf(j->tag, sizeof j->tag, "%s", tag ? tag : "");
    snprintf(j->fresh_after, sizeof j->fresh_after, "%s", fresh ? json_string_value(fresh) : "");
    return 0;
}

/* Ends a job that never got as far as a scan row: nothing to record. */
static void end_early(scan_job *j, const hgf_err *err)
{
    j->cb("failed", err, !hgf_worker_error_is_permanent(err), NULL, j->arg);
    job_free(j);
}

static void end_already_ok(scan_job *j)
{
    hgf_log_info("scan.already_done", "registry=%s repository=%s digest=%s scan=%lld",
                 j->conn.reg.host, j->repo, j->digest, (long long)j->scan_id);
    json_t *result = scan_result(j, "ok");
    json_object_set_new(result, "already_stored", json_true());
    j->cb("ok", NULL, 0, result, j->arg);
    json_decref(result);
    job_free(j);
}

/* The connection, and the job's own ok scan if a run that died stored one
 * (else its row an interrupted run left queued, sql/015, else a new row), in
 * one round trip sent from the loop: a start never waits on the database, so
 * a burst of claimed jobs starts at once. A run whose job has passed to
 * another run (its lease expired while this open waited) opens no row: the
 * newer run opens its own, and two rows would each store a scan. A sweep's
 * job ($7, fresh_after) is also done by any ok scan of the digest finished
 * since: the sweep chose its images in one snapshot, and a scan that ended
 * after it (its job no longer live to dedup against) would be stored twice
 * (tests/integration/test_sweep_scan_race.sh). Other jobs skip that look-up
 * (a one-time filter on $7, also in a generic plan). The last four columns follow
 * HGF_CONN_COLUMNS. */
static const char OPEN_SQL[] =
    "WITH c AS (SELECT %s FROM connections WHERE id = $4::bigint AND removed_at IS NULL), "
    "l AS (SELECT $3::bigint IS NULL OR " JOB_HELD("$3::bigint", "$5", "$6") " AS held), "
    "done AS ((SELECT id FROM scans WHERE job_id = $3::bigint AND status = 'ok' LIMIT 1) "
    " UNION ALL (SELECT id FROM scans WHERE $7::timestamptz IS NOT NULL AND image_id = $1::bigint "
    "  AND status = 'ok' AND finished_at >= $7::timestamptz ORDER BY id DESC LIMIT 1) LIMIT 1), "
    "again AS (UPDATE scans SET status = 'running', scanner = $2, started_at = now() "
    " WHERE id = (SELECT max(id) FROM scans WHERE job_id = $3::bigint AND status = 'queued') "
    " AND NOT EXISTS (SELECT 1 FROM done) AND EXISTS (SELECT 1 FROM c) "
    " AND (SELECT held FROM l) RETURNING id), "
    "ins AS (INSERT INTO scans (image_id, scanner, status, started_at, job_id) "
    " SELECT $1, $2, 'running', now(), $3::bigint WHERE NOT EXISTS (SELECT 1 FROM done) "
    " AND NOT EXISTS (SELECT 1 FROM again) AND EXISTS (SELECT 1 FROM c) "
    " AND (SELECT held FROM l) RETURNING id) "
    "SELECT c.*, coalesce((SELECT id FROM ins), (SELECT id FROM again), (SELECT id FROM done)), "
    " (SELECT config_read_at IS NULL FROM images WHERE id = $1), EXISTS (SELECT 1 FROM done), "
    " (SELECT held FROM l) "
    "FROM c";

static int prepare(scan_job *j, const PGresult *r, hgf_err *err)
{
    int last = PQnfields(r) - 1;
    if (PQntuples(r) == 0)
        return hgf_err_set(err, HGF_ENOTFOUND, "no connection with id %lld",
                           (long long)j->conn.id);
    if (strcmp(PQgetvalue(r, 0, last), "t"))
        return hgf_err_set(err, HGF_EDB,
                           "scan not opened: this job's lease has passed to another run");
    j->scan_id = atoll(PQgetvalue(r, 0, last - 3));
    j->need_config = !strcmp(PQgetvalue(r, 0, last - 2), "t");
    j->already_ok = !strcmp(PQgetvalue(r, 0, last - 1), "t");
    int rc = hgf_conn_from_row(r, 0, &j->conn, err);
    if (!rc)
        rc = hgf_conntest_auth_spec(j->rt, &j->conn, &j->spec, &j->secret, err);
    if (!rc)
        rc = hgf_endpoint_service_url("ECR", &j->conn.reg, j->ecr_endpoint,
                                      sizeof j->ecr_endpoint, err);
    return rc;
}

static void on_opened(PGresult *res, const hgf_err *db_err, void *arg)
{
    scan_job *j = arg;
    hgf_err e;
    hgf_err_clear(&e);
    if (cancelled(j, res))
        return;
    int rc = db_err ? hgf_err_set(&e, db_err->code, "%s", db_err->msg)
                    : hgf_store_check(res, &e);
    if (!rc)
        rc = prepare(j, res, &e);
    PQclear(res);
    if (!rc && j->already_ok) {
        end_already_ok(j);
        return;
    }
    /* No per-registry wait here: the worker starts a scan only while its
     * registry is under HGFLEET_SCANS_PER_REGISTRY (worker.h). */
    if (!rc)
        request_token(j);
    else if (j->scan_id && !j->already_ok) /* the row is open: it says why */
        finish(j, "failed", &e, !hgf_worker_error_is_permanent(&e), NULL, NULL);
    else
        end_early(j, &e);
}

static int open_scan(scan_job *j, int64_t job_id, hgf_err *err)
{
    char sql[sizeof OPEN_SQL + 1024], iid[24], jid[24], cid[24];
    if (snprintf(sql, sizeof sql, OPEN_SQL, HGF_CONN_COLUMNS) >= (int)sizeof sql)
        return hgf_err_set(err, HGF_EFAIL, "scan: connection columns outgrew the query buffer");
    snprintf(iid, sizeof iid, "%lld", (long long)j->image_id);
    snprintf(jid, sizeof jid, "%lld", (long long)job_id);
    snprintf(cid, sizeof cid, "%lld", (long long)j->conn.id);
    const char *p[] = {iid, hgf_scanner_name(j->rt->scanner), job_id ? jid : NULL, cid,
                       j->rt->owner, j->attempt, j->fresh_after[0] ? j->fresh_after : NULL};
    int rc = hgf_store_query_bulk(j->rt->store, sql, 7, p, on_opened, j);
    return rc ? hgf_err_set(err, rc, "the database is unreachable") : 0;
}

int hgf_scan_start(hgf_runtime *rt, int64_t job_id, int attempt, json_t *payload,
                   hgf_scan_done_cb cb, void *arg, hgf_scan **out, hgf_err *err)
{
    scan_job *j = calloc(1, sizeof *j);
    if (!j)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    j->rt = rt;
    snprintf(j->attempt, sizeof j->attempt, "%d", attempt);
    j->cb = cb;
    j->arg = arg;
    ev_init(&j->manifest_timer, on_manifest_timer);
    j->manifest_timer.data = j;
    int rc = rt->scanner ? copy_payload(j, payload, err)
                         : hgf_err_set(err, HGF_EINPUT, "no scanner configured");
    if (!rc)
        rc = open_scan(j, job_id, err);
    if (rc)
        job_free(j);
    else if (out)
        *out = j;
    return rc;
}

void hgf_scan_cancel(hgf_scan *j)
{
    if (!j)
        return;
    j->cancelled = 1;
    ev_timer_stop(j->rt->loop, &j->manifest_timer);
}

void hgf_scan_free(hgf_scan *j)
{
    if (j)
        job_free(j);
}

int hgf_scan_in_scanner(const hgf_scan *j)
{
    return j && j->in_scanner;
}

int hgf_scan_connection(const json_t *payload, int64_t *connection_id)
{
    json_t *cid = json_object_get(payload, "connection_id");
    if (!json_is_integer(cid))
        return HGF_EINPUT;
    *connection_id = json_integer_value(cid);
    return 0;
}
