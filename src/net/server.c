#include "hgfleet/server.h"
#include "hgfleet/buf.h"
#include "hgfleet/log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ev.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_MAX_BODY (256 * 1024)
#define DEFAULT_MAX_CONNECTIONS 512
#define DEFAULT_TIMEOUT_S 30
#define DEFAULT_REQUEST_TIMEOUT_S 10
/* MHD's memory pool per connection: the request line and headers must fit
 * (with the read buffer), else MHD answers 431 or 414 itself. */
#define CONNECTION_MEMORY (32 * 1024)
/* Without an MHD deadline we still wake now and then, as a safety net. */
#define IDLE_WAKE_S 5.0

/* One open connection and when its current request must have arrived.
 * MHD's own timeout counts idle time only, which a client sending a byte a
 * second never reaches (slow loris); this deadline counts from the moment
 * the server starts waiting for a request. */
typedef struct conn_watch {
    struct conn_watch *prev, *next;
    struct MHD_Connection *conn;
    double deadline;  /* ev_now() time; 0 while the request is being handled */
} conn_watch;

struct hgf_server {
    struct ev_loop *loop;
    struct MHD_Daemon *d;
    ev_io io;
    ev_timer timer;
    hgf_server_opts o;
    conn_watch *watched;  /* every open connection */
    char address[128];
};

struct hgf_server_req {
    hgf_server *s;
    struct MHD_Connection *conn;
    char *method, *path;
    const hgf_route *route;   /* the route that matched, once dispatched */
    hgf_buf body;
    int too_large;
    int in_handler;       /* the handler is running: its reply is queued on return */
    int want_suspend;
    int suspended;
    struct MHD_Response *response;
    unsigned status;
};

/* ---- driving MHD from the loop -------------------------------------- */

static void arm_timer(hgf_server *s, double after)
{
    ev_timer_stop(s->loop, &s->timer);
    ev_timer_set(&s->timer, after, 0.);
    ev_timer_start(s->loop, &s->timer);
}

/* Shutting the socket down makes MHD read end-of-file and close the
 * connection itself, with its usual clean-up, on the MHD_run that follows. */
static void close_late(hgf_server *s, double now)
{
    unsigned closed = 0;
    for (conn_watch *w = s->watched; w; w = w->next) {
        if (!w->deadline || w->deadline > now)
            continue;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(w->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci)
            shutdown(ci->connect_fd, SHUT_RDWR);
        w->deadline = 0;
        closed++;
    }
    if (closed)
        hgf_log_info("http.slow_clients_closed",
                     "closed %u connection(s) that sent no whole request within %u s", closed,
                     s->o.request_timeout_s);
}

static double next_deadline(const hgf_server *s)
{
    double next = 0;
    for (const conn_watch *w = s->watched; w; w = w->next)
        if (w->deadline && (!next || w->deadline < next))
            next = w->deadline;
    return next;
}

static void run_mhd(hgf_server *s)
{
    close_late(s, ev_now(s->loop));
    MHD_run(s->d);
    MHD_UNSIGNED_LONG_LONG ms;
    double after = IDLE_WAKE_S, next = next_deadline(s);
    if (MHD_get_timeout(s->d, &ms) == MHD_YES && ms / 1000.0 < after)
        after = ms / 1000.0;
    if (next && next - ev_now(s->loop) < after)
        after = next > ev_now(s->loop) ? next - ev_now(s->loop) : 0.;
    arm_timer(s, after);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    run_mhd(w->data);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    run_mhd(w->data);
}

static void on_mhd_log(void *arg, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    hgf_log_warn("http.server", "%s", msg);
}

/* ---- connections ---------------------------------------------------- */

static conn_watch *watch_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* The connection waits for a request (it just opened, or answered one). */
static void await_request(hgf_server *s, struct MHD_Connection *c)
{
    conn_watch *w = watch_of(c);
    if (w)
        w->deadline = ev_now(s->loop) + s->o.request_timeout_s;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    hgf_server *s = cls;
    conn_watch *w = *socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        /* Without memory the connection simply goes unwatched. */
        w = calloc(1, sizeof *w);
        if (!w)
            return;
        w->conn = c;
        w->deadline = ev_now(s->loop) + s->o.request_timeout_s;
        w->next = s->watched;
        if (w->next)
            w->next->prev = w;
        s->watched = w;
        *socket_context = w;
        return;
    }
    if (!w)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        s->watched = w->next;
    if (w->next)
        w->next->prev = w->prev;
    free(w);
    *socket_context = NULL;
}

/* ---- requests ------------------------------------------------------- */

static void free_req(hgf_server_req *req)
{
    if (req->response)
        MHD_destroy_response(req->response);
    hgf_buf_free(&req->body);
    free(req->method);
    free(req->path);
    free(req);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    if (*con_cls)
        free_req(*con_cls);
    *con_cls = NULL;
    await_request(cls, c);
}

static enum MHD_Result queue_reply(hgf_server_req *req)
{
    struct MHD_Response *r = req->response;
    req->response = NULL;
    enum MHD_Result ok = MHD_queue_response(req->conn, req->status, r);
    MHD_destroy_response(r);
    return ok;
}

static int route_matches(const hgf_route *r, const char *path)
{
    size_t n = strlen(r->path);
    int prefix = n && r->path[n - 1] == '/';
    return prefix ? !strncmp(path, r->path, n) : !strcmp(path, r->path);
}

/* The Allow header of a 405: the methods the path has (HEAD with GET). */
static void allowed_methods(const hgf_server *s, const char *path, hgf_buf *out)
{
    for (int i = 0; i < s->o.n_routes; i++) {
        const hgf_route *r = &s->o.routes[i];
        if (!route_matches(r, path) || strstr(hgf_buf_str(out), r->method))
            continue;
        hgf_buf_printf(out, "%s%s%s", out->len ? ", " : "", r->method,
                       strcmp(r->method, "GET") ? "" : ", HEAD");
    }
}

static const hgf_route *find_route(const hgf_server *s, const char *method, const char *path,
                                   int *path_known)
{
    *path_known = 0;
    for (int i = 0; i < s->o.n_routes; i++) {
        const hgf_route *r = &s->o.routes[i];
        if (!route_matches(r, path))
            continue;
        *path_known = 1;
        /* MHD leaves the body out of a HEAD reply itself. */
        if (!strcmp(method, r->method) || (!strcmp(method, "HEAD") && !strcmp(r->method, "GET")))
            return r;
    }
    return NULL;
}

static void dispatch(hgf_server_req *req)
{
    hgf_server *s = req->s;
    if (req->too_large) {
        char msg[96];
        snprintf(msg, sizeof msg, "request body is larger than %zu bytes", s->o.max_body);
        hgf_server_reply_error(req, 413, msg);
        return;
    }
    int known;
    const hgf_route *r = find_route(s, req->method, req->path, &known);
    if (!r) {
        char msg[300];
        snprintf(msg, sizeof msg,
                 known ? "method %s is not allowed on %.200s" : "no route for %s %.200s",
                 req->method, req->path);
        hgf_server_reply_error(req, known ? 405 : 404, msg);
        if (known) {
            hgf_buf allow = HGF_BUF_INIT;
            allowed_methods(s, req->path, &allow);
            hgf_server_reply_header(req, "Allow", hgf_buf_str(&allow));
            hgf_buf_free(&allow);
        }
        return;
    }
    req->route = r;
    req->in_handler = 1;
    r->fn(req, s->o.arg);
    req->in_handler = 0;
}

static hgf_server_req *new_req(hgf_server *s, struct MHD_Connection *c, const char *url,
                               const char *method)
{
    hgf_server_req *req = calloc(1, sizeof *req);
    if (!req)
        return NULL;
    req->s = s;
    req->conn = c;
    req->method = strdup(method);
    req->path = strdup(url);
    if (!req->method || !req->path) {
        free_req(req);
        return NULL;
    }
    return req;
}

static enum MHD_Result on_upload(hgf_server_req *req, const char *data, size_t *size)
{
    if (!req->too_large && req->body.len + *size > req->s->o.max_body)
        req->too_large = 1;
    if (!req->too_large && hgf_buf_append(&req->body, data, *size))
        return MHD_NO;
    *size = 0;
    return MHD_YES;
}

/* Only a client waiting for "100 Continue" can take a 413 before its body:
 * others are already sending it, and would see the connection reset instead
 * of the answer, so their bodies are read and dropped (within the request
 * deadline) and answered 413 at the end. */
static int refuse_before_body(const hgf_server_req *req)
{
    const char *expect = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Expect");
    const char *v = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Content-Length");
    if (!v || !expect || strcasecmp(expect, "100-continue"))
        return 0;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    return *v && !*end && (errno == ERANGE || n > req->s->o.max_body);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    hgf_server *s = cls;
    hgf_server_req *req = *con_cls;
    if (!req) {
        *con_cls = req = new_req(s, c, url, method);
        if (!req || !refuse_before_body(req))
            return req ? MHD_YES : MHD_NO;
        /* Answered instead of "100 Continue"; MHD then closes the connection. */
        req->too_large = 1;
    } else if (*upload_data_size) {
        return on_upload(req, upload_data, upload_data_size);
    }
    if (!req->response && !req->suspended) {
        conn_watch *w = watch_of(c);
        if (w) /* the whole request is here: the handler's time is not the client's */
            w->deadline = 0;
        dispatch(req);
    }
    if (req->response)
        return queue_reply(req);
    if (req->want_suspend) {
        req->want_suspend = 0;
        req->suspended = 1;
        MHD_suspend_connection(c);
        return MHD_YES;
    }
    hgf_log_error("http.no_reply", "handler for %s %s neither replied nor suspended", req->method,
                  req->path);
    return MHD_NO;
}

/* ---- replying ------------------------------------------------------- */

void hgf_server_suspend(hgf_server_req *req)
{
    req->want_suspend = 1;
}

void hgf_server_reply(hgf_server_req *req, unsigned status, const char *content_type,
                      const char *body, size_t len)
{
    if (req->response)
        return; /* answered already */
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)(body ? body : ""), MHD_RESPMEM_MUST_COPY);
    if (!r)
        return;
    MHD_add_response_header(r, "Content-Type", content_type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    req->response = r;
    req->status = status;
    if (req->suspended) {
        req->suspended = 0;
        MHD_resume_connection(req->conn);
        arm_timer(req->s, 0.);
    }
}

void hgf_server_reply_header(hgf_server_req *req, const char *name, const char *value)
{
    if (req->response)
        MHD_add_response_header(req->response, name, value);
}

void hgf_server_reply_json(hgf_server_req *req, unsigned status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        static const char OOM[] = "{\"error\":\"out of memory\"}\n";
        hgf_server_reply(req, 500, "application/json", OOM, sizeof OOM - 1);
        return;
    }
    hgf_buf b = HGF_BUF_INIT;
    hgf_buf_printf(&b, "%s\n", text);
    free(text);
    hgf_server_reply(req, status, "application/json", b.data, b.len);
    hgf_buf_free(&b);
}

void hgf_server_reply_error(hgf_server_req *req, unsigned status, const char *message)
{
    hgf_server_reply_json(req, status, json_pack("{s:s}", "error", message));
}

const char *hgf_server_req_method(const hgf_server_req *req)
{
    return req->method;
}

const char *hgf_server_req_path(const hgf_server_req *req)
{
    return req->path;
}

const char *hgf_server_req_subpath(const hgf_server_req *req)
{
    size_t n = req->route ? strlen(req->route->path) : 0;
    if (!n || req->route->path[n - 1] != '/')
        return NULL;
    return req->path + n;
}

typedef struct query_find {
    const char *name, *value;
    int found;
} query_find;

/* MHD's own lookup ignores case; query parameter names do not. */
static enum MHD_Result find_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value)
{
    query_find *q = cls;
    if (strcmp(key, q->name))
        return MHD_YES;
    q->found = 1;
    q->value = value ? value : "";
    return MHD_NO;
}

const char *hgf_server_req_query(const hgf_server_req *req, const char *name)
{
    query_find q = {.name = name};
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, find_arg, &q);
    return q.found ? q.value : NULL;
}

typedef struct query_scan {
    const char *const *known;
    int seen[32];         /* how often each known name came */
    const char *unexpected;
} query_scan;

static enum MHD_Result scan_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value)
{
    query_scan *q = cls;
    int i = 0;
    while (q->known[i] && strcmp(q->known[i], key))
        i++;
    if (!q->known[i] || i >= 32 || q->seen[i]++) {
        q->unexpected = key;
        return MHD_NO;
    }
    return MHD_YES;
}

const char *hgf_server_req_query_unexpected(const hgf_server_req *req,
                                            const char *const *known)
{
    query_scan q = {.known = known};
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, scan_arg, &q);
    return q.unexpected;
}

const char *hgf_server_req_header(const hgf_server_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *hgf_server_req_body(const hgf_server_req *req, size_t *len)
{
    if (len)
        *len = req->body.len;
    return hgf_buf_str(&req->body);
}

/* ---- listening ------------------------------------------------------ */

static int port_ok(const char *p)
{
    if (!*p || strlen(p) > 5)
        return 0;
    for (const char *c = p; *c; c++)
        if (!isdigit((unsigned char)*c))
            return 0;
    return atoi(p) <= 65535;
}

int hgf_server_parse_listen(const char *listen, char *host, size_t host_n, char *port,
                            size_t port_n, hgf_err *err)
{
    const char *l = listen ? listen : "";
    const char *colon;
    size_t hlen;
    const char *hstart = l;
    if (*l == '[') {
        const char *close = strchr(l, ']');
        if (!close || close[1] != ':')
            return hgf_err_set(err, HGF_EINPUT,
                               "HGFLEET_LISTEN \"%s\": expected [IPv6]:PORT, e.g. [::1]:8080", l);
        hstart = l + 1;
        hlen = (size_t)(close - hstart);
        colon = close + 1;
    } else if ((colon = strrchr(l, ':')) != NULL) {
        if (memchr(l, ':', (size_t)(colon - l)))
            return hgf_err_set(err, HGF_EINPUT,
                               "HGFLEET_LISTEN \"%s\": an IPv6 address needs brackets, e.g. "
                               "[::1]:8080", l);
        hlen = (size_t)(colon - l);
    } else {
        hlen = 0;
        colon = l - 1; /* a bare port */
    }
    if (!port_ok(colon + 1))
        return hgf_err_set(err, HGF_EINPUT,
                           "HGFLEET_LISTEN \"%s\": expected HOST:PORT with a port from 0 to 65535",
                           l);
    if (hlen >= host_n || strlen(colon + 1) >= port_n)
        return hgf_err_set(err, HGF_EINPUT, "HGFLEET_LISTEN \"%s\": too long", l);
    memcpy(host, hstart, hlen);
    host[hlen] = '\0';
    snprintf(port, port_n, "%s", colon + 1);
    return 0;
}

static int bind_one(const struct addrinfo *ai)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, SOMAXCONN)) {
        close(fd);
        return -1;
    }
    return fd;
}

static int open_listener(const char *listen, int *v6, hgf_err *err)
{
    char host[256], port[16];
    int rc = hgf_server_parse_listen(listen, host, sizeof host, port, sizeof port, err);
    if (rc)
        return rc;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(*host ? host : "0.0.0.0", port, &hints, &res);
    if (gai)
        return hgf_err_set(err, HGF_EINPUT, "HGFLEET_LISTEN \"%s\": %s", listen, gai_strerror(gai));
    int fd = -1;
    char why[128] = "no address";
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = bind_one(ai);
        if (fd < 0)
            snprintf(why, sizeof why, "%s", strerror(errno));
        else
            *v6 = ai->ai_family == AF_INET6;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return hgf_err_set(err, HGF_EFAIL, "HGFLEET_LISTEN \"%s\": cannot listen: %s", listen, why);
    return fd;
}

static void describe_bound(int fd, char *out, size_t n)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
            port = ntohs(a->sin6_port);
            snprintf(out, n, "[%s]:%u", ip, port);
            return;
        }
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        port = ntohs(a->sin_port);
    }
    snprintf(out, n, "%s:%u", ip, port);
}

static int start_daemon(hgf_server *s, int fd, int v6, hgf_err *err)
{
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (v6)
        flags |= MHD_USE_IPv6;
    /* The logger goes first, or MHD logs its option parsing to stderr itself. */
    s->d = MHD_start_daemon(flags, 0, NULL, NULL, on_access, s, MHD_OPTION_EXTERNAL_LOGGER,
                            on_mhd_log, s, MHD_OPTION_LISTEN_SOCKET, fd,
                            MHD_OPTION_CONNECTION_LIMIT, s->o.max_connections,
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT, s->o.max_connections_per_ip,
                            MHD_OPTION_CONNECTION_TIMEOUT, s->o.timeout_s,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY,
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
    if (!s->d)
        return hgf_err_set(err, HGF_EFAIL, "HGFLEET_LISTEN \"%s\": the HTTP server did not start",
                           s->o.listen);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_EPOLL_FD);
    if (!info) {
        MHD_stop_daemon(s->d);
        return hgf_err_set(err, HGF_EFAIL, "the HTTP server has no epoll descriptor");
    }
    ev_io_init(&s->io, on_io, info->epoll_fd, EV_READ);
    ev_init(&s->timer, on_timer);
    s->io.data = s->timer.data = s;
    ev_io_start(s->loop, &s->io);
    arm_timer(s, 0.);
    return 0;
}

hgf_server *hgf_server_start(struct ev_loop *loop, const hgf_server_opts *o, hgf_err *err)
{
    hgf_server *s = calloc(1, sizeof *s);
    if (!s) {
        hgf_err_set(err, HGF_ENOMEM, "out of memory");
        return NULL;
    }
    s->loop = loop;
    s->o = *o;
    if (!s->o.max_body)
        s->o.max_body = DEFAULT_MAX_BODY;
    if (!s->o.max_connections)
        s->o.max_connections = DEFAULT_MAX_CONNECTIONS;
    if (!s->o.timeout_s)
        s->o.timeout_s = DEFAULT_TIMEOUT_S;
    if (!s->o.request_timeout_s)
        s->o.request_timeout_s = DEFAULT_REQUEST_TIMEOUT_S;
    /* One address (a load balancer's, say) may use a quarter of them. */
    if (!s->o.max_connections_per_ip)
        s->o.max_connections_per_ip = (s->o.max_connections + 3) / 4;
    int v6 = 0;
    int fd = open_listener(o->listen, &v6, err);
    if (fd < 0) {
        free(s);
        return NULL;
    }
    describe_bound(fd, s->address, sizeof s->address);
    if (start_daemon(s, fd, v6, err)) {
        close(fd);
        free(s);
        return NULL;
    }
    return s;
}

void hgf_server_stop(hgf_server *s)
{
    if (!s)
        return;
    ev_io_stop(s->loop, &s->io);
    ev_timer_stop(s->loop, &s->timer);
    MHD_stop_daemon(s->d);
    free(s);
}

const char *hgf_server_address(const hgf_server *s)
{
    return s->address;
}
