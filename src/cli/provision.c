#include "hgfleet/provision.h"
#include "hgfleet/sync.h"

#include "hgfleet/conn.h"
#include "hgfleet/jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum verdict { V_CREATE, V_UPDATE, V_SAME };
static const char *const VERDICT_KEY[] = {"created", "updated", "unchanged"};

static int same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

static enum verdict classify(const hgf_connection *cur, const hgf_account_row *r,
                             const char *schedule)
{
    const char *mode = r->role_arn ? "assume_role" : "host";
    if (strcmp(cur->auth_mode, mode) || !same_str(cur->role_arn, r->role_arn) ||
        !same_str(cur->external_id, r->external_id) || cur->via_role_arn ||
        (schedule && !same_str(cur->schedule, schedule)))
        return V_UPDATE;
    return V_SAME;
}

static void set_str(char **field, const char *value)
{
    free(*field);
    *field = value ? strdup(value) : NULL;
}

static int do_update(hgf_runtime *rt, hgf_connection *cur, const hgf_account_row *r,
                     const char *schedule, hgf_err *err)
{
    snprintf(cur->auth_mode, sizeof cur->auth_mode, "%s", r->role_arn ? "assume_role" : "host");
    set_str(&cur->role_arn, r->role_arn);
    set_str(&cur->external_id, r->external_id);
    set_str(&cur->via_role_arn, NULL);
    set_str(&cur->session_name, NULL);
    /* The row names the auth: keys left behind would make it a different mode. */
    set_str(&cur->access_key_id, NULL);
    set_str(&cur->secret_sealed, NULL);
    int reschedule = schedule && !same_str(cur->schedule, schedule);
    if (reschedule)
        set_str(&cur->schedule, schedule);
    return hgf_conn_update(rt->store, cur, reschedule, err);
}

static int do_create(hgf_runtime *rt, const hgf_registry *reg, const hgf_account_row *r,
                     const char *schedule, int64_t *id, int64_t *job, hgf_err *err)
{
    hgf_connection c = {.reg = *reg, .name = r->name, .role_arn = r->role_arn,
                        .external_id = r->external_id,
                        .schedule = (char *)(schedule ? schedule : "daily")};
    snprintf(c.auth_mode, sizeof c.auth_mode, "%s", r->role_arn ? "assume_role" : "host");
    int rc = hgf_conn_insert(rt->store, &c, err);
    if (rc)
        return rc;
    *id = c.id;
    return hgf_sync_queue_first(rt->store, c.id, job, err);
}

static json_t *entry(const hgf_registry *reg, const hgf_account_row *r, const char *name,
                     int64_t id, int64_t job)
{
    json_t *e = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "name", name, "registry", reg->host,
                          "account_id", r->account_id, "region", r->region, "auth_mode",
                          r->role_arn ? "assume_role" : "host", "role_arn",
                          r->role_arn ? json_string(r->role_arn) : json_null());
    json_object_set_new(e, "connection_id", id ? json_integer(id) : json_null());
    if (job)
        json_object_set_new(e, "first_sync_job", json_integer(job));
    return e;
}

static int apply_row(hgf_runtime *rt, const hgf_account_row *r, const hgf_provision_opts *o,
                     json_t *report, hgf_err *err)
{
    hgf_registry reg;
    hgf_connection cur;
    int rc = hgf_endpoint_registry_from_parts(r->account_id, r->region, 0, &reg, err);
    if (rc)
        return rc;
    rc = hgf_conn_find(rt->store, reg.host, &cur, err);
    if (rc && rc != HGF_ENOTFOUND)
        return rc;
    enum verdict v = rc == HGF_ENOTFOUND ? V_CREATE : classify(&cur, r, o->schedule);
    int64_t id = v == V_CREATE ? 0 : cur.id, job = 0;
    const char *name = v == V_CREATE ? r->name : cur.name;
    json_t *e = NULL;
    rc = 0;
    if (!o->dry_run && v == V_CREATE)
        rc = do_create(rt, &reg, r, o->schedule, &id, &job, err);
    else if (!o->dry_run && v == V_UPDATE)
        rc = do_update(rt, &cur, r, o->schedule, err);
    if (!rc)
        e = entry(&reg, r, name, id, job);
    if (v != V_CREATE)
        hgf_conn_free(&cur);
    if (rc)
        return rc;
    json_t *arr = json_object_get(report, VERDICT_KEY[v]);
    if (!arr) {
        arr = json_array();
        json_object_set_new(report, VERDICT_KEY[v], arr);
    }
    json_array_append_new(arr, e);
    return 0;
}

static int exec_simple(hgf_runtime *rt, const char *sql, hgf_err *err)
{
    return hgf_store_exec(rt->store, sql, 0, NULL, NULL, err);
}

int hgf_provision_apply(hgf_runtime *rt, const hgf_account_list *l, const hgf_provision_opts *o,
                        json_t *report, hgf_err *err)
{
    for (int k = 0; k < 3; k++)
        if (!json_object_get(report, VERDICT_KEY[k]))
            json_object_set_new(report, VERDICT_KEY[k], json_array());
    /* CLI queries run one at a time on the store's single connection, so an
     * explicit transaction block spans them. */
    int rc = o->dry_run ? 0 : exec_simple(rt, "BEGIN", err);
    for (int i = 0; !rc && i < l->n; i++) {
        rc = apply_row(rt, &l->rows[i], o, report, err);
        if (rc) {
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "%s", err->msg);
            char line[32] = "";
            if (l->rows[i].line > 0)
                snprintf(line, sizeof line, " (line %d)", l->rows[i].line);
            snprintf(err->msg, sizeof err->msg, "%.12s in %.31s%s: %.900s; nothing was written",
                     l->rows[i].account_id, l->rows[i].region, line, msg);
        }
    }
    if (o->dry_run)
        return rc;
    if (rc) {
        hgf_err ignored;
        exec_simple(rt, "ROLLBACK", &ignored);
        return rc;
    }
    return exec_simple(rt, "COMMIT", err);
}

static size_t count(const json_t *report, const char *key)
{
    return json_array_size(json_object_get(report, key));
}

void hgf_provision_print(const json_t *report, int dry_run)
{
    const char *pre = dry_run ? "would be " : "";
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(report, "created"), i, e)
        printf("%screated: %s (%s)\n", pre, json_string_value(json_object_get(e, "registry")),
               json_string_value(json_object_get(e, "name")));
    json_array_foreach(json_object_get(report, "updated"), i, e)
        printf("%supdated: %s (%s)\n", pre, json_string_value(json_object_get(e, "registry")),
               json_string_value(json_object_get(e, "name")));
    json_array_foreach(json_object_get(report, "skipped"), i, e)
        printf("skipped: account %s (%s): %s\n",
               json_string_value(json_object_get(e, "account_id")),
               json_string_value(json_object_get(e, "name")),
               json_string_value(json_object_get(e, "reason")));
    printf("%s%zu created, %zu updated, %zu unchanged, %zu skipped\n", dry_run ? "dry run: " : "",
           count(report, "created"), count(report, "updated"), count(report, "unchanged"),
           count(report, "skipped"));
}

int hgf_provision_parse_regions(const char *text, const char *flag, char ***out, int *n,
                                hgf_err *err)
{
    size_t len = strlen(text), slots = 1;
    for (const char *p = text; *p; p++)
        slots += *p == ',';
    /* strtok_r would pass over an empty item; a typo such as "a,,b" or a
     * trailing comma is refused instead. */
    if (!len || text[0] == ',' || text[len - 1] == ',' || strstr(text, ",,"))
        return hgf_err_set(err, HGF_EINPUT, "%s: an empty region in \"%.60s\": expected R1,R2,... "
                           "(e.g. us-east-1,eu-west-1)", flag, text);
    char **v = malloc(slots * sizeof *v + len + 1);
    if (!v)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    char *copy = (char *)(v + slots), *save = NULL;
    memcpy(copy, text, len + 1);
    int cnt = 0, rc = 0;
    for (char *r = strtok_r(copy, ",", &save); r && !rc; r = strtok_r(NULL, ",", &save)) {
        if (!hgf_endpoint_region_valid(r) || strlen(r) >= 32)
            rc = hgf_err_set(err, HGF_EINPUT, "%s: \"%.40s\" is not an AWS region", flag, r);
        for (int i = 0; !rc && i < cnt; i++)
            if (!strcmp(v[i], r))
                rc = hgf_err_set(err, HGF_EINPUT, "%s: %s is listed twice", flag, r);
        if (!rc && cnt && strcmp(hgf_endpoint_partition_for_region(r),
                                 hgf_endpoint_partition_for_region(v[0])))
            rc = hgf_err_set(err, HGF_EINPUT, "%s: %s and %s are in different partitions", flag,
                             v[0], r);
        v[cnt++] = r;
    }
    if (!rc && !cnt)
        rc = hgf_err_set(err, HGF_EINPUT, "%s: expected R1,R2,... (e.g. us-east-1,eu-west-1)", flag);
    if (rc) {
        free(v);
        return rc;
    }
    *out = v;
    *n = cnt;
    return 0;
}
