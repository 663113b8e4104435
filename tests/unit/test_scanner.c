/* Scanner backends: report parsing against recorded tool outputs, and every
 * backend end to end on the default libev loop, through the production code
 * path. trivy and grype are the stand-ins in tests/fixtures/scanners (first
 * on PATH), which check that credentials arrive in their environment only;
 * Harbor is an in-process libmicrohttpd adapter that follows the Pluggable
 * Scanner API v1.1. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <ev.h>
#include <jansson.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hgfleet/buf.h"
#include "hgfleet/http.h"
#include "hgfleet/scanner.h"

#define HOST "123456789012.dkr.ecr.us-east-1.amazonaws.com"
#define DIGEST "sha256:c6cad725fced12b1e7594736b205ac4ca71d0f3a665e2e471f6e23b9f1debc86"
#define PASSWORD "eyJwYXlsb2FkIjoidGVzdC1lY3ItdG9rZW4ifQ==.c2ln"
/* base64("AWS:" PASSWORD), computed outside the code under test */
#define BASIC "Basic QVdTOmV5SndZWGxzYjJGa0lqb2lkR1Z6ZEMxbFkzSXRkRzlyWlc0aWZRPT0uYzJsbg=="
#define DOCKER_MT "application/vnd.docker.distribution.manifest.v2+json"
#define INDEX_MT "application/vnd.oci.image.index.v1+json"
#define REPORT_MIME "application/vnd.security.vulnerability.report; version=1.1"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    hgf_buf b = HGF_BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        hgf_buf_append(&b, chunk, n);
    fclose(f);
    if (len)
        *len = b.len;
    return hgf_buf_detach(&b);
}

/* tests/fixtures/scanners, found next to HGF_TEST_DATA_DIR (tests/data or
 * tests/unit/data), textually: that directory need not exist. */
static void fixtures_dir(char *out, size_t n)
{
    static const char *const rel[] = {"/fixtures/scanners", "/../fixtures/scanners"};
    char base[PATH_MAX / 2];
    snprintf(base, sizeof base, "%s", HGF_TEST_DATA_DIR);
    char *slash = strrchr(base, '/');
    if (slash)
        *slash = '\0';
    for (size_t i = 0; i < 2; i++) {
        snprintf(out, n, "%s%s", base, rel[i]);
        char probe[PATH_MAX + 16];
        snprintf(probe, sizeof probe, "%s/trivy", out);
        if (access(probe, X_OK) == 0)
            return;
    }
}

static char *fixture_text(const char *name, size_t *len)
{
    char dir[PATH_MAX], path[PATH_MAX + 64];
    fixtures_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return slurp(path, len);
}

static char *fixture(const char *name, size_t *len)
{
    char *s = fixture_text(name, len);
    if (!s)
        fail_msg("cannot read fixture %s", name);
    return s;
}

static void assert_summary(const hgf_scan_summary *s, int c, int h, int m, int l, int u)
{
    assert_int_equal(s->critical, c);
    assert_int_equal(s->high, h);
    assert_int_equal(s->medium, m);
    assert_int_equal(s->low, l);
    assert_int_equal(s->unknown, u);
}

/* ------------------------------------------------------------------ */
/* parsing                                                             */

static void parse_file(const char *format, const char *file, hgf_scan_summary *sum)
{
    size_t len = 0;
    char *text = fixture(file, &len);
    json_t *report = NULL;
    hgf_err err;
    assert_int_equal(hgf_scanner_parse(format, text, len, sum, &report, &err), 0);
    assert_true(json_is_object(report));
    json_decref(report);
    free(text);
}

static void test_parse_trivy(void **state)
{
    hgf_scan_summary sum;
    parse_file("trivy", "trivy-report.json", &sum);
    /* os-pkgs 2/3/4/5/1 + gobinary 1/2/1/0/0; a target without findings */
    assert_summary(&sum, 3, 5, 5, 5, 1);
    parse_file("trivy", "trivy-clean.json", &sum);
    assert_summary(&sum, 0, 0, 0, 0, 0);
}

static void test_parse_grype(void **state)
{
    hgf_scan_summary sum;
    parse_file("grype", "grype-report.json", &sum);
    /* 2 Critical, 3 High, 3 Medium, 2 Low + 3 Negligible, 1 Unknown */
    assert_summary(&sum, 2, 3, 3, 5, 1);
    parse_file("grype", "grype-clean.json", &sum);
    assert_summary(&sum, 0, 0, 0, 0, 0);
}

static void test_parse_harbor(void **state)
{
    hgf_scan_summary sum;
    parse_file("harbor", "harbor-report.json", &sum);
    /* 1 Critical, 2 High, 2 Medium, Low + Negligible + None, 1 Unknown */
    assert_summary(&sum, 1, 2, 2, 3, 1);
    hgf_err err;
    const char *empty = "{\"generated_at\":\"2024-05-14T09:20:31Z\",\"vulnerabilities\":[]}";
    assert_int_equal(hgf_scanner_parse("harbor", empty, strlen(empty), &sum, NULL, &err), 0);
    assert_summary(&sum, 0, 0, 0, 0, 0);
}

static void expect_parse_fail(const char *format, const char *text, size_t len,
                              const char *want_prefix, const char *want_also)
{
    hgf_scan_summary sum = {7, 7, 7, 7, 7};
    json_t *report = (json_t *)1;
    hgf_err err;
    assert_int_equal(hgf_scanner_parse(format, text, len, &sum, &report, &err), HGF_EFAIL);
    assert_null(report);
    assert_summary(&sum, 0, 0, 0, 0, 0);
    if (strncmp(err.msg, want_prefix, strlen(want_prefix)) != 0)
        fail_msg("message '%s' does not start with '%s'", err.msg, want_prefix);
    if (want_also && !strstr(err.msg, want_also))
        fail_msg("message '%s' lacks '%s'", err.msg, want_also);
}

static void test_parse_garbage(void **state)
{
    expect_parse_fail("trivy", "Garbage\001 not json {\n", 20,
                      "trivy: cannot parse output: Garbage\\x01 not json {\\n (", NULL);
    expect_parse_fail("grype", "", 0, "grype: cannot parse output: (empty)", NULL);
    char big[300];
    memset(big, 'x', sizeof big);
    expect_parse_fail("trivy", big, sizeof big,
                      "trivy: cannot parse output: "
                      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx... (",
                      NULL);
    /* Valid JSON in the wrong shape. */
    size_t len;
    char *grype = fixture("grype-report.json", &len);
    expect_parse_fail("trivy", grype, len, "trivy: cannot parse output: {\\n  \"matches\"",
                      "no SchemaVersion");
    free(grype);
    char *trivy = fixture("trivy-report.json", &len);
    expect_parse_fail("grype", trivy, len, "grype: cannot parse output: ", "no matches array");
    expect_parse_fail("harbor", trivy, len, "harbor: cannot parse output: ",
                      "no vulnerabilities array");
    free(trivy);
    const char *v1 = "{\"SchemaVersion\":1,\"Results\":[]}";
    expect_parse_fail("trivy", v1, strlen(v1), "trivy: cannot parse output: ", "SchemaVersion 2");
    const char *notarr = "{\"SchemaVersion\":2,\"Results\":{}}";
    expect_parse_fail("trivy", notarr, strlen(notarr), "trivy: ", "Results is not an array");
    const char *badvuln = "{\"SchemaVersion\":2,\"Results\":[{\"Vulnerabilities\":[1]}]}";
    expect_parse_fail("trivy", badvuln, strlen(badvuln), "trivy: ", "not an object");
    const char *nomatch = "{\"matches\":[{\"artifact\":{}}]}";
    expect_parse_fail("grype", nomatch, strlen(nomatch), "grype: ", "no vulnerability object");
    const char *arr = "[1,2]";
    expect_parse_fail("harbor", arr, strlen(arr), "harbor: cannot parse output: [1,2] (", NULL);
}

static void test_parse_empty_results(void **state)
{
    hgf_scan_summary sum = {1, 1, 1, 1, 1};
    hgf_err err;
    const char *cases[][2] = {
        {"trivy", "{\"SchemaVersion\":2}"},
        {"trivy", "{\"SchemaVersion\":2,\"Results\":null}"},
        {"trivy",
         "{\"SchemaVersion\":2,\"Results\":[{\"Target\":\"x\",\"Vulnerabilities\":null}]}"},
        {"grype", "{\"matches\":[]}"},
        {"harbor", "{\"generated_at\":\"2024-05-14T09:20:31Z\"}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(
            hgf_scanner_parse(cases[i][0], cases[i][1], strlen(cases[i][1]), &sum, NULL, &err),
            0);
        assert_summary(&sum, 0, 0, 0, 0, 0);
    }
    /* A severity nobody spells that way is still counted, as unknown. */
    const char *odd = "{\"matches\":[{\"vulnerability\":{\"id\":\"X\",\"severity\":\"Severe\"}},"
                      "{\"vulnerability\":{\"id\":\"Y\"}}]}";
    assert_int_equal(hgf_scanner_parse("grype", odd, strlen(odd), &sum, NULL, &err), 0);
    assert_summary(&sum, 0, 0, 0, 0, 2);
    assert_int_equal(hgf_scanner_parse("clair", "{}", 2, &sum, NULL, &err), HGF_EINPUT);
}

/* ------------------------------------------------------------------ */
/* specs and targets                                                   */

static void expect_bad_spec(const char *spec, const hgf_scanner_opts *o, const char *want)
{
    hgf_scanner *s = (hgf_scanner *)1;
    hgf_err err;
    assert_int_equal(hgf_scanner_new(EV_DEFAULT, NULL, spec, o, &s, &err), HGF_EINPUT);
    assert_null(s);
    assert_non_null(strstr(err.msg, "HGFLEET_SCANNER"));
    if (!strstr(err.msg, want))
        fail_msg("spec '%s': message '%s' lacks '%s'", spec, err.msg, want);
}

static void test_spec_errors(void **state)
{
    const char *bad[] = {"", "bogus", "Trivy", "trivy ", "harbor", "harbor:", "harbor:ftp://x",
                         "harbor:http://", "harbor:https:///api", "harbor:http://a b",
                         "harbor:http://a?x=1", "none:x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_bad_spec(bad[i], NULL, "expected none, trivy, grype or harbor:<adapter URL>");
    expect_bad_spec("bogus\n\001", NULL, "got 'bogus\\n\\x01'");
    hgf_scanner *s = NULL;
    hgf_err err;
    /* Never echo credentials from an adapter URL. */
    assert_int_equal(
        hgf_scanner_new(EV_DEFAULT, NULL, "harbor:http://u:s3cr3t@adapter", NULL, &s, &err),
        HGF_EINPUT);
    assert_non_null(strstr(err.msg, "must not carry credentials"));
    assert_null(strstr(err.msg, "s3cr3t"));
    assert_int_equal(hgf_scanner_new(EV_DEFAULT, NULL, "harbor:http://adapter", NULL, &s, &err),
                     HGF_EINPUT);
    assert_non_null(strstr(err.msg, "no HTTP client"));
    hgf_scanner_opts o = {.tool_path = "/nonexistent/trivy"};
    expect_bad_spec("trivy", &o, "not an executable absolute path");
    o.tool_path = "relative/trivy";
    expect_bad_spec("grype", &o, "not an executable absolute path");
    char *path = strdup(getenv("PATH"));
    setenv("PATH", "/nonexistent-dir", 1);
    expect_bad_spec("grype", NULL, "grype not found on PATH");
    setenv("PATH", path, 1);
    free(path);
    /* ev_child exists on the default loop only. */
    struct ev_loop *other = ev_loop_new(EVFLAG_AUTO);
    hgf_scanner *t = (hgf_scanner *)1;
    assert_int_equal(hgf_scanner_new(other, NULL, "trivy", NULL, &t, &err), HGF_EINPUT);
    assert_null(t);
    assert_non_null(strstr(err.msg, "process scanners need the default libev loop"));
    assert_int_equal(hgf_scanner_new(other, NULL, "none", NULL, &t, &err), 0);
    assert_string_equal(hgf_scanner_name(t), "none");
    hgf_scanner_free(t);
    ev_loop_destroy(other);
}

/* ------------------------------------------------------------------ */
/* the loop                                                            */

struct got {
    int called;
    int rc, retryable;
    char msg[1024];
    hgf_scan_summary sum;
    json_t *report;
    char scanner[16];
    char version[128];
    double seconds;
    double at;  /* ev_time() when the callback ran */
};

static void on_result(const hgf_scan_result *r, void *arg)
{
    struct got *g = arg;
    g->called++;
    g->rc = r->rc;
    g->retryable = r->retryable;
    snprintf(g->msg, sizeof g->msg, "%s", r->err.msg);
    g->sum = r->summary;
    json_decref(g->report);
    g->report = json_incref(r->report);
    snprintf(g->scanner, sizeof g->scanner, "%s", r->scanner);
    snprintf(g->version, sizeof g->version, "%s", r->version ? r->version : "(null)");
    g->seconds = r->seconds;
    g->at = ev_time();
}

static void got_free(struct got *g)
{
    json_decref(g->report);
    g->report = NULL;
}

static void watchdog(struct ev_loop *loop, ev_timer *w, int revents)
{
    *(int *)w->data = 1;
}

/* Runs the default loop until *flag or secs passed; true if *flag. */
static int run_until(const int *flag, double secs)
{
    int expired = 0;
    ev_timer wd;
    ev_timer_init(&wd, watchdog, secs, 0.);
    wd.data = &expired;
    ev_timer_start(EV_DEFAULT, &wd);
    while (!*flag && !expired)
        ev_run(EV_DEFAULT, EVRUN_ONCE);
    ev_timer_stop(EV_DEFAULT, &wd);
    return *flag != 0;
}

static void run_for(double secs)
{
    int never = 0;
    run_until(&never, secs);
}

/* ------------------------------------------------------------------ */
/* the Harbor adapter                                                  */

#define MAX_SCANS 32

struct adapter_scan {
    char id[32];
    char repo[64];
    int polls;
};

struct adapter {
    struct MHD_Daemon *d;
    unsigned short port;
    pthread_mutex_t mu;
    char *report;
    int metadata_gets, posts, report_gets;
    struct adapter_scan scans[MAX_SCANS];
    int nscans;
    char last_tag[64];
};

struct reqctx {
    hgf_buf body;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *body,
                             const char *ctype, const char *refresh)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *)body,
                                                             MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", ctype);
    if (refresh)
        MHD_add_response_header(r, "Refresh-After", refresh);
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result error_reply(struct MHD_Connection *c, unsigned code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *doc = json_pack("{s:{s:s}}", "error", "message", msg);
    char *text = json_dumps(doc, JSON_COMPACT);
    enum MHD_Result ret =
        reply(c, code, text, "application/vnd.scanner.adapter.error+json; version=1.0", NULL);
    free(text);
    json_decref(doc);
    return ret;
}

static const char *header(struct MHD_Connection *c, const char *name)
{
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
    return v ? v : "";
}

static enum MHD_Result route_metadata(struct adapter *a, struct MHD_Connection *c)
{
    pthread_mutex_lock(&a->mu);
    a->metadata_gets++;
    pthread_mutex_unlock(&a->mu);
    static const char meta[] =
        "{\"scanner\":{\"name\":\"Trivy\",\"vendor\":\"Aqua Security\",\"version\":\"v0.50.1\"},"
        "\"capabilities\":[{\"type\":\"sbom\",\"consumes_mime_types\":"
        "[\"" INDEX_MT "\"],\"produces_mime_types\":[\"application/vnd.security.sbom.report+json; "
        "version=1.0\"]},"
        "{\"type\":\"vulnerability\",\"consumes_mime_types\":"
        "[\"application/vnd.oci.image.manifest.v1+json\",\"" DOCKER_MT "\"],"
        "\"produces_mime_types\":[\"application/vnd.scanner.adapter.vuln.report.harbor+json; "
        "version=1.0\",\"application/vnd.security.vulnerability.report;version=1.1\"]}],"
        "\"properties\":{\"harbor.scanner-adapter/scanner-type\":\"os-package-vulnerability\"}}";
    return reply(c, 200, meta, "application/vnd.scanner.adapter.metadata+json; version=1.0", NULL);
}

/* The checks a real adapter would make, answered the spec's way (400). */
static const char *bad_scan_request(struct MHD_Connection *c, json_t *req)
{
    if (strcmp(header(c, "Content-Type"),
               "application/vnd.scanner.adapter.scan.request+json; version=1.0"))
        return "unsupported Content-Type";
    if (strcmp(header(c, "Accept"),
               "application/vnd.scanner.adapter.scan.response+json; version=1.0"))
        return "unsupported Accept";
    json_t *reg = json_object_get(req, "registry"), *art = json_object_get(req, "artifact");
    if (!json_is_string(json_object_get(reg, "url")) ||
        strcmp(json_string_value(json_object_get(reg, "url")), "https://" HOST))
        return "registry.url";
    const char *auth = json_string_value(json_object_get(reg, "authorization"));
    if (!auth || strcmp(auth, BASIC))
        return "registry.authorization";
    const char *digest = json_string_value(json_object_get(art, "digest"));
    const char *mt = json_string_value(json_object_get(art, "mime_type"));
    if (!digest || strcmp(digest, DIGEST) || !mt || strcmp(mt, DOCKER_MT))
        return "artifact";
    return NULL;
}

static enum MHD_Result route_scan(struct adapter *a, struct MHD_Connection *c,
                                  struct reqctx *rc)
{
    json_t *req = json_loadb(hgf_buf_str(&rc->body), rc->body.len, 0, NULL);
    const char *bad = req ? bad_scan_request(c, req) : "body is not JSON";
    const char *repo = json_string_value(json_object_get(json_object_get(req, "artifact"),
                                                         "repository"));
    const char *tag = json_string_value(json_object_get(json_object_get(req, "artifact"), "tag"));
    enum MHD_Result ret;
    pthread_mutex_lock(&a->mu);
    a->posts++;
    snprintf(a->last_tag, sizeof a->last_tag, "%s", tag ? tag : "(none)");
    if (bad) {
        ret = error_reply(c, 400, "invalid scan request: %s", bad);
    } else if (!repo || strcmp(repo, "reject") == 0) {
        ret = error_reply(c, 422, "unsupported artifact: %s", repo ? repo : "?");
    } else if (strcmp(repo, "echo") == 0) {
        /* An adapter that quotes what it was sent: it must not reach our logs. */
        const char *auth = json_string_value(
            json_object_get(json_object_get(req, "registry"), "authorization"));
        ret = error_reply(c, 400, "registry refused %s (AWS:%s)", auth, PASSWORD);
    } else if (a->nscans == MAX_SCANS) {
        ret = error_reply(c, 500, "too many scans");
    } else {
        struct adapter_scan *s = &a->scans[a->nscans++];
        snprintf(s->id, sizeof s->id, "%s-%d", strcmp(repo, "lost") ? "scan" : "gone",
                 a->nscans);
        snprintf(s->repo, sizeof s->repo, "%s", repo);
        char body[64];
        snprintf(body, sizeof body, "{\"id\":\"%s\"}", s->id);
        ret = reply(c, 202, body, "application/vnd.scanner.adapter.scan.response+json; version=1.0",
                    NULL);
    }
    pthread_mutex_unlock(&a->mu);
    json_decref(req);
    return ret;
}

static enum MHD_Result report_for(struct adapter *a, struct MHD_Connection *c,
                                  struct adapter_scan *s)
{
    if (strcmp(s->repo, "broken") == 0)
        return error_reply(c, 500, "scanner crashed: database locked");
    if (strcmp(s->repo, "never") == 0 || s->polls++ < 2)
        return reply(c, 302, "", "text/plain", "1");
    return reply(c, 200, a->report, REPORT_MIME, NULL);
}

static enum MHD_Result route_report(struct adapter *a, struct MHD_Connection *c, const char *id)
{
    if (strcmp(header(c, "Accept"), REPORT_MIME))
        return error_reply(c, 400, "unsupported report MIME type '%s'", header(c, "Accept"));
    enum MHD_Result ret = MHD_NO;
    int found = 0;
    pthread_mutex_lock(&a->mu);
    a->report_gets++;
    for (int i = 0; i < a->nscans; i++)
        if (strcmp(a->scans[i].id, id) == 0 && strncmp(id, "gone-", 5)) {
            ret = report_for(a, c, &a->scans[i]);
            found = 1;
        }
    pthread_mutex_unlock(&a->mu);
    return found ? ret : error_reply(c, 404, "scan %s not found", id);
}

static enum MHD_Result adapter_route(struct adapter *a, struct MHD_Connection *c,
                                     const char *url, const char *method, struct reqctx *rc)
{
    static const char pre[] = "/api/v1/scan/", post[] = "/report";
    size_t n = strlen(url);
    if (strcmp(method, "GET") == 0 && strcmp(url, "/api/v1/metadata") == 0)
        return route_metadata(a, c);
    if (strcmp(method, "POST") == 0 && strcmp(url, "/api/v1/scan") == 0)
        return route_scan(a, c, rc);
    if (strcmp(method, "GET") == 0 && strncmp(url, pre, sizeof pre - 1) == 0 &&
        n > sizeof pre + sizeof post - 2 && strcmp(url + n - (sizeof post - 1), post) == 0) {
        char id[64];
        snprintf(id, sizeof id, "%.*s", (int)(n - (sizeof pre - 1) - (sizeof post - 1)),
                 url + sizeof pre - 1);
        return route_report(a, c, id);
    }
    return error_reply(c, 404, "no route %s %s", method, url);
}

static enum MHD_Result adapter_handler(void *cls, struct MHD_Connection *c, const char *url,
                                       const char *method, const char *version,
                                       const char *upload, size_t *upload_size, void **con_cls)
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
    return adapter_route(cls, c, url, method, rc);
}

static void adapter_done(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct reqctx *rc = *con_cls;
    if (rc) {
        hgf_buf_free(&rc->body);
        free(rc);
    }
    *con_cls = NULL;
}

static int adapter_start(struct adapter *a)
{
    memset(a, 0, sizeof *a);
    pthread_mutex_init(&a->mu, NULL);
    a->report = fixture_text("harbor-report.json", NULL);
    if (!a->report)
        return -1;
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
                            NULL, NULL, adapter_handler, a, MHD_OPTION_SOCK_ADDR, &sa,
                            MHD_OPTION_NOTIFY_COMPLETED, adapter_done, a, MHD_OPTION_END);
    if (!a->d)
        return -1;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(a->d, MHD_DAEMON_INFO_BIND_PORT);
    a->port = info ? info->port : 0;
    return a->port ? 0 : -1;
}

static void adapter_stop(struct adapter *a)
{
    if (a->d)
        MHD_stop_daemon(a->d);
    pthread_mutex_destroy(&a->mu);
    free(a->report);
}

static int adapter_count(struct adapter *a, const int *counter)
{
    pthread_mutex_lock(&a->mu);
    int n = *counter;
    pthread_mutex_unlock(&a->mu);
    return n;
}

/* ------------------------------------------------------------------ */
/* fixtures for the end-to-end tests                                   */

struct env {
    char home[64];
    char cache[96];
    hgf_http *http;
    struct adapter adapter;
    char adapter_spec[96];
};

static void wipe_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[PATH_MAX];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) != 0)
            wipe_dir(path);
    }
    closedir(d);
    rmdir(dir);
}

static int group_setup(void **state)
{
    struct env *e = calloc(1, sizeof *e);
    if (!e)
        return -1;
    snprintf(e->home, sizeof e->home, "/tmp/hgf-scan-XXXXXX");
    if (!mkdtemp(e->home))
        return -1;
    snprintf(e->cache, sizeof e->cache, "%s/cache", e->home);
    mkdir(e->cache, 0700);
    char rel[PATH_MAX], dir[PATH_MAX], path[PATH_MAX * 2];
    fixtures_dir(rel, sizeof rel);
    if (!realpath(rel, dir))
        return -1;
    snprintf(path, sizeof path, "%s:%s", dir, getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
    setenv("PATH", path, 1);
    /* What the children must NOT see, and what they must. */
    setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", 1);
    setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE", 1);
    setenv("HGFLEET_MASTER_KEY", "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I=", 1);
    setenv("TRIVY_REGISTRY_TOKEN", "decoy-token", 1);
    setenv("GRYPE_REGISTRY_AUTH_TOKEN", "decoy-token", 1);
    setenv("TRIVY_CACHE_DIR", e->cache, 1);
    setenv("GRYPE_DB_CACHE_DIR", e->cache, 1);
    hgf_err err;
    e->http = hgf_http_new(EV_DEFAULT, NULL, &err);
    if (!e->http || adapter_start(&e->adapter) != 0)
        return -1;
    snprintf(e->adapter_spec, sizeof e->adapter_spec, "harbor:http://127.0.0.1:%u/",
             e->adapter.port);
    *state = e;
    return 0;
}

static int group_teardown(void **state)
{
    struct env *e = *state;
    if (!e)
        return 0;
    hgf_http_free(e->http);
    adapter_stop(&e->adapter);
    wipe_dir(e->home);
    free(e);
    return 0;
}

static hgf_scanner *make(struct env *e, const char *spec, hgf_scanner_opts o)
{
    o.home_dir = e->home;
    hgf_scanner *s = NULL;
    hgf_err err;
    if (hgf_scanner_new(EV_DEFAULT, e->http, spec, &o, &s, &err) != 0)
        fail_msg("hgf_scanner_new(%s): %s", spec, err.msg);
    return s;
}

static hgf_scan_target target(const char *repo)
{
    return (hgf_scan_target){.registry_host = HOST, .registry_url = "https://" HOST,
                             .repository = repo, .digest = DIGEST, .tag = "v1.2.3",
                             .media_type = DOCKER_MT, .username = "AWS",
                             .password = PASSWORD};
}

static void start(hgf_scanner *s, const hgf_scan_target *t, struct got *g)
{
    hgf_err err;
    if (hgf_scanner_scan(s, t, on_result, g, &err) != 0)
        fail_msg("hgf_scanner_scan: %s", err.msg);
    assert_int_equal(g->called, 0);  /* never from inside the call */
}

/* One scan of repo, run to its end. */
static void scan_one(hgf_scanner *s, const char *repo, struct got *g, double secs)
{
    hgf_scan_target t = target(repo);
    start(s, &t, g);
    if (!run_until(&g->called, secs))
        fail_msg("scan of %s did not end within %.0f s", repo, secs);
    assert_int_equal(g->called, 1);
}

static void expect_msg(const struct got *g, const char *want)
{
    if (!strstr(g->msg, want))
        fail_msg("message '%s' lacks '%s'", g->msg, want);
}

static pid_t read_pid(struct env *e, const char *file)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", e->home, file);
    char *text = slurp(path, NULL);
    if (!text)
        fail_msg("%s was not written", path);
    pid_t pid = (pid_t)atol(text);
    free(text);
    unlink(path);
    return pid;
}

static void assert_gone(pid_t pid)
{
    assert_true(pid > 1);
    assert_int_equal(kill(pid, 0), -1);
    assert_int_equal(errno, ESRCH);
}

/* ------------------------------------------------------------------ */
/* none                                                                */

static void test_none(void **state)
{
    struct env *e = *state;
    hgf_scanner *s = make(e, "none", (hgf_scanner_opts){0});
    assert_string_equal(hgf_scanner_name(s), "none");
    struct got g = {0};
    scan_one(s, "app", &g, 5);
    assert_int_equal(g.rc, 0);
    assert_null(g.report);
    assert_string_equal(g.scanner, "none");
    assert_summary(&g.sum, 0, 0, 0, 0, 0);
    hgf_scanner_free(s);
}

/* ------------------------------------------------------------------ */
/* trivy                                                               */

static void test_trivy_report(void **state)
{
    struct env *e = *state;
    hgf_scanner *s = make(e, "trivy", (hgf_scanner_opts){0});
    assert_string_equal(hgf_scanner_name(s), "trivy");
    struct got g = {0};
    scan_one(s, "team/app", &g, 20);
    if (g.rc != 0)
        fail_msg("trivy scan failed: %s", g.msg);
    assert_string_equal(g.scanner, "trivy");
    assert_summary(&g.sum, 3, 5, 5, 5, 1);
    assert_int_equal(json_integer_value(json_object_get(g.report, "SchemaVersion")), 2);
    assert_int_equal(json_array_size(json_object_get(g.report, "Results")), 3);
    assert_true(g.seconds > 0 && g.seconds < 20);
    got_free(&g);
    struct got c = {0};
    scan_one(s, "clean", &c, 20);
    assert_int_equal(c.rc, 0);
    assert_summary(&c.sum, 0, 0, 0, 0, 0);
    got_free(&c);
    hgf_scanner_free(s);
}

static int env_has(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0'))
            return 1;
    return 0;
}

static int env_count(const char *text, const char *prefix)
{
    int n = 0;
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        n += strncmp(p, prefix, strlen(prefix)) == 0;
    return n;
}

static char *child_env(struct env *e, const char *spec, const char *file)
{
    hgf_scanner *s = make(e, spec, (hgf_scanner_opts){0});
    struct got g = {0};
    scan_one(s, "env", &g, 20);
    if (g.rc != 0)
        fail_msg("%s env scan failed: %s", spec, g.msg);
    got_free(&g);
    hgf_scanner_free(s);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", e->home, file);
    char *text = slurp(path, NULL);
    assert_non_null(text);
    unlink(path);
    return text;
}

static void test_trivy_child_env(void **state)
{
    struct env *e = *state;
    char *text = child_env(e, "trivy", "trivy-env.txt");
    char line[PATH_MAX];
    assert_true(env_has(text, "TRIVY_USERNAME=AWS"));
    assert_true(env_has(text, "TRIVY_PASSWORD=" PASSWORD));
    snprintf(line, sizeof line, "HOME=%s", e->home);
    assert_true(env_has(text, line));
    snprintf(line, sizeof line, "TRIVY_CACHE_DIR=%s", e->cache);
    assert_true(env_has(text, line));
    snprintf(line, sizeof line, "PATH=%s", getenv("PATH"));
    assert_true(env_has(text, line));
    assert_int_equal(env_count(text, "AWS_"), 0);
    assert_int_equal(env_count(text, "HGFLEET_"), 0);
    assert_int_equal(env_count(text, "GRYPE_"), 0);
    assert_int_equal(env_count(text, "TRIVY_REGISTRY_TOKEN"), 0);
    free(text);
}

static void test_trivy_failures(void **state)
{
    struct env *e = *state;
    hgf_scanner *s = make(e, "trivy", (hgf_scanner_opts){0});
    struct got g = {0};
    scan_one(s, "garbage", &g, 20);
    assert_int_equal(g.rc, HGF_EFAIL);
    assert_int_equal(g.retryable, 0);
    assert_null(g.report);
    expect_msg(&g, "trivy: cannot parse output: Garbage\\x01 not json {\\n");

    struct got f = {0};
    scan_one(s, "fail", &f, 20);
    assert_int_equal(f.rc, HGF_EFAIL);
    assert_int_equal(f.retryable, 1);
    expect_msg(&f, "trivy: exit status 1: ");
    expect_msg(&f, "FATAL\\x09image scan error: unable to initialize the vulnerability database");

    struct got l = {0};
    scan_one(s, "leak", &l, 20);
    expect_msg(&l, "trivy: exit status 1: auth failed for AWS:***");
    assert_null(strstr(l.msg, PASSWORD));
    assert_null(strstr(l.msg, "c2ln"));

    struct got n = {0};
    scan_one(s, "notfound", &n, 20);
    assert_int_equal(n.rc, HGF_ENOTFOUND);
    assert_int_equal(n.retryable, 0);
    expect_msg(&n, "MANIFEST_UNKNOWN");

    /* The stand-in refuses a scan without credentials in its environment,
     * which is what makes the successful scans above meaningful. */
    struct got a = {0};
    hgf_scan_target t = target("app");
    t.username = t.password = NULL;
    start(s, &t, &a);
    assert_true(run_until(&a.called, 20));
    assert_int_equal(a.rc, HGF_EFAIL);
    expect_msg(&a, "exit status 90: fixture trivy: no registry credentials in the environment");
    hgf_scanner_free(s);
}

static void test_trivy_timeout(void **state)
{
    struct env *e = *state;
    hgf_scanner *s = make(e, "trivy", (hgf_scanner_opts){.timeout_seconds = 1});
    struct got g = {0};
    double t0 = ev_time();
    scan_one(s, "hang", &g, 10);
    double took = ev_time() - t0;
    assert_int_equal(g.rc, HGF_EFAIL);
    assert_int_equal(g.retryable, 1);
    assert_string_equal(g.msg, "trivy: timed out after 1 s");
    /* SIGTERM reached the shell and its sleeping child: no SIGKILL needed. */
    assert_true(took >= 0.9 && took < 2.5);  /* the drain path would take 3 s */
    assert_gone(read_pid(e, "trivy-hang.pid"));

    struct got k = {0};
    t0 = ev_time();
    scan_one(s, "stubborn", &k, 10);
    took = ev_time() - t0;
    assert_string_equal(k.msg, "trivy: timed out after 1 s");
    /* SIGTERM ignored: SIGKILL 2 s later. */
    assert_true(took >= 2.9 && took < 4.5);
    assert_gone(read_pid(e, "trivy-stubborn.pid"));
    hgf_scanner_free(s);
}

static void test_trivy_output_limits(void **state)
{
    struct env *e = *state;
    /* The tool exits but a child of it keeps stdout open: read what came,
     * give it 2 s, then end the group. */
    hgf_scanner *s = make(e, "trivy", (hgf_scanner_opts){.max_stdout = 100000});
    struct got o = {0};
    double t0 = ev_time();
    scan_one(s, "orphan", &o, 10);
    double took = ev_time() - t0;
    if (o.rc != 0)
        fail_msg("orphan scan failed: %s", o.msg);
    assert_summary(&o.sum, 3, 5, 5, 5, 1);
    assert_true(took >= 1.9 && took < 4.0);

    struct got b = {0};
    scan_one(s, "big", &b, 20);
    assert_int_equal(b.rc, HGF_EFAIL);
    assert_string_equal(b.msg, "trivy: output larger than 100000 bytes");
    got_free(&o);
    hgf_scanner_free(s);
}

/* Two children at once: one that hangs delays neither the other's output
 * nor its end (nor do they share descriptors: the stand-ins check that). */
static void test_trivy_concurrent(void **state)
{
    struct env *e = *state;
    hgf_scanner *s = make(e, "trivy", (hgf_scanner_opts){.timeout_seconds = 5, .max_running = 2});
    struct got h = {0}, g = {0};
    hgf_scan_target th = target("hang"), tg = target("app");
    start(s, &th, &h);
    start(s, &tg, &g);
    assert_true(run_until(&g.called, 4.5));
    assert_int_equal(g.rc, 0);
    assert_int_equal(h.called, 0);
    assert_true(run_until(&h.called, 10));
    assert_string_equal(h.msg, "trivy: timed out after 5 s");
    read_pid(e, "trivy-hang.pid");
    got_free(&g);
    hgf_scanner_free(s);
}

/* With one slot, the second scan waits for the first. */
static void test_trivy_queue(void **state)
{
    struct env *e = *state;
    hgf_scanner *s = make(e, "trivy", (hgf_scanner_opts){.timeout_seconds = 1, .max_running = 1});
    struct got h = {0}, g = {0};
    hgf_scan_target th = target("hang"), tg = target("app");
    start(s, &th, &h);
    start(s, &tg, &g);
    assert_true(run_until(&g.called, 10));
    assert_int_equal(h.called, 1);
    assert_true(h.at <= g.at);
    assert_int_equal(g.rc, 0);
    assert_true(g.seconds < 1.0);  /* measured from its own start, not from the queue */
    read_pid(e, "trivy-hang.pid");
    got_free(&g);
    hgf_scanner_free(s);
}

static void test_trivy_free_kills(void **state)
{
    struct env *e = *state;
    hgf_scanner *s = make(e, "trivy", (hgf_scanner_opts){0});
    struct got h = {0};
    hgf_scan_target t = target("hang");
    start(s, &t, &h);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/trivy-hang.pid", e->home);
    for (int i = 0; i < 100 && access(path, F_OK) != 0; i++)
        run_for(0.05);
    run_for(0.1);  /* the pid is written before sleep starts */
    pid_t pid = read_pid(e, "trivy-hang.pid");
    hgf_scanner_free(s);
    assert_gone(pid);
    run_for(0.3);
    assert_int_equal(h.called, 0);
}

static void test_trivy_cannot_run(void **state)
{
    struct env *e = *state;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/notexec", e->home);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("this is not a program\n", f);
    fclose(f);
    chmod(path, 0755);
    hgf_scanner *s = make(e, "trivy", (hgf_scanner_opts){.tool_path = path});
    struct got g = {0};
    scan_one(s, "app", &g, 5);
    assert_int_equal(g.rc, HGF_EFAIL);
    expect_msg(&g, "trivy: cannot run ");
    expect_msg(&g, "notexec: Exec format error");
    hgf_scanner_free(s);
    unlink(path);
}

static void test_bad_targets(void **state)
{
    struct env *e = *state;
    hgf_scanner *s = make(e, "trivy", (hgf_scanner_opts){0});
    struct got g = {0};
    hgf_err err;
    struct {
        hgf_scan_target t;
        const char *want;
    } cases[] = {
        {target("App"), "repository"},
        {target("-rf"), "repository"},
        {target("a//b"), "repository"},
        {target("app"), "digest"},
        {target("app"), "tag"},
        {target("app"), "username"},
        {target("app"), "registry_host"},
        {target("app"), "registry_host"},
    };
    cases[3].t.digest = "sha256:abc";
    cases[4].t.tag = "bad tag";
    cases[5].t.password = NULL;
    cases[6].t.registry_host = "-oProxyCommand=x";
    cases[7].t.registry_host = NULL;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(hgf_scanner_scan(s, &cases[i].t, on_result, &g, &err), HGF_EINPUT);
        if (!strstr(err.msg, cases[i].want))
            fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, cases[i].want);
    }
    hgf_scanner_free(s);
    hgf_scanner *h = make(e, e->adapter_spec, (hgf_scanner_opts){0});
    hgf_scan_target t = target("app");
    t.media_type = NULL;
    assert_int_equal(hgf_scanner_scan(h, &t, on_result, &g, &err), HGF_EINPUT);
    assert_non_null(strstr(err.msg, "media_type"));
    t = target("app");
    t.registry_url = "ftp://x";
    assert_int_equal(hgf_scanner_scan(h, &t, on_result, &g, &err), HGF_EINPUT);
    assert_non_null(strstr(err.msg, "registry_url"));
    hgf_scanner_free(h);
    run_for(0.1);
    assert_int_equal(g.called, 0);
}

/* ------------------------------------------------------------------ */
/* grype                                                               */

static void test_grype_report(void **state)
{
    struct env *e = *state;
    hgf_scanner *s = make(e, "grype", (hgf_scanner_opts){0});
    struct got g = {0};
    scan_one(s, "team/app", &g, 20);
    if (g.rc != 0)
        fail_msg("grype scan failed: %s", g.msg);
    assert_string_equal(g.scanner, "grype");
    assert_string_equal(g.version, "grype 0.74.7");
    assert_summary(&g.sum, 2, 3, 3, 5, 1);
    assert_int_equal(json_array_size(json_object_get(g.report, "matches")), 14);
    got_free(&g);
    struct got f = {0};
    scan_one(s, "garbage", &f, 20);
    expect_msg(&f, "grype: cannot parse output: Garbage\\x01");
    struct got n = {0};
    scan_one(s, "notfound", &n, 20);
    assert_int_equal(n.rc, HGF_ENOTFOUND);
    hgf_scanner_free(s);

    char *text = child_env(e, "grype", "grype-env.txt");
    assert_true(env_has(text, "GRYPE_REGISTRY_AUTH_AUTHORITY=" HOST));
    assert_true(env_has(text, "GRYPE_REGISTRY_AUTH_USERNAME=AWS"));
    assert_true(env_has(text, "GRYPE_REGISTRY_AUTH_PASSWORD=" PASSWORD));
    char line[PATH_MAX];
    snprintf(line, sizeof line, "GRYPE_DB_CACHE_DIR=%s", e->cache);
    assert_true(env_has(text, line));
    assert_int_equal(env_count(text, "GRYPE_REGISTRY_AUTH_TOKEN"), 0);
    assert_int_equal(env_count(text, "TRIVY_"), 0);
    assert_int_equal(env_count(text, "AWS_"), 0);
    assert_int_equal(env_count(text, "HGFLEET_"), 0);
    free(text);
}

/* ------------------------------------------------------------------ */
/* Harbor                                                              */

static void test_harbor_report(void **state)
{
    struct env *e = *state;
    struct adapter *a = &e->adapter;
    hgf_scanner *s = make(e, e->adapter_spec, (hgf_scanner_opts){0});
    assert_string_equal(hgf_scanner_name(s), "harbor");
    int gets0 = adapter_count(a, &a->report_gets), meta0 = adapter_count(a, &a->metadata_gets);
    struct got g = {0};
    scan_one(s, "team/app", &g, 15);
    if (g.rc != 0)
        fail_msg("harbor scan failed: %s", g.msg);
    assert_string_equal(g.scanner, "harbor");
    assert_string_equal(g.version, "Trivy v0.50.1");
    assert_summary(&g.sum, 1, 2, 2, 3, 1);
    assert_int_equal(json_array_size(json_object_get(g.report, "vulnerabilities")), 9);
    /* Two "302 Refresh-After: 1" answers, then the report. */
    assert_int_equal(adapter_count(a, &a->report_gets) - gets0, 3);
    assert_int_equal(adapter_count(a, &a->metadata_gets) - meta0, 1);
    assert_true(g.seconds >= 1.9 && g.seconds < 6);
    pthread_mutex_lock(&a->mu);
    assert_string_equal(a->last_tag, "v1.2.3");
    pthread_mutex_unlock(&a->mu);
    got_free(&g);
    hgf_scanner_free(s);
}

static void test_harbor_errors(void **state)
{
    struct env *e = *state;
    struct adapter *a = &e->adapter;
    hgf_scanner *s = make(e, e->adapter_spec, (hgf_scanner_opts){0});

    int posts0 = adapter_count(a, &a->posts);
    struct got m = {0};
    hgf_scan_target t = target("app");
    t.media_type = INDEX_MT;  /* only the sbom capability takes indexes */
    start(s, &t, &m);
    assert_true(run_until(&m.called, 10));
    assert_int_equal(m.rc, HGF_EFAIL);
    assert_int_equal(m.retryable, 0);
    assert_string_equal(m.msg, "harbor: the adapter cannot scan " INDEX_MT " into " REPORT_MIME);
    assert_int_equal(adapter_count(a, &a->posts), posts0);

    struct got r = {0};
    scan_one(s, "reject", &r, 10);
    assert_int_equal(r.retryable, 0);
    assert_string_equal(r.msg, "harbor: POST /api/v1/scan: HTTP 422: unsupported artifact: reject");

    struct got l = {0};
    scan_one(s, "lost", &l, 10);
    expect_msg(&l, "harbor: GET /api/v1/scan/gone-");
    expect_msg(&l, "/report: HTTP 404: scan gone-");
    expect_msg(&l, " not found");

    struct got b = {0};
    scan_one(s, "broken", &b, 10);
    assert_int_equal(b.rc, HGF_EFAIL);
    assert_int_equal(b.retryable, 1);
    expect_msg(&b, "/report: HTTP 500: scanner crashed: database locked");

    struct got x = {0};
    scan_one(s, "echo", &x, 10);
    expect_msg(&x, "harbor: POST /api/v1/scan: HTTP 400: registry refused Basic *** (AWS:***)");
    assert_null(strstr(x.msg, PASSWORD));
    assert_null(strstr(x.msg, BASIC + 6));

    /* Credentials are optional: an anonymous request has no authorization,
     * which this adapter refuses. */
    struct got n = {0};
    t = target("app");
    t.username = t.password = NULL;
    start(s, &t, &n);
    assert_true(run_until(&n.called, 10));
    expect_msg(&n, "HTTP 400: invalid scan request: registry.authorization");
    hgf_scanner_free(s);
}

static void test_harbor_timeout_and_down(void **state)
{
    struct env *e = *state;
    hgf_scanner *s = make(e, e->adapter_spec, (hgf_scanner_opts){.timeout_seconds = 2});
    struct got g = {0};
    double t0 = ev_time();
    scan_one(s, "never", &g, 10);
    double took = ev_time() - t0;
    assert_int_equal(g.rc, HGF_EFAIL);
    assert_int_equal(g.retryable, 1);
    expect_msg(&g, "harbor: timed out after 2 s (scan scan-");
    assert_true(took >= 1.9 && took < 3.5);
    hgf_scanner_free(s);

    /* Bound but not listening: connections are refused. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    socklen_t sl = sizeof sa;
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    char spec[64];
    snprintf(spec, sizeof spec, "harbor:http://127.0.0.1:%u", ntohs(sa.sin_port));
    hgf_scanner *d = make(e, spec, (hgf_scanner_opts){0});
    struct got c = {0};
    scan_one(d, "app", &c, 10);
    close(fd);
    assert_int_equal(c.rc, HGF_EHTTP);
    assert_int_equal(c.retryable, 1);
    expect_msg(&c, "harbor: GET /api/v1/metadata: ");
    hgf_scanner_free(d);
}

/* Freeing the scanner with a request in flight, or between polls, calls
 * nothing back and leaves nothing behind for the HTTP callback to trip on. */
static void test_harbor_free_pending(void **state)
{
    struct env *e = *state;
    struct adapter *a = &e->adapter;
    hgf_scanner *s = make(e, e->adapter_spec, (hgf_scanner_opts){0});
    struct got g = {0}, h = {0};
    hgf_scan_target t = target("never");
    start(s, &t, &g);
    hgf_scanner_free(s);  /* the metadata request is in flight */
    s = make(e, e->adapter_spec, (hgf_scanner_opts){0});
    int gets0 = adapter_count(a, &a->report_gets);
    start(s, &t, &h);
    for (int i = 0; i < 100 && adapter_count(a, &a->report_gets) == gets0; i++)
        run_for(0.05);
    assert_int_equal(adapter_count(a, &a->report_gets), gets0 + 1);
    hgf_scanner_free(s);  /* waiting on Refresh-After */
    run_for(1.5);
    assert_int_equal(adapter_count(a, &a->report_gets), gets0 + 1);
    assert_int_equal(g.called, 0);
    assert_int_equal(h.called, 0);
    hgf_http_stats st;
    hgf_http_get_stats(e->http, &st);
    assert_int_equal(st.in_flight, 0);
}

int main(void)
{
    const struct CMUnitTest parsing[] = {
        cmocka_unit_test(test_parse_trivy),
        cmocka_unit_test(test_parse_grype),
        cmocka_unit_test(test_parse_harbor),
        cmocka_unit_test(test_parse_garbage),
        cmocka_unit_test(test_parse_empty_results),
        cmocka_unit_test(test_spec_errors),
    };
    const struct CMUnitTest backends[] = {
        cmocka_unit_test(test_none),
        cmocka_unit_test(test_trivy_report),
        cmocka_unit_test(test_trivy_child_env),
        cmocka_unit_test(test_trivy_failures),
        cmocka_unit_test(test_trivy_timeout),
        cmocka_unit_test(test_trivy_output_limits),
        cmocka_unit_test(test_trivy_concurrent),
        cmocka_unit_test(test_trivy_queue),
        cmocka_unit_test(test_trivy_free_kills),
        cmocka_unit_test(test_trivy_cannot_run),
        cmocka_unit_test(test_bad_targets),
        cmocka_unit_test(test_grype_report),
        cmocka_unit_test(test_harbor_report),
        cmocka_unit_test(test_harbor_errors),
        cmocka_unit_test(test_harbor_timeout_and_down),
        cmocka_unit_test(test_harbor_free_pending),
    };
    int failed = cmocka_run_group_tests_name("parsing", parsing, NULL, NULL);
    failed += cmocka_run_group_tests_name("backends", backends, group_setup, group_teardown);
    return failed;
}
