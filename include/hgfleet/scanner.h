/* Scanner backends for scan jobs (HGFLEET_SCANNER): run trivy or grype as a
 * child process, or drive a Harbor Pluggable Scanner API v1.1 adapter over
 * HTTP, and reduce the report to counts per severity.
 *
 * Everything is asynchronous on the caller's libev loop. The process
 * backends use ev_child, which libev only offers on the default loop, so
 * "trivy" and "grype" require EV_DEFAULT (hgf_runtime's loop).
 *
 * "none" is a backend too: its scans end ok with zero counts and no report.
 * The caller (the scan job) HEADs the manifest itself for every backend, so
 * that a deleted image ends `skipped` before any scanner runs.
 *
 * Credentials: the target's username/password are registry credentials (for
 * ECR, "AWS" and the password half of the decoded GetAuthorizationToken
 * token). They reach trivy/grype only through the child's environment, never
 * argv, and Harbor only inside the POST body; they never appear in errors.
 *
 * Ownership: hgf_scanner_new returns an object the caller frees with
 * hgf_scanner_free. hgf_scanner_scan copies the target. The result passed to
 * a callback, and every pointer in it (report included), is valid only during
 * the callback: json_incref the report to keep it. */
#ifndef HGF_SCANNER_H
#define HGF_SCANNER_H

#include <jansson.h>
#include <stddef.h>

#include "hgfleet/err.h"
#include "hgfleet/http.h"
#include "hgfleet/metrics.h"

struct ev_loop;

typedef struct hgf_scanner hgf_scanner;

typedef struct hgf_scanner_opts {
    int timeout_seconds;      /* whole scan; 0 = 600. Also trivy's --timeout */
    size_t max_stdout;        /* tool output kept; 0 = 64 MiB (more fails the scan) */
    size_t max_stderr;        /* tool stderr kept; 0 = 64 KiB */
    int max_running;          /* tool processes at once; 0 = 4; more scans wait FIFO */
    const char *tool_path;    /* trivy/grype executable; NULL = its name looked up on PATH */
    const char *home_dir;     /* the tool's HOME (its caches); NULL = /tmp */
    int poll_min_seconds;     /* Harbor Refresh-After floor; 0 = 1 */
    int poll_max_seconds;     /* Harbor Refresh-After cap; 0 = 60 */
    const char *adapter_authorization; /* Harbor: full Authorization header value for the
                                        * adapter itself, or NULL; never logged */
    hgf_metrics *metrics;     /* optional: hgfleet_scans_total, hgfleet_scan_seconds */
} hgf_scanner_opts;

typedef struct hgf_scan_target {
    const char *registry_host;  /* 123456789012.dkr.ecr.us-east-1.amazonaws.com[:port] */
    const char *registry_url;   /* Harbor: the proxyEndpoint, https://<host> */
    const char *repository;
    const char *digest;         /* sha256:<64 hex> */
    const char *tag;            /* may be NULL */
    const char *media_type;     /* the manifest's; Harbor requires it */
    const char *username;       /* NULL for anonymous pulls */
    const char *password;
} hgf_scan_target;

typedef struct hgf_scan_summary {
    int critical, high, medium, low, unknown;  /* Negligible and None count as low */
} hgf_scan_summary;

typedef struct hgf_scan_result {
    int rc;               /* 0; HGF_ENOTFOUND when the tool reports the manifest unknown;
                             HGF_EHTTP for a transport failure; else HGF_EFAIL */
    int retryable;        /* 1 when trying again later may help (timeouts, crashes, 5xx) */
    hgf_err err;          /* "trivy: timed out after 600 s", ... */
    hgf_scan_summary summary;
    json_t *report;       /* the tool's JSON (NULL on failure and for "none") */
    const char *scanner;  /* "none", "trivy", "grype" or "harbor" */
    const char *version;  /* the tool's own name/version when it reports one, else "" */
    double seconds;       /* from start (after any wait for a slot) to the end */
} hgf_scan_result;

typedef void (*hgf_scan_cb)(const hgf_scan_result *res, void *arg);

/* spec: "none" | "trivy" | "grype" | "harbor:<http[s] adapter URL>". HGF_EINPUT naming
 * HGFLEET_SCANNER for anything else, for a tool not found, or for a process
 * backend on a loop other than the default one. http is needed for harbor only. */
int hgf_scanner_new(struct ev_loop *loop, hgf_http *http, const char *spec,
                    const hgf_scanner_opts *opts, hgf_scanner **out, hgf_err *err);

/* Checks a spec as hgf_scanner_new would (its syntax; for trivy and grype,
 * the tool on PATH) without a loop: for commands to refuse a bad setting
 * before they open the database. */
int hgf_scanner_check(const char *spec, hgf_err *err);

/* Kills running children (their process groups) and cancels every scan
 * without calling its callback. Free it before the HTTP client. */
void hgf_scanner_free(hgf_scanner *s);

/* "none", "trivy", "grype" or "harbor". */
const char *hgf_scanner_name(const hgf_scanner *s);

/* Starts a scan. The callback runs exactly once, from the loop, never from
 * inside this call. Returns 0, or HGF_EINPUT naming the bad target field /
 * HGF_ENOMEM (then the callback never runs). Callbacks may start scans and
 * may free the scanner. */
int hgf_scanner_scan(hgf_scanner *s, const hgf_scan_target *t, hgf_scan_cb cb, void *arg,
                     hgf_err *err);

/* Parses a report in one format ("trivy", "grype" or "harbor", i.e. the
 * Harbor vulnerability report v1.1) into counts. *report, when report is not
 * NULL, receives the parsed JSON (caller decrefs). Output that is not that
 * format is HGF_EFAIL "<format>: cannot parse output: <first 64 bytes>". */
int hgf_scanner_parse(const char *format, const char *text, size_t len, hgf_scan_summary *out,
                      json_t **report, hgf_err *err);

#endif
