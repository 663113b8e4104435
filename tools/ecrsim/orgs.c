#include "orgs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE_MAX 20
#define TOKEN_PREFIX "ecrsim-orgs-"

int hgf_sim_orgs_is_target(const hgf_sim_req *req)
{
    const char *t = hgf_sim_req_header(req, "x-amz-target");
    return t && !strncmp(t, HGF_SIM_ORGS_TARGET_PREFIX, strlen(HGF_SIM_ORGS_TARGET_PREFIX));
}

/* The fleet's registries are account-major: account k's first registry is
 * at k * (regions per account). Call with the fleet locked. */
static size_t regions_per_account(hgf_sim_fleet *f)
{
    size_t total = hgf_sim_fleet_registry_count(f), n = 1;
    if (!total)
        return 1;
    const char *first = hgf_sim_fleet_registry_at(f, 0)->account;
    while (n < total && !strcmp(hgf_sim_fleet_registry_at(f, n)->account, first))
        n++;
    return n;
}

static json_t *account_json(const char *id, const char *mgmt, size_t index, int suspended)
{
    char arn[128], name[48], email[80];
    snprintf(arn, sizeof arn, "arn:aws:organizations::%s:account/o-ecrsim%s/%s", mgmt,
             mgmt + 8, id);
    snprintf(name, sizeof name, "account-%zu", index);
    snprintf(email, sizeof email, "account-%zu@example.com", index);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:i}", "Id", id, "Arn", arn, "Email", email,
                     "Name", name, "Status", suspended ? "SUSPENDED" : "ACTIVE", "JoinedMethod",
                     "CREATED", "JoinedTimestamp", 1735689600);
}

/* Parses MaxResults and NextToken; 0 or an InvalidInputException. */
static int page_args(const hgf_sim_req *req, size_t *start, size_t *max, hgf_err *err)
{
    json_t *b = req->body_len ? json_loadb(req->body, req->body_len, 0, NULL) : json_object();
    int rc = 0;
    *start = 0;
    *max = PAGE_MAX;
    if (!json_is_object(b))
        rc = hgf_sim_awserr(err, "SerializationException", "The request body is not JSON");
    json_t *m = json_object_get(b, "MaxResults");
    if (!rc && m && (!json_is_integer(m) || json_integer_value(m) < 1 ||
                     json_integer_value(m) > PAGE_MAX))
        rc = hgf_sim_awserr(err, "InvalidInputException",
                            "MaxResults must be between 1 and %d", PAGE_MAX);
    else if (m)
        *max = (size_t)json_integer_value(m);
    const char *tok = json_string_value(json_object_get(b, "NextToken"));
    char *end = NULL;
    if (!rc && tok) {
        if (strncmp(tok, TOKEN_PREFIX, strlen(TOKEN_PREFIX)) != 0)
            rc = hgf_sim_awserr(err, "InvalidInputException", "The NextToken is not valid");
        else
            *start = strtoull(tok + strlen(TOKEN_PREFIX), &end, 10);
        if (!rc && (!end || *end))
            rc = hgf_sim_awserr(err, "InvalidInputException", "The NextToken is not valid");
    }
    json_decref(b);
    return rc;
}

static json_t *list_page(const hgf_sim_services *svc, size_t start, size_t max)
{
    hgf_sim_fleet *f = svc->fleet;
    hgf_sim_fleet_lock(f);
    size_t per = regions_per_account(f);
    size_t n_acc = hgf_sim_fleet_registry_count(f) / per;
    size_t suspended = svc->org_suspended < n_acc ? svc->org_suspended : n_acc;
    const char *mgmt = hgf_sim_fleet_first_account(f);
    json_t *arr = json_array();
    size_t i = start;
    for (; i < n_acc && i < start + max; i++)
        json_array_append_new(arr, account_json(hgf_sim_fleet_registry_at(f, i * per)->account,
                                                mgmt, i, i >= n_acc - suspended));
    hgf_sim_fleet_unlock(f);
    json_t *page = json_pack("{s:o}", "Accounts", arr);
    if (i < n_acc) {
        char tok[48];
        snprintf(tok, sizeof tok, TOKEN_PREFIX "%zu", i);
        json_object_set_new(page, "NextToken", json_string(tok));
    }
    return page;
}

static int authorize(const hgf_sim_services *svc, const hgf_sim_caller *c, const char *action,
                     hgf_err *err)
{
    hgf_sim_access a = {.action = action, .resource = "*"};
    enum hgf_sim_verdict v = hgf_sim_iam_authorize(svc->iam, c, &a);
    if (v == HGF_SIM_ALLOW)
        return 0;
    char msg[1024];
    hgf_sim_iam_denial(c, &a, v, msg, sizeof msg);
    return hgf_sim_awserr(err, "AccessDeniedException", "%s", msg);
}

void hgf_sim_orgs_serve(const hgf_sim_services *svc, const hgf_sim_req *req, time_t now,
                        hgf_sim_resp *resp, hgf_sim_outcome *o)
{
    const char *op = hgf_sim_req_header(req, "x-amz-target") + strlen(HGF_SIM_ORGS_TARGET_PREFIX);
    snprintf(o->service, sizeof o->service, "organizations");
    snprintf(o->op, sizeof o->op, "%.64s", op);
    hgf_sim_caller caller;
    hgf_err err, why;
    hgf_err_clear(&err);
    if (hgf_sim_auth_check(svc->auth, req, "organizations", now, &caller, &err, &why) != 0) {
        snprintf(o->why, sizeof o->why, "%.255s", why.msg);
        hgf_sim_resp_aws_error(resp, &err);
        return;
    }
    snprintf(o->akid, sizeof o->akid, "%s", caller.access_key_id);
    snprintf(o->region, sizeof o->region, "%s", caller.region);
    char action[96];
    snprintf(action, sizeof action, "organizations:%.64s", op);
    size_t start, max;
    if (strcmp(op, "ListAccounts") != 0)
        hgf_sim_awserr(&err, "UnknownOperationException", "Unknown operation %.64s", op);
    else if (!authorize(svc, &caller, action, &err) && !page_args(req, &start, &max, &err)) {
        hgf_sim_resp_json(resp, 200, HGF_SIM_AMZ_JSON, list_page(svc, start, max));
        return;
    }
    hgf_sim_resp_aws_error(resp, &err);
}
