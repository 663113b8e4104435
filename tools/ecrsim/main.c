/* ecrsim: the AWS fleet simulator. Flags, start-up and shutdown only; the
 * fleet, auth, ECR API and HTTP glue live in their own files. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <regex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "dispatch.h"
#include "ecr_api.h"
#include "faults.h"
#include "fleet.h"
#include "hostcreds.h"
#include "iam.h"
#include "mutate.h"
#include "regv2.h"
#include "server.h"
#include "stats.h"
#include "sts.h"
#include "webhook.h"

#define MAX_REGIONS 64
#define REGION_RE "^[a-z]{2,}(-[a-z]+)+-[0-9]+$"

typedef struct options {
    struct sockaddr_in listen;
    hgf_sim_fleet_opts fleet;
    char *regions_copy;              /* storage behind fleet.regions */
    const char *regions[MAX_REGIONS];
    const char **keys;               /* argv strings "AKID:SECRET:ACCOUNT" */
    size_t n_keys;
    const char *scenario;            /* --scenario FILE */
    json_t *faults;                  /* faults.h's configuration, from the fault flags */
    const char *webhook;             /* --webhook URL */
    const char *webhook_key;         /* --webhook-api-key VALUE */
    const char *webhook_key_header;  /* --webhook-api-key-header NAME */
    unsigned suspended;              /* --suspended N: the last N accounts */
    const char *tls_cert, *tls_key;  /* --tls-cert FILE --tls-key FILE: serve HTTPS */
} options;

static const char USAGE[] =
    "usage: ecrsim [flags]\n"
    "\n"
    "Simulates an AWS organization's ECR fleet on one HTTP port:\n"
    "  POST /   ECR JSON 1.1 (DescribeRepositories, DescribeImages, GetAuthorizationToken,\n"
    "           GetLifecyclePolicy, GetRepositoryPolicy: policies and image config users\n"
    "           are generated from the seed, and /_sim/truth counts them)\n"
    "           and STS Query (AssumeRole, AssumeRoleWithWebIdentity, GetCallerIdentity),\n"
    "           SigV4-checked against the keys below and the sessions STS issued\n"
    "  /_registry/<account>/<region>/v2/...   registry v2 (GetAuthorizationToken's\n"
    "           proxyEndpoint is http://ADDR:PORT/_registry/<account>/<region>)\n"
    "  /latest/...   IMDSv2 for the scenario's instance_role\n"
    "  GET /_sim/container-credentials   container credentials (Authorization: TOKEN)\n"
    "  control: GET /_sim/truth (every image with its digest, tags, media types, size,\n"
    "           push time, config user, \"index\": bool, an index's \"children\" digests\n"
    "           and a platform manifest's \"platform\"),\n"
    "           GET|DELETE /_sim/stats, GET|POST /_sim/config,\n"
    "           GET|POST /_sim/scenario, GET|POST|DELETE /_sim/webhook, POST /_sim/push,\n"
    "           POST /_sim/retag, POST /_sim/delete, POST /_sim/lifecycle,\n"
    "           GET|DELETE /_sim/events (below)\n"
    "\n"
    "  --listen ADDR:PORT   IPv4 address and port (default 127.0.0.1:0, an ephemeral port)\n"
    "  --seed N             fleet and fault seed (default 1); the same seed gives the same\n"
    "                       fleet and the same sequence of injected faults\n"
    "  --accounts N         number of accounts (default 5, at most 1000000)\n"
    "  --suspended N        Organizations ListAccounts shows the last N accounts SUSPENDED\n"
    "  --regions R1,R2,...  regions (default us-east-1,eu-west-1)\n"
    "  --repos N            repositories per registry (default 8)\n"
    "  --images N           average images per repository (default 12). A repository's\n"
    "                       images come in blocks of three; about a quarter of the\n"
    "                       complete blocks are a multi-arch push (a linux/amd64 and a\n"
    "                       linux/arm64 manifest, untagged, then an OCI image index or\n"
    "                       Docker manifest list of them, tagged as any image), so\n"
    "                       ~8% of the images are indexes and ~16% their platform\n"
    "                       manifests; the count per repository does not change\n"
    "  --big-repo N         add repository 'big' with exactly N images to the first\n"
    "                       account's first region (default 0: none)\n"
    "  --key AKID:SECRET:ACCOUNT\n"
    "                       accept this access key for ACCOUNT (12 digits, or '*' for any)\n"
    "                       with full access there; repeatable. Without --key, the key\n"
    "                       AKIDECRSIMDEFAULT with secret ecrsim-default-secret is accepted\n"
    "                       for any account.\n"
    "  --scenario FILE      IAM scenario (JSON, format below); POST /_sim/scenario replaces it\n"
    "  --clock-offset S     the server's clock is real time + S seconds (Date header, SigV4\n"
    "                       skew check, credential expiry)\n"
    "  --quota OP=RATE      at most RATE calls/s of OP per (account, region) (token bucket,\n"
    "                       burst RATE); excess calls get ThrottlingException \"Rate exceeded\"\n"
    "                       (STS: Throttling; registry: 429 TOOMANYREQUESTS). The account is\n"
    "                       the registry's for ECR and registry calls, the caller's for STS.\n"
    "                       Registry manifest pulls count as BatchGetImage, blob pulls as\n"
    "                       GetDownloadUrlForLayer; repeatable\n"
    "  --throttle-rate P    answer this fraction of AWS calls with a throttling error\n"
    "  --error-rate P       answer this fraction with 500 ServerException or an empty 503,\n"
    "                       alternating\n"
    "  --drop-rate P        close this fraction of connections without an answer\n"
    "  --latency-ms N       delay every AWS call (ECR, STS, registry) by N ms\n"
    "  --webhook URL        POST the EventBridge event of every push, re-tag and delete\n"
    "                       to URL (as POST /_sim/webhook {\"url\": URL} does)\n"
    "  --webhook-api-key V  with --webhook: send V in the API-key header (API_KEY auth)\n"
    "  --webhook-api-key-header NAME\n"
    "                       that header's name (default X-Api-Key)\n"
    "  --tls-cert FILE      serve HTTPS with this PEM certificate (chain); needs\n"
    "  --tls-key FILE       its PEM private key, and a --listen address other than\n"
    "                       0.0.0.0 (the registry's proxyEndpoint names it)\n"
    "  --help               this text\n"
    "\n"
    "Fault flags apply to ECR, STS and registry calls, never to /_sim/. POST /_sim/config\n"
    "changes them at runtime: {\"throttle_rate\":0.3,\"error_rate\":0.05,\"drop_rate\":0.02,\n"
    "\"latency_ms\":20,\"quotas\":{\"DescribeImages\":50},\"clock_offset\":600} (members left\n"
    "out keep their value; quotas replaces all quotas).\n"
    "\n"
    "Mutations (JSON bodies; a bad member gets 400 {\"error\": \"<member>: ...\"}):\n"
    "  POST /_sim/webhook {\"url\": \"http://127.0.0.1:8080/api/webhooks/ecr\",\n"
    "      \"auth\": {\"type\": \"API_KEY\", \"header\": \"X-Api-Key\", \"value\": \"...\"}\n"
    "            | {\"type\": \"BASIC\", \"username\": \"...\", \"password\": \"...\"}\n"
    "            | {\"type\": \"BEARER\", \"token\": \"...\"},  \"timeout_ms\": 5000}\n"
    "      Events are POSTed as an EventBridge API destination does (Content-Type\n"
    "      application/json, the exact \"ECR Image Action\" event), with up to 3 attempts\n"
    "      200 ms apart on no answer, 401, 407, 409, 429 and 5xx.\n"
    "  POST /_sim/push {\"account\", \"region\", \"repository\", \"tag\"?, \"count\"?: 1,\n"
    "      \"rate\"?: R, \"deliver\"?: bool, \"immutable\"?: bool, \"force\"?: bool,\n"
    "      \"scan_on_push\"?: bool, \"index\"?: \"oci\" | \"docker\"}\n"
    "      A new image (new digest); creates the repository (MUTABLE unless\n"
    "      \"immutable\"). An existing tag moves to it; in an IMMUTABLE repository that is\n"
    "      409 ImageTagAlreadyExistsException plus a FAILURE event unless \"force\".\n"
    "      \"deliver\" defaults to whether a webhook is configured. Answers {\"digest\",\n"
    "      \"repository\", \"tag\", \"previous_digest\", \"event_id\", \"delivered_status\",\n"
    "      \"attempts\", \"created_repository\", \"immutable\"}. \"index\" makes it a multi-arch\n"
    "      push as buildx does: two untagged platform manifests (linux/amd64, linux/arm64,\n"
    "      each with its PUSH event first) and an OCI image index or Docker manifest list\n"
    "      of them, which takes the tag and is the \"digest\"; the answer adds \"children\".\n"
    "      \"count\": N pushes N images\n"
    "      tagged <tag>-1..<tag>-N ({\"count\", \"pushes\": [...]}); with \"rate\": R they\n"
    "      run in the background at R/s and 202 {\"batch\": ID} answers at once.\n"
    "  POST /_sim/retag {\"account\", \"region\", \"repository\", \"digest\", \"tag\",\n"
    "      \"force\"?, \"deliver\"?}   the tag onto an existing image (a PUSH event)\n"
    "  POST /_sim/delete {\"account\", \"region\", \"repository\", \"digest\" | \"tag\",\n"
    "      \"deliver\"?}   the image and all its tags (a DELETE event)\n"
    "  POST /_sim/lifecycle {\"account\", \"region\", \"repository\"? (else all),\n"
    "      \"untagged_expire_after_seconds\"?: N | null, \"delete_on_next_manifest_get\"?:\n"
    "      bool}   untagged images expire N s after they became untagged (or after the\n"
    "      rule was set, if later), without events; the trap makes the next registry\n"
    "      manifest HEAD/GET of an untagged image find it deleted (once)\n"
    "  GET /_sim/events[?batch=ID]   delivered events with status, attempts, latency\n"
    "\n"
    "Scenario (every member optional, unknown members rejected):\n"
    "  {\"principals\": [{\"arn\": \"arn:aws:iam::100007000000:user/ci\",\n"
    "                   \"access_key_id\": \"AKIA...\", \"secret_access_key\": \"...\",\n"
    "                   \"policy\": [{\"actions\": [\"ecr:*\", \"sts:AssumeRole\"],\n"
    "                               \"resources\": [\"*\"]},\n"
    "                              {\"effect\": \"Deny\",\n"
    "                               \"actions\": [\"ecr:GetLifecyclePolicy\"]}]}],\n"
    "   \"roles\": [{\"arn\": \"arn:aws:iam::100007000001:role/sensor\",\n"
    "              \"trust\": [{\"principal\": \"arn:aws:iam::100007000000:user/ci\",\n"
    "                         \"external_id\": \"optional-required-id\"}],\n"
    "              \"policy\": [{\"actions\": [\"ecr:Describe*\"], \"resources\": [\"*\"]}],\n"
    "              \"max_session_duration\": 3600}],\n"
    "   \"repository_policies\": {\"100007000001\": [{\"repositories\": [\"*\"],\n"
    "        \"principal\": \"arn:aws:iam::100007000000:role/x\",\n"
    "        \"actions\": [\"ecr:BatchGetImage\", \"ecr:GetDownloadUrlForLayer\"]}]},\n"
    "   \"instance_role\": \"arn:aws:iam::100007000000:role/node\",\n"
    "   \"container_role\": \"arn:aws:iam::100007000000:role/task\",\n"
    "   \"container_token\": \"secret-token\",\n"
    "   \"web_identity_tokens\": {\"<token>\": \"arn:aws:iam::100007000000:role/irsa\"},\n"
    "   \"credential_duration_seconds\": 900}\n"
    "  Statements allow, or deny with \"effect\": \"Deny\" (a Deny wins): actions are\n"
    "  case-insensitive globs (\"*\", \"ecr:*\", \"ecr:Describe*\"), resources globs over\n"
    "  ARNs (arn:aws:ecr:R:A:repository/NAME);\n"
    "  ecr:GetAuthorizationToken is checked against resource \"*\" only. A trust or\n"
    "  repository-policy principal is an ARN (a role's ARN admits its sessions),\n"
    "  arn:aws:iam::A:root or an account id (anyone in A), or \"*\". Callers from another\n"
    "  account than the registry's also need a repository policy to pull.\n"
    "  credential_duration_seconds caps every issued credential and ECR token.\n"
    "\n"
    "Account ids are 100000000000 + (seed % 1000) * 1000000 + index. Prints 'ecrsim\n"
    "listening on http[s]://ADDR:PORT' on stdout once ready, logs one line per request on\n"
    "stderr, and exits on SIGTERM or SIGINT.\n";

enum { OPT_LISTEN = 256, OPT_SEED, OPT_ACCOUNTS, OPT_REGIONS, OPT_REPOS, OPT_IMAGES, OPT_BIG,
       OPT_KEY, OPT_SCENARIO, OPT_CLOCK, OPT_QUOTA, OPT_THROTTLE, OPT_ERROR, OPT_DROP,
       OPT_LATENCY, OPT_WEBHOOK, OPT_WEBHOOK_KEY, OPT_WEBHOOK_KEY_HEADER, OPT_SUSPENDED, OPT_TLS_CERT, OPT_TLS_KEY, OPT_HELP };

static const struct option LONG_OPTS[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"seed", required_argument, NULL, OPT_SEED},
    {"accounts", required_argument, NULL, OPT_ACCOUNTS},
    {"regions", required_argument, NULL, OPT_REGIONS},
    {"repos", required_argument, NULL, OPT_REPOS},
    {"images", required_argument, NULL, OPT_IMAGES},
    {"big-repo", required_argument, NULL, OPT_BIG},
    {"key", required_argument, NULL, OPT_KEY},
    {"scenario", required_argument, NULL, OPT_SCENARIO},
    {"clock-offset", required_argument, NULL, OPT_CLOCK},
    {"quota", required_argument, NULL, OPT_QUOTA},
    {"throttle-rate", required_argument, NULL, OPT_THROTTLE},
    {"error-rate", required_argument, NULL, OPT_ERROR},
    {"drop-rate", required_argument, NULL, OPT_DROP},
    {"latency-ms", required_argument, NULL, OPT_LATENCY},
    {"webhook", required_argument, NULL, OPT_WEBHOOK},
    {"webhook-api-key", required_argument, NULL, OPT_WEBHOOK_KEY},
    {"webhook-api-key-header", required_argument, NULL, OPT_WEBHOOK_KEY_HEADER},
    {"suspended", required_argument, NULL, OPT_SUSPENDED},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "ecrsim: %s\n(see ecrsim --help)\n", msg);
    return 2;
}

static int parse_u64(const char *flag, const char *s, unsigned long long max,
                     unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || errno || *s == '-' || v > max) {
        char range[32];
        snprintf(range, sizeof range, "0..%llu", max);
        fprintf(stderr, "ecrsim: %s: expected an integer in %s, got '%.40s'\n", flag, range, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_uint(const char *flag, const char *s, unsigned min, unsigned max, unsigned *out)
{
    unsigned long long v;
    if (parse_u64(flag, s, max, &v))
        return -1;
    if (v < min) {
        fprintf(stderr, "ecrsim: %s: must be at least %u\n", flag, min);
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

static int parse_listen(const char *s, struct sockaddr_in *sa)
{
    const char *colon = strrchr(s, ':');
    char host[64];
    unsigned long long port;
    if (!colon || (size_t)(colon - s) >= sizeof host)
        return usage_error("--listen: expected ADDR:PORT, got '%.64s'", s);
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
        return usage_error("--listen: '%.64s' is not an IPv4 address", host);
    if (parse_u64("--listen", colon + 1, 65535, &port))
        return 2;
    sa->sin_port = htons((uint16_t)port);
    return 0;
}

static int parse_regions(const char *s, options *o)
{
    regex_t re;
    if (regcomp(&re, REGION_RE, REG_EXTENDED | REG_NOSUB) != 0)
        return usage_error("--regions: internal error");
    free(o->regions_copy);
    o->regions_copy = strdup(s);
    o->fleet.n_regions = 0;
    int rc = o->regions_copy ? 0 : usage_error("--regions: out of memory");
    char *save = NULL;
    for (char *r = rc ? NULL : strtok_r(o->regions_copy, ",", &save); r && !rc;
         r = strtok_r(NULL, ",", &save)) {
        if (strlen(r) > 32 || regexec(&re, r, 0, NULL, 0) != 0)
            rc = usage_error("--regions: '%.40s' is not a region name like us-east-1", r);
        else if (o->fleet.n_regions == MAX_REGIONS)
            rc = usage_error("--regions: at most 64 regions");
        else
            o->regions[o->fleet.n_regions++] = r;
    }
    if (!rc && o->fleet.n_regions == 0)
        rc = usage_error("--regions: give at least one region");
    regfree(&re);
    return rc;
}

static int add_key_spec(const char *spec, options *o)
{
    const char **keys = realloc(o->keys, (o->n_keys + 1) * sizeof *keys);
    if (!keys)
        return usage_error("--key: out of memory");
    o->keys = keys;
    o->keys[o->n_keys++] = spec;
    return 0;
}

static int set_fault(options *o, const char *member, json_t *value)
{
    if (!value || json_object_set_new(o->faults, member, value) != 0)
        return usage_error("out of memory");
    return 0;
}

static int parse_probability(const char *flag, const char *member, const char *s, options *o)
{
    char *end;
    errno = 0;
    double p = strtod(s, &end);
    if (!*s || *end || errno || !(p >= 0 && p <= 1))
        return usage_error("%s: expected a probability between 0 and 1, got '%.40s'", flag, s);
    return set_fault(o, member, json_real(p));
}

static int parse_offset(const char *s, options *o)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < -316224000LL || v > 316224000LL)
        return usage_error("--clock-offset: expected whole seconds within 10 years, got '%.40s'",
                           s);
    return set_fault(o, "clock_offset", json_integer(v));
}

/* OP=RATE into the quotas object, which collects every --quota. */
static int parse_quota(const char *s, options *o)
{
    const char *eq = strchr(s, '=');
    char op[64], *end;
    if (!eq || eq == s || (size_t)(eq - s) >= sizeof op)
        return usage_error("--quota: expected OP=RATE like DescribeImages=20, got '%.64s'", s);
    snprintf(op, sizeof op, "%.*s", (int)(eq - s), s);
    errno = 0;
    double rate = strtod(eq + 1, &end);
    if (!eq[1] || *end || errno || !(rate > 0))
        return usage_error("--quota %s: the rate must be a number above 0, got '%.40s'", op,
                           eq + 1);
    json_t *quotas = json_object_get(o->faults, "quotas");
    if (!quotas && set_fault(o, "quotas", json_object()) != 0)
        return 2;
    quotas = json_object_get(o->faults, "quotas");
    if (json_object_set_new(quotas, op, json_real(rate)) != 0)
        return usage_error("out of memory");
    return 0;
}

static int apply_fault_flag(int c, const char *arg, options *o)
{
    unsigned latency;
    switch (c) {
    case OPT_CLOCK:
        return parse_offset(arg, o);
    case OPT_QUOTA:
        return parse_quota(arg, o);
    case OPT_THROTTLE:
        return parse_probability("--throttle-rate", "throttle_rate", arg, o);
    case OPT_ERROR:
        return parse_probability("--error-rate", "error_rate", arg, o);
    case OPT_DROP:
        return parse_probability("--drop-rate", "drop_rate", arg, o);
    case OPT_LATENCY:
        if (parse_uint("--latency-ms", arg, 0, 60000, &latency))
            return 2;
        return set_fault(o, "latency_ms", json_integer(latency));
    default:
        return 2;
    }
}

static int apply_flag(int c, const char *arg, options *o)
{
    unsigned long long seed;
    switch (c) {
    case OPT_LISTEN:
        return parse_listen(arg, &o->listen);
    case OPT_SEED:
        if (parse_u64("--seed", arg, UINT64_MAX, &seed))
            return 2;
        o->fleet.seed = seed;
        return 0;
    case OPT_ACCOUNTS:
        return parse_uint("--accounts", arg, 1, 1000000, &o->fleet.accounts) ? 2 : 0;
    case OPT_REGIONS:
        return parse_regions(arg, o);
    case OPT_REPOS:
        return parse_uint("--repos", arg, 0, 100000, &o->fleet.repos) ? 2 : 0;
    case OPT_IMAGES:
        return parse_uint("--images", arg, 0, 1000000, &o->fleet.images) ? 2 : 0;
    case OPT_BIG:
        return parse_uint("--big-repo", arg, 0, 10000000, &o->fleet.big_repo) ? 2 : 0;
    case OPT_KEY:
        return add_key_spec(arg, o);
    case OPT_SCENARIO:
        o->scenario = arg;
        return 0;
    case OPT_WEBHOOK:
        o->webhook = arg;
        return 0;
    case OPT_WEBHOOK_KEY:
        o->webhook_key = arg;
        return 0;
    case OPT_WEBHOOK_KEY_HEADER:
        o->webhook_key_header = arg;
        return 0;
    case OPT_SUSPENDED:
        return parse_uint("--suspended", arg, 0, 1000000, &o->suspended) ? 2 : 0;
    case OPT_TLS_CERT:
        o->tls_cert = arg;
        return 0;
    case OPT_TLS_KEY:
        o->tls_key = arg;
        return 0;
    default:
        return apply_fault_flag(c, arg, o);
    }
}

static const char *flag_name(int val)
{
    for (const struct option *p = LONG_OPTS; p->name; p++)
        if (p->val == val)
            return p->name;
    return "?";
}

/* 0 to run, 1 after --help, 2 on a usage error (already reported). */
static int parse_args(int argc, char **argv, options *o)
{
    opterr = 0;
    int c, rc = 0;
    while (!rc && (c = getopt_long(argc, argv, ":", LONG_OPTS, NULL)) != -1) {
        if (c == OPT_HELP) {
            fputs(USAGE, stdout);
            return 1;
        }
        if (c == ':')
            rc = usage_error("--%s needs a value", flag_name(optopt));
        else if (c == '?')
            rc = usage_error("unknown flag '%.64s'", argv[optind - 1]);
        else
            rc = apply_flag(c, optarg, o);
    }
    if (!rc && optind < argc)
        rc = usage_error("unexpected argument '%.64s'", argv[optind]);
    if (!rc && !o->webhook && (o->webhook_key || o->webhook_key_header))
        rc = usage_error("--webhook-api-key%s needs --webhook",
                         o->webhook_key ? "" : "-header");
    if (!rc && !o->tls_cert != !o->tls_key)
        rc = usage_error("--tls-%s needs --tls-%s", o->tls_cert ? "cert" : "key",
                         o->tls_cert ? "key" : "cert");
    /* The Host header would name the host, but not the scheme. */
    if (!rc && o->tls_cert && o->listen.sin_addr.s_addr == htonl(INADDR_ANY))
        rc = usage_error("--tls-cert needs a --listen address other than 0.0.0.0");
    return rc;
}

static void set_defaults(options *o)
{
    memset(o, 0, sizeof *o);
    o->listen.sin_family = AF_INET;
    o->listen.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    o->fleet.seed = 1;
    o->fleet.accounts = 5;
    o->regions[0] = "us-east-1";
    o->regions[1] = "eu-west-1";
    o->fleet.n_regions = 2;
    o->fleet.repos = 8;
    o->fleet.images = 12;
    o->fleet.regions = o->regions;
    o->faults = json_object();
}

/* ---- start-up ---------------------------------------------------------- */

typedef struct sim {
    hgf_sim_services svc;
    hgf_sim_server *server;
} sim;

static int report(const hgf_err *err)
{
    fprintf(stderr, "ecrsim: %s\n", err->msg);
    return err->code == HGF_EINPUT ? 2 : 1;
}

static int load_keys(const options *o, hgf_sim_auth *auth)
{
    hgf_err err;
    for (size_t i = 0; i < o->n_keys; i++)
        if (hgf_sim_auth_add_key(auth, o->keys[i], &err) != 0)
            return report(&err);
    if (o->n_keys)
        return 0;
    fputs("ecrsim: no --key given: accepting the default key " HGF_SIM_DEFAULT_AKID
          " for any account (see --help)\n",
          stderr);
    return hgf_sim_auth_add_key(auth, HGF_SIM_DEFAULT_AKID ":" HGF_SIM_DEFAULT_SECRET ":*", &err)
               ? 1
               : 0;
}

static void describe_fleet(hgf_sim_fleet *f, double ms)
{
    size_t repos = 0, images = 0, n = hgf_sim_fleet_registry_count(f);
    hgf_sim_fleet_lock(f);
    for (size_t i = 0; i < n; i++) {
        const hgf_sim_registry *reg = hgf_sim_fleet_registry_at(f, i);
        repos += reg->n_repos;
        for (size_t k = 0; k < reg->n_repos; k++)
            images += reg->repos[k].n_images;
    }
    hgf_sim_fleet_unlock(f);
    fprintf(stderr,
            "ecrsim: seed %llu: %zu registries, %zu repositories, %zu images (generated in "
            "%.1f ms)\n",
            hgf_sim_fleet_seed(f), n, repos, images, ms);
}

static int build_fleet(const options *o, sim *s)
{
    hgf_err err;
    hgf_err_clear(&err);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (hgf_sim_fleet_create(&o->fleet, &s->svc.fleet, &err) != 0)
        return report(&err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    describe_fleet(s->svc.fleet, (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
                                     (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    return 0;
}

/* IAM, keys, faults and stats: everything the fleet does not decide. */
static int build_identity(const options *o, sim *s)
{
    hgf_err err;
    hgf_err_clear(&err);
    if (hgf_sim_iam_create(&s->svc.iam) || hgf_sim_stats_create(&s->svc.stats) ||
        hgf_sim_faults_create(o->fleet.seed, &s->svc.faults) ||
        hgf_sim_auth_create(s->svc.iam, hgf_sim_fleet_first_account(s->svc.fleet),
                            &s->svc.auth)) {
        fputs("ecrsim: out of memory\n", stderr);
        return 1;
    }
    if (o->scenario && hgf_sim_iam_load_file(s->svc.iam, o->scenario, &err) != 0)
        return report(&err);
    if (hgf_sim_faults_configure(s->svc.faults, o->faults, &err) != 0)
        return report(&err);
    return load_keys(o, s->svc.auth);
}

/* The registry's URLs name the address clients connect to; a wildcard
 * listen address has none, so then each request's Host header is used. */
static void base_url(const options *o, const hgf_sim_server *server, char out[64])
{
    char addr[INET_ADDRSTRLEN];
    out[0] = '\0';
    if (o->listen.sin_addr.s_addr == htonl(INADDR_ANY))
        return;
    inet_ntop(AF_INET, &o->listen.sin_addr, addr, sizeof addr);
    snprintf(out, 64, "%s://%s:%u", hgf_sim_server_scheme(server), addr,
             (unsigned)hgf_sim_server_port(server));
}

static int build_apis(const options *o, sim *s)
{
    hgf_err err;
    char base[64];
    hgf_err_clear(&err);
    base_url(o, s->server, base);
    if (hgf_sim_regv2_create(s->svc.fleet, s->svc.iam, s->svc.faults, base[0] ? base : NULL,
                             &s->svc.registry, &err) != 0 ||
        hgf_sim_ecr_create(s->svc.fleet, s->svc.iam, s->svc.faults, s->svc.registry,
                           &s->svc.ecr, &err) != 0)
        return report(&err);
    if (hgf_sim_sts_create(s->svc.auth, s->svc.iam, s->svc.faults, &s->svc.sts) != 0) {
        fputs("ecrsim: out of memory\n", stderr);
        return 1;
    }
    return hgf_sim_hostcreds_create(s->svc.sts, s->svc.iam, &s->svc.host, &err) ? report(&err)
                                                                               : 0;
}

static int64_t sim_clock(void *faults)
{
    return hgf_sim_faults_now_ms(faults);
}

/* The --webhook flags as POST /_sim/webhook's document. */
static int configure_webhook(const options *o, hgf_sim_webhook *w)
{
    hgf_err err;
    hgf_err_clear(&err);
    if (!o->webhook)
        return 0;
    json_t *doc = json_pack("{s:s}", "url", o->webhook);
    if (doc && o->webhook_key)
        json_object_set_new(doc, "auth",
                            json_pack("{s:s, s:s, s:s}", "type", "API_KEY", "header",
                                      o->webhook_key_header ? o->webhook_key_header
                                                            : "X-Api-Key",
                                      "value", o->webhook_key));
    int rc = doc ? hgf_sim_webhook_configure(w, doc, &err)
                 : hgf_err_set(&err, HGF_ENOMEM, "out of memory");
    json_decref(doc);
    if (rc)
        fprintf(stderr, "ecrsim: --webhook: %s\n(see ecrsim --help)\n", err.msg);
    return rc ? (rc == HGF_EINPUT ? 2 : 1) : 0;
}

/* Mutations and their events: they need the fleet's clock to be the
 * simulator's. */
static int build_mutations(const options *o, sim *s)
{
    hgf_err err;
    hgf_err_clear(&err);
    hgf_sim_fleet_set_clock(s->svc.fleet, sim_clock, s->svc.faults);
    s->svc.org_suspended = o->suspended;
    if (hgf_sim_webhook_create(&s->svc.webhook) != 0) {
        fputs("ecrsim: cannot initialize libcurl\n", stderr);
        return 1;
    }
    if (hgf_sim_mutate_create(s->svc.fleet, s->svc.webhook, &s->svc.mutate, &err) != 0)
        return report(&err);
    return configure_webhook(o, s->svc.webhook);
}

static int build_services(const options *o, sim *s)
{
    hgf_err err;
    hgf_err_clear(&err);
    if (hgf_sim_server_bind(&o->listen, &s->server, &err) != 0)
        return report(&err);
    if (o->tls_cert && hgf_sim_server_set_tls(s->server, o->tls_cert, o->tls_key, &err) != 0)
        return report(&err);
    int rc = build_fleet(o, s);
    if (!rc)
        rc = build_identity(o, s);
    if (!rc)
        rc = build_mutations(o, s);
    return rc ? rc : build_apis(o, s);
}

static void free_services(sim *s)
{
    hgf_sim_mutate_free(s->svc.mutate);
    hgf_sim_webhook_free(s->svc.webhook);
    hgf_sim_hostcreds_free(s->svc.host);
    hgf_sim_sts_free(s->svc.sts);
    hgf_sim_ecr_free(s->svc.ecr);
    hgf_sim_regv2_free(s->svc.registry);
    hgf_sim_auth_free(s->svc.auth);
    hgf_sim_faults_free(s->svc.faults);
    hgf_sim_stats_free(s->svc.stats);
    hgf_sim_iam_free(s->svc.iam);
    hgf_sim_fleet_free(s->svc.fleet);
}

/* Signals are blocked before any server thread exists (threads inherit the
 * mask) and then taken synchronously, so no handler or flag is needed. */
static int serve_until_signal(const options *o, sim *s)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    hgf_err err;
    hgf_err_clear(&err);
    if (hgf_sim_server_start(s->server, &s->svc, &err) != 0)
        return report(&err);
    char addr[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &o->listen.sin_addr, addr, sizeof addr);
    printf("ecrsim listening on %s://%s:%u\n", hgf_sim_server_scheme(s->server), addr,
           (unsigned)hgf_sim_server_port(s->server));
    fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "ecrsim: %s received, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    return 0;
}

int main(int argc, char **argv)
{
    options o;
    set_defaults(&o);
    int rc = o.faults ? parse_args(argc, argv, &o) : usage_error("out of memory");
    int help = rc == 1;
    sim s;
    memset(&s, 0, sizeof s);
    if (rc == 0)
        rc = build_services(&o, &s);
    if (rc == 0)
        rc = serve_until_signal(&o, &s);
    /* A request thread may be inside a webhook delivery: end those first,
     * since stopping the server waits for its threads. */
    if (s.svc.webhook)
        hgf_sim_webhook_stop(s.svc.webhook);
    hgf_sim_server_stop(s.server);
    free_services(&s);
    free(o.regions_copy);
    free(o.keys);
    json_decref(o.faults);
    return help ? 0 : rc;
}
