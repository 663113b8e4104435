/* What every job needs from the process: the loop, the config, the store and
 * the HTTP client. Owned by main (or the command that built it); jobs borrow. */
#ifndef HGF_RUNTIME_H
#define HGF_RUNTIME_H

#include "hgfleet/awsctl.h"
#include "hgfleet/config.h"
#include "hgfleet/credprov.h"
#include "hgfleet/http.h"
#include "hgfleet/limiter.h"
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
    hgf_limiter *scans;   /* scans at once per registry (HGFLEET_SCANS_PER_REGISTRY) */
    char owner[96];   /* this process's lease owner id: host:pid:random */
} hgf_runtime;

/* Opens the store and the HTTP client on the default loop. On failure
 * everything opened is closed again and err names what failed. */
int hgf_runtime_open(hgf_runtime *rt, const hgf_config *cfg, hgf_err *err);
void hgf_runtime_close(hgf_runtime *rt);

#endif
