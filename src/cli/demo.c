/* hgfleet demo: the whole path on a laptop. It starts a throwaway PostgreSQL
 * cluster (unix socket only, so it never clashes with a real server) and
 * ecrsim with a simulated organization, discovers the organization through
 * AWS Organizations as `hgfleet discover` does, sweeps it and prints a
 * summary per registry, then cleans everything up. */
#include "hgfleet/cli.h"
#include "hgfleet/provision.h"
#include "hgfleet/report.h"
#include "hgfleet/sweep.h"
#include "hgfleet/log.h"

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

#define PG_BIN "/usr/lib/postgresql/15/bin"
#define DEMO_SEED 2026
#define DEMO_ROLE "hgfleet-demo-reader"
#define DEMO_HOST_KEY "AKIAHGFLEETDEMOHOST1"
/* Two accounts in every ten are misconfigured, the third and the sixth, so
 * that a demo of 3 or more accounts shows a diagnosis (6 or more: both). */
#define MISCONFIG_PERIOD 10
#define UNTRUSTED_AT 2
#define NO_DESCRIBE_AT 5

static const char USAGE[] =
    "Usage: hgfleet demo [--accounts N] [--regions R1,R2,...] [--keep]\n"
    "\n"
    "Sweeps a simulated organization end to end: a throwaway PostgreSQL cluster,\n"
    "the ecrsim fleet simulator (SIMULATED data, not AWS) with an organization of\n"
    "N active accounts (a few misconfigured: a role that does not trust hgfleet,\n"
    "a role without ecr:DescribeImages) and one suspended account, discovery\n"
    "through AWS Organizations (one connection per active account and region,\n"
    "assuming role " DEMO_ROLE "), then a sweep (sync, scan with HGFLEET_SCANNER,\n"
    "default none, posture checks) with a summary, the diagnoses, and JSON, CSV\n"
    "and HTML reports that are kept after the cluster is removed.\n"
    "\n"
    "  --accounts N     simulated accounts (default 20, at most 1000)\n"
    "  --regions LIST   comma-separated regions (default us-east-1,eu-west-1,ap-southeast-2)\n"
    "  --keep           leave the cluster's directory behind for inspection\n"
    "\n"
    "Needs PostgreSQL 15's server binaries (/usr/lib/postgresql/15/bin) and the\n"
    "ecrsim binary next to hgfleet (or ECRSIM_BIN).\n";

typedef struct demo {
    int accounts, keep;
    const char *regions;
    char dir[PATH_MAX];
    char ecrsim[PATH_MAX];
    pid_t sim_pid;
    int pg_started;
    char host_secret[41];   /* the simulated host user's secret key */
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
    char data[PATH_MAX + 8], opts[PATH_MAX + 128];
    snprintf(data, sizeof data, "%s/data", d->dir);
    /* A throwaway cluster: nothing it writes must survive a crash, so
     * neither initdb nor the server waits for the disk (initdb's fsync of
     * every file it wrote was about half of its time). */
    snprintf(opts, sizeof opts,
             "-c listen_addresses='' -k %s -c fsync=off -c synchronous_commit=off "
             "-c full_page_writes=off",
             d->dir);
    const char *initdb[] = {PG_BIN "/initdb", "-D", data, "-A", "trust", "-U", "postgres",
                            "--no-sync", NULL};
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

/* ecrsim's account ids follow its documented formula for the seed. */
static void account_id(int index, char out[13])
{
    snprintf(out, 13, "%012lld", 100000000000LL + (DEMO_SEED % 1000) * 1000000LL + index);
}

static json_t *actions(int describe_images)
{
    static const char *const READ[] = {
        "ecr:GetAuthorizationToken", "ecr:DescribeRepositories", "ecr:ListImages",
        "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability",
        "ecr:GetLifecyclePolicy", "ecr:GetRepositoryPolicy"};
    json_t *a = json_array();
    for (size_t i = 0; i < sizeof READ / sizeof *READ; i++)
        json_array_append_new(a, json_string(READ[i]));
    if (describe_images)
        json_array_append_new(a, json_string("ecr:DescribeImages"));
    return a;
}

/* The member account's role, as the organization's admins set it up (or
 * got it wrong). */
static json_t *member_role(int index, const char *mgmt)
{
    char acct[13], arn[96], host[96];
    account_id(index, acct);
    snprintf(arn, sizeof arn, "arn:aws:iam::%s:role/%s", acct, DEMO_ROLE);
    snprintf(host, sizeof host, "arn:aws:iam::%s:user/%s", mgmt,
             index % MISCONFIG_PERIOD == UNTRUSTED_AT ? "ci-legacy" : "hgfleet-demo");
    return json_pack("{s:s, s:[{s:s}], s:[{s:o, s:[s]}]}", "arn", arn, "trust", "principal", host,
                     "policy", "actions", actions(index % MISCONFIG_PERIOD != NO_DESCRIBE_AT),
                     "resources", "*");
}

/* The IAM side of the simulated organization: the host's user in the
 * management account may list the organization and assume each member's
 * role. The file holds a throwaway simulated secret: owner-only. */
static int write_scenario(demo *d, const char *path, hgf_err *err)
{
    unsigned char raw[20];
    RAND_bytes(raw, sizeof raw);
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(d->host_secret + 2 * i, 3, "%02x", raw[i]);
    char mgmt[13], user[96];
    account_id(0, mgmt);
    snprintf(user, sizeof user, "arn:aws:iam::%s:user/hgfleet-demo", mgmt);
    json_t *roles = json_array();
    for (int i = 0; i < d->accounts; i++)
        json_array_append_new(roles, member_role(i, mgmt));
    json_t *sc = json_pack("{s:[{s:s, s:s, s:s, s:[{s:[s, s], s:[s]}]}], s:o}", "principals",
                           "arn", user, "access_key_id", DEMO_HOST_KEY, "secret_access_key",
                           d->host_secret, "policy", "actions", "organizations:ListAccounts",
                           "sts:AssumeRole", "resources", "*", "roles", roles);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int rc = sc && fd >= 0 && json_dumpfd(sc, fd, JSON_COMPACT) == 0 ? 0 : -1;
    if (fd >= 0 && close(fd))
        rc = -1;
    json_decref(sc);
    return rc ? hgf_err_set(err, HGF_EFAIL, "cannot write the simulated IAM scenario %s", path)
              : 0;
}

/* The host's credentials and every AWS endpoint point at the simulator. */
static void use_simulator(const demo *d, const char *url)
{
    setenv("AWS_ENDPOINT_URL_ECR", url, 1);
    setenv("AWS_ENDPOINT_URL_STS", url, 1);
    setenv("AWS_ENDPOINT_URL_ORGANIZATIONS", url, 1);
    setenv("AWS_ACCESS_KEY_ID", DEMO_HOST_KEY, 1);
    setenv("AWS_SECRET_ACCESS_KEY", d->host_secret, 1);
    unsetenv("AWS_SESSION_TOKEN");
    unsetenv("AWS_ENDPOINT_URL");
}

/* ecrsim prints "ecrsim listening on http://..." on its first stdout line.
 * The organization has one more account than asked for, suspended, so the
 * discovery shows what it skips. */
static int start_ecrsim(demo *d, hgf_err *err)
{
    find_ecrsim(d);
    char scenario[PATH_MAX + 16];
    snprintf(scenario, sizeof scenario, "%s/iam.json", d->dir);
    int rc = write_scenario(d, scenario, err);
    if (rc)
        return rc;
    int fds[2];
    if (pipe(fds))
        return hgf_err_set(err, HGF_EFAIL, "pipe: %s", strerror(errno));
    char accounts[16], seed[16];
    snprintf(accounts, sizeof accounts, "%d", d->accounts + 1);
    snprintf(seed, sizeof seed, "%d", DEMO_SEED);
    char *argv[] = {d->ecrsim, "--accounts", accounts, "--suspended", "1", "--regions",
                    (char *)d->regions, "--seed", seed, "--scenario", scenario, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    rc = posix_spawnp(&d->sim_pid, d->ecrsim, &fa, NULL, argv, environ);
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
    use_simulator(d, url);
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

/* The organization comes in the way a real one does: `discover`'s path,
 * Organizations ListAccounts and one connection per active account and
 * region. */
static int discover(hgf_runtime *rt, const demo *d, hgf_err *err)
{
    json_t *rep = json_object();
    int rc = rep ? hgf_cli_discover_apply(rt, DEMO_ROLE, d->regions, "manual", rep, err)
                 : hgf_err_set(err, HGF_ENOMEM, "out of memory");
    if (!rc) {
        printf("discovered through AWS Organizations (SIMULATED): %lld accounts, %zu "
               "connections created, %zu skipped\n",
               (long long)json_integer_value(json_object_get(rep, "accounts")),
               json_array_size(json_object_get(rep, "created")),
               json_array_size(json_object_get(rep, "skipped")));
        size_t i;
        json_t *sk;
        json_array_foreach(json_object_get(rep, "skipped"), i, sk)
            printf("  skipped: account %s: %s\n",
                   json_string_value(json_object_get(sk, "account_id")),
                   json_string_value(json_object_get(sk, "reason")));
        printf("\n");
        fflush(stdout); /* before the sweep's progress on stderr */
    }
    json_decref(rep);
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
            /* The same check discover makes, before anything starts. */
            char **list = NULL;
            int n = 0;
            hgf_err err;
            int rc = hgf_provision_parse_regions(d->regions, "--regions", &list, &n, &err);
            free(list);
            if (rc)
                return hgf_cli_fail(&err);
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
        rc = discover(&rt, d, err);
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
    /* The summary is the output, the diagnoses included; per-sync log lines
     * (the misconfigured accounts' failures too) only bury it. */
    if (!getenv("HGFLEET_LOG_LEVEL"))
        hgf_log_set_level(HGF_LOG_ERROR);
    int rc = parse(argc, argv, &d);
    if (rc)
        return rc;
    hgf_err err;
    hgf_err_clear(&err);
    rc = run(&d, &err);
    cleanup(&d);
    return rc ? hgf_cli_fail(&err) : 0;
}
