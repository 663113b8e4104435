#include "hgfleet/store.h"
#include "hgfleet/config.h"
#include "hgfleet/log.h"

#include <ctype.h>
#include <ev.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CONNECT_TIMEOUT_S 5.0
#define BACKOFF_FIRST_S 0.25
#define BACKOFF_MAX_S 5.0
#define MAX_CHANNEL 63
/* Statements prepared per connection. hgfleet's texts are a fixed set (about
 * a hundred, filters included); the bound only matters for a caller that
 * builds texts from values, whose least recently used ones are deallocated. */
#define PREP_SLOTS 128
/* Parameters above this size (a registry's catalog document) mark a long
 * statement: its planning is nothing beside its execution, and the copy kept
 * to re-send it would double its memory. Such statements are not prepared. */
#define PREP_MAX_PARAM_BYTES 65536

enum { ST_DOWN, ST_CONNECTING, ST_UP, ST_CLOSED };

/* A statement prepared on one connection, named "hgf_<id>". Ids are never
 * reused on a link, so a name never meets a stale statement of the same name. */
typedef struct prep {
    char *sql;           /* NULL: a free slot */
    uint64_t hash;
    uint64_t id;
    uint64_t used;       /* the link's clock at its last use */
} prep;

/* What a prepared statement needs to be sent again (one block). */
typedef struct resend {
    char *sql;
    int nparams;
    const char **params;
} resend;

typedef struct pending {
    struct pending *next;
    hgf_store_cb cb;
    void *arg;
    PGresult *res;   /* first result of the query, kept until its Sync */
    int ncmds;       /* commands before the Sync: 2 when a Prepare goes first */
    int nulls;       /* NULLs seen so far: one ends each command's results */
    int prep_failed; /* res is the Prepare's own error: the statement does not exist */
    uint64_t prep_id; /* the prepared statement run, 0 for an unnamed one */
    resend *again;   /* set when a statement prepared earlier may have gone stale */
} pending;

typedef struct listener {
    char channel[MAX_CHANNEL + 1];
    hgf_store_notify_cb cb;
    void *arg;
} listener;

/* One libpq connection with its own pipeline. Link 0 is the main one: it
 * carries ordinary queries and every LISTEN; the others carry bulk work. */
typedef struct link {
    hgf_store *st;
    int index;
    PGconn *conn;
    int state;
    int reconnect;         /* 0 during hgf_store_open: its failure is returned, not retried */
    double backoff;
    ev_io rio, wio;        /* while up */
    ev_io cio;             /* while connecting: the direction PQconnectPoll asked for */
    ev_timer timer;        /* connect timeout while connecting, backoff while down */
    pending *head, *tail;
    int npending;
    int send_broken;       /* a segment went out in part: the pipeline is out of step */
    prep *preps;           /* PREP_SLOTS, allocated at the first prepared statement */
    uint64_t clock, next_id;
    char last_error[512];
} link;

struct hgf_store {
    struct ev_loop *loop;
    char *conninfo;
    link **links;          /* each link apart: libev holds its watchers by address */
    int nlinks;
    int bulk_wanted;       /* bulk links to start at the first bulk query */
    long rows_written;
    listener *listeners;
    int n_listeners;
    int closing;           /* pending LISTENs failed by hgf_store_close are no news */
    int prepare;           /* HGFLEET_DB_PREPARE */
    char where[256];
};

static void connect_start(link *l);
static int send_query(link *l, const char *sql, int nparams, const char *const *params,
                      hgf_store_cb cb, void *arg, int may_retry);
static int stale_retry(link *l, pending *p);

static void pending_free(pending *p)
{
    free(p->again);
    free(p);
}

static void set_error(link *l, const char *why)
{
    snprintf(l->last_error, sizeof l->last_error, "%s", why && *why ? why : "unknown error");
    l->last_error[strcspn(l->last_error, "\n")] = '\0';
}

static const char *link_name(const link *l)
{
    return l->index ? "bulk connection" : "connection";
}

static void fail_all(link *l, const char *why)
{
    hgf_err e;
    hgf_err_set(&e, HGF_EDB, "database %s lost (%s): %s", link_name(l), l->st->where, why);
    pending *p = l->head;
    l->head = l->tail = NULL;
    l->npending = 0;
    while (p) {
        pending *n = p->next;
        if (p->res)
            PQclear(p->res);
        p->cb(NULL, &e, p->arg);
        pending_free(p);
        p = n;
    }
}

static void schedule_retry(link *l)
{
    struct ev_loop *loop = l->st->loop;
    ev_timer_stop(loop, &l->timer);
    ev_timer_set(&l->timer, l->backoff, 0.);
    ev_timer_start(loop, &l->timer);
    l->backoff = l->backoff * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : l->backoff * 2;
}

/* The state changes before any callback runs, so callbacks that send more
 * queries get HGF_EDB (or another link) at once instead of a dead connection. */
static void mark_broken(link *l)
{
    set_error(l, PQerrorMessage(l->conn));
    ev_io_stop(l->st->loop, &l->rio);
    ev_io_stop(l->st->loop, &l->wio);
    PQfinish(l->conn);
    l->conn = NULL;
    l->state = ST_DOWN;
    hgf_log_error("store.broken", "%s (%s): %s; reconnecting", l->st->where, link_name(l),
                  l->last_error);
    l->backoff = BACKOFF_FIRST_S;
    schedule_retry(l);
    char why[sizeof l->last_error];
    memcpy(why, l->last_error, sizeof why);
    fail_all(l, why);
}

static void finish_head(link *l)
{
    pending *p = l->head;
    l->head = p->next;
    if (!l->head)
        l->tail = NULL;
    l->npending--;
    if (stale_retry(l, p))
        return;
    PGresult *res = p->res;
    hgf_err e;
    hgf_err_clear(&e);
    if (!res)
        hgf_err_set(&e, HGF_EDB, "query returned no result");
    else if (PQresultStatus(res) == PGRES_COMMAND_OK) {
        const char *n = PQcmdTuples(res);
        if (n && *n && strncmp(PQcmdStatus(res), "SELECT", 6))
            l->st->rows_written += atol(n);
    }
    p->cb(res, res ? NULL : &e, p->arg);
    pending_free(p);
}

/* Pipeline results arrive as, for each command, its result(s) then NULL, and
 * PIPELINE_SYNC after the last. A Prepare sent ahead of its statement is a
 * command of the same segment: its success is no news to the caller, its
 * error is the caller's error (the statement then comes back
 * PIPELINE_ABORTED). A callback may break the connection, hence the state
 * check each round. */
static void drain(link *l)
{
    while (l->state == ST_UP && l->head && !PQisBusy(l->conn)) {
        pending *p = l->head;
        PGresult *r = PQgetResult(l->conn);
        if (!r) {
            if (p->nulls == p->ncmds)
                break; /* nothing more buffered yet */
            p->nulls++;
            continue;
        }
        ExecStatusType st = PQresultStatus(r);
        int preparing = p->nulls < p->ncmds - 1;
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            finish_head(l);
        } else if (preparing && st == PGRES_COMMAND_OK) {
            PQclear(r);
        } else if (!p->res) {
            p->res = r;
            p->prep_failed = preparing;
        } else {
            PQclear(r);
        }
    }
}

static void deliver_notifies(link *l)
{
    hgf_store *s = l->st;
    PGnotify *n;
    while (l->state == ST_UP && (n = PQnotifies(l->conn)) != NULL) {
        for (int i = 0; i < s->n_listeners; i++)
            if (!strcmp(s->listeners[i].channel, n->relname))
                s->listeners[i].cb(n->relname, n->extra ? n->extra : "", s->listeners[i].arg);
        PQfreemem(n);
    }
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    link *l = w->data;
    if (!PQconsumeInput(l->conn)) {
        mark_broken(l);
        return;
    }
    drain(l);
    deliver_notifies(l);
    if (l->state == ST_UP && PQstatus(l->conn) == CONNECTION_BAD)
        mark_broken(l);
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    link *l = w->data;
    if (l->state != ST_UP) {
        ev_io_stop(loop, w);
        return;
    }
    int rc = PQflush(l->conn);
    if (rc < 0 || PQstatus(l->conn) == CONNECTION_BAD || l->send_broken)
        mark_broken(l);
    else if (rc == 0)
        ev_io_stop(loop, w);
}

/* Server notices ("relation already exists, skipping") are not user output. */
static void on_notice(void *arg, const char *message)
{
    hgf_log_debug("store.notice", "%.*s", (int)strcspn(message, "\n"), message);
}

/* ---- prepared statements -------------------------------------------- */

/* FNV-1a: the texts are program constants, nobody picks them to collide, and
 * a hit compares the whole text anyway. */
static uint64_t text_hash(const char *s)
{
    uint64_t h = 14695981039346656037ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static void prep_name(uint64_t id, char *out, size_t n)
{
    snprintf(out, n, "hgf_%llu", (unsigned long long)id);
}

static void prep_reset(link *l)
{
    for (int i = 0; l->preps && i < PREP_SLOTS; i++)
        free(l->preps[i].sql);
    free(l->preps);
    l->preps = NULL;
}

/* Only plannable statements gain from a plan cache: LISTEN, SET, BEGIN and
 * DDL do not (and a session-level statement such as SET has nothing to keep).
 * Multi-statement scripts never come here: the extended protocol refuses them. */
static int preparable(const char *sql, int nparams, const char *const *params, size_t *bytes)
{
    static const char *const verbs[] = {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "VALUES"};
    while (isspace((unsigned char)*sql))
        sql++;
    size_t n = 0;
    while (isalpha((unsigned char)sql[n]))
        n++;
    int ok = 0;
    for (size_t i = 0; !ok && i < sizeof verbs / sizeof *verbs; i++)
        ok = strlen(verbs[i]) == n && !strncasecmp(sql, verbs[i], n);
    *bytes = 0;
    for (int i = 0; ok && i < nparams; i++)
        *bytes += params[i] ? strlen(params[i]) + 1 : 0;
    return ok && *bytes <= PREP_MAX_PARAM_BYTES;
}

static resend *resend_copy(const char *sql, int nparams, const char *const *params, size_t bytes)
{
    size_t len = strlen(sql) + 1;
    resend *r = malloc(sizeof *r + (size_t)nparams * sizeof(char *) + len + bytes);
    if (!r)
        return NULL;
    r->params = (const char **)(r + 1);
    char *at = (char *)(r->params + nparams);
    r->sql = memcpy(at, sql, len);
    at += len;
    r->nparams = nparams;
    for (int i = 0; i < nparams; i++) {
        r->params[i] = NULL;
        if (params[i]) {
            size_t k = strlen(params[i]) + 1;
            r->params[i] = memcpy(at, params[i], k);
            at += k;
        }
    }
    return r;
}

static void dealloc_done(PGresult *res, const hgf_err *err, void *arg)
{
    const link *l = arg;
    hgf_err e;
    if (res && hgf_store_check(res, &e))
        hgf_log_debug("store.deallocate", "%s (%s): %s", l->st->where, link_name(l), e.msg);
    PQclear(res);
}

/* Its own segment: were it to fail, it takes no caller's statement with it.
 * Statements already sent under the name run before it, in pipeline order. */
static void send_dealloc(link *l, uint64_t id)
{
    char sql[48];
    snprintf(sql, sizeof sql, "DEALLOCATE hgf_%llu", (unsigned long long)id);
    send_query(l, sql, 0, NULL, dealloc_done, l, 0);
}

static prep *prep_by_id(link *l, uint64_t id)
{
    for (int i = 0; id && l->preps && i < PREP_SLOTS; i++)
        if (l->preps[i].sql && l->preps[i].id == id)
            return &l->preps[i];
    return NULL;
}

static void prep_forget(link *l, uint64_t id, int dealloc)
{
    prep *e = prep_by_id(l, id);
    if (!e)
        return; /* evicted or forgotten already, deallocated then if it had to be */
    free(e->sql);
    e->sql = NULL;
    if (dealloc)
        send_dealloc(l, id);
}

/* A free slot, else the least recently used one, deallocated. */
static prep *prep_slot(link *l)
{
    prep *best = &l->preps[0];
    for (int i = 0; i < PREP_SLOTS && best->sql; i++)
        if (!l->preps[i].sql || l->preps[i].used < best->used)
            best = &l->preps[i];
    if (best->sql) {
        uint64_t id = best->id;
        free(best->sql);
        best->sql = NULL;
        send_dealloc(l, id);
    }
    return best;
}

/* The prepared statement to run sql as, NULL to send it unnamed (not
 * preparable, prepare off, out of memory). A new one sets p->ncmds to 2: its
 * Prepare goes first in the same segment. A hit keeps a copy for
 * stale_retry when may_retry. */
static const prep *prep_pick(link *l, const char *sql, int nparams, const char *const *params,
                             pending *p, int may_retry)
{
    size_t bytes;
    if (!l->st->prepare || !preparable(sql, nparams, params, &bytes))
        return NULL;
    if (!l->preps && !(l->preps = calloc(PREP_SLOTS, sizeof *l->preps)))
        return NULL;
    uint64_t h = text_hash(sql);
    for (int i = 0; i < PREP_SLOTS; i++) {
        prep *e = &l->preps[i];
        if (!e->sql || e->hash != h || strcmp(e->sql, sql))
            continue;
        if (may_retry && !(p->again = resend_copy(sql, nparams, params, bytes)))
            return NULL;
        e->used = ++l->clock;
        p->prep_id = e->id;
        return e;
    }
    char *copy = strdup(sql);
    if (!copy)
        return NULL;
    prep *e = prep_slot(l);
    *e = (prep){.sql = copy, .hash = h, .id = ++l->next_id, .used = ++l->clock};
    p->prep_id = e->id;
    p->ncmds = 2;
    return e;
}

/* Errors a statement prepared earlier can meet where the same text sent
 * afresh would not: its result columns changed under it (a migration
 * replaced a function or a table read with *), the parameter types fixed when
 * it was prepared no longer fit a replaced function or column, or it is gone
 * (its Prepare failed, or something deallocated it). */
static int stale_error(const PGresult *res)
{
    const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!st)
        return 0;
    if (!strcmp(st, "0A000"))
        return msg && strstr(msg, "cached plan must not change result type") != NULL;
    return !strcmp(st, "26000") || !strcmp(st, "42883") || !strcmp(st, "42804");
}

/* A failed Prepare leaves no statement: forget it. A statement prepared
 * earlier that failed as stale is prepared again and re-sent, once; it then
 * comes back after what was sent in the meantime. The failed statement ran
 * in its own implicit transaction and so changed nothing. 1 when p was
 * re-sent (and freed). */
static int stale_retry(link *l, pending *p)
{
    if (p->prep_failed)
        prep_forget(l, p->prep_id, 0);
    if (!p->again || !stale_error(p->res))
        return 0;
    const char *st = PQresultErrorField(p->res, PG_DIAG_SQLSTATE);
    prep_forget(l, p->prep_id, strcmp(st, "26000") != 0);
    const resend *r = p->again;
    if (send_query(l, r->sql, r->nparams, r->params, p->cb, p->arg, 0))
        return 0;
    hgf_log_info("store.reprepare", "%s (%s): prepared statement hgf_%llu went stale (%s); "
                 "prepared again", l->st->where, link_name(l), (unsigned long long)p->prep_id, st);
    PQclear(p->res);
    pending_free(p);
    return 1;
}

/* ---- connecting ---------------------------------------------------- */

static void listen_done(PGresult *res, const hgf_err *err, void *arg)
{
    const hgf_store *s = arg;
    hgf_err e;
    if (err) {
        /* A LISTEN cut off by close() is no news. */
        if (!s->closing)
            hgf_log_warn("store.listen", "%s", err->msg);
    } else if (hgf_store_check(res, &e))
        hgf_log_warn("store.listen", "%s", e.msg);
    PQclear(res);
}

static void send_listen(hgf_store *s, const listener *l)
{
    char sql[MAX_CHANNEL + 16];
    snprintf(sql, sizeof sql, "LISTEN \"%s\"", l->channel);
    hgf_store_query(s, sql, 0, NULL, listen_done, s);
}

static void connect_failed(link *l, const char *why)
{
    set_error(l, why);
    ev_io_stop(l->st->loop, &l->cio);
    ev_timer_stop(l->st->loop, &l->timer);
    PQfinish(l->conn);
    l->conn = NULL;
    l->state = ST_DOWN;
    if (!l->reconnect)
        return;
    hgf_log_warn("store.connect_failed", "%s (%s): %s; retrying in %.2fs", l->st->where,
                 link_name(l), l->last_error, l->backoff);
    schedule_retry(l);
}

static void connected(link *l)
{
    hgf_store *s = l->st;
    ev_io_stop(s->loop, &l->cio);
    ev_timer_stop(s->loop, &l->timer);
    if (PQsetnonblocking(l->conn, 1) || !PQenterPipelineMode(l->conn)) {
        connect_failed(l, "cannot enter pipeline mode");
        return;
    }
    ev_io_init(&l->rio, on_read, PQsocket(l->conn), EV_READ);
    ev_io_init(&l->wio, on_write, PQsocket(l->conn), EV_WRITE);
    l->rio.data = l->wio.data = l;
    ev_io_start(s->loop, &l->rio);
    l->state = ST_UP;
    l->send_broken = 0;
    prep_reset(l); /* a new session has no prepared statements */
    int again = l->last_error[0] && l->reconnect;
    l->last_error[0] = '\0';
    l->backoff = BACKOFF_FIRST_S;
    if (again)
        hgf_log_info("store.connected", "%s (%s): connection re-made", s->where, link_name(l));
    for (int i = 0; l->index == 0 && i < s->n_listeners && l->state == ST_UP; i++)
        send_listen(s, &s->listeners[i]);
}

static void wait_for(link *l, PostgresPollingStatusType want)
{
    ev_io_stop(l->st->loop, &l->cio);
    ev_io_set(&l->cio, PQsocket(l->conn), want == PGRES_POLLING_READING ? EV_READ : EV_WRITE);
    ev_io_start(l->st->loop, &l->cio);
}

static void on_connect_io(struct ev_loop *loop, ev_io *w, int revents)
{
    link *l = w->data;
    PostgresPollingStatusType st = PQconnectPoll(l->conn);
    if (st == PGRES_POLLING_OK)
        connected(l);
    else if (st == PGRES_POLLING_FAILED)
        connect_failed(l, PQerrorMessage(l->conn));
    else
        wait_for(l, st);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    link *l = w->data;
    if (l->state == ST_CONNECTING)
        connect_failed(l, "timeout expired while connecting");
    else if (l->state == ST_DOWN)
        connect_start(l);
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

static void connect_start(link *l)
{
    l->conn = start_conn(l->st->conninfo);
    if (!l->conn || PQstatus(l->conn) == CONNECTION_BAD) {
        connect_failed(l, l->conn ? PQerrorMessage(l->conn) : "out of memory");
        return;
    }
    PQsetNoticeProcessor(l->conn, on_notice, NULL);
    l->state = ST_CONNECTING;
    ev_timer_stop(l->st->loop, &l->timer);
    ev_timer_set(&l->timer, CONNECT_TIMEOUT_S, 0.);
    ev_timer_start(l->st->loop, &l->timer);
    /* libpq: before the first poll, behave as if it asked for writing. */
    wait_for(l, PGRES_POLLING_WRITING);
}

static void link_init(hgf_store *s, link *l, int index, int reconnect)
{
    memset(l, 0, sizeof *l);
    l->st = s;
    l->index = index;
    l->reconnect = reconnect;
    l->backoff = BACKOFF_FIRST_S;
    ev_init(&l->cio, on_connect_io);
    ev_init(&l->timer, on_timer);
    l->cio.data = l->timer.data = l;
}

static void link_close(link *l)
{
    struct ev_loop *loop = l->st->loop;
    int was = l->state;
    l->state = ST_CLOSED;
    ev_io_stop(loop, &l->rio);
    ev_io_stop(loop, &l->wio);
    ev_io_stop(loop, &l->cio);
    ev_timer_stop(loop, &l->timer);
    fail_all(l, was == ST_UP ? "store closed" : l->last_error);
    PQfinish(l->conn);
    l->conn = NULL;
}

static void store_free(hgf_store *s)
{
    for (int i = 0; s->links && i < s->nlinks; i++) {
        if (s->links[i])
            prep_reset(s->links[i]);
        free(s->links[i]);
    }
    free(s->links);
    free(s->listeners);
    free(s->conninfo);
    free(s);
}

hgf_store *hgf_store_open(struct ev_loop *loop, const char *conninfo, hgf_err *err)
{
    int prepare;
    if (hgf_config_db_prepare(&prepare, err))
        return NULL;
    hgf_store *s = calloc(1, sizeof *s);
    if (!s || !(s->conninfo = strdup(conninfo ? conninfo : "")) ||
        !(s->links = calloc(1, sizeof *s->links)) || !(s->links[0] = malloc(sizeof(link)))) {
        if (s)
            store_free(s);
        hgf_err_set(err, HGF_ENOMEM, "out of memory");
        return NULL;
    }
    char *where = hgf_config_describe_db(conninfo);
    snprintf(s->where, sizeof s->where, "%s", where);
    free(where);
    s->loop = loop;
    s->prepare = prepare;
    s->nlinks = 1;
    link *main_link = s->links[0];
    link_init(s, main_link, 0, 0);
    connect_start(main_link);
    while (main_link->state == ST_CONNECTING)
        ev_run(loop, EVRUN_ONCE);
    if (main_link->state != ST_UP) {
        hgf_err_set(err, HGF_EDB, "cannot connect to the database (%s): %s", s->where,
                    main_link->last_error);
        store_free(s);
        return NULL;
    }
    main_link->reconnect = 1;
    return s;
}

void hgf_store_add_bulk(hgf_store *s, int n)
{
    s->bulk_wanted = n > 0 ? n : 0;
}

/* Bulk links are made at the first bulk query, so a short CLI command that
 * sends none never opens them (a backend each on the server). */
static int start_bulk(hgf_store *s)
{
    int n = s->bulk_wanted;
    s->bulk_wanted = 0;
    link **more = realloc(s->links, (size_t)(s->nlinks + n) * sizeof *more);
    if (!more)
        return HGF_ENOMEM;
    s->links = more;
    for (int i = 0; i < n; i++) {
        link *l = malloc(sizeof *l);
        if (!l)
            return HGF_ENOMEM;
        link_init(s, l, s->nlinks, 1);
        s->links[s->nlinks++] = l;
        connect_start(l);
    }
    return 0;
}

void hgf_store_close(hgf_store *s)
{
    if (!s)
        return;
    s->closing = 1;
    for (int i = 0; i < s->nlinks; i++)
        link_close(s->links[i]);
    store_free(s);
}

int hgf_store_is_up(const hgf_store *s)
{
    return s && s->links[0]->state == ST_UP;
}

const char *hgf_store_last_error(const hgf_store *s)
{
    const link *l = s->links[0];
    return l->state == ST_UP ? "" : l->last_error[0] ? l->last_error : "not connected";
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
    if (s->links[0]->state == ST_UP)
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
    if (!still && s->links[0]->state == ST_UP && channel_ok(channel)) {
        char sql[MAX_CHANNEL + 16];
        snprintf(sql, sizeof sql, "UNLISTEN \"%s\"", channel);
        hgf_store_query(s, sql, 0, NULL, listen_done, s);
    }
}

/* Never breaks the connection (and so never calls back) from inside
 * hgf_store_query: callers may not be ready for their own callback yet. */
static void defer_write_check(link *l)
{
    ev_io_start(l->st->loop, &l->wio);
    ev_feed_event(l->st->loop, &l->wio, EV_WRITE);
}

/* One segment: [Prepare,] the statement, Sync. A segment that went out in
 * part leaves results nobody waits for, so on_write then re-makes the link. */
static int send_query(link *l, const char *sql, int nparams, const char *const *params,
                      hgf_store_cb cb, void *arg, int may_retry)
{
    if (l->state != ST_UP)
        return HGF_EDB;
    pending *p = calloc(1, sizeof *p);
    if (!p)
        return HGF_ENOMEM;
    p->ncmds = 1;
    const prep *e = prep_pick(l, sql, nparams, params, p, may_retry);
    char name[32];
    if (e)
        prep_name(e->id, name, sizeof name);
    int ok = 1, sent = 0;
    if (p->ncmds == 2)
        ok = sent = PQsendPrepare(l->conn, name, sql, nparams, NULL);
    if (ok)
        ok = e ? PQsendQueryPrepared(l->conn, name, nparams, params, NULL, NULL, 0)
               : PQsendQueryParams(l->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    sent |= ok;
    if (!ok || !PQpipelineSync(l->conn)) {
        if (p->ncmds == 2)
            prep_forget(l, p->prep_id, 0);
        l->send_broken |= sent;
        pending_free(p);
        defer_write_check(l);
        return HGF_EDB;
    }
    p->cb = cb;
    p->arg = arg;
    if (l->tail)
        l->tail->next = p;
    else
        l->head = p;
    l->tail = p;
    l->npending++;
    if (PQflush(l->conn) != 0) /* 1: more to send; -1: on_write finds the break */
        defer_write_check(l);
    return 0;
}

static int link_send(link *l, const char *sql, int nparams, const char *const *params,
                     hgf_store_cb cb, void *arg)
{
    return send_query(l, sql, nparams, params, cb, arg, 1);
}

int hgf_store_query(hgf_store *s, const char *sql, int nparams, const char *const *params,
                    hgf_store_cb cb, void *arg)
{
    return link_send(s->links[0], sql, nparams, params, cb, arg);
}

/* The least busy bulk link that is up; the main link when none is. */
static link *pick_bulk(hgf_store *s)
{
    link *best = NULL;
    for (int i = 1; i < s->nlinks; i++) {
        link *l = s->links[i];
        if (l->state == ST_UP && (!best || l->npending < best->npending))
            best = l;
    }
    return best ? best : s->links[0];
}

int hgf_store_query_bulk(hgf_store *s, const char *sql, int nparams, const char *const *params,
                         hgf_store_cb cb, void *arg)
{
    if (s->bulk_wanted && start_bulk(s))
        hgf_log_warn("store.bulk", "%s: out of memory for bulk connections", s->where);
    return link_send(pick_bulk(s), sql, nparams, params, cb, arg);
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
                           hgf_store_is_up(s) ? "cannot send query" : hgf_store_last_error(s));
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
    int n = 0;
    for (int i = 0; i < s->nlinks; i++)
        n += s->links[i]->npending;
    return n;
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
    link *l = s->links[0];
    if (l->state != ST_UP || l->npending)
        return hgf_err_set(err, HGF_EINPUT, "database (%s): script needs an idle connection",
                           s->where);
    if (!PQexitPipelineMode(l->conn) || PQsetnonblocking(l->conn, 0))
        return hgf_err_set(err, HGF_EDB, "database (%s): cannot leave pipeline mode", s->where);
    PGresult *r = PQexec(l->conn, script);
    int rc = r ? hgf_store_check(r, err)
               : hgf_err_set(err, HGF_EDB, "database (%s): %s", s->where, PQerrorMessage(l->conn));
    PQclear(r);
    if (rc) {
        PGresult *rb = PQexec(l->conn, "ROLLBACK");
        PQclear(rb);
    }
    /* The server re-plans statements a script changed the tables of, but
     * keeps the parameter types they were prepared with: start afresh. */
    if (l->preps) {
        PGresult *d = PQexec(l->conn, "DEALLOCATE ALL");
        PQclear(d);
        prep_reset(l);
    }
    PQsetNoticeProcessor(l->conn, on_notice, NULL);
    if (PQsetnonblocking(l->conn, 1) || !PQenterPipelineMode(l->conn)) {
        mark_broken(l);
        return hgf_err_set(err, HGF_EDB, "database (%s): cannot re-enter pipeline mode", s->where);
    }
    return rc;
}
