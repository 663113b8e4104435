/* ECR registry URLs, partitions and service endpoints.
 *
 * A registry is one (account, region). Its URL encodes both:
 *   [https://]<12 digits>.dkr.ecr[-fips].<region>.amazonaws.com[.cn][/]
 * Everything here fills caller-owned structs; nothing allocates. */
#ifndef HGF_ENDPOINT_H
#define HGF_ENDPOINT_H

#include "hgfleet/err.h"

typedef struct hgf_registry {
    char account_id[13];   /* 12 digits */
    char region[32];       /* e.g. us-east-1 */
    char partition[16];    /* aws, aws-cn, aws-us-gov, aws-iso, aws-iso-b */
    char dns_suffix[32];   /* amazonaws.com or amazonaws.com.cn */
    int fips;              /* 1 for dkr.ecr-fips */
    char host[128];        /* bare host: <account>.dkr.ecr.<region>.amazonaws.com */
    char api_endpoint[160];/* https://api.ecr.<region>.amazonaws.com (or ecr-fips.<region>...) */
} hgf_registry;

/* Parses a registry URL. On failure returns HGF_EINPUT and err->msg says what
 * was expected; public.ecr.aws gets its own "different service, not supported"
 * message. Accepts an optional https:// scheme and one trailing slash;
 * surrounding whitespace is an error. Lowercase only: upper-case letters are
 * rejected with a message saying so. */
int hgf_endpoint_parse_registry(const char *url, hgf_registry *out, hgf_err *err);

/* Builds a registry from parts (used by discovery/import): validates both. */
int hgf_endpoint_registry_from_parts(const char *account_id, const char *region, int fips,
                                     hgf_registry *out, hgf_err *err);

/* The partition a region belongs to (regionRegex of partitions.json), e.g.
 * "cn-north-1" -> "aws-cn". Returns a static string; never NULL ("aws"). */
const char *hgf_endpoint_partition_for_region(const char *region);

/* 1 if `region` looks like an AWS region name (e.g. us-east-1, us-gov-west-1,
 * cn-northwest-1, eu-central-2), else 0. */
int hgf_endpoint_region_valid(const char *region);

/* The endpoint URL for a service in a registry's region, honouring
 * AWS_ENDPOINT_URL_<SERVICE_ID> then AWS_ENDPOINT_URL from the environment
 * (service_env is the upper-case id: "ECR", "STS", "ORGANIZATIONS").
 * Defaults: ECR -> reg->api_endpoint; STS -> https://sts.<region>.<suffix>;
 * ORGANIZATIONS -> https://organizations.us-east-1.amazonaws.com (aws) or
 * the partition's global endpoint. A trailing slash is removed. */
int hgf_endpoint_service_url(const char *service_env, const hgf_registry *reg,
                             char *out, size_t out_size, hgf_err *err);

/* The region to put in the SigV4 scope for a service: the registry's region,
 * except ORGANIZATIONS, whose global endpoint signs with the partition's home
 * region (us-east-1, cn-northwest-1, us-gov-west-1). reg must not be NULL;
 * the returned string is static or points into reg. */
const char *hgf_endpoint_signing_region(const char *service_env, const hgf_registry *reg);

#endif
