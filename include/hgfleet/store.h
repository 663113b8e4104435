/* The PostgreSQL store: libpq connections driven asynchronously on the
 * libev loop, in pipeline mode so many queries can be in flight at once.
 *
 * One main connection carries every hgf_store_query, in order, and every
 * LISTEN. A pipeline runs its statements one after another in one backend,
 * so a long statement (a registry's whole catalog applied) would hold up
 * short ones queued behind it (a push event, a job claim). Such statements go
 * through hgf_store_query_bulk to one of the optional bulk connections, which
 * also lets the server run several of them at once.
 *
 * The database may go away and come back. A broken connection fails every
 * pending query with HGF_EDB, and the store reconnects in the background
 * (PQconnectStart/PQconnectPoll on the loop, backoff from 0.25 s to 5 s),
 * re-entering pipeline mode and re-issuing every LISTEN. While it is down,
 * hgf_store_query returns HGF_EDB at once instead of queueing.
 *
 * Every query is its own implicit transaction (a Sync follows each), so one
 * failing statement never aborts another caller's. Multi-statement work is
 * done by plpgsql functions in sql/, one round trip each.
 *
 * Statements are prepared transparently (HGFLEET_DB_PREPARE, default on; read
 * by hgf_store_open): the first use of a text on a connection sends a Prepare
 * ahead of it in the same pipeline segment, and later uses run the prepared
 * statement, so the server parses once and can keep a generic plan. Each
 * connection keeps at most 128, the least recently used deallocated; a new
 * connection starts with none. Not prepared: statements that do not start
 * with SELECT, INSERT, UPDATE, DELETE, WITH or VALUES (LISTEN, SET, BEGIN,
 * DDL), statements with more than 64 KiB of parameters, and scripts. A
 * prepared statement that fails as stale (its result type or a function's
 * signature changed under it, or it no longer exists) is prepared again and
 * re-sent once, after what was sent in the meantime; nothing else is ever
 * re-sent. hgf_store_exec_script deallocates its connection's statements.
 *
 * Ownership: hgf_store_open returns a store the caller frees with
 * hgf_store_close. A query's callback OWNS the PGresult it is given (NULL on
 * error) and must PQclear it. hgf_store_exec returns a PGresult the caller
 * PQclears. Parameters are copied by libpq at send time. Objects whose
 * queries are pending must outlive hgf_store_close (which calls back). */
#ifndef HGF_STORE_H
#define HGF_STORE_H

#include <libpq-fe.h>

#include "hgfleet/err.h"

struct ev_loop;

typedef struct hgf_store hgf_store;

/* err is NULL on success; on failure res is NULL and err says why. */
typedef void (*hgf_store_cb)(PGresult *res, const hgf_err *err, void *arg);

/* Connects (with a 5 s connect timeout). The connection is made
 * asynchronously while this runs the loop, so other watchers on it (an HTTP
 * server) keep being served; call it outside loop callbacks. On failure:
 * HGF_EDB and a message naming the host, port and database tried, never a
 * password; HGF_EINPUT naming HGFLEET_DB_PREPARE for a bad value of it. */
hgf_store *hgf_store_open(struct ev_loop *loop, const char *conninfo, hgf_err *err);
/* Asks for n more connections for hgf_store_query_bulk. They are made at the
 * first bulk query, in the background (its statement goes to the main
 * connection until one is up), and reconnect like the main one. */
void hgf_store_add_bulk(hgf_store *s, int n);
/* Fails every pending query's callback with HGF_EDB, then closes. */
void hgf_store_close(hgf_store *s);

/* Sends a parameterized query (text parameters; NULL = SQL NULL). The
 * callback runs from the loop when the result arrives, never from inside
 * this call. HGF_EDB (and no callback) when the store is down. */
int hgf_store_query(hgf_store *s, const char *sql, int nparams, const char *const *params,
                    hgf_store_cb cb, void *arg);

/* As hgf_store_query, on the least busy bulk connection that is up (the main
 * one when none is). For self-contained statements only: it is not ordered
 * with respect to any other query. */
int hgf_store_query_bulk(hgf_store *s, const char *sql, int nparams, const char *const *params,
                         hgf_store_cb cb, void *arg);

/* Sends and runs the loop until this query finishes. For CLI commands; never
 * call it from inside a loop callback. *out receives the result on success. */
int hgf_store_exec(hgf_store *s, const char *sql, int nparams, const char *const *params,
                   PGresult **out, hgf_err *err);

/* Runs a multi-statement script with the simple protocol. It leaves pipeline
 * mode for the duration and blocks the loop, so it is only for start-up work
 * (migrations) with nothing else pending: HGF_EINPUT otherwise. */
int hgf_store_exec_script(hgf_store *s, const char *script, hgf_err *err);

/* A result that is not COMMAND_OK/TUPLES_OK becomes HGF_EDB with the server's
 * message (and SQLSTATE); unique violations become HGF_EEXIST. */
int hgf_store_check(const PGresult *res, hgf_err *err);

/* Queries sent and not yet called back, over every connection. */
int hgf_store_pending(const hgf_store *s);

/* 1 while the main connection is up; 0 while it is down or being re-made. */
int hgf_store_is_up(const hgf_store *s);
/* Why the last connection attempt or the connection itself failed ("" when
 * up). Owned by the store; valid until its next state change. */
const char *hgf_store_last_error(const hgf_store *s);

/* Called from the loop for each NOTIFY on a channel; payload may be "". */
typedef void (*hgf_store_notify_cb)(const char *channel, const char *payload, void *arg);
/* LISTENs on channel (letters, digits and '_', at most 63) now if connected
 * and again after every reconnect. Notifications sent while the connection
 * was down are lost: listeners must also poll. HGF_EINPUT for a bad name. */
int hgf_store_listen(hgf_store *s, const char *channel, hgf_store_notify_cb cb, void *arg);
/* Removes a listener added with the same three values (UNLISTEN when it was
 * the channel's last); call it before freeing what arg points to. */
void hgf_store_unlisten(hgf_store *s, const char *channel, hgf_store_notify_cb cb, void *arg);
/* The number of rows written by statements this store has run (commands'
 * row counts plus functions that report it), for metrics and benchmarks. */
long hgf_store_rows_written(const hgf_store *s);
void hgf_store_add_rows_written(hgf_store *s, long n);

/* Migrations embedded in the binary (sql/NNN_name.sql). Applies those not yet
 * in schema_migrations, each in its own transaction, under an advisory lock so
 * replicas starting together do not race. *applied gets the count. */
int hgf_store_migrate(hgf_store *s, int *applied, hgf_err *err);
/* 1 if every embedded migration is applied, 0 if not, <0 on error. */
int hgf_store_migrations_current(hgf_store *s, hgf_err *err);

#endif
