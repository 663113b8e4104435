#include "hgfleet/store.h"
#include "hgfleet/config.h"
#include "hgfleet/log.h"

#include <ev.h>
#include <stdlib.h>
#include <string.h>

typedef struct pending {
    struct pending *next;
    hgf_store_cb cb;
    void *arg;
    PGresult *res;   /* first result of the query, kept until its Sync */
    int saw_end;     /* the NULL that ends the query's results arrived */
} pending;

struct hgf_store {
    struct ev_loop *loop;
    PGconn *conn;
    ev_io rio, wio;
    pending *head, *tail;
    int npending;
    long rows_written;
    int broken;
    char where[256];
};

static void fail_all(hgf_store *s, const char *why)
{
    hgf_err e;
    hgf_err_set(&e, HGF_EDB, "database connection lost (%s): %s", s->where, why);
    pending *p = s->head;
    s->head = s->tail = NULL;
    s->npending = 0;
    while (p) {
        pending *n = p->next;
        if (p->res)
            PQclear(p->res);
        p->cb(NULL, &e, p->arg);
        free(p);
        p = n;
    }
}

static void mark_broken(hgf_store *s)
{
    char why[512];
    snprintf(why, sizeof why, "%s", PQerrorMessage(s->conn));
    why[strcspn(why, "\n")] = '\0';
    s->broken = 1;
    ev_io_stop(s->loop, &s->rio);
    ev_io_stop(s->loop, &s->wio);
    hgf_log_error("store.broken", "%s: %s", s->where, why);
    fail_all(s, why);
}

static void finish_head(hgf_store *s)
{
    pending *p = s->head;
    s->head = p->next;
    if (!s->head)
        s->tail = NULL;
    s->npending--;
    PGresult *res = p->res;
    hgf_err e;
    hgf_err_clear(&e);
    if (!res)
        hgf_err_set(&e, HGF_EDB, "query returned no result");
    else if (PQresultStatus(res) == PGRES_COMMAND_OK) {
        const char *n = PQcmdTuples(res);
        if (n && *n && strncmp(PQcmdStatus(res), "SELECT", 6))
            s->rows_written += atol(n);
    }
    p->cb(res, res ? NULL : &e, p->arg);
    free(p);
}

/* Pipeline results arrive as: the query's result(s), NULL, then PIPELINE_SYNC. */
static void drain(hgf_store *s)
{
    while (s->head && !PQisBusy(s->conn)) {
        PGresult *r = PQgetResult(s->conn);
        if (!r) {
            if (s->head->saw_end)
                break; /* nothing more buffered yet */
            s->head->saw_end = 1;
            continue;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            finish_head(s);
        } else if (!s->head->res) {
            s->head->res = r;
        } else {
            PQclear(r);
        }
    }
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    hgf_store *s = w->data;
    if (!PQconsumeInput(s->conn)) {
        mark_broken(s);
        return;
    }
    drain(s);
    if (PQstatus(s->conn) == CONNECTION_BAD)
        mark_broken(s);
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    hgf_store *s = w->data;
    int rc = PQflush(s->conn);
    if (rc < 0)
        mark_broken(s);
    else if (rc == 0)
        ev_io_stop(loop, w);
}

/* Server notices ("relation already exists, skipping") are not user output. */
static void on_notice(void *arg, const char *message)
{
    hgf_log_debug("store.notice", "%.*s", (int)strcspn(message, "\n"), message);
}

static PGconn *connect_db(const char *conninfo)
{
    const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *vals[] = {conninfo && *conninfo ? conninfo : NULL, "5", "hgfleet", NULL};
    if (!vals[0]) {
        keys[0] = "connect_timeout";
        vals[0] = "5";
        keys[1] = "application_name";
        vals[1] = "hgfleet";
        keys[2] = NULL;
    }
    return PQconnectdbParams(keys, vals, 1);
}

hgf_store *hgf_store_open(struct ev_loop *loop, const char *conninfo, hgf_err *err)
{
    hgf_store *s = calloc(1, sizeof *s);
    if (!s) {
        hgf_err_set(err, HGF_ENOMEM, "out of memory");
        return NULL;
    }
    char *where = hgf_config_describe_db(conninfo);
    snprintf(s->where, sizeof s->where, "%s", where);
    free(where);
    s->loop = loop;
    s->conn = connect_db(conninfo);
    if (!s->conn || PQstatus(s->conn) != CONNECTION_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", s->conn ? PQerrorMessage(s->conn) : "out of memory");
        why[strcspn(why, "\n")] = '\0';
        hgf_err_set(err, HGF_EDB, "cannot connect to the database (%s): %s", s->where, why);
        PQfinish(s->conn);
        free(s);
        return NULL;
    }
    PQsetNoticeProcessor(s->conn, on_notice, NULL);
    if (PQsetnonblocking(s->conn, 1) || !PQenterPipelineMode(s->conn)) {
        hgf_err_set(err, HGF_EDB, "database (%s): cannot enter pipeline mode", s->where);
        PQfinish(s->conn);
        free(s);
        return NULL;
    }
    ev_io_init(&s->rio, on_read, PQsocket(s->conn), EV_READ);
    ev_io_init(&s->wio, on_write, PQsocket(s->conn), EV_WRITE);
    s->rio.data = s->wio.data = s;
    ev_io_start(loop, &s->rio);
    return s;
}

void hgf_store_close(hgf_store *s)
{
    if (!s)
        return;
    ev_io_stop(s->loop, &s->rio);
    ev_io_stop(s->loop, &s->wio);
    fail_all(s, "store closed");
    PQfinish(s->conn);
    free(s);
}

int hgf_store_query(hgf_store *s, const char *sql, int nparams, const char *const *params,
                    hgf_store_cb cb, void *arg)
{
    if (s->broken)
        return HGF_EDB;
    pending *p = calloc(1, sizeof *p);
    if (!p)
        return HGF_ENOMEM;
    if (!PQsendQueryParams(s->conn, sql, nparams, NULL, params, NULL, NULL, 0) ||
        !PQpipelineSync(s->conn)) {
        free(p);
        mark_broken(s);
        return HGF_EDB;
    }
    p->cb = cb;
    p->arg = arg;
    if (s->tail)
        s->tail->next = p;
    else
        s->head = p;
    s->tail = p;
    s->npending++;
    int rc = PQflush(s->conn);
    if (rc < 0) {
        mark_broken(s);
        return HGF_EDB;
    }
    if (rc == 1)
        ev_io_start(s->loop, &s->wio);
    return 0;
}

typedef struct exec_wait {
    int done;
    PGresult *res;
    hgf_err err;
} exec_wait;

static void exec_done(PGresult *res, const hgf_err *err, void *arg)
{
    exec_wait *w = arg;
    w->done = 1;
    w->res = res;
    if (err)
        w->err = *err;
}

int hgf_store_exec(hgf_store *s, const char *sql, int nparams, const char *const *params,
                   PGresult **out, hgf_err *err)
{
    exec_wait w;
    memset(&w, 0, sizeof w);
    if (out)
        *out = NULL;
    int rc = hgf_store_query(s, sql, nparams, params, exec_done, &w);
    if (rc)
        return hgf_err_set(err, rc, "database (%s): %s", s->where,
                           s->broken ? "connection is broken" : "cannot send query");
    while (!w.done)
        ev_run(s->loop, EVRUN_ONCE);
    if (!w.res)
        return hgf_err_set(err, w.err.code, "%s", w.err.msg);
    rc = hgf_store_check(w.res, err);
    if (rc || !out)
        PQclear(w.res);
    else
        *out = w.res;
    return rc;
}

int hgf_store_check(const PGresult *res, hgf_err *err)
{
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return 0;
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    int code = (state && !strcmp(state, "23505")) ? HGF_EEXIST : HGF_EDB;
    return hgf_err_set(err, code, "database error %s: %s", state ? state : "?",
                       msg ? msg : PQresStatus(st));
}

int hgf_store_pending(const hgf_store *s)
{
    return s->npending;
}

long hgf_store_rows_written(const hgf_store *s)
{
    return s->rows_written;
}

void hgf_store_add_rows_written(hgf_store *s, long n)
{
    s->rows_written += n;
}

int hgf_store_exec_script(hgf_store *s, const char *script, hgf_err *err)
{
    if (s->broken || s->npending)
        return hgf_err_set(err, HGF_EINPUT, "database (%s): script needs an idle connection",
                           s->where);
    if (!PQexitPipelineMode(s->conn) || PQsetnonblocking(s->conn, 0))
        return hgf_err_set(err, HGF_EDB, "database (%s): cannot leave pipeline mode", s->where);
    PGresult *r = PQexec(s->conn, script);
    int rc = r ? hgf_store_check(r, err)
               : hgf_err_set(err, HGF_EDB, "database (%s): %s", s->where, PQerrorMessage(s->conn));
    PQclear(r);
    if (rc) {
        PGresult *rb = PQexec(s->conn, "ROLLBACK");
        PQclear(rb);
    }
    PQsetNoticeProcessor(s->conn, on_notice, NULL);
    if (PQsetnonblocking(s->conn, 1) || !PQenterPipelineMode(s->conn)) {
        mark_broken(s);
        return hgf_err_set(err, HGF_EDB, "database (%s): cannot re-enter pipeline mode", s->where);
    }
    return rc;
}
