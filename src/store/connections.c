#include "hgfleet/buf.h"
#include "hgfleet/conn.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char HGF_CONN_COLUMNS[] =
    "id, name, account_id, region, fips, auth_mode, access_key_id, secret_sealed, role_arn,"
    " external_id, session_name, via_role_arn, coalesce(duration_seconds, 0), schedule,"
    " array_to_json(tag_include), array_to_json(tag_exclude),"
    " to_char(next_sync_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
    " to_char(last_sync_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
    " last_sync_status, last_error,"
    " to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
    " last_diagnosis::text, removed_at IS NOT NULL";

static void free_strv(char **v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void hgf_conn_free(hgf_connection *c)
{
    free(c->name);
    free(c->access_key_id);
    free(c->secret_sealed);
    free(c->role_arn);
    free(c->external_id);
    free(c->session_name);
    free(c->via_role_arn);
    free(c->schedule);
    free_strv(c->tag_include, c->n_include);
    free_strv(c->tag_exclude, c->n_exclude);
    free(c->next_sync_at);
    free(c->last_sync_at);
    free(c->last_sync_status);
    free(c->last_error);
    free(c->created_at);
    free(c->last_diagnosis);
    memset(c, 0, sizeof *c);
}

void hgf_conn_free_list(hgf_connection *list, int n)
{
    for (int i = 0; i < n; i++)
        hgf_conn_free(&list[i]);
    free(list);
}

static char *col(const PGresult *r, int row, int c)
{
    return PQgetisnull(r, row, c) ? NULL : strdup(PQgetvalue(r, row, c));
}

static int strv_from_json(const char *text, char ***out, int *n)
{
    *out = NULL;
    *n = 0;
    json_t *a = text ? json_loads(text, 0, NULL) : NULL;
    size_t cnt = json_is_array(a) ? json_array_size(a) : 0;
    if (cnt) {
        *out = calloc(cnt, sizeof **out);
        for (size_t i = 0; *out && i < cnt; i++)
            (*out)[i] = strdup(json_string_value(json_array_get(a, i)));
        *n = *out ? (int)cnt : 0;
    }
    json_decref(a);
    return 0;
}

int hgf_conn_from_row(const PGresult *r, int row, hgf_connection *c, hgf_err *err)
{
    memset(c, 0, sizeof *c);
    c->id = atoll(PQgetvalue(r, row, 0));
    c->name = col(r, row, 1);
    int rc = hgf_endpoint_registry_from_parts(PQgetvalue(r, row, 2), PQgetvalue(r, row, 3),
                                              PQgetvalue(r, row, 4)[0] == 't', &c->reg, err);
    snprintf(c->auth_mode, sizeof c->auth_mode, "%s", PQgetvalue(r, row, 5));
    c->access_key_id = col(r, row, 6);
    c->secret_sealed = col(r, row, 7);
    c->role_arn = col(r, row, 8);
    c->external_id = col(r, row, 9);
    c->session_name = col(r, row, 10);
    c->via_role_arn = col(r, row, 11);
    c->duration_seconds = atoi(PQgetvalue(r, row, 12));
    c->schedule = col(r, row, 13);
    strv_from_json(PQgetvalue(r, row, 14), &c->tag_include, &c->n_include);
    strv_from_json(PQgetvalue(r, row, 15), &c->tag_exclude, &c->n_exclude);
    c->next_sync_at = col(r, row, 16);
    c->last_sync_at = col(r, row, 17);
    c->last_sync_status = col(r, row, 18);
    c->last_error = col(r, row, 19);
    c->created_at = col(r, row, 20);
    c->last_diagnosis = col(r, row, 21);
    c->removed = PQgetvalue(r, row, 22)[0] == 't';
    return rc;
}

int hgf_conn_pg_array(char *const *items, int n, hgf_buf *out)
{
    hgf_buf_putc(out, '{');
    for (int i = 0; i < n; i++) {
        if (i)
            hgf_buf_putc(out, ',');
        hgf_buf_putc(out, '"');
        for (const char *p = items[i]; *p; p++) {
            if (*p == '"' || *p == '\\')
                hgf_buf_putc(out, '\\');
            hgf_buf_putc(out, *p);
        }
        hgf_buf_putc(out, '"');
    }
    return hgf_buf_putc(out, '}');
}

static int existing_conflict(hgf_store *s, const hgf_connection *c, hgf_err *err)
{
    const char *p[] = {c->reg.partition, c->reg.account_id, c->reg.region};
    PGresult *r;
    int rc = hgf_store_exec(s,
                            "SELECT id, name FROM connections WHERE partition = $1 AND "
                            "account_id = $2 AND region = $3 AND removed_at IS NULL",
                            3, p, &r, err);
    if (rc)
        return rc;
    if (PQntuples(r) > 0)
        rc = hgf_err_set(err, HGF_EEXIST,
                         "registry URL: %s is already covered by connection %s \"%s\"; "
                         "use 'hgfleet connection update %s' to change it",
                         c->reg.host, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1),
                         PQgetvalue(r, 0, 0));
    PQclear(r);
    return rc;
}

static void id_text(int64_t id, char out[24])
{
    snprintf(out, 24, "%lld", (long long)id);
}

int hgf_conn_insert(hgf_store *s, hgf_connection *c, hgf_err *err)
{
    int rc = existing_conflict(s, c, err);
    if (rc)
        return rc;
    hgf_buf inc = HGF_BUF_INIT, exc = HGF_BUF_INIT;
    hgf_conn_pg_array(c->tag_include, c->n_include, &inc);
    hgf_conn_pg_array(c->tag_exclude, c->n_exclude, &exc);
    char dur[24];
    id_text(c->duration_seconds, dur);
    const char *p[] = {c->name, c->reg.partition, c->reg.account_id, c->reg.region,
                       c->reg.fips ? "true" : "false", c->reg.host, c->auth_mode,
                       c->access_key_id, c->secret_sealed, c->schedule, inc.data, exc.data,
                       c->role_arn, c->external_id, c->session_name,
                       c->duration_seconds ? dur : NULL, c->via_role_arn};
    PGresult *r;
    rc = hgf_store_exec(s,
                        "INSERT INTO connections (name, partition, account_id, region, fips, "
                        "registry, auth_mode, access_key_id, secret_sealed, schedule, "
                        "tag_include, tag_exclude, role_arn, external_id, session_name, "
                        "duration_seconds, via_role_arn, next_sync_at) VALUES ($1, $2, $3, $4, "
                        "$5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16::int, $17, now()) "
                        "RETURNING id",
                        17, p, &r, err);
    hgf_buf_free(&inc);
    hgf_buf_free(&exc);
    if (rc == HGF_EEXIST) /* lost a race with another add: report it like the check above */
        return existing_conflict(s, c, err) ? err->code : rc;
    if (rc)
        return rc;
    c->id = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return 0;
}

int hgf_conn_update(hgf_store *s, const hgf_connection *c, int reschedule, hgf_err *err)
{
    hgf_buf inc = HGF_BUF_INIT, exc = HGF_BUF_INIT;
    hgf_conn_pg_array(c->tag_include, c->n_include, &inc);
    hgf_conn_pg_array(c->tag_exclude, c->n_exclude, &exc);
    char id[24], dur[24];
    id_text(c->id, id);
    id_text(c->duration_seconds, dur);
    const char *p[] = {id, c->name, c->auth_mode, c->access_key_id, c->secret_sealed,
                       c->schedule, inc.data, exc.data, c->role_arn, c->external_id,
                       c->session_name, c->duration_seconds ? dur : NULL, c->via_role_arn,
                       reschedule ? "t" : "f"};
    /* A new schedule clears next_sync_at: the scheduler recomputes it. */
    int rc = hgf_store_exec(s,
                            "UPDATE connections SET name = $2, auth_mode = $3, access_key_id = $4,"
                            " secret_sealed = $5, schedule = $6, tag_include = $7, tag_exclude = $8,"
                            " role_arn = $9, external_id = $10, session_name = $11,"
                            " duration_seconds = $12::int, via_role_arn = $13, updated_at = now(),"
                            " next_sync_at = CASE WHEN $14::bool THEN NULL ELSE next_sync_at END"
                            " WHERE id = $1 AND removed_at IS NULL",
                            14, p, NULL, err);
    hgf_buf_free(&inc);
    hgf_buf_free(&exc);
    return rc;
}

int hgf_conn_set_diagnosis(hgf_store *s, int64_t id, const char *diagnosis_json, hgf_err *err)
{
    char v[24];
    id_text(id, v);
    const char *p[] = {v, diagnosis_json};
    return hgf_store_exec(s, "UPDATE connections SET last_diagnosis = $2::jsonb WHERE id = $1", 2,
                          p, NULL, err);
}

static int load_one(hgf_store *s, const char *where, int n, const char *const *params,
                    const char *what, hgf_connection *out, hgf_err *err)
{
    char sql[1400];
    snprintf(sql, sizeof sql, "SELECT %s FROM connections WHERE %s", HGF_CONN_COLUMNS, where);
    PGresult *r;
    int rc = hgf_store_exec(s, sql, n, params, &r, err);
    if (rc)
        return rc;
    if (PQntuples(r) == 0)
        rc = hgf_err_set(err, HGF_ENOTFOUND, "no connection %s", what);
    else
        rc = hgf_conn_from_row(r, 0, out, err);
    PQclear(r);
    return rc;
}

static int load_by_id(hgf_store *s, int64_t id, int removed_too, hgf_connection *out,
                      hgf_err *err)
{
    char v[24], what[64];
    snprintf(v, sizeof v, "%lld", (long long)id);
    snprintf(what, sizeof what, "with id %s%s", v, removed_too ? ", live or removed" : "");
    const char *p[] = {v};
    return load_one(s, removed_too ? "id = $1" : "id = $1 AND removed_at IS NULL", 1, p, what,
                    out, err);
}

int hgf_conn_get(hgf_store *s, int64_t id, hgf_connection *out, hgf_err *err)
{
    return load_by_id(s, id, 0, out, err);
}

int hgf_conn_get_any(hgf_store *s, int64_t id, hgf_connection *out, hgf_err *err)
{
    return load_by_id(s, id, 1, out, err);
}

int hgf_conn_key_is_id(const char *key)
{
    size_t n = strlen(key);
    if (n == 0 || n >= 12)
        return 0;
    for (const char *p = key; *p; p++)
        if (!isdigit((unsigned char)*p))
            return 0;
    return 1;
}

int hgf_conn_key_check(const char *key, hgf_registry *reg, hgf_err *err)
{
    if (hgf_conn_key_is_id(key))
        return atoll(key) > 0 ? 0
                              : hgf_err_set(err, HGF_EINPUT,
                                            "connection: expected an ID from 1 up or a registry "
                                            "URL, got \"%s\"", key);
    hgf_registry probe;
    return hgf_endpoint_parse_registry(key, reg ? reg : &probe, err);
}

int hgf_conn_find(hgf_store *s, const char *key, hgf_connection *out, hgf_err *err)
{
    hgf_registry reg;
    int rc = hgf_conn_key_check(key, &reg, err);
    if (rc)
        return rc;
    if (hgf_conn_key_is_id(key))
        return hgf_conn_get(s, atoll(key), out, err);
    /* The key of the live index, so that the -fips form of a registry finds
     * the connection added under the other, as add's duplicate check does. */
    char what[200];
    snprintf(what, sizeof what, "for registry %s", reg.host);
    const char *p[] = {reg.partition, reg.account_id, reg.region};
    return load_one(s, "partition = $1 AND account_id = $2 AND region = $3 AND removed_at IS NULL",
                    3, p, what, out, err);
}

int hgf_conn_list(hgf_store *s, hgf_connection **out, int *n, hgf_err *err)
{
    char sql[1400];
    snprintf(sql, sizeof sql, "SELECT %s FROM connections WHERE removed_at IS NULL ORDER BY id",
             HGF_CONN_COLUMNS);
    PGresult *r;
    *out = NULL;
    *n = 0;
    int rc = hgf_store_exec(s, sql, 0, NULL, &r, err);
    if (rc)
        return rc;
    int rows = PQntuples(r);
    *out = calloc(rows ? rows : 1, sizeof **out);
    for (int i = 0; *out && i < rows && !rc; i++) {
        rc = hgf_conn_from_row(r, i, &(*out)[i], err);
        *n = i + 1;
    }
    PQclear(r);
    return *out ? rc : hgf_err_set(err, HGF_ENOMEM, "out of memory");
}

int hgf_conn_remove(hgf_store *s, int64_t id, int purge, hgf_err *err)
{
    char v[24];
    snprintf(v, sizeof v, "%lld", (long long)id);
    const char *p[] = {v};
    const char *sql = purge ? "DELETE FROM connections WHERE id = $1"
                            : "UPDATE connections SET removed_at = now(), updated_at = now(), "
                              "next_sync_at = NULL WHERE id = $1 AND removed_at IS NULL";
    int rc = hgf_store_exec(s, sql, 1, p, NULL, err);
    if (!rc) {
        const char *cancel = "UPDATE jobs SET state = 'failed', last_error = 'connection removed', "
                             "finished_at = now() WHERE state = 'queued' AND "
                             "(payload->>'connection_id')::bigint = $1";
        rc = hgf_store_exec(s, cancel, 1, p, NULL, err);
    }
    return rc;
}

static json_t *strv_json(char **v, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

json_t *hgf_conn_to_json(const hgf_connection *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(c->id));
    json_object_set_new(o, "name", str_or_null(c->name));
    json_object_set_new(o, "registry", json_string(c->reg.host));
    json_object_set_new(o, "account_id", json_string(c->reg.account_id));
    json_object_set_new(o, "region", json_string(c->reg.region));
    json_object_set_new(o, "partition", json_string(c->reg.partition));
    json_object_set_new(o, "auth_mode", json_string(c->auth_mode));
    json_object_set_new(o, "access_key_id", str_or_null(c->access_key_id));
    json_object_set_new(o, "role_arn", str_or_null(c->role_arn));
    json_object_set_new(o, "external_id_set", json_boolean(c->external_id != NULL));
    json_object_set_new(o, "via_role_arn", str_or_null(c->via_role_arn));
    json_object_set_new(o, "schedule", str_or_null(c->schedule));
    json_object_set_new(o, "tag_include", strv_json(c->tag_include, c->n_include));
    json_object_set_new(o, "tag_exclude", strv_json(c->tag_exclude, c->n_exclude));
    json_object_set_new(o, "next_sync_at", str_or_null(c->next_sync_at));
    json_object_set_new(o, "last_sync_at", str_or_null(c->last_sync_at));
    json_object_set_new(o, "last_sync_status", str_or_null(c->last_sync_status));
    json_object_set_new(o, "last_error", str_or_null(c->last_error));
    json_t *d = c->last_diagnosis ? json_loads(c->last_diagnosis, 0, NULL) : NULL;
    json_object_set_new(o, "last_diagnosis", d ? d : json_null());
    json_object_set_new(o, "created_at", str_or_null(c->created_at));
    return o;
}
