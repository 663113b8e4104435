/* The ECR API calls hgfleet makes (JSON 1.1), and the catalog items they return.
 *
 * Requests always carry registryId and, where paging applies, maxResults 1000.
 * Ownership: parse functions fill caller-owned structs whose string pointers
 * borrow from the json_t passed in; copy what must outlive it. */
#ifndef HGF_ECR_H
#define HGF_ECR_H

#include <jansson.h>

#include "hgfleet/awsjson.h"

#define HGF_ECR_TARGET_PREFIX "AmazonEC2ContainerRegistry_V20150921"
#define HGF_ECR_PAGE_SIZE 1000

typedef struct hgf_ecr_repo {
    const char *name, *arn, *tag_mutability, *encryption;
    int scan_on_push;
    double created_at;
} hgf_ecr_repo;

typedef struct hgf_ecr_image {
    const char *digest, *media_type, *artifact_media_type;
    json_t *tags;          /* borrowed array of strings, or NULL when untagged */
    long long size_bytes;
    double pushed_at;      /* epoch seconds, possibly fractional */
} hgf_ecr_image;

/* next_token may be NULL for the first page. */
int hgf_ecr_describe_repositories(const hgf_aws_target *t, const char *registry_id,
                                  const char *next_token, hgf_aws_cb cb, void *arg, hgf_err *err);
int hgf_ecr_describe_images(const hgf_aws_target *t, const char *registry_id, const char *repo,
                            const char *next_token, hgf_aws_cb cb, void *arg, hgf_err *err);

/* GetLifecyclePolicy and GetRepositoryPolicy: a repository's policies for
 * the posture checks. A repository without one answers
 * LifecyclePolicyNotFoundException or RepositoryPolicyNotFoundException. */
int hgf_ecr_get_lifecycle_policy(const hgf_aws_target *t, const char *registry_id,
                                 const char *repo, hgf_aws_cb cb, void *arg, hgf_err *err);
int hgf_ecr_get_repository_policy(const hgf_aws_target *t, const char *registry_id,
                                  const char *repo, hgf_aws_cb cb, void *arg, hgf_err *err);

/* The policy text of a GetLifecyclePolicy (lifecyclePolicyText) or
 * GetRepositoryPolicy (policyText) answer, or NULL; borrowed from page. */
const char *hgf_ecr_policy_text(json_t *page);

/* HGF_EINPUT naming the missing field when an item lacks a required one. */
int hgf_ecr_parse_repo(json_t *item, hgf_ecr_repo *out, hgf_err *err);
int hgf_ecr_parse_image(json_t *item, hgf_ecr_image *out, hgf_err *err);
/* The page's nextToken or NULL (borrowed from json). */
const char *hgf_ecr_next_token(json_t *page);

#endif
