/* Process configuration from the environment (twelve-factor).
 *
 * Every secret variable also has a *_FILE form that names a file holding the
 * value; the file wins when both are set. hgf_config owns its strings; free
 * with hgf_config_free. Secret values are never copied into error messages. */
#ifndef HGF_CONFIG_H
#define HGF_CONFIG_H

#include <stdint.h>

#include "hgfleet/err.h"
#include "hgfleet/secret.h"

/* HGFLEET_RESCAN_AFTER's default: 7 days. */
#define HGF_CONFIG_DEFAULT_RESCAN_S ((int64_t)7 * 86400)
/* HGFLEET_HTTP_REQUEST_TIMEOUT's default and bounds, in seconds. */
#define HGF_CONFIG_DEFAULT_HTTP_REQUEST_TIMEOUT_S 10
#define HGF_CONFIG_MAX_HTTP_REQUEST_TIMEOUT_S 3600

typedef struct hgf_config {
    char *database_url;      /* HGFLEET_DATABASE_URL, else DATABASE_URL, else "" (libpq PG* defaults) */
    char *listen;            /* HGFLEET_LISTEN, default 0.0.0.0:8080 */
    int workers;             /* HGFLEET_WORKERS, default 32 */
    int db_connections;      /* HGFLEET_DB_CONNECTIONS, default 4: the main one plus bulk ones */
    int per_registry_inflight; /* HGFLEET_REGISTRY_INFLIGHT, default 4 */
    int total_inflight;      /* HGFLEET_TOTAL_INFLIGHT, default 256 */
    int lease_seconds;       /* HGFLEET_LEASE_SECONDS, default 15 */
    int scans_per_registry;  /* HGFLEET_SCANS_PER_REGISTRY, default 2 */
    int has_master_key;
    hgf_secret_key master_key; /* HGFLEET_MASTER_KEY[_FILE] */
    char *ca_bundle;         /* AWS_CA_BUNDLE or NULL */
    char *webhook_token;     /* HGFLEET_WEBHOOK_TOKEN[_FILE] or NULL (webhook refuses all) */
    char *admin_token;       /* HGFLEET_ADMIN_TOKEN[_FILE] or NULL (API refuses all) */
    char *webhook_api_key_header; /* HGFLEET_WEBHOOK_API_KEY_HEADER, default X-Api-Key */
    char *scanner;           /* HGFLEET_SCANNER, default none */
    char *sweep_schedule;    /* HGFLEET_SWEEP_SCHEDULE (a timed schedule spec), NULL: no
                                scheduled sweeps (unset, empty or "manual") */
    int64_t rescan_after_s;  /* HGFLEET_RESCAN_AFTER, default 7d */
    int http_request_timeout_s; /* HGFLEET_HTTP_REQUEST_TIMEOUT: seconds a client has to send
                                   a whole request to serve (1..3600, default 10) */
} hgf_config;

/* Loads everything; HGF_EINPUT names the bad variable. */
int hgf_config_load(hgf_config *cfg, hgf_err *err);
void hgf_config_free(hgf_config *cfg);

/* Reads NAME or NAME_FILE (file wins; one trailing newline stripped).
 * Returns a malloc'd string the caller frees (and wipes, for secrets), NULL
 * when neither is set; on an unreadable file returns NULL and sets err. */
char *hgf_config_secret_env(const char *name, hgf_err *err);

/* Reads a whole file (or stdin for "-") with one trailing newline stripped;
 * caller frees. `field` names the flag or variable for the error. */
char *hgf_config_read_secret_file(const char *path, const char *field, hgf_err *err);

/* HGFLEET_DB_PREPARE: *on = 1 when unset or on/1/true/yes, 0 for off/0/false/no
 * (any case); anything else is HGF_EINPUT naming the variable. The store
 * reads it when it opens (it is not handed the config); hgf_config_load only
 * checks it, so a bad value stops every command at start. */
int hgf_config_db_prepare(int *on, hgf_err *err);

/* A human description of where a libpq conninfo points ("host 127.0.0.1
 * port 5432 database x"), with any password removed. Caller frees. */
char *hgf_config_describe_db(const char *conninfo);

#endif
