#include "hgfleet/config.h"
#include "hgfleet/buf.h"
#include "hgfleet/schedule.h"

#include <ctype.h>
#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static char *dup_env(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    if (v && *v)
        return strdup(v);
    return dflt ? strdup(dflt) : NULL;
}

static int int_env(const char *name, int dflt, int lo, int hi, int *out, hgf_err *err)
{
    const char *v = getenv(name);
    if (!v || !*v) {
        *out = dflt;
        return 0;
    }
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || n < lo || n > hi)
        return hgf_err_set(err, HGF_EINPUT, "%s: expected an integer from %d to %d, got \"%s\"",
                           name, lo, hi, v);
    *out = (int)n;
    return 0;
}

static void strip_newline(hgf_buf *b)
{
    if (b->len && b->data[b->len - 1] == '\n')
        b->data[--b->len] = '\0';
    if (b->len && b->data[b->len - 1] == '\r')
        b->data[--b->len] = '\0';
}

char *hgf_config_read_secret_file(const char *path, const char *field, hgf_err *err)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
    if (!f) {
        hgf_err_set(err, HGF_EINPUT, "%s: cannot read file \"%s\": %s", field, path, strerror(errno));
        return NULL;
    }
    hgf_buf b = HGF_BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        hgf_buf_append(&b, chunk, n);
    int bad = ferror(f);
    if (f != stdin)
        fclose(f);
    if (bad) {
        hgf_secret_wipe_buf(&b);
        hgf_err_set(err, HGF_EINPUT, "%s: error reading \"%s\"", field, path);
        return NULL;
    }
    strip_newline(&b);
    return hgf_buf_detach(&b);
}

char *hgf_config_secret_env(const char *name, hgf_err *err)
{
    char fname[128];
    snprintf(fname, sizeof fname, "%s_FILE", name);
    const char *path = getenv(fname);
    if (path && *path)
        return hgf_config_read_secret_file(path, fname, err);
    return dup_env(name, NULL);
}

static int load_master_key(hgf_config *cfg, hgf_err *err)
{
    hgf_err e2;
    hgf_err_clear(&e2);
    char *k = hgf_config_secret_env("HGFLEET_MASTER_KEY", &e2);
    if (!k)
        return e2.code ? hgf_err_set(err, e2.code, "%s", e2.msg) : 0;
    int rc = hgf_secret_key_parse(k, "HGFLEET_MASTER_KEY", &cfg->master_key, err);
    hgf_secret_wipe(k, strlen(k));
    free(k);
    if (rc == 0)
        cfg->has_master_key = 1;
    return rc;
}

/* A credential file named in the environment but unreadable is a
 * configuration error to report at start, not a failure deep in a job. */
static int check_readable(const char *var, hgf_err *err)
{
    const char *path = getenv(var);
    if (!path || !*path)
        return 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return hgf_err_set(err, HGF_EINPUT, "%s: cannot read \"%s\": %s", var, path,
                           strerror(errno));
    fclose(f);
    return 0;
}

static int load_secret(char **out, const char *name, hgf_err *err)
{
    hgf_err e2;
    hgf_err_clear(&e2);
    *out = hgf_config_secret_env(name, &e2);
    if (!*out && e2.code)
        return hgf_err_set(err, e2.code, "%s", e2.msg);
    if (*out && strlen(*out) < 16) {
        hgf_secret_wipe(*out, strlen(*out));
        free(*out);
        *out = NULL;
        return hgf_err_set(err, HGF_EINPUT, "%s: must be at least 16 characters", name);
    }
    return 0;
}

/* Sweeps are org-wide: a schedule that only reacts to pushes means nothing
 * for them, so only timed specs (or "manual", meaning none) are accepted. */
static int load_sweep_schedule(hgf_config *cfg, hgf_err *err)
{
    const char *v = getenv("HGFLEET_SWEEP_SCHEDULE");
    hgf_schedule s;
    hgf_err e;
    if (!v || !*v)
        return 0;
    /* DESIGN calls it "the cron spec": a bare 5-field expression ("0 3 * * 0")
     * is taken as cron:<expression>; any other schedule spec works too. */
    char spec[160];
    snprintf(spec, sizeof spec, "%s", v);
    if (hgf_schedule_parse(v, &s, &e)) {
        snprintf(spec, sizeof spec, "cron:%.150s", v);
        hgf_err e2;
        if (!isdigit((unsigned char)*v) && *v != '*')
            return hgf_err_set(err, HGF_EINPUT, "HGFLEET_SWEEP_SCHEDULE: %s", e.msg);
        if (hgf_schedule_parse(spec, &s, &e2))
            return hgf_err_set(err, HGF_EINPUT, "HGFLEET_SWEEP_SCHEDULE: %s", e2.msg);
    }
    if (s.on_push)
        return hgf_err_set(err, HGF_EINPUT,
                           "HGFLEET_SWEEP_SCHEDULE \"%.64s\": on_push does not apply to sweeps; "
                           "use every:<duration>, daily, weekly or cron:<expression>", v);
    if (s.kind == HGF_SCHED_NONE)
        return 0;
    cfg->sweep_schedule = strdup(spec);
    return cfg->sweep_schedule ? 0 : hgf_err_set(err, HGF_ENOMEM, "out of memory");
}

static int load_rescan_after(hgf_config *cfg, hgf_err *err)
{
    const char *v = getenv("HGFLEET_RESCAN_AFTER");
    cfg->rescan_after_s = HGF_CONFIG_DEFAULT_RESCAN_S;
    if (!v || !*v)
        return 0;
    return hgf_duration_parse(v, "HGFLEET_RESCAN_AFTER", &cfg->rescan_after_s, err);
}

int hgf_config_db_prepare(int *on, hgf_err *err)
{
    static const char *const yes[] = {"on", "1", "true", "yes"};
    static const char *const no[] = {"off", "0", "false", "no"};
    const char *v = getenv("HGFLEET_DB_PREPARE");
    *on = 1;
    if (!v || !*v)
        return 0;
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        if (!strcasecmp(v, yes[i]))
            return 0;
        if (!strcasecmp(v, no[i])) {
            *on = 0;
            return 0;
        }
    }
    return hgf_err_set(err, HGF_EINPUT,
                       "HGFLEET_DB_PREPARE: expected on or off (or 1, 0), got \"%.32s\"", v);
}

/* RFC 9110's token: a name no request could carry would refuse every key. */
static int header_name_valid(const char *name)
{
    size_t n = strlen(name);
    return n > 0 && n <= 64 &&
           strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                        "!#$%&'*+-.^_`|~") == n;
}

int hgf_config_load(hgf_config *cfg, hgf_err *err)
{
    memset(cfg, 0, sizeof *cfg);
    hgf_err dberr;
    hgf_err_clear(&dberr);
    /* The URL carries the password: it has a _FILE form like every secret. */
    cfg->database_url = hgf_config_secret_env("HGFLEET_DATABASE_URL", &dberr);
    if (dberr.code)
        return hgf_err_set(err, dberr.code, "%s", dberr.msg);
    if (!cfg->database_url)
        cfg->database_url = dup_env("DATABASE_URL", "");
    cfg->listen = dup_env("HGFLEET_LISTEN", "0.0.0.0:8080");
    cfg->ca_bundle = dup_env("AWS_CA_BUNDLE", NULL);
    cfg->webhook_api_key_header = dup_env("HGFLEET_WEBHOOK_API_KEY_HEADER", "X-Api-Key");
    if (!header_name_valid(cfg->webhook_api_key_header))
        return hgf_err_set(err, HGF_EINPUT,
                           "HGFLEET_WEBHOOK_API_KEY_HEADER: expected an HTTP header name (letters, "
                           "digits and !#$%%&'*+-.^_`|~), got \"%.64s\"",
                           cfg->webhook_api_key_header);
    cfg->scanner = dup_env("HGFLEET_SCANNER", "none");
    int rc = int_env("HGFLEET_WORKERS", 32, 1, 4096, &cfg->workers, err);
    if (!rc)
        rc = int_env("HGFLEET_DB_CONNECTIONS", 4, 1, 64, &cfg->db_connections, err);
    if (!rc)
        rc = int_env("HGFLEET_REGISTRY_INFLIGHT", 4, 1, 1000, &cfg->per_registry_inflight, err);
    if (!rc)
        rc = int_env("HGFLEET_TOTAL_INFLIGHT", 256, 1, 100000, &cfg->total_inflight, err);
    if (!rc)
        rc = int_env("HGFLEET_LEASE_SECONDS", 15, 2, 3600, &cfg->lease_seconds, err);
    if (!rc)
        rc = int_env("HGFLEET_SCANS_PER_REGISTRY", 2, 1, 1000, &cfg->scans_per_registry, err);
    if (!rc)
        rc = int_env("HGFLEET_HTTP_REQUEST_TIMEOUT", HGF_CONFIG_DEFAULT_HTTP_REQUEST_TIMEOUT_S, 1,
                     HGF_CONFIG_MAX_HTTP_REQUEST_TIMEOUT_S, &cfg->http_request_timeout_s, err);
    if (!rc)
        rc = load_master_key(cfg, err);
    if (!rc)
        rc = load_secret(&cfg->webhook_token, "HGFLEET_WEBHOOK_TOKEN", err);
    if (!rc)
        rc = load_secret(&cfg->admin_token, "HGFLEET_ADMIN_TOKEN", err);
    if (!rc)
        rc = load_sweep_schedule(cfg, err);
    if (!rc)
        rc = load_rescan_after(cfg, err);
    int prepare;
    if (!rc)
        rc = hgf_config_db_prepare(&prepare, err);
    if (!rc)
        rc = check_readable("AWS_WEB_IDENTITY_TOKEN_FILE", err);
    if (!rc)
        rc = check_readable("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", err);
    return rc;
}

void hgf_config_free(hgf_config *cfg)
{
    free(cfg->database_url);
    free(cfg->listen);
    free(cfg->ca_bundle);
    free(cfg->webhook_api_key_header);
    free(cfg->scanner);
    free(cfg->sweep_schedule);
    if (cfg->webhook_token)
        hgf_secret_wipe(cfg->webhook_token, strlen(cfg->webhook_token));
    if (cfg->admin_token)
        hgf_secret_wipe(cfg->admin_token, strlen(cfg->admin_token));
    free(cfg->webhook_token);
    free(cfg->admin_token);
    hgf_secret_wipe(&cfg->master_key, sizeof cfg->master_key);
    memset(cfg, 0, sizeof *cfg);
}

char *hgf_config_describe_db(const char *conninfo)
{
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo ? conninfo : "", &errmsg);
    PQfreemem(errmsg);
    const char *host = NULL, *port = NULL, *db = NULL, *user = NULL;
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (!o->val)
            continue;
        if (!strcmp(o->keyword, "host") || (!host && !strcmp(o->keyword, "hostaddr")))
            host = o->val;
        else if (!strcmp(o->keyword, "port"))
            port = o->val;
        else if (!strcmp(o->keyword, "dbname"))
            db = o->val;
        else if (!strcmp(o->keyword, "user"))
            user = o->val;
    }
    if (!host)
        host = getenv("PGHOST");
    if (!port)
        port = getenv("PGPORT");
    hgf_buf b = HGF_BUF_INIT;
    hgf_buf_printf(&b, "host %s port %s database %s user %s", host ? host : "(default socket)",
                   port ? port : "5432", db ? db : "(default)", user ? user : "(default)");
    PQconninfoFree(opts);
    return hgf_buf_detach(&b);
}
