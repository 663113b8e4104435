#include "ecr_api.h"

#include <inttypes.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "policy.h"
#include "token.h"

#define INVALID "InvalidParameterException"
#define REPO_NAME_RE \
    "^[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*$"
/* The regular expression as AWS spells it in its error messages. */
#define REPO_NAME_AWS_RE "(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*"
#define MAX_IDS 100

struct hgf_sim_ecr {
    hgf_sim_fleet *fleet;
    hgf_sim_iam *iam;
    hgf_sim_faults *faults;
    hgf_sim_regv2 *registry;
    unsigned char token_key[HGF_SIM_TOKEN_KEY_LEN];
    regex_t repo_name_re;
};

/* Paging parameters shared by the Describe* operations. */
typedef struct paging {
    long long max;       /* page size */
    int has_max;
    const char *token;   /* NULL when absent */
} paging;

/* What a request resolved to once registryId is checked. */
typedef struct target {
    const hgf_sim_caller *caller;
    const hgf_sim_req *req;
    const char *op;
    time_t now;
    char account[13];
} target;

int hgf_sim_ecr_create(hgf_sim_fleet *fleet, hgf_sim_iam *iam, hgf_sim_faults *faults,
                       hgf_sim_regv2 *registry, hgf_sim_ecr **out, hgf_err *err)
{
    hgf_sim_ecr *e = calloc(1, sizeof *e);
    if (!e)
        return hgf_err_set(err, HGF_ENOMEM, "ecr: out of memory");
    e->fleet = fleet;
    e->iam = iam;
    e->faults = faults;
    e->registry = registry;
    /* A fresh key per process: tokens from another instance are foreign. */
    if (RAND_bytes(e->token_key, sizeof e->token_key) != 1) {
        free(e);
        return hgf_err_set(err, HGF_EFAIL, "ecr: no randomness for the page token key");
    }
    if (regcomp(&e->repo_name_re, REPO_NAME_RE, REG_EXTENDED | REG_NOSUB) != 0) {
        free(e);
        return hgf_err_set(err, HGF_EFAIL, "ecr: cannot compile the repository name pattern");
    }
    *out = e;
    return 0;
}

void hgf_sim_ecr_free(hgf_sim_ecr *ecr)
{
    if (!ecr)
        return;
    regfree(&ecr->repo_name_re);
    free(ecr);
}

/* ---- parameters -------------------------------------------------------- */

static int wrong_type(hgf_err *err, const char *field, const char *want)
{
    return hgf_sim_awserr(err, "SerializationException",
                          "Unexpected value type for '%s': expected %s", field, want);
}

static int get_string(json_t *in, const char *field, const char **out, hgf_err *err)
{
    json_t *v = json_object_get(in, field);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return wrong_type(err, field, "a string");
    *out = json_string_value(v);
    return 0;
}

static int check_repo_name(const hgf_sim_ecr *ecr, const char *field, const char *name,
                           hgf_err *err)
{
    size_t n = strlen(name);
    if (n < 2 || n > 256)
        return hgf_sim_awserr(err, INVALID,
                              "Invalid parameter at '%s' failed to satisfy constraint: 'Member "
                              "must have length between 2 and 256'",
                              field);
    if (regexec(&ecr->repo_name_re, name, 0, NULL, 0) != 0)
        return hgf_sim_awserr(err, INVALID,
                              "Invalid parameter at '%s' failed to satisfy constraint: 'must "
                              "satisfy regular expression '" REPO_NAME_AWS_RE "''",
                              field);
    return 0;
}

static int get_paging(json_t *in, paging *p, hgf_err *err)
{
    p->max = HGF_SIM_ECR_DEFAULT_PAGE;
    json_t *v = json_object_get(in, "maxResults");
    p->has_max = v && !json_is_null(v);
    if (p->has_max && !json_is_integer(v))
        return wrong_type(err, "maxResults", "an integer");
    if (p->has_max)
        p->max = json_integer_value(v);
    if (p->max < 1 || p->max > HGF_SIM_ECR_MAX_PAGE)
        return hgf_sim_awserr(err, INVALID,
                              "Invalid parameter at 'maxResults' failed to satisfy constraint: "
                              "'Member must have value %s or equal to %d'",
                              p->max < 1 ? "greater than" : "less than",
                              p->max < 1 ? 1 : HGF_SIM_ECR_MAX_PAGE);
    return get_string(in, "nextToken", &p->token, err);
}

/* maxResults and nextToken page through a whole listing; an explicit list
 * of names or ids cannot be combined with them. */
static int check_explicit_list(const paging *p, const char *list_field, hgf_err *err)
{
    const char *bad = p->has_max ? "maxResults" : p->token ? "nextToken" : NULL;
    if (!bad)
        return 0;
    return hgf_sim_awserr(err, INVALID,
                          "Invalid parameter at '%s' failed to satisfy constraint: '%s cannot "
                          "be used together with %s'",
                          bad, bad, list_field);
}

static int get_list(json_t *in, const char *field, json_t **out, hgf_err *err)
{
    json_t *v = json_object_get(in, field);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_array(v))
        return wrong_type(err, field, "a list");
    if (json_array_size(v) < 1 || json_array_size(v) > MAX_IDS)
        return hgf_sim_awserr(err, INVALID,
                              "Invalid parameter at '%s' failed to satisfy constraint: 'Member "
                              "must have length between 1 and %d'",
                              field, MAX_IDS);
    *out = v;
    return 0;
}

/* ---- registry and access ----------------------------------------------- */

/* registryId defaults to the caller's account (account 0 for a key that
 * serves every account). */
static int resolve_target(const hgf_sim_ecr *ecr, json_t *in, target *t, hgf_err *err)
{
    const char *id;
    int rc = get_string(in, "registryId", &id, err);
    if (rc)
        return rc;
    if (id && (strlen(id) != 12 || strspn(id, "0123456789") != 12))
        return hgf_sim_awserr(err, INVALID,
                              "Invalid parameter at 'registryId' failed to satisfy constraint: "
                              "'must satisfy regular expression '[0-9]{12}''");
    if (!id)
        id = t->caller->account[0] ? t->caller->account : hgf_sim_fleet_first_account(ecr->fleet);
    snprintf(t->account, sizeof t->account, "%s", id);
    return 0;
}

/* The quota of (account, region, operation). */
static int admit(const hgf_sim_ecr *ecr, const target *t, hgf_err *err)
{
    if (hgf_sim_faults_admit(ecr->faults, t->account, t->caller->region, t->op))
        return 0;
    return hgf_sim_awserr(err, "ThrottlingException", "Rate exceeded");
}

/* The IAM check of ecr:<op> on `resource`: a repository name, "*" for the
 * whole registry, or NULL for GetAuthorizationToken's resource "*". */
static int authorize(const hgf_sim_ecr *ecr, const target *t, const char *resource,
                     hgf_err *err)
{
    char action[96], msg[1024];
    hgf_buf arn = HGF_BUF_INIT;
    snprintf(action, sizeof action, "ecr:%s", t->op);
    if (resource && hgf_sim_fleet_repo_arn(t->account, t->caller->region, resource, &arn) != 0)
        return HGF_ENOMEM;
    hgf_sim_access a = {.action = action, .resource = resource ? hgf_buf_str(&arn) : "*",
                        .account = resource ? t->account : NULL, .repository = resource};
    enum hgf_sim_verdict v = hgf_sim_iam_authorize(ecr->iam, t->caller, &a);
    if (v != HGF_SIM_ALLOW)
        hgf_sim_iam_denial(t->caller, &a, v, msg, sizeof msg);
    hgf_buf_free(&arn);
    return v == HGF_SIM_ALLOW ? 0 : hgf_sim_awserr(err, "AccessDeniedException", "%s", msg);
}

static int gate(const hgf_sim_ecr *ecr, const target *t, const char *resource, hgf_err *err)
{
    int rc = admit(ecr, t, err);
    return rc ? rc : authorize(ecr, t, resource, err);
}

static int repo_not_found(const char *name, const char *account, hgf_err *err)
{
    return hgf_sim_awserr(err, "RepositoryNotFoundException",
                          "The repository with name '%s' does not exist in the registry with id "
                          "'%s'",
                          name, account);
}

static int bad_token(hgf_err *err)
{
    return hgf_sim_awserr(err, INVALID,
                          "Invalid parameter at 'nextToken' failed to satisfy constraint: 'The "
                          "token is invalid, expired or was issued for another request'");
}

/* Returns the cursor inside a token issued for exactly this listing
 * (`scope` is "<op>|<account>|<region>|...|"), copied into cursor. */
static int open_token(const hgf_sim_ecr *ecr, const char *token, const char *scope,
                      hgf_buf *cursor, hgf_err *err)
{
    hgf_buf payload = HGF_BUF_INIT;
    int rc = hgf_sim_token_decode(ecr->token_key, token, &payload);
    size_t n = strlen(scope);
    if (rc == HGF_EINPUT || (!rc && strncmp(hgf_buf_str(&payload), scope, n) != 0))
        rc = bad_token(err);
    if (!rc)
        rc = hgf_buf_puts(cursor, hgf_buf_str(&payload) + n);
    hgf_buf_free(&payload);
    return rc;
}

static int seal_token(const hgf_sim_ecr *ecr, const char *scope, const char *cursor,
                      json_t *out)
{
    hgf_buf payload = HGF_BUF_INIT, token = HGF_BUF_INIT;
    int rc = hgf_buf_printf(&payload, "%s%s", scope, cursor);
    if (!rc)
        rc = hgf_sim_token_encode(ecr->token_key, hgf_buf_str(&payload), &token);
    if (!rc && json_object_set_new(out, "nextToken", json_string(hgf_buf_str(&token))) != 0)
        rc = HGF_ENOMEM;
    hgf_buf_free(&payload);
    hgf_buf_free(&token);
    return rc;
}

/* ---- DescribeRepositories ---------------------------------------------- */

static json_t *repo_json(const hgf_sim_registry *reg, const hgf_sim_repo *repo)
{
    hgf_buf arn = HGF_BUF_INIT, uri = HGF_BUF_INIT;
    json_t *j = NULL;
    if (!hgf_sim_fleet_repo_arn(reg->account, reg->region, repo->name, &arn) &&
        !hgf_sim_fleet_repo_uri(reg, repo->name, &uri))
        j = json_pack("{s:s, s:s, s:s, s:s, s:f, s:s, s:{s:b}, s:{s:s}}", "repositoryArn",
                      hgf_buf_str(&arn), "registryId", reg->account, "repositoryName",
                      repo->name, "repositoryUri", hgf_buf_str(&uri), "createdAt",
                      (double)repo->created_ms / 1000.0, "imageTagMutability",
                      repo->immutable ? "IMMUTABLE" : "MUTABLE", "imageScanningConfiguration",
                      "scanOnPush", (int)repo->scan_on_push, "encryptionConfiguration",
                      "encryptionType", "AES256");
    hgf_buf_free(&arn);
    hgf_buf_free(&uri);
    return j;
}

static int append(json_t *list, json_t *item)
{
    return item && json_array_append_new(list, item) == 0 ? 0 : HGF_ENOMEM;
}

static int repos_by_name(const hgf_sim_ecr *ecr, hgf_sim_registry *reg, const target *t,
                         json_t *names, json_t *list, hgf_err *err)
{
    size_t i;
    json_t *v;
    const hgf_sim_repo *seen[MAX_IDS];
    size_t n_seen = 0;
    json_array_foreach(names, i, v) {
        if (!json_is_string(v))
            return wrong_type(err, "repositoryNames", "a list of strings");
        int rc = check_repo_name(ecr, "repositoryNames", json_string_value(v), err);
        hgf_sim_repo *repo = rc ? NULL : hgf_sim_fleet_repo_find(reg, json_string_value(v));
        if (rc)
            return rc;
        if (!repo)
            return repo_not_found(json_string_value(v), t->account, err);
        int dup = 0;
        for (size_t k = 0; k < n_seen; k++)
            dup |= seen[k] == repo;
        if (!dup && (rc = append(list, repo_json(reg, repo))) != 0)
            return rc;
        if (!dup)
            seen[n_seen++] = repo;
    }
    return 0;
}

static int repos_page(const hgf_sim_ecr *ecr, const hgf_sim_registry *reg, const target *t,
                      const paging *p, json_t *out, json_t *list, hgf_err *err)
{
    hgf_buf scope = HGF_BUF_INIT, cursor = HGF_BUF_INIT;
    int rc = hgf_buf_printf(&scope, "DescribeRepositories|%s|%s|", t->account,
                            t->caller->region);
    if (!rc && p->token)
        rc = open_token(ecr, p->token, hgf_buf_str(&scope), &cursor, err);
    size_t n = reg ? reg->n_repos : 0;
    size_t i = !rc && p->token && reg ? hgf_sim_fleet_repo_after(reg, hgf_buf_str(&cursor)) : 0;
    for (long long k = 0; !rc && i < n && k < p->max; i++, k++)
        rc = append(list, repo_json(reg, &reg->repos[i]));
    if (!rc && i < n)
        rc = seal_token(ecr, hgf_buf_str(&scope), reg->repos[i - 1].name, out);
    hgf_buf_free(&scope);
    hgf_buf_free(&cursor);
    return rc;
}

static int describe_repositories(hgf_sim_ecr *ecr, target *t, json_t *in, json_t *out,
                                 hgf_err *err)
{
    json_t *names, *list = json_array();
    paging p;
    if (!list || json_object_set_new(out, "repositories", list) != 0)
        return HGF_ENOMEM;
    int rc = get_list(in, "repositoryNames", &names, err);
    if (!rc)
        rc = get_paging(in, &p, err);
    if (!rc && names)
        rc = check_explicit_list(&p, "repositoryNames", err);
    if (!rc)
        rc = resolve_target(ecr, in, t, err);
    if (!rc)
        rc = admit(ecr, t, err);
    if (!rc && !names)
        rc = authorize(ecr, t, "*", err);
    for (size_t i = 0; !rc && names && i < json_array_size(names); i++)
        rc = authorize(ecr, t,
                  json_is_string(json_array_get(names, i))
                      ? json_string_value(json_array_get(names, i))
                      : "*",
                  err);
    if (rc)
        return rc;
    hgf_sim_fleet_lock(ecr->fleet);
    hgf_sim_registry *reg = hgf_sim_fleet_registry_find(ecr->fleet, t->account,
                                                        t->caller->region);
    rc = names ? repos_by_name(ecr, reg, t, names, list, err)
               : repos_page(ecr, reg, t, &p, out, list, err);
    hgf_sim_fleet_unlock(ecr->fleet);
    return rc;
}

/* ---- DescribeImages ---------------------------------------------------- */

enum tag_status { TS_ANY, TS_TAGGED, TS_UNTAGGED, TS_NONE };

static json_t *image_json(const hgf_sim_registry *reg, const hgf_sim_repo *repo,
                          const hgf_sim_image *img)
{
    hgf_sim_image_info info;
    hgf_sim_fleet_image_info(repo, img, &info);
    /* An index has no artifactMediaType, as ECR lists it. */
    json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:f, s:s, s:s*}", "registryId", reg->account,
                          "repositoryName", repo->name, "imageDigest", info.digest,
                          "imageSizeInBytes", (json_int_t)info.size_bytes, "imagePushedAt",
                          (double)info.pushed_ms / 1000.0, "imageManifestMediaType",
                          info.manifest_media_type, "artifactMediaType",
                          info.artifact_media_type);
    if (!j || !img->tags)
        return j;
    json_t *tags = json_array();
    int bad = !tags || json_object_set_new(j, "imageTags", tags) != 0;
    for (const char *tag = img->tags; !bad && *tag; tag += strlen(tag) + 1)
        bad = json_array_append_new(tags, json_string(tag)) != 0;
    if (bad) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static int get_enum(json_t *obj, const char *field, const char *path,
                    const char *const *allowed, int *out, hgf_err *err)
{
    const char *v;
    int rc = get_string(obj, field, &v, err);
    if (rc || !v)
        return rc;
    for (int i = 0; allowed[i]; i++)
        if (strcmp(v, allowed[i]) == 0) {
            *out = i;
            return 0;
        }
    return hgf_sim_awserr(err, INVALID,
                          "Invalid parameter at '%s' failed to satisfy constraint: 'Member must "
                          "satisfy enum value set'",
                          path);
}

/* filter.tagStatus, narrowed by filter.imageStatus: every simulated image
 * is ACTIVE, so asking for archived ones matches nothing. */
static int get_filter(json_t *in, enum tag_status *ts, hgf_err *err)
{
    static const char *const tag_values[] = {"ANY", "TAGGED", "UNTAGGED", NULL};
    static const char *const status_values[] = {"ANY", "ACTIVE", "ARCHIVED", "ACTIVATING", NULL};
    json_t *f = json_object_get(in, "filter");
    int tag = TS_ANY, status = 0;
    *ts = TS_ANY;
    if (!f || json_is_null(f))
        return 0;
    if (!json_is_object(f))
        return wrong_type(err, "filter", "a structure");
    int rc = get_enum(f, "tagStatus", "filter.tagStatus", tag_values, &tag, err);
    if (!rc)
        rc = get_enum(f, "imageStatus", "filter.imageStatus", status_values, &status, err);
    *ts = status >= 2 ? TS_NONE : (enum tag_status)tag;
    return rc;
}

static int matches(const hgf_sim_image *img, enum tag_status ts)
{
    switch (ts) {
    case TS_TAGGED:
        return img->tags != NULL;
    case TS_UNTAGGED:
        return img->tags == NULL;
    case TS_NONE:
        return 0;
    default:
        return 1;
    }
}

static int image_not_found(const char *digest, const char *tag, const hgf_sim_repo *repo,
                           const char *account, hgf_err *err)
{
    return hgf_sim_awserr(err, "ImageNotFoundException",
                          "The image with imageId {imageDigest:'%.80s', imageTag:'%.300s'} does "
                          "not exist within the repository with name '%s' in the registry with id "
                          "'%s'",
                          digest ? digest : "null", tag ? tag : "null", repo->name, account);
}

static int find_image(json_t *id, hgf_sim_repo *repo, const char *account, hgf_sim_image **out,
                      hgf_err *err)
{
    const char *digest = NULL, *tag = NULL;
    if (!json_is_object(id))
        return wrong_type(err, "imageIds", "a list of structures");
    int rc = get_string(id, "imageDigest", &digest, err);
    if (!rc)
        rc = get_string(id, "imageTag", &tag, err);
    if (!rc && !digest && !tag)
        rc = hgf_sim_awserr(err, INVALID,
                            "Invalid parameter at 'imageIds' failed to satisfy constraint: 'each "
                            "image id needs an imageDigest or an imageTag'");
    if (rc)
        return rc;
    hgf_sim_image *img = digest ? hgf_sim_fleet_image_by_digest(repo, digest)
                                : hgf_sim_fleet_image_by_tag(repo, tag);
    if (img && digest && tag && hgf_sim_fleet_image_by_tag(repo, tag) != img)
        img = NULL;
    *out = img;
    return img ? 0 : image_not_found(digest, tag, repo, account, err);
}

static int images_by_id(const hgf_sim_registry *reg, hgf_sim_repo *repo, const target *t,
                        json_t *ids, json_t *list, hgf_err *err)
{
    size_t i;
    json_t *id;
    const hgf_sim_image *seen[MAX_IDS];
    size_t n_seen = 0;
    json_array_foreach(ids, i, id) {
        hgf_sim_image *img;
        int rc = find_image(id, repo, t->account, &img, err);
        if (rc)
            return rc;
        int dup = 0;
        for (size_t k = 0; k < n_seen; k++)
            dup |= seen[k] == img;
        if (!dup && (rc = append(list, image_json(reg, repo, img))) != 0)
            return rc;
        if (!dup)
            seen[n_seen++] = img;
    }
    return 0;
}

static int parse_gen(const char *s, uint32_t *gen)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || v > UINT32_MAX)
        return -1;
    *gen = (uint32_t)v;
    return 0;
}

/* Cursor = the last gen returned, so a page boundary survives images being
 * pushed or deleted between calls. */
static int images_page(const hgf_sim_ecr *ecr, const hgf_sim_registry *reg,
                       const hgf_sim_repo *repo, const target *t, const paging *p,
                       enum tag_status ts, json_t *out, json_t *list, hgf_err *err)
{
    hgf_buf scope = HGF_BUF_INIT, cursor = HGF_BUF_INIT;
    uint32_t gen = 0;
    int rc = hgf_buf_printf(&scope, "DescribeImages|%s|%s|%s|%d|", t->account, t->caller->region,
                            repo->name, (int)ts);
    if (!rc && p->token)
        rc = open_token(ecr, p->token, hgf_buf_str(&scope), &cursor, err);
    if (!rc && p->token && parse_gen(hgf_buf_str(&cursor), &gen) != 0)
        rc = bad_token(err);
    size_t i = !rc && p->token ? hgf_sim_fleet_image_after(repo, gen) : 0;
    long long k = 0;
    for (; !rc && i < repo->n_images && k < p->max; i++) {
        if (!matches(&repo->images[i], ts))
            continue;
        rc = append(list, image_json(reg, repo, &repo->images[i]));
        gen = repo->images[i].gen;
        k++;
    }
    while (!rc && i < repo->n_images && !matches(&repo->images[i], ts))
        i++;
    if (!rc && i < repo->n_images) {
        char last[16];
        snprintf(last, sizeof last, "%" PRIu32, gen);
        rc = seal_token(ecr, hgf_buf_str(&scope), last, out);
    }
    hgf_buf_free(&scope);
    hgf_buf_free(&cursor);
    return rc;
}

/* The required repositoryName member. */
static int repo_name_param(const hgf_sim_ecr *ecr, json_t *in, const char **name, hgf_err *err)
{
    int rc = get_string(in, "repositoryName", name, err);
    if (!rc && !*name)
        rc = hgf_sim_awserr(err, INVALID,
                            "Invalid parameter at 'repositoryName' failed to satisfy constraint: "
                            "'Member must not be null'");
    return rc ? rc : check_repo_name(ecr, "repositoryName", *name, err);
}

static int images_params(const hgf_sim_ecr *ecr, json_t *in, const char **name, json_t **ids,
                         paging *p, enum tag_status *ts, hgf_err *err)
{
    int rc = repo_name_param(ecr, in, name, err);
    if (!rc)
        rc = get_list(in, "imageIds", ids, err);
    if (!rc)
        rc = get_paging(in, p, err);
    if (!rc && *ids)
        rc = check_explicit_list(p, "imageIds", err);
    if (!rc)
        rc = get_filter(in, ts, err);
    return rc;
}

static int describe_images(hgf_sim_ecr *ecr, target *t, json_t *in, json_t *out, hgf_err *err)
{
    const char *name = NULL;
    json_t *ids, *list = json_array();
    paging p;
    enum tag_status ts;
    if (!list || json_object_set_new(out, "imageDetails", list) != 0)
        return HGF_ENOMEM;
    int rc = images_params(ecr, in, &name, &ids, &p, &ts, err);
    if (!rc)
        rc = resolve_target(ecr, in, t, err);
    if (!rc)
        rc = gate(ecr, t, name, err);
    if (rc)
        return rc;
    hgf_sim_fleet_lock(ecr->fleet);
    hgf_sim_registry *reg = hgf_sim_fleet_registry_find(ecr->fleet, t->account,
                                                        t->caller->region);
    hgf_sim_repo *repo = hgf_sim_fleet_repo_open(ecr->fleet, reg, name);
    if (!repo)
        rc = repo_not_found(name, t->account, err);
    else if (ids)
        rc = images_by_id(reg, repo, t, ids, list, err);
    else
        rc = images_page(ecr, reg, repo, t, &p, ts, out, list, err);
    hgf_sim_fleet_unlock(ecr->fleet);
    return rc;
}

/* ---- GetLifecyclePolicy and GetRepositoryPolicy ------------------------- */

typedef int (*policy_fn)(hgf_sim_ecr *ecr, const hgf_sim_registry *reg, const hgf_sim_repo *repo,
                         hgf_buf *out);

static int lifecycle_text(hgf_sim_ecr *ecr, const hgf_sim_registry *reg, const hgf_sim_repo *repo,
                          hgf_buf *out)
{
    int days;
    return hgf_sim_policy_lifecycle(reg, repo, out, &days);
}

static int repository_text(hgf_sim_ecr *ecr, const hgf_sim_registry *reg,
                           const hgf_sim_repo *repo, hgf_buf *out)
{
    int everyone;
    return hgf_sim_policy_repository(ecr->iam, reg, repo, out, &everyone);
}

/* The checked repository's policy text; HGF_ENOTFOUND when it has none,
 * else 0 or AWS's error in err. */
static int policy_of(hgf_sim_ecr *ecr, target *t, json_t *in, policy_fn fn, const char **name,
                     hgf_buf *text, hgf_err *err)
{
    int rc = repo_name_param(ecr, in, name, err);
    if (!rc)
        rc = resolve_target(ecr, in, t, err);
    if (!rc)
        rc = gate(ecr, t, *name, err);
    if (rc)
        return rc;
    hgf_sim_fleet_lock(ecr->fleet);
    hgf_sim_registry *reg = hgf_sim_fleet_registry_find(ecr->fleet, t->account,
                                                        t->caller->region);
    hgf_sim_repo *repo = hgf_sim_fleet_repo_find(reg, *name);
    rc = repo ? fn(ecr, reg, repo, text) : repo_not_found(*name, t->account, err);
    hgf_sim_fleet_unlock(ecr->fleet);
    return rc;
}

static int get_lifecycle_policy(hgf_sim_ecr *ecr, target *t, json_t *in, json_t *out,
                                hgf_err *err)
{
    const char *name = NULL;
    hgf_buf text = HGF_BUF_INIT;
    int rc = policy_of(ecr, t, in, lifecycle_text, &name, &text, err);
    if (rc == HGF_ENOTFOUND)
        rc = hgf_sim_awserr(err, "LifecyclePolicyNotFoundException",
                            "Lifecycle policy does not exist for the repository with name '%s' "
                            "in the registry with id '%s'",
                            name, t->account);
    /* ECR evaluates lifecycle policies about once a day. */
    if (!rc && json_object_update_new(out, json_pack("{s:s, s:s, s:s, s:f}", "registryId",
                                                 t->account, "repositoryName", name,
                                                 "lifecyclePolicyText", hgf_buf_str(&text),
                                                 "lastEvaluatedAt",
                                                 (double)(t->now - t->now % 86400))) != 0)
        rc = HGF_ENOMEM;
    hgf_buf_free(&text);
    return rc;
}

static int get_repository_policy(hgf_sim_ecr *ecr, target *t, json_t *in, json_t *out,
                                 hgf_err *err)
{
    const char *name = NULL;
    hgf_buf text = HGF_BUF_INIT;
    int rc = policy_of(ecr, t, in, repository_text, &name, &text, err);
    if (rc == HGF_ENOTFOUND)
        rc = hgf_sim_awserr(err, "RepositoryPolicyNotFoundException",
                            "Repository policy does not exist for the repository with name '%s' "
                            "in the registry with id '%s'",
                            name, t->account);
    if (!rc && json_object_update_new(out, json_pack("{s:s, s:s, s:s}", "registryId", t->account,
                                                 "repositoryName", name, "policyText",
                                                 hgf_buf_str(&text))) != 0)
        rc = HGF_ENOMEM;
    hgf_buf_free(&text);
    return rc;
}

/* ---- GetAuthorizationToken --------------------------------------------- */

static int registry_ids(json_t *in, json_t **ids, hgf_err *err)
{
    *ids = json_object_get(in, "registryIds");
    if (!*ids || json_is_null(*ids)) {
        *ids = NULL;
        return 0;
    }
    if (!json_is_array(*ids))
        return wrong_type(err, "registryIds", "a list");
    if (json_array_size(*ids) < 1 || json_array_size(*ids) > 10)
        return hgf_sim_awserr(err, INVALID,
                              "Invalid parameter at 'registryIds' failed to satisfy constraint: "
                              "'Member must have length between 1 and 10'");
    size_t i;
    json_t *v;
    json_array_foreach(*ids, i, v) {
        const char *id = json_is_string(v) ? json_string_value(v) : "";
        if (strlen(id) != 12 || strspn(id, "0123456789") != 12)
            return hgf_sim_awserr(err, INVALID,
                                  "Invalid parameter at 'registryIds' failed to satisfy "
                                  "constraint: 'must satisfy regular expression '[0-9]{12}''");
    }
    return 0;
}

/* 12 h, or less when the caller's session or the scenario's cap ends
 * sooner: a token never outlives the credentials that obtained it. */
static time_t token_expiry(const hgf_sim_ecr *ecr, const target *t)
{
    time_t expires = t->now + HGF_SIM_ECR_TOKEN_TTL_S;
    long cap = hgf_sim_iam_credential_cap(ecr->iam);
    if (cap > 0 && t->now + cap < expires)
        expires = t->now + cap;
    if (t->caller->expires && t->caller->expires < expires)
        expires = t->caller->expires;
    return expires;
}

static int authorization_entry(hgf_sim_ecr *ecr, const target *t, const char *account,
                               const char *token, time_t expires, json_t *list)
{
    hgf_buf endpoint = HGF_BUF_INIT;
    int rc = hgf_sim_regv2_endpoint(ecr->registry, t->req, account, t->caller->region, &endpoint);
    if (!rc)
        rc = append(list, json_pack("{s:s, s:f, s:s}", "authorizationToken", token, "expiresAt",
                                    (double)expires, "proxyEndpoint", hgf_buf_str(&endpoint)));
    hgf_buf_free(&endpoint);
    return rc;
}

static int get_authorization_token(hgf_sim_ecr *ecr, target *t, json_t *in, json_t *out,
                                   hgf_err *err)
{
    json_t *ids, *list = json_array();
    hgf_buf token = HGF_BUF_INIT;
    if (!list || json_object_set_new(out, "authorizationData", list) != 0)
        return HGF_ENOMEM;
    int rc = registry_ids(in, &ids, err);
    const char *first = ids ? json_string_value(json_array_get(ids, 0)) : NULL;
    snprintf(t->account, sizeof t->account, "%s",
             first                    ? first
             : t->caller->account[0] ? t->caller->account
                                     : hgf_sim_fleet_first_account(ecr->fleet));
    if (!rc)
        rc = gate(ecr, t, NULL, err);
    time_t expires = token_expiry(ecr, t);
    if (!rc)
        rc = hgf_sim_regv2_authorization_token(ecr->registry, t->caller, expires, &token);
    for (size_t i = 0; !rc && i < (ids ? json_array_size(ids) : 1); i++)
        rc = authorization_entry(ecr, t, ids ? json_string_value(json_array_get(ids, i))
                                             : t->account,
                                 hgf_buf_str(&token), expires, list);
    hgf_buf_free(&token);
    return rc;
}

/* ---- dispatch ---------------------------------------------------------- */

typedef int (*op_fn)(hgf_sim_ecr *ecr, target *t, json_t *in, json_t *out, hgf_err *err);

static const struct {
    const char *name;
    op_fn fn;
} OPS[] = {
    {"DescribeRepositories", describe_repositories},
    {"DescribeImages", describe_images},
    {"GetAuthorizationToken", get_authorization_token},
    {"GetLifecyclePolicy", get_lifecycle_policy},
    {"GetRepositoryPolicy", get_repository_policy},
};

static op_fn find_op(const char *op)
{
    for (size_t i = 0; i < sizeof OPS / sizeof OPS[0]; i++)
        if (strcmp(OPS[i].name, op) == 0)
            return OPS[i].fn;
    return NULL;
}

/* botocore always sends a JSON object ("{}" without parameters); an empty
 * body is read as one too. */
static int parse_body(const hgf_sim_req *req, json_t **in, hgf_err *err)
{
    json_error_t jerr;
    *in = req->body_len ? json_loadb(req->body, req->body_len, 0, &jerr) : json_object();
    if (*in && json_is_object(*in))
        return 0;
    json_decref(*in);
    *in = NULL;
    return hgf_sim_awserr(err, "SerializationException",
                          "The request body is not a JSON object");
}

void hgf_sim_ecr_handle(hgf_sim_ecr *ecr, const char *op, const hgf_sim_caller *caller,
                        time_t now, const hgf_sim_req *req, hgf_sim_resp *resp)
{
    hgf_err err;
    hgf_err_clear(&err);
    op_fn fn = find_op(op);
    json_t *in = NULL, *out = json_object();
    target t = {.caller = caller, .req = req, .op = op, .now = now};
    int rc = !out ? HGF_ENOMEM
             : !fn ? hgf_sim_awserr(&err, "UnknownOperationException", "Unknown operation %.64s",
                                    op)
                   : parse_body(req, &in, &err);
    if (!rc)
        rc = fn(ecr, &t, in, out, &err);
    json_decref(in);
    if (rc == 0 && hgf_sim_resp_json(resp, 200, HGF_SIM_AMZ_JSON, out) == 0)
        return;
    if (rc == 0)
        out = NULL;  /* hgf_sim_resp_json took it */
    json_decref(out);
    if (err.code != HGF_EAWS)
        hgf_sim_awserr(&err, "ServerException", "ecrsim: internal error");
    hgf_sim_resp_aws_error(resp, &err);
}
