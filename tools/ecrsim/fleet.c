#include "fleet.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/sha.h>

#include "hgfleet/timeutil.h"
#include "strmap.h"

#define DAY_MS 86400000LL
#define ACCOUNT_BASE 100000000000ULL
#define MAX_TAGS 4

struct hgf_sim_fleet {
    pthread_mutex_t lock;
    int64_t (*clock)(void *ctx);
    void *clock_ctx;
    unsigned long long seed;
    unsigned n_accounts;
    size_t n_regions;
    char **regions;
    hgf_sim_registry *registries;  /* [account * n_regions + region] */
};

/* An image that lost its last tag to a mutation, and when. Images untagged
 * since their push need no mark: their push time says it. */
typedef struct untagged_mark {
    uint32_t gen;
    int64_t since_ms;
} untagged_mark;

struct hgf_sim_repo_ext {
    uint32_t n_generated;   /* gens below this were generated */
    uint32_t next_gen;      /* the next push's gen */
    uint32_t cap_images;
    int64_t *pushed_ms;     /* [gen - n_generated]: push times of pushed gens */
    uint32_t cap_pushed;
    hgf_sim_map *moved;     /* tag -> gen + 1, for every tag a mutation placed */
    untagged_mark *marks;   /* ascending gen */
    size_t n_marks, cap_marks;
    hgf_sim_lifecycle lc;
    int64_t lc_next_ms;     /* no untagged image expires before this */
};

/* Salts keep the independent choices made from one key uncorrelated. */
enum salt {
    S_NAME_STYLE = 1, S_TEAM, S_SERVICE, S_PLAIN, S_IMMUTABLE, S_SCAN, S_AGE_DAYS, S_AGE_MS,
    S_EMPTY, S_COUNT, S_KIND, S_TAGS, S_JITTER, S_ARCH, S_LAYERS, S_USER, S_LIFECYCLE,
    S_LC_DAYS, S_POLICY, S_MULTI, S_MULTI_FORMAT, S_LAYER_SIZE = 100,
    S_LAYER_DIGEST = 200,
};

static const char *const TEAMS[] = {
    "payments", "search", "platform", "data", "identity", "growth", "infra", "mobile",
    "web", "ml", "risk", "ads", "core", "edge", "media", "notify",
};
static const char *const SERVICES[] = {
    "api", "worker", "gateway", "frontend", "indexer", "scheduler", "auth", "billing",
    "exporter", "ingest", "cache", "proxy", "cron", "admin", "reports", "sync",
};
static const char *const PLAIN[] = {
    "nginx", "redis", "postgres", "python", "node", "golang", "alpine", "busybox",
    "envoy", "grafana", "prometheus", "fluent-bit", "base-image", "ci-runner", "tools",
    "debian-slim",
};
#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

/* splitmix64's finalizer: a cheap, well-mixed deterministic hash. */
static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t h2(uint64_t a, uint64_t b)
{
    return mix64(a ^ mix64(b));
}

static uint64_t h3(uint64_t a, uint64_t b, uint64_t c)
{
    return h2(h2(a, b), c);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

/* ---- per-image attributes (pure functions) ---------------------------- */

static uint64_t img_hash(const hgf_sim_repo *repo, uint32_t gen, uint64_t salt)
{
    return h3(repo->key, gen, salt);
}

/* Multi-arch images: the generated gens come in blocks of three, {3b, 3b+1,
 * 3b+2}; MULTI_PERCENT of the complete blocks hold a multi-arch push (the
 * linux/amd64 and linux/arm64 manifests, then the index listing them), so
 * about that share of a third of the images are indexes, and twice as many
 * are their untagged platform manifests. The other gens are plain images. */
#define MULTI_PERCENT 24

/* The role of generated gen `gen` among n generated ones. */
static int gen_role(const hgf_sim_repo *repo, uint32_t gen, uint32_t n)
{
    uint32_t b = gen / 3;
    if ((uint64_t)b * 3 + 2 >= n || img_hash(repo, b, S_MULTI) % 100 >= MULTI_PERCENT)
        return HGF_SIM_ROLE_IMAGE;
    return gen % 3 == 2 ? HGF_SIM_ROLE_INDEX : gen % 3 == 0 ? HGF_SIM_ROLE_AMD64
                                                            : HGF_SIM_ROLE_ARM64;
}

/* A plain image's format: one in ten is Docker v2. */
static uint8_t plain_kind(const hgf_sim_repo *repo, uint32_t gen)
{
    return img_hash(repo, gen, S_KIND) % 10 == 0 ? HGF_SIM_KIND_DOCKER : HGF_SIM_KIND_OCI;
}

/* A multi-arch push's format, decided by the index's gen: one in three is a
 * Docker manifest list. */
static int multi_format(const hgf_sim_repo *repo, uint32_t index_gen)
{
    return img_hash(repo, index_gen, S_MULTI_FORMAT) % 3 == 0 ? HGF_SIM_KIND_DOCKER
                                                               : HGF_SIM_KIND_OCI;
}

/* The kind of generated gen `gen` among n generated ones. */
static uint8_t gen_kind(const hgf_sim_repo *repo, uint32_t gen, uint32_t n)
{
    int role = gen_role(repo, gen, n);
    if (role == HGF_SIM_ROLE_IMAGE)
        return plain_kind(repo, gen);
    return HGF_SIM_KIND(multi_format(repo, gen / 3 * 3 + 2), role);
}

static uint32_t generated_count(const hgf_sim_repo *repo);

/* A multi-arch push's platform manifests land a second apart just before
 * their index, as buildx pushes them. */
static int64_t img_pushed_ms(const hgf_sim_repo *repo, uint32_t gen)
{
    const hgf_sim_repo_ext *x = repo->ext;
    if (x && gen >= x->n_generated)
        return x->pushed_ms[gen - x->n_generated];
    int role = gen_role(repo, gen, generated_count(repo));
    if (role == HGF_SIM_ROLE_AMD64 || role == HGF_SIM_ROLE_ARM64) {
        uint32_t index = gen / 3 * 3 + 2;
        return img_pushed_ms(repo, index) - (int64_t)(index - gen) * 1000;
    }
    int64_t step = repo->push_step_ms;
    uint64_t jitter = img_hash(repo, gen, S_JITTER) % (uint64_t)(step / 2 + 1);
    return repo->created_ms + ((int64_t)gen + 1) * step + (int64_t)jitter;
}

static unsigned img_layers(const hgf_sim_repo *repo, uint32_t gen)
{
    return 1 + (unsigned)(img_hash(repo, gen, S_LAYERS) % 4);
}

static uint64_t layer_size(const hgf_sim_repo *repo, uint32_t gen, unsigned k)
{
    uint64_t base = k == 0 ? 2000000 : 1000;
    return base + img_hash(repo, gen, S_LAYER_SIZE + k) % 40000000;
}

/* Layer blobs are never served, so their digests only need to be stable and
 * distinct: 256 bits of hash output. */
static int put_layer_digest(const hgf_sim_repo *repo, uint32_t gen, unsigned k, hgf_buf *out)
{
    unsigned char raw[32];
    uint64_t seed = img_hash(repo, gen, S_LAYER_DIGEST + k);
    for (unsigned w = 0; w < 4; w++) {
        uint64_t v = h2(seed, w);
        for (unsigned b = 0; b < 8; b++)
            raw[w * 8 + b] = (unsigned char)(v >> (56 - 8 * b));
    }
    int rc = hgf_buf_puts(out, "sha256:");
    return rc ? rc : hgf_buf_put_hex(out, raw, sizeof raw);
}

/* Half the users run as root, in every spelling a Dockerfile allows (no
 * USER line at all is the commonest); the rest are unprivileged. */
static const char *const USERS[] = {
    NULL, "", "root", "0", "0:0", "root:root", "1000", "1000:1000", "nobody", "65532:65532",
    "1000", "app",
};
#define ROOT_USERS 6

/* An index's user is its linux/amd64 manifest's, the platform a scanner
 * follows it to. */
const char *hgf_sim_fleet_image_user(const hgf_sim_repo *repo, const hgf_sim_image *img)
{
    uint32_t gen = HGF_SIM_KIND_ROLE(img->kind) == HGF_SIM_ROLE_INDEX ? img->gen - 2 : img->gen;
    return USERS[img_hash(repo, gen, S_USER) % COUNT_OF(USERS)];
}

int hgf_sim_fleet_user_is_root(const char *user)
{
    for (size_t i = 0; i < ROOT_USERS; i++)
        if (user == USERS[i] || (user && USERS[i] && strcmp(user, USERS[i]) == 0))
            return 1;
    return 0;
}

static void lifecycle_of(const hgf_sim_repo *repo, hgf_sim_repo_posture *out)
{
    static const int SHORT_DAYS[] = {1, 3, 5}, LONG_DAYS[] = {7, 14, 30};
    uint64_t r = h2(repo->key, S_LIFECYCLE) % 20, d = h2(repo->key, S_LC_DAYS) % 3;
    out->lifecycle = r < 6    ? HGF_SIM_LC_NONE
                     : r < 14 ? HGF_SIM_LC_UNTAGGED
                     : r < 17 ? HGF_SIM_LC_COUNT_ONLY
                              : HGF_SIM_LC_ANY;
    out->untagged_days = r < 6 || (r >= 14 && r < 17) ? -1
                         : r < 10                    ? SHORT_DAYS[d]
                         : r < 14                    ? LONG_DAYS[d]
                                                     : 365;
}

void hgf_sim_fleet_repo_posture(const hgf_sim_repo *repo, hgf_sim_repo_posture *out)
{
    lifecycle_of(repo, out);
    uint64_t p = h2(repo->key, S_POLICY) % 20;
    out->policy = p < 10   ? HGF_SIM_POL_NONE
                  : p < 13 ? HGF_SIM_POL_CROSS_ACCOUNT
                  : p < 15 ? HGF_SIM_POL_STAR
                  : p < 16 ? HGF_SIM_POL_AWS_STAR
                  : p < 17 ? HGF_SIM_POL_AWS_ARRAY
                  : p < 18 ? HGF_SIM_POL_DENY_STAR
                           : HGF_SIM_POL_ORG_ONLY;
}

/* The User member, or nothing: an image without a USER line has none. */
static int put_user(const hgf_sim_repo *repo, const hgf_sim_image *img, hgf_buf *out)
{
    const char *user = hgf_sim_fleet_image_user(repo, img);
    return user ? hgf_buf_printf(out, "\"User\":\"%s\",", user) : 0;
}

int hgf_sim_fleet_config_blob(const hgf_sim_fleet *f, const hgf_sim_registry *reg,
                              const hgf_sim_repo *repo, const hgf_sim_image *img, hgf_buf *out)
{
    char created[32];
    int role = HGF_SIM_KIND_ROLE(img->kind);
    if (role == HGF_SIM_ROLE_INDEX)
        return HGF_ENOTFOUND;
    hgf_time_format_iso((time_t)(img_pushed_ms(repo, img->gen) / 1000), created, sizeof created);
    const char *arch = role == HGF_SIM_ROLE_AMD64                    ? "amd64"
                       : role == HGF_SIM_ROLE_ARM64                  ? "arm64"
                       : img_hash(repo, img->gen, S_ARCH) % 4 == 0 ? "arm64"
                                                                     : "amd64";
    int rc = hgf_buf_printf(out,
                            "{\"architecture\":\"%s\",%s\"os\":\"linux\",\"created\":\"%s\","
                            "\"config\":{",
                            arch, role == HGF_SIM_ROLE_ARM64 ? "\"variant\":\"v8\"," : "",
                            created);
    if (!rc)
        rc = put_user(repo, img, out);
    if (!rc)
        rc = hgf_buf_printf(out,
                            "\"Labels\":{\"com.hgfleet.ecrsim.origin\":\"%s/%s/%s\","
                            "\"com.hgfleet.ecrsim.generation\":\"%" PRIu32 "\","
                            "\"com.hgfleet.ecrsim.seed\":\"%llu\"}},"
                            "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[",
                            reg->account, reg->region, repo->name, img->gen, f->seed);
    unsigned n = img_layers(repo, img->gen);
    for (unsigned k = 0; !rc && k < n; k++) {
        rc = hgf_buf_puts(out, k ? ",\"" : "\"");
        if (!rc)
            rc = put_layer_digest(repo, img->gen, k, out);
        if (!rc)
            rc = hgf_buf_putc(out, '"');
    }
    return rc ? rc : hgf_buf_puts(out, "]}}");
}

static void digest_text(const unsigned char md[32], char out[72])
{
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "sha256:", 7);
    for (size_t i = 0; i < 32; i++) {
        out[7 + 2 * i] = hex[md[i] >> 4];
        out[8 + 2 * i] = hex[md[i] & 15];
    }
    out[71] = '\0';
}

static int put_descriptor(hgf_buf *out, const char *media_type, const char *digest, uint64_t size)
{
    return hgf_buf_printf(out, "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%" PRIu64 "}",
                          media_type, digest, size);
}

static int build_manifest(const hgf_sim_fleet *f, const hgf_sim_registry *reg,
                          const hgf_sim_repo *repo, const hgf_sim_image *img, hgf_buf *out,
                          unsigned char md[SHA256_DIGEST_LENGTH]);

/* Platform manifest k (0: linux/amd64, 1: linux/arm64) of an index. */
static hgf_sim_image index_child(const hgf_sim_image *index, unsigned k)
{
    hgf_sim_image child = {.gen = index->gen - 2 + k,
                           .kind = HGF_SIM_KIND(HGF_SIM_KIND_FORMAT(index->kind),
                                                HGF_SIM_ROLE_AMD64 + (int)k)};
    return child;
}

/* An OCI image index or Docker manifest list of the two platform manifests,
 * as buildx writes it: each entry a descriptor with its platform. */
static int build_index(const hgf_sim_fleet *f, const hgf_sim_registry *reg,
                       const hgf_sim_repo *repo, const hgf_sim_image *img, hgf_buf *out)
{
    static const char *const PLATFORMS[] = {
        "{\"architecture\":\"amd64\",\"os\":\"linux\"}",
        "{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\"}",
    };
    int docker = HGF_SIM_KIND_FORMAT(img->kind) == HGF_SIM_KIND_DOCKER;
    hgf_buf child = HGF_BUF_INIT;
    int rc = hgf_buf_printf(out, "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":[",
                            docker ? HGF_SIM_MT_DOCKER_LIST : HGF_SIM_MT_OCI_INDEX);
    for (unsigned k = 0; !rc && k < 2; k++) {
        hgf_sim_image c = index_child(img, k);
        unsigned char md[SHA256_DIGEST_LENGTH], cfg_md[SHA256_DIGEST_LENGTH];
        char digest[72];
        hgf_buf_reset(&child);
        rc = build_manifest(f, reg, repo, &c, &child, cfg_md);
        if (rc)
            break;
        SHA256((const unsigned char *)child.data, child.len, md);
        digest_text(md, digest);
        rc = hgf_buf_printf(out,
                            "%s{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu,"
                            "\"platform\":%s}",
                            k ? "," : "", docker ? HGF_SIM_MT_DOCKER_MANIFEST : HGF_SIM_MT_OCI_MANIFEST,
                            digest, child.len, PLATFORMS[k]);
    }
    if (!rc)
        rc = hgf_buf_puts(out, "]}");
    hgf_buf_free(&child);
    return rc;
}

/* The manifest, and the config blob's raw digest into cfg_md (zero for an
 * index, which has no config). */
static int build_manifest(const hgf_sim_fleet *f, const hgf_sim_registry *reg,
                          const hgf_sim_repo *repo, const hgf_sim_image *img, hgf_buf *out,
                          unsigned char md[SHA256_DIGEST_LENGTH])
{
    if (HGF_SIM_KIND_ROLE(img->kind) == HGF_SIM_ROLE_INDEX) {
        memset(md, 0, SHA256_DIGEST_LENGTH);
        return build_index(f, reg, repo, img, out);
    }
    int docker = HGF_SIM_KIND_FORMAT(img->kind) == HGF_SIM_KIND_DOCKER;
    hgf_buf cfg = HGF_BUF_INIT, dig = HGF_BUF_INIT;
    int rc = hgf_sim_fleet_config_blob(f, reg, repo, img, &cfg);
    if (!rc) {
        SHA256((const unsigned char *)cfg.data, cfg.len, md);
        rc = hgf_buf_puts(&dig, "sha256:");
    }
    if (!rc)
        rc = hgf_buf_put_hex(&dig, md, SHA256_DIGEST_LENGTH);
    if (!rc)
        rc = hgf_buf_printf(out, "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":",
                            docker ? HGF_SIM_MT_DOCKER_MANIFEST : HGF_SIM_MT_OCI_MANIFEST);
    if (!rc)
        rc = put_descriptor(out, docker ? HGF_SIM_MT_DOCKER_CONFIG : HGF_SIM_MT_OCI_CONFIG,
                            hgf_buf_str(&dig), cfg.len);
    if (!rc)
        rc = hgf_buf_puts(out, ",\"layers\":[");
    unsigned n = img_layers(repo, img->gen);
    for (unsigned k = 0; !rc && k < n; k++) {
        hgf_buf_reset(&dig);
        rc = put_layer_digest(repo, img->gen, k, &dig);
        if (!rc && k)
            rc = hgf_buf_putc(out, ',');
        if (!rc)
            rc = put_descriptor(out,
                                docker ? "application/vnd.docker.image.rootfs.diff.tar.gzip"
                                       : "application/vnd.oci.image.layer.v1.tar+gzip",
                                hgf_buf_str(&dig), layer_size(repo, img->gen, k));
    }
    if (!rc)
        rc = hgf_buf_puts(out, "]}");
    hgf_buf_free(&cfg);
    hgf_buf_free(&dig);
    return rc;
}

int hgf_sim_fleet_manifest(const hgf_sim_fleet *f, const hgf_sim_registry *reg,
                           const hgf_sim_repo *repo, const hgf_sim_image *img, hgf_buf *out)
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    return build_manifest(f, reg, repo, img, out, md);
}

int hgf_sim_fleet_index_children(const hgf_sim_fleet *f, const hgf_sim_registry *reg,
                                 const hgf_sim_repo *repo, const hgf_sim_image *img,
                                 char out[2][72])
{
    if (HGF_SIM_KIND_ROLE(img->kind) != HGF_SIM_ROLE_INDEX)
        return HGF_EINPUT;
    hgf_buf m = HGF_BUF_INIT;
    int rc = 0;
    for (unsigned k = 0; !rc && k < 2; k++) {
        hgf_sim_image c = index_child(img, k);
        unsigned char md[SHA256_DIGEST_LENGTH], cfg_md[SHA256_DIGEST_LENGTH];
        hgf_buf_reset(&m);
        rc = build_manifest(f, reg, repo, &c, &m, cfg_md);
        if (!rc) {
            SHA256((const unsigned char *)m.data, m.len, md);
            digest_text(md, out[k]);
        }
    }
    hgf_buf_free(&m);
    return rc;
}

static uint64_t layers_size(const hgf_sim_repo *repo, uint32_t gen)
{
    uint64_t size = 0;
    for (unsigned k = 0, n = img_layers(repo, gen); k < n; k++)
        size += layer_size(repo, gen, k);
    return size;
}

/* An index reports what ECR does: the largest of its manifests' sizes, and
 * no artifact media type. */
void hgf_sim_fleet_image_info(const hgf_sim_repo *repo, const hgf_sim_image *img,
                              hgf_sim_image_info *out)
{
    digest_text(img->digest, out->digest);
    out->pushed_ms = img_pushed_ms(repo, img->gen);
    out->role = HGF_SIM_KIND_ROLE(img->kind);
    int docker = HGF_SIM_KIND_FORMAT(img->kind) == HGF_SIM_KIND_DOCKER;
    if (out->role == HGF_SIM_ROLE_INDEX) {
        uint64_t a = layers_size(repo, img->gen - 2), b = layers_size(repo, img->gen - 1);
        out->size_bytes = a > b ? a : b;
        out->manifest_media_type = docker ? HGF_SIM_MT_DOCKER_LIST : HGF_SIM_MT_OCI_INDEX;
        out->artifact_media_type = NULL;
        return;
    }
    out->size_bytes = layers_size(repo, img->gen);
    out->manifest_media_type = docker ? HGF_SIM_MT_DOCKER_MANIFEST : HGF_SIM_MT_OCI_MANIFEST;
    out->artifact_media_type = docker ? HGF_SIM_MT_DOCKER_CONFIG : HGF_SIM_MT_OCI_CONFIG;
}

/* ---- generation -------------------------------------------------------- */

enum tag_class { TAGS_NONE, TAGS_ONE, TAGS_TWO };

/* The tags of generated gen `gen` among n: a platform manifest of an index
 * has none, as buildx pushes them by digest. */
static enum tag_class tag_class(const hgf_sim_repo *repo, uint32_t gen, uint32_t n)
{
    int role = gen_role(repo, gen, n);
    if (role == HGF_SIM_ROLE_AMD64 || role == HGF_SIM_ROLE_ARM64)
        return TAGS_NONE;
    uint64_t r = img_hash(repo, gen, S_TAGS) % 100;
    return r < 15 ? TAGS_NONE : r < 70 ? TAGS_ONE : TAGS_TWO;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Every tag embeds the generation index, so tags are unique per repository;
 * only the newest tagged image also gets "latest". */
static int make_tags(const hgf_sim_repo *repo, uint32_t gen, uint32_t n_gen, int latest,
                     char **out)
{
    enum tag_class c = tag_class(repo, gen, n_gen);
    *out = NULL;
    if (c == TAGS_NONE)
        return 0;
    char version[32], build[32];
    const char *tags[MAX_TAGS];
    size_t n = 0;
    snprintf(version, sizeof version, "v%" PRIu32 ".%" PRIu32 ".%" PRIu32, 1 + gen / 100,
             (gen / 10) % 10, gen % 10);
    tags[n++] = version;
    if (c == TAGS_TWO) {
        snprintf(build, sizeof build, "build-%" PRIu32, gen);
        tags[n++] = build;
    }
    if (latest)
        tags[n++] = "latest";
    qsort(tags, n, sizeof tags[0], cmp_str);
    hgf_buf packed = HGF_BUF_INIT;
    int rc = 0;
    for (size_t i = 0; !rc && i <= n; i++)
        rc = hgf_buf_append(&packed, i < n ? tags[i] : "", i < n ? strlen(tags[i]) + 1 : 1);
    if (rc) {
        hgf_buf_free(&packed);
        return rc;
    }
    *out = hgf_buf_detach(&packed);
    return 0;
}

/* gen, kind, digest and config hint of img (no tags). */
static int init_image(const hgf_sim_fleet *f, const hgf_sim_registry *reg,
                      const hgf_sim_repo *repo, uint32_t gen, uint8_t kind, hgf_sim_image *img,
                      hgf_buf *scratch)
{
    img->gen = gen;
    img->kind = kind;
    img->tags = NULL;
    hgf_buf_reset(scratch);
    unsigned char cfg_md[SHA256_DIGEST_LENGTH];
    int rc = build_manifest(f, reg, repo, img, scratch, cfg_md);
    if (rc)
        return rc;
    memcpy(img->config_hint, cfg_md, sizeof img->config_hint);
    SHA256((const unsigned char *)scratch->data, scratch->len, img->digest);
    return 0;
}

static int make_image(const hgf_sim_fleet *f, const hgf_sim_registry *reg, hgf_sim_repo *repo,
                      uint32_t gen, uint32_t n, int latest, hgf_buf *scratch)
{
    hgf_sim_image *img = &repo->images[gen];
    int rc = init_image(f, reg, repo, gen, gen_kind(repo, gen, n), img, scratch);
    return rc ? rc : make_tags(repo, gen, n, latest, &img->tags);
}

static int make_images(const hgf_sim_fleet *f, const hgf_sim_registry *reg, hgf_sim_repo *repo,
                       uint32_t n)
{
    repo->push_step_ms = (HGF_SIM_EPOCH_MS - repo->created_ms) / ((int64_t)n + 1);
    if (repo->push_step_ms < 1)
        repo->push_step_ms = 1;
    if (n == 0)
        return 0;
    repo->images = calloc(n, sizeof *repo->images);
    if (!repo->images)
        return HGF_ENOMEM;
    repo->n_images = n;
    uint32_t latest = n;
    for (uint32_t g = n; g-- > 0 && latest == n;)
        if (tag_class(repo, g, n) != TAGS_NONE)
            latest = g;
    hgf_buf scratch = HGF_BUF_INIT;
    int rc = 0;
    for (uint32_t g = 0; !rc && g < n; g++)
        rc = make_image(f, reg, repo, g, n, g == latest, &scratch);
    hgf_buf_free(&scratch);
    return rc;
}

static char *repo_name(uint64_t slot)
{
    char name[128];
    if (h2(slot, S_NAME_STYLE) % 4 == 0)
        snprintf(name, sizeof name, "%s", PLAIN[h2(slot, S_PLAIN) % COUNT_OF(PLAIN)]);
    else
        snprintf(name, sizeof name, "team-%s/service-%s", TEAMS[h2(slot, S_TEAM) % COUNT_OF(TEAMS)],
                 SERVICES[h2(slot, S_SERVICE) % COUNT_OF(SERVICES)]);
    return strdup(name);
}

static uint32_t repo_image_count(uint64_t slot, unsigned avg)
{
    if (avg == 0 || h2(slot, S_EMPTY) % 10 == 0)
        return 0;
    return avg / 2 + (uint32_t)(h2(slot, S_COUNT) % ((uint64_t)avg + 1));
}

/* Only names and the attributes decided by the slot: images come after the
 * names are made unique, because the image key hashes the final name. */
static int init_repo(hgf_sim_repo *repo, uint64_t slot, char *name)
{
    if (!name)
        return HGF_ENOMEM;
    repo->name = name;
    repo->immutable = h2(slot, S_IMMUTABLE) % 3 == 0;
    repo->scan_on_push = h2(slot, S_SCAN) % 2;
    repo->created_ms = HGF_SIM_EPOCH_MS - (int64_t)(30 + h2(slot, S_AGE_DAYS) % 700) * DAY_MS -
                       (int64_t)(h2(slot, S_AGE_MS) % DAY_MS);
    return 0;
}

static int cmp_repo(const void *a, const void *b)
{
    return strcmp(((const hgf_sim_repo *)a)->name, ((const hgf_sim_repo *)b)->name);
}

/* Names come from small word lists, so collisions happen; the later twin
 * gets a numeric suffix, which no generated name has, so one pass settles
 * it (the loop re-sorts once after renaming). */
static int make_names_unique(hgf_sim_registry *reg)
{
    int renamed = 1;
    for (unsigned pass = 0; renamed; pass++) {
        qsort(reg->repos, reg->n_repos, sizeof *reg->repos, cmp_repo);
        renamed = 0;
        for (size_t i = 1; i < reg->n_repos; i++) {
            if (strcmp(reg->repos[i - 1].name, reg->repos[i].name) != 0)
                continue;
            char name[160];
            snprintf(name, sizeof name, "%s-%zu%s", reg->repos[i].name, i, pass ? "x" : "");
            char *dup = strdup(name);
            if (!dup)
                return HGF_ENOMEM;
            free(reg->repos[i].name);
            reg->repos[i].name = dup;
            renamed = 1;
        }
    }
    return 0;
}

static int make_registry(hgf_sim_fleet *f, const hgf_sim_fleet_opts *o, unsigned a, size_t r)
{
    hgf_sim_registry *reg = &f->registries[a * f->n_regions + r];
    snprintf(reg->account, sizeof reg->account, "%012llu",
             ACCOUNT_BASE + (f->seed % 1000) * 1000000ULL + a);
    reg->region = f->regions[r];
    uint64_t rkey = h3(f->seed, a, fnv1a(reg->region));
    int big = a == 0 && r == 0 && o->big_repo > 0;
    size_t n = o->repos + (size_t)big;
    reg->repos = calloc(n ? n : 1, sizeof *reg->repos);
    if (!reg->repos)
        return HGF_ENOMEM;
    int rc = 0;
    uint32_t *counts = calloc(n ? n : 1, sizeof *counts);
    for (size_t k = 0; !rc && counts && k < o->repos; k++, reg->n_repos++) {
        uint64_t slot = h2(rkey, k);
        rc = init_repo(&reg->repos[k], slot, repo_name(slot));
        counts[k] = repo_image_count(slot, o->images);
    }
    if (!rc && counts && big) {
        rc = init_repo(&reg->repos[n - 1], h2(rkey, 0xb16), strdup("big"));
        reg->repos[n - 1].immutable = 0;
        counts[n - 1] = o->big_repo;
        reg->n_repos++;
    }
    if (!counts)
        rc = HGF_ENOMEM;
    /* The image count travels with its repository through the sort. */
    for (size_t k = 0; !rc && k < reg->n_repos; k++)
        reg->repos[k].n_images = counts[k];
    free(counts);
    if (!rc)
        rc = make_names_unique(reg);
    for (size_t k = 0; !rc && k < reg->n_repos; k++) {
        hgf_sim_repo *repo = &reg->repos[k];
        uint32_t want = repo->n_images;
        repo->n_images = 0;
        repo->key = h2(rkey, fnv1a(repo->name));
        rc = make_images(f, reg, repo, want);
    }
    return rc;
}

static void free_ext(hgf_sim_repo_ext *x)
{
    if (!x)
        return;
    free(x->pushed_ms);
    hgf_sim_map_free(x->moved, NULL);
    free(x->marks);
    free(x);
}

static void free_registry(hgf_sim_registry *reg)
{
    for (size_t k = 0; k < reg->n_repos; k++) {
        hgf_sim_repo *repo = &reg->repos[k];
        free_ext(repo->ext);
        for (uint32_t i = 0; repo->images && i < repo->n_images; i++)
            free(repo->images[i].tags);
        free(repo->images);
        free(repo->name);
    }
    free(reg->repos);
}

void hgf_sim_fleet_free(hgf_sim_fleet *f)
{
    if (!f)
        return;
    size_t n = (size_t)f->n_accounts * f->n_regions;
    for (size_t i = 0; f->registries && i < n; i++)
        free_registry(&f->registries[i]);
    free(f->registries);
    for (size_t r = 0; r < f->n_regions; r++)
        free(f->regions[r]);
    free(f->regions);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

static int check_opts(const hgf_sim_fleet_opts *o, hgf_err *err)
{
    if (o->accounts < 1 || o->accounts > 1000000)
        return hgf_err_set(err, HGF_EINPUT, "accounts: expected 1..1000000, got %u", o->accounts);
    if (o->n_regions < 1)
        return hgf_err_set(err, HGF_EINPUT, "regions: at least one region is needed");
    for (size_t r = 0; r < o->n_regions; r++)
        for (size_t q = 0; q < r; q++)
            if (strcmp(o->regions[r], o->regions[q]) == 0)
                return hgf_err_set(err, HGF_EINPUT, "regions: '%s' is listed twice",
                                   o->regions[r]);
    return 0;
}

static int64_t real_clock(void *ctx)
{
    return hgf_time_now_ms();
}

static int copy_regions(hgf_sim_fleet *f, const hgf_sim_fleet_opts *o)
{
    f->regions = calloc(o->n_regions, sizeof *f->regions);
    if (!f->regions)
        return HGF_ENOMEM;
    for (; f->n_regions < o->n_regions; f->n_regions++)
        if (!(f->regions[f->n_regions] = strdup(o->regions[f->n_regions])))
            return HGF_ENOMEM;
    return 0;
}

int hgf_sim_fleet_create(const hgf_sim_fleet_opts *o, hgf_sim_fleet **out, hgf_err *err)
{
    *out = NULL;
    int rc = check_opts(o, err);
    if (rc)
        return rc;
    hgf_sim_fleet *f = calloc(1, sizeof *f);
    if (!f)
        return hgf_err_set(err, HGF_ENOMEM, "fleet: out of memory");
    pthread_mutex_init(&f->lock, NULL);
    f->clock = real_clock;
    f->seed = o->seed;
    rc = copy_regions(f, o);
    if (!rc) {
        f->registries = calloc((size_t)o->accounts * o->n_regions, sizeof *f->registries);
        rc = f->registries ? 0 : HGF_ENOMEM;
    }
    if (!rc)
        f->n_accounts = o->accounts;
    for (unsigned a = 0; !rc && a < o->accounts; a++)
        for (size_t r = 0; !rc && r < f->n_regions; r++)
            rc = make_registry(f, o, a, r);
    if (rc) {
        hgf_sim_fleet_free(f);
        return hgf_err_set(err, rc, "fleet: out of memory while generating");
    }
    *out = f;
    return 0;
}

/* ---- lookup ------------------------------------------------------------ */

void hgf_sim_fleet_lock(hgf_sim_fleet *f)
{
    pthread_mutex_lock(&f->lock);
}

void hgf_sim_fleet_unlock(hgf_sim_fleet *f)
{
    pthread_mutex_unlock(&f->lock);
}

void hgf_sim_fleet_set_clock(hgf_sim_fleet *f, int64_t (*now_ms)(void *ctx), void *ctx)
{
    f->clock = now_ms;
    f->clock_ctx = ctx;
}

unsigned long long hgf_sim_fleet_seed(const hgf_sim_fleet *f)
{
    return f->seed;
}

const char *hgf_sim_fleet_first_account(const hgf_sim_fleet *f)
{
    return f->registries[0].account;
}

size_t hgf_sim_fleet_registry_count(const hgf_sim_fleet *f)
{
    return (size_t)f->n_accounts * f->n_regions;
}

hgf_sim_registry *hgf_sim_fleet_registry_at(hgf_sim_fleet *f, size_t i)
{
    return i < hgf_sim_fleet_registry_count(f) ? &f->registries[i] : NULL;
}

hgf_sim_registry *hgf_sim_fleet_registry_find(hgf_sim_fleet *f, const char *account,
                                              const char *region)
{
    if (!account || strlen(account) != 12 || strspn(account, "0123456789") != 12 || !region)
        return NULL;
    unsigned long long id = strtoull(account, NULL, 10);
    unsigned long long first = ACCOUNT_BASE + (f->seed % 1000) * 1000000ULL;
    if (id < first || id - first >= f->n_accounts)
        return NULL;
    for (size_t r = 0; r < f->n_regions; r++)
        if (strcmp(f->regions[r], region) == 0)
            return &f->registries[(size_t)(id - first) * f->n_regions + r];
    return NULL;
}

hgf_sim_repo *hgf_sim_fleet_repo_find(hgf_sim_registry *reg, const char *name)
{
    hgf_sim_repo key = {.name = (char *)name};
    return reg ? bsearch(&key, reg->repos, reg->n_repos, sizeof *reg->repos, cmp_repo) : NULL;
}

size_t hgf_sim_fleet_repo_after(const hgf_sim_registry *reg, const char *name)
{
    size_t lo = 0, hi = reg->n_repos;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(reg->repos[mid].name, name) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int parse_digest(const char *s, unsigned char out[32])
{
    if (!s || strncmp(s, "sha256:", 7) != 0 || strlen(s) != 71)
        return -1;
    for (size_t i = 0; i < 32; i++) {
        unsigned v;
        if (sscanf(s + 7 + 2 * i, "%2x", &v) != 1 || !strchr("0123456789abcdef", s[7 + 2 * i]) ||
            !strchr("0123456789abcdef", s[8 + 2 * i]))
            return -1;
        out[i] = (unsigned char)v;
    }
    return 0;
}

hgf_sim_image *hgf_sim_fleet_image_by_digest(hgf_sim_repo *repo, const char *digest)
{
    unsigned char want[32];
    if (parse_digest(digest, want) != 0)
        return NULL;
    for (uint32_t i = 0; i < repo->n_images; i++)
        if (memcmp(repo->images[i].digest, want, 32) == 0)
            return &repo->images[i];
    return NULL;
}

static int has_tag(const hgf_sim_image *img, const char *tag)
{
    for (const char *t = img->tags; t && *t; t += strlen(t) + 1)
        if (strcmp(t, tag) == 0)
            return 1;
    return 0;
}

static uint32_t generated_count(const hgf_sim_repo *repo)
{
    return repo->ext ? repo->ext->n_generated : repo->n_images;
}

/* Digits without a leading zero (as printf writes them), at most 10. */
static int parse_plain_uint(const char *s, size_t n, uint64_t *out)
{
    if (n == 0 || n > 10 || (n > 1 && s[0] == '0') || strspn(s, "0123456789") < n)
        return -1;
    *out = 0;
    for (size_t i = 0; i < n; i++)
        *out = *out * 10 + (uint64_t)(s[i] - '0');
    return 0;
}

/* The gen whose generated tags would include `tag` (see make_tags). */
static int generated_home(const hgf_sim_repo *repo, const char *tag, uint32_t *gen)
{
    uint64_t a, b, c;
    uint32_t n = generated_count(repo);
    if (strcmp(tag, "latest") == 0) {
        for (uint32_t g = n; g-- > 0;)
            if (tag_class(repo, g, n) != TAGS_NONE) {
                *gen = g;
                return 0;
            }
        return -1;
    }
    if (strncmp(tag, "build-", 6) == 0) {
        if (parse_plain_uint(tag + 6, strlen(tag + 6), &a) != 0 || a >= n)
            return -1;
        *gen = (uint32_t)a;
        return 0;
    }
    const char *d1 = tag[0] == 'v' ? strchr(tag, '.') : NULL;
    if (!d1 || parse_plain_uint(tag + 1, (size_t)(d1 - tag - 1), &a) != 0 || a < 1 ||
        strlen(d1) != 4 || d1[2] != '.' || parse_plain_uint(d1 + 1, 1, &b) != 0 ||
        parse_plain_uint(d1 + 3, 1, &c) != 0 || (a - 1) * 100 + b * 10 + c >= n)
        return -1;
    *gen = (uint32_t)((a - 1) * 100 + b * 10 + c);
    return 0;
}

hgf_sim_image *hgf_sim_fleet_image_by_tag(hgf_sim_repo *repo, const char *tag)
{
    const hgf_sim_repo_ext *x = repo->ext;
    void *moved = x && x->moved ? hgf_sim_map_get(x->moved, tag) : NULL;
    uint32_t gen;
    if (moved)
        return hgf_sim_fleet_image_by_gen(repo, (uint32_t)((uintptr_t)moved - 1));
    if (generated_home(repo, tag, &gen) != 0)
        return NULL;
    hgf_sim_image *img = hgf_sim_fleet_image_by_gen(repo, gen);
    return img && has_tag(img, tag) ? img : NULL;
}

size_t hgf_sim_fleet_image_after(const hgf_sim_repo *repo, uint32_t gen)
{
    size_t lo = 0, hi = repo->n_images;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (repo->images[mid].gen <= gen)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

hgf_sim_image *hgf_sim_fleet_image_by_gen(hgf_sim_repo *repo, uint32_t gen)
{
    size_t i = hgf_sim_fleet_image_after(repo, gen);
    return i > 0 && repo->images[i - 1].gen == gen ? &repo->images[i - 1] : NULL;
}

static int config_is(const hgf_sim_fleet *f, const hgf_sim_registry *reg,
                     const hgf_sim_repo *repo, const hgf_sim_image *img,
                     const unsigned char want[32])
{
    hgf_buf cfg = HGF_BUF_INIT;
    unsigned char md[SHA256_DIGEST_LENGTH];
    int same = hgf_sim_fleet_config_blob(f, reg, repo, img, &cfg) == 0;
    if (same) {
        SHA256((const unsigned char *)cfg.data, cfg.len, md);
        same = memcmp(md, want, sizeof md) == 0;
    }
    hgf_buf_free(&cfg);
    return same;
}

hgf_sim_image *hgf_sim_fleet_image_by_config(const hgf_sim_fleet *f, const hgf_sim_registry *reg,
                                             hgf_sim_repo *repo, const char *digest)
{
    unsigned char want[32];
    if (parse_digest(digest, want) != 0)
        return NULL;
    for (uint32_t i = 0; i < repo->n_images; i++) {
        hgf_sim_image *img = &repo->images[i];
        if (HGF_SIM_KIND_ROLE(img->kind) != HGF_SIM_ROLE_INDEX &&
            memcmp(img->config_hint, want, sizeof img->config_hint) == 0 &&
            config_is(f, reg, repo, img, want))
            return img;
    }
    return NULL;
}

/* ---- mutation state ---------------------------------------------------- */

static int64_t now_ms(const hgf_sim_fleet *f)
{
    return f->clock(f->clock_ctx);
}

static hgf_sim_repo_ext *ext_get(hgf_sim_repo *repo)
{
    if (repo->ext)
        return repo->ext;
    hgf_sim_repo_ext *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    /* Until the first mutation the images are exactly the generated ones. */
    x->n_generated = repo->n_images;
    x->next_gen = repo->n_images;
    x->cap_images = repo->n_images;
    x->lc_next_ms = INT64_MAX;
    repo->ext = x;
    return x;
}

static int grow(void **p, size_t elem, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 8;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q)
        return HGF_ENOMEM;
    *p = q;
    *cap = n;
    return 0;
}

static int grow32(void **p, size_t elem, uint32_t *cap, size_t need)
{
    size_t c = *cap;
    if (need > UINT32_MAX)
        return HGF_ENOMEM;
    int rc = grow(p, elem, &c, need);
    *cap = (uint32_t)(c > UINT32_MAX ? UINT32_MAX : c);
    return rc;
}

static size_t mark_at(const hgf_sim_repo_ext *x, uint32_t gen)
{
    size_t lo = 0, hi = x->n_marks;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (x->marks[mid].gen < gen)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void mark_clear(hgf_sim_repo_ext *x, uint32_t gen)
{
    size_t i = mark_at(x, gen);
    if (i == x->n_marks || x->marks[i].gen != gen)
        return;
    memmove(&x->marks[i], &x->marks[i + 1], (x->n_marks - i - 1) * sizeof *x->marks);
    x->n_marks--;
}

static int mark_set(hgf_sim_repo_ext *x, uint32_t gen, int64_t since)
{
    size_t i = mark_at(x, gen);
    if (i < x->n_marks && x->marks[i].gen == gen) {
        x->marks[i].since_ms = since;
        return 0;
    }
    int rc = grow((void **)&x->marks, sizeof *x->marks, &x->cap_marks, x->n_marks + 1);
    if (rc)
        return rc;
    memmove(&x->marks[i + 1], &x->marks[i], (x->n_marks - i) * sizeof *x->marks);
    x->marks[i] = (untagged_mark){.gen = gen, .since_ms = since};
    x->n_marks++;
    return 0;
}

/* When an untagged image's lifecycle time is up. */
static int64_t expiry_of(const hgf_sim_repo *repo, const hgf_sim_image *img)
{
    const hgf_sim_repo_ext *x = repo->ext;
    size_t i = mark_at(x, img->gen);
    int64_t since = i < x->n_marks && x->marks[i].gen == img->gen ? x->marks[i].since_ms
                                                                  : img_pushed_ms(repo, img->gen);
    return (since > x->lc.since_ms ? since : x->lc.since_ms) + x->lc.after_ms;
}

/* An image just became untagged at `now`: its expiry may be the next. */
static void note_untagged(hgf_sim_repo_ext *x, int64_t now)
{
    if (!x->lc.expires)
        return;
    int64_t at = (now > x->lc.since_ms ? now : x->lc.since_ms) + x->lc.after_ms;
    if (at < x->lc_next_ms)
        x->lc_next_ms = at;
}

/* ---- tags -------------------------------------------------------------- */

/* img's tag list with `tag` added (add) or removed, kept sorted. */
static int rewrite_tags(hgf_sim_image *img, const char *tag, int add)
{
    hgf_buf packed = HGF_BUF_INIT;
    int rc = 0, placed = !add;
    size_t n = 0;
    for (const char *t = img->tags; !rc && t && *t; t += strlen(t) + 1) {
        if (!placed && strcmp(tag, t) < 0) {
            rc = hgf_buf_append(&packed, tag, strlen(tag) + 1);
            placed = 1;
            n++;
        }
        if (!rc && (add || strcmp(t, tag) != 0)) {
            rc = hgf_buf_append(&packed, t, strlen(t) + 1);
            n++;
        }
    }
    if (!rc && !placed) {
        rc = hgf_buf_append(&packed, tag, strlen(tag) + 1);
        n++;
    }
    if (!rc && n)
        rc = hgf_buf_putc(&packed, '\0');
    if (rc) {
        hgf_buf_free(&packed);
        return rc;
    }
    free(img->tags);
    img->tags = n ? hgf_buf_detach(&packed) : NULL;
    hgf_buf_free(&packed);
    return 0;
}

static int place_tag(hgf_sim_repo_ext *x, hgf_sim_image *img, const char *tag)
{
    void *old;
    if (!x->moved && !(x->moved = hgf_sim_map_create()))
        return HGF_ENOMEM;
    int rc = hgf_sim_map_set(x->moved, tag, (void *)(uintptr_t)((uintptr_t)img->gen + 1), &old);
    if (!rc)
        rc = rewrite_tags(img, tag, 1);
    if (!rc)
        mark_clear(x, img->gen);
    return rc;
}

static int strip_tag(hgf_sim_repo_ext *x, hgf_sim_image *img, const char *tag, int64_t now)
{
    if (x->moved)
        hgf_sim_map_remove(x->moved, tag);
    int rc = rewrite_tags(img, tag, 0);
    if (rc || img->tags)
        return rc;
    note_untagged(x, now);
    return mark_set(x, img->gen, now);
}

/* Removes images[i] with all its tags. */
static void remove_image(hgf_sim_repo *repo, size_t i)
{
    hgf_sim_repo_ext *x = repo->ext;
    hgf_sim_image *img = &repo->images[i];
    for (const char *t = img->tags; x->moved && t && *t; t += strlen(t) + 1)
        if ((uintptr_t)hgf_sim_map_get(x->moved, t) == (uintptr_t)img->gen + 1)
            hgf_sim_map_remove(x->moved, t);
    free(img->tags);
    mark_clear(x, img->gen);
    memmove(img, img + 1, (repo->n_images - i - 1) * sizeof *img);
    repo->n_images--;
}

/* ---- lifecycle --------------------------------------------------------- */

static void expire(hgf_sim_repo *repo, int64_t now)
{
    hgf_sim_repo_ext *x = repo->ext;
    int64_t next = INT64_MAX;
    uint32_t w = 0;
    for (uint32_t i = 0; i < repo->n_images; i++) {
        hgf_sim_image img = repo->images[i];
        if (!img.tags) {
            int64_t at = expiry_of(repo, &img);
            if (at <= now) {
                mark_clear(x, img.gen);
                continue;
            }
            next = at < next ? at : next;
        }
        repo->images[w++] = img;
    }
    repo->n_images = w;
    x->lc_next_ms = next;
}

void hgf_sim_fleet_repo_settle(hgf_sim_fleet *f, hgf_sim_repo *repo)
{
    hgf_sim_repo_ext *x = repo->ext;
    if (!x || !x->lc.expires)
        return;
    int64_t now = now_ms(f);
    if (now >= x->lc_next_ms)
        expire(repo, now);
}

hgf_sim_repo *hgf_sim_fleet_repo_open(hgf_sim_fleet *f, hgf_sim_registry *reg, const char *name)
{
    hgf_sim_repo *repo = hgf_sim_fleet_repo_find(reg, name);
    if (repo)
        hgf_sim_fleet_repo_settle(f, repo);
    return repo;
}

int hgf_sim_fleet_manifest_trap(hgf_sim_fleet *f, hgf_sim_repo *repo, hgf_sim_image *img)
{
    hgf_sim_repo_ext *x = repo->ext;
    if (!x || !x->lc.trap || img->tags)
        return 0;
    x->lc.trap = 0;
    remove_image(repo, (size_t)(img - repo->images));
    return 1;
}

static void apply_lifecycle(hgf_sim_lifecycle *lc, const hgf_sim_lifecycle_change *c,
                            int64_t now)
{
    if (c->set_expiry) {
        lc->expires = c->after_ms >= 0;
        lc->after_ms = c->after_ms >= 0 ? c->after_ms : 0;
        lc->since_ms = now;
    }
    if (c->set_trap)
        lc->trap = (uint8_t)(c->trap != 0);
}

static int lifecycle_repo(hgf_sim_repo *repo, const hgf_sim_lifecycle_change *c, int64_t now)
{
    hgf_sim_repo_ext *x = ext_get(repo);
    if (!x)
        return HGF_ENOMEM;
    apply_lifecycle(&x->lc, c, now);
    if (x->lc.expires)
        expire(repo, now);
    return 0;
}

/* ---- mutations --------------------------------------------------------- */

static uint64_t registry_key(const hgf_sim_fleet *f, const hgf_sim_registry *reg)
{
    size_t i = (size_t)(reg - f->registries);
    return h3(f->seed, i / f->n_regions, fnv1a(reg->region));
}

static hgf_sim_repo *create_repo(hgf_sim_fleet *f, hgf_sim_registry *reg, const hgf_sim_change *c,
                                 int64_t now)
{
    size_t at = hgf_sim_fleet_repo_after(reg, c->repository);
    hgf_sim_repo *repos = realloc(reg->repos, (reg->n_repos + 1) * sizeof *repos);
    if (!repos)
        return NULL;
    reg->repos = repos;
    hgf_sim_repo repo = {.name = strdup(c->repository), .created_ms = now, .push_step_ms = 1,
                         .immutable = c->immutable == 1, .scan_on_push = c->scan_on_push == 1};
    repo.key = h2(registry_key(f, reg), fnv1a(c->repository));
    if (!repo.name || !ext_get(&repo)) {
        free(repo.name);
        free_ext(repo.ext);
        return NULL;
    }
    repo.ext->lc = reg->lifecycle;
    memmove(&repos[at + 1], &repos[at], (reg->n_repos - at) * sizeof *repos);
    repos[at] = repo;
    reg->n_repos++;
    return &repos[at];
}

/* A new image at the repository's next gen, pushed at `now`, not yet
 * stored. The gen is spent even when the push is refused, so a later push
 * never repeats a refused digest. */
static int new_image(const hgf_sim_fleet *f, const hgf_sim_registry *reg, hgf_sim_repo *repo,
                     int64_t now, int index, int role, hgf_sim_image *img)
{
    hgf_sim_repo_ext *x = repo->ext;
    if (x->next_gen == UINT32_MAX)
        return HGF_ENOMEM;
    uint32_t gen = x->next_gen;
    int rc = grow32((void **)&x->pushed_ms, sizeof *x->pushed_ms, &x->cap_pushed,
                    (size_t)(gen - x->n_generated) + 1);
    if (rc)
        return rc;
    x->pushed_ms[gen - x->n_generated] = now;
    x->next_gen++;
    hgf_buf scratch = HGF_BUF_INIT;
    uint8_t kind = !index ? plain_kind(repo, gen)
                          : HGF_SIM_KIND(index == HGF_SIM_PUSH_DOCKER_LIST ? HGF_SIM_KIND_DOCKER
                                                                           : HGF_SIM_KIND_OCI,
                                         role);
    rc = init_image(f, reg, repo, gen, kind, img, &scratch);
    hgf_buf_free(&scratch);
    return rc;
}

/* The registry and repository a change names, or the status saying why
 * not; the repository settled and given its mutation state. */
static hgf_sim_repo *target_repo(hgf_sim_fleet *f, const hgf_sim_change *c,
                                 hgf_sim_registry **reg, hgf_sim_change_result *out)
{
    *reg = hgf_sim_fleet_registry_find(f, c->account, c->region);
    hgf_sim_repo *repo = *reg ? hgf_sim_fleet_repo_open(f, *reg, c->repository) : NULL;
    out->status = !*reg ? HGF_SIM_MUT_NO_REGISTRY : !repo ? HGF_SIM_MUT_NO_REPO : HGF_SIM_MUT_OK;
    if (repo)
        out->immutable = repo->immutable;
    return repo;
}

/* The tag's current holder must give it up: refused in an IMMUTABLE
 * repository unless forced. */
static int tag_taken(const hgf_sim_repo *repo, const hgf_sim_image *holder, int force,
                     hgf_sim_change_result *out)
{
    if (!holder)
        return 0;
    digest_text(holder->digest, out->previous);
    if (!repo->immutable || force)
        return 0;
    out->status = HGF_SIM_MUT_TAG_EXISTS;
    return 1;
}

static int push_locked(hgf_sim_fleet *f, const hgf_sim_change *c, hgf_sim_change_result *out)
{
    hgf_sim_registry *reg;
    hgf_sim_repo *repo = target_repo(f, c, &reg, out);
    if (out->status == HGF_SIM_MUT_NO_REPO) {
        if (!(repo = create_repo(f, reg, c, out->at_ms)))
            return HGF_ENOMEM;
        out->status = HGF_SIM_MUT_OK;
        out->created_repo = 1;
        out->immutable = repo->immutable;
    }
    if (out->status)
        return 0;
    if (c->immutable >= 0 && c->immutable != repo->immutable) {
        out->status = HGF_SIM_MUT_MUTABILITY;
        return 0;
    }
    hgf_sim_repo_ext *x = ext_get(repo);
    /* A multi-arch push: its platform manifests take the two gens below the
     * index's, so the index regenerates from its own gen. */
    hgf_sim_image kids[2], img;
    unsigned n_kids = c->index ? 2 : 0;
    int rc = x ? 0 : HGF_ENOMEM;
    for (unsigned k = 0; !rc && k < n_kids; k++)
        rc = new_image(f, reg, repo, out->at_ms, c->index, HGF_SIM_ROLE_AMD64 + (int)k, &kids[k]);
    if (!rc)
        rc = new_image(f, reg, repo, out->at_ms, c->index,
                       c->index ? HGF_SIM_ROLE_INDEX : HGF_SIM_ROLE_IMAGE, &img);
    if (rc)
        return rc;
    digest_text(img.digest, out->digest);
    hgf_sim_image *holder = c->tag ? hgf_sim_fleet_image_by_tag(repo, c->tag) : NULL;
    if (tag_taken(repo, holder, c->force, out))
        return 0;
    /* Room first: growing the array would invalidate holder. */
    rc = grow32((void **)&repo->images, sizeof *repo->images, &x->cap_images,
                (size_t)repo->n_images + 1 + n_kids);
    if (!rc && holder)
        rc = strip_tag(x, holder, c->tag, out->at_ms);
    if (rc)
        return rc;
    for (unsigned k = 0; k < n_kids; k++) {
        repo->images[repo->n_images++] = kids[k];
        digest_text(kids[k].digest, out->children[k]);
        note_untagged(x, out->at_ms);
    }
    hgf_sim_image *stored = &repo->images[repo->n_images++];
    *stored = img;
    if (c->tag)
        return place_tag(x, stored, c->tag);
    note_untagged(x, out->at_ms);
    return 0;
}

static int retag_locked(hgf_sim_fleet *f, const hgf_sim_change *c, hgf_sim_change_result *out)
{
    hgf_sim_registry *reg;
    hgf_sim_repo *repo = target_repo(f, c, &reg, out);
    hgf_sim_image *img = repo ? hgf_sim_fleet_image_by_digest(repo, c->digest) : NULL;
    if (repo && !img)
        out->status = HGF_SIM_MUT_NO_IMAGE;
    if (out->status)
        return 0;
    digest_text(img->digest, out->digest);
    hgf_sim_repo_ext *x = ext_get(repo);
    if (!x)
        return HGF_ENOMEM;
    if (has_tag(img, c->tag)) {
        out->status = HGF_SIM_MUT_IMAGE_EXISTS;
        return 0;
    }
    hgf_sim_image *holder = hgf_sim_fleet_image_by_tag(repo, c->tag);
    if (tag_taken(repo, holder, c->force, out))
        return 0;
    int rc = holder ? strip_tag(x, holder, c->tag, out->at_ms) : 0;
    return rc ? rc : place_tag(x, img, c->tag);
}

static int delete_locked(hgf_sim_fleet *f, const hgf_sim_change *c, hgf_sim_change_result *out)
{
    hgf_sim_registry *reg;
    hgf_sim_repo *repo = target_repo(f, c, &reg, out);
    hgf_sim_image *img = !repo     ? NULL
                         : c->tag ? hgf_sim_fleet_image_by_tag(repo, c->tag)
                                  : hgf_sim_fleet_image_by_digest(repo, c->digest);
    if (repo && !img)
        out->status = HGF_SIM_MUT_NO_IMAGE;
    if (out->status)
        return 0;
    if (!ext_get(repo))
        return HGF_ENOMEM;
    digest_text(img->digest, out->digest);
    snprintf(out->tag, sizeof out->tag, "%s", c->tag ? c->tag : img->tags ? img->tags : "");
    remove_image(repo, (size_t)(img - repo->images));
    return 0;
}

typedef int (*change_fn)(hgf_sim_fleet *f, const hgf_sim_change *c, hgf_sim_change_result *out);

static int change(hgf_sim_fleet *f, change_fn fn, const hgf_sim_change *c,
                  hgf_sim_change_result *out)
{
    memset(out, 0, sizeof *out);
    hgf_sim_fleet_lock(f);
    out->at_ms = now_ms(f);
    int rc = fn(f, c, out);
    hgf_sim_fleet_unlock(f);
    return rc;
}

int hgf_sim_fleet_push(hgf_sim_fleet *f, const hgf_sim_change *c, hgf_sim_change_result *out)
{
    return change(f, push_locked, c, out);
}

int hgf_sim_fleet_retag(hgf_sim_fleet *f, const hgf_sim_change *c, hgf_sim_change_result *out)
{
    return change(f, retag_locked, c, out);
}

int hgf_sim_fleet_delete(hgf_sim_fleet *f, const hgf_sim_change *c, hgf_sim_change_result *out)
{
    return change(f, delete_locked, c, out);
}

int hgf_sim_fleet_set_lifecycle(hgf_sim_fleet *f, const char *account, const char *region,
                                const char *repository, const hgf_sim_lifecycle_change *lc,
                                enum hgf_sim_mut *status)
{
    int rc = 0;
    hgf_sim_fleet_lock(f);
    int64_t now = now_ms(f);
    hgf_sim_registry *reg = hgf_sim_fleet_registry_find(f, account, region);
    hgf_sim_repo *repo = reg && repository ? hgf_sim_fleet_repo_find(reg, repository) : NULL;
    *status = !reg                    ? HGF_SIM_MUT_NO_REGISTRY
              : repository && !repo ? HGF_SIM_MUT_NO_REPO
                                    : HGF_SIM_MUT_OK;
    if (repo)
        rc = lifecycle_repo(repo, lc, now);
    if (reg && !repository) {
        apply_lifecycle(&reg->lifecycle, lc, now);
        for (size_t k = 0; !rc && k < reg->n_repos; k++)
            rc = lifecycle_repo(&reg->repos[k], lc, now);
    }
    hgf_sim_fleet_unlock(f);
    return rc;
}

/* ---- names ------------------------------------------------------------- */

static int is_china(const char *region)
{
    return strncmp(region, "cn-", 3) == 0;
}

int hgf_sim_fleet_registry_host(const hgf_sim_registry *reg, hgf_buf *out)
{
    return hgf_buf_printf(out, "%s.dkr.ecr.%s.amazonaws.com%s", reg->account, reg->region,
                          is_china(reg->region) ? ".cn" : "");
}

int hgf_sim_fleet_repo_arn(const char *account, const char *region, const char *name,
                           hgf_buf *out)
{
    return hgf_buf_printf(out, "arn:%s:ecr:%s:%s:repository/%s",
                          is_china(region) ? "aws-cn" : "aws", region, account, name);
}

int hgf_sim_fleet_repo_uri(const hgf_sim_registry *reg, const char *name, hgf_buf *out)
{
    int rc = hgf_sim_fleet_registry_host(reg, out);
    return rc ? rc : hgf_buf_printf(out, "/%s", name);
}
