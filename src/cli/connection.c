#include "hgfleet/cli.h"
#include "hgfleet/conn.h"
#include "hgfleet/creds.h"
#include "hgfleet/jobs.h"
#include "hgfleet/schedule.h"
#include "hgfleet/secret.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE_ADD[] =
    "Usage: hgfleet connection add REGISTRY_URL [options]\n"
    "\n"
    "Adds one ECR registry (one account in one region) and queues its first sync.\n"
    "REGISTRY_URL is [https://]<12-digit account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn][/]\n"
    "\n"
    "Options:\n"
    "  --name NAME                  a label (default: <account>/<region>)\n"
    "  --schedule SPEC              manual | on_push | every:<dur> | daily[@HH:MM] |\n"
    "                               weekly[@day HH:MM] | cron:<5 fields> | on_push+<time spec>\n"
    "                               (default: daily)\n"
    "  --tag-include GLOB           sync only tags matching GLOB (repeatable)\n"
    "  --tag-exclude GLOB           skip tags matching GLOB (repeatable)\n"
    "  --access-key-id ID           static IAM keys: the access key id ...\n"
    "  --secret-access-key-file F   ... and a file holding the secret ('-' reads stdin).\n"
    "                               Stored encrypted under HGFLEET_MASTER_KEY; never on argv.\n"
    "  --json                       print the connection as JSON\n"
    "  -h, --help                   this help\n"
    "\n"
    "Without keys the connection uses the host's own credentials (the default chain).\n"
    "Exit codes: 0 added, 1 failed (e.g. database unreachable), 2 bad input or duplicate.\n";

static const char USAGE[] =
    "Usage: hgfleet connection <command> [options]\n"
    "\n"
    "Commands:\n"
    "  add REGISTRY_URL [options]    add a registry (see 'connection add --help')\n"
    "  list [--json]                 list connections with their last sync\n"
    "  show ID|REGISTRY_URL [--json] show one connection\n"
    "  remove ID|REGISTRY_URL [--purge]\n"
    "                                remove; history is kept unless --purge\n";

typedef struct add_opts {
    const char *url, *name, *schedule, *akid, *secret_file;
    char **include, **exclude;
    int n_include, n_exclude, json;
} add_opts;

static int push_glob(char ***v, int *n, const char *glob, const char *flag)
{
    if (!*glob || strlen(glob) > 256)
        return hgf_cli_usage_error("connection add", "%s: expected a glob of 1 to 256 characters",
                                   flag);
    char **p = realloc(*v, (size_t)(*n + 1) * sizeof *p);
    if (!p)
        return 1;
    p[(*n)++] = (char *)glob;
    *v = p;
    return 0;
}

static int parse_add(int argc, char **argv, add_opts *o)
{
    static const struct option longopts[] = {
        {"name", required_argument, 0, 'n'},          {"schedule", required_argument, 0, 's'},
        {"tag-include", required_argument, 0, 'i'},   {"tag-exclude", required_argument, 0, 'x'},
        {"access-key-id", required_argument, 0, 'k'}, {"secret-access-key-file", required_argument, 0, 'f'},
        {"secret-access-key", required_argument, 0, 'S'}, {"json", no_argument, 0, 'j'},
        {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int c, rc = 0;
    while (!rc && (c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case 'n': o->name = optarg; break;
        case 's': o->schedule = optarg; break;
        case 'i': rc = push_glob(&o->include, &o->n_include, optarg, "--tag-include"); break;
        case 'x': rc = push_glob(&o->exclude, &o->n_exclude, optarg, "--tag-exclude"); break;
        case 'k': o->akid = optarg; break;
        case 'f': o->secret_file = optarg; break;
        case 'j': o->json = 1; break;
        case 'S':
            return hgf_cli_usage_error("connection add",
                                       "--secret-access-key: secrets are never taken on the "
                                       "command line (ps shows it); use "
                                       "--secret-access-key-file FILE or '-' for stdin");
        case ':':
            return hgf_cli_usage_error("connection add", "%s: needs a value", argv[optind - 1]);
        default:
            return hgf_cli_usage_error("connection add", "unknown option %s", argv[optind - 1]);
        }
    }
    if (rc)
        return rc;
    if (optind >= argc)
        return hgf_cli_usage_error("connection add", "REGISTRY_URL: missing");
    if (argc - optind > 1)
        return hgf_cli_usage_error("connection add", "unexpected argument \"%s\"", argv[optind + 1]);
    o->url = argv[optind];
    return 0;
}

static int validate_add(add_opts *o, hgf_connection *c, hgf_err *err)
{
    int rc = hgf_endpoint_parse_registry(o->url, &c->reg, err);
    if (rc)
        return rc;
    if (o->name && (!*o->name || strlen(o->name) > 128))
        return hgf_err_set(err, HGF_EINPUT, "--name: expected 1 to 128 characters");
    if (o->schedule) {
        hgf_schedule s;
        if ((rc = hgf_schedule_parse(o->schedule, &s, err)))
            return rc;
    }
    if (o->akid && !o->secret_file)
        return hgf_err_set(err, HGF_EINPUT, "--secret-access-key-file: required with --access-key-id");
    if (o->secret_file && !o->akid)
        return hgf_err_set(err, HGF_EINPUT, "--access-key-id: required with --secret-access-key-file");
    if (o->akid && (rc = hgf_creds_validate_access_key_id(o->akid, "--access-key-id", err)))
        return rc;
    return 0;
}

/* Reads and seals the secret before the database is opened, so a missing
 * file or key is an input error even when no database is reachable. */
static int seal_secret(const add_opts *o, hgf_buf *sealed, hgf_err *err)
{
    hgf_config cfg;
    int rc = hgf_config_load(&cfg, err);
    if (!rc && !cfg.has_master_key)
        rc = hgf_err_set(err, HGF_EINPUT,
                         "HGFLEET_MASTER_KEY: required to store static credentials (32 random "
                         "bytes, base64; e.g. openssl rand -base64 32)");
    char *secret = rc ? NULL : hgf_config_read_secret_file(o->secret_file, "--secret-access-key-file", err);
    if (!rc && !secret)
        rc = err->code;
    if (!rc && !*secret)
        rc = hgf_err_set(err, HGF_EINPUT, "--secret-access-key-file: the file is empty");
    if (!rc)
        rc = hgf_secret_seal(&cfg.master_key, secret, strlen(secret), sealed, err);
    if (secret) {
        hgf_secret_wipe(secret, strlen(secret));
        free(secret);
    }
    hgf_config_free(&cfg);
    return rc;
}

static int queue_first_sync(hgf_runtime *rt, const hgf_connection *c, int64_t *job, hgf_err *err)
{
    char payload[64], key[64];
    snprintf(payload, sizeof payload, "{\"connection_id\":%lld}", (long long)c->id);
    snprintf(key, sizeof key, "sync:%lld", (long long)c->id);
    return hgf_jobs_enqueue(rt->store, "sync", payload, 5, key, job, NULL, err);
}

static int cmd_add(int argc, char **argv)
{
    if (hgf_cli_wants_help(argc, argv)) {
        fputs(USAGE_ADD, stdout);
        return 0;
    }
    add_opts o = {0};
    hgf_connection c = {0};
    hgf_err err;
    hgf_err_clear(&err);
    hgf_buf sealed = HGF_BUF_INIT;
    int rc = parse_add(argc, argv, &o);
    if (rc) {
        free(o.include);
        free(o.exclude);
        return rc;
    }
    if ((rc = validate_add(&o, &c, &err)) || (o.akid && (rc = seal_secret(&o, &sealed, &err)))) {
        free(o.include);
        free(o.exclude);
        return hgf_cli_fail(&err);
    }
    char defname[64];
    snprintf(defname, sizeof defname, "%s/%s", c.reg.account_id, c.reg.region);
    hgf_config cfg;
    hgf_runtime rt;
    int code = hgf_cli_open(&cfg, &rt);
    if (code == 0) {
        hgf_connection row = {.reg = c.reg, .name = (char *)(o.name ? o.name : defname),
                              .access_key_id = (char *)o.akid, .secret_sealed = sealed.data,
                              .schedule = (char *)(o.schedule ? o.schedule : "daily"),
                              .tag_include = o.include, .n_include = o.n_include,
                              .tag_exclude = o.exclude, .n_exclude = o.n_exclude};
        snprintf(row.auth_mode, sizeof row.auth_mode, "%s", o.akid ? "static" : "host");
        int64_t job = 0;
        rc = hgf_conn_insert(rt.store, &row, &err);
        if (!rc)
            rc = queue_first_sync(&rt, &row, &job, &err);
        if (rc) {
            code = hgf_cli_fail(&err);
        } else if (o.json) {
            hgf_connection full;
            if (hgf_conn_get(rt.store, row.id, &full, &err) == 0) {
                json_t *j = hgf_conn_to_json(&full);
                json_object_set_new(j, "first_sync_job", json_integer(job));
                hgf_cli_print_json(j);
                json_decref(j);
                hgf_conn_free(&full);
            }
        } else {
            printf("connection %lld added: %s (%s, auth %s); first sync queued as job %lld\n",
                   (long long)row.id, row.reg.host, row.name, row.auth_mode, (long long)job);
        }
        hgf_cli_close(&cfg, &rt);
    }
    hgf_secret_wipe_buf(&sealed);
    free(o.include);
    free(o.exclude);
    return code;
}

static int simple_opts(int argc, char **argv, const char *cmd, int *json, int *purge,
                       const char **target, int need_target)
{
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && json)
            *json = 1;
        else if (!strcmp(argv[i], "--purge") && purge)
            *purge = 1;
        else if (argv[i][0] == '-')
            return hgf_cli_usage_error(cmd, "unknown option %s", argv[i]);
        else if (need_target && !*target)
            *target = argv[i];
        else
            return hgf_cli_usage_error(cmd, "unexpected argument \"%s\"", argv[i]);
    }
    if (need_target && !*target)
        return hgf_cli_usage_error(cmd, "ID|REGISTRY_URL: missing");
    return 0;
}

static void print_row(const hgf_connection *c)
{
    printf("%-5lld %-24.24s %-48s %-7s %-14.14s %-20s %s\n", (long long)c->id, c->name, c->reg.host,
           c->auth_mode, c->schedule, c->last_sync_at ? c->last_sync_at : "-",
           c->last_sync_status ? c->last_sync_status : "never");
}

static int cmd_list(int argc, char **argv)
{
    int json = 0;
    int rc = simple_opts(argc, argv, "connection list", &json, NULL, NULL, 0);
    if (rc)
        return rc;
    hgf_config cfg;
    hgf_runtime rt;
    int code = hgf_cli_open(&cfg, &rt);
    if (code)
        return code;
    hgf_connection *list;
    int n;
    hgf_err err;
    hgf_err_clear(&err);
    if (hgf_conn_list(rt.store, &list, &n, &err)) {
        code = hgf_cli_fail(&err);
    } else if (json) {
        json_t *a = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(a, hgf_conn_to_json(&list[i]));
        hgf_cli_print_json(a);
        json_decref(a);
    } else {
        printf("%-5s %-24s %-48s %-7s %-14s %-20s %s\n", "ID", "NAME", "REGISTRY", "AUTH",
               "SCHEDULE", "LAST SYNC", "STATUS");
        for (int i = 0; i < n; i++)
            print_row(&list[i]);
    }
    hgf_conn_free_list(list, n);
    hgf_cli_close(&cfg, &rt);
    return code;
}

/* Looking up a connection the user named: not finding it is their input error. */
static int find_target(hgf_runtime *rt, const char *target, hgf_connection *c, hgf_err *err)
{
    int rc = hgf_conn_find(rt->store, target, c, err);
    if (rc == HGF_ENOTFOUND)
        err->code = HGF_EINPUT;
    return rc;
}

static int cmd_show(int argc, char **argv)
{
    int json = 0;
    const char *target = NULL;
    int rc = simple_opts(argc, argv, "connection show", &json, NULL, &target, 1);
    hgf_err err;
    hgf_registry probe;
    if (!rc && strlen(target) >= 12 && hgf_endpoint_parse_registry(target, &probe, &err))
        return hgf_cli_fail(&err);
    if (rc)
        return rc;
    hgf_config cfg;
    hgf_runtime rt;
    int code = hgf_cli_open(&cfg, &rt);
    if (code)
        return code;
    hgf_connection c;
    hgf_err_clear(&err);
    if (find_target(&rt, target, &c, &err)) {
        code = hgf_cli_fail(&err);
    } else {
        json_t *j = hgf_conn_to_json(&c);
        if (json) {
            hgf_cli_print_json(j);
        } else {
            const char *k;
            json_t *v;
            json_object_foreach(j, k, v)
            {
                char *t = json_is_string(v) ? NULL : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
                printf("%-18s %s\n", k, t ? t : json_string_value(v));
                free(t);
            }
        }
        json_decref(j);
        hgf_conn_free(&c);
    }
    hgf_cli_close(&cfg, &rt);
    return code;
}

static int cmd_remove(int argc, char **argv)
{
    int purge = 0;
    const char *target = NULL;
    int rc = simple_opts(argc, argv, "connection remove", NULL, &purge, &target, 1);
    hgf_err err;
    hgf_registry probe;
    if (!rc && strlen(target) >= 12 && hgf_endpoint_parse_registry(target, &probe, &err))
        return hgf_cli_fail(&err);
    if (rc)
        return rc;
    hgf_config cfg;
    hgf_runtime rt;
    int code = hgf_cli_open(&cfg, &rt);
    if (code)
        return code;
    hgf_connection c;
    hgf_err_clear(&err);
    if (find_target(&rt, target, &c, &err) || hgf_conn_remove(rt.store, c.id, purge, &err)) {
        code = hgf_cli_fail(&err);
    } else {
        printf("connection %lld (%s) removed%s\n", (long long)c.id, c.reg.host,
               purge ? " with its catalog" : "; its history is kept (use --purge to delete it)");
        hgf_conn_free(&c);
    }
    hgf_cli_close(&cfg, &rt);
    return code;
}

int hgf_cli_connection(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "add"))
        return cmd_add(argc - 1, argv + 1);
    if (hgf_cli_wants_help(argc, argv)) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (!strcmp(sub, "list"))
        return cmd_list(argc, argv);
    if (!strcmp(sub, "show"))
        return cmd_show(argc, argv);
    if (!strcmp(sub, "remove"))
        return cmd_remove(argc, argv);
    return hgf_cli_usage_error("connection", "unknown command \"%s\"", sub);
}
