#include "dispatch.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "control.h"
#include "orgs.h"
#include "hgfleet/sigv4.h"

enum proto { P_ECR, P_STS, P_REGISTRY };

static int has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void note_caller(hgf_sim_outcome *o, const hgf_sim_caller *c, const hgf_err *why)
{
    snprintf(o->akid, sizeof o->akid, "%s", c->access_key_id);
    snprintf(o->region, sizeof o->region, "%s", c->region);
    if (why && why->msg[0])
        snprintf(o->why, sizeof o->why, "%.255s", why->msg);
}

/* ---- faults ------------------------------------------------------------ */

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void injected_error(enum proto p, int throttle, hgf_sim_resp *resp)
{
    hgf_err err;
    hgf_err_clear(&err);
    if (p == P_REGISTRY) {
        if (throttle)
            hgf_sim_regv2_error(resp, 429, "TOOMANYREQUESTS", "Rate exceeded");
        else
            hgf_sim_regv2_error(resp, 500, "UNKNOWN", "ecrsim: injected internal error");
        return;
    }
    if (throttle)
        hgf_sim_awserr(&err, p == P_STS ? "Throttling" : "ThrottlingException", "Rate exceeded");
    else
        hgf_sim_awserr(&err, p == P_STS ? "InternalFailure" : "ServerException",
                       "ecrsim: injected internal error");
    if (p == P_STS)
        hgf_sim_sts_error(resp, &err);
    else
        hgf_sim_resp_aws_error(resp, &err);
}

/* 1 when a fault answered (or dropped) the call. */
static int inject(const hgf_sim_services *svc, enum proto p, hgf_sim_resp *resp)
{
    hgf_sim_fault_draw d;
    hgf_sim_faults_draw(svc->faults, &d);
    if (d.latency_ms)
        sleep_ms(d.latency_ms);
    switch (d.fault) {
    case HGF_SIM_FAULT_DROP:
        resp->drop = 1;
        return 1;
    case HGF_SIM_FAULT_503:
        hgf_sim_resp_text(resp, 503, NULL, "");
        snprintf(resp->error_code, sizeof resp->error_code, "ServiceUnavailable");
        resp->quiet = 1;
        return 1;
    case HGF_SIM_FAULT_500:
    case HGF_SIM_FAULT_THROTTLE:
        injected_error(p, d.fault == HGF_SIM_FAULT_THROTTLE, resp);
        return 1;
    default:
        return 0;
    }
}

/* ---- AWS APIs ---------------------------------------------------------- */

static int is_sts(const hgf_sim_req *req)
{
    const char *ct = hgf_sim_req_header(req, "content-type");
    const char *auth = hgf_sim_req_header(req, "authorization");
    hgf_sigv4_auth parsed;
    if (ct && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0)
        return 1;
    return auth && hgf_sigv4_parse_authorization(auth, &parsed, NULL) == 0 &&
           strcmp(parsed.service, "sts") == 0;
}

static void serve_sts(const hgf_sim_services *svc, const hgf_sim_req *req, time_t now,
                      hgf_sim_resp *resp, hgf_sim_outcome *o)
{
    char action[64];
    hgf_sim_caller caller;
    hgf_err why;
    hgf_sim_sts_action(req, action, sizeof action);
    snprintf(o->service, sizeof o->service, "sts");
    snprintf(o->op, sizeof o->op, "%s", action[0] ? action : "(no action)");
    if (inject(svc, P_STS, resp))
        return;
    hgf_sim_sts_handle(svc->sts, req, now, resp, &caller, &why);
    note_caller(o, &caller, &why);
}

static void serve_ecr(const hgf_sim_services *svc, const hgf_sim_req *req, time_t now,
                      hgf_sim_resp *resp, hgf_sim_outcome *o)
{
    const char *target = hgf_sim_req_header(req, "x-amz-target");
    size_t plen = strlen(HGF_SIM_ECR_TARGET_PREFIX);
    int ecr = target && strncmp(target, HGF_SIM_ECR_TARGET_PREFIX, plen) == 0;
    snprintf(o->service, sizeof o->service, "ecr");
    snprintf(o->op, sizeof o->op, "%s", ecr ? target + plen : target ? target : "(no target)");
    if (inject(svc, P_ECR, resp))
        return;
    hgf_sim_caller caller;
    hgf_err err, why;
    hgf_err_clear(&err);
    if (hgf_sim_auth_check(svc->auth, req, "ecr", now, &caller, &err, &why) != 0) {
        snprintf(o->why, sizeof o->why, "%.255s", why.msg);
        hgf_sim_resp_aws_error(resp, &err);
        return;
    }
    note_caller(o, &caller, NULL);
    if (ecr) {
        hgf_sim_ecr_handle(svc->ecr, o->op, &caller, now, req, resp);
        return;
    }
    hgf_sim_awserr(&err, "UnknownOperationException", "Unknown operation %.64s",
                   target ? target : "(no X-Amz-Target)");
    hgf_sim_resp_aws_error(resp, &err);
}

static void serve_api(const hgf_sim_services *svc, const hgf_sim_req *req, int too_large,
                      time_t now, hgf_sim_resp *resp, hgf_sim_outcome *o)
{
    hgf_err err;
    hgf_err_clear(&err);
    if (strcmp(req->method, "POST") != 0 || strcmp(req->path, "/") != 0) {
        snprintf(o->service, sizeof o->service, "ecr");
        snprintf(o->op, sizeof o->op, "%s", req->path);
        hgf_sim_awserr(&err, "UnknownOperationException", "No operation at %.6s %.128s",
                       req->method, req->path);
        hgf_sim_resp_aws_error(resp, &err);
        resp->status = 404;
    } else if (too_large) {
        snprintf(o->service, sizeof o->service, "ecr");
        snprintf(o->op, sizeof o->op, "(too large)");
        hgf_sim_awserr(&err, "SerializationException", "The request body exceeds %d bytes",
                       HGF_SIM_MAX_BODY);
        hgf_sim_resp_aws_error(resp, &err);
        resp->status = 413;
    } else if (hgf_sim_orgs_is_target(req)) {
        hgf_sim_orgs_serve(svc, req, now, resp, o);
    } else if (!hgf_sim_req_header(req, "x-amz-target") && is_sts(req)) {
        serve_sts(svc, req, now, resp, o);
    } else {
        serve_ecr(svc, req, now, resp, o);
    }
}

static void serve_registry(const hgf_sim_services *svc, const hgf_sim_req *req, time_t now,
                           hgf_sim_resp *resp, hgf_sim_outcome *o)
{
    hgf_sim_caller caller;
    hgf_err why;
    snprintf(o->service, sizeof o->service, "registry");
    snprintf(o->op, sizeof o->op, "%s", hgf_sim_regv2_op(req));
    if (inject(svc, P_REGISTRY, resp))
        return;
    hgf_sim_regv2_handle(svc->registry, req, now, resp, &caller, &why);
    note_caller(o, &caller, &why);
}

/* ---- routing ----------------------------------------------------------- */

static void route(const hgf_sim_services *svc, const hgf_sim_req *req, int too_large,
                  time_t now, hgf_sim_resp *resp, hgf_sim_outcome *o)
{
    if (has_prefix(req->path, HGF_SIM_BLOB_PREFIX)) {
        snprintf(o->service, sizeof o->service, "s3");
        snprintf(o->op, sizeof o->op, "s3:GetObject");
        hgf_sim_regv2_blob(svc->registry, req, now, resp);
    } else if (strcmp(req->path, HGF_SIM_CONTAINER_PATH) == 0) {
        snprintf(o->service, sizeof o->service, "container");
        snprintf(o->op, sizeof o->op, "container:GetCredentials");
        hgf_sim_hostcreds_container(svc->host, req, now, resp);
    } else if (has_prefix(req->path, HGF_SIM_CONTROL_PREFIX)) {
        snprintf(o->op, sizeof o->op, "%s", req->path);
        hgf_sim_control_handle(svc, req, resp);
    } else if (has_prefix(req->path, HGF_SIM_IMDS_PREFIX)) {
        snprintf(o->service, sizeof o->service, "imds");
        snprintf(o->op, sizeof o->op, "%s", hgf_sim_hostcreds_imds_op(req));
        hgf_sim_hostcreds_imds(svc->host, req, now, resp);
    } else if (has_prefix(req->path, HGF_SIM_REGISTRY_PREFIX)) {
        serve_registry(svc, req, now, resp, o);
    } else {
        serve_api(svc, req, too_large, now, resp, o);
    }
}

void hgf_sim_dispatch(const hgf_sim_services *svc, const hgf_sim_req *req, int too_large,
                      hgf_sim_resp *resp, hgf_sim_outcome *o)
{
    memset(o, 0, sizeof *o);
    route(svc, req, too_large, hgf_sim_faults_now(svc->faults), resp, o);
    if (!o->service[0])
        return;
    const char *outcome = resp->drop              ? HGF_SIM_OUTCOME_DROPPED
                          : resp->error_code[0] ? resp->error_code
                                                : HGF_SIM_OUTCOME_OK;
    hgf_sim_stats_count(svc->stats, o->service, o->op, outcome);
}
