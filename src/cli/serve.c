/* `hgfleet serve`: the daemon. One libev loop runs the HTTP server, the
 * scheduler and the worker pool. The database may be unreachable at start
 * (the server then reports not-ready and the runtime is opened when it
 * answers) or go away later (the store reconnects by itself). */
#include "hgfleet/api.h"
#include "hgfleet/cli.h"
#include "hgfleet/log.h"
#include "hgfleet/scheduler.h"
#include "hgfleet/server.h"
#include "hgfleet/worker.h"

#include <errno.h>
#include <ev.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_GRACE_S 25
#define OPEN_BACKOFF_FIRST_S 0.5
#define OPEN_BACKOFF_MAX_S 5.0
/* After the grace period, how long the re-queueing of running jobs may take. */
#define RELEASE_TIMEOUT_S 5.0
/* While stopping: how often the pool is checked for jobs that only sleep in
 * a retry backoff, and how long it must stay so before they are re-queued
 * (a job between two steps can look asleep for an instant). */
#define ASLEEP_CHECK_S 0.1
#define ASLEEP_FOR_S 0.3

static const char USAGE[] =
    "Usage: hgfleet serve\n"
    "\n"
    "Runs the daemon: the HTTP server (GET /healthz, /readyz, /metrics, the\n"
    "ECR webhook, and the read-only JSON API under /api/), the scheduler that\n"
    "turns connection schedules into sync jobs, and a pool of\n"
    "HGFLEET_WORKERS concurrent jobs. Any number of replicas may share one\n"
    "database; none is special. serve applies no migrations (run `hgfleet\n"
    "migrate`); /readyz answers 503 until they are applied.\n"
    "\n"
    "Prints `hgfleet serving on http://HOST:PORT` on stdout once listening.\n"
    "\n"
    "Environment:\n"
    "  HGFLEET_LISTEN          host:port, :port or [v6]:port (default 0.0.0.0:8080;\n"
    "                          port 0 picks a free port)\n"
    "  HGFLEET_WORKERS         jobs run at once (default 32)\n"
    "  HGFLEET_LEASE_SECONDS   job lease (default 15; renewed every third of it)\n"
    "  HGFLEET_SHUTDOWN_GRACE  seconds running jobs get to finish on SIGTERM or\n"
    "                          SIGINT before they are re-queued (default 25); jobs\n"
    "                          that only sleep in a retry backoff are re-queued at once\n"
    "  HGFLEET_WEBHOOK_TOKEN   token of POST /api/webhooks/ecr\n"
    "  HGFLEET_ADMIN_TOKEN     bearer token of the read-only GET /api/connections,\n"
    "                          /api/images, /api/jobs and /api/sweeps (unset: 403)\n"
    "  HGFLEET_HTTP_REQUEST_TIMEOUT  seconds (1 to 3600, default 10) a client has to\n"
    "                          send a whole request (headers and body), however\n"
    "                          steadily it trickles in; then its connection is closed\n"
    "  HGFLEET_DATABASE_URL, HGFLEET_MASTER_KEY, AWS_*: as for every command\n"
    "\n"
    "SIGHUP reopens the logs. Exit codes: 0 after a clean shutdown, 1 when the\n"
    "server cannot start, 2 for a bad variable.\n";

static const hgf_route ROUTES[] = {
    {"GET", "/healthz", hgf_api_healthz},
    {"GET", "/readyz", hgf_api_readyz},
    {"GET", "/metrics", hgf_api_metrics},
    {"POST", "/api/webhooks/ecr", hgf_api_webhook_ecr},
    {"GET", "/api/connections", hgf_api_connections},
    {"GET", "/api/connections/", hgf_api_connection},
    {"GET", "/api/images", hgf_api_images},
    {"GET", "/api/jobs", hgf_api_jobs},
    {"GET", "/api/sweeps", hgf_api_sweeps},
    {"GET", "/api/sweeps/", hgf_api_sweep},
};

typedef struct serve {
    struct ev_loop *loop;
    hgf_config cfg;
    hgf_runtime rt;
    int rt_open;
    int grace_s;
    hgf_server *server;
    hgf_api *api;
    hgf_scheduler *sched;
    hgf_worker_pool *pool;
    ev_signal sigterm, sigint, sighup;
    ev_timer open_retry, grace, asleep;
    double asleep_since; /* ev_now() when the running jobs were first seen asleep, or 0 */
    double open_backoff;
    int open_due;      /* time to try opening the runtime again */
    int stopping;      /* a signal arrived */
    int releasing;     /* the grace period is over */
    int done;          /* leave the loop */
} serve;

static int parse_grace(int *out, hgf_err *err)
{
    const char *v = getenv("HGFLEET_SHUTDOWN_GRACE");
    *out = DEFAULT_GRACE_S;
    if (!v || !*v)
        return 0;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (*end || errno || n < 0 || n > 3600)
        return hgf_err_set(err, HGF_EINPUT,
                           "HGFLEET_SHUTDOWN_GRACE: expected whole seconds from 0 to 3600, got "
                           "\"%s\"", v);
    *out = (int)n;
    return 0;
}

/* ---- shutting down ---------------------------------------------------- */

static void on_released(void *arg)
{
    ((serve *)arg)->done = 1;
}

/* Re-queues what still runs; the grace timer now bounds the re-queueing. */
static void release_running(serve *sv)
{
    sv->releasing = 1;
    ev_timer_stop(sv->loop, &sv->asleep);
    ev_timer_stop(sv->loop, &sv->grace);
    if (!sv->pool || hgf_worker_pool_release(sv->pool, on_released, sv)) {
        sv->done = 1;
        return;
    }
    ev_timer_set(&sv->grace, RELEASE_TIMEOUT_S, 0.);
    ev_timer_start(sv->loop, &sv->grace);
}

static void on_grace(struct ev_loop *loop, ev_timer *w, int revents)
{
    serve *sv = w->data;
    if (sv->releasing) { /* the release itself did not finish in time */
        sv->done = 1;
        return;
    }
    hgf_log_warn("serve.grace_over", "re-queueing jobs still running after %ds", sv->grace_s);
    release_running(sv);
}

/* The grace period lets jobs finish work in progress. A job asleep in a
 * retry backoff (its endpoint refused or failed it) makes none: waiting
 * for it only delays the shutdown, by up to the whole grace period. */
static void on_asleep_check(struct ev_loop *loop, ev_timer *w, int revents)
{
    serve *sv = w->data;
    if (sv->releasing || !sv->pool || !hgf_worker_pool_asleep(sv->pool)) {
        sv->asleep_since = 0;
        return;
    }
    if (!sv->asleep_since) {
        sv->asleep_since = ev_now(loop);
        return;
    }
    if (ev_now(loop) - sv->asleep_since < ASLEEP_FOR_S)
        return;
    hgf_log_info("serve.jobs_asleep", "re-queueing %d job(s) asleep in a retry backoff",
                 hgf_worker_pool_busy(sv->pool));
    release_running(sv);
}

static void begin_stop(serve *sv, int signum)
{
    if (sv->stopping) { /* a second signal: skip what is left of the wait */
        ev_timer_stop(sv->loop, &sv->grace);
        if (sv->releasing)
            sv->done = 1;
        else
            on_grace(sv->loop, &sv->grace, 0);
        return;
    }
    sv->stopping = 1;
    hgf_log_info("serve.stopping", "signal=%d grace=%ds running=%d", signum, sv->grace_s,
                 sv->pool ? hgf_worker_pool_busy(sv->pool) : 0);
    hgf_api_set_stopping(sv->api);
    ev_timer_stop(sv->loop, &sv->open_retry);
    if (sv->sched)
        hgf_scheduler_stop(sv->sched);
    if (sv->pool)
        hgf_worker_pool_stop(sv->pool);
    ev_timer_set(&sv->grace, sv->grace_s, 0.);
    ev_timer_start(sv->loop, &sv->grace);
    ev_timer_set(&sv->asleep, ASLEEP_CHECK_S, ASLEEP_CHECK_S);
    ev_timer_start(sv->loop, &sv->asleep);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    serve *sv = w->data;
    if (w->signum == SIGHUP) {
        hgf_log_info("serve.sighup", "reopening logs");
        hgf_log_reopen();
        return;
    }
    begin_stop(sv, w->signum);
}

/* ---- opening the runtime --------------------------------------------- */

static void on_open_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    ((serve *)w->data)->open_due = 1;
}

static int start_work(serve *sv, hgf_err *err)
{
    if (sv->stopping) /* the signal came while connecting */
        return 0;
    hgf_worker_opts o = {.concurrency = sv->cfg.workers, .retry = 1};
    sv->sched = hgf_scheduler_new(&sv->rt, err);
    if (sv->sched)
        sv->pool = hgf_worker_pool_new(&sv->rt, &o, err);
    if (!sv->pool)
        return err->code ? err->code : HGF_ENOMEM;
    hgf_api_attach(sv->api, &sv->rt);
    hgf_log_info("serve.ready", "owner=%s workers=%d lease=%ds", sv->rt.owner, sv->cfg.workers,
                 sv->cfg.lease_seconds);
    return 0;
}

/* hgf_runtime_open runs the loop while it connects, so the server keeps
 * answering (readyz: not ready) however long the database takes. */
static int try_open(serve *sv, hgf_err *err)
{
    sv->open_due = 0;
    int rc = hgf_runtime_open(&sv->rt, &sv->cfg, err);
    if (rc == 0) {
        sv->rt_open = 1;
        return start_work(sv, err);
    }
    if (rc != HGF_EDB)
        return rc;
    hgf_api_set_down_reason(sv->api, err->msg);
    hgf_log_warn("serve.database_unreachable", "%s; retrying in %.1fs", err->msg,
                 sv->open_backoff);
    ev_timer_set(&sv->open_retry, sv->open_backoff, 0.);
    ev_timer_start(sv->loop, &sv->open_retry);
    sv->open_backoff = sv->open_backoff * 2 > OPEN_BACKOFF_MAX_S ? OPEN_BACKOFF_MAX_S
                                                                  : sv->open_backoff * 2;
    hgf_err_clear(err);
    return 0;
}

/* ---- the loop --------------------------------------------------------- */

static void watch_signals(serve *sv)
{
    ev_signal_init(&sv->sigterm, on_signal, SIGTERM);
    ev_signal_init(&sv->sigint, on_signal, SIGINT);
    ev_signal_init(&sv->sighup, on_signal, SIGHUP);
    sv->sigterm.data = sv->sigint.data = sv->sighup.data = sv;
    ev_signal_start(sv->loop, &sv->sigterm);
    ev_signal_start(sv->loop, &sv->sigint);
    ev_signal_start(sv->loop, &sv->sighup);
    ev_init(&sv->open_retry, on_open_retry);
    ev_init(&sv->grace, on_grace);
    ev_init(&sv->asleep, on_asleep_check);
    sv->open_retry.data = sv->grace.data = sv->asleep.data = sv;
}

static int busy(const serve *sv)
{
    return (sv->pool && hgf_worker_pool_busy(sv->pool)) ||
           (sv->sched && hgf_scheduler_busy(sv->sched));
}

static int run_loop(serve *sv, hgf_err *err)
{
    sv->open_due = 1;
    while (!sv->done) {
        if (sv->open_due && !sv->rt_open && !sv->stopping) {
            int rc = try_open(sv, err);
            if (rc)
                return rc;
        }
        if (sv->stopping && !busy(sv))
            break;
        ev_run(sv->loop, EVRUN_ONCE);
        if (sv->pool)
            hgf_worker_pool_pump(sv->pool);
    }
    return 0;
}

static int start_server(serve *sv, hgf_err *err)
{
    sv->api = hgf_api_new(sv->loop, &sv->cfg);
    if (!sv->api)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    hgf_server_opts o = {.listen = sv->cfg.listen, .routes = ROUTES,
                         .n_routes = (int)(sizeof ROUTES / sizeof ROUTES[0]), .arg = sv->api,
                         .request_timeout_s = (unsigned)sv->cfg.http_request_timeout_s};
    sv->server = hgf_server_start(sv->loop, &o, err);
    if (!sv->server)
        return err->code;
    printf("hgfleet serving on http://%s\n", hgf_server_address(sv->server));
    fflush(stdout);
    hgf_log_info("serve.listening", "address=%s request_timeout=%ds",
                 hgf_server_address(sv->server), sv->cfg.http_request_timeout_s);
    /* Refusing every event is the safe default, but EventBridge retries a 401
     * for a day before it drops the event: say so at once. */
    if (!sv->cfg.webhook_token)
        hgf_log_warn("serve.webhook_disabled", "HGFLEET_WEBHOOK_TOKEN is not set: POST "
                     "/api/webhooks/ecr answers 401 to every event");
    if (!sv->cfg.admin_token)
        hgf_log_info("serve.api_disabled", "HGFLEET_ADMIN_TOKEN is not set: GET /api/... "
                     "answers 403");
    return 0;
}

/* The store closes first: its pending callbacks still find the pool, the
 * scheduler and suspended requests alive. AWS calls asleep in a backoff
 * (those of jobs re-queued from it) are woken first, so that the runtime's
 * cancelling of HTTP requests ends them through their callers, which then
 * free what they hold for them. */
static void tear_down(serve *sv)
{
    if (sv->rt_open) {
        hgf_awsctl_flush(sv->rt.awsctl);
        hgf_runtime_close(&sv->rt);
    }
    hgf_server_stop(sv->server);
    hgf_worker_pool_free(sv->pool);
    hgf_scheduler_free(sv->sched);
    hgf_api_free(sv->api);
    ev_signal_stop(sv->loop, &sv->sigterm);
    ev_signal_stop(sv->loop, &sv->sigint);
    ev_signal_stop(sv->loop, &sv->sighup);
    ev_timer_stop(sv->loop, &sv->open_retry);
    ev_timer_stop(sv->loop, &sv->grace);
    ev_timer_stop(sv->loop, &sv->asleep);
}

int hgf_cli_serve(int argc, char **argv)
{
    if (hgf_cli_wants_help(argc, argv)) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (argc > 1)
        return hgf_cli_usage_error("serve", "unexpected argument \"%s\"", argv[1]);
    serve sv;
    memset(&sv, 0, sizeof sv);
    hgf_err err;
    hgf_err_clear(&err);
    if (hgf_config_load(&sv.cfg, &err) || hgf_runtime_check(&sv.cfg, &err) ||
        parse_grace(&sv.grace_s, &err)) {
        hgf_config_free(&sv.cfg);
        return hgf_cli_fail(&err);
    }
    signal(SIGPIPE, SIG_IGN);
    sv.loop = EV_DEFAULT;
    sv.open_backoff = OPEN_BACKOFF_FIRST_S;
    watch_signals(&sv);
    int rc = start_server(&sv, &err);
    if (!rc)
        rc = run_loop(&sv, &err);
    tear_down(&sv);
    hgf_config_free(&sv.cfg);
    if (rc)
        return hgf_cli_fail(&err);
    hgf_log_info("serve.stopped", "clean shutdown");
    return 0;
}
