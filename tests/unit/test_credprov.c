/* The credential chain and manager over real HTTP: a libmicrohttpd server
 * in this process plays STS (Query/XML, verifying SigV4), IMDSv2, the
 * container credentials endpoint and ECR GetAuthorizationToken (JSON 1.1),
 * issuing short-lived credentials; the real chain and manager run on an ev
 * loop against it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <ev.h>
#include <fcntl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "hgfleet/awsctl.h"
#include "hgfleet/buf.h"
#include "hgfleet/credprov.h"
#include "hgfleet/http.h"
#include "hgfleet/log.h"
#include "hgfleet/metrics.h"
#include "hgfleet/sigv4.h"
#include "hgfleet/timeutil.h"

#define STATIC_AKID "AKIAIOSFODNN7EXAMPLE"
#define STATIC_SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
#define ROLE "arn:aws:iam::123456789012:role/hgfleet-reader"
#define HUB "arn:aws:iam::111111111111:role/hub"
#define REGISTRY "123456789012"
#define IMDS_TOKEN "imds-session-token-AQAEAEXAMPLE=="
#define SECRET_MARK "sts-secret-"
#define TOKEN_MARK "sts-token-"
#define MAX_ISSUED 128
#define MAX_HDRS 48

/* ------------------------------------------------------------------ */
/* the server                                                          */

enum sts_mode { STS_OK, STS_DENIED, STS_HTML_503, STS_BAD_WEB_TOKEN };

typedef struct issued {
    char akid[32], secret[64], token[64];
    char action[40], role[128], external_id[128], session[80], duration[16];
    char signer[32]; /* key id that signed the request; "" if unsigned */
    char web_token[128];
    double at; /* when the request arrived */
    time_t exp;
} issued;

struct srv {
    struct MHD_Daemon *d;
    unsigned short port;
    pthread_mutex_t mu;
    atomic_int stopping;
    /* behaviour */
    int sts_life, sts_delay_ms;
    enum sts_mode sts_mode;
    double ecr_life;
    int imds_put_status, imds_no_role;
    char container_token[128];
    /* what happened */
    issued iss[MAX_ISSUED]; /* [0] is the static key */
    int n_iss;
    int sts_calls, sts_failed, sig_failures, sts_in_flight, sts_max_in_flight;
    int imds_puts, imds_lists, imds_creds, imds_unauthorized;
    int container_gets;
    char container_auth[256];
    int ecr_calls;
    char ecr_body[256], ecr_signer[32];
};

struct reqctx {
    hgf_buf body;
};

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void nap(struct srv *s, long ms)
{
    for (long t = 0; t < ms && !atomic_load(&s->stopping); t += 5) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *ctype,
                             const char *body)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", ctype);
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

static const char *hdr(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

struct hdrs {
    hgf_sigv4_header h[MAX_HDRS];
    size_t n;
};

static enum MHD_Result collect(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *value)
{
    struct hdrs *hs = cls;
    if (hs->n < MAX_HDRS)
        hs->h[hs->n++] = (hgf_sigv4_header){key, value ? value : ""};
    return MHD_YES;
}

static issued *find_key(struct srv *s, const char *akid)
{
    for (int i = 0; i < s->n_iss; i++)
        if (!strcmp(s->iss[i].akid, akid))
            return &s->iss[i];
    return NULL;
}

/* SigV4 as AWS checks it; the signer's key id into signer. Locked. */
static int verify(struct srv *s, struct MHD_Connection *c, const char *url, const hgf_buf *body,
                  char signer[32])
{
    const char *auth = hdr(c, "Authorization");
    hgf_sigv4_auth a;
    hgf_err err;
    if (!auth || hgf_sigv4_parse_authorization(auth, &a, &err))
        return -1;
    issued *k = find_key(s, a.access_key_id);
    if (!k)
        return -1;
    const char *tok = hdr(c, "X-Amz-Security-Token");
    if (k->token[0] ? !tok || strcmp(tok, k->token) : tok != NULL)
        return -1;
    if (k->exp && k->exp <= time(NULL))
        return -1;
    struct hdrs hs = {.n = 0};
    MHD_get_connection_values(c, MHD_HEADER_KIND, collect, &hs);
    hgf_sigv4_request req = {"POST", url, NULL, hs.h, hs.n, body->data, body->len};
    if (hgf_sigv4_verify(&req, &a, k->secret, &err))
        return -1;
    snprintf(signer, 32, "%s", k->akid);
    return 0;
}

static void form_get(const char *body, const char *name, char *out, size_t n)
{
    out[0] = '\0';
    size_t nl = strlen(name);
    for (const char *p = body; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
        if (strncmp(p, name, nl) || p[nl] != '=')
            continue;
        const char *v = p + nl + 1;
        int len = (int)strcspn(v, "&"), outlen = 0;
        char *dec = curl_easy_unescape(NULL, v, len, &outlen);
        snprintf(out, n, "%s", dec ? dec : "");
        curl_free(dec);
    }
}

static const char *sts_error_xml(const char *code, const char *msg, char *buf, size_t n)
{
    snprintf(buf, n,
             "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>"
             "<Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error>"
             "<RequestId>req-err</RequestId></ErrorResponse>",
             code, msg);
    return buf;
}

/* Issues a new session for an STS call. Locked. */
static issued *issue(struct srv *s, const hgf_buf *body, const char *signer)
{
    if (s->n_iss == MAX_ISSUED)
        return NULL;
    int n = s->n_iss;
    issued *k = &s->iss[s->n_iss++];
    memset(k, 0, sizeof *k);
    snprintf(k->akid, sizeof k->akid, "ASIATEST%012d", n);
    snprintf(k->secret, sizeof k->secret, SECRET_MARK "%04d-ABCDEFGHIJKLMNOP", n);
    snprintf(k->token, sizeof k->token, TOKEN_MARK "%04d-QRSTUVWXYZ", n);
    const char *b = hgf_buf_str(body);
    form_get(b, "Action", k->action, sizeof k->action);
    form_get(b, "RoleArn", k->role, sizeof k->role);
    form_get(b, "ExternalId", k->external_id, sizeof k->external_id);
    form_get(b, "RoleSessionName", k->session, sizeof k->session);
    form_get(b, "DurationSeconds", k->duration, sizeof k->duration);
    form_get(b, "WebIdentityToken", k->web_token, sizeof k->web_token);
    snprintf(k->signer, sizeof k->signer, "%s", signer);
    k->at = wall();
    k->exp = time(NULL) + s->sts_life;
    return k;
}

static enum MHD_Result sts_success(struct MHD_Connection *c, const issued *k)
{
    char exp[40], xml[2048];
    hgf_time_format_iso(k->exp, exp, sizeof exp);
    snprintf(xml, sizeof xml,
             "<%sResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
             "  <%sResult>\n"
             "    <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/r/%s</Arn>"
             "<AssumedRoleId>AROATEST:%s</AssumedRoleId></AssumedRoleUser>\n"
             "    <Credentials>\n      <AccessKeyId>%s</AccessKeyId>\n"
             "      <SecretAccessKey>%s</SecretAccessKey>\n"
             "      <SessionToken>%s</SessionToken>\n      <Expiration>%s</Expiration>\n"
             "    </Credentials>\n  </%sResult>\n"
             "  <ResponseMetadata><RequestId>req-%s</RequestId></ResponseMetadata>\n"
             "</%sResponse>\n",
             k->action, k->action, k->session, k->session, k->akid, k->secret, k->token, exp,
             k->action, k->akid, k->action);
    return reply(c, 200, "text/xml", xml);
}

static enum MHD_Result route_sts(struct srv *s, struct MHD_Connection *c, const char *url,
                                 struct reqctx *rc)
{
    char action[40], signer[32] = "", err[512];
    form_get(hgf_buf_str(&rc->body), "Action", action, sizeof action);
    int web = !strcmp(action, "AssumeRoleWithWebIdentity");
    pthread_mutex_lock(&s->mu);
    s->sts_calls++;
    if (++s->sts_in_flight > s->sts_max_in_flight)
        s->sts_max_in_flight = s->sts_in_flight;
    int sig_ok = web ? hdr(c, "Authorization") == NULL : verify(s, c, url, &rc->body, signer) == 0;
    s->sig_failures += !sig_ok;
    enum sts_mode mode = s->sts_mode;
    int delay = s->sts_delay_ms;
    pthread_mutex_unlock(&s->mu);
    nap(s, delay);
    enum MHD_Result ret;
    pthread_mutex_lock(&s->mu);
    s->sts_in_flight--;
    if (!sig_ok) {
        s->sts_failed++;
        ret = reply(c, 403, "text/xml",
                    sts_error_xml("SignatureDoesNotMatch", "bad signature", err, sizeof err));
    } else if (mode == STS_HTML_503) {
        s->sts_failed++;
        ret = reply(c, 503, "text/html", "Service Unavailable");
    } else if (mode == STS_DENIED || (mode == STS_BAD_WEB_TOKEN && web)) {
        s->sts_failed++;
        ret = mode == STS_DENIED
                  ? reply(c, 403, "text/xml",
                          sts_error_xml("AccessDenied",
                                        "User: arn:aws:iam::123456789012:user/x "
                                        "is not authorized to perform: sts:AssumeRole",
                                        err, sizeof err))
                  : reply(c, 400, "text/xml",
                          sts_error_xml("InvalidIdentityToken", "Incorrect token audience", err,
                                        sizeof err));
    } else {
        issued *k = issue(s, &rc->body, signer);
        ret = k ? sts_success(c, k) : reply(c, 500, "text/plain", "full");
    }
    pthread_mutex_unlock(&s->mu);
    return ret;
}

static enum MHD_Result route_ecr(struct srv *s, struct MHD_Connection *c, const char *url,
                                 struct reqctx *rc)
{
    const char *target = hdr(c, "X-Amz-Target");
    char signer[32] = "", body[512];
    pthread_mutex_lock(&s->mu);
    s->ecr_calls++;
    int ok = target &&
             !strcmp(target, "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken") &&
             verify(s, c, url, &rc->body, signer) == 0;
    snprintf(s->ecr_body, sizeof s->ecr_body, "%s", hgf_buf_str(&rc->body));
    snprintf(s->ecr_signer, sizeof s->ecr_signer, "%s", signer);
    snprintf(body, sizeof body,
             "{\"authorizationData\":[{\"authorizationToken\":\"QVdTOmVjci1wYXNzd29yZC0%04d\","
             "\"expiresAt\":%.3f,\"proxyEndpoint\":\"https://" REGISTRY
             ".dkr.ecr.us-east-1.amazonaws.com\"}]}",
             s->ecr_calls, wall() + s->ecr_life);
    pthread_mutex_unlock(&s->mu);
    if (!ok)
        return reply(c, 400, "application/x-amz-json-1.1",
                     "{\"__type\":\"UnrecognizedClientException\",\"message\":\"bad signature\"}");
    return reply(c, 200, "application/x-amz-json-1.1", body);
}

static void creds_json(struct srv *s, const char *prefix, char *out, size_t n)
{
    char exp[40];
    hgf_time_format_iso(time(NULL) + 3600, exp, sizeof exp);
    snprintf(out, n,
             "{\"Code\":\"Success\",\"LastUpdated\":\"2024-01-01T00:00:00Z\",\"Type\":\"AWS-HMAC\","
             "\"AccessKeyId\":\"ASIA%sEXAMPLE1234\",\"SecretAccessKey\":\"" SECRET_MARK "%s\","
             "\"Token\":\"" TOKEN_MARK "%s\",\"Expiration\":\"%s\"}",
             prefix, prefix, prefix, exp);
}

static enum MHD_Result route_imds(struct srv *s, struct MHD_Connection *c, const char *url,
                                  const char *method)
{
    const char *tok = hdr(c, "X-aws-ec2-metadata-token");
    char body[1024];
    pthread_mutex_lock(&s->mu);
    int put_status = s->imds_put_status, no_role = s->imds_no_role;
    if (!strcmp(method, "PUT")) {
        s->imds_puts++;
        pthread_mutex_unlock(&s->mu);
        if (put_status)
            return reply(c, (unsigned)put_status, "text/plain", "forbidden");
        if (!hdr(c, "X-aws-ec2-metadata-token-ttl-seconds"))
            return reply(c, 400, "text/plain", "missing ttl");
        return reply(c, 200, "text/plain", IMDS_TOKEN);
    }
    int authorized = tok && !strcmp(tok, IMDS_TOKEN);
    s->imds_unauthorized += !authorized;
    const char *role = url + strlen("/latest/meta-data/iam/security-credentials/");
    if (authorized && !*role)
        s->imds_lists++;
    else if (authorized)
        s->imds_creds++;
    pthread_mutex_unlock(&s->mu);
    if (!authorized) /* IMDSv2 only: no token, no answer */
        return reply(c, 401, "text/plain", "");
    if (!*role)
        return no_role ? reply(c, 404, "text/plain", "")
                       : reply(c, 200, "text/plain", "test-role\n");
    if (strcmp(role, "test-role"))
        return reply(c, 404, "text/plain", "");
    creds_json(s, "IMDS", body, sizeof body);
    return reply(c, 200, "text/plain", body);
}

static enum MHD_Result route_container(struct srv *s, struct MHD_Connection *c)
{
    const char *auth = hdr(c, "Authorization");
    char body[1024];
    pthread_mutex_lock(&s->mu);
    s->container_gets++;
    snprintf(s->container_auth, sizeof s->container_auth, "%s", auth ? auth : "(none)");
    int ok = !s->container_token[0] || (auth && !strcmp(auth, s->container_token));
    pthread_mutex_unlock(&s->mu);
    if (!ok)
        return reply(c, 401, "application/json", "{\"message\":\"bad token\"}");
    creds_json(s, "CONT", body, sizeof body);
    return reply(c, 200, "application/json", body);
}

static enum MHD_Result route(struct srv *s, struct MHD_Connection *c, const char *url,
                             const char *method, struct reqctx *rc)
{
    if (!strcmp(method, "POST") && !strcmp(url, "/"))
        return hdr(c, "X-Amz-Target") ? route_ecr(s, c, url, rc) : route_sts(s, c, url, rc);
    if (!strncmp(url, "/latest/", 8))
        return route_imds(s, c, url, method);
    if (!strcmp(url, "/container/creds") && !strcmp(method, "GET"))
        return route_container(s, c);
    return reply(c, 404, "text/plain", "not found");
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls)
{
    struct reqctx *rc = *con_cls;
    if (!rc) {
        rc = calloc(1, sizeof *rc);
        *con_cls = rc;
        return rc ? MHD_YES : MHD_NO;
    }
    if (*upload_size) {
        if (hgf_buf_append(&rc->body, upload, *upload_size))
            return MHD_NO;
        *upload_size = 0;
        return MHD_YES;
    }
    return route(cls, c, url, method, rc);
}

static void req_done(void *cls, struct MHD_Connection *c, void **con_cls,
                     enum MHD_RequestTerminationCode toe)
{
    struct reqctx *rc = *con_cls;
    if (rc) {
        hgf_buf_free(&rc->body);
        free(rc);
    }
    *con_cls = NULL;
}

static int srv_start(struct srv *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    s->sts_life = 3600;
    s->ecr_life = 43200;
    s->n_iss = 1;
    snprintf(s->iss[0].akid, sizeof s->iss[0].akid, STATIC_AKID);
    snprintf(s->iss[0].secret, sizeof s->iss[0].secret, STATIC_SECRET);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
                            NULL, NULL, handler, s, MHD_OPTION_SOCK_ADDR, &sa,
                            MHD_OPTION_NOTIFY_COMPLETED, req_done, s, MHD_OPTION_END);
    if (!s->d)
        return -1;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : 0;
    return s->port ? 0 : -1;
}

static void srv_stop(struct srv *s)
{
    atomic_store(&s->stopping, 1);
    if (s->d)
        MHD_stop_daemon(s->d);
    pthread_mutex_destroy(&s->mu);
}

/* A consistent copy of the server's records. */
static struct srv *snap(struct srv *s, struct srv *out)
{
    pthread_mutex_lock(&s->mu);
    memcpy(out, s, sizeof *out);
    pthread_mutex_unlock(&s->mu);
    return out;
}

#define SET(f, field, v)                                                                           \
    do {                                                                                           \
        pthread_mutex_lock(&(f)->srv.mu);                                                          \
        (f)->srv.field = (v);                                                                      \
        pthread_mutex_unlock(&(f)->srv.mu);                                                        \
    } while (0)

/* ------------------------------------------------------------------ */
/* the client side                                                     */

static const char *const ENV_VARS[] = {"AWS_ACCESS_KEY_ID",
                                       "AWS_SECRET_ACCESS_KEY",
                                       "AWS_SESSION_TOKEN",
                                       "AWS_ROLE_ARN",
                                       "AWS_WEB_IDENTITY_TOKEN_FILE",
                                       "AWS_ROLE_SESSION_NAME",
                                       "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                                       "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                                       "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                                       "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                                       "AWS_EC2_METADATA_DISABLED",
                                       "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                                       "AWS_ENDPOINT_URL",
                                       "AWS_ENDPOINT_URL_STS",
                                       "AWS_ENDPOINT_URL_ECR",
                                       "AWS_REGION",
                                       "AWS_DEFAULT_REGION"};

struct fix {
    struct srv srv;
    struct ev_loop *loop;
    hgf_http *http;
    hgf_metrics *metrics;
    hgf_credmgr *m;
    char base[64];
    char dir[64];
    char file[128];
};

typedef struct rec {
    int calls, ok, errs;
    int expired;  /* credentials handed out after their Expiration */
    int mismatch; /* a different key id than the first one */
    int last_rc;
    hgf_err last_err;
    char first_akid[64], akid[64], source[32], token[128], proxy[128];
    double limit; /* failed-refresh test: the first credentials' Expiration */
    int ok_late, err_early;
} rec;

static void on_creds(int rc, const hgf_err *err, const hgf_creds *c, void *arg)
{
    rec *r = arg;
    r->calls++;
    r->last_rc = rc;
    double t = ev_time();
    if (rc) {
        r->errs++;
        r->last_err = *err;
        r->err_early += r->limit > 0 && t < r->limit - 0.05;
        return;
    }
    assert_non_null(c);
    r->ok++;
    r->expired += c->expiration && (double)c->expiration <= t;
    r->ok_late += r->limit > 0 && t > r->limit + 0.05;
    if (!r->first_akid[0])
        snprintf(r->first_akid, sizeof r->first_akid, "%s", c->access_key_id);
    r->mismatch += strcmp(r->first_akid, c->access_key_id) != 0;
    snprintf(r->akid, sizeof r->akid, "%s", c->access_key_id);
    snprintf(r->source, sizeof r->source, "%s", c->source);
}

static void on_token(int rc, const hgf_err *err, const char *token, const char *proxy, void *arg)
{
    rec *r = arg;
    r->calls++;
    r->last_rc = rc;
    if (rc) {
        r->errs++;
        r->last_err = *err;
        return;
    }
    r->ok++;
    if (!r->first_akid[0])
        snprintf(r->first_akid, sizeof r->first_akid, "%s", token);
    r->mismatch += strcmp(r->first_akid, token) != 0;
    snprintf(r->token, sizeof r->token, "%s", token);
    snprintf(r->proxy, sizeof r->proxy, "%s", proxy);
}

static void watchdog(struct ev_loop *loop, ev_timer *w, int revents)
{
    *(int *)w->data = 1;
}

/* Runs the loop until *count >= n or secs passed; true if reached. */
static int run_until(struct fix *f, const int *count, int n, double secs)
{
    int expired = 0;
    ev_timer wd;
    ev_timer_init(&wd, watchdog, secs, 0.);
    wd.data = &expired;
    ev_timer_start(f->loop, &wd);
    while ((!count || *count < n) && !expired)
        ev_run(f->loop, EVRUN_ONCE);
    ev_timer_stop(f->loop, &wd);
    return count && *count >= n;
}

static void run_for(struct fix *f, double secs)
{
    run_until(f, NULL, 0, secs);
}

static void assert_no_secret(const char *s)
{
    assert_null(strstr(s, STATIC_SECRET));
    assert_null(strstr(s, SECRET_MARK));
    assert_null(strstr(s, TOKEN_MARK));
    assert_null(strstr(s, IMDS_TOKEN));
}

static void write_file(const char *path, const char *content)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(content, fp);
    fclose(fp);
}

static void clear_env(void)
{
    for (size_t i = 0; i < sizeof ENV_VARS / sizeof ENV_VARS[0]; i++)
        unsetenv(ENV_VARS[i]);
}

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof *f);
    if (!f || srv_start(&f->srv) != 0)
        return -1;
    clear_env();
    snprintf(f->base, sizeof f->base, "http://127.0.0.1:%u", f->srv.port);
    setenv("AWS_ENDPOINT_URL_STS", f->base, 1);
    setenv("AWS_ENDPOINT_URL_ECR", f->base, 1);
    /* Never the real 169.254.169.254, even when a test falls through. */
    setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", f->base, 1);
    snprintf(f->dir, sizeof f->dir, "/tmp/hgf-credprov-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->file, sizeof f->file, "%s/token", f->dir);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    hgf_http_opts o = {0};
    hgf_err err;
    f->http = hgf_http_new(f->loop, &o, &err);
    f->metrics = hgf_metrics_new();
    f->m = hgf_credmgr_new(f->loop, f->http, f->metrics, &err);
    hgf_log_set_level(HGF_LOG_ERROR);
    *state = f;
    return f->loop && f->http && f->metrics && f->m ? 0 : -1;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    for (int i = 0; i < 200; i++) { /* let requests in flight finish */
        hgf_http_stats st;
        hgf_http_get_stats(f->http, &st);
        if (!st.in_flight && !st.queued)
            break;
        run_for(f, 0.01);
    }
    hgf_credmgr_free(f->m);
    hgf_http_free(f->http);
    hgf_metrics_free(f->metrics);
    ev_loop_destroy(f->loop);
    srv_stop(&f->srv);
    unlink(f->file);
    rmdir(f->dir);
    clear_env();
    free(f);
    return 0;
}

static hgf_auth_spec host_spec(void)
{
    return (hgf_auth_spec){.mode = "host", .region = "us-east-1"};
}

static hgf_auth_spec role_spec(void)
{
    return (hgf_auth_spec){.mode = "assume_role",
                           .role_arn = ROLE,
                           .access_key_id = STATIC_AKID,
                           .secret_access_key = STATIC_SECRET,
                           .region = "us-east-1"};
}

static void get_ok(struct fix *f, const hgf_auth_spec *spec, rec *r)
{
    hgf_err err;
    hgf_err_clear(&err);
    if (hgf_credmgr_get(f->m, spec, on_creds, r, &err))
        fail_msg("hgf_credmgr_get: %s", err.msg);
}

/* One get, run to its callback. The limit is generous because an STS 5xx is
 * retried 4 times with jittered backoff (up to 1 + 1 + 2 + 4 s). */
static void get_wait(struct fix *f, const hgf_auth_spec *spec, rec *r)
{
    int before = r->calls;
    get_ok(f, spec, r);
    assert_int_equal(r->calls, before); /* never called back synchronously */
    assert_true(run_until(f, &r->calls, before + 1, 20));
}

static void host_fetch_wait(struct fix *f, rec *r, int want_rc, hgf_err *err)
{
    hgf_credprov_opts o = {.loop = f->loop, .http = f->http, .region = "us-east-1"};
    hgf_err_clear(err);
    int rc = hgf_credprov_host_fetch(&o, on_creds, r, err);
    assert_int_equal(rc, want_rc);
    assert_int_equal(r->calls, 0);
    if (!rc)
        assert_true(run_until(f, &r->calls, 1, 5));
}

/* ------------------------------------------------------------------ */
/* the chain                                                           */

static void test_env_first(void **state)
{
    struct fix *f = *state;
    setenv("AWS_ACCESS_KEY_ID", "AKIAENVEXAMPLE123456", 1);
    setenv("AWS_SECRET_ACCESS_KEY", STATIC_SECRET, 1);
    setenv("AWS_ROLE_ARN", ROLE, 1);
    write_file(f->file, "web-token");
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", f->file, 1);
    char url[128];
    snprintf(url, sizeof url, "%s/container/creds", f->base);
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", url, 1);
    rec r = {0};
    hgf_auth_spec s = host_spec();
    get_wait(f, &s, &r);
    assert_int_equal(r.ok, 1);
    assert_string_equal(r.source, "env");
    assert_string_equal(r.akid, "AKIAENVEXAMPLE123456");
    get_wait(f, &s, &r); /* cached: env credentials never expire */
    hgf_credmgr_stats st;
    hgf_credmgr_get_stats(f->m, &st);
    assert_int_equal(st.cache_hits, 1);
    assert_int_equal(st.sts_calls, 0);
    struct srv sv;
    snap(&f->srv, &sv);
    assert_int_equal(sv.sts_calls + sv.container_gets + sv.imds_puts, 0);

    /* Half of a key pair is an error of the environment provider, not a
     * reason to fall through to the next one. */
    unsetenv("AWS_ACCESS_KEY_ID");
    rec r2 = {0};
    hgf_err err;
    host_fetch_wait(f, &r2, HGF_EINPUT, &err);
    assert_string_equal(err.msg, "environment credentials: AWS_SECRET_ACCESS_KEY is set but "
                                 "AWS_ACCESS_KEY_ID is not");
    assert_no_secret(err.msg);
}

static void test_web_identity_precedence(void **state)
{
    struct fix *f = *state;
    setenv("AWS_ROLE_ARN", ROLE, 1);
    setenv("AWS_ROLE_SESSION_NAME", "irsa-session", 1);
    write_file(f->file, "eyJhbGciOiJSUzI1NiJ9.web-token-1\n");
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", f->file, 1);
    char url[128];
    snprintf(url, sizeof url, "%s/container/creds", f->base);
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", url, 1);
    rec r = {0};
    hgf_auth_spec s = host_spec();
    get_wait(f, &s, &r);
    assert_int_equal(r.ok, 1);
    assert_string_equal(r.source, "web_identity");
    struct srv sv;
    snap(&f->srv, &sv);
    assert_int_equal(sv.sts_calls, 1);
    assert_int_equal(sv.sig_failures, 0); /* sent without Authorization */
    assert_int_equal(sv.container_gets + sv.imds_puts, 0);
    issued *k = &sv.iss[1];
    assert_string_equal(k->action, "AssumeRoleWithWebIdentity");
    assert_string_equal(k->role, ROLE);
    assert_string_equal(k->session, "irsa-session");
    assert_string_equal(k->web_token, "eyJhbGciOiJSUzI1NiJ9.web-token-1");
    assert_string_equal(k->signer, "");
    assert_string_equal(r.akid, k->akid);

    /* The token file is read again at every refresh (the kubelet rotates it). */
    write_file(f->file, "eyJhbGciOiJSUzI1NiJ9.web-token-2");
    hgf_credmgr_invalidate(f->m, &s);
    get_wait(f, &s, &r);
    snap(&f->srv, &sv);
    assert_int_equal(sv.sts_calls, 2);
    assert_string_equal(sv.iss[2].web_token, "eyJhbGciOiJSUzI1NiJ9.web-token-2");
    assert_string_equal(r.akid, sv.iss[2].akid);
    hgf_credmgr_stats st;
    hgf_credmgr_get_stats(f->m, &st);
    assert_int_equal(st.sts_calls, 2);
    assert_int_equal(st.refreshes, 1);

    /* STS refusing the token is reported with its code, never the token. */
    SET(f, sts_mode, STS_BAD_WEB_TOKEN);
    rec r2 = {0};
    hgf_err err;
    host_fetch_wait(f, &r2, 0, &err);
    assert_int_equal(r2.errs, 1);
    assert_int_equal(r2.last_rc, HGF_EAWS);
    assert_string_equal(r2.last_err.aws_code, "InvalidIdentityToken");
    assert_string_equal(r2.last_err.msg,
                        "web identity (AWS_ROLE_ARN=" ROLE "): AssumeRoleWithWebIdentity: "
                        "InvalidIdentityToken: Incorrect token audience");
    assert_null(strstr(r2.last_err.msg, "web-token"));

    /* A missing token file is the web identity provider's error. */
    unlink(f->file);
    rec r3 = {0};
    host_fetch_wait(f, &r3, HGF_EINPUT, &err);
    assert_non_null(strstr(err.msg, "AWS_WEB_IDENTITY_TOKEN_FILE: cannot read"));
    snap(&f->srv, &sv);
    assert_int_equal(sv.container_gets + sv.imds_puts, 0);
}

static void test_container_token(void **state)
{
    struct fix *f = *state;
    char url[128];
    snprintf(url, sizeof url, "%s/container/creds", f->base);
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", url, 1);
    pthread_mutex_lock(&f->srv.mu);
    snprintf(f->srv.container_token, sizeof f->srv.container_token, "file-token");
    pthread_mutex_unlock(&f->srv.mu);
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "env-token", 1);
    write_file(f->file, "file-token\n");
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", f->file, 1);
    rec r = {0};
    hgf_err err;
    host_fetch_wait(f, &r, 0, &err);
    assert_int_equal(r.ok, 1);
    assert_string_equal(r.source, "container");
    assert_string_equal(r.akid, "ASIACONTEXAMPLE1234");
    struct srv sv;
    snap(&f->srv, &sv);
    assert_string_equal(sv.container_auth, "file-token"); /* the file wins */
    assert_int_equal(sv.imds_puts, 0);

    /* Without the file, the variable; the server refuses it here. */
    unsetenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    rec r2 = {0};
    host_fetch_wait(f, &r2, 0, &err);
    snap(&f->srv, &sv);
    assert_string_equal(sv.container_auth, "env-token");
    assert_int_equal(r2.errs, 1);
    char want[256];
    snprintf(want, sizeof want,
             "container credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI=%s): GET: HTTP 401", url);
    assert_string_equal(r2.last_err.msg, want);

    /* CR/LF would inject headers: refused before anything is sent. */
    int gets = sv.container_gets;
    write_file(f->file, "file-token\r\nX-Injected: 1");
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", f->file, 1);
    rec r3 = {0};
    host_fetch_wait(f, &r3, HGF_EINPUT, &err);
    assert_non_null(
        strstr(err.msg, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: the token contains a CR or LF"));
    unsetenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "env\ntoken", 1);
    host_fetch_wait(f, &r3, HGF_EINPUT, &err);
    assert_non_null(
        strstr(err.msg, "AWS_CONTAINER_AUTHORIZATION_TOKEN: the token contains a CR or LF"));
    run_for(f, 0.05);
    snap(&f->srv, &sv);
    assert_int_equal(sv.container_gets, gets);
    assert_int_equal(sv.imds_puts, 0);
}

static void test_container_allow_list(void **state)
{
    struct fix *f = *state;
    struct {
        const char *url;
        int ok;
    } cases[] = {
        {"http://127.0.0.1:51679/creds", 1},
        {"http://127.9.8.7/creds", 1},
        {"http://localhost/creds", 1},
        {"http://LOCALHOST:80/x", 1},
        {"http://[::1]:8080/creds", 1},
        {"http://169.254.170.2/v2/creds", 1},
        {"http://169.254.170.23/v1/credentials", 1},
        {"http://[fd00:ec2::23]/v1/credentials", 1},
        {"https://example.com/creds", 1},
        {"http://example.com/creds", 0},
        {"http://169.254.170.3/creds", 0},
        {"http://128.0.0.1/creds", 0},
        {"http://[fd00:ec2::24]/creds", 0},
        {"http://localhost.example.com/x", 0},
        {"ftp://127.0.0.1/creds", 0},
        {"not a url", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", cases[i].url, 1);
        char out[256];
        const char *var = NULL;
        hgf_err err;
        hgf_err_clear(&err);
        int rc = hgf_credprov_container_url(out, sizeof out, &var, &err);
        if ((rc == 0) != cases[i].ok)
            fail_msg("%s: rc %d (%s)", cases[i].url, rc, err.msg);
        assert_string_equal(var, "AWS_CONTAINER_CREDENTIALS_FULL_URI");
        if (!cases[i].ok)
            assert_non_null(strstr(err.msg, "AWS_CONTAINER_CREDENTIALS_FULL_URI: "));
    }
    /* The relative form always goes to the ECS agent, and wins. */
    setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/abc", 1);
    char out[256];
    const char *var;
    hgf_err err;
    assert_int_equal(hgf_credprov_container_url(out, sizeof out, &var, &err), 0);
    assert_string_equal(out, "http://169.254.170.2/v2/credentials/abc");
    assert_string_equal(var, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "@evil.example.com/x", 1);
    assert_int_equal(hgf_credprov_container_url(out, sizeof out, &var, &err), HGF_EINPUT);
    unsetenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    unsetenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    assert_int_equal(hgf_credprov_container_url(out, sizeof out, &var, &err), HGF_ENOTFOUND);

    /* Through the manager: refused, reported, and no fall-through to IMDS. */
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://example.com/creds", 1);
    rec r = {0};
    hgf_auth_spec s = host_spec();
    get_wait(f, &s, &r);
    assert_int_equal(r.errs, 1);
    assert_int_equal(r.last_rc, HGF_EINPUT);
    assert_string_equal(r.last_err.msg,
                        "container credentials: AWS_CONTAINER_CREDENTIALS_FULL_URI: plain http is "
                        "only allowed to loopback, 169.254.170.2, 169.254.170.23 or fd00:ec2::23, "
                        "got \"http://example.com/creds\" (use https)");
    struct srv sv;
    snap(&f->srv, &sv);
    assert_int_equal(sv.imds_puts + sv.container_gets, 0);
}

static unsigned short closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, len), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

#define NOT_CONFIGURED                                                                             \
    "no host credentials: AWS_ACCESS_KEY_ID not set; AWS_ROLE_ARN/"                                \
    "AWS_WEB_IDENTITY_TOKEN_FILE (IRSA) not set; no container credentials URI"

static void test_imds(void **state)
{
    struct fix *f = *state;
    rec r = {0};
    hgf_auth_spec s = host_spec();
    get_wait(f, &s, &r);
    assert_int_equal(r.ok, 1);
    assert_string_equal(r.source, "imds");
    assert_string_equal(r.akid, "ASIAIMDSEXAMPLE1234");
    struct srv sv;
    snap(&f->srv, &sv);
    assert_int_equal(sv.imds_puts, 1);
    assert_int_equal(sv.imds_lists, 1);
    assert_int_equal(sv.imds_creds, 1);
    assert_int_equal(sv.imds_unauthorized, 0); /* every GET carried the token */

    /* The token is required: no IMDSv1 fall-back when the PUT is refused. */
    SET(f, imds_put_status, 403);
    rec r2 = {0};
    hgf_err err;
    host_fetch_wait(f, &r2, 0, &err);
    assert_int_equal(r2.errs, 1);
    char want[512];
    snprintf(want, sizeof want, NOT_CONFIGURED "; IMDSv2 at %s: PUT /latest/api/token: HTTP 403",
             f->base);
    assert_string_equal(r2.last_err.msg, want);
    snap(&f->srv, &sv);
    assert_int_equal(sv.imds_lists, 1);

    SET(f, imds_put_status, 0);
    SET(f, imds_no_role, 1);
    rec r3 = {0};
    host_fetch_wait(f, &r3, 0, &err);
    assert_non_null(strstr(r3.last_err.msg, "no IAM role is attached to the instance"));

    /* Nothing answering: the error lists everything that was tried. */
    char dead[64];
    snprintf(dead, sizeof dead, "http://127.0.0.1:%u", closed_port());
    setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", dead, 1);
    rec r4 = {0};
    host_fetch_wait(f, &r4, 0, &err);
    snprintf(want, sizeof want, NOT_CONFIGURED "; IMDSv2 at %s: PUT /latest/api/token: ", dead);
    assert_int_equal(r4.last_rc, HGF_EHTTP);
    assert_memory_equal(r4.last_err.msg, want, strlen(want));

    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    rec r5 = {0};
    host_fetch_wait(f, &r5, HGF_ENOTFOUND, &err);
    assert_string_equal(err.msg, NOT_CONFIGURED "; IMDS disabled (AWS_EC2_METADATA_DISABLED=true)");
    setenv("AWS_ROLE_ARN", ROLE, 1);
    host_fetch_wait(f, &r5, HGF_ENOTFOUND, &err);
    assert_non_null(strstr(err.msg, "AWS_ROLE_ARN set but AWS_WEB_IDENTITY_TOKEN_FILE not (IRSA)"));
}

/* ------------------------------------------------------------------ */
/* the manager                                                         */

static void test_500_waiters_one_sts_call(void **state)
{
    struct fix *f = *state;
    SET(f, sts_delay_ms, 100); /* all 500 ask while the call is out */
    hgf_auth_spec s = role_spec();
    rec r = {0};
    for (int i = 0; i < 500; i++)
        get_ok(f, &s, &r);
    assert_true(run_until(f, &r.calls, 500, 10));
    assert_int_equal(r.ok, 500);
    assert_int_equal(r.mismatch, 0);
    struct srv sv;
    snap(&f->srv, &sv);
    assert_int_equal(sv.sts_calls, 1);
    assert_int_equal(sv.sig_failures, 0);
    assert_string_equal(sv.iss[1].action, "AssumeRole");
    assert_string_equal(sv.iss[1].signer, STATIC_AKID);
    assert_string_equal(sv.iss[1].session, "hgfleet-123456789012");
    assert_string_equal(sv.iss[1].duration, "3600");
    assert_string_equal(sv.iss[1].external_id, "");
    assert_string_equal(r.akid, sv.iss[1].akid);
    assert_string_equal(r.source, "assume_role");
    for (int i = 0; i < 500; i++)
        get_ok(f, &s, &r);
    assert_true(run_until(f, &r.calls, 1000, 5));
    snap(&f->srv, &sv);
    assert_int_equal(sv.sts_calls, 1);
    hgf_credmgr_stats st;
    hgf_credmgr_get_stats(f->m, &st);
    assert_int_equal(st.sts_calls, 1);
    assert_true(st.cache_hits >= 500);
    assert_int_equal(hgf_metrics_get(f->metrics, "hgfleet_sts_calls_total",
                                     "action=\"AssumeRole\",outcome=\"ok\""),
                     1);
    assert_int_equal(hgf_metrics_get(f->metrics, "hgfleet_credential_refreshes_total",
                                     "mode=\"assume_role\",outcome=\"ok\""),
                     1);
}

typedef struct ticker {
    struct fix *f;
    const hgf_auth_spec *spec;
    rec *r;
    int per_tick;
} ticker;

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    ticker *t = w->data;
    for (int i = 0; i < t->per_tick; i++)
        get_ok(t->f, t->spec, t->r);
}

/* Calls hgf_credmgr_get per_tick times every 50 ms for secs. */
static void keep_asking(struct fix *f, const hgf_auth_spec *s, rec *r, int per_tick, double secs)
{
    ticker t = {f, s, r, per_tick};
    ev_timer w;
    ev_timer_init(&w, on_tick, 0., 0.05);
    w.data = &t;
    ev_timer_start(f->loop, &w);
    run_for(f, secs);
    ev_timer_stop(f->loop, &w);
    run_for(f, 0.1);
}

static void test_one_refresh_per_expiry(void **state)
{
    struct fix *f = *state;
    SET(f, sts_life, 2);
    SET(f, sts_delay_ms, 20);
    hgf_auth_spec s = role_spec();
    rec r = {0};
    keep_asking(f, &s, &r, 5, 5.5);
    struct srv sv;
    snap(&f->srv, &sv);
    int n = sv.n_iss - 1;
    /* Lifetimes are 1-2 s, so 5 s need at least three refreshes. */
    assert_true(n >= 4);
    assert_int_equal(sv.sts_calls, n);
    assert_int_equal(sv.sts_max_in_flight, 1);
    assert_int_equal(r.errs, 0);
    assert_int_equal(r.expired, 0);
    assert_true(r.ok > 400);
    /* Each refresh falls in the previous credentials' refresh window: after
     * 78% of their lifetime (80% less up to 10% of the margin), before they
     * expire. Two refreshes for one expiry would put the second one early.
     * The late side allows 0.5 s: under sanitizers beside a loaded suite the
     * loop's timers fire late (0.25 s was seen), which is not a second refresh. */
    for (int i = 2; i <= n; i++) {
        double life = (double)sv.iss[i - 1].exp - sv.iss[i - 1].at;
        double window = (double)sv.iss[i - 1].exp - 0.22 * life - 0.05;
        if (sv.iss[i].at < window || sv.iss[i].at > (double)sv.iss[i - 1].exp + 0.5)
            fail_msg("refresh %d at %.3f: previous expires %ld after a %.2f s life", i,
                     sv.iss[i].at, (long)sv.iss[i - 1].exp, life);
    }
    hgf_credmgr_stats st;
    hgf_credmgr_get_stats(f->m, &st);
    assert_int_equal(st.sts_calls, n);
    assert_int_equal(st.refreshes, n - 1);
    assert_int_equal(st.failed_refreshes, 0);
}

/* Runs fn with stderr going to a file; returns what was written. */
static char *capture_stderr(void (*fn)(void *), void *arg)
{
    char path[] = "/tmp/hgf-credprov-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    off_t len = lseek(fd, 0, SEEK_END);
    char *out = calloc(1, (size_t)len + 1);
    assert_int_equal(pread(fd, out, (size_t)len, 0), len);
    close(fd);
    unlink(path);
    return out;
}

typedef struct failed_case {
    struct fix *f;
    hgf_auth_spec spec;
    rec r;
} failed_case;

/* Asks past the expiry: the old credentials until then, the error after. */
static void failed_refresh_run(void *arg)
{
    failed_case *c = arg;
    hgf_log_set_level(HGF_LOG_WARN);
    keep_asking(c->f, &c->spec, &c->r, 2, c->r.limit - ev_time() + 0.6);
    hgf_log_set_level(HGF_LOG_ERROR);
}

static void test_failed_refresh_keeps_old_until_expiry(void **state)
{
    struct fix *f = *state;
    SET(f, sts_life, 2);
    failed_case c = {f, role_spec(), {0}};
    get_wait(f, &c.spec, &c.r);
    assert_int_equal(c.r.ok, 1);
    struct srv sv;
    snap(&f->srv, &sv);
    c.r.limit = (double)sv.iss[1].exp;
    SET(f, sts_mode, STS_DENIED);
    char *log = capture_stderr(failed_refresh_run, &c);
    assert_true(c.r.ok > 5);
    assert_true(c.r.errs > 5);
    assert_int_equal(c.r.mismatch, 0); /* nothing but the first credentials */
    assert_int_equal(c.r.expired, 0);
    assert_int_equal(c.r.ok_late, 0);
    assert_int_equal(c.r.err_early, 0);
    assert_int_equal(c.r.last_rc, HGF_EAWS);
    assert_string_equal(c.r.last_err.aws_code, "AccessDenied");
    assert_non_null(strstr(c.r.last_err.msg, "AssumeRole: AccessDenied: User: "));
    assert_no_secret(c.r.last_err.msg);
    snap(&f->srv, &sv);
    /* One failing call, then retries after a backoff: no stampede. */
    assert_true(sv.sts_failed >= 1 && sv.sts_failed <= 3);
    hgf_credmgr_stats st;
    hgf_credmgr_get_stats(f->m, &st);
    assert_int_equal(st.failed_refreshes, (unsigned long)sv.sts_failed);
    assert_non_null(strstr(log, "credentials.refresh_failed"));
    assert_non_null(strstr(log, "AccessDenied"));
    assert_no_secret(log);
    free(log);
    assert_int_equal(hgf_metrics_get(f->metrics, "hgfleet_sts_calls_total",
                                     "action=\"AssumeRole\",outcome=\"error\""),
                     sv.sts_failed);

    /* STS recovers: after the backoff the next get fetches again. */
    SET(f, sts_mode, STS_OK);
    run_for(f, 1.05);
    rec r = {0};
    get_wait(f, &c.spec, &r);
    if (r.ok != 1) {
        run_for(f, 1.0);
        get_wait(f, &c.spec, &r);
    }
    assert_int_equal(r.last_rc, 0);
    assert_string_not_equal(r.akid, c.r.first_akid);
}

static void test_invalidate_one_refresh(void **state)
{
    struct fix *f = *state;
    hgf_auth_spec s = role_spec();
    rec r = {0};
    get_wait(f, &s, &r);
    char first[64];
    snprintf(first, sizeof first, "%s", r.akid);
    /* 500 requests hit ExpiredTokenException together. */
    rec r2 = {0};
    for (int i = 0; i < 500; i++) {
        hgf_credmgr_invalidate(f->m, &s);
        get_ok(f, &s, &r2);
    }
    assert_true(run_until(f, &r2.calls, 500, 10));
    assert_int_equal(r2.ok, 500);
    assert_int_equal(r2.mismatch, 0);
    assert_string_not_equal(r2.akid, first);
    struct srv sv;
    snap(&f->srv, &sv);
    assert_int_equal(sv.sts_calls, 2);
    /* A late ExpiredToken for the replaced key changes nothing ... */
    hgf_credmgr_invalidate_key(f->m, &s, first);
    get_wait(f, &s, &r2);
    snap(&f->srv, &sv);
    assert_int_equal(sv.sts_calls, 2);
    /* ... one for the current key refreshes. */
    hgf_credmgr_invalidate_key(f->m, &s, r2.akid);
    get_wait(f, &s, &r2);
    snap(&f->srv, &sv);
    assert_int_equal(sv.sts_calls, 3);
    assert_string_equal(r2.akid, sv.iss[3].akid);
}

static void test_two_hop_chain(void **state)
{
    struct fix *f = *state;
    hgf_auth_spec s = role_spec();
    s.via_role_arn = HUB;
    s.external_id = "ext+id=1,a.b@c:d/e-f";
    rec r = {0};
    get_wait(f, &s, &r);
    assert_int_equal(r.ok, 1);
    struct srv sv;
    snap(&f->srv, &sv);
    assert_int_equal(sv.sts_calls, 2);
    assert_int_equal(sv.sig_failures, 0);
    issued *hop1 = &sv.iss[1], *hop2 = &sv.iss[2];
    assert_string_equal(hop1->role, HUB);
    assert_string_equal(hop1->signer, STATIC_AKID);
    assert_string_equal(hop1->external_id, ""); /* the ExternalId is the target's */
    assert_string_equal(hop2->role, ROLE);
    assert_string_equal(hop2->signer, hop1->akid); /* signed with the first hop's keys */
    assert_string_equal(hop2->external_id, "ext+id=1,a.b@c:d/e-f");
    assert_true(atoi(hop2->duration) > 0 && atoi(hop2->duration) <= 3600);
    assert_string_equal(r.akid, hop2->akid);
    hgf_credmgr_stats st;
    hgf_credmgr_get_stats(f->m, &st);
    assert_int_equal(st.sts_calls, 2);

    /* The longest chain STS allows is requested as such. */
    s.duration_seconds = 3600;
    get_wait(f, &s, &r);
    snap(&f->srv, &sv);
    assert_int_equal(sv.sts_calls, 3); /* the first hop is cached */
    assert_string_equal(sv.iss[3].duration, "3600");
    assert_string_equal(sv.iss[3].signer, hop1->akid);
}

static void test_ecr_token_half_life(void **state)
{
    struct fix *f = *state;
    SET(f, ecr_life, 2.0);
    hgf_auth_spec s = role_spec();
    s.mode = "static";
    s.role_arn = NULL;
    rec r = {0};
    hgf_err err;
    for (int i = 0; i < 100; i++)
        assert_int_equal(hgf_credmgr_ecr_token(f->m, &s, REGISTRY, NULL, on_token, &r, &err), 0);
    assert_int_equal(r.calls, 0);
    double t0 = ev_time();
    assert_true(run_until(f, &r.calls, 100, 5));
    assert_int_equal(r.ok, 100);
    assert_int_equal(r.mismatch, 0);
    assert_string_equal(r.token, "QVdTOmVjci1wYXNzd29yZC00001");
    assert_string_equal(r.proxy, "https://" REGISTRY ".dkr.ecr.us-east-1.amazonaws.com");
    struct srv sv;
    snap(&f->srv, &sv);
    assert_int_equal(sv.ecr_calls, 1);
    assert_string_equal(sv.ecr_body, "{\"registryIds\":[\"" REGISTRY "\"]}");
    assert_string_equal(sv.ecr_signer, STATIC_AKID);

    /* Before half its life: cached. */
    run_for(f, 0.5);
    assert_int_equal(hgf_credmgr_ecr_token(f->m, &s, REGISTRY, NULL, on_token, &r, &err), 0);
    assert_true(run_until(f, &r.calls, 101, 5));
    snap(&f->srv, &sv);
    assert_int_equal(sv.ecr_calls, 1);
    /* Past half its life: still served, and one refresh starts. */
    run_for(f, t0 + 1.1 - ev_time());
    for (int i = 0; i < 10; i++)
        assert_int_equal(hgf_credmgr_ecr_token(f->m, &s, REGISTRY, NULL, on_token, &r, &err), 0);
    assert_true(run_until(f, &r.calls, 111, 5));
    assert_int_equal(r.mismatch, 0);
    run_for(f, 0.2);
    snap(&f->srv, &sv);
    assert_int_equal(sv.ecr_calls, 2);
    assert_int_equal(hgf_credmgr_ecr_token(f->m, &s, REGISTRY, NULL, on_token, &r, &err), 0);
    assert_true(run_until(f, &r.calls, 112, 5));
    assert_string_equal(r.token, "QVdTOmVjci1wYXNzd29yZC00002");

    /* Another registry is another token; an assumed role signs its own. */
    hgf_auth_spec a = role_spec();
    rec r2 = {0};
    assert_int_equal(hgf_credmgr_ecr_token(f->m, &a, "210987654321", NULL, on_token, &r2, &err), 0);
    assert_true(run_until(f, &r2.calls, 1, 5));
    assert_int_equal(r2.ok, 1);
    snap(&f->srv, &sv);
    assert_int_equal(sv.ecr_calls, 3);
    assert_string_equal(sv.ecr_body, "{\"registryIds\":[\"210987654321\"]}");
    assert_string_equal(sv.ecr_signer, sv.iss[1].akid);

    assert_int_equal(hgf_credmgr_ecr_token(f->m, &s, "12345", NULL, on_token, &r, &err),
                     HGF_EINPUT);
    assert_non_null(strstr(err.msg, "registry_id"));
}

static void test_sts_errors_are_reported_without_secrets(void **state)
{
    struct fix *f = *state;
    SET(f, sts_mode, STS_DENIED);
    hgf_auth_spec s = role_spec();
    rec r = {0};
    get_wait(f, &s, &r);
    assert_int_equal(r.last_rc, HGF_EAWS);
    assert_string_equal(r.last_err.aws_code, "AccessDenied");
    assert_string_equal(r.last_err.msg, "AssumeRole: AccessDenied: User: "
                                        "arn:aws:iam::123456789012:user/x is not authorized to "
                                        "perform: sts:AssumeRole");
    assert_no_secret(r.last_err.msg);
    assert_int_equal(hgf_metrics_get(f->metrics, "hgfleet_credential_refreshes_total",
                                     "mode=\"assume_role\",outcome=\"error\""),
                     1);
    /* Within the backoff the error is served again without a new call. */
    get_wait(f, &s, &r);
    assert_int_equal(r.errs, 2);
    struct srv sv;
    snap(&f->srv, &sv);
    assert_int_equal(sv.sts_calls, 1);

    /* A non-XML answer: the status, not the body. */
    SET(f, sts_mode, STS_HTML_503);
    hgf_auth_spec s2 = role_spec();
    s2.session_name = "other-session";
    get_wait(f, &s2, &r);
    assert_int_equal(r.last_rc, HGF_EHTTP);
    assert_string_equal(r.last_err.msg, "AssumeRole: HTTP 503 reply is not STS XML (Content-Type "
                                        "text/html)");

    /* Wrong static keys: the signature fails at STS, and the key's secret
     * appears nowhere. */
    SET(f, sts_mode, STS_OK);
    hgf_auth_spec s3 = role_spec();
    s3.secret_access_key = "not-the-right-secret-EXAMPLEKEY";
    get_wait(f, &s3, &r);
    assert_string_equal(r.last_err.aws_code, "SignatureDoesNotMatch");
    assert_null(strstr(r.last_err.msg, s3.secret_access_key));
}

/* AWS_MAX_ATTEMPTS bounds AssumeRole's attempts, as it bounds every other
 * AWS call's, once the manager has the process's awsctl. */
static void test_sts_attempts_follow_aws_max_attempts(void **state)
{
    struct fix *f = *state;
    setenv("AWS_MAX_ATTEMPTS", "2", 1);
    hgf_err err;
    hgf_awsctl *ctl = hgf_awsctl_new(f->loop, NULL, &err);
    unsetenv("AWS_MAX_ATTEMPTS");
    assert_non_null(ctl);
    hgf_credmgr_set_awsctl(f->m, ctl);
    SET(f, sts_mode, STS_HTML_503);
    hgf_auth_spec s = role_spec();
    rec r = {0};
    get_wait(f, &s, &r);
    assert_int_equal(r.last_rc, HGF_EHTTP);
    struct srv sv;
    snap(&f->srv, &sv);
    assert_int_equal(sv.sts_calls, 2);

    /* Without the variable, the standard mode's 3. */
    hgf_credmgr_free(f->m);
    hgf_awsctl_free(ctl);
    ctl = hgf_awsctl_new(f->loop, NULL, &err);
    assert_non_null(ctl);
    f->m = hgf_credmgr_new(f->loop, f->http, f->metrics, &err);
    assert_non_null(f->m);
    hgf_credmgr_set_awsctl(f->m, ctl);
    get_wait(f, &s, &r);
    snap(&f->srv, &sv);
    assert_int_equal(sv.sts_calls, 2 + 3);
    hgf_credmgr_free(f->m);
    f->m = NULL;
    hgf_awsctl_free(ctl);
}

static void test_free_with_fetch_in_flight(void **state)
{
    struct fix *f = *state;
    SET(f, sts_delay_ms, 300);
    hgf_auth_spec s = role_spec();
    rec r = {0}, r2 = {0};
    get_ok(f, &s, &r);
    hgf_err err;
    assert_int_equal(hgf_credmgr_ecr_token(f->m, &s, REGISTRY, NULL, on_token, &r2, &err), 0);
    run_for(f, 0.1); /* the AssumeRole is out */
    hgf_credmgr_free(f->m);
    f->m = NULL;
    run_for(f, 0.5); /* its reply arrives to an orphaned fetch */
    assert_int_equal(r.calls, 0);
    assert_int_equal(r2.calls, 0);
    struct srv sv;
    snap(&f->srv, &sv);
    assert_int_equal(sv.sts_calls, 1);
    assert_int_equal(sv.ecr_calls, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_env_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_web_identity_precedence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_container_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_container_allow_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_imds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_500_waiters_one_sts_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_refresh_per_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_refresh_keeps_old_until_expiry, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_invalidate_one_refresh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_hop_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ecr_token_half_life, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sts_errors_are_reported_without_secrets, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sts_attempts_follow_aws_max_attempts, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_free_with_fetch_in_flight, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
