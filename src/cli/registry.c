#include "hgfleet/cli.h"
#include "hgfleet/registry.h"
#include "hgfleet/secret.h"

#include <ev.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "Usage: hgfleet registry manifest URL_REF [--head] [options]\n"
    "       hgfleet registry config URL_REF [options]\n"
    "\n"
    "Talks to one registry v2 / OCI distribution registry directly; needs no database.\n"
    "  manifest   HEAD or GET a manifest: its digest, media type and size\n"
    "  config     the image config (through an index to its linux/amd64 entry, else\n"
    "             the first): its User, architecture and os\n"
    "\n"
    "URL_REF is http(s)://host[:port]/repository[:tag|@sha256:<64 hex>] (tag: latest).\n"
    "Every body is checked against its digest.\n"
    "\n"
    "Options:\n"
    "  --username USER         for Basic challenges and Bearer token endpoints\n"
    "  --password-file FILE    a file holding the password ('-' reads stdin); never on argv\n"
    "  --head                  manifest: HEAD instead of GET\n"
    "  --ca-file FILE          trust this CA bundle for https\n"
    "  --json                  print JSON: the metadata plus the manifest or config\n"
    "  -h, --help              this help\n"
    "\n"
    "Exit codes: 0 ok; 1 the registry failed or refused (the message names its error\n"
    "code: MANIFEST_UNKNOWN, UNAUTHORIZED, DENIED...); 2 bad arguments.\n";

typedef struct reg_opts {
    const char *cmd; /* "registry manifest" or "registry config" */
    const char *url, *username, *password_file, *ca_file;
    int head, json;
    hgf_registry_ref ref;
} reg_opts;

static int parse(int argc, char **argv, reg_opts *o)
{
    static const struct option longopts[] = {
        {"username", required_argument, 0, 'u'}, {"password-file", required_argument, 0, 'f'},
        {"password", required_argument, 0, 'P'}, {"head", no_argument, 0, 'H'},
        {"ca-file", required_argument, 0, 'c'},  {"json", no_argument, 0, 'j'},
        {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case 'u': o->username = optarg; break;
        case 'f': o->password_file = optarg; break;
        case 'H': o->head = 1; break;
        case 'c': o->ca_file = optarg; break;
        case 'j': o->json = 1; break;
        case 'P':
            return hgf_cli_usage_error(o->cmd, "--password: passwords are never taken on the "
                                       "command line (ps shows it); use --password-file FILE "
                                       "or '-' for stdin");
        case ':':
            return hgf_cli_usage_error(o->cmd, "%s: needs a value", argv[optind - 1]);
        default:
            return hgf_cli_usage_error(o->cmd, "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return hgf_cli_usage_error(o->cmd, "URL_REF: missing");
    if (argc - optind > 1)
        return hgf_cli_usage_error(o->cmd, "unexpected argument \"%s\"", argv[optind + 1]);
    o->url = argv[optind];
    return 0;
}

static int validate(reg_opts *o)
{
    hgf_err err;
    if (hgf_registry_parse_ref(o->url, &o->ref, &err))
        return hgf_cli_usage_error(o->cmd, "%s", err.msg);
    if (o->head && strcmp(o->cmd, "registry manifest"))
        return hgf_cli_usage_error(o->cmd, "--head: only for 'registry manifest'");
    if (o->username && (!*o->username || strlen(o->username) > 256 || strchr(o->username, ':')))
        return hgf_cli_usage_error(o->cmd, "--username: expected 1 to 256 characters without ':'");
    if (o->username && !o->password_file)
        return hgf_cli_usage_error(o->cmd, "--password-file: required with --username");
    if (o->password_file && !o->username)
        return hgf_cli_usage_error(o->cmd, "--username: required with --password-file");
    return 0;
}

/* ---- running one request on a private loop ---------------------------- */

typedef struct run_state {
    const reg_opts *o;
    int done, code;
} run_state;

static json_t *parsed_or_null(const char *body, size_t len)
{
    json_t *j = body ? json_loadb(body, len, 0, NULL) : NULL;
    return j ? j : json_null();
}

static void print_manifest(const reg_opts *o, const hgf_registry_result *r)
{
    long long size = o->head ? r->content_length : (long long)r->body_len;
    if (!o->json) {
        printf("digest:     %s\nmedia type: %s\nsize:       %lld\n", r->digest, r->media_type, size);
        return;
    }
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "registry", o->ref.base, "repository",
                          o->ref.repository, "reference", o->ref.reference, "digest", r->digest,
                          "media_type", r->media_type, "size", (json_int_t)size);
    if (!o->head)
        json_object_set_new(j, "manifest", parsed_or_null(r->body, r->body_len));
    hgf_cli_print_json(j);
    json_decref(j);
}

static void on_manifest(const hgf_registry_result *r, void *arg)
{
    run_state *st = arg;
    st->done = 1;
    st->code = r->rc ? hgf_cli_fail(&r->err) : 0;
    if (!r->rc)
        print_manifest(st->o, r);
}

static const char *config_field(const json_t *cfg, const char *outer, const char *name)
{
    const json_t *v = json_object_get(outer ? json_object_get(cfg, outer) : cfg, name);
    return json_is_string(v) ? json_string_value(v) : "";
}

static json_t *str_or_null(const char *s)
{
    return *s ? json_string(s) : json_null();
}

static void print_config_json(const reg_opts *o, const hgf_registry_image *img)
{
    json_t *j = json_pack("{s:s, s:s, s:s, s:o, s:o, s:s, s:s, s:s, s:s, s:s, s:s, s:O}",
                          "registry", o->ref.base, "repository", o->ref.repository, "reference",
                          o->ref.reference, "index_digest", str_or_null(img->index_digest),
                          "platform", str_or_null(img->platform), "manifest_digest",
                          img->manifest_digest, "media_type", img->media_type, "config_digest",
                          img->config_digest, "user", config_field(img->config, "config", "User"),
                          "architecture", config_field(img->config, NULL, "architecture"), "os",
                          config_field(img->config, NULL, "os"), "config", (json_t *)img->config);
    hgf_cli_print_json(j);
    json_decref(j);
}

static void print_config(const reg_opts *o, const hgf_registry_image *img)
{
    if (o->json) {
        print_config_json(o, img);
        return;
    }
    const char *user = config_field(img->config, "config", "User");
    if (img->index_digest[0])
        printf("index:        %s (picked %s)\n", img->index_digest, img->platform);
    printf("manifest:     %s (%s)\nconfig:       %s\nuser:         %s\narchitecture: %s\n"
           "os:           %s\n",
           img->manifest_digest, img->media_type, img->config_digest,
           *user ? user : "(not set: runs as root)", config_field(img->config, NULL, "architecture"),
           config_field(img->config, NULL, "os"));
}

static void on_image(const hgf_registry_image *img, void *arg)
{
    run_state *st = arg;
    st->done = 1;
    st->code = img->rc ? hgf_cli_fail(&img->err) : 0;
    if (!img->rc)
        print_config(st->o, img);
}

static int start_request(const reg_opts *o, hgf_http *http, const hgf_registry_auth *auth, run_state *st,
                hgf_err *err)
{
    hgf_registry_req req = {.http = http, .proxy_endpoint = o->ref.base, .auth = auth,
                            .repository = o->ref.repository, .reference = o->ref.reference,
                            .limit_key = o->ref.base, .head = o->head};
    if (!strcmp(o->cmd, "registry manifest"))
        return hgf_registry_manifest(&req, on_manifest, st, err);
    return hgf_registry_image_config(&req, on_image, st, err);
}

static int run(const reg_opts *o, const hgf_registry_auth *auth)
{
    hgf_err err;
    hgf_err_clear(&err);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    if (!loop) {
        hgf_err_set(&err, HGF_EFAIL, "cannot create an event loop");
        return hgf_cli_fail(&err);
    }
    hgf_http_opts ho = {.ca_bundle = o->ca_file, .max_per_key = 4};
    hgf_http *http = hgf_http_new(loop, &ho, &err);
    run_state st = {.o = o};
    int code = 0;
    if (!http || start_request(o, http, auth, &st, &err))
        code = hgf_cli_fail(&err);
    while (!code && !st.done)
        ev_run(loop, EVRUN_ONCE);
    hgf_http_free(http);
    ev_loop_destroy(loop);
    return code ? code : st.code;
}

static int cmd(const char *name, int argc, char **argv)
{
    reg_opts o = {.cmd = name};
    int code = parse(argc, argv, &o);
    if (!code)
        code = validate(&o);
    if (code)
        return code;
    hgf_err err;
    hgf_err_clear(&err);
    char *password = NULL;
    if (o.password_file &&
        !(password = hgf_config_read_secret_file(o.password_file, "--password-file", &err)))
        return hgf_cli_fail(&err);
    hgf_registry_auth auth = {.username = o.username, .password = password};
    code = run(&o, &auth);
    if (password) {
        hgf_secret_wipe(password, strlen(password));
        free(password);
    }
    return code;
}

int hgf_cli_registry(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "help") || hgf_cli_wants_help(argc, argv)) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "manifest"))
        return cmd("registry manifest", argc - 1, argv + 1);
    if (!strcmp(argv[1], "config"))
        return cmd("registry config", argc - 1, argv + 1);
    return hgf_cli_usage_error("registry", "unknown command \"%s\" (expected manifest or config)",
                               argv[1]);
}
