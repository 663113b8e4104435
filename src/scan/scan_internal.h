/* Shared between the files of src/scan/: the scanner and job structs, the
 * delivery path every backend ends in, and the per-backend entry points. */
#ifndef HGF_SCAN_INTERNAL_H
#define HGF_SCAN_INTERNAL_H

#include <ev.h>
#include <sys/types.h>

#include "hgfleet/buf.h"
#include "hgfleet/scanner.h"

enum scan_kind { SCAN_NONE, SCAN_TRIVY, SCAN_GRYPE, SCAN_HARBOR };

typedef struct scan_job scan_job;

struct hgf_scanner {
    struct ev_loop *loop;
    hgf_http *http;
    enum scan_kind kind;
    char *tool;          /* absolute path of trivy/grype */
    char *adapter_url;   /* Harbor, without a trailing '/' */
    char *adapter_auth;
    char *home;
    int timeout_s, max_running, running, poll_min, poll_max;
    size_t max_stdout, max_stderr;
    hgf_metrics *metrics;
    scan_job *head, *tail;  /* scans not yet delivered, oldest first */
};

/* Child process state (trivy, grype). */
typedef struct scan_proc {
    pid_t pid;               /* 0 until spawned */
    int exited, status, timed_out;
    ev_child child;
    ev_io out_w, err_w;      /* fd -1 once closed */
    hgf_buf out, errb;
    int out_over;
} scan_proc;

/* Harbor adapter state. */
typedef struct scan_harbor {
    int http_pending;        /* an hgf_http callback is still to come */
    char id[128];
    int polls;
} scan_harbor;

struct scan_job {
    hgf_scanner *s;          /* NULL once delivered or cancelled */
    scan_job *prev, *next;
    hgf_scan_cb cb;
    void *arg;
    char *host, *registry_url, *repository, *digest, *tag, *media_type, *username, *password;
    int has_slot, queued;
    double started;
    ev_timer deadline, aux;  /* aux: kill escalation, drain, Harbor polls, deferred ends */
    hgf_err fail;            /* the failure a deferred end reports (code 0: success) */
    int fail_retry;
    scan_proc p;
    scan_harbor h;
};

/* The one way a scan ends: releases the slot, starts queued scans, counts,
 * calls back, frees the job (or leaves it to a pending HTTP callback). */
void hgf_scan_job_deliver(scan_job *j, const hgf_scan_result *res);
/* Delivers the failure from the loop on the next iteration (also safe from
 * inside hgf_scanner_scan). */
void hgf_scan_job_fail_later(scan_job *j, int rc, int retryable, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void hgf_scan_job_fail_now(scan_job *j, int rc, int retryable, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void hgf_scan_job_free(scan_job *j);
double hgf_scan_job_remaining(const scan_job *j);

/* "trivy", ... */
const char *hgf_scan_kind_name(enum scan_kind k);

/* Severity word (any case) into the summary. */
void hgf_scan_count(hgf_scan_summary *sum, const char *severity);
/* Escapes up to max bytes of p (non-printables as \xNN, "..." when cut) into out. */
void hgf_scan_excerpt(const char *p, size_t n, size_t max, char *out, size_t outn);
/* A copy of text with every occurrence of secret replaced by "***". */
int hgf_scan_redact(const char *text, size_t n, const char *secret, hgf_buf *out);

/* Parses the tool's JSON into counts; version gets "<name> <version>" or "". */
int hgf_scan_parse(enum scan_kind k, const char *text, size_t len, hgf_scan_summary *sum,
                   json_t **report, char *version, size_t vn, hgf_err *err);
int hgf_scan_trivy_parse(json_t *root, hgf_scan_summary *sum, char *version, size_t vn,
                         const char **why);
int hgf_scan_grype_parse(json_t *root, hgf_scan_summary *sum, char *version, size_t vn,
                         const char **why);
int hgf_scan_harbor_parse(json_t *root, hgf_scan_summary *sum, char *version, size_t vn,
                          const char **why);

/* A command line and environment for a tool child. */
typedef struct scan_cmd {
    char **argv, **envp;
    size_t argc, envc, argcap, envcap;
} scan_cmd;

int hgf_scan_cmd_arg(scan_cmd *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int hgf_scan_cmd_env(scan_cmd *c, const char *name, const char *value);
/* PATH, HOME, proxies and CA settings, and our variables starting with
 * prefix except those starting with one of deny (NULL-terminated). */
int hgf_scan_cmd_base_env(scan_cmd *c, const hgf_scanner *s, const char *prefix,
                          const char *const *deny);
void hgf_scan_cmd_free(scan_cmd *c);  /* wipes the environment strings */

int hgf_scan_trivy_cmd(const scan_job *j, scan_cmd *c);
int hgf_scan_grype_cmd(const scan_job *j, scan_cmd *c);

/* Process backends: spawn (failures are delivered later); on cancel, stop the
 * watchers, kill the process group and reap the child. */
void hgf_scan_proc_start(scan_job *j);
void hgf_scan_proc_cancel(struct ev_loop *loop, scan_job *j);

/* Harbor: each HTTP callback frees a job whose s is NULL (cancelled, or
 * delivered after a timeout) instead of going on. */
void hgf_scan_harbor_start(scan_job *j);

#endif
