#include "hgfleet/ecr.h"

#include <stdlib.h>
#include <string.h>

static int call(const hgf_aws_target *t, const char *op, json_t *body, hgf_aws_cb cb, void *arg,
                hgf_err *err)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!text)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    int rc = hgf_awsjson_call(t, HGF_ECR_TARGET_PREFIX, op, text, cb, arg, err);
    free(text);
    return rc;
}

int hgf_ecr_describe_repositories(const hgf_aws_target *t, const char *registry_id,
                                  const char *next_token, hgf_aws_cb cb, void *arg, hgf_err *err)
{
    json_t *b = json_pack("{s:s, s:i}", "registryId", registry_id, "maxResults", HGF_ECR_PAGE_SIZE);
    if (next_token)
        json_object_set_new(b, "nextToken", json_string(next_token));
    return call(t, "DescribeRepositories", b, cb, arg, err);
}

int hgf_ecr_describe_images(const hgf_aws_target *t, const char *registry_id, const char *repo,
                            const char *next_token, hgf_aws_cb cb, void *arg, hgf_err *err)
{
    json_t *b = json_pack("{s:s, s:s, s:i}", "registryId", registry_id, "repositoryName", repo,
                          "maxResults", HGF_ECR_PAGE_SIZE);
    if (next_token)
        json_object_set_new(b, "nextToken", json_string(next_token));
    return call(t, "DescribeImages", b, cb, arg, err);
}

static int repo_call(const hgf_aws_target *t, const char *op, const char *registry_id,
                     const char *repo, hgf_aws_cb cb, void *arg, hgf_err *err)
{
    return call(t, op, json_pack("{s:s, s:s}", "registryId", registry_id, "repositoryName", repo),
                cb, arg, err);
}

int hgf_ecr_get_lifecycle_policy(const hgf_aws_target *t, const char *registry_id,
                                 const char *repo, hgf_aws_cb cb, void *arg, hgf_err *err)
{
    return repo_call(t, "GetLifecyclePolicy", registry_id, repo, cb, arg, err);
}

int hgf_ecr_get_repository_policy(const hgf_aws_target *t, const char *registry_id,
                                  const char *repo, hgf_aws_cb cb, void *arg, hgf_err *err)
{
    return repo_call(t, "GetRepositoryPolicy", registry_id, repo, cb, arg, err);
}

static const char *str(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

int hgf_ecr_parse_repo(json_t *item, hgf_ecr_repo *out, hgf_err *err)
{
    memset(out, 0, sizeof *out);
    out->name = str(item, "repositoryName");
    if (!out->name || !*out->name)
        return hgf_err_set(err, HGF_EINPUT, "DescribeRepositories: item without repositoryName");
    out->arn = str(item, "repositoryArn");
    out->tag_mutability = str(item, "imageTagMutability");
    out->encryption = str(json_object_get(item, "encryptionConfiguration"), "encryptionType");
    out->scan_on_push = json_is_true(
        json_object_get(json_object_get(item, "imageScanningConfiguration"), "scanOnPush"));
    out->created_at = json_number_value(json_object_get(item, "createdAt"));
    return 0;
}

/* Integers exactly; a real number only when it fits, since casting one
 * outside long long is undefined. Anything else is not a size: 0. */
static long long size_value(json_t *v)
{
    if (json_is_integer(v))
        return json_integer_value(v) > 0 ? (long long)json_integer_value(v) : 0;
    double d = json_real_value(v);
    return d > 0 && d < 9.2e18 ? (long long)d : 0;
}

int hgf_ecr_parse_image(json_t *item, hgf_ecr_image *out, hgf_err *err)
{
    memset(out, 0, sizeof *out);
    out->digest = str(item, "imageDigest");
    if (!out->digest || strncmp(out->digest, "sha256:", 7))
        return hgf_err_set(err, HGF_EINPUT, "DescribeImages: item without a sha256 imageDigest");
    out->media_type = str(item, "imageManifestMediaType");
    out->artifact_media_type = str(item, "artifactMediaType");
    json_t *tags = json_object_get(item, "imageTags");
    out->tags = json_is_array(tags) && json_array_size(tags) ? tags : NULL;
    out->size_bytes = size_value(json_object_get(item, "imageSizeInBytes"));
    out->pushed_at = json_number_value(json_object_get(item, "imagePushedAt"));
    return 0;
}

const char *hgf_ecr_next_token(json_t *page)
{
    const char *t = str(page, "nextToken");
    return t && *t ? t : NULL;
}

const char *hgf_ecr_policy_text(json_t *page)
{
    const char *t = str(page, "lifecyclePolicyText");
    return t ? t : str(page, "policyText");
}
