#include "hgfleet/catalog.h"
#include "hgfleet/cli.h"

#include <stdlib.h>
#include <string.h>

#define DEFAULT_LIMIT 100
#define MAX_LIMIT 100000

static const char USAGE[] =
    "Usage: hgfleet jobs list [--state STATE] [--kind KIND] [--limit N] [--json]\n"
    "\n"
    "Lists the job queue shared by every replica, newest first (at most 100 jobs\n"
    "unless --limit says otherwise).\n"
    "\n"
    "  --state STATE   queued, running, done or failed\n"
    "  --kind KIND     sync, scan or sweep\n"
    "  --limit N       at most N jobs (1 to 100000)\n"
    "  --json          one JSON array of objects with id, kind, state, priority,\n"
    "                  attempts, max_attempts, run_at, lease_owner, lease_expires_at,\n"
    "                  dedup_key, last_error, created_at, finished_at and payload\n"
    "\n"
    "Exit codes: 0 listed, 1 the database is unreachable, 2 bad arguments.\n";

typedef struct list_opts {
    int json;
    hgf_catalog_query q;
} list_opts;

static int parse(int argc, char **argv, list_opts *o)
{
    const char *state = NULL, *kind = NULL, *limit_text = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int has_next = i + 1 < argc;
        if (!strcmp(a, "--json"))
            o->json = 1;
        else if (!strcmp(a, "--state") && has_next)
            state = argv[++i];
        else if (!strcmp(a, "--kind") && has_next)
            kind = argv[++i];
        else if (!strcmp(a, "--limit") && has_next)
            limit_text = argv[++i];
        else if (!strcmp(a, "--state") || !strcmp(a, "--kind") || !strcmp(a, "--limit"))
            return hgf_cli_usage_error("jobs list", "%s: needs a value", a);
        else
            return hgf_cli_usage_error("jobs list", "unexpected argument \"%s\"", a);
    }
    hgf_err err;
    int limit;
    if (hgf_catalog_parse_limit(limit_text, "--limit", DEFAULT_LIMIT, MAX_LIMIT, &limit, &err) ||
        hgf_catalog_jobs(&o->q, state, kind, limit, "--", &err))
        return hgf_cli_usage_error("jobs list", "%s", err.msg);
    return 0;
}

static const char *str_or_dash(json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v && *v ? v : "-";
}

static void print_text(json_t *jobs)
{
    printf("%-8s %-6s %-8s %4s %8s  %-20s  %-20s  %s\n", "ID", "KIND", "STATE", "PRIO",
           "ATTEMPTS", "CREATED", "RUN AT", "KEY / LAST ERROR");
    size_t i;
    json_t *j;
    json_array_foreach(jobs, i, j)
    {
        char attempts[32];
        snprintf(attempts, sizeof attempts, "%lld/%lld",
                 json_integer_value(json_object_get(j, "attempts")),
                 json_integer_value(json_object_get(j, "max_attempts")));
        const char *err = json_string_value(json_object_get(j, "last_error"));
        printf("%-8lld %-6s %-8s %4lld %8s  %-20s  %-20s  %s%s%.120s\n",
               json_integer_value(json_object_get(j, "id")), str_or_dash(j, "kind"),
               str_or_dash(j, "state"), json_integer_value(json_object_get(j, "priority")),
               attempts, str_or_dash(j, "created_at"), str_or_dash(j, "run_at"),
               str_or_dash(j, "dedup_key"), err ? ": " : "", err ? err : "");
    }
}

static int cmd_list(int argc, char **argv)
{
    list_opts o;
    memset(&o, 0, sizeof o);
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc;
    hgf_config cfg;
    hgf_runtime rt;
    int code = hgf_cli_open(&cfg, &rt);
    if (code)
        return code;
    hgf_err err;
    hgf_err_clear(&err);
    json_t *jobs = NULL;
    if (hgf_catalog_exec(rt.store, &o.q, &jobs, &err))
        code = hgf_cli_fail(&err);
    else if (o.json)
        hgf_cli_print_json(jobs);
    else
        print_text(jobs);
    json_decref(jobs);
    hgf_cli_close(&cfg, &rt);
    return code;
}

int hgf_cli_jobs(int argc, char **argv)
{
    if (hgf_cli_wants_help(argc, argv) || argc < 2) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "list"))
        return hgf_cli_usage_error("jobs", "unknown subcommand \"%s\" (expected list)", argv[1]);
    return cmd_list(argc, argv);
}
