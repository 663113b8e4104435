/* The simulated fleet: accounts x regions -> registries -> repositories ->
 * images, generated deterministically from a seed, then mutable through
 * pushes, re-tags, deletes and lifecycle expirations.
 *
 * Everything an image looks like (manifest bytes, config blob, size, push
 * time, media types) is a pure function of (seed, account, region,
 * repository name, generation index, kind), so per image the fleet only
 * stores what it cannot regenerate cheaply: the generation index, the kind,
 * the tags and the cached 32-byte digest. That keeps ~1,000,000 images in
 * about 60 MB. A pushed image takes the repository's next generation index,
 * so its manifest is new bytes (a new digest) regenerated the same way; only
 * its push time is stored, in the repository's side structure, which exists
 * only once the repository has been mutated.
 *
 * Tags: a generated tag embeds its image's generation index, so it is found
 * without a scan; a tag that a mutation placed is indexed in the side
 * structure. Lookups by tag are therefore O(log n), by digest O(n).
 *
 * Lifecycle: a repository's rule expires untagged images some time after
 * they became untagged (or after the rule was set, whichever is later). It
 * is applied lazily: hgf_sim_fleet_repo_open and hgf_sim_fleet_repo_settle
 * delete what is due, without any event.
 *
 * Concurrency: every read of registries, repositories and images must
 * happen between hgf_sim_fleet_lock() and hgf_sim_fleet_unlock(), and
 * pointers into the fleet must not be kept after unlocking (a push may
 * move the image and repository arrays). The mutation functions
 * (hgf_sim_fleet_push, _retag, _delete, _set_lifecycle) take the lock
 * themselves and must be called without it.
 *
 * Ownership: the fleet owns every registry, repository, image and string it
 * hands out; callers own the hgf_buf values they pass in and the result
 * structs they fill. */
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
#define HGF_SIM_MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define HGF_SIM_MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"

/* ECR's limit on an image tag's length. */
#define HGF_SIM_TAG_MAX 300

/* An image's kind packs its format (bit 0: OCI or Docker) and its role
 * (bits 1-2): a plain image, a multi-arch index (OCI image index or Docker
 * manifest list), or one of an index's two platform manifests. As ECR
 * stores what `docker buildx --push` sends, an index at gen g lists the
 * platform manifests at gens g-2 (linux/amd64) and g-1 (linux/arm64), of
 * the index's format, which are untagged images of the repository too. */
enum hgf_sim_kind { HGF_SIM_KIND_OCI = 0, HGF_SIM_KIND_DOCKER = 1 };
enum hgf_sim_image_role {
    HGF_SIM_ROLE_IMAGE = 0,  /* a single-platform image */
    HGF_SIM_ROLE_INDEX = 1,  /* an index of the two platform manifests below it */
    HGF_SIM_ROLE_AMD64 = 2,  /* an index's linux/amd64 manifest */
    HGF_SIM_ROLE_ARM64 = 3,  /* an index's linux/arm64 manifest */
};
#define HGF_SIM_KIND(format, role) ((uint8_t)((format) | ((role) << 1)))
#define HGF_SIM_KIND_FORMAT(kind) ((kind) & 1)
#define HGF_SIM_KIND_ROLE(kind) (((kind) >> 1) & 3)

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
    uint8_t kind;              /* HGF_SIM_KIND(enum hgf_sim_kind, enum hgf_sim_image_role) */
    /* The config blob digest's first bytes (they fit the struct's padding):
     * finding an image by its config blob compares these before hashing. */
    uint8_t config_hint[3];
    /* Sorted tags, each NUL-terminated, the list ended by an empty string;
     * NULL when untagged. Walk: for (t = tags; t && *t; t += strlen(t) + 1). */
    char *tags;
} hgf_sim_image;

/* A repository's mutation state (push times, moved tags, lifecycle),
 * private to fleet.c; NULL until the repository is first mutated. */
typedef struct hgf_sim_repo_ext hgf_sim_repo_ext;

/* A lifecycle rule; all zero = none. */
typedef struct hgf_sim_lifecycle {
    uint8_t expires;    /* untagged images expire: */
    int64_t after_ms;   /*   this long after they became untagged */
    int64_t since_ms;   /*   but never before this (when the rule was set) */
    uint8_t trap;       /* the next manifest HEAD/GET of an untagged image finds it deleted */
} hgf_sim_lifecycle;

typedef struct hgf_sim_repo {
    char *name;
    uint64_t key;           /* hash of (seed, account, region, name): seeds the images */
    int64_t created_ms;
    int64_t push_step_ms;   /* spacing of generated push times */
    uint8_t immutable;
    uint8_t scan_on_push;
    uint32_t n_images;
    hgf_sim_image *images;  /* ascending gen, which is push order */
    hgf_sim_repo_ext *ext;
} hgf_sim_repo;

typedef struct hgf_sim_registry {
    char account[13];
    const char *region;     /* owned by the fleet */
    size_t n_repos;
    hgf_sim_repo *repos;    /* sorted by name (strcmp) */
    hgf_sim_lifecycle lifecycle;  /* the rule repositories created later start with */
} hgf_sim_registry;

/* What DescribeImages reports for an image, regenerated on demand. */
typedef struct hgf_sim_image_info {
    char digest[72];        /* "sha256:<64 hex>" */
    int64_t pushed_ms;
    uint64_t size_bytes;
    const char *manifest_media_type;  /* static */
    const char *artifact_media_type;  /* static; NULL for an index, as ECR lists it */
    int role;                         /* enum hgf_sim_image_role */
} hgf_sim_image_info;

typedef struct hgf_sim_fleet hgf_sim_fleet;

/* Generates the fleet. HGF_EINPUT names a bad option; HGF_ENOMEM. */
int hgf_sim_fleet_create(const hgf_sim_fleet_opts *opts, hgf_sim_fleet **out, hgf_err *err);
void hgf_sim_fleet_free(hgf_sim_fleet *f);

void hgf_sim_fleet_lock(hgf_sim_fleet *f);
void hgf_sim_fleet_unlock(hgf_sim_fleet *f);

/* The clock of push times and lifecycle expirations (epoch ms); the
 * default is the real time. Set it before serving. */
void hgf_sim_fleet_set_clock(hgf_sim_fleet *f, int64_t (*now_ms)(void *ctx), void *ctx);

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
/* hgf_sim_fleet_repo_find, then the repository's due lifecycle expirations
 * (see hgf_sim_fleet_repo_settle): what every reader of images uses. */
hgf_sim_repo *hgf_sim_fleet_repo_open(hgf_sim_fleet *f, hgf_sim_registry *reg, const char *name);
/* Deletes the repository's untagged images whose lifecycle time is up. */
void hgf_sim_fleet_repo_settle(hgf_sim_fleet *f, hgf_sim_repo *repo);
/* With the fleet locked, before serving img's manifest: when the
 * repository's trap is armed and img is untagged, deletes img, disarms the
 * trap and returns 1 (img is then invalid); else 0. */
int hgf_sim_fleet_manifest_trap(hgf_sim_fleet *f, hgf_sim_repo *repo, hgf_sim_image *img);
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
 * endpoint serves them), and the config blob the manifest references (an
 * index has none: HGF_ENOTFOUND). */
int hgf_sim_fleet_manifest(const hgf_sim_fleet *f, const hgf_sim_registry *reg,
                           const hgf_sim_repo *repo, const hgf_sim_image *img, hgf_buf *out);
int hgf_sim_fleet_config_blob(const hgf_sim_fleet *f, const hgf_sim_registry *reg,
                              const hgf_sim_repo *repo, const hgf_sim_image *img, hgf_buf *out);
/* An index's platform manifests' digests ("sha256:<hex>", linux/amd64 then
 * linux/arm64; they may have been deleted since): HGF_EINPUT when img is no
 * index, HGF_ENOMEM. */
int hgf_sim_fleet_index_children(const hgf_sim_fleet *f, const hgf_sim_registry *reg,
                                 const hgf_sim_repo *repo, const hgf_sim_image *img,
                                 char out[2][72]);

/* ---- posture: policies and image users, pure functions of the seed ------ */

enum hgf_sim_lifecycle_kind {
    HGF_SIM_LC_NONE = 0,      /* no lifecycle policy */
    HGF_SIM_LC_UNTAGGED,      /* untagged images expire untagged_days after their push */
    HGF_SIM_LC_ANY,           /* every image expires untagged_days after its push */
    HGF_SIM_LC_COUNT_ONLY,    /* rules keep image counts: no window */
};

enum hgf_sim_policy_kind {
    HGF_SIM_POL_NONE = 0,        /* no repository policy */
    HGF_SIM_POL_CROSS_ACCOUNT,   /* pulls for one named role */
    HGF_SIM_POL_STAR,            /* "Principal": "*" */
    HGF_SIM_POL_AWS_STAR,        /* "Principal": {"AWS": "*"}, a lone Statement object */
    HGF_SIM_POL_AWS_ARRAY,       /* "Principal": {"AWS": [<role>, "*"]} */
    HGF_SIM_POL_DENY_STAR,       /* Deny to "*" plus the cross-account Allow: not open */
    HGF_SIM_POL_ORG_ONLY,        /* "*" narrowed by aws:PrincipalOrgID: not open */
};

/* What a repository's generated policies look like. The lifecycle policy
 * is served (GetLifecyclePolicy), not enforced: only the lifecycle rule of
 * hgf_sim_fleet_set_lifecycle deletes images. */
typedef struct hgf_sim_repo_posture {
    int lifecycle;       /* enum hgf_sim_lifecycle_kind */
    int untagged_days;   /* the untagged window in days, -1 when none */
    int policy;          /* enum hgf_sim_policy_kind */
} hgf_sim_repo_posture;

void hgf_sim_fleet_repo_posture(const hgf_sim_repo *repo, hgf_sim_repo_posture *out);
/* The User of img's config blob, or NULL when it has none (static). */
const char *hgf_sim_fleet_image_user(const hgf_sim_repo *repo, const hgf_sim_image *img);
/* 1 for the users hgf_sim_fleet_image_user returns that run as root. */
int hgf_sim_fleet_user_is_root(const char *user);

/* ---- mutations (each takes the fleet lock) ------------------------------ */

enum hgf_sim_mut {
    HGF_SIM_MUT_OK = 0,
    HGF_SIM_MUT_NO_REGISTRY,   /* (account, region) lies outside the fleet */
    HGF_SIM_MUT_NO_REPO,
    HGF_SIM_MUT_NO_IMAGE,
    HGF_SIM_MUT_TAG_EXISTS,    /* the tag is taken in an IMMUTABLE repository */
    HGF_SIM_MUT_IMAGE_EXISTS,  /* re-tag: the image already has the tag */
    HGF_SIM_MUT_MUTABILITY,    /* push: "immutable" contradicts the existing repository */
};

typedef struct hgf_sim_change {
    const char *account;
    const char *region;
    const char *repository;
    const char *tag;      /* NULL: push untagged / delete by digest */
    const char *digest;   /* re-tag and delete: "sha256:<hex>" */
    int immutable;        /* push: -1 unspecified, else the new repository's mutability */
    int scan_on_push;     /* push: for a new repository */
    int force;            /* move a tag of an IMMUTABLE repository anyway */
    /* push: 0 a single-platform image; HGF_SIM_PUSH_OCI_INDEX or
     * HGF_SIM_PUSH_DOCKER_LIST a multi-arch push, as buildx makes it: two new
     * untagged platform manifests (linux/amd64, linux/arm64) and the index
     * of them, which takes the tag and is the pushed digest */
    int index;
} hgf_sim_change;

#define HGF_SIM_PUSH_OCI_INDEX 1
#define HGF_SIM_PUSH_DOCKER_LIST 2

typedef struct hgf_sim_change_result {
    enum hgf_sim_mut status;
    /* The pushed, re-tagged or deleted digest; on TAG_EXISTS for a push,
     * the refused one (its manifest is not stored). */
    char digest[72];
    char previous[72];               /* the digest the tag was on; "" when none */
    char tag[HGF_SIM_TAG_MAX + 1];   /* delete: a tag the image had ("" none) */
    int created_repo;
    int immutable;                   /* the repository's mutability */
    int64_t at_ms;                   /* the fleet clock at the change */
    /* A multi-arch push: the platform manifests stored with the index
     * (linux/amd64, linux/arm64); "" otherwise. */
    char children[2][72];
} hgf_sim_change_result;

/* A new image (new manifest, new digest) in c->repository, created as
 * c->immutable says when it does not exist. With a tag, the tag moves to the
 * new image (the old one keeps its other tags or becomes untagged) unless
 * the repository is IMMUTABLE and !c->force (status TAG_EXISTS, nothing
 * stored). Returns 0 with out->status, or HGF_ENOMEM. */
int hgf_sim_fleet_push(hgf_sim_fleet *f, const hgf_sim_change *c, hgf_sim_change_result *out);
/* Puts c->tag on the existing image c->digest, moving it from the image
 * that had it (same IMMUTABLE rule as a push). */
int hgf_sim_fleet_retag(hgf_sim_fleet *f, const hgf_sim_change *c, hgf_sim_change_result *out);
/* Deletes the image named by c->digest or c->tag, with all its tags. */
int hgf_sim_fleet_delete(hgf_sim_fleet *f, const hgf_sim_change *c, hgf_sim_change_result *out);

typedef struct hgf_sim_lifecycle_change {
    int set_expiry;      /* change the expiry: */
    int64_t after_ms;    /*   -1 removes it */
    int set_trap;        /* change the trap: */
    int trap;
} hgf_sim_lifecycle_change;

/* Applies lc to one repository, or (repository NULL) to every repository
 * of the registry and those created in it later; what is already due
 * expires at once. 0 with *status, or HGF_ENOMEM. */
int hgf_sim_fleet_set_lifecycle(hgf_sim_fleet *f, const char *account, const char *region,
                                const char *repository, const hgf_sim_lifecycle_change *lc,
                                enum hgf_sim_mut *status);

/* "<acct>.dkr.ecr.<region>.amazonaws.com[.cn]", the repository ARN and URI,
 * appended to out. */
int hgf_sim_fleet_registry_host(const hgf_sim_registry *reg, hgf_buf *out);
int hgf_sim_fleet_repo_arn(const char *account, const char *region, const char *name,
                           hgf_buf *out);
int hgf_sim_fleet_repo_uri(const hgf_sim_registry *reg, const char *name, hgf_buf *out);

#endif
