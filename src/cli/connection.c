#include "hgfleet/catalog.h"
#include "hgfleet/cli.h"
#include "hgfleet/conn.h"
#include "hgfleet/conntest.h"
#include "hgfleet/credprov.h"
#include "hgfleet/creds.h"
#include "hgfleet/jobs.h"
#include "hgfleet/schedule.h"
#include "hgfleet/secret.h"
#include "hgfleet/sync.h"

#include <ev.h>
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
    "  --role-arn ARN               assume this role (cross-account), from the host's\n"
    "                               credentials or from the static keys above\n"
    "  --external-id ID             the ExternalId the role's trust policy requires\n"
    "  --session-name NAME          RoleSessionName (default hgfleet-<account>)\n"
    "  --duration SECONDS           session length, 900-43200 (3600 at most with a chain)\n"
    "  --via-role-arn ARN           assume this role first: a two-hop role chain\n"
    "  --json                       print the connection as JSON\n"
    "  -h, --help                   this help\n"
    "\n"
    "Without keys the connection uses the host's own credentials (the default chain).\n"
    "Exit codes: 0 added, 1 failed (e.g. database unreachable), 2 bad input or duplicate.\n";

static const char USAGE_UPDATE[] =
    "Usage: hgfleet connection update ID|REGISTRY_URL [options]\n"
    "\n"
    "Changes a connection in place. Takes the options of 'connection add' (see\n"
    "'connection add --help'); only the options given change. Also:\n"
    "  --no-keys        drop the static keys (use the host's credentials)\n"
    "  --no-role        drop the role (and any --via-role-arn)\n"
    "  --clear-tag-filters  drop every --tag-include and --tag-exclude\n"
    "On a connection with a role, --external-id, --session-name, --duration and\n"
    "--via-role-arn may each change alone, and --role-arn alone keeps them.\n"
    "A new --schedule takes effect without restarting any server.\n";

static const char USAGE[] =
    "Usage: hgfleet connection <command> [options]\n"
    "\n"
    "Commands:\n"
    "  add REGISTRY_URL [options]    add a registry (see 'connection add --help')\n"
    "  list [--json]                 list connections with their last sync\n"
    "  show ID|REGISTRY_URL [--json] show one connection\n"
    "  update ID|REGISTRY_URL [options]\n"
    "                                change a connection (see 'connection update --help')\n"
    "  test ID|REGISTRY_URL [--json] diagnose a connection step by step\n"
    "  import FILE [options]         c7n-org accounts.yml or CSV (see 'connection import --help')\n"
    "  remove ID|REGISTRY_URL [--purge]\n"
    "                                remove; history is kept unless --purge\n";

typedef struct add_opts {
    const char *cmd; /* "connection add" or "connection update" */
    const char *url, *name, *schedule, *akid, *secret_file;
    const char *role_arn, *external_id, *session_name, *via_role_arn, *duration_text;
    int duration;
    char **include, **exclude;
    int n_include, n_exclude, json;
    int no_keys, no_role, clear_filters; /* update only */
} add_opts;

static int push_glob(const char *cmd, char ***v, int *n, const char *glob, const char *flag)
{
    if (!*glob || strlen(glob) > 256)
        return hgf_cli_usage_error(cmd, "%s: expected a glob of 1 to 256 characters", flag);
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
        {"role-arn", required_argument, 0, 'r'},      {"external-id", required_argument, 0, 'e'},
        {"session-name", required_argument, 0, 'N'},  {"duration", required_argument, 0, 'd'},
        {"via-role-arn", required_argument, 0, 'v'},  {"no-keys", no_argument, 0, 'K'},
        {"no-role", no_argument, 0, 'R'},             {"clear-tag-filters", no_argument, 0, 'C'},
        {0, 0, 0, 0}};
    int update = !strcmp(o->cmd, "connection update");
    optind = 1;
    opterr = 0;
    int c, rc = 0;
    while (!rc && (c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case 'n': o->name = optarg; break;
        case 's': o->schedule = optarg; break;
        case 'i': rc = push_glob(o->cmd, &o->include, &o->n_include, optarg, "--tag-include"); break;
        case 'x': rc = push_glob(o->cmd, &o->exclude, &o->n_exclude, optarg, "--tag-exclude"); break;
        case 'k': o->akid = optarg; break;
        case 'f': o->secret_file = optarg; break;
        case 'j': o->json = 1; break;
        case 'r': o->role_arn = optarg; break;
        case 'e': o->external_id = optarg; break;
        case 'N': o->session_name = optarg; break;
        case 'd': o->duration_text = optarg; break;
        case 'v': o->via_role_arn = optarg; break;
        case 'K': case 'R': case 'C':
            if (!update)
                return hgf_cli_usage_error(o->cmd, "%s: only for 'connection update'", argv[optind - 1]);
            *(c == 'K' ? &o->no_keys : c == 'R' ? &o->no_role : &o->clear_filters) = 1;
            break;
        case 'S':
            return hgf_cli_usage_error(o->cmd,
                                       "--secret-access-key: secrets are never taken on the "
                                       "command line (ps shows it); use "
                                       "--secret-access-key-file FILE or '-' for stdin");
        case ':':
            return hgf_cli_usage_error(o->cmd, "%s: needs a value", argv[optind - 1]);
        default:
            return hgf_cli_usage_error(o->cmd, "unknown option %s", argv[optind - 1]);
        }
    }
    if (rc)
        return rc;
    if (optind >= argc)
        return hgf_cli_usage_error(o->cmd, update ? "ID|REGISTRY_URL: missing" : "REGISTRY_URL: missing");
    if (argc - optind > 1)
        return hgf_cli_usage_error(o->cmd, "unexpected argument \"%s\"", argv[optind + 1]);
    o->url = argv[optind];
    return 0;
}

static int validate_role(add_opts *o, const hgf_registry *reg, hgf_err *err)
{
    if (o->duration_text) {
        char *end;
        long d = strtol(o->duration_text, &end, 10);
        if (*end || d < 900 || d > 43200)
            return hgf_err_set(err, HGF_EINPUT, "--duration: expected 900 to 43200 seconds, got \"%s\"",
                               o->duration_text);
        o->duration = (int)d;
    }
    /* An update may change one role option of a connection that has a role:
     * apply_update checks the merged set once the row is loaded. */
    int update = !strcmp(o->cmd, "connection update");
    int role_opts = o->external_id || o->session_name || o->duration_text || o->via_role_arn;
    if (role_opts && o->no_role)
        return hgf_err_set(err, HGF_EINPUT, "--no-role: cannot be combined with --external-id, "
                                            "--session-name, --duration or --via-role-arn");
    if (!o->role_arn && role_opts && !update)
        return hgf_err_set(err, HGF_EINPUT, "--role-arn: required with --external-id, "
                                            "--session-name, --duration and --via-role-arn");
    if (!o->role_arn)
        return 0;
    hgf_auth_spec spec = {.mode = "assume_role", .role_arn = o->role_arn,
                          .external_id = o->external_id, .session_name = o->session_name,
                          .duration_seconds = o->duration, .via_role_arn = o->via_role_arn,
                          .region = reg ? reg->region : NULL, .partition = reg ? reg->partition : NULL};
    return hgf_credprov_validate(&spec, err);
}

static int validate_add(add_opts *o, hgf_connection *c, hgf_err *err)
{
    int update = !strcmp(o->cmd, "connection update");
    int rc = update ? hgf_conn_key_check(o->url, &c->reg, err)
                    : hgf_endpoint_parse_registry(o->url, &c->reg, err);
    if (rc)
        return rc;
    /* An update by ID learns the registry (its partition) from the row. */
    int by_id = update && !c->reg.account_id[0];
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
    if (o->akid && o->no_keys)
        return hgf_err_set(err, HGF_EINPUT, "--no-keys: cannot be combined with --access-key-id");
    if (o->role_arn && o->no_role)
        return hgf_err_set(err, HGF_EINPUT, "--no-role: cannot be combined with --role-arn");
    return validate_role(o, by_id ? NULL : &c->reg, err);
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
    char *secret =
        rc ? NULL : hgf_config_read_secret_file(o->secret_file, "--secret-access-key-file", err);
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

static void free_opts(add_opts *o)
{
    free(o->include);
    free(o->exclude);
}

/* Parses, validates and seals before the database is opened. Returns the
 * exit code on failure (reported already), else 0. */
static int prepare_opts(int argc, char **argv, add_opts *o, hgf_connection *c, hgf_buf *sealed)
{
    int code = parse_add(argc, argv, o);
    if (code)
        return code;
    hgf_err err;
    hgf_err_clear(&err);
    if (validate_add(o, c, &err) || (o->akid && seal_secret(o, sealed, &err)))
        return hgf_cli_fail(&err);
    return 0;
}

/* Auth mode follows from what is set: a role wins, then keys, else the host. */
static void derive_auth_mode(hgf_connection *row)
{
    snprintf(row->auth_mode, sizeof row->auth_mode, "%s",
             row->role_arn ? "assume_role" : row->access_key_id ? "static" : "host");
}

static void print_conn(hgf_runtime *rt, int64_t id, int64_t job, const char *verb, int json)
{
    hgf_connection full;
    hgf_err err;
    if (hgf_conn_get(rt->store, id, &full, &err))
        return;
    if (json) {
        json_t *j = hgf_conn_to_json(&full);
        if (job)
            json_object_set_new(j, "first_sync_job", json_integer(job));
        hgf_cli_print_json(j);
        json_decref(j);
    } else if (job) {
        printf("connection %lld %s: %s (%s, auth %s); first sync queued as job %lld\n",
               (long long)id, verb, full.reg.host, full.name, full.auth_mode, (long long)job);
    } else {
        printf("connection %lld %s: %s (%s, auth %s, schedule %s)\n", (long long)id, verb,
               full.reg.host, full.name, full.auth_mode, full.schedule);
    }
    hgf_conn_free(&full);
}

static int cmd_add(int argc, char **argv)
{
    if (hgf_cli_wants_help(argc, argv)) {
        fputs(USAGE_ADD, stdout);
        return 0;
    }
    add_opts o = {.cmd = "connection add"};
    hgf_connection c = {0};
    hgf_err err;
    hgf_err_clear(&err);
    hgf_buf sealed = HGF_BUF_INIT;
    int rc = prepare_opts(argc, argv, &o, &c, &sealed);
    if (rc) {
        free_opts(&o);
        return rc;
    }
    char defname[64];
    snprintf(defname, sizeof defname, "%s/%s", c.reg.account_id, c.reg.region);
    hgf_config cfg;
    hgf_runtime rt;
    int code = hgf_cli_open(&cfg, &rt);
    if (code == 0) {
        hgf_connection row = {.reg = c.reg, .name = (char *)(o.name ? o.name : defname),
                              .access_key_id = (char *)o.akid, .secret_sealed = sealed.data,
                              .role_arn = (char *)o.role_arn, .external_id = (char *)o.external_id,
                              .session_name = (char *)o.session_name,
                              .via_role_arn = (char *)o.via_role_arn, .duration_seconds = o.duration,
                              .schedule = (char *)(o.schedule ? o.schedule : "daily"),
                              .tag_include = o.include, .n_include = o.n_include,
                              .tag_exclude = o.exclude, .n_exclude = o.n_exclude};
        derive_auth_mode(&row);
        int64_t job = 0;
        rc = hgf_conn_insert(rt.store, &row, &err);
        if (!rc)
            rc = hgf_sync_queue_first(rt.store, row.id, &job, &err);
        if (rc)
            code = hgf_cli_fail(&err);
        else
            print_conn(&rt, row.id, job, "added", o.json);
        hgf_cli_close(&cfg, &rt);
    }
    hgf_secret_wipe_buf(&sealed);
    free_opts(&o);
    return code;
}

static void replace_str(char **field, const char *value)
{
    free(*field);
    *field = value ? strdup(value) : NULL;
}

static void replace_globs(char ***field, int *n, char **values, int nv)
{
    for (int i = 0; i < *n; i++)
        free((*field)[i]);
    free(*field);
    *field = nv ? calloc((size_t)nv, sizeof **field) : NULL;
    for (int i = 0; i < nv; i++)
        (*field)[i] = strdup(values[i]);
    *n = nv;
}

/* The role options given replace the stored ones one by one; --role-arn
 * alone keeps the external id, session name, duration and first hop. The
 * merged set is validated against the registry's partition. */
static int merge_role(const add_opts *o, hgf_connection *row, hgf_err *err)
{
    if (o->no_role) {
        replace_str(&row->role_arn, NULL);
        replace_str(&row->external_id, NULL);
        replace_str(&row->session_name, NULL);
        replace_str(&row->via_role_arn, NULL);
        row->duration_seconds = 0;
        return 0;
    }
    if (!o->role_arn && !o->external_id && !o->session_name && !o->duration_text &&
        !o->via_role_arn)
        return 0;
    if (!o->role_arn && !row->role_arn)
        return hgf_err_set(err, HGF_EINPUT,
                           "--role-arn: required with --external-id, --session-name, --duration "
                           "and --via-role-arn: connection %lld has no role",
                           (long long)row->id);
    if (o->role_arn)
        replace_str(&row->role_arn, o->role_arn);
    if (o->external_id)
        replace_str(&row->external_id, o->external_id);
    if (o->session_name)
        replace_str(&row->session_name, o->session_name);
    if (o->via_role_arn)
        replace_str(&row->via_role_arn, o->via_role_arn);
    if (o->duration_text)
        row->duration_seconds = o->duration;
    hgf_auth_spec spec = {.mode = "assume_role", .role_arn = row->role_arn,
                          .external_id = row->external_id, .session_name = row->session_name,
                          .duration_seconds = row->duration_seconds,
                          .via_role_arn = row->via_role_arn, .region = row->reg.region,
                          .partition = row->reg.partition};
    return hgf_credprov_validate(&spec, err);
}

static int apply_update(const add_opts *o, hgf_connection *row, const char *sealed, hgf_err *err)
{
    if (merge_role(o, row, err))
        return HGF_EINPUT;
    if (o->name)
        replace_str(&row->name, o->name);
    if (o->schedule)
        replace_str(&row->schedule, o->schedule);
    if (o->no_keys || o->akid) {
        replace_str(&row->access_key_id, o->akid);
        replace_str(&row->secret_sealed, o->akid ? sealed : NULL);
    }
    if (o->clear_filters) {
        replace_globs(&row->tag_include, &row->n_include, NULL, 0);
        replace_globs(&row->tag_exclude, &row->n_exclude, NULL, 0);
    }
    if (o->n_include)
        replace_globs(&row->tag_include, &row->n_include, o->include, o->n_include);
    if (o->n_exclude)
        replace_globs(&row->tag_exclude, &row->n_exclude, o->exclude, o->n_exclude);
    derive_auth_mode(row);
    return 0;
}

static int cmd_update(int argc, char **argv)
{
    if (hgf_cli_wants_help(argc, argv)) {
        fputs(USAGE_UPDATE, stdout);
        return 0;
    }
    add_opts o = {.cmd = "connection update"};
    hgf_connection c = {0};
    hgf_err err;
    hgf_err_clear(&err);
    hgf_buf sealed = HGF_BUF_INIT;
    int rc = prepare_opts(argc, argv, &o, &c, &sealed);
    if (rc) {
        free_opts(&o);
        return rc;
    }
    hgf_config cfg;
    hgf_runtime rt;
    int code = hgf_cli_open(&cfg, &rt);
    if (code == 0) {
        hgf_connection row;
        rc = hgf_conn_find(rt.store, o.url, &row, &err);
        if (rc == HGF_ENOTFOUND)
            err.code = HGF_EINPUT;
        if (!rc)
            rc = apply_update(&o, &row, sealed.data, &err);
        if (!rc)
            rc = hgf_conn_update(rt.store, &row, o.schedule != NULL, &err);
        if (rc)
            code = hgf_cli_fail(&err);
        else
            print_conn(&rt, row.id, 0, "updated", o.json);
        if (!rc || row.id)
            hgf_conn_free(&row);
        hgf_cli_close(&cfg, &rt);
    }
    hgf_secret_wipe_buf(&sealed);
    free_opts(&o);
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

static const char *str_or(const json_t *o, const char *key, const char *dflt)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : dflt;
}

static void print_row(const json_t *c)
{
    const json_t *diagnosis = json_object_get(c, "last_diagnosis");
    const char *code = json_string_value(json_object_get(diagnosis, "code"));
    printf("%-5lld %-24.24s %-48s %-11s %-14.14s %-20s %-7s %s\n",
           (long long)json_integer_value(json_object_get(c, "id")), str_or(c, "name", ""),
           str_or(c, "registry", ""), str_or(c, "auth_mode", ""), str_or(c, "schedule", ""),
           str_or(c, "last_sync_at", "-"), str_or(c, "last_sync_status", "never"),
           code ? code : "-");
}

/* The same view as GET /api/connections (catalog.h). */
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
    hgf_catalog_query q;
    json_t *list = NULL;
    hgf_err err;
    hgf_err_clear(&err);
    if (hgf_catalog_exec(rt.store, hgf_catalog_connections(&q), &list, &err)) {
        code = hgf_cli_fail(&err);
    } else if (json) {
        hgf_cli_print_json(list);
    } else {
        printf("%-5s %-24s %-48s %-11s %-14s %-20s %-7s %s\n", "ID", "NAME", "REGISTRY", "AUTH",
               "SCHEDULE", "LAST SYNC", "STATUS", "DIAGNOSIS");
        size_t i;
        json_t *c;
        json_array_foreach(list, i, c)
            print_row(c);
    }
    json_decref(list);
    hgf_cli_close(&cfg, &rt);
    return code;
}

/* Looking up a connection the user named: not finding it is their input error. */
/* A removed connection is found by its ID only for --purge: its history is
 * what the purge deletes. */
static int find_target(hgf_runtime *rt, const char *target, int purge, hgf_connection *c,
                       hgf_err *err)
{
    int rc = hgf_conn_find(rt->store, target, c, err);
    if (rc == HGF_ENOTFOUND && purge && hgf_conn_key_is_id(target))
        rc = hgf_conn_get_any(rt->store, atoll(target), c, err);
    if (rc == HGF_ENOTFOUND)
        err->code = HGF_EINPUT;
    return rc;
}

/* `<cmd> ID|REGISTRY_URL [--json] [--purge]`: the target is validated before
 * the database is opened, then the runtime is opened and the connection
 * loaded. 0 with cfg, rt and c to release with close_target, or the exit code
 * (already reported). */
static int open_target(int argc, char **argv, const char *cmd, int *json, int *purge,
                       hgf_config *cfg, hgf_runtime *rt, hgf_connection *c)
{
    const char *target = NULL;
    int rc = simple_opts(argc, argv, cmd, json, purge, &target, 1);
    if (rc)
        return rc;
    hgf_err err;
    hgf_err_clear(&err);
    if (hgf_conn_key_check(target, NULL, &err))
        return hgf_cli_fail(&err);
    int code = hgf_cli_open(cfg, rt);
    if (code)
        return code;
    if (find_target(rt, target, purge && *purge, c, &err)) {
        hgf_cli_close(cfg, rt);
        return hgf_cli_fail(&err);
    }
    return 0;
}

static void close_target(hgf_config *cfg, hgf_runtime *rt, hgf_connection *c)
{
    hgf_conn_free(c);
    hgf_cli_close(cfg, rt);
}

static int cmd_show(int argc, char **argv)
{
    int json = 0;
    hgf_config cfg;
    hgf_runtime rt;
    hgf_connection c;
    int code = open_target(argc, argv, "connection show", &json, NULL, &cfg, &rt, &c);
    if (code)
        return code;
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
    close_target(&cfg, &rt, &c);
    return 0;
}

static int cmd_remove(int argc, char **argv)
{
    int purge = 0;
    hgf_config cfg;
    hgf_runtime rt;
    hgf_connection c;
    int code = open_target(argc, argv, "connection remove", NULL, &purge, &cfg, &rt, &c);
    if (code)
        return code;
    hgf_err err;
    hgf_err_clear(&err);
    if (hgf_conn_remove(rt.store, c.id, purge, &err))
        code = hgf_cli_fail(&err);
    else
        printf("connection %lld (%s) removed%s\n", (long long)c.id, c.reg.host,
               purge ? " with its catalog" : "; its history is kept (use --purge to delete it)");
    close_target(&cfg, &rt, &c);
    return code;
}

typedef struct test_state {
    int done, healthy, json;
    hgf_runtime *rt;
} test_state;

static void print_test_text(json_t *j)
{
    printf("connection %lld (%s), auth %s\n",
           (long long)json_integer_value(json_object_get(j, "connection_id")),
           json_string_value(json_object_get(j, "registry")),
           json_string_value(json_object_get(j, "auth_mode")));
    size_t i;
    json_t *st;
    json_array_foreach(json_object_get(j, "steps"), i, st)
        printf("  %-7s %-22s %s\n", json_string_value(json_object_get(st, "status")),
               json_string_value(json_object_get(st, "name")),
               json_string_value(json_object_get(st, "detail")));
    json_t *d = json_object_get(j, "diagnosis");
    if (!json_is_object(d)) {
        printf("healthy\n");
        return;
    }
    printf("diagnosis: %s\n  likely cause: %s\n  fix: %s\n",
           json_string_value(json_object_get(d, "symptom")),
           json_string_value(json_object_get(d, "cause")),
           json_string_value(json_object_get(d, "fix")));
}

static void on_tested(const hgf_conntest_report *r, void *arg)
{
    test_state *ts = arg;
    ts->done = 1;
    ts->healthy = r->healthy;
    if (ts->json)
        hgf_cli_print_json(r->json);
    else
        print_test_text(r->json);
    json_t *d = json_deep_copy(r->healthy ? NULL : json_object_get(r->json, "diagnosis"));
    if (!d)
        d = json_pack("{s:s}", "code", "ok");
    json_object_set_new(d, "source", json_string("connection test"));
    char *text = json_dumps(d, JSON_COMPACT);
    hgf_err err;
    hgf_conn_set_diagnosis(ts->rt->store, json_integer_value(json_object_get(r->json, "connection_id")),
                           text, &err);
    free(text);
    json_decref(d);
}

static int cmd_test(int argc, char **argv)
{
    int json = 0;
    hgf_config cfg;
    hgf_runtime rt;
    hgf_connection c;
    int code = open_target(argc, argv, "connection test", &json, NULL, &cfg, &rt, &c);
    if (code)
        return code;
    hgf_err err;
    hgf_err_clear(&err);
    test_state ts = {0, 0, json, &rt};
    if (hgf_conntest_run(&rt, &c, on_tested, &ts, &err))
        code = hgf_cli_fail(&err);
    while (!code && !ts.done)
        ev_run(rt.loop, EVRUN_ONCE);
    if (!code)
        code = ts.healthy ? 0 : 1;
    close_target(&cfg, &rt, &c);
    return code;
}

static const char *sub_usage(const char *sub)
{
    static const struct {
        const char *name, *usage;
    } subs[] = {
        {"list", "Usage: hgfleet connection list [--json]\n"
                 "\n"
                 "Lists the live connections with their auth mode, schedule and last sync.\n"
                 "  --json  one JSON array on stdout (secrets are never included)\n"},
        {"show", "Usage: hgfleet connection show ID|REGISTRY_URL [--json]\n"
                 "\n"
                 "Shows one live connection, its schedule, last sync and last diagnosis.\n"
                 "  --json  one JSON object on stdout (secrets are never included)\n"},
        {"remove", "Usage: hgfleet connection remove ID|REGISTRY_URL [--purge]\n"
                   "\n"
                   "Stops syncing a registry and cancels its queued jobs. Its catalog and scan\n"
                   "history are kept, unless --purge deletes them with the connection. A\n"
                   "connection removed earlier can still be purged by its ID.\n"},
        {"test", "Usage: hgfleet connection test ID|REGISTRY_URL [--json]\n"
                 "\n"
                 "Diagnoses a connection step by step: GetCallerIdentity,\n"
                 "GetAuthorizationToken, DescribeRepositories and one manifest HEAD. The\n"
                 "diagnosis is stored on the connection.\n"
                 "  --json  the steps and the diagnosis as one JSON object\n"
                 "\n"
                 "Exit codes: 0 healthy, 1 a step failed (see the diagnosis), 2 bad arguments.\n"},
    };
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        if (!strcmp(sub, subs[i].name))
            return subs[i].usage;
    return USAGE;
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
    if (!strcmp(sub, "update"))
        return cmd_update(argc - 1, argv + 1);
    if (!strcmp(sub, "import"))
        return hgf_cli_connection_import(argc - 1, argv + 1);
    if (hgf_cli_wants_help(argc, argv)) {
        fputs(sub_usage(sub), stdout);
        return 0;
    }
    if (!strcmp(sub, "list"))
        return cmd_list(argc, argv);
    if (!strcmp(sub, "show"))
        return cmd_show(argc, argv);
    if (!strcmp(sub, "remove"))
        return cmd_remove(argc, argv);
    if (!strcmp(sub, "test"))
        return cmd_test(argc, argv);
    return hgf_cli_usage_error("connection", "unknown command \"%s\"", sub);
}
