#include "hgfleet/orgs.h"

#include "hgfleet/awsjson.h"
#include "hgfleet/credprov.h"
#include "hgfleet/endpoint.h"

#include <ctype.h>
#include <ev.h>
#include <stdlib.h>
#include <string.h>

void hgf_orgs_free_accounts(hgf_org_account *list, int n)
{
    for (int i = 0; i < n; i++) {
        free(list[i].arn);
        free(list[i].name);
        free(list[i].email);
    }
    free(list);
}

static int twelve_digits(const char *s)
{
    if (!s || strlen(s) != 12)
        return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return 0;
    return 1;
}

static char *dup_field(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return strdup(v ? v : "");
}

static int parse_account(const json_t *a, size_t i, hgf_org_account *out, hgf_err *err)
{
    const char *id = json_string_value(json_object_get(a, "Id"));
    const char *status = json_string_value(json_object_get(a, "Status"));
    if (!twelve_digits(id))
        return hgf_err_set(err, HGF_EFAIL, "ListAccounts: Accounts[%zu].Id: expected 12 digits", i);
    if (!status || strlen(status) >= sizeof out->status)
        return hgf_err_set(err, HGF_EFAIL, "ListAccounts: Accounts[%zu].Status: missing", i);
    memset(out, 0, sizeof *out);
    snprintf(out->id, sizeof out->id, "%s", id);
    snprintf(out->status, sizeof out->status, "%s", status);
    out->arn = dup_field(a, "Arn");
    out->name = dup_field(a, "Name");
    out->email = dup_field(a, "Email");
    if (!out->arn || !out->name || !out->email)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    return 0;
}

int hgf_orgs_parse_page(const json_t *page, hgf_org_account **list, int *n, char **next_token,
                        hgf_err *err)
{
    *next_token = NULL;
    const json_t *accounts = json_object_get(page, "Accounts");
    if (!json_is_array(accounts))
        return hgf_err_set(err, HGF_EFAIL, "ListAccounts: Accounts: missing from the reply");
    size_t cnt = json_array_size(accounts);
    hgf_org_account *grown = realloc(*list, (size_t)(*n + (int)cnt + 1) * sizeof *grown);
    if (!grown)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    *list = grown;
    for (size_t i = 0; i < cnt; i++) {
        int rc = parse_account(json_array_get(accounts, i), i, &grown[*n], err);
        if (rc)
            return rc;
        (*n)++;
    }
    const char *tok = json_string_value(json_object_get(page, "NextToken"));
    if (tok && *tok && !(*next_token = strdup(tok)))
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    return 0;
}

typedef struct lister {
    hgf_runtime *rt;
    hgf_registry reg;        /* only its partition and region matter */
    char endpoint[256];
    hgf_creds creds;
    hgf_org_account *list;
    int n, done, rc;
    hgf_err err;
} lister;

static void finish(lister *l, int rc, const hgf_err *err)
{
    l->rc = rc;
    if (rc && err && err != &l->err)
        l->err = *err;
    l->done = 1;
}

static int send_page(lister *l, const char *next_token);

static void on_page(const hgf_aws_result *res, void *arg)
{
    lister *l = arg;
    if (res->rc) {
        finish(l, res->rc, &res->err);
        return;
    }
    char *next = NULL;
    int rc = hgf_orgs_parse_page(res->json, &l->list, &l->n, &next, &l->err);
    if (!rc && next)
        rc = send_page(l, next);
    free(next);
    if (rc || !next)
        finish(l, rc, NULL);
}

static int send_page(lister *l, const char *next_token)
{
    json_t *b = json_pack("{s:i}", "MaxResults", HGF_ORGS_PAGE_SIZE);
    if (next_token)
        json_object_set_new(b, "NextToken", json_string(next_token));
    char *body = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    if (!body)
        return hgf_err_set(&l->err, HGF_ENOMEM, "out of memory");
    hgf_aws_target t = {.http = l->rt->http, .creds = &l->creds, .endpoint = l->endpoint,
                        .region = hgf_endpoint_signing_region("ORGANIZATIONS", &l->reg),
                        .service = "organizations", .ctl = l->rt->awsctl};
    int rc = hgf_awsjson_call(&t, HGF_ORGS_TARGET_PREFIX, "ListAccounts", body, on_page, l,
                              &l->err);
    free(body);
    return rc;
}

static void on_creds(int rc, const hgf_err *err, const hgf_creds *creds, void *arg)
{
    lister *l = arg;
    if (rc) {
        finish(l, rc, err);
        return;
    }
    rc = hgf_creds_copy(&l->creds, creds, &l->err);
    if (!rc)
        rc = send_page(l, NULL);
    if (rc)
        finish(l, rc, NULL);
}

int hgf_orgs_list_accounts(hgf_runtime *rt, const char *region, hgf_org_account **out, int *n,
                           hgf_err *err)
{
    *out = NULL;
    *n = 0;
    lister l = {.rt = rt};
    hgf_err_clear(&l.err);
    /* The registry only carries the partition and region to the endpoint
     * helpers; Organizations itself is not per account. */
    int rc = hgf_endpoint_registry_from_parts("000000000000", region, 0, &l.reg, err);
    if (!rc)
        rc = hgf_endpoint_service_url("ORGANIZATIONS", &l.reg, l.endpoint, sizeof l.endpoint, err);
    hgf_auth_spec spec = {.mode = "host", .region = l.reg.region, .partition = l.reg.partition};
    if (!rc)
        rc = hgf_credmgr_get(rt->creds, &spec, on_creds, &l, err);
    if (rc)
        return rc;
    while (!l.done)
        ev_run(rt->loop, EVRUN_ONCE);
    hgf_creds_clear(&l.creds);
    if (l.rc) {
        hgf_orgs_free_accounts(l.list, l.n);
        if (err)
            *err = l.err;
        return l.rc;
    }
    *out = l.list;
    *n = l.n;
    return 0;
}
