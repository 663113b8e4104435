#include "hgfleet/store.h"
#include "hgfleet/config.h"
#include "hgfleet/log.h"

#include <ctype.h>
#include <ev.h>
#include <stdlib.h>
#include <string.h>

#define CONNECT_TIMEOUT_S 5.0
#define BACKOFF_FIRST_S 0.25
#define BACKOFF_MAX_S 5.0
#define MAX_CHANNEL 63

enum { ST_DOWN, ST_CONNECTING, ST_UP, ST_CLOSED };

typedef struct pending {
    struct pending *next;
    hgf_store_cb cb;
    void *arg;
    PGresult *res;   /* first result of the query, kept until its Sync */
    int saw_end;     /* the NULL that ends the query's results arrived */
} pending;

typedef struct listener {
    char channel[MAX_CHANNEL + 1];
    hgf_store_notify_cb cb;
    void *arg;
} listener;

struct hgf_store {
    struct ev_loop *loop;
    char *conninfo;
    PGconn *conn;
    int state;
    int reconnect;         /* 0 during hgf_store_open: its failure is returned, not retried */
    double backoff;
    ev_io rio, wio;        /* while up */
    ev_io cio;             /* while connecting: the direction PQconnectPoll asked for */
    ev_timer timer;        /* connect timeout while connecting, backoff while down */
    pending *head, *tail;
    int npending;
    long rows_written;
    listener *listeners;
    int n_listeners;
    char where[256];
    char last_error[512];
};

static void connect_start(hgf_store *s);

static void set_error(hgf_store *s, const char *why)
{
    snprintf(s->last_error, sizeof s->last_error, "%s", why && *why ? why : "unknown error");
    s->last_error[strcspn(s->last_error, "\n")] = '\0';
}

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

static void schedule_retry(hgf_store *s)
{
    ev_timer_stop(s->loop, &s->timer);
    ev_timer_set(&s->timer, s->backoff, 0.);
    ev_timer_start(s->loop, &s->timer);
    s->backoff = s->backoff * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : s->backoff * 2;
}

/* The state changes before any callback runs, so callbacks that send more
 * queries get HGF_EDB at once instead of touching a dead connection. */
static void mark_broken(hgf_store *s)
{
    set_error(s, PQerrorMessage(s->conn));
    ev_io_stop(s->loop, &s->rio);
    ev_io_stop(s->loop, &s->wio);
    PQfinish(s->conn);
    s->conn = NULL;
    s->state = ST_DOWN;
    hgf_log_error("store.broken", "%s: %s; reconnecting", s->where, s->last_error);
    s->backoff = BACKOFF_FIRST_S;
    schedule_retry(s);
    char why[sizeof s->last_error];
    memcpy(why, s->last_error, sizeof why);
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

/* Pipeline results arrive as: the query's result(s), NULL, then PIPELINE_SYNC.
 * A callback may break the connection, hence the state check each round. */
static void drain(hgf_store *s)
{
    while (s->state == ST_UP && s->head && !PQisBusy(s->conn)) {
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

static void deliver_notifies(hgf_store *s)
{
    PGnotify *n;
    while (s->state == ST_UP && (n = PQnotifies(s->conn)) != NULL) {
        for (int i = 0; i < s->n_listeners; i++)
            if (!strcmp(s->listeners[i].channel, n->relname))
                s->listeners[i].cb(n->relname, n->extra ? n->extra : "", s->listeners[i].arg);
        PQfreemem(n);
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
    deliver_notifies(s);
    if (s->state == ST_UP && PQstatus(s->conn) == CONNECTION_BAD)
        mark_broken(s);
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    hgf_store *s = w->data;
    if (s->state != ST_UP) {
        ev_io_stop(loop, w);
        return;
    }
    int rc = PQflush(s->conn);
    if (rc < 0 || PQstatus(s->conn) == CONNECTION_BAD)
        mark_broken(s);
    else if (rc == 0)
        ev_io_stop(loop, w);
}

/* Server notices ("relation already exists, skipping") are not user output. */
static void on_notice(void *arg, const char *message)
{
    hgf_log_debug("store.notice", "%.*s", (int)strcspn(message, "\n"), message);
}

/* ---- connecting ---------------------------------------------------- */

static void listen_done(PGresult *res, const hgf_err *err, void *arg)
{
    hgf_err e;
    if (err)
        hgf_log_warn("store.listen", "%s", err->msg);
    else if (hgf_store_check(res, &e))
        hgf_log_warn("store.listen", "%s", e.msg);
    PQclear(res);
}

static void send_listen(hgf_store *s, const listener *l)
{
    char sql[MAX_CHANNEL + 16];
    snprintf(sql, sizeof sql, "LISTEN \"%s\"", l->channel);
    hgf_store_query(s, sql, 0, NULL, listen_done, NULL);
}

static void connect_failed(hgf_store *s, const char *why)
{
    set_error(s, why);
    ev_io_stop(s->loop, &s->cio);
    ev_timer_stop(s->loop, &s->timer);
    PQfinish(s->conn);
    s->conn = NULL;
    s->state = ST_DOWN;
    if (!s->reconnect)
        return;
    hgf_log_warn("store.connect_failed", "%s: %s; retrying in %.2fs", s->where, s->last_error,
                 s->backoff);
    schedule_retry(s);
}

static void connected(hgf_store *s)
{
    ev_io_stop(s->loop, &s->cio);
    ev_timer_stop(s->loop, &s->timer);
    if (PQsetnonblocking(s->conn, 1) || !PQenterPipelineMode(s->conn)) {
        connect_failed(s, "cannot enter pipeline mode");
        return;
    }
    ev_io_init(&s->rio, on_read, PQsocket(s->conn), EV_READ);
    ev_io_init(&s->wio, on_write, PQsocket(s->conn), EV_WRITE);
    s->rio.data = s->wio.data = s;
    ev_io_start(s->loop, &s->rio);
    s->state = ST_UP;
    s->last_error[0] = '\0';
    s->backoff = BACKOFF_FIRST_S;
    if (s->reconnect)
        hgf_log_info("store.connected", "%s: connection re-made", s->where);
    for (int i = 0; i < s->n_listeners && s->state == ST_UP; i++)
        send_listen(s, &s->listeners[i]);
}

static void wait_for(hgf_store *s, PostgresPollingStatusType want)
{
    ev_io_stop(s->loop, &s->cio);
    ev_io_set(&s->cio, PQsocket(s->conn), want == PGRES_POLLING_READING ? EV_READ : EV_WRITE);
    ev_io_start(s->loop, &s->cio);
}

static void poll_connect(hgf_store *s)
{
    PostgresPollingStatusType st = PQconnectPoll(s->conn);
    if (st == PGRES_POLLING_OK)
        connected(s);
    else if (st == PGRES_POLLING_FAILED)
        connect_failed(s, PQerrorMessage(s->conn));
    else
        wait_for(s, st);
}

static void on_connect_io(struct ev_loop *loop, ev_io *w, int revents)
{
    poll_connect(w->data);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    hgf_store *s = w->data;
    if (s->state == ST_CONNECTING)
        connect_failed(s, "timeout expired while connecting");
    else if (s->state == ST_DOWN)
        connect_start(s);
}

/* Defaults come before dbname so that a conninfo naming them wins. */
static PGconn *start_conn(const char *conninfo)
{
    const char *keys[] = {"connect_timeout", "application_name", "keepalives", "keepalives_idle",
                          "keepalives_interval", "keepalives_count", "dbname", NULL};
    const char *vals[] = {"5", "hgfleet", "1", "10", "5", "3", conninfo, NULL};
    if (!conninfo || !*conninfo)
        keys[6] = NULL;
    return PQconnectStartParams(keys, vals, 1);
}

static void connect_start(hgf_store *s)
{
    s->conn = start_conn(s->conninfo);
    if (!s->conn || PQstatus(s->conn) == CONNECTION_BAD) {
        connect_failed(s, s->conn ? PQerrorMessage(s->conn) : "out of memory");
        return;
    }
    PQsetNoticeProcessor(s->conn, on_notice, NULL);
    s->state = ST_CONNECTING;
    ev_timer_stop(s->loop, &s->timer);
    ev_timer_set(&s->timer, CONNECT_TIMEOUT_S, 0.);
    ev_timer_start(s->loop, &s->timer);
    /* libpq: before the first poll, behave as if it asked for writing. */
    wait_for(s, PGRES_POLLING_WRITING);
}

hgf_store *hgf_store_open(struct ev_loop *loop, const char *conninfo, hgf_err *err)
{
    hgf_store *s = calloc(1, sizeof *s);
    if (!s || !(s->conninfo = strdup(conninfo ? conninfo : ""))) {
        free(s);
        hgf_err_set(err, HGF_ENOMEM, "out of memory");
        return NULL;
    }
    char *where = hgf_config_describe_db(conninfo);
    snprintf(s->where, sizeof s->where, "%s", where);
    free(where);
    s->loop = loop;
    s->backoff = BACKOFF_FIRST_S;
    ev_init(&s->cio, on_connect_io);
    ev_init(&s->timer, on_timer);
    s->cio.data = s->timer.data = s;
    connect_start(s);
    while (s->state == ST_CONNECTING)
        ev_run(loop, EVRUN_ONCE);
    if (s->state != ST_UP) {
        hgf_err_set(err, HGF_EDB, "cannot connect to the database (%s): %s", s->where,
                    s->last_error);
        free(s->conninfo);
        free(s);
        return NULL;
    }
    s->reconnect = 1;
    return s;
}

void hgf_store_close(hgf_store *s)
{
    if (!s)
        return;
    int was = s->state;
    s->state = ST_CLOSED;
    ev_io_stop(s->loop, &s->rio);
    ev_io_stop(s->loop, &s->wio);
    ev_io_stop(s->loop, &s->cio);
    ev_timer_stop(s->loop, &s->timer);
    fail_all(s, was == ST_UP ? "store closed" : s->last_error);
    PQfinish(s->conn);
    free(s->listeners);
    free(s->conninfo);
    free(s);
}

int hgf_store_is_up(const hgf_store *s)
{
    return s && s->state == ST_UP;
}

const char *hgf_store_last_error(const hgf_store *s)
{
    return s->state == ST_UP ? "" : s->last_error[0] ? s->last_error : "not connected";
}

static int channel_ok(const char *c)
{
    size_t n = strlen(c);
    if (n == 0 || n > MAX_CHANNEL)
        return 0;
    for (; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '_')
            return 0;
    return 1;
}

int hgf_store_listen(hgf_store *s, const char *channel, hgf_store_notify_cb cb, void *arg)
{
    if (!channel || !channel_ok(channel))
        return HGF_EINPUT;
    listener *l = realloc(s->listeners, (size_t)(s->n_listeners + 1) * sizeof *l);
    if (!l)
        return HGF_ENOMEM;
    s->listeners = l;
    l = &s->listeners[s->n_listeners++];
    snprintf(l->channel, sizeof l->channel, "%s", channel);
    l->cb = cb;
    l->arg = arg;
    if (s->state == ST_UP)
        send_listen(s, l);
    return 0;
}

void hgf_store_unlisten(hgf_store *s, const char *channel, hgf_store_notify_cb cb, void *arg)
{
    int still = 0;
    for (int i = 0; i < s->n_listeners; i++) {
        listener *l = &s->listeners[i];
        if (strcmp(l->channel, channel))
            continue;
        if (l->cb == cb && l->arg == arg) {
            memmove(l, l + 1, (size_t)(s->n_listeners - i - 1) * sizeof *l);
            s->n_listeners--;
            i--;
        } else {
            still = 1;
        }
    }
    if (!still && s->state == ST_UP && channel_ok(channel)) {
        char sql[MAX_CHANNEL + 16];
        snprintf(sql, sizeof sql, "UNLISTEN \"%s\"", channel);
        hgf_store_query(s, sql, 0, NULL, listen_done, NULL);
    }
}

/* Never breaks the connection (and so never calls back) from inside
 * hgf_store_query: callers may not be ready for their own callback yet. */
static void defer_write_check(hgf_store *s)
{
    ev_io_start(s->loop, &s->wio);
    ev_feed_event(s->loop, &s->wio, EV_WRITE);
}

int hgf_store_query(hgf_store *s, const char *sql, int nparams, const char *const *params,
                    hgf_store_cb cb, void *arg)
{
    if (s->state != ST_UP)
        return HGF_EDB;
    pending *p = calloc(1, sizeof *p);
    if (!p)
        return HGF_ENOMEM;
    if (!PQsendQueryParams(s->conn, sql, nparams, NULL, params, NULL, NULL, 0) ||
        !PQpipelineSync(s->conn)) {
        free(p);
        defer_write_check(s);
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
    if (PQflush(s->conn) != 0) /* 1: more to send; -1: on_write finds the break */
        defer_write_check(s);
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
                           s->state != ST_UP ? hgf_store_last_error(s) : "cannot send query");
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
    if (s->state != ST_UP || s->npending)
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
