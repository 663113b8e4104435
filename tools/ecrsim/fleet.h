/* The simulated fleet: accounts x regions -> registries -> repositories ->
 * images, generated deterministically from a seed.
 *
 * Everything an image looks like (manifest bytes, config blob, size, push
 * time, media types) is a pure function of (seed, account, region,
 * repository name, generation index, kind), so per image the fleet only
 * stores what it cannot regenerate cheaply: the generation index, the kind,
 * the tags and the cached 32-byte digest. That keeps ~1,000,000 images in
 * about 60 MB.
 *
 * Concurrency: the fleet will become mutable (push, re-tag, delete), so every
 * read of registries, repositories and images must happen between
 * hgf_sim_fleet_lock() and hgf_sim_fleet_unlock(), and pointers into the fleet
 * must not be kept after unlocking.
 *
 * Ownership: the fleet owns every registry, repository, image and string it
 * hands out; callers own the hgf_buf values they pass in. */
#ifndef ECRSIM_FLEET_H
#define ECRSIM_FLEET_H

#include <stddef.h>
#include <stdint.h>

#include "hgfleet/buf.h"
#include "hgfleet/err.h"

/* The fleet's "now": every generated timestamp lies before it. */
#define HGF_SIM_EPOCH_MS 1767225600000LL /* 2026-01-01T00:00:00Z */

#define HGF_SIM_MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define HGF_SIM_MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define HGF_SIM_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define HGF_SIM_MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"

enum hgf_sim_kind { HGF_SIM_KIND_OCI = 0, HGF_SIM_KIND_DOCKER = 1 };

typedef struct hgf_sim_fleet_opts {
    unsigned long long seed;
    unsigned accounts;
    const char *const *regions;  /* copied by create */
    size_t n_regions;
    unsigned repos;      /* repositories per registry */
    unsigned images;     /* average images per repository */
    unsigned big_repo;   /* images in the extra "big" repository; 0 = none */
} hgf_sim_fleet_opts;

typedef struct hgf_sim_image {
    unsigned char digest[32];  /* sha256 of the manifest bytes */
    uint32_t gen;              /* generation index within the repository */
    uint8_t kind;              /* enum hgf_sim_kind */
    /* The config blob digest's first bytes (they fit the struct's padding):
     * finding an image by its config blob compares these before hashing. */
    uint8_t config_hint[3];
    /* Sorted tags, each NUL-terminated, the list ended by an empty string;
     * NULL when untagged. Walk: for (t = tags; t && *t; t += strlen(t) + 1). */
    char *tags;
} hgf_sim_image;

typedef struct hgf_sim_repo {
    char *name;
    uint64_t key;           /* hash of (seed, account, region, name): seeds the images */
    int64_t created_ms;
    int64_t push_step_ms;   /* spacing of generated push times */
    uint8_t immutable;
    uint8_t scan_on_push;
    uint32_t n_images;
    hgf_sim_image *images;  /* ascending gen, which is push order */
} hgf_sim_repo;

typedef struct hgf_sim_registry {
    char account[13];
    const char *region;     /* owned by the fleet */
    size_t n_repos;
    hgf_sim_repo *repos;    /* sorted by name (strcmp) */
} hgf_sim_registry;

/* What DescribeImages reports for an image, regenerated on demand. */
typedef struct hgf_sim_image_info {
    char digest[72];        /* "sha256:<64 hex>" */
    int64_t pushed_ms;
    uint64_t size_bytes;
    const char *manifest_media_type;  /* static */
    const char *artifact_media_type;  /* static */
} hgf_sim_image_info;

typedef struct hgf_sim_fleet hgf_sim_fleet;

/* Generates the fleet. HGF_EINPUT names a bad option; HGF_ENOMEM. */
int hgf_sim_fleet_create(const hgf_sim_fleet_opts *opts, hgf_sim_fleet **out, hgf_err *err);
void hgf_sim_fleet_free(hgf_sim_fleet *f);

void hgf_sim_fleet_lock(hgf_sim_fleet *f);
void hgf_sim_fleet_unlock(hgf_sim_fleet *f);

unsigned long long hgf_sim_fleet_seed(const hgf_sim_fleet *f);
/* The id of account 0, which serves callers whose key has no account. */
const char *hgf_sim_fleet_first_account(const hgf_sim_fleet *f);

/* Registries in account-major order. */
size_t hgf_sim_fleet_registry_count(const hgf_sim_fleet *f);
hgf_sim_registry *hgf_sim_fleet_registry_at(hgf_sim_fleet *f, size_t i);
/* NULL when (account, region) lies outside the fleet: such a registry has
 * no repositories, as a wrong region looks in ECR. */
hgf_sim_registry *hgf_sim_fleet_registry_find(hgf_sim_fleet *f, const char *account,
                                              const char *region);

hgf_sim_repo *hgf_sim_fleet_repo_find(hgf_sim_registry *reg, const char *name);
/* Index of the first repository whose name sorts after `name`. */
size_t hgf_sim_fleet_repo_after(const hgf_sim_registry *reg, const char *name);

/* "sha256:<hex>" lookup; NULL when absent or malformed. */
hgf_sim_image *hgf_sim_fleet_image_by_digest(hgf_sim_repo *repo, const char *digest);
hgf_sim_image *hgf_sim_fleet_image_by_tag(hgf_sim_repo *repo, const char *tag);
/* Index of the first image whose gen is greater than `gen`. */
size_t hgf_sim_fleet_image_after(const hgf_sim_repo *repo, uint32_t gen);
hgf_sim_image *hgf_sim_fleet_image_by_gen(hgf_sim_repo *repo, uint32_t gen);
/* The image whose config blob has this "sha256:<hex>" digest, or NULL. */
hgf_sim_image *hgf_sim_fleet_image_by_config(const hgf_sim_fleet *f, const hgf_sim_registry *reg,
                                             hgf_sim_repo *repo, const char *digest);

void hgf_sim_fleet_image_info(const hgf_sim_repo *repo, const hgf_sim_image *img,
                              hgf_sim_image_info *out);

/* The exact manifest bytes whose sha256 is img->digest (a registry v2
 * endpoint serves them), and the config blob the manifest references. */
int hgf_sim_fleet_manifest(const hgf_sim_fleet *f, const hgf_sim_registry *reg,
                           const hgf_sim_repo *repo, const hgf_sim_image *img, hgf_buf *out);
int hgf_sim_fleet_config_blob(const hgf_sim_fleet *f, const hgf_sim_registry *reg,
                              const hgf_sim_repo *repo, const hgf_sim_image *img, hgf_buf *out);

/* "<acct>.dkr.ecr.<region>.amazonaws.com[.cn]", the repository ARN and URI,
 * appended to out. */
int hgf_sim_fleet_registry_host(const hgf_sim_registry *reg, hgf_buf *out);
int hgf_sim_fleet_repo_arn(const char *account, const char *region, const char *name,
                           hgf_buf *out);
int hgf_sim_fleet_repo_uri(const hgf_sim_registry *reg, const char *name, hgf_buf *out);

#endif
