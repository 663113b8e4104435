#include "hgfleet/log.h"
#include "hgfleet/migrations.h"
#include "hgfleet/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Any constant works; it only has to be the same in every replica. */
#define MIGRATE_LOCK "7244318870211"

static const char *CREATE_TABLE =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version integer PRIMARY KEY, name text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now())";

static int is_applied(hgf_store *s, int version, int *applied, hgf_err *err)
{
    char v[16];
    snprintf(v, sizeof v, "%d", version);
    const char *p[] = {v};
    PGresult *r;
    int rc = hgf_store_exec(s, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, p, &r, err);
    if (rc)
        return rc;
    *applied = PQntuples(r) > 0;
    PQclear(r);
    return 0;
}

/* The migration and its record go in one transaction: a crash leaves neither. */
static int apply_one(hgf_store *s, const hgf_migration *m, hgf_err *err)
{
    char tail[200];
    snprintf(tail, sizeof tail,
             "\nINSERT INTO schema_migrations (version, name) VALUES (%d, '%s');\nCOMMIT;",
             m->version, m->name);
    size_t len = strlen(m->sql) + strlen(tail) + 16;
    char *all = malloc(len);
    if (!all)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    snprintf(all, len, "BEGIN;\n%s%s", m->sql, tail);
    hgf_err e;
    hgf_err_clear(&e);
    int rc = hgf_store_exec_script(s, all, &e);
    free(all);
    if (rc)
        return hgf_err_set(err, rc, "migration %03d_%s failed: %s", m->version, m->name, e.msg);
    hgf_log_info("store.migrated", "version=%03d name=%s", m->version, m->name);
    return 0;
}

int hgf_store_migrate(hgf_store *s, int *applied, hgf_err *err)
{
    *applied = 0;
    int rc = hgf_store_exec(s, "SELECT pg_advisory_lock(" MIGRATE_LOCK ")", 0, NULL, NULL, err);
    if (rc)
        return rc;
    rc = hgf_store_exec(s, CREATE_TABLE, 0, NULL, NULL, err);
    for (int i = 0; !rc && i < hgf_migrations_count; i++) {
        int done = 0;
        rc = is_applied(s, hgf_migrations[i].version, &done, err);
        if (!rc && !done) {
            rc = apply_one(s, &hgf_migrations[i], err);
            if (!rc)
                (*applied)++;
        }
    }
    hgf_err e2;
    hgf_store_exec(s, "SELECT pg_advisory_unlock(" MIGRATE_LOCK ")", 0, NULL, NULL, &e2);
    return rc;
}

int hgf_store_migrations_current(hgf_store *s, hgf_err *err)
{
    PGresult *r;
    int rc = hgf_store_exec(s, "SELECT to_regclass('schema_migrations') IS NOT NULL", 0, NULL, &r,
                            err);
    if (rc)
        return rc;
    int exists = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (!exists)
        return 0;
    rc = hgf_store_exec(s, "SELECT coalesce(max(version), 0) FROM schema_migrations", 0, NULL, &r,
                        err);
    if (rc)
        return rc;
    int have = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return have >= hgf_migrations[hgf_migrations_count - 1].version;
}
