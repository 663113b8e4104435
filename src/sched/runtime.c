#include "hgfleet/runtime.h"

#include <ev.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int hgf_runtime_check(const hgf_config *cfg, hgf_err *err)
{
    hgf_awsctl_config ac;
    if (hgf_awsctl_config_parse(getenv("AWS_MAX_ATTEMPTS"), getenv("AWS_RETRY_MODE"), &ac, err))
        return err->code;
    return hgf_scanner_check(cfg->scanner ? cfg->scanner : "none", err);
}

int hgf_runtime_open(hgf_runtime *rt, const hgf_config *cfg, hgf_err *err)
{
    memset(rt, 0, sizeof *rt);
    rt->loop = EV_DEFAULT;
    rt->cfg = cfg;
    char host[64] = "host";
    gethostname(host, sizeof host - 1);
    unsigned char rnd[4] = {0};
    RAND_bytes(rnd, sizeof rnd);
    snprintf(rt->owner, sizeof rt->owner, "%s:%d:%02x%02x%02x%02x", host, (int)getpid(), rnd[0],
             rnd[1], rnd[2], rnd[3]);
    rt->metrics = hgf_metrics_new();
    rt->store = hgf_store_open(rt->loop, cfg->database_url, err);
    if (!rt->store) {
        hgf_metrics_free(rt->metrics);
        rt->metrics = NULL;
        return err ? err->code : HGF_EDB;
    }
    hgf_store_add_bulk(rt->store, cfg->db_connections - 1);
    hgf_http_opts o = {.max_total = cfg->total_inflight,
                       .max_per_key = cfg->per_registry_inflight,
                       .ca_bundle = cfg->ca_bundle};
    rt->http = hgf_http_new(rt->loop, &o, err);
    if (!rt->http) {
        hgf_store_close(rt->store);
        hgf_metrics_free(rt->metrics);
        rt->store = NULL;
        rt->metrics = NULL;
        return err ? err->code : HGF_EFAIL;
    }
    rt->awsctl = hgf_awsctl_new(rt->loop, rt->metrics, err);
    if (!rt->awsctl) {
        hgf_runtime_close(rt);
        return err ? err->code : HGF_EFAIL;
    }
    rt->creds = hgf_credmgr_new(rt->loop, rt->http, rt->metrics, err);
    if (!rt->creds) {
        hgf_runtime_close(rt);
        return err ? err->code : HGF_EFAIL;
    }
    hgf_credmgr_set_awsctl(rt->creds, rt->awsctl);
    hgf_scanner_opts so = {.metrics = rt->metrics};
    if (hgf_scanner_new(rt->loop, rt->http, cfg->scanner ? cfg->scanner : "none", &so, &rt->scanner,
                        err)) {
        hgf_runtime_close(rt);
        return err ? err->code : HGF_EFAIL;
    }
    return 0;
}

void hgf_runtime_close(hgf_runtime *rt)
{
    /* First, while every layer above it is alive: each request's callback
     * runs (with an error), so the layer that sent it frees its own state;
     * freeing the client would drop them unheard. */
    if (rt->http)
        hgf_http_cancel_all(rt->http);
    if (rt->scanner)
        hgf_scanner_free(rt->scanner);
    rt->scanner = NULL;
    if (rt->creds)
        hgf_credmgr_free(rt->creds);
    rt->creds = NULL;
    /* Before the HTTP client: waiting retries are cancelled, in-flight ones detached. */
    if (rt->awsctl)
        hgf_awsctl_free(rt->awsctl);
    rt->awsctl = NULL;
    if (rt->http)
        hgf_http_free(rt->http);
    if (rt->store)
        hgf_store_close(rt->store);
    hgf_metrics_free(rt->metrics);
    rt->http = NULL;
    rt->store = NULL;
    rt->metrics = NULL;
}
