#include "hgfleet/rekey.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "v1:" + 8 hex digits + ":" (see secret.h) */
#define SEALED_PREFIX_LEN 12

int hgf_rekey_value(const hgf_secret_key *old_key, const hgf_secret_key *new_key,
                    const char *sealed, hgf_buf *out, hgf_err *err)
{
    char id[9];
    if (hgf_secret_sealed_keyid(sealed, id))
        return hgf_err_set(err, HGF_EINPUT,
                           "the stored value is malformed: expected v1:<8 hex keyid>:<base64>");
    if (!strcmp(id, new_key->id))
        return 1;
    if (strcmp(id, old_key->id))
        return hgf_err_set(err, HGF_EFAIL,
                           "sealed with master key %s, which is neither the old key (%s) nor "
                           "the new key (%s)",
                           id, old_key->id, new_key->id);
    hgf_buf plain = HGF_BUF_INIT;
    int rc = hgf_secret_open(old_key, sealed, &plain, err);
    if (!rc)
        rc = hgf_secret_seal(new_key, plain.data, plain.len, out, err);
    hgf_secret_wipe_buf(&plain);
    return rc;
}

static int exec0(hgf_store *s, const char *sql, hgf_err *err)
{
    return hgf_store_exec(s, sql, 0, NULL, NULL, err);
}

/* Columns of ROWS_SQL: id, name, registry, secret_sealed, removed. */
static const char ROWS_SQL[] =
    "SELECT id, name, registry, secret_sealed, removed_at IS NOT NULL FROM connections"
    " WHERE secret_sealed IS NOT NULL ORDER BY id";

static void describe_row(const PGresult *r, int i, char *out, size_t n)
{
    snprintf(out, n, "connection %s \"%.96s\" (%.200s%s)", PQgetvalue(r, i, 0),
             PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
             PQgetvalue(r, i, 4)[0] == 't' ? ", removed" : "");
}

/* The row's old value is in the WHERE clause, so nothing but the value just
 * read is ever replaced (the table lock should make that moot). */
static int store_row(hgf_store *s, const PGresult *r, int i, const char *sealed, hgf_err *err)
{
    const char *p[] = {PQgetvalue(r, i, 0), PQgetvalue(r, i, 3), sealed};
    PGresult *u = NULL;
    int rc = hgf_store_exec(s,
                            "UPDATE connections SET secret_sealed = $3 WHERE id = $1 AND "
                            "secret_sealed = $2",
                            3, p, &u, err);
    if (!rc && strcmp(PQcmdTuples(u), "1") != 0)
        rc = hgf_err_set(err, HGF_EFAIL, "its row changed during the rotation");
    PQclear(u);
    return rc;
}

static int reseal_row(hgf_store *s, const PGresult *r, int i, const hgf_secret_key *old_key,
                      const hgf_secret_key *new_key, int dry_run, hgf_rekey_result *res,
                      hgf_err *err)
{
    hgf_buf sealed = HGF_BUF_INIT;
    hgf_err inner;
    hgf_err_clear(&inner);
    int rc = hgf_rekey_value(old_key, new_key, PQgetvalue(r, i, 3), &sealed, &inner);
    if (rc == 1) {
        res->already_new++;
        return 0;
    }
    if (!rc && !dry_run)
        rc = store_row(s, r, i, sealed.data, &inner);
    hgf_buf_free(&sealed);
    if (rc) {
        char who[400];
        describe_row(r, i, who, sizeof who);
        /* A bad stored value is a failed operation, not the caller's input. */
        return hgf_err_set(err, rc == HGF_EINPUT ? HGF_EFAIL : rc, "%s: secret access key: %s",
                           who, inner.msg);
    }
    res->reencrypted++;
    return 0;
}

/* Inside the transaction: lock, read, re-seal row by row. */
static int reseal_all(hgf_store *s, const hgf_secret_key *old_key, const hgf_secret_key *new_key,
                      int dry_run, hgf_rekey_result *res, hgf_err *err)
{
    /* A long transaction elsewhere makes us fail after 10 s instead of
     * queueing every writer behind our lock request indefinitely. */
    int rc = exec0(s, "SET LOCAL lock_timeout = '10s'", err);
    if (!rc)
        rc = exec0(s, "LOCK TABLE connections IN SHARE ROW EXCLUSIVE MODE", err);
    PGresult *r = NULL;
    if (!rc)
        rc = hgf_store_exec(s, ROWS_SQL, 0, NULL, &r, err);
    for (int i = 0; !rc && i < PQntuples(r); i++)
        rc = reseal_row(s, r, i, old_key, new_key, dry_run, res, err);
    PQclear(r);
    return rc;
}

/* The COMMIT may have gone to a re-made connection (committing nothing), or
 * a process still on the old key may have stored a secret since: either
 * way some value does not name the new key. */
static int verify(hgf_store *s, const hgf_secret_key *new_key, hgf_err *err)
{
    char prefix[SEALED_PREFIX_LEN + 1];
    snprintf(prefix, sizeof prefix, "v1:%s:", new_key->id);
    const char *p[] = {prefix};
    PGresult *r = NULL;
    int rc = hgf_store_exec(s,
                            "SELECT count(*), min(id) FROM connections WHERE secret_sealed IS NOT "
                            "NULL AND left(secret_sealed, 12) <> $1",
                            1, p, &r, err);
    if (!rc && strcmp(PQgetvalue(r, 0, 0), "0") != 0)
        rc = hgf_err_set(err, HGF_EFAIL,
                         "after COMMIT, %s secret(s) (first: connection %s) are still not sealed "
                         "under the new key %s: the commit was lost or a process still using the "
                         "old key stored one since; run the rotation again",
                         PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), new_key->id);
    PQclear(r);
    return rc;
}

static void append_msg(hgf_err *err, const char *tail)
{
    size_t n = strlen(err->msg);
    snprintf(err->msg + n, sizeof err->msg - n, "%s", tail);
}

int hgf_rekey_connections(hgf_store *s, const hgf_secret_key *old_key,
                          const hgf_secret_key *new_key, int dry_run, hgf_rekey_result *res,
                          hgf_err *err)
{
    memset(res, 0, sizeof *res);
    if (!memcmp(old_key->bytes, new_key->bytes, HGF_SECRET_KEY_LEN))
        return hgf_err_set(err, HGF_EINPUT, "the new master key is the same as the old one");
    int rc = exec0(s, "BEGIN", err);
    if (rc)
        return rc;
    rc = reseal_all(s, old_key, new_key, dry_run, res, err);
    if (rc || dry_run) {
        hgf_err ignored;
        exec0(s, "ROLLBACK", &ignored);
        if (rc)
            append_msg(err, "; nothing was changed");
        return rc;
    }
    hgf_err commit;
    hgf_err_clear(&commit);
    if (exec0(s, "COMMIT", &commit))
        return hgf_err_set(err, commit.code,
                           "COMMIT failed (%.600s): whether the rotation happened is unknown; "
                           "run it again (values already under the new key are skipped)",
                           commit.msg);
    return verify(s, new_key, err);
}
