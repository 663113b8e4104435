/* What every job needs from the process: the loop, the config, the store and
 * the HTTP client. Owned by main (or the command that built it); jobs borrow. */
#ifndef HGF_RUNTIME_H
#define HGF_RUNTIME_H

#include "hgfleet/awsctl.h"
#include "hgfleet/config.h"
#include "hgfleet/credprov.h"
#include "hgfleet/http.h"
#include "hgfleet/metrics.h"
#include "hgfleet/scanner.h"
#include "hgfleet/store.h"

struct ev_loop;

typedef struct hgf_runtime {
    struct ev_loop *loop;
    const hgf_config *cfg;
    hgf_store *store;
    hgf_http *http;
    hgf_metrics *metrics;
    hgf_awsctl *awsctl;   /* retries, adaptive rate limits, clock skew: one per process */
    hgf_credmgr *creds;   /* shared credential cache: one refresh per role, not per job */
    hgf_scanner *scanner; /* HGFLEET_SCANNER's backend */
    char owner[96];   /* this process's lease owner id: host:pid:random */
} hgf_runtime;

/* The process settings that hgf_runtime_open would refuse, checked without
 * opening anything: AWS_MAX_ATTEMPTS, AWS_RETRY_MODE and HGFLEET_SCANNER.
 * HGF_EINPUT names the variable. Commands call it before the database, so
 * that a bad setting exits 2 whether or not the database is up. */
int hgf_runtime_check(const hgf_config *cfg, hgf_err *err);
/* Opens the store and the HTTP client on the default loop. On failure
 * everything opened is closed again and err names what failed. */
int hgf_runtime_open(hgf_runtime *rt, const hgf_config *cfg, hgf_err *err);
/* Ends every HTTP request still in flight first (hgf_http_cancel_all: their
 * callbacks run with an error), then frees the scanner, the credential
 * cache, the AWS controller and the HTTP client, and closes the store (its
 * pending callbacks run with an error). So whatever those callbacks reach
 * (jobs, the worker pool, suspended API requests) must outlive this call. */
void hgf_runtime_close(hgf_runtime *rt);

#endif
