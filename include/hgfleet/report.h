/* Sweep reports: the numbers people read after a sweep, built from the
 * stored catalog and scans, and rendered as JSON, CSV or one self-contained
 * HTML page.
 *
 * The JSON shape is DESIGN.md's ("The sweep report"): sweep_id, started_at,
 * finished_at, status, totals and connections, each connection with
 * registry, account_id, region, status, diagnosis (when failed),
 * repositories, images, images_scanned, findings and posture. Extra fields:
 * posture_not_evaluated (check -> why some repositories or images could not
 * be judged, e.g. "not evaluated: missing ecr:GetLifecyclePolicy"),
 * worst_images (top 20 by critical findings), totals.posture_not_evaluated
 * (check -> how many were not judged) and, per connection, connection_id,
 * error and posture_not_evaluated (check -> {count, reason}).
 *
 * Posture: scan_on_push_disabled, tag_mutability_mutable,
 * tagged_image_older_than_<N>d and untagged_images_piling_up count
 * repositories or images from the catalog; no_lifecycle_policy,
 * repository_policy_allows_everyone and
 * lifecycle_expires_untagged_before_scan count repositories from the
 * policies a posture sync stored, image_runs_as_root counts images from
 * their config user (posture.h judges them all). A check counts only what
 * it could judge; when it could judge nothing it is null. What it could not
 * judge (denied, not collected yet, unreadable) is never a pass.
 *
 * Ownership: hgf_report_build returns a new JSON reference the caller
 * decrefs; rendered text is appended to a caller-owned hgf_buf. Every
 * string from a registry is treated as untrusted: CSV follows RFC 4180 and
 * HTML escapes every character that could start markup. */
#ifndef HGF_REPORT_H
#define HGF_REPORT_H

#include <jansson.h>
#include <stdint.h>

#include "hgfleet/buf.h"
#include "hgfleet/err.h"
#include "hgfleet/store.h"

typedef enum hgf_report_format {
    HGF_REPORT_JSON,
    HGF_REPORT_CSV,
    HGF_REPORT_HTML,
} hgf_report_format;

/* Days after which a tagged image counts as stale (tagged_image_older_than_<N>d). */
#define HGF_REPORT_STALE_DAYS 180
/* Repositories holding more untagged present images than this pile up. */
#define HGF_REPORT_UNTAGGED_LIMIT 10
#define HGF_REPORT_WORST_IMAGES 20

/* "json", "csv" or "html"; HGF_EINPUT naming `field` otherwise. */
int hgf_report_format_parse(const char *name, const char *field, hgf_report_format *out,
                            hgf_err *err);

/* Builds the connections, totals, posture and worst images of the given
 * connections; those in failed[] are reported as status "failed" with their
 * stored diagnosis. The caller adds sweep_id, timings and status. */
int hgf_report_build(hgf_store *s, const int64_t *conn_ids, int n_conns, const int64_t *failed,
                     int n_failed, int stale_days, json_t **out, hgf_err *err);

/* Renders a report built by hgf_report_build (or read back from sweeps). */
int hgf_report_render(const json_t *report, hgf_report_format f, hgf_buf *out, hgf_err *err);

#endif
