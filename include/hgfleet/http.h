/* Asynchronous HTTP client: libcurl's multi_socket interface on a libev loop
 * (the evhiperfifo pattern).
 *
 * One hgf_http per process loop. It keeps connections alive (curl's shared
 * connection cache), and bounds requests in flight in total and per
 * `limit_key` (a registry, never an endpoint host: a simulator serves every
 * registry from one host). Requests beyond a bound wait in FIFO order.
 *
 * Ownership: hgf_http_new returns an object the caller frees with
 * hgf_http_free. hgf_http_send copies everything in the request (URL,
 * headers, body), so the caller may free them on return. The response passed
 * to the callback, and every pointer in it, is valid only during the callback. */
#ifndef HGF_HTTP_H
#define HGF_HTTP_H

#include <stddef.h>

#include "hgfleet/err.h"

struct ev_loop;

typedef struct hgf_http hgf_http;

typedef struct hgf_http_opts {
    int max_total;            /* requests in flight in total; 0 = 256 */
    int max_per_key;          /* in flight per limit_key; 0 = 4 */
    long connect_timeout_ms;  /* 0 = 5000 */
    long timeout_ms;          /* whole transfer; 0 = 30000 */
    const char *ca_bundle;    /* CA file (AWS_CA_BUNDLE) or NULL for the system's */
    const char *user_agent;   /* NULL = "hgfleet/<version>" */
} hgf_http_opts;

typedef struct hgf_http_req {
    const char *method;           /* "GET", "HEAD", "POST", "PUT", "DELETE" */
    const char *url;
    const char *const *headers;   /* "Name: value" strings, NULL-terminated, or NULL */
    const void *body;             /* NULL or body_len bytes */
    size_t body_len;
    const char *limit_key;        /* concurrency group, or NULL for none */
    long timeout_ms;              /* 0 = the client's default */
    size_t max_body;              /* cap on the response body kept; 0 = 64 MiB. A longer
                                   * body is cut there, the transfer stops and the
                                   * response reports body_truncated = 1 */
    int follow_redirects;         /* 0 (default): a 3xx is the response. 1: follow up to
                                   * 5; Authorization never goes to another host, and an
                                   * https request is never redirected to http */
} hgf_http_req;

typedef struct hgf_http_resp {
    long status;                  /* HTTP status; 0 when the transfer failed */
    int transport_error;          /* CURLcode; 0 when a response arrived */
    const char *error;            /* curl's message when transport_error != 0, else "" */
    const char *body;             /* NUL-terminated; "" for none */
    size_t body_len;
    double total_seconds;         /* curl's total time */
    double queued_seconds;        /* time waiting for a concurrency slot */
    int body_truncated;           /* 1 if max_body was hit */
    const void *priv;             /* internal: header lookup */
} hgf_http_resp;

typedef void (*hgf_http_cb)(const hgf_http_resp *resp, void *arg);

hgf_http *hgf_http_new(struct ev_loop *loop, const hgf_http_opts *opts, hgf_err *err);
/* Cancels every queued and running request without calling their callbacks. */
void hgf_http_free(hgf_http *h);

/* Ends every request now, queued or in flight (and those their callbacks
 * send meanwhile): each callback runs once, from inside this call, with
 * transport_error CURLE_ABORTED_BY_CALLBACK, so whoever sent it releases
 * what it holds for the request. Unlike hgf_http_free, nothing is dropped
 * unheard; call it while the callers' state is still alive. */
void hgf_http_cancel_all(hgf_http *h);

/* Queues a request. The callback runs exactly once, from the loop, never from
 * inside hgf_http_send. Returns 0 or HGF_EINPUT/HGF_ENOMEM (then the callback
 * never runs). A body is only allowed with methods other than GET and HEAD.
 * Callbacks may call hgf_http_send, and hgf_http_free (then no further
 * callback runs and the client is released once the callback returns). */
int hgf_http_send(hgf_http *h, const hgf_http_req *req, hgf_http_cb cb, void *arg, hgf_err *err);

/* For a TLS trust failure (the peer's certificate refused: wrong
 * AWS_CA_BUNDLE, TLS interception; or an unusable CA bundle or certificate
 * file): a static sentence naming AWS_CA_BUNDLE, which is the CA bundle of
 * every request this client makes, for error messages. NULL for every other
 * CURLcode. Such failures are configuration errors: retrying them only
 * delays the error. */
const char *hgf_http_tls_hint(int transport_error);
/* The same sentence after ": ", or "" for any other CURLcode: for appending
 * to an error message. Static. */
const char *hgf_http_tls_suffix(int transport_error);
/* 1 for a failure of the client's own making (malformed URL, out of memory,
 * a request ended by hgf_http_cancel_all, ...), which a retry cannot fix. */
int hgf_http_error_is_local(int transport_error);

/* A response header's value (case-insensitive name, last occurrence wins),
 * or NULL. Valid during the callback only. */
const char *hgf_http_resp_header(const hgf_http_resp *resp, const char *name);

/* started = completed + failed + in_flight; completed counts requests that got
 * an HTTP response (any status), failed those that ended in a transport error. */
typedef struct hgf_http_stats {
    unsigned long started, completed, failed;  /* failed = transport errors */
    unsigned long connections_opened;          /* new TCP connections (reuse shows here) */
    int in_flight, queued;
} hgf_http_stats;
void hgf_http_get_stats(const hgf_http *h, hgf_http_stats *out);

#endif
