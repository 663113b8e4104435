/* Connections: one per ECR registry (partition, account, region), and their
 * rows in the store.
 *
 * Ownership: hgf_connection owns its strings and arrays; release it with
 * hgf_conn_free. Lists returned by hgf_conn_list are arrays the caller frees
 * with hgf_conn_free_list. */
#ifndef HGF_CONN_H
#define HGF_CONN_H

#include <jansson.h>
#include <stdint.h>

#include "hgfleet/buf.h"
#include "hgfleet/endpoint.h"
#include "hgfleet/err.h"
#include "hgfleet/store.h"

typedef struct hgf_connection {
    int64_t id;
    char *name;
    hgf_registry reg;
    char auth_mode[16];      /* host | static | assume_role */
    char *access_key_id;     /* static only */
    char *secret_sealed;     /* static only: sealed, never plaintext */
    char *role_arn, *external_id, *session_name, *via_role_arn;
    int duration_seconds;
    char *schedule;
    char **tag_include;
    int n_include;
    char **tag_exclude;
    int n_exclude;
    char *next_sync_at, *last_sync_at, *last_sync_status, *last_error, *created_at;
    char *last_diagnosis;    /* JSON text or NULL */
    int removed;
} hgf_connection;

void hgf_conn_free(hgf_connection *c);
void hgf_conn_free_list(hgf_connection *list, int n);

/* The column list every loader selects, and the parser for a row of it. */
extern const char HGF_CONN_COLUMNS[];
int hgf_conn_from_row(const PGresult *res, int row, hgf_connection *out, hgf_err *err);

/* Inserts c (id is filled in). A live connection for the same registry is
 * HGF_EEXIST with a message naming it ("connection 3 \"prod\" already
 * covers 123456789012.dkr.ecr.us-east-1.amazonaws.com"). */
int hgf_conn_insert(hgf_store *s, hgf_connection *c, hgf_err *err);

/* Writes every mutable column of c (by id). reschedule clears next_sync_at so
 * the scheduler recomputes it from the new schedule. */
int hgf_conn_update(hgf_store *s, const hgf_connection *c, int reschedule, hgf_err *err);

/* Stores the last diagnosis (JSON text, or NULL to clear it). */
int hgf_conn_set_diagnosis(hgf_store *s, int64_t id, const char *diagnosis_json, hgf_err *err);

/* Checks a connection key without the database: an ID (1 to 11 digits, not
 * 0) or a registry URL, parsed into *reg when reg is not NULL and the key is
 * a URL. HGF_EINPUT says what was expected. */
int hgf_conn_key_check(const char *id_or_url, hgf_registry *reg, hgf_err *err);
/* 1 when the key has the form of an ID: 1 to 11 digits (12 digits is an
 * account, never an ID). */
int hgf_conn_key_is_id(const char *id_or_url);
/* Finds a live connection by numeric id or by registry URL (either form of
 * it, -fips or not: one registry is one (partition, account, region)).
 * HGF_ENOTFOUND names what was looked for; a malformed key is HGF_EINPUT. */
int hgf_conn_find(hgf_store *s, const char *id_or_url, hgf_connection *out, hgf_err *err);
int hgf_conn_get(hgf_store *s, int64_t id, hgf_connection *out, hgf_err *err);
/* As hgf_conn_get, but a removed connection (history kept) is found too, with
 * out->removed set: what `connection remove ID --purge` needs. */
int hgf_conn_get_any(hgf_store *s, int64_t id, hgf_connection *out, hgf_err *err);

int hgf_conn_list(hgf_store *s, hgf_connection **out, int *n, hgf_err *err);

/* Removes: soft (removed_at set; catalog history kept) or purge (the row and
 * its catalog are deleted). */
int hgf_conn_remove(hgf_store *s, int64_t id, int purge, hgf_err *err);

/* The connection as JSON for --json and the API: never includes secrets.
 * New reference; caller decrefs. */
json_t *hgf_conn_to_json(const hgf_connection *c);

/* Formats items as a PostgreSQL text[] literal ('{"a","b"}') into out. */
int hgf_conn_pg_array(char *const *items, int n, hgf_buf *out);

#endif
