/* The posture checks that need a parser: repository policies, lifecycle
 * policies and image configs. (The others are plain catalog columns that
 * the report counts in SQL.)
 *
 * Every text here comes from AWS or a registry and is untrusted. Each
 * function is pure: no I/O, nothing kept between calls, and any input is
 * safe. Texts come with their length and need not be NUL-terminated.
 * HGF_EINPUT means the text cannot be judged (the check is then "not
 * evaluated", never a pass); err names the field. Results go into
 * caller-owned storage; nothing returned needs freeing. */
#ifndef HGF_POSTURE_H
#define HGF_POSTURE_H

#include <stddef.h>
#include <stdint.h>

#include "hgfleet/err.h"
#include "hgfleet/schedule.h"

/* Longest config User kept; a longer one is HGF_EINPUT. */
#define HGF_POSTURE_USER_MAX 256

/* Repository policy (GetRepositoryPolicy's policyText): *out = 1 when an
 * Allow statement admits every principal: "Principal": "*", or "*" as the
 * value of a principal type ({"AWS": "*"}), alone or in an array, or an
 * Allow with NotPrincipal. A Condition that narrows the caller
 * (aws:PrincipalOrgID, aws:PrincipalAccount, aws:SourceAccount, ... under a
 * positive operator, without IfExists or ForAllValues, with no "*" value)
 * makes the statement not count. Deny statements never count. */
int hgf_posture_policy_allows_everyone(const char *text, size_t len, int *out, hgf_err *err);

/* Lifecycle policy (GetLifecyclePolicy's lifecyclePolicyText): *days = the
 * shortest window after which an "expire" rule removes untagged images
 * (selection tagStatus "untagged" or "any", countType "sinceImagePushed",
 * countUnit "days", countNumber >= 1), or -1 when no rule removes them by
 * age (imageCountMoreThan rules keep a count, not a window). */
int hgf_posture_lifecycle_untagged_days(const char *text, size_t len, long *days, hgf_err *err);

/* Image config blob: config.User into user[n] ("" when absent or null,
 * which runs as root). */
int hgf_posture_config_user(const char *text, size_t len, char *user, size_t n, hgf_err *err);

/* 1 when a config User runs as root: the part before any ':' is empty,
 * "root", or a uid made only of zeros ("0", "0:0", "root:wheel"). */
int hgf_posture_user_is_root(const char *user);

/* 1 when the config's media type is a container image config (OCI or
 * Docker), so its User means something; other artifacts (Helm charts,
 * signatures) have no user to judge. */
int hgf_posture_is_image_config(const char *media_type);

/* 1 when a lifecycle policy that expires untagged images after `days` can
 * delete them before the connection's next scheduled scan (the guide's
 * race): the window is shorter than the schedule's interval at `now`. A
 * schedule with push events scans at push time: never at risk. One with no
 * timer at all (manual) has no interval, so any window races. days < 0 (no
 * such rule): 0. */
int hgf_posture_expiry_races_scan(long days, const hgf_schedule *s, int64_t now);

#endif
