#include "hgfleet/cli.h"
#include "hgfleet/conn.h"
#include "hgfleet/jobs.h"
#include "hgfleet/worker.h"

#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "Usage: hgfleet sync [ID|REGISTRY_URL ...|--all] [--wait] [--json]\n"
    "\n"
    "Queues a sync of the named connections (or of all of them with --all):\n"
    "DescribeRepositories, then DescribeImages per repository, every page.\n"
    "\n"
    "  --all     every connection\n"
    "  --wait    work the queue in this process until these syncs are done\n"
    "            (scans they queue are left to the servers)\n"
    "  --json    print one JSON object per job on stdout: queued, or with --wait\n"
    "            its outcome\n"
    "\n"
    "Exit codes: 0 queued (or, with --wait, all succeeded), 1 a sync failed or the\n"
    "database is unreachable, 2 bad arguments or an unknown connection.\n";

typedef struct sync_opts {
    int all, wait, json;
    char **targets;
    int n_targets;
} sync_opts;

static int parse(int argc, char **argv, sync_opts *o)
{
    o->targets = calloc((size_t)argc, sizeof *o->targets);
    for (int i = 1; i < argc; i++) {
        hgf_err err;
        if (!strcmp(argv[i], "--all"))
            o->all = 1;
        else if (!strcmp(argv[i], "--wait"))
            o->wait = 1;
        else if (!strcmp(argv[i], "--json"))
            o->json = 1;
        else if (argv[i][0] == '-')
            return hgf_cli_usage_error("sync", "unknown option %s", argv[i]);
        else if (hgf_conn_key_check(argv[i], NULL, &err))
            return hgf_cli_fail(&err);
        else
            o->targets[o->n_targets++] = argv[i];
    }
    if (o->all && o->n_targets)
        return hgf_cli_usage_error("sync", "--all: cannot be combined with named connections");
    if (!o->all && !o->n_targets)
        return hgf_cli_usage_error("sync", "name connections (ID or REGISTRY_URL) or pass --all");
    return 0;
}

static int collect(hgf_runtime *rt, const sync_opts *o, hgf_connection **list, int *n, hgf_err *err)
{
    if (o->all)
        return hgf_conn_list(rt->store, list, n, err);
    *list = calloc((size_t)o->n_targets, sizeof **list);
    *n = 0;
    for (int i = 0; i < o->n_targets; i++) {
        int rc = hgf_conn_find(rt->store, o->targets[i], &(*list)[i], err);
        if (rc)
            return rc == HGF_ENOTFOUND ? (err->code = HGF_EINPUT) : rc;
        *n = i + 1;
    }
    return 0;
}

typedef struct report {
    int json, failed, done;
} report;

/* Without --wait: one line per job, JSON with --json like --wait's lines. */
static void print_queued(const hgf_connection *list, const int64_t *ids, int n, int json)
{
    for (int i = 0; i < n; i++) {
        if (!json) {
            printf("sync %s: queued as job %lld\n", list[i].reg.host, (long long)ids[i]);
            continue;
        }
        json_t *o = json_pack("{s:I, s:s, s:s, s:I}", "job_id", (json_int_t)ids[i], "status",
                              "queued", "registry", list[i].reg.host, "connection_id",
                              (json_int_t)list[i].id);
        char *t = json_dumps(o, JSON_COMPACT);
        printf("%s\n", t);
        free(t);
        json_decref(o);
    }
}

/* As `connection test` prints it: the guide's symptom, cause and fix. */
static void print_diagnosis(const json_t *d)
{
    const char *symptom = json_string_value(json_object_get(d, "symptom"));
    if (!symptom)
        return;
    printf("  diagnosis: %s\n  likely cause: %s\n  fix: %s\n", symptom,
           json_string_value(json_object_get(d, "cause")) ?: "?",
           json_string_value(json_object_get(d, "fix")) ?: "?");
}

static void on_done(int64_t job_id, const char *kind, const hgf_err *err, json_t *result, void *arg)
{
    report *r = arg;
    r->done++;
    const char *registry = json_string_value(json_object_get(result, "registry"));
    if (err)
        r->failed++;
    if (r->json) {
        json_t *o = json_pack("{s:I, s:s, s:s}", "job_id", (json_int_t)job_id, "status",
                              err ? "failed" : "ok", "registry", registry ? registry : "");
        if (err)
            json_object_set_new(o, "error", json_string(err->msg));
        if (result)
            json_object_set(o, "result", result);
        char *t = json_dumps(o, JSON_COMPACT);
        printf("%s\n", t);
        fflush(stdout);
        free(t);
        json_decref(o);
    } else if (err) {
        printf("sync %s: failed: %s\n", registry && *registry ? registry : "?", err->msg);
        print_diagnosis(json_object_get(result, "diagnosis"));
    } else {
        json_t *a = json_object_get(result, "applied");
        printf("sync %s: ok, %lld repositories, %lld images (%lld new, %lld gone, %lld tag "
               "moves, %lld scans queued) in %.2fs\n",
               registry, json_integer_value(json_object_get(result, "repositories")),
               json_integer_value(json_object_get(result, "images")),
               json_integer_value(json_object_get(a, "new_images")),
               json_integer_value(json_object_get(a, "deleted_images")),
               json_integer_value(json_object_get(a, "tag_moves")),
               json_integer_value(json_object_get(a, "scans_queued")),
               json_real_value(json_object_get(result, "seconds")));
    }
}

/* What a --wait waits for: the jobs of its batch, and those it found in
 * another waiter's batch (usually none), named by id. */
typedef struct waited {
    hgf_store *store;
    int64_t batch;
    int64_t *others;
    int n_others;
} waited;

/* Queues each connection's sync, or finds the one already live (queued by
 * the scheduler, a server, a sweep or another `sync`); with --wait, in the
 * batch w->batch. */
static int enqueue_all(hgf_runtime *rt, hgf_connection *list, int n, int64_t *ids, waited *w,
                       hgf_err *err)
{
    for (int i = 0; i < n; i++) {
        char payload[64], key[64];
        snprintf(payload, sizeof payload, "{\"connection_id\":%lld}", (long long)list[i].id);
        snprintf(key, sizeof key, "sync:%lld", (long long)list[i].id);
        int in_batch = 0;
        int rc = hgf_jobs_enqueue_batch(rt->store, "sync", payload, 5, key, w->batch, &ids[i],
                                        NULL, &in_batch, err);
        if (rc)
            return rc;
        if (w->batch && !in_batch)
            w->others[w->n_others++] = ids[i];
    }
    return 0;
}

static int watch_waited(hgf_worker_pool *p, void *arg, hgf_err *err)
{
    const waited *w = arg;
    int live = 0;
    int rc = hgf_jobs_batch_live(w->store, w->batch, w->others, w->n_others, &live, err);
    if (rc)
        return rc;
    return live > 0 || hgf_worker_pool_busy(p) > 0;
}

/* Works the batch here (beside any servers) until none of its jobs is live;
 * failures are final (no retry), so the caller sees them now. The pool
 * claims the batch through its id and the others by theirs: no claim or
 * check carries the whole list. */
static int wait_all(hgf_runtime *rt, waited *w, report *r, hgf_err *err)
{
    hgf_worker_opts o = {.concurrency = rt->cfg->workers, .retry = 0, .ids = w->others,
                         .n_ids = w->n_others, .batch = w->batch, .done = on_done, .arg = r};
    return hgf_worker_drain_while(rt, &o, watch_waited, w, err);
}

static int run(hgf_runtime *rt, const sync_opts *o)
{
    hgf_connection *list = NULL;
    int n = 0, code = 0;
    hgf_err err;
    hgf_err_clear(&err);
    int64_t *ids = NULL;
    waited w = {.store = rt->store};
    int rc = collect(rt, o, &list, &n, &err);
    size_t size = n ? (size_t)n : 1;
    if (!rc && (!(ids = calloc(size, sizeof *ids)) || !(w.others = calloc(size, sizeof *ids))))
        rc = hgf_err_set(&err, HGF_ENOMEM, "out of memory");
    if (!rc && o->wait)
        rc = hgf_jobs_new_batch(rt->store, &w.batch, &err);
    if (!rc)
        rc = enqueue_all(rt, list, n, ids, &w, &err);
    if (rc) {
        code = hgf_cli_fail(&err);
    } else if (!o->wait) {
        print_queued(list, ids, n, o->json);
    } else {
        report r = {o->json, 0, 0};
        fprintf(stderr, "syncing %d connection%s...\n", n, n == 1 ? "" : "s");
        rc = wait_all(rt, &w, &r, &err);
        if (rc)
            code = hgf_cli_fail(&err);
        else if (r.failed)
            code = 1;
        fprintf(stderr, "%d sync%s ran here, %d failed\n", r.done, r.done == 1 ? "" : "s",
                r.failed);
    }
    free(ids);
    free(w.others);
    hgf_conn_free_list(list, n);
    return code;
}

int hgf_cli_sync(int argc, char **argv)
{
    if (hgf_cli_wants_help(argc, argv)) {
        fputs(USAGE, stdout);
        return 0;
    }
    sync_opts o = {0};
    int rc = parse(argc, argv, &o);
    if (rc) {
        free(o.targets);
        return rc;
    }
    hgf_config cfg;
    hgf_runtime rt;
    int code = hgf_cli_open(&cfg, &rt);
    if (!code) {
        code = run(&rt, &o);
        hgf_cli_close(&cfg, &rt);
    }
    free(o.targets);
    return code;
}
