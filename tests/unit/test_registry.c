/* The registry v2 client: the WWW-Authenticate parser (cases and a small
 * deterministic fuzz), names and digests, the token cache, and the flows
 * against a fake registry served by libmicrohttpd on 127.0.0.1:
 *
 *   /basic/v2/...   wants Basic alice:s3cret (Basic challenge)
 *   /bearer/v2/...  wants a token from /token (Bearer challenge)
 *   /alt/v2/...     the same, but /token answers with "access_token"
 *   /open/v2/...    no auth
 *   /garbage/v2/... and /ftprealm/v2/...  always 401, with a malformed
 *                   challenge or an unusable realm
 *   /token          the token endpoint (counts hits, checks Basic creds)
 *
 * Blobs answer 307 to a second server on another port ("storage") that
 * records whether an Authorization header arrived. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ev.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "hgfleet/buf.h"
#include "hgfleet/registry.h"

#define ALICE "Basic YWxpY2U6czNjcmV0" /* alice:s3cret */
#define MAX_OBJS 24

/* ------------------------------------------------------------------ */
/* the fake registry                                                   */

struct obj {
    char name[80];     /* tag or digest */
    char *body;
    size_t len;
    const char *type;
    int corrupt;       /* storage serves the body with one byte changed */
    int bad_dcd;       /* Docker-Content-Digest names another digest */
};

struct srv {
    struct MHD_Daemon *reg, *store;
    unsigned short reg_port, store_port;
    pthread_mutex_t mu;
    struct obj objs[MAX_OBJS];
    int nobjs;
    int reg_hits, reg_401, token_hits, store_hits, token_seq;
    long expires_in;
    char revoked[64];
    char token_service[128], token_scope[256], token_auth[128];
    char reg_auth[256], store_auth[256];
};

static const char ENDMARK = 0;

static struct obj *add_obj(struct srv *s, const char *name, const char *body, const char *type)
{
    pthread_mutex_lock(&s->mu);
    struct obj *o = &s->objs[s->nobjs];
    snprintf(o->name, sizeof o->name, "%s", name);
    o->len = strlen(body);
    o->body = strdup(body);
    o->type = type;
    s->nobjs++;
    pthread_mutex_unlock(&s->mu);
    return o;
}

/* Objects never move and are not changed once added. */
static const struct obj *find_obj(struct srv *s, const char *name)
{
    pthread_mutex_lock(&s->mu);
    int n = s->nobjs;
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < n; i++)
        if (!strcmp(s->objs[i].name, name))
            return &s->objs[i];
    return NULL;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *body, size_t len,
                             const char *const *hdrs)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    for (size_t i = 0; hdrs && hdrs[i]; i += 2)
        MHD_add_response_header(r, hdrs[i], hdrs[i + 1]);
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_error(struct MHD_Connection *c, unsigned code, const char *ecode,
                                   const char *const *hdrs)
{
    char body[256];
    snprintf(body, sizeof body, "{\"errors\":[{\"code\":\"%s\",\"message\":\"fake %s\"}]}", ecode,
             ecode);
    return reply(c, code, body, strlen(body), hdrs);
}

static const char *header(struct MHD_Connection *c, const char *name)
{
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
    return v ? v : "none";
}

static void copy_locked(struct srv *s, char *dst, size_t n, const char *v)
{
    pthread_mutex_lock(&s->mu);
    snprintf(dst, n, "%s", v ? v : "none");
    pthread_mutex_unlock(&s->mu);
}

static void bump(struct srv *s, int *counter)
{
    pthread_mutex_lock(&s->mu);
    (*counter)++;
    pthread_mutex_unlock(&s->mu);
}

static enum MHD_Result route_token(struct srv *s, struct MHD_Connection *c)
{
    const char *service = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "service");
    const char *scope = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "scope");
    const char *auth = header(c, "Authorization");
    pthread_mutex_lock(&s->mu);
    s->token_hits++;
    int n = ++s->token_seq;
    long exp = s->expires_in;
    snprintf(s->token_service, sizeof s->token_service, "%s", service ? service : "none");
    snprintf(s->token_scope, sizeof s->token_scope, "%s", scope ? scope : "none");
    snprintf(s->token_auth, sizeof s->token_auth, "%s", auth);
    pthread_mutex_unlock(&s->mu);
    if (strcmp(auth, "none") && strcmp(auth, ALICE))
        return reply_error(c, 401, "UNAUTHORIZED", NULL);
    char body[200];
    snprintf(body, sizeof body, "{\"%s\":\"tok-%d\",\"expires_in\":%ld}",
             service && !strcmp(service, "alt") ? "access_token" : "token", n, exp);
    return reply(c, 200, body, strlen(body), NULL);
}

/* NULL when the request may proceed, else the challenge to answer with. */
static const char *challenge_for(struct srv *s, const char *mode, const char *auth, char *buf,
                                 size_t n)
{
    if (!strcmp(mode, "open"))
        return NULL;
    if (!strcmp(mode, "basic"))
        return strcmp(auth, ALICE) ? "Basic realm=\"fake registry\"" : NULL;
    if (!strcmp(mode, "garbage"))
        return "Bearer realm=\"https://auth/token\", scope=\"unterminated";
    if (!strcmp(mode, "ftprealm"))
        return "Bearer realm=\"ftp://127.0.0.1/token\"";
    pthread_mutex_lock(&s->mu);
    int ok = !strncmp(auth, "Bearer tok-", 11) && strcmp(auth + 7, s->revoked);
    pthread_mutex_unlock(&s->mu);
    if (ok)
        return NULL;
    snprintf(buf, n, "Bearer realm=\"http://127.0.0.1:%u/token\",service=\"%s\","
             "scope=\"repository:team/app:pull\"", s->reg_port,
             !strcmp(mode, "alt") ? "alt" : "fake,registry");
    return buf;
}

static enum MHD_Result serve_manifest(struct srv *s, struct MHD_Connection *c, const char *ref)
{
    const struct obj *o = find_obj(s, ref);
    if (!o)
        return reply_error(c, 404, "MANIFEST_UNKNOWN", NULL);
    char dcd[80];
    hgf_registry_sha256(o->body, o->len, dcd);
    if (o->bad_dcd)
        dcd[10] = dcd[10] == '0' ? '1' : '0';
    const char *hdrs[] = {"Content-Type", o->type, "Docker-Content-Digest", dcd, NULL};
    return reply(c, 200, o->body, o->len, hdrs);
}

static enum MHD_Result serve_blob_redirect(struct srv *s, struct MHD_Connection *c, const char *d)
{
    if (!find_obj(s, d))
        return reply_error(c, 404, "BLOB_UNKNOWN", NULL);
    char loc[200];
    snprintf(loc, sizeof loc, "http://127.0.0.1:%u/storage/%s?X-Amz-Signature=abc", s->store_port, d);
    const char *hdrs[] = {"Location", loc, NULL};
    return reply(c, 307, "", 0, hdrs);
}

static enum MHD_Result route_registry(struct srv *s, struct MHD_Connection *c, const char *url)
{
    char mode[16], kind[16], ref[100];
    const char *auth = header(c, "Authorization");
    copy_locked(s, s->reg_auth, sizeof s->reg_auth, auth);
    bump(s, &s->reg_hits);
    if (sscanf(url, "/%15[a-z]/v2/team/app/%15[a-z]/%99s", mode, kind, ref) != 3)
        return reply_error(c, 404, "NAME_UNKNOWN", NULL);
    char chbuf[300];
    const char *ch = challenge_for(s, mode, auth, chbuf, sizeof chbuf);
    if (ch) {
        bump(s, &s->reg_401);
        const char *hdrs[] = {"WWW-Authenticate", ch, NULL};
        return reply_error(c, 401, "UNAUTHORIZED", hdrs);
    }
    return !strcmp(kind, "manifests") ? serve_manifest(s, c, ref) : serve_blob_redirect(s, c, ref);
}

static enum MHD_Result on_reg(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    if (!*con_cls) {
        *con_cls = (void *)&ENDMARK;
        return MHD_YES;
    }
    struct srv *s = cls;
    if (!strcmp(url, "/token"))
        return route_token(s, c);
    return route_registry(s, c, url);
}

static enum MHD_Result on_store(void *cls, struct MHD_Connection *c, const char *url,
                                const char *method, const char *version, const char *upload,
                                size_t *upload_size, void **con_cls)
{
    if (!*con_cls) {
        *con_cls = (void *)&ENDMARK;
        return MHD_YES;
    }
    struct srv *s = cls;
    bump(s, &s->store_hits);
    copy_locked(s, s->store_auth, sizeof s->store_auth,
                MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"));
    const struct obj *o = strncmp(url, "/storage/", 9) ? NULL : find_obj(s, url + 9);
    if (!o)
        return reply(c, 404, "<Error><Code>NoSuchKey</Code></Error>", 37, NULL);
    char *body = malloc(o->len + 1);
    memcpy(body, o->body, o->len);
    if (o->corrupt)
        body[0] ^= 1;
    const char *hdrs[] = {"Content-Type", "application/octet-stream", NULL};
    enum MHD_Result r = reply(c, 200, body, o->len, hdrs);
    free(body);
    return r;
}

static struct MHD_Daemon *start_daemon(MHD_AccessHandlerCallback h, struct srv *s,
                                       unsigned short *port)
{
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, h, s,
                                            MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_END);
    const union MHD_DaemonInfo *info = d ? MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT) : NULL;
    *port = info ? info->port : 0;
    return d;
}

/* ------------------------------------------------------------------ */
/* test images                                                         */

#define OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCI_INDEX "application/vnd.oci.image.index.v1+json"

struct images {
    char cfg_amd[80], cfg_arm[80], man_amd[80], man_arm[80], index[80], corrupt[80];
    char badsize[80];
};

static struct obj *add_by_digest(struct srv *s, const char *body, const char *type, char out[80])
{
    hgf_registry_sha256(body, strlen(body), out);
    return add_obj(s, out, body, type);
}

static void make_manifest(struct srv *s, const char *cfg_body, char cfg[80], char man[80])
{
    add_by_digest(s, cfg_body, "application/octet-stream", cfg);
    char body[600];
    snprintf(body, sizeof body, "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MANIFEST "\","
             "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
             "\"digest\":\"%s\",\"size\":%zu},\"layers\":[]}", cfg, strlen(cfg_body));
    add_by_digest(s, body, OCI_MANIFEST, man);
}

static void make_index(struct srv *s, struct images *im, const char *tag, long amd_size_delta,
                       char out[80])
{
    const struct obj *amd = find_obj(s, im->man_amd), *arm = find_obj(s, im->man_arm);
    char body[1200];
    snprintf(body, sizeof body, "{\"schemaVersion\":2,\"mediaType\":\"" OCI_INDEX "\",\"manifests\":["
             "{\"mediaType\":\"" OCI_MANIFEST "\",\"digest\":\"%s\",\"size\":%zu,"
             "\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\"}},"
             "{\"mediaType\":\"" OCI_MANIFEST "\",\"digest\":\"%s\",\"size\":%ld,"
             "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}}]}",
             im->man_arm, arm->len, im->man_amd, (long)amd->len + amd_size_delta);
    add_by_digest(s, body, OCI_INDEX, out);
    add_obj(s, tag, body, OCI_INDEX);
}

static void add_images(struct srv *s, struct images *im)
{
    make_manifest(s, "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"User\":\"1000\"}}",
                  im->cfg_amd, im->man_amd);
    make_manifest(s, "{\"architecture\":\"arm64\",\"os\":\"linux\",\"config\":{\"User\":\"2000\"}}",
                  im->cfg_arm, im->man_arm);
    add_obj(s, "v1", find_obj(s, im->man_amd)->body, OCI_MANIFEST);
    make_index(s, im, "multi", 0, im->index);
    make_index(s, im, "badsize", 1, im->badsize);
    add_obj(s, "liar", find_obj(s, im->man_amd)->body, OCI_MANIFEST)->bad_dcd = 1;
    add_by_digest(s, "layer bytes that storage will corrupt", "application/octet-stream",
                  im->corrupt)->corrupt = 1;
}

/* ------------------------------------------------------------------ */
/* the client side                                                     */

struct fix {
    struct srv s;
    struct images im;
    struct ev_loop *loop;
    hgf_http *h;
    hgf_registry_tokens *tokens;
    int done;
    char base[64];
};

struct got {
    struct fix *f;
    int called, rc;
    long status;
    char code[64], msg[1024], digest[80], media[160];
    char body[2048];  /* the first bytes, for checks */
    int has_body;
    size_t len;
    long long clen;
    hgf_registry_scheme auth_used;
};

struct gotimg {
    struct fix *f;
    int called, rc, ref_fetched;
    char msg[1024], index[80], platform[64], manifest[80], config_digest[80], user[32], media[160];
    char ref_media[160];
};

static void on_result(const hgf_registry_result *r, void *arg)
{
    struct got *g = arg;
    g->called++;
    g->rc = r->rc;
    g->status = r->status;
    g->auth_used = r->auth_used;
    g->clen = r->content_length;
    snprintf(g->code, sizeof g->code, "%s", r->err.aws_code);
    snprintf(g->msg, sizeof g->msg, "%s", r->err.msg);
    snprintf(g->digest, sizeof g->digest, "%s", r->digest);
    snprintf(g->media, sizeof g->media, "%s", r->media_type);
    g->has_body = r->body != NULL;
    size_t keep = r->body_len < sizeof g->body ? r->body_len : sizeof g->body - 1;
    snprintf(g->body, sizeof g->body, "%.*s", (int)keep, r->body ? r->body : "");
    g->len = r->body_len;
    g->f->done++;
}

static void on_image(const hgf_registry_image *img, void *arg)
{
    struct gotimg *g = arg;
    g->called++;
    g->rc = img->rc;
    snprintf(g->msg, sizeof g->msg, "%s", img->err.msg);
    snprintf(g->index, sizeof g->index, "%s", img->index_digest);
    snprintf(g->platform, sizeof g->platform, "%s", img->platform);
    snprintf(g->manifest, sizeof g->manifest, "%s", img->manifest_digest);
    snprintf(g->config_digest, sizeof g->config_digest, "%s", img->config_digest);
    snprintf(g->media, sizeof g->media, "%s", img->media_type);
    g->ref_fetched = img->reference_fetched;
    snprintf(g->ref_media, sizeof g->ref_media, "%s", img->reference_media_type);
    const char *u = json_string_value(json_object_get(json_object_get(img->config, "config"), "User"));
    snprintf(g->user, sizeof g->user, "%s", u ? u : "");
    if (!img->rc) {
        char d[80];
        hgf_registry_sha256(img->manifest, img->manifest_len, d);
        assert_string_equal(d, img->manifest_digest);
        hgf_registry_sha256(img->config_body, img->config_len, d);
        assert_string_equal(d, img->config_digest);
    }
    g->f->done++;
}

static void watchdog(struct ev_loop *loop, ev_timer *w, int revents)
{
    *(int *)w->data = 1;
}

static int run_until(struct fix *f, int n, double secs)
{
    int expired = 0;
    ev_timer wd;
    ev_timer_init(&wd, watchdog, secs, 0.);
    wd.data = &expired;
    ev_timer_start(f->loop, &wd);
    while (f->done < n && !expired)
        ev_run(f->loop, EVRUN_ONCE);
    ev_timer_stop(f->loop, &wd);
    return f->done >= n;
}

static const char *base_of(struct fix *f, const char *mode)
{
    snprintf(f->base, sizeof f->base, "http://127.0.0.1:%u/%s", f->s.reg_port, mode);
    return f->base;
}

static const hgf_registry_auth ALICE_AUTH = {NULL, "alice", "s3cret"};
static const hgf_registry_auth WRONG_AUTH = {NULL, "alice", "not-it"};

/* One request, run to its callback. */
static void fetch(struct fix *f, const char *mode, const char *ref, int head, int blob,
                  const hgf_registry_auth *auth, struct got *g)
{
    memset(g, 0, sizeof *g);
    g->f = f;
    hgf_registry_req req = {.http = f->h, .proxy_endpoint = base_of(f, mode), .auth = auth,
                            .tokens = f->tokens, .repository = "team/app", .reference = ref,
                            .limit_key = "fake", .head = head};
    hgf_err err;
    int want = f->done + 1;
    int rc = blob ? hgf_registry_blob(&req, on_result, g, &err)
                  : hgf_registry_manifest(&req, on_result, g, &err);
    assert_int_equal(rc, 0);
    assert_true(run_until(f, want, 10));
    assert_int_equal(g->called, 1);
}

static void fetch_image(struct fix *f, const char *mode, const char *ref,
                        const hgf_registry_auth *auth, struct gotimg *g)
{
    memset(g, 0, sizeof *g);
    g->f = f;
    hgf_registry_req req = {.http = f->h, .proxy_endpoint = base_of(f, mode), .auth = auth,
                            .tokens = f->tokens, .repository = "team/app", .reference = ref,
                            .limit_key = "fake"};
    hgf_err err;
    int want = f->done + 1;
    assert_int_equal(hgf_registry_image_config(&req, on_image, g, &err), 0);
    assert_true(run_until(f, want, 10));
    assert_int_equal(g->called, 1);
}

static int counter(struct fix *f, const int *c)
{
    pthread_mutex_lock(&f->s.mu);
    int n = *c;
    pthread_mutex_unlock(&f->s.mu);
    return n;
}

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    pthread_mutex_init(&f->s.mu, NULL);
    f->s.expires_in = 300;
    f->s.reg = start_daemon(on_reg, &f->s, &f->s.reg_port);
    f->s.store = start_daemon(on_store, &f->s, &f->s.store_port);
    add_images(&f->s, &f->im);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    hgf_err err;
    hgf_http_opts o = {0};
    f->h = f->loop ? hgf_http_new(f->loop, &o, &err) : NULL;
    f->tokens = hgf_registry_tokens_new();
    *state = f;
    return f->s.reg_port && f->s.store_port && f->h && f->tokens ? 0 : -1;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    hgf_http_free(f->h);
    if (f->loop)
        ev_loop_destroy(f->loop);
    hgf_registry_tokens_free(f->tokens);
    if (f->s.reg)
        MHD_stop_daemon(f->s.reg);
    if (f->s.store)
        MHD_stop_daemon(f->s.store);
    for (int i = 0; i < f->s.nobjs; i++)
        free(f->s.objs[i].body);
    pthread_mutex_destroy(&f->s.mu);
    free(f);
    return 0;
}

/* ------------------------------------------------------------------ */
/* challenge parsing                                                   */

static void parse_ok(const char *h, hgf_registry_challenge *ch)
{
    hgf_err err;
    hgf_err_clear(&err);
    int rc = hgf_registry_parse_challenge(h, ch, &err);
    if (rc)
        fail_msg("parse_challenge(%s): %s", h, err.msg);
}

static void parse_bad(const char *h, const char *why)
{
    hgf_registry_challenge ch;
    hgf_err err;
    hgf_err_clear(&err);
    assert_int_equal(hgf_registry_parse_challenge(h, &ch, &err), HGF_EINPUT);
    assert_int_equal(ch.scheme, HGF_REGISTRY_NONE);
    assert_string_equal(ch.realm, "");
    if (!strstr(err.msg, why))
        fail_msg("parse_challenge(%s): \"%s\" lacks \"%s\"", h ? h : "(null)", err.msg, why);
}

static void test_challenge_basic(void **state)
{
    hgf_registry_challenge ch;
    parse_ok("Basic realm=\"Registry Realm\"", &ch);
    assert_int_equal(ch.scheme, HGF_REGISTRY_BASIC);
    assert_string_equal(ch.realm, "Registry Realm");
    parse_ok("bAsIc realm=hgf-test", &ch);  /* case-insensitive scheme, token value */
    assert_int_equal(ch.scheme, HGF_REGISTRY_BASIC);
    assert_string_equal(ch.realm, "hgf-test");
    parse_ok("Basic", &ch);  /* realm-less Basic is tolerated */
    assert_int_equal(ch.scheme, HGF_REGISTRY_BASIC);
    parse_ok("Basic RealM=\"x\", charset=\"UTF-8\"", &ch);  /* case-insensitive names */
    assert_string_equal(ch.realm, "x");
}

static void test_challenge_bearer(void **state)
{
    hgf_registry_challenge ch;
    parse_ok("Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
             "scope=\"repository:library/ubuntu:pull\"", &ch);
    assert_int_equal(ch.scheme, HGF_REGISTRY_BEARER);
    assert_string_equal(ch.realm, "https://auth.docker.io/token");
    assert_string_equal(ch.service, "registry.docker.io");
    assert_string_equal(ch.scope, "repository:library/ubuntu:pull");
    assert_string_equal(ch.error, "");
    /* Quoted commas, escapes, whitespace around '=' and ',', an unknown
     * parameter, and the error parameter. */
    parse_ok("BEARER  realm = \"https://a/t?x=1,2\" ,service=\"a\\\\b \\\"q\\\"\" , "
             "scope=\"repository:a:pull,push repository:b:pull\",foo=bar,error=\"invalid_token\"",
             &ch);
    assert_int_equal(ch.scheme, HGF_REGISTRY_BEARER);
    assert_string_equal(ch.realm, "https://a/t?x=1,2");
    assert_string_equal(ch.service, "a\\b \"q\"");
    assert_string_equal(ch.scope, "repository:a:pull,push repository:b:pull");
    assert_string_equal(ch.error, "invalid_token");
    parse_ok("Bearer realm=\"\\h\\t\\t\\p\"", &ch);  /* any escaped char stands for itself */
    assert_string_equal(ch.realm, "http");
}

static void test_challenge_several(void **state)
{
    hgf_registry_challenge ch;
    parse_ok("Newauth realm=\"apps\", type=1, title=\"Login to \\\"apps\\\"\", Basic realm=\"simple\"",
             &ch);
    assert_int_equal(ch.scheme, HGF_REGISTRY_BASIC);
    assert_string_equal(ch.realm, "simple");
    parse_ok("Negotiate abc+/==, Bearer realm=\"r\", Basic realm=\"b\"", &ch);
    assert_int_equal(ch.scheme, HGF_REGISTRY_BEARER);  /* the first one we support wins */
    assert_string_equal(ch.realm, "r");
    parse_ok(", ,Basic realm=a,, ,Bearer realm=b,", &ch);  /* empty list elements */
    assert_int_equal(ch.scheme, HGF_REGISTRY_BASIC);
    assert_string_equal(ch.realm, "a");
    parse_ok("Bearer realm=\"x\", Digest", &ch);
    assert_string_equal(ch.realm, "x");
}

static void test_challenge_errors(void **state)
{
    parse_bad(NULL, "missing");
    parse_bad("", "no Basic or Bearer");
    parse_bad(" , ", "no Basic or Bearer");
    parse_bad("Digest realm=\"x\", nonce=\"y\"", "no Basic or Bearer");
    parse_bad("Bearer", "without realm");
    parse_bad("Bearer service=\"s\"", "without realm");
    parse_bad("Bearer realm=\"unterminated", "unterminated");
    parse_bad("Bearer realm=\"ends in a backslash\\", "unterminated");
    parse_bad("Bearer realm=\"a\", service=", "expected a parameter value");
    parse_bad("Bearer realm=", "without realm");  /* "realm=" alone reads as a token68 */
    parse_bad("Bearer realm=\"a\" service=\"b\"", "expected ','");
    parse_bad("Bearer realm=\"a\", realm=\"b\"", "twice");
    parse_bad("Bearer REALM=\"a\", realm=\"b\"", "twice");
    parse_bad("Bearer realm=\"a\x01\"", "control character");
    parse_bad("Bearer realm=\"a\\\x7f\"", "control character");
    parse_bad("=", "expected an auth scheme");
    parse_bad("\"Bearer\" realm=x", "expected an auth scheme");
    parse_bad("Bearer/x realm=a", "expected a space");
    parse_bad("Bearer realm=a b", "expected ','");
    parse_bad("Bearer =a", "expected a parameter name");
    parse_bad("Bearer realm=\"a\", Digest realm=\"x", "unterminated");  /* later ones count too */
    char big[2100];
    memset(big, 'x', sizeof big);
    memcpy(big, "Bearer realm=\"", 14);
    big[sizeof big - 2] = '"';
    big[sizeof big - 1] = '\0';
    parse_bad(big, "realm is longer than 1023");
}

/* Mutations of valid headers plus random bytes: every input ends in 0 or
 * HGF_EINPUT, and a success always yields a terminated, supported result. */
static void test_challenge_fuzz(void **state)
{
    static const char *const SEEDS[] = {
        "Bearer realm=\"https://auth/token\",service=\"registry\",scope=\"repository:a:pull\"",
        "Basic realm=\"Registry Realm\"", "Newauth realm=\"a\\\"b\", Basic realm=x",
        "Negotiate abc==, Bearer realm=r, error=\"insufficient_scope\""};
    static const char ALPHABET[] = "\"\\=, \tBasicBearerrealm\x01\x7f\xff";
    uint32_t x = 12345;
    char buf[256];
    for (int it = 0; it < 50000; it++) {
        x = x * 1103515245u + 12345u;
        const char *seed = SEEDS[(x >> 16) % 4];
        size_t n = strlen(seed);
        memcpy(buf, seed, n + 1);
        for (int m = 0; m < 1 + (int)((x >> 8) % 4); m++) {
            x = x * 1103515245u + 12345u;
            size_t pos = (x >> 16) % n;
            char c = (it % 7 == 0) ? (char)((x >> 3) & 0xff) : ALPHABET[(x >> 10) % (sizeof ALPHABET - 1)];
            int op = (int)((x >> 4) & 3);
            if (op == 0 && n > 1) {
                memmove(buf + pos, buf + pos + 1, n - pos);
                n--;
            } else if (op == 1 && n + 2 < sizeof buf) {
                memmove(buf + pos + 1, buf + pos, n - pos + 1);
                buf[pos] = c ? c : 'x';
                n++;
            } else {
                buf[pos] = c ? c : 'y';
            }
        }
        buf[n] = '\0';
        hgf_registry_challenge ch;
        hgf_err err;
        int rc = hgf_registry_parse_challenge(buf, &ch, &err);
        assert_true(rc == 0 || rc == HGF_EINPUT);
        if (rc == 0) {
            assert_true(ch.scheme == HGF_REGISTRY_BASIC || ch.scheme == HGF_REGISTRY_BEARER);
            assert_true(memchr(ch.realm, 0, sizeof ch.realm) && memchr(ch.scope, 0, sizeof ch.scope));
            assert_true(ch.scheme == HGF_REGISTRY_BASIC || ch.realm[0]);
        }
    }
}

/* ------------------------------------------------------------------ */
/* names, digests and the token cache                                  */

static void test_names(void **state)
{
    char d[80];
    hgf_registry_sha256("", 0, d);
    assert_string_equal(d, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_true(hgf_registry_is_digest(d));
    assert_false(hgf_registry_is_digest("sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"));
    assert_false(hgf_registry_is_digest("sha256:e3b0"));
    assert_false(hgf_registry_is_digest("sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    assert_false(hgf_registry_is_digest(NULL));

    /* The distribution spec's grammar, component by component. */
    static const char *const GOOD[] = {"a", "app", "team/app", "a.b", "a_b", "a__b", "a-b",
                                       "a---b", "a1/b2/c3", "x.y-z__w/v"};
    for (size_t i = 0; i < sizeof GOOD / sizeof GOOD[0]; i++)
        if (!hgf_registry_valid_repository(GOOD[i]))
            fail_msg("\"%s\" refused", GOOD[i]);
    static const char *const BAD_NAMES[] = {"", "/a", "a/", "a//b", "../etc", "../../etc", "a/..",
                                            "ab.", ".ab", "a..b", "a___b", "-ab", "ab-", "a._b",
                                            "A", "a b", "a/./b", "a:b"};
    for (size_t i = 0; i < sizeof BAD_NAMES / sizeof BAD_NAMES[0]; i++)
        if (hgf_registry_valid_repository(BAD_NAMES[i]))
            fail_msg("\"%s\" accepted", BAD_NAMES[i]);
    char longest[258];
    memset(longest, 'a', 257);
    longest[257] = '\0';
    assert_false(hgf_registry_valid_repository(longest));
    longest[256] = '\0';
    assert_true(hgf_registry_valid_repository(longest));

    hgf_registry_ref r;
    hgf_err err;
    assert_int_equal(hgf_registry_parse_ref("http://127.0.0.1:5000/team/app:v1", &r, &err), 0);
    assert_string_equal(r.base, "http://127.0.0.1:5000");
    assert_string_equal(r.repository, "team/app");
    assert_string_equal(r.reference, "v1");
    assert_int_equal(hgf_registry_parse_ref("https://reg.example.com/a/b/c", &r, &err), 0);
    assert_string_equal(r.base, "https://reg.example.com");
    assert_string_equal(r.repository, "a/b/c");
    assert_string_equal(r.reference, "latest");
    char url[200];
    snprintf(url, sizeof url, "http://localhost:5000/app@%s", d);
    assert_int_equal(hgf_registry_parse_ref(url, &r, &err), 0);
    assert_string_equal(r.repository, "app");
    assert_string_equal(r.reference, d);

    static const struct {
        const char *in, *why;
    } BAD[] = {
        {"ftp://h/app", "expected http://"},        {"127.0.0.1:5000/app", "expected http://"},
        {"http://127.0.0.1:5000", "no repository"}, {"http://127.0.0.1:5000/", "no repository"},
        {"http://u:p@h/app", "credentials"},        {"http://h/Team/App", "repository name"},
        {"http://h/app:bad/tag", "repository name"}, {"http://h/app:-x", "not a valid tag"},
        {"http://h/app@sha256:abc", "digest"},      {"http://h o/app", "host"},
    };
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        assert_int_equal(hgf_registry_parse_ref(BAD[i].in, &r, &err), HGF_EINPUT);
        if (!strstr(err.msg, BAD[i].why))
            fail_msg("%s: \"%s\" lacks \"%s\"", BAD[i].in, err.msg, BAD[i].why);
    }
}

static void test_token_cache(void **state)
{
    hgf_registry_tokens *t = hgf_registry_tokens_new();
    hgf_err err;
    hgf_registry_token_key k = {"https://auth/token", "reg", "repository:a:pull", "alice",
                                "https://reg", "a"};
    assert_null(hgf_registry_tokens_get(t, &k));
    assert_int_equal(hgf_registry_tokens_put(t, &k, "tok-1", 300, &err), 0);
    assert_string_equal(hgf_registry_tokens_get(t, &k), "tok-1");
    assert_string_equal(hgf_registry_tokens_for_repo(t, &k), "tok-1");
    hgf_registry_token_key bob = k, other_scope = k, other_repo = k;
    bob.username = "bob";
    other_scope.scope = "repository:b:pull";
    other_repo.repository = "b";
    assert_null(hgf_registry_tokens_get(t, &bob));  /* tokens never cross credentials */
    assert_null(hgf_registry_tokens_for_repo(t, &bob));
    assert_null(hgf_registry_tokens_get(t, &other_scope));
    assert_null(hgf_registry_tokens_for_repo(t, &other_repo));
    assert_int_equal(hgf_registry_tokens_put(t, &k, "tok-2", 300, &err), 0);  /* replaces */
    assert_string_equal(hgf_registry_tokens_get(t, &k), "tok-2");
    hgf_registry_tokens_drop(t, "tok-2");
    assert_null(hgf_registry_tokens_get(t, &k));
    assert_int_equal(hgf_registry_tokens_put(t, &k, "", 300, &err), HGF_EINPUT);

    /* expires_in 1: used for 0.75 s (a quarter of its life is kept back). */
    assert_int_equal(hgf_registry_tokens_put(t, &k, "short", 1, &err), 0);
    assert_string_equal(hgf_registry_tokens_get(t, &k), "short");
    struct timespec nap = {0, 800 * 1000 * 1000};
    nanosleep(&nap, NULL);
    assert_null(hgf_registry_tokens_get(t, &k));

    /* Full: the entry expiring first makes room. */
    char scope[64], tok[64];
    for (int i = 0; i < 65; i++) {
        snprintf(scope, sizeof scope, "repository:r%d:pull", i);
        snprintf(tok, sizeof tok, "tok-r%d", i);
        hgf_registry_token_key ki = k;
        ki.scope = scope;
        assert_int_equal(hgf_registry_tokens_put(t, &ki, tok, 300 + i, &err), 0);
    }
    hgf_registry_token_key first = k, last = k;
    first.scope = "repository:r0:pull";
    last.scope = "repository:r64:pull";
    assert_null(hgf_registry_tokens_get(t, &first));
    assert_string_equal(hgf_registry_tokens_get(t, &last), "tok-r64");
    hgf_registry_tokens_free(t);
}

/* ------------------------------------------------------------------ */
/* flows against the fake registry                                     */

static void test_basic_challenge(void **state)
{
    struct fix *f = *state;
    struct got g;
    fetch(f, "basic", "v1", 0, 0, &ALICE_AUTH, &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.auth_used, HGF_REGISTRY_BASIC);
    assert_string_equal(g.digest, f->im.man_amd);
    assert_string_equal(g.media, OCI_MANIFEST);
    assert_int_equal(counter(f, &f->s.reg_hits), 2);
    assert_string_equal(f->s.reg_auth, ALICE);

    fetch(f, "basic", "v1", 0, 0, &WRONG_AUTH, &g);  /* one retry, then the registry's answer */
    assert_int_equal(g.rc, HGF_EAWS);
    assert_int_equal(g.status, 401);
    assert_string_equal(g.code, "UNAUTHORIZED");
    assert_null(strstr(g.msg, "not-it"));
    assert_int_equal(counter(f, &f->s.reg_hits), 4);

    fetch(f, "basic", "v1", 1, 0, NULL, &g);  /* nothing to retry with */
    assert_int_equal(g.rc, HGF_EAWS);
    assert_string_equal(g.code, "UNAUTHORIZED");
    assert_int_equal(counter(f, &f->s.reg_hits), 5);

    fetch(f, "basic", "nope", 0, 0, &ALICE_AUTH, &g);
    assert_int_equal(g.rc, HGF_ENOTFOUND);
    assert_string_equal(g.code, "MANIFEST_UNKNOWN");
}

/* ECR's flow: a preset "Basic <token>" goes first and alone. */
static void test_preset_authorization(void **state)
{
    struct fix *f = *state;
    struct got g;
    memset(&g, 0, sizeof g);
    g.f = f;
    hgf_registry_req req = {.http = f->h, .proxy_endpoint = base_of(f, "basic"),
                            .authorization = ALICE, .repository = "team/app",
                            .reference = f->im.man_amd, .limit_key = "ecr", .head = 1};
    hgf_err err;
    assert_int_equal(hgf_registry_manifest(&req, on_result, &g, &err), 0);
    assert_true(run_until(f, 1, 10));
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.auth_used, HGF_REGISTRY_NONE);
    assert_string_equal(g.digest, f->im.man_amd);
    assert_int_equal(g.clen, (long long)find_obj(&f->s, f->im.man_amd)->len);
    assert_false(g.has_body);
    assert_int_equal(counter(f, &f->s.reg_hits), 1);
    assert_int_equal(counter(f, &f->s.reg_401), 0);
}

static void test_bearer_flow_and_cache(void **state)
{
    struct fix *f = *state;
    struct got g;
    fetch(f, "bearer", "v1", 0, 0, &ALICE_AUTH, &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.auth_used, HGF_REGISTRY_BEARER);
    assert_string_equal(g.digest, f->im.man_amd);
    assert_int_equal(counter(f, &f->s.token_hits), 1);
    assert_string_equal(f->s.token_service, "fake,registry");  /* encoded and decoded */
    assert_string_equal(f->s.token_scope, "repository:team/app:pull");
    assert_string_equal(f->s.token_auth, ALICE);
    assert_string_equal(f->s.reg_auth, "Bearer tok-1");
    assert_int_equal(counter(f, &f->s.reg_hits), 2);

    /* The cached token goes out at once: no 401, no token request. */
    fetch(f, "bearer", f->im.man_amd, 1, 0, &ALICE_AUTH, &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(counter(f, &f->s.token_hits), 1);
    assert_int_equal(counter(f, &f->s.reg_hits), 3);
    assert_int_equal(counter(f, &f->s.reg_401), 1);

    /* A refused cached token is dropped and a new one fetched. */
    pthread_mutex_lock(&f->s.mu);
    snprintf(f->s.revoked, sizeof f->s.revoked, "tok-1");
    pthread_mutex_unlock(&f->s.mu);
    fetch(f, "bearer", "v1", 0, 0, &ALICE_AUTH, &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(counter(f, &f->s.token_hits), 2);
    assert_string_equal(f->s.reg_auth, "Bearer tok-2");
    fetch(f, "bearer", "v1", 0, 0, &ALICE_AUTH, &g);
    assert_int_equal(counter(f, &f->s.token_hits), 2);

    /* Anonymous pulls get their own token, without credentials. */
    fetch(f, "bearer", "v1", 0, 0, NULL, &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(counter(f, &f->s.token_hits), 3);
    assert_string_equal(f->s.token_auth, "none");
}

static void test_bearer_expiry_and_no_cache(void **state)
{
    struct fix *f = *state;
    struct got g;
    f->s.expires_in = 1;
    fetch(f, "alt", "v1", 0, 0, &ALICE_AUTH, &g);  /* "access_token" form */
    assert_int_equal(g.rc, 0);
    assert_string_equal(f->s.token_service, "alt");
    assert_int_equal(counter(f, &f->s.token_hits), 1);
    fetch(f, "alt", "v1", 0, 0, &ALICE_AUTH, &g);
    assert_int_equal(counter(f, &f->s.token_hits), 1);
    struct timespec nap = {0, 800 * 1000 * 1000};
    nanosleep(&nap, NULL);
    fetch(f, "alt", "v1", 0, 0, &ALICE_AUTH, &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(counter(f, &f->s.token_hits), 2);

    hgf_registry_tokens_free(f->tokens);  /* without a cache every request asks */
    f->tokens = NULL;
    fetch(f, "alt", "v1", 0, 0, &ALICE_AUTH, &g);
    fetch(f, "alt", "v1", 0, 0, &ALICE_AUTH, &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(counter(f, &f->s.token_hits), 4);
}

static void test_token_endpoint_refuses(void **state)
{
    struct fix *f = *state;
    struct got g;
    fetch(f, "bearer", "v1", 0, 0, &WRONG_AUTH, &g);
    assert_int_equal(g.rc, HGF_EAWS);
    assert_int_equal(g.status, 401);
    assert_string_equal(g.code, "UNAUTHORIZED");
    assert_non_null(strstr(g.msg, "token endpoint http://127.0.0.1:"));
    assert_null(strstr(g.msg, "not-it"));
    assert_int_equal(counter(f, &f->s.token_hits), 1);
    assert_int_equal(counter(f, &f->s.reg_hits), 1);
}

/* A challenge we cannot follow leaves the 401 as the answer, with why. */
static void test_bad_challenges(void **state)
{
    struct fix *f = *state;
    struct got g;
    fetch(f, "garbage", "v1", 0, 0, &ALICE_AUTH, &g);
    assert_int_equal(g.rc, HGF_EAWS);
    assert_string_equal(g.code, "UNAUTHORIZED");
    assert_non_null(strstr(g.msg, "(WWW-Authenticate: unterminated quoted string"));
    fetch(f, "ftprealm", "v1", 0, 0, &ALICE_AUTH, &g);
    assert_int_equal(g.rc, HGF_EAWS);
    assert_non_null(strstr(g.msg, "is not an https URL"));
    assert_int_equal(counter(f, &f->s.token_hits), 0);
    assert_int_equal(counter(f, &f->s.reg_hits), 2);
}

static void test_blob_redirect_keeps_auth_home(void **state)
{
    struct fix *f = *state;
    struct got g;
    fetch(f, "bearer", f->im.cfg_amd, 0, 1, &ALICE_AUTH, &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.status, 200);
    assert_string_equal(g.digest, f->im.cfg_amd);
    assert_non_null(strstr(g.body, "\"User\":\"1000\""));
    assert_string_equal(f->s.reg_auth, "Bearer tok-1");
    assert_int_equal(counter(f, &f->s.store_hits), 1);
    assert_string_equal(f->s.store_auth, "none");  /* another port: no Authorization */

    fetch(f, "basic", f->im.cfg_arm, 0, 1, &ALICE_AUTH, &g);
    assert_int_equal(g.rc, 0);
    assert_string_equal(f->s.reg_auth, ALICE);
    assert_string_equal(f->s.store_auth, "none");

    char absent[80];
    hgf_registry_sha256("absent", 6, absent);
    fetch(f, "open", absent, 0, 1, NULL, &g);  /* 404 from the registry */
    assert_int_equal(g.rc, HGF_ENOTFOUND);
    assert_string_equal(g.code, "BLOB_UNKNOWN");
    assert_int_equal(counter(f, &f->s.store_hits), 2);
}

static void test_digest_mismatch(void **state)
{
    struct fix *f = *state;
    struct got g;
    fetch(f, "open", f->im.corrupt, 0, 1, NULL, &g);  /* storage serves other bytes */
    assert_int_equal(g.rc, HGF_EHTTP);
    assert_non_null(strstr(g.msg, "does not match the requested digest"));

    fetch(f, "open", "liar", 0, 0, NULL, &g);  /* Docker-Content-Digest lies */
    assert_int_equal(g.rc, HGF_EHTTP);
    assert_non_null(strstr(g.msg, "does not match Docker-Content-Digest"));

    fetch(f, "open", "liar", 1, 0, NULL, &g);  /* HEAD by tag cannot tell */
    assert_int_equal(g.rc, 0);

    /* A manifest asked for by digest whose body hashes elsewhere (and whose
     * Docker-Content-Digest agrees with the body). */
    char fake[80];
    hgf_registry_sha256("not this body", 13, fake);
    add_obj(&f->s, fake, "{}", OCI_MANIFEST);
    fetch(f, "open", fake, 0, 0, NULL, &g);
    assert_int_equal(g.rc, HGF_EHTTP);
    assert_non_null(strstr(g.msg, "does not match the requested digest"));

    /* Size cap on blobs. */
    memset(&g, 0, sizeof g);
    g.f = f;
    hgf_registry_req req = {.http = f->h, .proxy_endpoint = base_of(f, "open"),
                            .repository = "team/app", .reference = f->im.cfg_amd, .max_body = 10};
    hgf_err err;
    int want = f->done + 1;
    assert_int_equal(hgf_registry_blob(&req, on_result, &g, &err), 0);
    assert_true(run_until(f, want, 10));
    assert_int_equal(g.rc, HGF_EHTTP);
    assert_non_null(strstr(g.msg, "larger than the cap of 10 bytes"));
}

static void test_image_config_index(void **state)
{
    struct fix *f = *state;
    struct gotimg g;
    fetch_image(f, "bearer", "multi", &ALICE_AUTH, &g);
    if (g.rc)
        fail_msg("%s", g.msg);
    assert_string_equal(g.user, "1000");  /* the arm64 entry comes first and says 2000 */
    assert_string_equal(g.platform, "linux/amd64");
    assert_string_equal(g.index, f->im.index);
    assert_string_equal(g.manifest, f->im.man_amd);
    assert_string_equal(g.config_digest, f->im.cfg_amd);
    assert_string_equal(g.media, OCI_MANIFEST);
    /* What the tag names, as a HEAD of it would say: the index. */
    assert_int_equal(g.ref_fetched, 1);
    assert_string_equal(g.ref_media, OCI_INDEX);
    assert_int_equal(counter(f, &f->s.token_hits), 1);  /* one token for all three steps */
    assert_int_equal(counter(f, &f->s.reg_401), 1);
    assert_string_equal(f->s.store_auth, "none");

    fetch_image(f, "basic", f->im.index, &ALICE_AUTH, &g);  /* by digest, Basic */
    assert_int_equal(g.rc, 0);
    assert_string_equal(g.user, "1000");
    assert_int_equal(counter(f, &f->s.reg_401), 2);  /* Basic is sent at once after the first */

    fetch_image(f, "open", "v1", NULL, &g);  /* a plain manifest: no index */
    assert_int_equal(g.rc, 0);
    assert_string_equal(g.index, "");
    assert_string_equal(g.platform, "");
    assert_string_equal(g.manifest, f->im.man_amd);
    assert_string_equal(g.user, "1000");
    assert_string_equal(g.ref_media, OCI_MANIFEST);
}

static void test_image_config_errors(void **state)
{
    struct fix *f = *state;
    struct gotimg g;
    fetch_image(f, "open", "badsize", NULL, &g);
    assert_int_equal(g.rc, HGF_EHTTP);
    assert_non_null(strstr(g.msg, "descriptor says"));
    /* The index itself came: the platform manifest is what failed. */
    assert_int_equal(g.ref_fetched, 1);
    assert_string_equal(g.ref_media, OCI_INDEX);

    fetch_image(f, "open", "missing", NULL, &g);
    assert_int_equal(g.rc, HGF_ENOTFOUND);
    assert_non_null(strstr(g.msg, "MANIFEST_UNKNOWN"));
    assert_int_equal(g.ref_fetched, 0);
    assert_string_equal(g.ref_media, "");

    fetch_image(f, "basic", "multi", &WRONG_AUTH, &g);
    assert_int_equal(g.rc, HGF_EAWS);
    assert_non_null(strstr(g.msg, "UNAUTHORIZED"));
    assert_int_equal(g.ref_fetched, 0);

    /* A config served as a manifest: shaped like one ("config" is an
     * object) but without a descriptor in it. */
    fetch_image(f, "open", f->im.cfg_amd, NULL, &g);
    assert_int_equal(g.rc, HGF_EHTTP);
    assert_non_null(strstr(g.msg, "config digest is missing"));
}

static void test_input_errors(void **state)
{
    struct fix *f = *state;
    struct got g = {.f = f};
    hgf_err err;
    hgf_registry_req req = {.http = f->h, .proxy_endpoint = base_of(f, "open"),
                            .repository = "Team/App", .reference = "v1"};
    assert_int_equal(hgf_registry_manifest(&req, on_result, &g, &err), HGF_EINPUT);
    assert_non_null(strstr(err.msg, "repository"));
    req.repository = "team/app";
    req.reference = "bad tag";
    assert_int_equal(hgf_registry_manifest(&req, on_result, &g, &err), HGF_EINPUT);
    assert_non_null(strstr(err.msg, "reference"));
    req.reference = "v1";
    assert_int_equal(hgf_registry_blob(&req, on_result, &g, &err), HGF_EINPUT);
    assert_non_null(strstr(err.msg, "sha256"));
    req.reference = f->im.cfg_amd;
    req.head = 1;
    assert_int_equal(hgf_registry_blob(&req, on_result, &g, &err), HGF_EINPUT);
    assert_non_null(strstr(err.msg, "head"));
    req.head = 0;
    req.reference = "bad tag";
    assert_int_equal(hgf_registry_image_config(&req, NULL, NULL, &err), HGF_EINPUT);
    req.proxy_endpoint = NULL;
    req.reference = "v1";
    assert_int_equal(hgf_registry_manifest(&req, on_result, &g, &err), HGF_EINPUT);
    assert_non_null(strstr(err.msg, "proxy_endpoint"));
    ev_run(f->loop, EVRUN_NOWAIT);
    assert_int_equal(g.called, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_challenge_basic),
        cmocka_unit_test(test_challenge_bearer),
        cmocka_unit_test(test_challenge_several),
        cmocka_unit_test(test_challenge_errors),
        cmocka_unit_test(test_challenge_fuzz),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_token_cache),
        cmocka_unit_test_setup_teardown(test_basic_challenge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_preset_authorization, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bearer_flow_and_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bearer_expiry_and_no_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_endpoint_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_challenges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blob_redirect_keeps_auth_home, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_image_config_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_image_config_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_input_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
