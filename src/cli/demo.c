/* hgfleet demo: the whole path on a laptop. It starts a throwaway PostgreSQL
 * cluster (unix socket only, so it never clashes with a real server) and
 * ecrsim, adds one connection per simulated registry, syncs them all and
 * prints a summary per registry, then cleans everything up. */
#include "hgfleet/cli.h"
#include "hgfleet/conn.h"
#include "hgfleet/jobs.h"
#include "hgfleet/report.h"
#include "hgfleet/secret.h"
#include "hgfleet/sweep.h"
#include "hgfleet/log.h"
#include "hgfleet/worker.h"

#include <errno.h>
#include <openssl/rand.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static const char USAGE[] =
    "Usage: hgfleet demo [--accounts N] [--regions R1,R2,...] [--keep]\n"
    "\n"
    "Sweeps a simulated organization end to end: a throwaway PostgreSQL cluster,\n"
    "the ecrsim fleet simulator (SIMULATED data, not AWS), one connection per\n"
    "registry plus two misconfigured ones, then a sweep (sync, scan with\n"
    "HGFLEET_SCANNER, default none, posture checks) with a summary, the diagnoses,\n"
    "and JSON, CSV and HTML reports that are kept after the cluster is removed.\n"
    "\n"
    "  --accounts N     simulated accounts (default 20, at most 1000)\n"
    "  --regions LIST   comma-separated regions (default us-east-1,eu-west-1,ap-southeast-2)\n"
    "  --keep           leave the cluster's directory behind for inspection\n"
    "\n"
    "Needs PostgreSQL 15's server binaries (/usr/lib/postgresql/15/bin) and the\n"
    "ecrsim binary next to hgfleet (or ECRSIM_BIN).\n";

#define PG_BIN "/usr/lib/postgresql/15/bin"

typedef struct demo {
    int accounts, keep;
    const char *regions;
    char dir[PATH_MAX];
    char ecrsim[PATH_MAX];
    pid_t sim_pid;
    int pg_started;
} demo;

static int run_wait(char *const argv[], int quiet)
{
    pid_t pid;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (quiet) {
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    }
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc)
        return -1;
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* As root the server must run as the postgres user, as PostgreSQL requires. */
static int pg_cmd(demo *d, const char *const *args, int quiet)
{
    char *argv[16];
    int n = 0;
    if (geteuid() == 0) {
        argv[n++] = "runuser";
        argv[n++] = "-u";
        argv[n++] = "postgres";
        argv[n++] = "--";
    }
    for (int i = 0; args[i] && n < 15; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    return run_wait(argv, quiet);
}

static int start_pg(demo *d, hgf_err *err)
{
    snprintf(d->dir, sizeof d->dir, "/tmp/hgfleet-demo-XXXXXX");
    if (!mkdtemp(d->dir))
        return hgf_err_set(err, HGF_EFAIL, "cannot create a temporary directory: %s", strerror(errno));
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("postgres");
        if (!pw || chown(d->dir, pw->pw_uid, pw->pw_gid))
            return hgf_err_set(err, HGF_EFAIL, "running as root needs the postgres user");
    }
    char data[PATH_MAX + 8], opts[PATH_MAX + 64];
    snprintf(data, sizeof data, "%s/data", d->dir);
    snprintf(opts, sizeof opts, "-c listen_addresses='' -k %s -c fsync=off", d->dir);
    const char *initdb[] = {PG_BIN "/initdb", "-D", data, "-A", "trust", "-U", "postgres", NULL};
    if (pg_cmd(d, initdb, 1))
        return hgf_err_set(err, HGF_EFAIL, "initdb failed (is postgresql-15 installed?)");
    const char *start[] = {PG_BIN "/pg_ctl", "-D", data, "-o", opts, "-w", "-l", "/dev/null",
                           "start", NULL};
    if (pg_cmd(d, start, 1))
        return hgf_err_set(err, HGF_EFAIL, "pg_ctl start failed");
    d->pg_started = 1;
    char url[PATH_MAX + 64];
    snprintf(url, sizeof url, "host=%s dbname=postgres user=postgres", d->dir);
    setenv("HGFLEET_DATABASE_URL", url, 1);
    unsetenv("HGFLEET_DATABASE_URL_FILE");
    return 0;
}

static void find_ecrsim(demo *d)
{
    const char *env = getenv("ECRSIM_BIN");
    if (env && *env) {
        snprintf(d->ecrsim, sizeof d->ecrsim, "%s", env);
        return;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(self, '/');
    if (slash) {
        snprintf(slash + 1, sizeof self - (size_t)(slash + 1 - self), "ecrsim");
        if (access(self, X_OK) == 0) {
            snprintf(d->ecrsim, sizeof d->ecrsim, "%s", self);
            return;
        }
    }
    snprintf(d->ecrsim, sizeof d->ecrsim, "ecrsim");
}

/* ecrsim prints "ecrsim listening on http://..." on its first stdout line. */
static int start_ecrsim(demo *d, hgf_err *err)
{
    find_ecrsim(d);
    int fds[2];
    if (pipe(fds))
        return hgf_err_set(err, HGF_EFAIL, "pipe: %s", strerror(errno));
    char accounts[16];
    snprintf(accounts, sizeof accounts, "%d", d->accounts);
    char *argv[] = {d->ecrsim, "--accounts", accounts, "--regions", (char *)d->regions,
                    "--seed", "2026", NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    int rc = posix_spawnp(&d->sim_pid, d->ecrsim, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc) {
        close(fds[0]);
        d->sim_pid = 0;
        return hgf_err_set(err, HGF_EFAIL, "cannot start %s: %s", d->ecrsim, strerror(rc));
    }
    FILE *f = fdopen(fds[0], "r");
    char line[512] = "";
    int ok = f && fgets(line, sizeof line, f) && strstr(line, "http://");
    if (f)
        fclose(f);
    if (!ok)
        return hgf_err_set(err, HGF_EFAIL, "ecrsim did not start");
    char *url = strstr(line, "http://");
    url[strcspn(url, "\r\n")] = '\0';
    setenv("AWS_ENDPOINT_URL_ECR", url, 1);
    /* ecrsim's default key; the connections use them as the host's credentials. */
    setenv("AWS_ACCESS_KEY_ID", "AKIDECRSIMDEFAULT", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "ecrsim-default-secret", 1);
    unsetenv("AWS_SESSION_TOKEN");
    fprintf(stderr, "demo: ecrsim (simulated AWS) at %s\n", url);
    return 0;
}

static void cleanup(demo *d)
{
    if (d->sim_pid > 0) {
        kill(d->sim_pid, SIGTERM);
        waitpid(d->sim_pid, NULL, 0);
    }
    if (d->pg_started) {
        char data[PATH_MAX + 8];
        snprintf(data, sizeof data, "%s/data", d->dir);
        const char *stop[] = {PG_BIN "/pg_ctl", "-D", data, "-m", "immediate", "stop", NULL};
        pg_cmd(d, stop, 1);
    }
    if (d->dir[0] && !d->keep) {
        char *rm[] = {"rm", "-rf", d->dir, NULL};
        run_wait(rm, 1);
    }
}

static int insert_conn(hgf_runtime *rt, const char *acct, const char *region, const char *akid,
                       const char *sealed, hgf_err *err)
{
    hgf_connection c = {0};
    int rc = hgf_endpoint_registry_from_parts(acct, region, 0, &c.reg, err);
    char name[64];
    snprintf(name, sizeof name, "demo-%s-%s", acct + 8, region);
    c.name = name;
    c.schedule = "manual";
    c.access_key_id = (char *)akid;
    c.secret_sealed = (char *)sealed;
    snprintf(c.auth_mode, sizeof c.auth_mode, "%s", akid ? "static" : "host");
    return rc ? rc : hgf_conn_insert(rt->store, &c, err);
}

/* One connection per simulated registry, plus two misconfigured ones so the
 * report shows what diagnoses look like: a region where the account has no
 * repositories, and static keys that AWS does not recognise. */
static int add_connections(hgf_runtime *rt, const demo *d, hgf_err *err)
{
    char acct[13];
    int rc = 0;
    for (int a = 0; !rc && a < d->accounts; a++) {
        /* ecrsim's account ids follow its documented formula for the seed. */
        snprintf(acct, sizeof acct, "%012lld", 100000000000LL + (2026 % 1000) * 1000000LL + a);
        char tmp[512], *save = NULL;
        snprintf(tmp, sizeof tmp, "%s", d->regions);
        for (char *reg = strtok_r(tmp, ",", &save); !rc && reg; reg = strtok_r(NULL, ",", &save))
            rc = insert_conn(rt, acct, reg, NULL, NULL, err);
    }
    snprintf(acct, sizeof acct, "%012lld", 100000000000LL + (2026 % 1000) * 1000000LL);
    if (!rc)
        rc = insert_conn(rt, acct, "sa-east-1", NULL, NULL, err);
    hgf_buf sealed = HGF_BUF_INIT;
    const char *wrong = "not-the-secret-ecrsim-issued";
    if (!rc)
        rc = hgf_secret_seal(&rt->cfg->master_key, wrong, strlen(wrong), &sealed, err);
    if (!rc)
        rc = insert_conn(rt, acct, "ca-central-1", "AKIADEMOWRONGKEY0001", sealed.data, err);
    hgf_buf_free(&sealed);
    return rc;
}

static int print_summary(hgf_runtime *rt, hgf_err *err)
{
    PGresult *r;
    int rc = hgf_store_exec(
        rt->store,
        "SELECT c.registry, coalesce(c.last_sync_status, 'never'),"
        " count(DISTINCT rp.id) FILTER (WHERE rp.deleted_at IS NULL),"
        " count(i.id) FILTER (WHERE i.deleted_at IS NULL),"
        " count(i.id) FILTER (WHERE i.deleted_at IS NULL AND NOT EXISTS"
        "   (SELECT 1 FROM image_tags t WHERE t.image_id = i.id)),"
        " (SELECT count(*) FROM jobs j WHERE j.kind = 'scan' AND j.state = 'queued'"
        "   AND (j.payload->>'connection_id')::bigint = c.id)"
        " FROM connections c LEFT JOIN repositories rp ON rp.connection_id = c.id"
        " LEFT JOIN images i ON i.repository_id = rp.id"
        " GROUP BY c.id ORDER BY c.registry",
        0, NULL, &r, err);
    if (rc)
        return rc;
    printf("%-50s %-7s %6s %7s %9s %13s\n", "REGISTRY (simulated)", "SYNC", "REPOS", "IMAGES",
           "UNTAGGED", "SCANS QUEUED");
    long repos = 0, images = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        printf("%-50s %-7s %6s %7s %9s %13s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
               PQgetvalue(r, i, 2), PQgetvalue(r, i, 3), PQgetvalue(r, i, 4), PQgetvalue(r, i, 5));
        repos += atol(PQgetvalue(r, i, 2));
        images += atol(PQgetvalue(r, i, 3));
    }
    printf("\n%d registries, %ld repositories, %ld images synced from SIMULATED AWS (ecrsim)\n",
           PQntuples(r), repos, images);
    PQclear(r);
    return 0;
}

static int parse(int argc, char **argv, demo *d)
{
    d->accounts = 20;
    d->regions = "us-east-1,eu-west-1,ap-southeast-2";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--keep")) {
            d->keep = 1;
        } else if (!strcmp(argv[i], "--accounts") && i + 1 < argc) {
            char *end;
            long n = strtol(argv[++i], &end, 10);
            if (*end || n < 1 || n > 1000)
                return hgf_cli_usage_error("demo", "--accounts: expected 1 to 1000, got \"%s\"",
                                           argv[i]);
            d->accounts = (int)n;
        } else if (!strcmp(argv[i], "--regions") && i + 1 < argc) {
            d->regions = argv[++i];
            char tmp[512], *save = NULL;
            snprintf(tmp, sizeof tmp, "%s", d->regions);
            for (char *r = strtok_r(tmp, ",", &save); r; r = strtok_r(NULL, ",", &save))
                if (!hgf_endpoint_region_valid(r))
                    return hgf_cli_usage_error("demo", "--regions: \"%s\" is not a region", r);
        } else {
            return hgf_cli_usage_error("demo", "unexpected argument \"%s\"", argv[i]);
        }
    }
    return 0;
}

/* The reports outlive the throwaway cluster: people read them afterwards. */
static int write_reports(const json_t *report, char *dir, size_t n, hgf_err *err)
{
    snprintf(dir, n, "/tmp/hgfleet-demo-report-XXXXXX");
    if (!mkdtemp(dir))
        return hgf_err_set(err, HGF_EFAIL, "cannot create a report directory: %s", strerror(errno));
    static const struct {
        const char *name;
        hgf_report_format f;
    } OUT[] = {{"sweep.json", HGF_REPORT_JSON}, {"sweep.csv", HGF_REPORT_CSV},
               {"sweep.html", HGF_REPORT_HTML}};
    for (size_t i = 0; i < 3; i++) {
        hgf_buf b = HGF_BUF_INIT;
        char path[PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/%s", dir, OUT[i].name);
        int rc = hgf_report_render(report, OUT[i].f, &b, err);
        FILE *f = rc ? NULL : fopen(path, "w");
        if (!rc && (!f || fwrite(b.data, 1, b.len, f) != b.len))
            rc = hgf_err_set(err, HGF_EFAIL, "cannot write %s", path);
        if (f)
            fclose(f);
        hgf_buf_free(&b);
        if (rc)
            return rc;
    }
    return 0;
}

static void print_diagnoses(const json_t *report)
{
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(report, "connections"), i, c)
    {
        json_t *d = json_object_get(c, "diagnosis");
        if (!json_is_object(d))
            continue;
        printf("\n%s (%s): %s\n  likely cause: %s\n  fix: %s\n",
               json_string_value(json_object_get(c, "registry")),
               json_string_value(json_object_get(c, "status")),
               json_string_value(json_object_get(d, "symptom")),
               json_string_value(json_object_get(d, "cause")),
               json_string_value(json_object_get(d, "fix")));
    }
}

static int sweep(hgf_runtime *rt, hgf_err *err)
{
    hgf_sweep_opts so = {.requested_by = "demo", .rescan_after_s = HGF_SWEEP_DEFAULT_RESCAN_S,
                         .active_within_s = 3650L * 86400, .stale_days = HGF_REPORT_STALE_DAYS,
                         .progress = 1};
    int64_t id = 0;
    json_t *report = NULL;
    int rc = hgf_sweep_run(rt, &so, &id, &report, err);
    if (rc && !report)
        return rc;
    rc = print_summary(rt, err);
    const json_t *t = json_object_get(report, "totals");
    printf("\nsweep %lld: %s; %lld of %lld images scanned (scanner: %s, SIMULATED)\n", (long long)id,
           json_string_value(json_object_get(report, "status")),
           (long long)json_integer_value(json_object_get(t, "images_scanned")),
           (long long)json_integer_value(json_object_get(t, "images")),
           hgf_scanner_name(rt->scanner));
    print_diagnoses(report);
    char dir[PATH_MAX];
    if (!rc)
        rc = write_reports(report, dir, sizeof dir, err);
    if (!rc)
        printf("\nreports: %s/sweep.json, %s/sweep.csv, %s/sweep.html\n", dir, dir, dir);
    json_decref(report);
    return rc;
}

static int run(demo *d, hgf_err *err)
{
    int rc = start_pg(d, err);
    if (!rc)
        rc = start_ecrsim(d, err);
    if (rc)
        return rc;
    /* A throwaway key for the demo's one static-key connection. */
    unsigned char key[32];
    hgf_buf b64 = HGF_BUF_INIT;
    RAND_bytes(key, sizeof key);
    hgf_base64_encode(key, sizeof key, &b64);
    setenv("HGFLEET_MASTER_KEY", hgf_buf_str(&b64), 1);
    unsetenv("HGFLEET_MASTER_KEY_FILE");
    hgf_secret_wipe_buf(&b64);
    hgf_config cfg;
    hgf_runtime rt;
    if ((rc = hgf_config_load(&cfg, err)))
        return rc;
    if ((rc = hgf_runtime_open(&rt, &cfg, err))) {
        hgf_config_free(&cfg);
        return rc;
    }
    int applied = 0;
    rc = hgf_store_migrate(rt.store, &applied, err);
    if (!rc)
        rc = add_connections(&rt, d, err);
    if (!rc) {
        fprintf(stderr, "demo: sweeping %d simulated accounts x %s...\n", d->accounts, d->regions);
        rc = sweep(&rt, err);
    }
    hgf_runtime_close(&rt);
    hgf_config_free(&cfg);
    return rc;
}

int hgf_cli_demo(int argc, char **argv)
{
    if (hgf_cli_wants_help(argc, argv)) {
        fputs(USAGE, stdout);
        return 0;
    }
    demo d;
    memset(&d, 0, sizeof d);
    /* The summary is the output; per-sync log lines only bury it. */
    if (!getenv("HGFLEET_LOG_LEVEL"))
        hgf_log_set_level(HGF_LOG_WARN);
    int rc = parse(argc, argv, &d);
    if (rc)
        return rc;
    hgf_err err;
    hgf_err_clear(&err);
    rc = run(&d, &err);
    cleanup(&d);
    return rc ? hgf_cli_fail(&err) : 0;
}
