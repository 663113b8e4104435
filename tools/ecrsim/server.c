#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/crypto.h>

#include "simhttp.h"

#define STREAM_BLOCK (64 * 1024)
#define CONNECTION_TIMEOUT_S 60

struct hgf_sim_server {
    hgf_sim_services svc;
    struct MHD_Daemon *daemon;
    int fd;  /* the listening socket until libmicrohttpd owns it */
    uint16_t port;
    char *tls_cert, *tls_key;  /* PEM text, or NULL for plain HTTP */
};

/* Per-request state, created by the URI log callback (which sees the raw,
 * still-encoded URI that SigV4 signs) and freed when the request completes. */
typedef struct request_state {
    char *uri;
    hgf_buf body;
    int started;
    int too_large;
    struct timespec t0;
} request_state;

typedef struct header_vec {
    hgf_sigv4_header *h;
    size_t n, cap;
    int oom;
} header_vec;

/* ---- libmicrohttpd callbacks ------------------------------------------- */

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    request_state *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->uri = strdup(uri ? uri : "/");
    hgf_buf_init(&st->body);
    clock_gettime(CLOCK_MONOTONIC, &st->t0);
    if (!st->uri) {
        free(st);
        return NULL;
    }
    return st;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    request_state *st = *req_cls;
    if (!st)
        return;
    free(st->uri);
    hgf_buf_free(&st->body);
    free(st);
    *req_cls = NULL;
}

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    header_vec *v = cls;
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        hgf_sigv4_header *h = realloc(v->h, cap * sizeof *h);
        if (!h) {
            v->oom = 1;
            return MHD_NO;
        }
        v->h = h;
        v->cap = cap;
    }
    v->h[v->n].name = key;
    v->h[v->n].value = value ? value : "";
    v->n++;
    return MHD_YES;
}

/* ---- responses --------------------------------------------------------- */

typedef struct stream_state {
    hgf_sim_stream_fn next;
    void *ctx;
    void (*ctx_free)(void *ctx);
    hgf_buf pending;
    size_t off;
} stream_state;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    stream_state *st = cls;
    while (st->off == st->pending.len) {
        hgf_buf_reset(&st->pending);
        st->off = 0;
        int rc = st->next(st->ctx, &st->pending);
        if (rc == 0)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (rc < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = st->pending.len - st->off;
    n = n < max ? n : max;
    memcpy(buf, st->pending.data + st->off, n);
    st->off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    stream_state *st = cls;
    if (st->ctx_free)
        st->ctx_free(st->ctx);
    hgf_buf_free(&st->pending);
    free(st);
}

/* The stream context moves from resp into the MHD response. */
static struct MHD_Response *make_stream(hgf_sim_resp *resp)
{
    stream_state *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->next = resp->stream;
    st->ctx = resp->stream_ctx;
    st->ctx_free = resp->stream_free;
    hgf_buf_init(&st->pending);
    resp->stream = NULL;
    resp->stream_ctx = NULL;
    resp->stream_free = NULL;
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, stream_read, st,
                                          stream_free);
    if (!r)
        stream_free(st);
    return r;
}

static struct MHD_Response *make_response(hgf_sim_resp *resp)
{
    if (resp->stream)
        return make_stream(resp);
    size_t len = resp->body.len;
    char *data = hgf_buf_detach(&resp->body);
    if (!data)
        return NULL;
    struct MHD_Response *r = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (!r)
        free(data);
    return r;
}

/* RFC 7231's IMF-fixdate, from the simulator's clock: clients detect skew
 * from it. */
static void http_date(time_t t, char out[64])
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, 64, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static enum MHD_Result send_response(hgf_sim_server *s, struct MHD_Connection *c,
                                     hgf_sim_resp *resp)
{
    struct MHD_Response *r = make_response(resp);
    if (!r)
        return MHD_NO;
    char date[64];
    http_date(hgf_sim_faults_now(s->svc.faults), date);
    MHD_add_response_header(r, "Date", date);
    if (resp->content_type)
        MHD_add_response_header(r, "Content-Type", resp->content_type);
    MHD_add_response_header(r, "x-amzn-RequestId", resp->request_id);
    if (resp->error_code[0] && !resp->quiet)
        MHD_add_response_header(r, "x-amzn-ErrorType", resp->error_code);
    for (size_t i = 0; i < resp->n_headers; i++)
        MHD_add_response_header(r, resp->headers[i].name, resp->headers[i].value);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)resp->status, r);
    MHD_destroy_response(r);
    return ok;
}

static double elapsed_ms(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* One fputs per line keeps concurrent lines whole. */
static void log_line(const hgf_sim_req *req, const hgf_sim_resp *resp,
                     const hgf_sim_outcome *o, const struct timespec *t0)
{
    char line[1024], status[16];
    /* A presigned blob URL is a bearer credential: its token stays out. */
    int blob = strncmp(req->path, HGF_SIM_BLOB_PREFIX, strlen(HGF_SIM_BLOB_PREFIX)) == 0;
    snprintf(status, sizeof status, "%d", resp->status);
    snprintf(line, sizeof line, "ecrsim: %s %.200s %s -> %s %s%s%s%s%s (%.1f ms)%s%s\n",
             req->method, blob ? HGF_SIM_BLOB_PREFIX "(token)" : req->path, o->op, resp->drop ? "(dropped)" : status,
             resp->drop ? "dropped" : resp->error_code[0] ? resp->error_code : "ok",
             o->akid[0] ? " key=" : "", o->akid, o->region[0] ? " region=" : "", o->region,
             elapsed_ms(t0), o->why[0] ? ": " : "", o->why);
    fputs(line, stderr);
}

static enum MHD_Result finish(hgf_sim_server *s, struct MHD_Connection *c, const char *method,
                              request_state *st)
{
    header_vec hv = {0};
    MHD_get_connection_values(c, MHD_HEADER_KIND, collect_header, &hv);
    char *q = strchr(st->uri, '?');
    if (q)
        *q++ = '\0';
    hgf_sim_req req = {
        .method = method, .path = st->uri, .query = q, .headers = hv.h, .n_headers = hv.n,
        .body = hgf_buf_str(&st->body), .body_len = st->body.len,
    };
    hgf_sim_resp resp;
    hgf_sim_resp_init(&resp);
    hgf_sim_outcome o;
    memset(&o, 0, sizeof o);
    if (hv.oom) {
        hgf_err err;
        hgf_sim_awserr(&err, "ServerException", "ecrsim: out of memory");
        hgf_sim_resp_aws_error(&resp, &err);
    } else {
        hgf_sim_dispatch(&s->svc, &req, st->too_large, &resp, &o);
    }
    log_line(&req, &resp, &o, &st->t0);
    /* MHD_NO closes the connection without writing anything. */
    enum MHD_Result ok = resp.drop ? MHD_NO : send_response(s, c, &resp);
    hgf_sim_resp_free(&resp);
    free(hv.h);
    return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    request_state *st = *req_cls;
    if (!st)
        return MHD_NO;
    if (!st->started) {
        st->started = 1;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (st->body.len + *upload_data_size > HGF_SIM_MAX_BODY ||
            hgf_buf_append(&st->body, upload_data, *upload_data_size) != 0)
            st->too_large = 1;
        *upload_data_size = 0;
        return MHD_YES;
    }
    return finish(cls, c, method, st);
}

/* ---- lifecycle --------------------------------------------------------- */

int hgf_sim_server_bind(const struct sockaddr_in *addr, hgf_sim_server **out, hgf_err *err)
{
    hgf_sim_server *s = calloc(1, sizeof *s);
    if (!s)
        return hgf_err_set(err, HGF_ENOMEM, "server: out of memory");
    int one = 1;
    struct sockaddr_in bound;
    socklen_t len = sizeof bound;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s->fd < 0 || setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(s->fd, (const struct sockaddr *)addr, sizeof *addr) != 0 ||
        listen(s->fd, SOMAXCONN) != 0 ||
        getsockname(s->fd, (struct sockaddr *)&bound, &len) != 0) {
        if (s->fd >= 0)
            close(s->fd);
        free(s);
        return hgf_err_set(err, HGF_EFAIL, "--listen: cannot listen on port %u (in use?)",
                           (unsigned)ntohs(addr->sin_port));
    }
    s->port = ntohs(bound.sin_port);
    *out = s;
    return 0;
}

uint16_t hgf_sim_server_port(const hgf_sim_server *s)
{
    return s->port;
}

static char *read_pem(const char *path, const char *flag, hgf_err *err)
{
    FILE *f = fopen(path, "r");
    hgf_buf b = HGF_BUF_INIT;
    char chunk[4096];
    size_t n;
    while (f && (n = fread(chunk, 1, sizeof chunk, f)) > 0 && b.len < (1u << 20))
        hgf_buf_append(&b, chunk, n);
    int bad = !f || ferror(f) || !strstr(hgf_buf_str(&b), "-----BEGIN ");
    if (f)
        fclose(f);
    if (bad) {
        hgf_buf_free(&b);
        hgf_err_set(err, HGF_EINPUT, "%s: cannot read a PEM file from \"%.200s\"", flag, path);
        return NULL;
    }
    return hgf_buf_detach(&b);
}

int hgf_sim_server_set_tls(hgf_sim_server *s, const char *cert_file, const char *key_file,
                           hgf_err *err)
{
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
        return hgf_err_set(err, HGF_EFAIL, "--tls-cert: this libmicrohttpd has no TLS support");
    s->tls_cert = read_pem(cert_file, "--tls-cert", err);
    s->tls_key = s->tls_cert ? read_pem(key_file, "--tls-key", err) : NULL;
    return s->tls_key ? 0 : HGF_EINPUT;
}

const char *hgf_sim_server_scheme(const hgf_sim_server *s)
{
    return s->tls_key ? "https" : "http";
}

int hgf_sim_server_start(hgf_sim_server *s, const hgf_sim_services *svc, hgf_err *err)
{
    s->svc = *svc;
    /* The Date header comes from the simulator's clock, not libmicrohttpd's. */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG | MHD_USE_SUPPRESS_DATE_NO_CLOCK;
    int tls = s->tls_key != NULL;
    struct MHD_OptionItem tls_opts[] = {{MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert},
                                        {MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key},
                                        {MHD_OPTION_END, 0, NULL}};
    s->daemon = MHD_start_daemon(flags | (tls ? MHD_USE_TLS : 0), 0, NULL, NULL, on_request, s,
                                 MHD_OPTION_LISTEN_SOCKET, s->fd, MHD_OPTION_URI_LOG_CALLBACK,
                                 on_uri, s, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONNECTION_TIMEOUT_S,
                                 MHD_OPTION_ARRAY, tls ? tls_opts : tls_opts + 2, MHD_OPTION_END);
    if (!s->daemon)
        return hgf_err_set(err, HGF_EFAIL, "server: libmicrohttpd did not start on port %u%s",
                           (unsigned)s->port,
                           tls ? " (does --tls-key hold the private key of --tls-cert?)" : "");
    s->fd = -1;
    return 0;
}

void hgf_sim_server_stop(hgf_sim_server *s)
{
    if (!s)
        return;
    if (s->daemon)
        MHD_stop_daemon(s->daemon);
    if (s->fd >= 0)
        close(s->fd);
    free(s->tls_cert);
    if (s->tls_key)
        OPENSSL_cleanse(s->tls_key, strlen(s->tls_key));
    free(s->tls_key);
    free(s);
}
