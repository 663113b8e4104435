/* The HTTP server: libmicrohttpd driven by the process's libev loop (no MHD
 * thread). MHD runs in external epoll mode; an ev_io watches its epoll fd and
 * an ev_timer follows MHD_get_timeout.
 *
 * Routes are a table of (method, path, handler). A handler either replies at
 * once, or calls hgf_server_suspend and replies later from any loop callback
 * (say, when a store query completes): the connection is suspended
 * (MHD_suspend_connection) meanwhile and resumed by the reply. A request is
 * answered exactly once; after replying, the handler must not touch req.
 * Unknown paths get 404, a known path with another method 405, bodies over
 * max_body 413, all as JSON. Request line and headers must fit in 32 KiB
 * (MHD answers 431 or 414 itself).
 *
 * Ownership: hgf_server_start returns a server the caller stops with
 * hgf_server_stop. Strings a request returns are owned by the request and
 * valid until it is answered. The route table and its arg are borrowed for
 * the server's lifetime. */
#ifndef HGF_SERVER_H
#define HGF_SERVER_H

#include <jansson.h>
#include <stddef.h>

#include "hgfleet/err.h"

struct ev_loop;

typedef struct hgf_server hgf_server;
typedef struct hgf_server_req hgf_server_req;

typedef void (*hgf_route_fn)(hgf_server_req *req, void *arg);

typedef struct hgf_route {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* exact match; a path ending in '/' matches every path under it */
    hgf_route_fn fn;
} hgf_route;

typedef struct hgf_server_opts {
    const char *listen;         /* host:port, :port, [v6]:port or port; port 0 = ephemeral */
    const hgf_route *routes;
    int n_routes;
    void *arg;                  /* passed to every handler */
    size_t max_body;            /* 0 = 256 KiB; a larger Content-Length with "Expect:
                                   100-continue" gets 413 before the body is sent */
    unsigned max_connections;   /* 0 = 512; more are accepted and closed at once */
    unsigned max_connections_per_ip; /* 0 = a quarter of max_connections */
    unsigned timeout_s;         /* idle connection timeout; 0 = 30 */
    unsigned request_timeout_s; /* a whole request (headers and body) must arrive within
                                   this many seconds of the connection opening or of
                                   the previous response, however steadily it trickles
                                   in (slow loris); then the connection is closed.
                                   0 = 10 */
} hgf_server_opts;

/* Binds and starts serving on the loop. HGF_EINPUT names a bad listen
 * address; HGF_EFAIL says why binding failed (address in use...). */
hgf_server *hgf_server_start(struct ev_loop *loop, const hgf_server_opts *o, hgf_err *err);
/* Closes the listener and every connection. Suspended requests must have been
 * answered first (their handlers' pending work completed). */
void hgf_server_stop(hgf_server *s);

/* The bound address as "HOST:PORT" ("[::1]:8080" for IPv6), port resolved. */
const char *hgf_server_address(const hgf_server *s);

/* Splits a listen address into host ("" for any, IPv6 without brackets) and
 * port. HGF_EINPUT with a message naming HGFLEET_LISTEN when malformed. */
int hgf_server_parse_listen(const char *listen, char *host, size_t host_n, char *port,
                            size_t port_n, hgf_err *err);

const char *hgf_server_req_method(const hgf_server_req *req);
const char *hgf_server_req_path(const hgf_server_req *req);
/* For a route whose path ends in '/', what follows it ("3/report" for
 * /api/sweeps/3/report under "/api/sweeps/"; "" for the prefix itself).
 * NULL for an exact route. */
const char *hgf_server_req_subpath(const hgf_server_req *req);
/* A query parameter (URL-decoded; the name matched case-sensitively), or
 * NULL when absent; "" for "?name" or "?name=". With a repeated name, the
 * first value. */
const char *hgf_server_req_query(const hgf_server_req *req, const char *name);
/* The first query parameter that is not in `known` (NULL-terminated) or is
 * given twice, or NULL when every one is known and given once. */
const char *hgf_server_req_query_unexpected(const hgf_server_req *req,
                                            const char *const *known);
/* A request header (case-insensitive), or NULL. */
const char *hgf_server_req_header(const hgf_server_req *req, const char *name);
/* The request body (NUL-terminated; "" when none). */
const char *hgf_server_req_body(const hgf_server_req *req, size_t *len);

/* Tells the server the reply comes later. Only from inside the handler. */
void hgf_server_suspend(hgf_server_req *req);
/* Answers with a copy of body. */
void hgf_server_reply(hgf_server_req *req, unsigned status, const char *content_type,
                      const char *body, size_t len);
/* Adds a header to the reply just made (before the handler or the callback
 * that made it returns); nothing when there is none. */
void hgf_server_reply_header(hgf_server_req *req, const char *name, const char *value);
/* Answers with body as compact JSON; steals the reference. */
void hgf_server_reply_json(hgf_server_req *req, unsigned status, json_t *body);
/* {"error": message} with the status. */
void hgf_server_reply_error(hgf_server_req *req, unsigned status, const char *message);

#endif
