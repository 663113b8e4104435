#include "hgfleet/endpoint.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPECTED "expected <12-digit account>.dkr.ecr.<region>.amazonaws.com[.cn], optionally " \
                 "prefixed with https:// (e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com)"
#define ACCOUNT_LEN 12

/* One partition of partitions.json. `ere` is its regionRegex rewritten for
 * POSIX regcomp (\w -> [[:alnum:]_], \d -> [0-9], "\-" -> "-"); the
 * originals are quoted alongside. org_region is where the partition's
 * Organizations endpoint lives (endpoints.json, "<partition>-global"). */
typedef struct partition_def {
    const char *id;
    const char *ere;
    const char *dns_suffix;
    const char *org_region;
    int ecr_fips;  /* has ecr-fips endpoints (endpoints.json api.ecr variants) */
} partition_def;

static const partition_def PARTITIONS[] = {
    /* ^(us|eu|ap|sa|ca|me|af|il|mx)\-\w+\-\d+$ */
    {"aws", "^(us|eu|ap|sa|ca|me|af|il|mx)-[[:alnum:]_]+-[0-9]+$", "amazonaws.com", "us-east-1", 1},
    /* ^cn\-\w+\-\d+$ */
    {"aws-cn", "^cn-[[:alnum:]_]+-[0-9]+$", "amazonaws.com.cn", "cn-northwest-1", 0},
    /* ^eusc\-(de)\-\w+\-\d+$ */
    {"aws-eusc", "^eusc-(de)-[[:alnum:]_]+-[0-9]+$", "amazonaws.eu", NULL, 0},
    /* ^us\-iso\-\w+\-\d+$ */
    {"aws-iso", "^us-iso-[[:alnum:]_]+-[0-9]+$", "c2s.ic.gov", "us-iso-east-1", 0},
    /* ^us\-isob\-\w+\-\d+$ */
    {"aws-iso-b", "^us-isob-[[:alnum:]_]+-[0-9]+$", "sc2s.sgov.gov", "us-isob-east-1", 0},
    /* ^eu\-isoe\-\w+\-\d+$ */
    {"aws-iso-e", "^eu-isoe-[[:alnum:]_]+-[0-9]+$", "cloud.adc-e.uk", "eu-isoe-west-1", 0},
    /* ^us\-isof\-\w+\-\d+$ */
    {"aws-iso-f", "^us-isof-[[:alnum:]_]+-[0-9]+$", "csp.hci.ic.gov", "us-isof-south-1", 0},
    /* ^us\-gov\-\w+\-\d+$ */
    {"aws-us-gov", "^us-gov-[[:alnum:]_]+-[0-9]+$", "amazonaws.com", "us-gov-west-1", 1},
};

#define N_PARTITIONS (sizeof PARTITIONS / sizeof PARTITIONS[0])

/* ---- regions and partitions ------------------------------------------- */

static int ere_match(const char *ere, const char *s)
{
    regex_t re;
    if (regcomp(&re, ere, REG_EXTENDED | REG_NOSUB) != 0)
        return 0;
    int ok = regexec(&re, s, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

static const partition_def *partition_of(const char *region)
{
    for (size_t i = 0; region && i < N_PARTITIONS; i++)
        if (ere_match(PARTITIONS[i].ere, region))
            return &PARTITIONS[i];
    return NULL;
}

static const partition_def *partition_by_id(const char *id)
{
    for (size_t i = 0; id && i < N_PARTITIONS; i++)
        if (strcmp(PARTITIONS[i].id, id) == 0)
            return &PARTITIONS[i];
    return NULL;
}

const char *hgf_endpoint_partition_for_region(const char *region)
{
    const partition_def *p = partition_of(region);
    return p ? p->id : "aws";
}

int hgf_endpoint_region_valid(const char *region)
{
    if (!region || !*region || strlen(region) >= sizeof ((hgf_registry *)0)->region)
        return 0;
    for (const char *p = region; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
            return 0;
    return partition_of(region) != NULL;
}

/* ---- building a registry ---------------------------------------------- */

static int all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* `pre` is the "registry URL "...": " prefix, or "" when built from parts. */
static int check_account(const char *pre, const char *acct, size_t n, hgf_err *err)
{
    if (n == ACCOUNT_LEN && all_digits(acct, n))
        return 0;
    return hgf_err_set(err, HGF_EINPUT, "%saccount ID \"%.*s\" must be exactly 12 digits", pre,
                       (int)(n > 40 ? 40 : n), acct);
}

static int check_region(const char *pre, const char *region, hgf_err *err)
{
    if (hgf_endpoint_region_valid(region))
        return 0;
    return hgf_err_set(err, HGF_EINPUT,
                       "%sregion \"%.40s\" is not an AWS region name (expected lowercase, e.g. "
                       "us-east-1, eu-central-2, cn-north-1, us-gov-west-1)",
                       pre, region);
}

/* Only partitions whose DNS suffix is amazonaws.com[.cn] have registry URLs
 * of the form we accept; a URL's suffix must be its region's. */
static int check_partition(const char *pre, const char *region, const partition_def *p,
                           const char *suffix, int fips, hgf_err *err)
{
    if (strcmp(p->dns_suffix, "amazonaws.com") != 0 && strcmp(p->dns_suffix, "amazonaws.com.cn") != 0)
        return hgf_err_set(err, HGF_EINPUT,
                           "%sregion \"%s\" is in partition %s (DNS suffix %s), which hgfleet "
                           "does not support; expected an amazonaws.com or amazonaws.com.cn region",
                           pre, region, p->id, p->dns_suffix);
    if (suffix && strcmp(suffix, p->dns_suffix) != 0) {
        if (strcmp(p->id, "aws-cn") == 0)
            return hgf_err_set(err, HGF_EINPUT,
                               "%sregion \"%s\" is a China region (partition aws-cn): expected "
                               "<12-digit account>.dkr.ecr.%s.amazonaws.com.cn",
                               pre, region, region);
        return hgf_err_set(err, HGF_EINPUT,
                           "%s.amazonaws.com.cn is only for China (cn-*) regions, but region "
                           "\"%s\" is in partition %s: expected "
                           "<12-digit account>.dkr.ecr.%s.amazonaws.com",
                           pre, region, p->id, region);
    }
    if (fips && !p->ecr_fips)
        return hgf_err_set(err, HGF_EINPUT,
                           "%sECR has no FIPS endpoint (dkr.ecr-fips) in partition %s", pre, p->id);
    return 0;
}

static void fill(const char *acct, const char *region, int fips, const partition_def *p,
                 hgf_registry *out)
{
    snprintf(out->account_id, sizeof out->account_id, "%s", acct);
    snprintf(out->region, sizeof out->region, "%s", region);
    snprintf(out->partition, sizeof out->partition, "%s", p->id);
    snprintf(out->dns_suffix, sizeof out->dns_suffix, "%s", p->dns_suffix);
    out->fips = fips ? 1 : 0;
    snprintf(out->host, sizeof out->host, "%s.dkr.ecr%s.%s.%s", acct, fips ? "-fips" : "", region,
             p->dns_suffix);
    snprintf(out->api_endpoint, sizeof out->api_endpoint, "https://%s.%s.%s",
             fips ? "ecr-fips" : "api.ecr", region, p->dns_suffix);
}

static int build(const char *pre, const char *acct, const char *region, int fips,
                 const char *suffix, hgf_registry *out, hgf_err *err)
{
    int rc = check_account(pre, acct, strlen(acct), err);
    if (!rc)
        rc = check_region(pre, region, err);
    const partition_def *p = rc ? NULL : partition_of(region);
    if (!rc)
        rc = check_partition(pre, region, p, suffix, fips, err);
    if (!rc)
        fill(acct, region, fips, p, out);
    return rc;
}

int hgf_endpoint_registry_from_parts(const char *account_id, const char *region, int fips,
                                     hgf_registry *out, hgf_err *err)
{
    memset(out, 0, sizeof *out);
    return build("", account_id ? account_id : "", region ? region : "", fips, NULL, out, err);
}

/* ---- parsing a registry URL ------------------------------------------- */

static int has_ws(const char *s)
{
    for (; *s; s++)
        if (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n' || *s == '\v' || *s == '\f')
            return 1;
    return 0;
}

static int has_upper(const char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            return 1;
    return 0;
}

/* The host part of anything URL-like, lowercased, for recognising ECR
 * Public whatever its scheme, case or path. */
static void loose_host(const char *url, char *out, size_t size)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    size_t n = strcspn(p, "/:?#");
    if (n >= size)
        n = size - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = (p[i] >= 'A' && p[i] <= 'Z') ? (char)(p[i] - 'A' + 'a') : p[i];
    out[n] = '\0';
}

static int is_ecr_public(const char *url)
{
    char host[256];
    loose_host(url, host, sizeof host);
    size_t n = strlen(host);
    return strcmp(host, "public.ecr.aws") == 0 ||
           (n > 15 && strcmp(host + n - 15, ".public.ecr.aws") == 0) ||
           strstr(host, "ecr-public.") != NULL;
}

/* Strips an optional https:// and rejects every other scheme. */
static int strip_scheme(const char *pre, const char *url, const char **rest, hgf_err *err)
{
    const char *sep = strstr(url, "://");
    *rest = url;
    if (!sep)
        return 0;
    size_t n = (size_t)(sep - url);
    if (n == 5 && strncmp(url, "https", 5) == 0) {
        *rest = sep + 3;
        return 0;
    }
    if (n == 4 && strncmp(url, "http", 4) == 0)
        return hgf_err_set(err, HGF_EINPUT,
                           "%sonly https:// is supported (ECR registries are served over https "
                           "only); " EXPECTED, pre);
    return hgf_err_set(err, HGF_EINPUT, "%sunsupported scheme \"%.*s://\", only https:// is allowed; "
                       EXPECTED, pre, (int)(n > 20 ? 20 : n), url);
}

/* Splits "<host>[/]" and rejects ports, user info, paths, queries. */
static int split_host(const char *pre, const char *rest, char *host, size_t size, hgf_err *err)
{
    size_t n = strcspn(rest, "/?#");
    const char *tail = rest + n;
    if (*tail == '?' || *tail == '#' || strpbrk(tail, "?#"))
        return hgf_err_set(err, HGF_EINPUT, "%sa query string or fragment is not allowed; " EXPECTED,
                           pre);
    if (*tail == '/' && tail[1] != '\0')
        return hgf_err_set(err, HGF_EINPUT,
                           "%sunexpected path \"%.60s\": a registry URL names no repository and "
                           "may end in at most one '/'; " EXPECTED,
                           pre, tail);
    if (memchr(rest, '@', n))
        return hgf_err_set(err, HGF_EINPUT, "%suser info ('@') is not allowed; " EXPECTED, pre);
    if (memchr(rest, ':', n))
        return hgf_err_set(err, HGF_EINPUT, "%sa port is not allowed (registries listen on 443); "
                           EXPECTED, pre);
    if (n == 0 || n >= size)
        return hgf_err_set(err, HGF_EINPUT, "%s" EXPECTED, pre);
    memcpy(host, rest, n);
    host[n] = '\0';
    return 0;
}

/* "<account>.dkr.ecr[-fips].<region>.<suffix>", split in place. */
static int split_labels(const char *pre, char *host, hgf_registry *tmp, int *fips,
                        const char **suffix, hgf_err *err)
{
    char *dot = strchr(host, '.');
    if (!dot)
        return hgf_err_set(err, HGF_EINPUT, "%s" EXPECTED, pre);
    /* Not an ECR host at all: say what one looks like before judging parts. */
    char *p = dot + 1;
    if (strncmp(p, "dkr.ecr.", 8) == 0) {
        *fips = 0;
        p += 8;
    } else if (strncmp(p, "dkr.ecr-fips.", 13) == 0) {
        *fips = 1;
        p += 13;
    } else {
        return hgf_err_set(err, HGF_EINPUT, "%s" EXPECTED, pre);
    }
    int rc = check_account(pre, host, (size_t)(dot - host), err);
    if (rc)
        return rc;
    memcpy(tmp->account_id, host, ACCOUNT_LEN);
    tmp->account_id[ACCOUNT_LEN] = '\0';
    dot = strchr(p, '.');
    size_t rlen = dot ? (size_t)(dot - p) : 0;
    if (!dot || rlen >= sizeof tmp->region)
        return hgf_err_set(err, HGF_EINPUT, "%s" EXPECTED, pre);
    memcpy(tmp->region, p, rlen);
    tmp->region[rlen] = '\0';
    *suffix = dot + 1;
    if (strcmp(*suffix, "amazonaws.com") != 0 && strcmp(*suffix, "amazonaws.com.cn") != 0)
        return hgf_err_set(err, HGF_EINPUT, "%sunexpected domain \"%.60s\"; " EXPECTED, pre, *suffix);
    return 0;
}

static int has_unprintable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return 1;
    return 0;
}

static int precheck(const char *pre, const char *url, hgf_err *err)
{
    size_t n = strlen(url);
    if (has_ws(url)) {
        int edge = url[0] == ' ' || url[0] == '\t' || url[0] == '\n' || url[0] == '\r' ||
                   url[n - 1] == ' ' || url[n - 1] == '\t' || url[n - 1] == '\n' || url[n - 1] == '\r';
        return hgf_err_set(err, HGF_EINPUT, "%s%s; " EXPECTED, pre,
                           edge ? "remove the leading or trailing whitespace"
                                : "whitespace is not allowed");
    }
    if (has_unprintable(url))
        return hgf_err_set(err, HGF_EINPUT,
                           "%scontains a control or non-ASCII character; " EXPECTED, pre);
    if (is_ecr_public(url))
        return hgf_err_set(err, HGF_EINPUT,
                           "%spublic.ecr.aws is Amazon ECR Public, a different service with a "
                           "different API (ecr-public), and is not supported: hgfleet manages "
                           "private ECR registries, e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com",
                           pre);
    if (has_upper(url))
        return hgf_err_set(err, HGF_EINPUT, "%supper-case letters are not accepted, write it in lowercase; " EXPECTED, pre);
    return 0;
}

/* "registry URL "<url>": " with the URL cut at 200 bytes and anything
 * unprintable shown as '?', so a hostile value cannot forge log lines. */
static void message_prefix(const char *url, char *pre, size_t size)
{
    char shown[204];
    size_t n = 0;
    for (; url[n] && n < 200; n++)
        shown[n] = ((unsigned char)url[n] < 0x20 || (unsigned char)url[n] > 0x7e) ? '?' : url[n];
    shown[n] = '\0';
    snprintf(pre, size, "registry URL \"%s%s\": ", shown, url[n] ? "..." : "");
}

int hgf_endpoint_parse_registry(const char *url, hgf_registry *out, hgf_err *err)
{
    memset(out, 0, sizeof *out);
    if (!url || !*url)
        return hgf_err_set(err, HGF_EINPUT, "registry URL is empty; " EXPECTED);
    char pre[256];
    message_prefix(url, pre, sizeof pre);
    const char *rest = NULL, *suffix = NULL;
    char host[sizeof out->host];
    hgf_registry tmp;
    memset(&tmp, 0, sizeof tmp);
    int fips = 0;
    int rc = precheck(pre, url, err);
    if (!rc)
        rc = strip_scheme(pre, url, &rest, err);
    if (!rc)
        rc = split_host(pre, rest, host, sizeof host, err);
    if (!rc)
        rc = split_labels(pre, host, &tmp, &fips, &suffix, err);
    if (!rc)
        rc = build(pre, tmp.account_id, tmp.region, fips, suffix, out, err);
    return rc;
}

/* ---- service endpoints ------------------------------------------------ */

static int valid_service_id(const char *s)
{
    if (!s || !*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return 0;
    return 1;
}

/* An override must be an absolute http(s) URL; plain http is allowed here
 * because simulators and VPC proxies use it. */
static int put_override(const char *var, const char *val, char *out, size_t size, hgf_err *err)
{
    const char *host = strncmp(val, "https://", 8) == 0  ? val + 8
                       : strncmp(val, "http://", 7) == 0 ? val + 7
                                                         : NULL;
    if (!host || !*host || *host == '/' || has_ws(val))
        return hgf_err_set(err, HGF_EINPUT, "%s: \"%.200s\" is not an http:// or https:// URL",
                           var, val);
    size_t n = strlen(val);
    while (n > (size_t)(host - val) && val[n - 1] == '/')
        n--;
    if (n >= size)
        return hgf_err_set(err, HGF_EINPUT, "%s: URL is longer than %zu bytes", var, size - 1);
    memcpy(out, val, n);
    out[n] = '\0';
    return 0;
}

static int put_default(const char *service, const hgf_registry *reg, char *out, size_t size,
                       hgf_err *err)
{
    const partition_def *p = partition_by_id(reg->partition);
    int n;
    if (strcmp(service, "ECR") == 0)
        n = snprintf(out, size, "%s", reg->api_endpoint);
    else if (strcmp(service, "STS") == 0)
        n = snprintf(out, size, "https://sts.%s.%s", reg->region, reg->dns_suffix);
    else if (strcmp(service, "ORGANIZATIONS") == 0 && p && p->org_region)
        n = snprintf(out, size, "https://organizations.%s.%s", p->org_region, p->dns_suffix);
    else
        return hgf_err_set(err, HGF_EINPUT,
                           "no default endpoint for service %s in partition %s; set "
                           "AWS_ENDPOINT_URL_%s",
                           service, reg->partition, service);
    if (n < 0 || (size_t)n >= size)
        return hgf_err_set(err, HGF_EINPUT, "endpoint URL for %s is longer than %zu bytes",
                           service, size ? size - 1 : 0);
    return 0;
}

int hgf_endpoint_service_url(const char *service_env, const hgf_registry *reg, char *out,
                             size_t out_size, hgf_err *err)
{
    if (!valid_service_id(service_env))
        return hgf_err_set(err, HGF_EINPUT,
                           "service id \"%.40s\" must be upper-case letters, digits or '_'",
                           service_env ? service_env : "");
    if (!out || out_size == 0)
        return hgf_err_set(err, HGF_EINPUT, "endpoint output buffer is empty");
    char var[96];
    snprintf(var, sizeof var, "AWS_ENDPOINT_URL_%s", service_env);
    const char *val = getenv(var);
    if (!val || !*val) {
        snprintf(var, sizeof var, "AWS_ENDPOINT_URL");
        val = getenv(var);
    }
    if (val && *val)
        return put_override(var, val, out, out_size, err);
    if (!reg)
        return hgf_err_set(err, HGF_EINPUT, "no registry to derive the %s endpoint from",
                           service_env);
    return put_default(service_env, reg, out, out_size, err);
}

const char *hgf_endpoint_signing_region(const char *service_env, const hgf_registry *reg)
{
    const partition_def *p = partition_by_id(reg->partition);
    if (service_env && strcmp(service_env, "ORGANIZATIONS") == 0 && p && p->org_region)
        return p->org_region;
    return reg->region;
}
