#include "hgfleet/cli.h"
#include "hgfleet/report.h"
#include "hgfleet/schedule.h"
#include "hgfleet/sweep.h"

#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char USAGE[] =
    "Usage: hgfleet sweep [--wait [--report FILE] [--format json|csv|html]]\n"
    "                     [--rescan-after DUR] [--active-within DUR] [--json]\n"
    "       hgfleet sweep list [--json]\n"
    "       hgfleet sweep show ID [--format json|csv|html]\n"
    "\n"
    "Syncs every connection (collecting posture), scans every present digest never\n"
    "scanned ok (or last scanned before the rescan window and pushed within the\n"
    "active window), evaluates posture and stores the report. One sweep runs at a\n"
    "time: asking while one is queued or running joins it.\n"
    "\n"
    "Without --wait the sweep is queued as a job for the `serve` replicas and its\n"
    "id printed. With --wait this process works the sweep's jobs itself (beside any\n"
    "servers), shows progress on stderr and prints a summary.\n"
    "\n"
    "  --wait               run the sweep to its end here\n"
    "  --report FILE        with --wait: write the report there (checked first)\n"
    "  --format F           with --wait: json (default), csv or html; without\n"
    "                       --report, the report goes to stdout in that format\n"
    "  --rescan-after DUR   default HGFLEET_RESCAN_AFTER, else 7d\n"
    "  --active-within DUR  only rescan images pushed within DUR (default 90d)\n"
    "  --json               print JSON on stdout: the report (--wait) or\n"
    "                       {sweep_id, job_id, created}\n"
    "\n"
    "Exit codes: 0 queued, or complete; 1 partial (a connection failed; the report\n"
    "is still written) or the sweep failed; 2 bad arguments.\n";

typedef struct sweep_args {
    int wait, json;
    const char *report, *format_name;
    hgf_report_format format;
    hgf_sweep_opts o;
} sweep_args;

/* The report path must be writable before any work starts. */
static int check_report_path(const char *path, hgf_err *err)
{
    char *copy = strdup(path);
    if (!copy)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    const char *dir = dirname(copy);
    int ok = access(path, F_OK) == 0 ? access(path, W_OK) == 0 : access(dir, W_OK) == 0;
    int e = errno;
    free(copy);
    if (!ok)
        return hgf_err_set(err, HGF_EINPUT, "--report %s: cannot write there (%s)", path,
                           strerror(e));
    return 0;
}

static int duration_arg(const char *text, const char *field, int64_t *out)
{
    hgf_err err;
    return hgf_duration_parse(text, field, out, &err) ? hgf_cli_fail(&err) : 0;
}

static int parse_value(int argc, char **argv, int *i, sweep_args *a)
{
    const char *opt = argv[*i];
    if (*i + 1 >= argc)
        return hgf_cli_usage_error("sweep", "%s needs a value", opt);
    const char *v = argv[++*i];
    if (!strcmp(opt, "--report"))
        a->report = v;
    else if (!strcmp(opt, "--format"))
        a->format_name = v;
    else if (!strcmp(opt, "--rescan-after"))
        return duration_arg(v, "--rescan-after", &a->o.rescan_after_s);
    else
        return duration_arg(v, "--active-within", &a->o.active_within_s);
    return 0;
}

static int parse(int argc, char **argv, sweep_args *a)
{
    const char *env = getenv("HGFLEET_RESCAN_AFTER");
    if (env && *env && duration_arg(env, "HGFLEET_RESCAN_AFTER", &a->o.rescan_after_s))
        return 2;
    for (int i = 1; i < argc; i++) {
        int rc = 0;
        if (!strcmp(argv[i], "--wait"))
            a->wait = 1;
        else if (!strcmp(argv[i], "--json"))
            a->json = 1;
        else if (!strcmp(argv[i], "--report") || !strcmp(argv[i], "--format") ||
                 !strcmp(argv[i], "--rescan-after") || !strcmp(argv[i], "--active-within"))
            rc = parse_value(argc, argv, &i, a);
        else
            return hgf_cli_usage_error("sweep", "unknown argument %s", argv[i]);
        if (rc)
            return rc;
    }
    hgf_err err;
    if (a->format_name && hgf_report_format_parse(a->format_name, "--format", &a->format, &err))
        return hgf_cli_fail(&err);
    if (!a->wait && (a->report || a->format_name))
        return hgf_cli_usage_error("sweep", "%s needs --wait (a queued sweep's report is "
                                   "read later with `hgfleet sweep show ID --format F`)",
                                   a->report ? "--report" : "--format");
    /* Without --report, --format F puts the report on stdout, where --json
     * already puts it as JSON. */
    if (a->json && a->format_name && !a->report && a->format != HGF_REPORT_JSON)
        return hgf_cli_usage_error("sweep", "--format %s: conflicts with --json, which prints "
                                   "the report as JSON (add --report FILE to write it as %s)",
                                   a->format_name, a->format_name);
    if (a->report && check_report_path(a->report, &err))
        return hgf_cli_fail(&err);
    return 0;
}

static int write_report(const json_t *report, hgf_report_format f, const char *path, hgf_err *err)
{
    hgf_buf b = HGF_BUF_INIT;
    int rc = hgf_report_render(report, f, &b, err);
    FILE *fp = rc ? NULL : (path ? fopen(path, "w") : stdout);
    if (!rc && !fp)
        rc = hgf_err_set(err, HGF_EFAIL, "--report %s: %s", path, strerror(errno));
    if (fp) {
        size_t n = fwrite(b.data ? b.data : "", 1, b.len, fp);
        int bad = path ? fclose(fp) : fflush(fp);
        if (n != b.len || bad)
            rc = hgf_err_set(err, HGF_EFAIL, "writing the report to %s failed",
                             path ? path : "stdout");
    }
    hgf_buf_free(&b);
    return rc;
}

static void print_summary(const json_t *r, const char *path)
{
    const json_t *t = json_object_get(r, "totals");
    const json_t *f = json_object_get(t, "findings");
    printf("sweep %lld: %s, %lld connections (%lld failed), %lld repositories, %lld images, "
           "%lld scanned; findings: %lld critical, %lld high\n",
           (long long)json_integer_value(json_object_get(r, "sweep_id")),
           json_string_value(json_object_get(r, "status")),
           (long long)json_integer_value(json_object_get(t, "connections")),
           (long long)json_integer_value(json_object_get(t, "connections_failed")),
           (long long)json_integer_value(json_object_get(t, "repositories")),
           (long long)json_integer_value(json_object_get(t, "images")),
           (long long)json_integer_value(json_object_get(t, "images_scanned")),
           (long long)json_integer_value(json_object_get(f, "critical")),
           (long long)json_integer_value(json_object_get(f, "high")));
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(r, "connections"), i, c)
        if (strcmp(json_string_value(json_object_get(c, "status")), "ok"))
            printf("  failed: %s: %s\n", json_string_value(json_object_get(c, "registry")),
                   json_string_value(json_object_get(json_object_get(c, "diagnosis"), "symptom"))
                       ?: "see the report");
    if (path)
        printf("report written to %s\n", path);
}

static int run_sweep(hgf_runtime *rt, sweep_args *a)
{
    hgf_err err;
    hgf_err_clear(&err);
    int64_t id = 0;
    json_t *report = NULL;
    if (hgf_sweep_run(rt, &a->o, &id, &report, &err))
        return hgf_cli_fail(&err);
    int code = strcmp(json_string_value(json_object_get(report, "status")), "complete") ? 1 : 0;
    if (a->report && write_report(report, a->format, a->report, &err))
        code = hgf_cli_fail(&err);
    if (a->json)
        hgf_cli_print_json(report);
    else if (a->format_name && !a->report && write_report(report, a->format, NULL, &err))
        code = hgf_cli_fail(&err);
    else if (!a->format_name || a->report)
        print_summary(report, a->report);
    json_decref(report);
    return code;
}

static int with_runtime(int (*fn)(hgf_runtime *, void *), void *arg)
{
    hgf_config cfg;
    hgf_runtime rt;
    int code = hgf_cli_open(&cfg, &rt);
    if (!code) {
        code = fn(&rt, arg);
        hgf_cli_close(&cfg, &rt);
    }
    return code;
}

static int queue_sweep(hgf_runtime *rt, const sweep_args *a)
{
    hgf_err err;
    int64_t id = 0, job = 0;
    int created = 0;
    if (hgf_sweep_enqueue(rt->store, &a->o, &id, &job, &created, &err))
        return hgf_cli_fail(&err);
    if (a->json) {
        json_t *o = json_pack("{s:I, s:I, s:b}", "sweep_id", (json_int_t)id, "job_id",
                              (json_int_t)job, "created", created);
        hgf_cli_print_json(o);
        json_decref(o);
    } else {
        printf("sweep %lld %s (job %lld)\n", (long long)id,
               created ? "queued" : "is already queued or running", (long long)job);
    }
    return 0;
}

static int sweep_main(hgf_runtime *rt, void *arg)
{
    sweep_args *a = arg;
    return a->wait ? run_sweep(rt, a) : queue_sweep(rt, a);
}

/* ---- list and show ---------------------------------------------------- */

static int list_main(hgf_runtime *rt, void *arg)
{
    hgf_err err;
    json_t *a = NULL;
    if (hgf_sweep_list(rt->store, 100, &a, &err))
        return hgf_cli_fail(&err);
    if (*(int *)arg) {
        hgf_cli_print_json(a);
    } else {
        size_t i;
        json_t *s;
        printf("%-6s %-10s %-21s %-21s %s\n", "ID", "STATUS", "STARTED", "FINISHED", "BY");
        json_array_foreach(a, i, s)
            printf("%-6lld %-10s %-21s %-21s %s\n",
                   (long long)json_integer_value(json_object_get(s, "id")),
                   json_string_value(json_object_get(s, "status")),
                   json_string_value(json_object_get(s, "started_at")),
                   json_string_value(json_object_get(s, "finished_at")) ?: "-",
                   json_string_value(json_object_get(s, "requested_by")));
    }
    json_decref(a);
    return 0;
}

typedef struct show_args {
    int64_t id;
    hgf_report_format format;
} show_args;

static int show_main(hgf_runtime *rt, void *arg)
{
    show_args *s = arg;
    hgf_err err;
    json_t *r = NULL;
    int rc = hgf_sweep_get(rt->store, s->id, &r, &err);
    if (!rc)
        rc = write_report(r, s->format, NULL, &err);
    json_decref(r);
    if (rc == HGF_ENOTFOUND)
        err.code = HGF_EINPUT;
    return rc ? hgf_cli_fail(&err) : 0;
}

static int cmd_list(int argc, char **argv)
{
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json"))
            return hgf_cli_usage_error("sweep list", "unknown argument %s", argv[i]);
        json = 1;
    }
    return with_runtime(list_main, &json);
}

static int cmd_show(int argc, char **argv)
{
    show_args s = {0, HGF_REPORT_JSON};
    const char *id = NULL;
    hgf_err err;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--format") && i + 1 < argc) {
            if (hgf_report_format_parse(argv[++i], "--format", &s.format, &err))
                return hgf_cli_fail(&err);
        } else if (argv[i][0] != '-' && !id) {
            id = argv[i];
        } else {
            return hgf_cli_usage_error("sweep show", "unexpected argument %s", argv[i]);
        }
    }
    char *end = NULL;
    if (!id || (s.id = strtoll(id, &end, 10)) <= 0 || *end)
        return hgf_cli_usage_error("sweep show", "expected a sweep ID (a positive number)");
    return with_runtime(show_main, &s);
}

int hgf_cli_sweep(int argc, char **argv)
{
    if (hgf_cli_wants_help(argc, argv)) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "list"))
        return cmd_list(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "show"))
        return cmd_show(argc - 1, argv + 1);
    sweep_args a = {.o = {.requested_by = "cli", .rescan_after_s = HGF_CONFIG_DEFAULT_RESCAN_S,
                          .active_within_s = HGF_SWEEP_DEFAULT_ACTIVE_S,
                          .stale_days = HGF_REPORT_STALE_DAYS, .progress = 1}};
    int rc = parse(argc, argv, &a);
    return rc ? rc : with_runtime(sweep_main, &a);
}
