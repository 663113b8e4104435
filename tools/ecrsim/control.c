#include "control.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hgfleet/timeutil.h"
#include "policy.h"

/* The truth is streamed one repository per chunk and the fleet lock is
 * taken per chunk, so a large fleet neither sits in memory as one document
 * nor blocks the API while it is being read. */
/* The posture facts of a registry (or of the whole fleet) as counts. */
typedef struct posture_counts {
    long no_lifecycle, open_policy, root_images;
    long days[3651];   /* [d]: repositories whose untagged window is d days (<= 3650) */
} posture_counts;

typedef struct truth_stream {
    hgf_sim_fleet *fleet;
    hgf_sim_iam *iam;
    posture_counts reg_counts, all_counts;
    size_t reg;        /* registry being written */
    size_t repo;       /* next repository in it */
    int started;       /* the document's head is out */
    int reg_open;      /* the current registry's head is out */
    int done;
} truth_stream;

/* The members saying what a multi-arch image is: "index" (every image),
 * an index's "children" (its platform manifests' digests, amd64 first) and
 * a platform manifest's "platform". */
static int truth_multi(const hgf_sim_fleet *f, const hgf_sim_registry *reg,
                       const hgf_sim_repo *repo, const hgf_sim_image *img,
                       const hgf_sim_image_info *info, json_t *j)
{
    char children[2][72];
    int rc = json_object_set_new(j, "index", json_boolean(info->role == HGF_SIM_ROLE_INDEX));
    if (!rc && info->role == HGF_SIM_ROLE_INDEX) {
        rc = hgf_sim_fleet_index_children(f, reg, repo, img, children);
        if (!rc)
            rc = json_object_set_new(j, "children",
                                     json_pack("[s,s]", children[0], children[1]));
    }
    if (!rc && (info->role == HGF_SIM_ROLE_AMD64 || info->role == HGF_SIM_ROLE_ARM64))
        rc = json_object_set_new(j, "platform", json_string(info->role == HGF_SIM_ROLE_AMD64
                                                                ? "linux/amd64"
                                                                : "linux/arm64/v8"));
    return rc ? HGF_ENOMEM : 0;
}

static json_t *truth_image(const hgf_sim_fleet *f, const hgf_sim_registry *reg,
                           const hgf_sim_repo *repo, const hgf_sim_image *img,
                           posture_counts *pc)
{
    const char *user = hgf_sim_fleet_image_user(repo, img);
    int root = hgf_sim_fleet_user_is_root(user);
    pc->root_images += root;
    hgf_sim_image_info info;
    char pushed[32];
    hgf_sim_fleet_image_info(repo, img, &info);
    hgf_time_format_iso((time_t)(info.pushed_ms / 1000), pushed, sizeof pushed);
    json_t *tags = json_array();
    for (const char *t = img->tags; tags && t && *t; t += strlen(t) + 1)
        if (json_array_append_new(tags, json_string(t)) != 0) {
            json_decref(tags);
            tags = NULL;
        }
    json_t *j = json_pack("{s:s, s:o, s:s, s:I, s:s, s:s?, s:s?, s:b}", "digest", info.digest,
                          "tags", tags, "pushed_at", pushed, "size_bytes",
                          (json_int_t)info.size_bytes, "media_type", info.manifest_media_type,
                          "artifact_media_type", info.artifact_media_type, "config_user", user,
                          "runs_as_root", root);
    if (j && truth_multi(f, reg, repo, img, &info, j) != 0) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* The repository's policy facts, by construction (policy.h), counted. */
static int truth_policies(hgf_sim_iam *iam, const hgf_sim_registry *reg,
                          const hgf_sim_repo *repo, json_t *j, posture_counts *pc)
{
    hgf_buf text = HGF_BUF_INIT;
    int days, everyone;
    int lc = hgf_sim_policy_lifecycle(reg, repo, &text, &days);
    hgf_buf_reset(&text);
    int rp = hgf_sim_policy_repository(iam, reg, repo, &text, &everyone);
    hgf_buf_free(&text);
    if ((lc && lc != HGF_ENOTFOUND) || (rp && rp != HGF_ENOTFOUND))
        return HGF_ENOMEM;
    pc->no_lifecycle += lc != 0;
    pc->open_policy += everyone;
    if (days >= 0)
        pc->days[days < 3650 ? days : 3650]++;
    json_t *facts = json_pack("{s:b, s:o, s:b, s:b}", "lifecycle_policy", lc == 0,
                              "lifecycle_untagged_expiry_days",
                              days >= 0 ? json_integer(days) : json_null(), "repository_policy",
                              rp == 0, "repository_policy_allows_everyone", everyone);
    /* update_missing copies the members; the object itself stays ours. */
    int rc = facts && json_object_update_missing(j, facts) == 0 ? 0 : HGF_ENOMEM;
    json_decref(facts);
    return rc;
}

static json_t *truth_repo(const hgf_sim_fleet *f, hgf_sim_iam *iam, const hgf_sim_registry *reg,
                          const hgf_sim_repo *repo,
                          posture_counts *pc)
{
    hgf_buf arn = HGF_BUF_INIT;
    json_t *images = json_array();
    for (uint32_t i = 0; images && i < repo->n_images; i++)
        if (json_array_append_new(images, truth_image(f, reg, repo, &repo->images[i], pc)) != 0) {
            json_decref(images);
            images = NULL;
        }
    json_t *j = NULL;
    if (hgf_sim_fleet_repo_arn(reg->account, reg->region, repo->name, &arn) == 0)
        j = json_pack("{s:s, s:s, s:s, s:b, s:o}", "name", repo->name, "arn", hgf_buf_str(&arn),
                      "tag_mutability", repo->immutable ? "IMMUTABLE" : "MUTABLE",
                      "scan_on_push", (int)repo->scan_on_push, "images", images);
    else
        json_decref(images);
    hgf_buf_free(&arn);
    if (j && truth_policies(iam, reg, repo, j, pc) != 0) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* ,"posture":{...}} closing a registry or the document; the counts then
 * start again for the next registry. */
static int put_posture(const posture_counts *pc, hgf_buf *out)
{
    int rc = hgf_buf_printf(out,
                            ",\"posture\":{\"no_lifecycle_policy\":%ld,"
                            "\"repository_policy_allows_everyone\":%ld,"
                            "\"image_runs_as_root\":%ld,\"untagged_expiry_days\":{",
                            pc->no_lifecycle, pc->open_policy, pc->root_images);
    int first = 1;
    for (int d = 0; !rc && d <= 3650; d++)
        if (pc->days[d]) {
            rc = hgf_buf_printf(out, "%s\"%d\":%ld", first ? "" : ",", d, pc->days[d]);
            first = 0;
        }
    return rc ? rc : hgf_buf_puts(out, "}}}");
}

static void add_counts(posture_counts *into, const posture_counts *from)
{
    into->no_lifecycle += from->no_lifecycle;
    into->open_policy += from->open_policy;
    into->root_images += from->root_images;
    for (int d = 0; d <= 3650; d++)
        into->days[d] += from->days[d];
}

static int put_json(hgf_buf *out, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    int rc = text ? hgf_buf_puts(out, text) : HGF_ENOMEM;
    free(text);
    return rc;
}

static int registry_head(const hgf_sim_registry *reg, int first, hgf_buf *out)
{
    hgf_buf host = HGF_BUF_INIT;
    int rc = hgf_sim_fleet_registry_host(reg, &host);
    if (!rc)
        rc = hgf_buf_puts(out, first ? "" : ",");
    /* The values are validated digits, region names and host names: no
     * escaping needed. */
    if (!rc)
        rc = hgf_buf_printf(out,
                            "{\"registry\":\"%s\",\"account_id\":\"%s\",\"region\":\"%s\","
                            "\"repositories\":[",
                            hgf_buf_str(&host), reg->account, reg->region);
    hgf_buf_free(&host);
    return rc;
}

/* One step of the document, with the fleet locked. */
static int truth_step(truth_stream *st, hgf_buf *out)
{
    hgf_sim_registry *reg = hgf_sim_fleet_registry_at(st->fleet, st->reg);
    if (!reg) {
        st->done = 1;
        int rc = hgf_buf_puts(out, "]");
        return rc ? rc : put_posture(&st->all_counts, out);
    }
    if (!st->reg_open) {
        st->reg_open = 1;
        return registry_head(reg, st->reg == 0, out);
    }
    if (st->repo < reg->n_repos) {
        int rc = st->repo ? hgf_buf_putc(out, ',') : 0;
        hgf_sim_repo *repo = &reg->repos[st->repo++];
        hgf_sim_fleet_repo_settle(st->fleet, repo);
        return rc ? rc : put_json(out, truth_repo(st->fleet, st->iam, reg, repo, &st->reg_counts));
    }
    st->reg++;
    st->repo = 0;
    st->reg_open = 0;
    add_counts(&st->all_counts, &st->reg_counts);
    int rc = hgf_buf_puts(out, "]");
    if (!rc)
        rc = put_posture(&st->reg_counts, out);
    memset(&st->reg_counts, 0, sizeof st->reg_counts);
    return rc;
}

static int truth_next(void *ctx, hgf_buf *out)
{
    truth_stream *st = ctx;
    if (st->done)
        return 0;
    if (!st->started) {
        st->started = 1;
        int rc = hgf_buf_printf(out, "{\"seed\":%llu,\"registries\":[",
                                hgf_sim_fleet_seed(st->fleet));
        return rc ? rc : 1;
    }
    hgf_sim_fleet_lock(st->fleet);
    int rc = truth_step(st, out);
    hgf_sim_fleet_unlock(st->fleet);
    return rc ? rc : 1;
}

static void simple(hgf_sim_resp *resp, int status, const char *message)
{
    if (hgf_sim_resp_json(resp, status, "application/json", json_pack("{s:s}", "error", message)))
        resp->status = 500;
}

static void serve_truth(hgf_sim_fleet *fleet, hgf_sim_iam *iam, hgf_sim_resp *resp)
{
    truth_stream *st = calloc(1, sizeof *st);
    if (!st) {
        simple(resp, 500, "out of memory");
        return;
    }
    st->fleet = fleet;
    st->iam = iam;
    resp->status = 200;
    resp->content_type = "application/json";
    resp->stream = truth_next;
    resp->stream_ctx = st;
    resp->stream_free = free;
}

static json_t *parse_body(const hgf_sim_req *req, hgf_sim_resp *resp)
{
    json_error_t jerr;
    json_t *doc = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc)
        return doc;
    char msg[300];
    snprintf(msg, sizeof msg, "the body is not JSON: %.200s", jerr.text);
    simple(resp, 400, msg);
    return NULL;
}

static void reply_json(hgf_sim_resp *resp, json_t *doc)
{
    if (hgf_sim_resp_json(resp, 200, "application/json", doc) != 0)
        simple(resp, 500, "out of memory");
}

static void serve_config(const hgf_sim_services *svc, const hgf_sim_req *req,
                         hgf_sim_resp *resp)
{
    hgf_err err;
    hgf_err_clear(&err);
    if (strcmp(req->method, "POST") == 0) {
        json_t *doc = parse_body(req, resp);
        int rc = doc ? hgf_sim_faults_configure(svc->faults, doc, &err) : -1;
        json_decref(doc);
        if (doc && rc) {
            simple(resp, 400, err.msg);
            return;
        }
        if (!doc)
            return;
    }
    reply_json(resp, hgf_sim_faults_config_json(svc->faults));
}

static void serve_scenario(const hgf_sim_services *svc, const hgf_sim_req *req,
                           hgf_sim_resp *resp)
{
    hgf_err err;
    hgf_err_clear(&err);
    if (strcmp(req->method, "POST") == 0) {
        json_t *doc = parse_body(req, resp);
        int rc = doc ? hgf_sim_iam_load(svc->iam, doc, &err) : -1;
        json_decref(doc);
        if (doc && rc) {
            simple(resp, 400, err.msg);
            return;
        }
        if (!doc)
            return;
    }
    reply_json(resp, hgf_sim_iam_summary(svc->iam));
}

static void serve_webhook(const hgf_sim_services *svc, const hgf_sim_req *req,
                          hgf_sim_resp *resp)
{
    hgf_err err;
    hgf_err_clear(&err);
    if (strcmp(req->method, "DELETE") == 0)
        hgf_sim_webhook_clear(svc->webhook);
    if (strcmp(req->method, "POST") == 0) {
        json_t *doc = parse_body(req, resp);
        int rc = doc ? hgf_sim_webhook_configure(svc->webhook, doc, &err) : -1;
        json_decref(doc);
        if (doc && rc) {
            simple(resp, rc == HGF_ENOMEM ? 500 : 400, err.msg);
            return;
        }
        if (!doc)
            return;
    }
    reply_json(resp, hgf_sim_webhook_config_json(svc->webhook));
}

static void serve_push(const hgf_sim_services *svc, const hgf_sim_req *req, hgf_sim_resp *resp)
{
    hgf_sim_mutate_push(svc->mutate, req, resp);
}

static void serve_retag(const hgf_sim_services *svc, const hgf_sim_req *req,
                        hgf_sim_resp *resp)
{
    hgf_sim_mutate_retag(svc->mutate, req, resp);
}

static void serve_delete(const hgf_sim_services *svc, const hgf_sim_req *req,
                         hgf_sim_resp *resp)
{
    hgf_sim_mutate_delete(svc->mutate, req, resp);
}

static void serve_lifecycle(const hgf_sim_services *svc, const hgf_sim_req *req,
                            hgf_sim_resp *resp)
{
    hgf_sim_mutate_lifecycle(svc->mutate, req, resp);
}

static void serve_events(const hgf_sim_services *svc, const hgf_sim_req *req,
                         hgf_sim_resp *resp)
{
    hgf_sim_mutate_events(svc->mutate, req, resp);
}

static void serve_stats(const hgf_sim_services *svc, const hgf_sim_req *req,
                        hgf_sim_resp *resp)
{
    if (strcmp(req->method, "DELETE") == 0)
        hgf_sim_stats_reset(svc->stats);
    reply_json(resp, hgf_sim_stats_json(svc->stats));
}

typedef void (*control_fn)(const hgf_sim_services *svc, const hgf_sim_req *req,
                           hgf_sim_resp *resp);

static void serve_truth_ep(const hgf_sim_services *svc, const hgf_sim_req *req,
                           hgf_sim_resp *resp)
{
    serve_truth(svc->fleet, svc->iam, resp);
}

static const struct {
    const char *name;
    const char *methods;  /* space-separated, each followed by a space */
    control_fn fn;
} ENDPOINTS[] = {
    {"truth", "GET ", serve_truth_ep},
    {"stats", "GET DELETE ", serve_stats},
    {"config", "GET POST ", serve_config},
    {"scenario", "GET POST ", serve_scenario},
    {"webhook", "GET POST DELETE ", serve_webhook},
    {"push", "POST ", serve_push},
    {"retag", "POST ", serve_retag},
    {"delete", "POST ", serve_delete},
    {"lifecycle", "POST ", serve_lifecycle},
    {"events", "GET DELETE ", serve_events},
};

static int method_in(const char *method, const char *list)
{
    size_t n = strlen(method);
    for (const char *p = strstr(list, method); p; p = strstr(p + 1, method))
        if ((p == list || p[-1] == ' ') && p[n] == ' ')
            return 1;
    return 0;
}

void hgf_sim_control_handle(const hgf_sim_services *svc, const hgf_sim_req *req,
                            hgf_sim_resp *resp)
{
    const char *what = req->path + strlen(HGF_SIM_CONTROL_PREFIX);
    for (size_t i = 0; i < sizeof ENDPOINTS / sizeof ENDPOINTS[0]; i++) {
        if (strcmp(what, ENDPOINTS[i].name) != 0)
            continue;
        if (method_in(req->method, ENDPOINTS[i].methods)) {
            ENDPOINTS[i].fn(svc, req, resp);
        } else {
            char msg[64];
            snprintf(msg, sizeof msg, "use %.*s", (int)strlen(ENDPOINTS[i].methods) - 1,
                     ENDPOINTS[i].methods);
            simple(resp, 405, msg);
        }
        return;
    }
    simple(resp, 404, "unknown control endpoint");
}
