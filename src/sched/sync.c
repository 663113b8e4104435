#include "hgfleet/sync.h"
#include "hgfleet/buf.h"
#include "hgfleet/conn.h"
#include "hgfleet/conntest.h"
#include "hgfleet/diagnose.h"
#include "hgfleet/ecr.h"
#include "hgfleet/jobs.h"
#include "hgfleet/log.h"
#include "hgfleet/metrics.h"
#include "hgfleet/secret.h"
#include "hgfleet/timeutil.h"

#include <fnmatch.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a policy call found; UNKNOWN (not asked, or failed) stores nothing. */
enum pol_status { POL_UNKNOWN = 0, POL_OK, POL_NONE, POL_DENIED };
static const char *const POL_STATUS[] = {NULL, "ok", "none", "denied"};

typedef struct repo {
    char *name, *arn, *mut, *enc;
    int sop, gone;
    double created;
    int pending;                 /* its calls still in flight */
    int lc_status, rp_status;    /* enum pol_status */
    json_t *lc, *rp;             /* the parsed policies when POL_OK (NULL if unreadable) */
} repo;

/* The job; hgf_sync is its public name. */
typedef struct hgf_sync sync_job;

/* One record of the listing's canonical form, in sync_job.canon: the kind
 * ('R' repository, 'I' image, 'T' tag) and its identifying fields make the
 * key, the other stored fields follow. */
typedef struct canon_rec {
    size_t off, len, key;
} canon_rec;

/* A record by address, for sorting once the arena stops growing. */
typedef struct canon_ref {
    const unsigned char *p;
    size_t len, key;
} canon_ref;

#define FP_HEX_LEN 64

/* The listing's images go to hgf_apply_listing (sql/014) as one PostgreSQL
 * array literal per field: for the i-th image its repository, digest, media
 * type, artifact media type, size and push time (epoch seconds); for each
 * kept tag the index of its image (from 1) and its name. */
enum listing_field { F_REPO, F_DIGEST, F_MEDIA, F_ARTIFACT, F_SIZE, F_PUSHED, F_TAG_IMAGE, F_TAG,
                     N_FIELDS };

enum call_kind { CALL_REPOS, CALL_IMAGES, CALL_LIFECYCLE, CALL_POLICY };
static const char *const CALL_OP[] = {"DescribeRepositories", "DescribeImages",
                                      "GetLifecyclePolicy", "GetRepositoryPolicy"};

/* One request in flight: a page of the repository list, a page of one
 * repository's images, or one of its policies. Each request takes fresh
 * credentials from the shared cache, so a long sync rides through any
 * number of refreshes. */
typedef struct call {
    sync_job *j;
    int kind;            /* enum call_kind */
    int index;           /* the repository; -1 for the list */
    char *next;          /* nextToken of the page to fetch, or NULL */
    int expired_retry;   /* set after the one forced refresh */
    hgf_creds creds;     /* this request's credentials (the target borrows them) */
} call;

struct hgf_sync {
    hgf_runtime *rt;
    int64_t conn_id;
    hgf_connection conn;
    hgf_auth_spec spec;
    char *secret;
    char endpoint[256];
    char rate_key[64];   /* "<account>/<region>/ecr/": adaptive limits per account, region, API */
    repo *repos;
    int n_repos, cap_repos;
    int posture;         /* the job asked for the repositories' policies */
    call list;           /* DescribeRepositories */
    call *tasks;         /* DescribeImages, one per repository */
    call *policies;      /* with posture: lifecycle and repository policy, two per repository */
    json_t *applied;     /* hgf_apply_sync's counts, kept until the job ends */
    char *ok_diag;       /* the diagnosis a successful sync records (zero repositories) */
    int next_repo, active;
    hgf_buf listing[N_FIELDS];   /* the image and tag arrays, see add_image */
    int listing_broken;  /* out of memory while building them: the sync fails */
    hgf_buf canon;       /* the listing's canonical records, for its fingerprint */
    canon_rec *recs;
    size_t n_recs, cap_recs, rec_start;
    int canon_broken;    /* out of memory while recording: no fingerprint */
    char fp[FP_HEX_LEN + 1];   /* "" when the listing has none */
    int unchanged;       /* the stored catalog already was this listing */
    int failed;
    char fail_step[48];
    long fail_status;
    hgf_err err;
    hgf_sync_stats st;
    int64_t started_ms;
    int cancelled;       /* hgf_sync_cancel: callbacks only find it, hgf_sync_free frees it */
    hgf_sync_cb cb;
    void *arg;
};

static void calls_free(call *calls, int n)
{
    for (int i = 0; calls && i < n; i++) {
        free(calls[i].next);
        hgf_creds_clear(&calls[i].creds);
    }
    free(calls);
}

static void job_free(sync_job *j)
{
    for (int i = 0; i < j->n_repos; i++) {
        free(j->repos[i].name);
        free(j->repos[i].arn);
        free(j->repos[i].mut);
        free(j->repos[i].enc);
        json_decref(j->repos[i].lc);
        json_decref(j->repos[i].rp);
    }
    free(j->repos);
    calls_free(j->tasks, j->n_repos);
    calls_free(j->policies, j->policies ? 2 * j->n_repos : 0);
    json_decref(j->applied);
    json_decref(j->st.diagnosis);
    free(j->ok_diag);
    free(j->list.next);
    hgf_creds_clear(&j->list.creds);
    for (int f = 0; f < N_FIELDS; f++)
        hgf_buf_free(&j->listing[f]);
    hgf_buf_free(&j->canon);
    free(j->recs);
    if (j->secret) {
        hgf_secret_wipe(j->secret, strlen(j->secret));
        free(j->secret);
    }
    hgf_conn_free(&j->conn);
    free(j);
}

static void finish(sync_job *j, int rc, json_t *applied)
{
    j->st.seconds = (double)(hgf_time_now_ms() - j->started_ms) / 1000.0;
    j->st.applied = applied;
    if (rc)
        hgf_log_warn("sync.failed", "connection=%lld registry=%s error=%s",
                     (long long)j->conn_id, j->st.registry, j->err.msg);
    else
        hgf_log_info("sync.done", "connection=%lld registry=%s repositories=%d images=%d "
                     "pages=%d catalog=%s posture=%s posture_denied=%d posture_errors=%d "
                     "seconds=%.3f",
                     (long long)j->conn_id, j->st.registry, j->st.repositories, j->st.images,
                     j->st.pages, j->unchanged ? "unchanged" : "applied",
                     j->posture ? "yes" : "no", j->st.posture_denied, j->st.posture_errors,
                     j->st.seconds);
    j->cb(rc, rc ? &j->err : NULL, &j->st, j->arg);
    job_free(j);
}

static void record_status_done(PGresult *res, const hgf_err *err, void *arg)
{
    PQclear(res);
}

static void record_status(sync_job *j, int ok, const char *diagnosis)
{
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long)j->conn_id);
    const char *p[] = {id, ok ? NULL : j->err.msg, diagnosis};
    /* A sync that succeeds leaves a scan's diagnosis: listing works while
     * pulls fail (the guide's first row), and only a scan that ends ok
     * shows the pull was mended. */
    hgf_store_query(j->rt->store,
                    "UPDATE connections SET last_sync_at = now(), last_sync_status = CASE WHEN "
                    "$2::text IS NULL THEN 'ok' ELSE 'failed' END, last_error = $2, "
                    "last_diagnosis = CASE WHEN $3::jsonb IS NULL "
                    "AND last_diagnosis->>'source' = 'scan' THEN last_diagnosis "
                    "ELSE $3::jsonb END WHERE id = $1",
                    3, p, record_status_done, NULL);
}

static char *diagnose(sync_job *j)
{
    hgf_diag_ctx dc = {.step = j->fail_step[0] ? j->fail_step : "Sync",
                       .auth_mode = j->conn.auth_mode, .registry_account = j->conn.reg.account_id,
                       .region = j->conn.reg.region, .role_arn = j->conn.role_arn,
                       .role_chain = j->conn.via_role_arn != NULL,
                       .has_external_id = j->conn.external_id != NULL,
                       .clock_offset = HGF_DIAG_NO_OFFSET, .http_status = j->fail_status};
    hgf_diagnosis d;
    hgf_diag_classify(&j->err, &dc, &d);
    return hgf_diag_to_text(&d, "sync");
}

static void fail(sync_job *j)
{
    char *diag = diagnose(j);
    record_status(j, 0, diag);
    /* The caller shows it too: `sync --wait` prints it beside the error. */
    j->st.diagnosis = diag ? json_loads(diag, 0, NULL) : NULL;
    free(diag);
    finish(j, j->err.code ? j->err.code : HGF_EFAIL, NULL);
}

static void set_failure(sync_job *j, const char *step, const hgf_err *err, long status)
{
    if (j->failed)
        return;
    j->failed = 1;
    j->err = *err;
    j->fail_status = status;
    snprintf(j->fail_step, sizeof j->fail_step, "%s", step);
}

/* ---- writing the result ---------------------------------------------- */

static void succeed(sync_job *j)
{
    record_status(j, 1, j->ok_diag);
    finish(j, 0, j->applied);
}

/* A database error ends the job; 0 otherwise. A cancelled job ends
 * here too, silently: its owner frees it. */
static int check_result(sync_job *j, PGresult *res, const hgf_err *err)
{
    if (j->cancelled) {
        PQclear(res);
        return HGF_EFAIL;
    }
    int rc = err ? hgf_err_set(&j->err, err->code, "%s", err->msg) : hgf_store_check(res, &j->err);
    if (rc) {
        PQclear(res);
        fail(j);
    }
    return rc;
}

static void on_posture_applied(PGresult *res, const hgf_err *err, void *arg)
{
    sync_job *j = arg;
    if (check_result(j, res, err))
        return;
    hgf_store_add_rows_written(j->rt->store, strtol(PQgetvalue(res, 0, 0), NULL, 10));
    PQclear(res);
    succeed(j);
}

/* {"n":name,"ls":status,"lp":policy,"rs":status,"rp":policy}; a status
 * left out (the call failed) keeps what is stored. */
static json_t *posture_row(const repo *r)
{
    json_t *o = json_pack("{s:s}", "n", r->name);
    if (o && r->lc_status) {
        json_object_set_new(o, "ls", json_string(POL_STATUS[r->lc_status]));
        json_object_set(o, "lp", r->lc ? r->lc : json_null());
    }
    if (o && r->rp_status) {
        json_object_set_new(o, "rs", json_string(POL_STATUS[r->rp_status]));
        json_object_set(o, "rp", r->rp ? r->rp : json_null());
    }
    return o;
}

static void apply_posture(sync_job *j)
{
    json_t *rows = json_array();
    for (int i = 0; rows && i < j->n_repos; i++)
        if (!j->repos[i].gone && (j->repos[i].lc_status || j->repos[i].rp_status))
            json_array_append_new(rows, posture_row(&j->repos[i]));
    char *text = rows ? json_dumps(rows, JSON_COMPACT) : NULL;
    json_decref(rows);
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long)j->conn_id);
    const char *p[] = {id, text};
    int rc = text ? hgf_store_query(j->rt->store, "SELECT hgf_apply_posture($1, $2::jsonb)", 2, p,
                                    on_posture_applied, j)
                  : HGF_ENOMEM;
    free(text);
    if (rc) {
        hgf_err_set(&j->err, rc, "database unavailable while saving the repository policies");
        fail(j);
    }
}

/* What the job did with its listing, for /metrics: "unchanged" skipped
 * hgf_apply_sync. */
static void count_catalog(sync_job *j)
{
    hgf_metrics_describe(j->rt->metrics, "hgfleet_sync_catalog_total", HGF_METRIC_COUNTER,
                         "Successful syncs by what they did with the listing: applied, or "
                         "skipped as unchanged (its fingerprint was the stored one).");
    hgf_metrics_inc(j->rt->metrics, "hgfleet_sync_catalog_total",
                    j->unchanged ? "outcome=\"unchanged\"" : "outcome=\"applied\"", 1);
}

/* The catalog is stored (or already was): the diagnosis, then posture. */
static void catalog_stored(sync_job *j)
{
    count_catalog(j);
    if (j->st.repositories == 0) {
        hgf_diag_ctx dc = {.step = "DescribeRepositories", .registry_account = j->conn.reg.account_id,
                           .region = j->conn.reg.region, .clock_offset = HGF_DIAG_NO_OFFSET};
        hgf_diagnosis d;
        hgf_diag_zero_repositories(&dc, &d);
        j->ok_diag = hgf_diag_to_text(&d, "sync");
    }
    if (j->posture)
        apply_posture(j);
    else
        succeed(j);
}

static void on_applied(PGresult *res, const hgf_err *err, void *arg)
{
    sync_job *j = arg;
    if (check_result(j, res, err))
        return;
    j->applied = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    PQclear(res);
    hgf_store_add_rows_written(
        j->rt->store, (long)json_integer_value(json_object_get(j->applied, "rows_written")));
    catalog_stored(j);
}

static void put_repo_json(hgf_buf *b, const repo *r)
{
    json_t *o = json_pack("{s:s, s:s?, s:s?, s:b, s:s?, s:f}", "n", r->name, "a", r->arn, "m",
                          r->mut, "s", r->sop, "e", r->enc, "c", r->created);
    char *t = json_dumps(o, JSON_COMPACT);
    hgf_buf_puts(b, t);
    free(t);
    json_decref(o);
}

/* The whole listing to hgf_apply_listing (sql/009, sql/014), which also
 * stores its fingerprint (NULL when it has none). */
static void send_listing(sync_job *j)
{
    hgf_buf repos = HGF_BUF_INIT;
    hgf_buf_putc(&repos, '[');
    int first = 1;
    for (int i = 0; i < j->n_repos; i++) {
        if (j->repos[i].gone)
            continue;
        if (!first)
            hgf_buf_putc(&repos, ',');
        first = 0;
        put_repo_json(&repos, &j->repos[i]);
    }
    hgf_buf_putc(&repos, ']');
    for (int f = 0; f < N_FIELDS; f++)
        j->listing_broken |= hgf_buf_puts(&j->listing[f], j->listing[f].len ? "}" : "{}") != 0;
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long)j->conn_id);
    const char *p[] = {id, repos.data, j->listing[F_REPO].data, j->listing[F_DIGEST].data,
                       j->listing[F_MEDIA].data, j->listing[F_ARTIFACT].data,
                       j->listing[F_SIZE].data, j->listing[F_PUSHED].data,
                       j->listing[F_TAG_IMAGE].data, j->listing[F_TAG].data,
                       j->fp[0] ? j->fp : NULL};
    /* A whole catalog takes a while: off the main connection (store.h). */
    int rc = j->listing_broken || !repos.data
                 ? HGF_ENOMEM
                 : hgf_store_query_bulk(j->rt->store,
                                        "SELECT hgf_apply_listing($1, $2::jsonb, $3::text[], "
                                        "$4::text[], $5::text[], $6::text[], $7::bigint[], "
                                        "$8::float8[], $9::int[], $10::text[], $11)::text",
                                        11, p, on_applied, j);
    hgf_buf_free(&repos);
    for (int f = 0; f < N_FIELDS; f++)
        hgf_buf_free(&j->listing[f]);
    if (rc) {
        hgf_err_set(&j->err, rc, "%s",
                    rc == HGF_ENOMEM ? "out of memory while sending the catalog"
                                     : "database unavailable while saving the catalog");
        fail(j);
    }
}

static void on_unchanged(PGresult *res, const hgf_err *err, void *arg)
{
    sync_job *j = arg;
    if (check_result(j, res, err))
        return;
    if (PQgetisnull(res, 0, 0)) {
        PQclear(res);
        send_listing(j);
        return;
    }
    j->applied = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    PQclear(res);
    j->unchanged = 1;
    catalog_stored(j);
}

/* ---- the listing's fingerprint ------------------------------------------ */

/* Fields are length-prefixed ("5:hello"), NULL is "-": no two listings
 * encode alike. */
static void canon_field(sync_job *j, const char *s, size_t n)
{
    int rc = s ? hgf_buf_put_i64(&j->canon, (long long)n) || hgf_buf_putc(&j->canon, ':')
               : hgf_buf_putc(&j->canon, '-');
    if (!rc && s)
        rc = hgf_buf_append(&j->canon, s, n);
    j->canon_broken |= rc != 0;
}

static void canon_str(sync_job *j, const char *s)
{
    canon_field(j, s, s ? strlen(s) : 0);
}

/* Times as the text that identifies them exactly. */
static void canon_real(sync_job *j, double v)
{
    char t[HGF_FMT_MAX];
    canon_field(j, t, hgf_fmt_real(t, v));
}

static void canon_int(sync_job *j, long long v)
{
    char t[HGF_FMT_MAX];
    canon_field(j, t, hgf_fmt_i64(t, v));
}

static void canon_begin(sync_job *j, char kind)
{
    j->rec_start = j->canon.len;
    j->canon_broken |= hgf_buf_putc(&j->canon, kind) != 0;
}

/* Ends a record whose key fields end at key_end. */
static void canon_end(sync_job *j, size_t key_end)
{
    if (j->n_recs == j->cap_recs) {
        size_t cap = j->cap_recs ? 2 * j->cap_recs : 256;
        canon_rec *p = realloc(j->recs, cap * sizeof *p);
        if (!p) {
            j->canon_broken = 1;
            return;
        }
        j->recs = p;
        j->cap_recs = cap;
    }
    j->recs[j->n_recs++] = (canon_rec){j->rec_start, j->canon.len - j->rec_start,
                                       key_end - j->rec_start};
}

static void canon_repo(sync_job *j, const repo *r)
{
    canon_begin(j, 'R');
    canon_str(j, r->name);
    size_t key = j->canon.len;
    canon_str(j, r->arn);
    canon_str(j, r->mut);
    canon_int(j, r->sop != 0);
    canon_str(j, r->enc);
    canon_real(j, r->created);
    canon_end(j, key);
}

/* An image, and one record per kept tag: a tag's key is its repository and
 * name, so a tag the listing puts on two digests is seen. */
static void canon_image(sync_job *j, const char *repo_name, const hgf_ecr_image *im,
                        json_t *kept)
{
    canon_begin(j, 'I');
    canon_str(j, repo_name);
    canon_str(j, im->digest);
    size_t key = j->canon.len;
    canon_str(j, im->media_type);
    canon_str(j, im->artifact_media_type);
    canon_int(j, im->size_bytes);
    canon_real(j, im->pushed_at);
    canon_end(j, key);
    size_t i;
    json_t *t;
    json_array_foreach(kept, i, t)
    {
        canon_begin(j, 'T');
        canon_str(j, repo_name);
        canon_field(j, json_string_value(t), json_string_length(t));
        key = j->canon.len;
        canon_str(j, im->digest);
        canon_end(j, key);
    }
}

static int ref_cmp(const void *a, const void *b)
{
    const canon_ref *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->p, y->p, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static int same_key(const canon_ref *x, const canon_ref *y)
{
    return x->key == y->key && !memcmp(x->p, y->p, x->key);
}

/* Hashes the sorted records, identical ones once. Returns -1 when two
 * records share a key but differ (a repository listed twice with other
 * fields, a tag on two digests while it moved during the listing): which one
 * hgf_apply_sync keeps depends on their order, so no fingerprint can stand
 * for the listing. */
static int hash_refs(const canon_ref *refs, size_t n, unsigned char *md, unsigned *md_len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
             EVP_DigestUpdate(ctx, "hgf-catalog-1", 13);
    for (size_t i = 0; ok && i < n; i++) {
        if (i && same_key(&refs[i - 1], &refs[i])) {
            ok = refs[i - 1].len == refs[i].len && !memcmp(refs[i - 1].p, refs[i].p, refs[i].len);
            continue;
        }
        ok = EVP_DigestUpdate(ctx, refs[i].p, refs[i].len);
    }
    ok = ok && EVP_DigestFinal_ex(ctx, md, md_len);
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -1;
}

/* Fills j->fp from every record; leaves it "" when the listing has none. */
static void fingerprint(sync_job *j)
{
    for (int i = 0; i < j->n_repos; i++)
        if (!j->repos[i].gone)
            canon_repo(j, &j->repos[i]);
    j->fp[0] = '\0';
    canon_ref *refs = j->canon_broken ? NULL : calloc(j->n_recs + 1, sizeof *refs);
    if (!refs)
        return;
    const unsigned char *base = (const unsigned char *)j->canon.data;
    for (size_t i = 0; i < j->n_recs; i++)
        refs[i] = (canon_ref){base + j->recs[i].off, j->recs[i].len, j->recs[i].key};
    qsort(refs, j->n_recs, sizeof *refs, ref_cmp);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    if (hash_refs(refs, j->n_recs, md, &md_len) == 0)
        for (unsigned i = 0; i < md_len && 2 * i < FP_HEX_LEN; i++)
            snprintf(j->fp + 2 * i, 3, "%02x", md[i]);
    free(refs);
    if (!j->fp[0])
        hgf_log_info("sync.no_fingerprint", "connection=%lld registry=%s", (long long)j->conn_id,
                     j->st.registry);
}

/* With a fingerprint, one small statement first: a listing equal to the
 * one last applied (and not changed since by anyone else) is not sent. */
static void apply(sync_job *j)
{
    fingerprint(j);
    hgf_buf_free(&j->canon);
    free(j->recs);
    j->recs = NULL;
    j->n_recs = j->cap_recs = 0;
    if (!j->fp[0]) {
        send_listing(j);
        return;
    }
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long)j->conn_id);
    const char *p[] = {id, j->fp};
    int rc = hgf_store_query(j->rt->store, "SELECT hgf_sync_unchanged($1, $2)::text", 2, p,
                             on_unchanged, j);
    if (rc) {
        hgf_err_set(&j->err, rc, "database unavailable while comparing the catalog");
        fail(j);
    }
}

/* ---- DescribeImages per repository ----------------------------------- */

static void start_repos(sync_job *j);
static void call_send(call *c);

/* An array literal's opening brace, or the comma before its next element. */
static int elem_sep(hgf_buf *b)
{
    return hgf_buf_putc(b, b->len ? ',' : '{');
}

int hgf_sync_append_elem(hgf_buf *b, const char *s)
{
    int rc = elem_sep(b);
    if (!s)
        return rc ? rc : hgf_buf_puts(b, "NULL");
    rc = rc ? rc : hgf_buf_putc(b, '"');
    while (!rc && *s) {
        size_t n = strcspn(s, "\"\\");
        rc = hgf_buf_append(b, s, n);
        s += n;
        if (!rc && *s) {
            const char esc[2] = {'\\', *s++};
            rc = hgf_buf_append(b, esc, 2);
        }
    }
    return rc ? rc : hgf_buf_putc(b, '"');
}

static int put_int(hgf_buf *b, long long v)
{
    return elem_sep(b) || hgf_buf_put_i64(b, v);
}

/* A time as text that PostgreSQL reads back as the same double. */
static int put_real(hgf_buf *b, double v)
{
    return elem_sep(b) || hgf_buf_put_real(b, v);
}

/* The image, the j->st.images-th, and its kept tags onto the arrays. */
static int put_image(sync_job *j, const char *repo_name, const hgf_ecr_image *im, json_t *kept)
{
    hgf_buf *l = j->listing;
    int rc = hgf_sync_append_elem(&l[F_REPO], repo_name) ||
             hgf_sync_append_elem(&l[F_DIGEST], im->digest) ||
             hgf_sync_append_elem(&l[F_MEDIA], im->media_type) ||
             hgf_sync_append_elem(&l[F_ARTIFACT], im->artifact_media_type) ||
             put_int(&l[F_SIZE], im->size_bytes) || put_real(&l[F_PUSHED], im->pushed_at);
    size_t i;
    json_t *t;
    json_array_foreach(kept, i, t)
    {
        rc = rc || put_int(&l[F_TAG_IMAGE], j->st.images) ||
             hgf_sync_append_elem(&l[F_TAG], json_string_value(t));
    }
    return rc;
}

static void add_image(sync_job *j, json_t *item)
{
    hgf_ecr_image im;
    hgf_err e;
    const char *repo_name = json_string_value(json_object_get(item, "repositoryName"));
    int rc = hgf_ecr_parse_image(item, &im, &e);
    if (!rc && !repo_name)
        rc = hgf_err_set(&e, HGF_EINPUT, "DescribeImages: item without repositoryName");
    if (rc) {
        hgf_log_warn("sync.bad_item", "registry=%s %s", j->st.registry, e.msg);
        return;
    }
    json_t *kept = json_array();
    if (!kept) {
        j->listing_broken = 1;
        return;
    }
    if (!hgf_sync_filter_tags(im.tags, j->conn.tag_include, j->conn.n_include,
                              j->conn.tag_exclude, j->conn.n_exclude, kept)) {
        j->st.images_filtered++;
        json_decref(kept);
        return;
    }
    j->st.images++;
    j->listing_broken |= put_image(j, repo_name, &im, kept) != 0;
    canon_image(j, repo_name, &im, kept);
    json_decref(kept);
}

static void repo_finished(sync_job *j)
{
    j->active--;
    if (!j->failed)
        start_repos(j);
    if (j->active == 0 && (j->failed || j->next_repo >= j->n_repos)) {
        if (j->failed)
            fail(j);
        else
            apply(j);
    }
}

/* One of a repository's calls is over; the last one finishes it. */
static void part_done(call *c)
{
    if (--c->j->repos[c->index].pending == 0)
        repo_finished(c->j);
}

/* Returns 1 when another page was requested. */
static int next_page(call *c, json_t *page)
{
    const char *next = hgf_ecr_next_token(page);
    free(c->next);
    c->next = next ? strdup(next) : NULL;
    if (!c->next)
        return 0;
    call_send(c);
    return 1;
}

static void on_images_page(call *c, const hgf_aws_result *res)
{
    sync_job *j = c->j;
    if (res->rc && !strcmp(res->err.aws_code, "RepositoryNotFoundException")) {
        /* Deleted between the listing and now: it is gone, not an error. */
        j->repos[c->index].gone = 1;
    } else if (res->rc) {
        set_failure(j, "DescribeImages", &res->err, res->status);
    } else if (!j->failed) {
        j->st.pages++;
        size_t i;
        json_t *item;
        json_array_foreach(json_object_get(res->json, "imageDetails"), i, item) add_image(j, item);
        if (next_page(c, res->json))
            return;
    }
    part_done(c);
}

/* ---- a repository's policies ------------------------------------------ */

static int code_is(const hgf_aws_result *res, const char *code)
{
    return !strcmp(res->err.aws_code, code);
}

/* AWS's text, parsed; NULL when it is not JSON (stored as unreadable).
 * Duplicate keys count as unreadable: storing would keep only one of them,
 * and which one AWS honours is anyone's guess. */
static json_t *policy_json(sync_job *j, const call *c, json_t *page)
{
    const char *text = hgf_ecr_policy_text(page);
    json_error_t jerr;
    json_t *doc = text ? json_loads(text, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (!doc)
        hgf_log_warn("sync.policy_unreadable", "registry=%s repository=%s op=%s",
                     j->st.registry, j->repos[c->index].name, CALL_OP[c->kind]);
    return doc;
}

static void on_policy(call *c, const hgf_aws_result *res)
{
    sync_job *j = c->j;
    repo *r = &j->repos[c->index];
    int lifecycle = c->kind == CALL_LIFECYCLE;
    int *status = lifecycle ? &r->lc_status : &r->rp_status;
    if (!res->rc) {
        *status = POL_OK;
        json_t **doc = lifecycle ? &r->lc : &r->rp;
        *doc = policy_json(j, c, res->json);
    } else if (code_is(res, "LifecyclePolicyNotFoundException") ||
               code_is(res, "RepositoryPolicyNotFoundException")) {
        *status = POL_NONE;
    } else if (code_is(res, "AccessDeniedException") || code_is(res, "AccessDenied")) {
        *status = POL_DENIED;
        j->st.posture_denied++;
    } else if (code_is(res, "RepositoryNotFoundException")) {
        r->gone = 1;
    } else {
        j->st.posture_errors++;
        hgf_log_warn("sync.posture_failed", "registry=%s repository=%s %s", j->st.registry,
                     r->name, res->err.msg);
    }
    part_done(c);
}

static int add_repo(sync_job *j, json_t *item)
{
    hgf_ecr_repo r;
    if (hgf_ecr_parse_repo(item, &r, &j->err))
        return -1;
    if (j->n_repos == j->cap_repos) {
        int cap = j->cap_repos ? j->cap_repos * 2 : 64;
        repo *p = realloc(j->repos, (size_t)cap * sizeof *p);
        if (!p)
            return hgf_err_set(&j->err, HGF_ENOMEM, "out of memory");
        j->repos = p;
        j->cap_repos = cap;
    }
    repo *d = &j->repos[j->n_repos++];
    memset(d, 0, sizeof *d);
    d->name = strdup(r.name);
    d->arn = r.arn ? strdup(r.arn) : NULL;
    d->mut = r.tag_mutability ? strdup(r.tag_mutability) : NULL;
    d->enc = r.encryption ? strdup(r.encryption) : NULL;
    d->sop = r.scan_on_push;
    d->created = r.created_at;
    return 0;
}

static void on_repos_page(call *c, const hgf_aws_result *res)
{
    sync_job *j = c->j;
    if (res->rc) {
        set_failure(j, "DescribeRepositories", &res->err, res->status);
        fail(j);
        return;
    }
    j->st.pages++;
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(res->json, "repositories"), i, item) if (add_repo(j, item))
    {
        j->failed = 1;
        fail(j);
        return;
    }
    if (next_page(c, res->json))
        return;
    j->st.repositories = j->n_repos;
    j->tasks = calloc(j->n_repos ? (size_t)j->n_repos : 1, sizeof *j->tasks);
    if (j->posture)
        j->policies = calloc(j->n_repos ? 2 * (size_t)j->n_repos : 1, sizeof *j->policies);
    if (!j->tasks || (j->posture && !j->policies)) {
        hgf_err_set(&j->err, HGF_ENOMEM, "out of memory");
        j->failed = 1;
        fail(j);
        return;
    }
    if (j->n_repos == 0) {
        apply(j);
        return;
    }
    start_repos(j);
}

static void on_result(const hgf_aws_result *res, void *arg)
{
    call *c = arg;
    if (c->j->cancelled)
        return;
    c->j->st.throttles += res->throttled;
    c->j->st.retries += res->attempts > 1 ? res->attempts - 1 : 0;
    if (res->rc && !c->expired_retry && !strcmp(res->err.aws_code, "ExpiredTokenException")) {
        /* One forced refresh (shared with every job using the same role) and
         * one retry; a second expiry is reported. */
        c->expired_retry = 1;
        /* By key: if another job already replaced these credentials, no new refresh. */
        hgf_credmgr_invalidate_key(c->j->rt->creds, &c->j->spec, c->creds.access_key_id);
        hgf_awsctl_count_retry(c->j->rt->awsctl, "ecr", CALL_OP[c->kind], "expired");
        call_send(c);
        return;
    }
    c->expired_retry = 0;
    if (c->kind == CALL_REPOS)
        on_repos_page(c, res);
    else if (c->kind == CALL_IMAGES)
        on_images_page(c, res);
    else
        on_policy(c, res);
}

static void call_failed(call *c, const char *step, const hgf_err *err)
{
    sync_job *j = c->j;
    if (c->kind == CALL_LIFECYCLE || c->kind == CALL_POLICY) {
        /* A posture call never fails the catalog: nothing is stored for it. */
        j->st.posture_errors++;
        hgf_log_warn("sync.posture_failed", "registry=%s step=%s %s", j->st.registry, step,
                     err->msg);
        part_done(c);
        return;
    }
    set_failure(j, step, err, 0);
    if (c->kind == CALL_REPOS)
        fail(j);
    else
        part_done(c);
}

static int send_op(call *c, const hgf_aws_target *t, hgf_err *e)
{
    sync_job *j = c->j;
    const char *acct = j->conn.reg.account_id;
    const char *name = c->index >= 0 ? j->repos[c->index].name : NULL;
    switch (c->kind) {
    case CALL_REPOS:
        return hgf_ecr_describe_repositories(t, acct, c->next, on_result, c, e);
    case CALL_IMAGES:
        return hgf_ecr_describe_images(t, acct, name, c->next, on_result, c, e);
    case CALL_LIFECYCLE:
        return hgf_ecr_get_lifecycle_policy(t, acct, name, on_result, c, e);
    default:
        return hgf_ecr_get_repository_policy(t, acct, name, on_result, c, e);
    }
}

/* A credential failure names the STS step that failed inside the cache, so
 * the diagnosis can tell a refused AssumeRole from a missing ECR permission. */
static const char *cred_step(const hgf_err *err)
{
    if (!strncmp(err->msg, "AssumeRoleWithWebIdentity", 25))
        return "AssumeRoleWithWebIdentity";
    if (!strncmp(err->msg, "AssumeRole", 10))
        return "AssumeRole";
    return "credentials";
}

static void on_call_creds(int rc, const hgf_err *err, const hgf_creds *creds, void *arg)
{
    call *c = arg;
    sync_job *j = c->j;
    if (j->cancelled)
        return;
    hgf_err e;
    if (!rc)
        rc = hgf_creds_copy(&c->creds, creds, &e);
    else
        e = *err;
    if (rc) {
        call_failed(c, cred_step(&e), &e);
        return;
    }
    hgf_aws_target t = {.http = j->rt->http, .creds = &c->creds, .endpoint = j->endpoint,
                        .region = j->conn.reg.region, .service = "ecr",
                        .limit_key = j->conn.reg.host, .ctl = j->rt->awsctl,
                        .rate_key = j->rate_key};
    j->st.api_calls++;
    if (send_op(c, &t, &e))
        call_failed(c, CALL_OP[c->kind], &e);
}

static void call_send(call *c)
{
    hgf_err e;
    if (hgf_credmgr_get(c->j->rt->creds, &c->j->spec, on_call_creds, c, &e))
        call_failed(c, "credentials", &e);
}

static void launch(sync_job *j, call *c, int kind, int index)
{
    c->j = j;
    c->kind = kind;
    c->index = index;
    call_send(c);
}

/* A repository's DescribeImages and, with posture, its two policies, all at
 * once; the HTTP client's per-registry cap still bounds what is in flight. */
static void start_repos(sync_job *j)
{
    int limit = j->rt->cfg->per_registry_inflight;
    while (!j->failed && j->active < limit && j->next_repo < j->n_repos) {
        int i = j->next_repo++;
        j->active++;
        j->repos[i].pending = j->posture ? 3 : 1;
        if (j->posture) {
            launch(j, &j->policies[2 * i], CALL_LIFECYCLE, i);
            launch(j, &j->policies[2 * i + 1], CALL_POLICY, i);
        }
        launch(j, &j->tasks[i], CALL_IMAGES, i);
    }
}

/* ---- start ---------------------------------------------------------- */

static int prepare(sync_job *j)
{
    int rc = hgf_conn_get(j->rt->store, j->conn_id, &j->conn, &j->err);
    if (rc)
        return rc;
    snprintf(j->st.registry, sizeof j->st.registry, "%s", j->conn.reg.host);
    snprintf(j->rate_key, sizeof j->rate_key, "%s/%s/ecr/", j->conn.reg.account_id,
             j->conn.reg.region);
    rc = hgf_conntest_auth_spec(j->rt, &j->conn, &j->spec, &j->secret, &j->err);
    if (!rc)
        rc = hgf_endpoint_service_url("ECR", &j->conn.reg, j->endpoint, sizeof j->endpoint,
                                      &j->err);
    return rc;
}

int hgf_sync_start(hgf_runtime *rt, int64_t connection_id, hgf_sync_cb cb, void *arg, hgf_err *err)
{
    return hgf_sync_start_opts(rt, connection_id, NULL, cb, arg, NULL, err);
}

int hgf_sync_payload(const json_t *payload, int64_t job_id, int64_t *connection_id,
                     hgf_sync_opts *opts, hgf_err *err)
{
    const json_t *cid = json_object_get(payload, "connection_id");
    const json_t *posture = json_object_get(payload, "posture");
    if (!json_is_integer(cid))
        return hgf_err_set(err, HGF_EINPUT, "job %lld: payload has no integer connection_id",
                           (long long)job_id);
    if (posture && !json_is_boolean(posture))
        return hgf_err_set(err, HGF_EINPUT, "job %lld: payload posture is not true or false",
                           (long long)job_id);
    *connection_id = json_integer_value(cid);
    opts->posture = json_is_true(posture);
    return 0;
}

int hgf_sync_start_job(hgf_runtime *rt, const json_t *payload, int64_t job_id, hgf_sync_cb cb,
                       void *arg, hgf_sync **out, hgf_err *err)
{
    int64_t id = 0;
    hgf_sync_opts o = {0};
    int rc = hgf_sync_payload(payload, job_id, &id, &o, err);
    return rc ? rc : hgf_sync_start_opts(rt, id, &o, cb, arg, out, err);
}

void hgf_sync_cancel(hgf_sync *j)
{
    if (j)
        j->cancelled = 1;
}

void hgf_sync_free(hgf_sync *j)
{
    if (j)
        job_free(j);
}

int hgf_sync_start_opts(hgf_runtime *rt, int64_t connection_id, const hgf_sync_opts *opts,
                        hgf_sync_cb cb, void *arg, hgf_sync **out, hgf_err *err)
{
    sync_job *j = calloc(1, sizeof *j);
    if (!j)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    j->rt = rt;
    j->conn_id = connection_id;
    j->posture = opts && opts->posture;
    j->cb = cb;
    j->arg = arg;
    j->started_ms = hgf_time_now_ms();
    j->st.connection_id = connection_id;
    hgf_err_clear(&j->err);
    int rc = prepare(j);
    if (rc) {
        hgf_err_set(err, rc, "%s", j->err.msg);
        if (j->conn.id) {
            char *diag = diagnose(j);
            record_status(j, 0, diag);
            free(diag);
        }
        job_free(j);
        return rc;
    }
    if (out)
        *out = j;
    launch(j, &j->list, CALL_REPOS, -1);
    return 0;
}

static int any_match(const char *tag, char *const *globs, int n)
{
    for (int i = 0; i < n; i++)
        if (fnmatch(globs[i], tag, 0) == 0)
            return 1;
    return 0;
}

int hgf_sync_filter_tags(json_t *tags, char *const *include, int n_include,
                         char *const *exclude, int n_exclude, json_t *kept)
{
    if (json_array_size(tags) == 0)
        return n_include == 0;
    size_t i;
    json_t *v;
    json_array_foreach(tags, i, v)
    {
        const char *tag = json_string_value(v);
        if (tag && (n_include == 0 || any_match(tag, include, n_include)) &&
            !any_match(tag, exclude, n_exclude))
            json_array_append(kept, v);
    }
    return json_array_size(kept) > 0;
}

int hgf_sync_queue_first(hgf_store *s, int64_t connection_id, int64_t *job_id, hgf_err *err)
{
    char payload[80], key[40];
    snprintf(payload, sizeof payload, "{\"connection_id\":%lld,\"posture\":true}",
             (long long)connection_id);
    snprintf(key, sizeof key, "sync:%lld", (long long)connection_id);
    return hgf_jobs_enqueue(s, "sync", payload, 5, key, job_id, NULL, err);
}
