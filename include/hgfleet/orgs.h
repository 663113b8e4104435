/* AWS Organizations client: ListAccounts (JSON 1.1), every page, with the
 * host's own credentials (the default chain), for `hgfleet discover`.
 *
 * Ownership: the account arrays returned here are malloc'd and owned by the
 * caller, who releases them with hgf_orgs_free_accounts. */
#ifndef HGF_ORGS_H
#define HGF_ORGS_H

#include <jansson.h>

#include "hgfleet/err.h"
#include "hgfleet/runtime.h"

#define HGF_ORGS_TARGET_PREFIX "AWSOrganizationsV20161128"
#define HGF_ORGS_PAGE_SIZE 20

typedef struct hgf_org_account {
    char id[13];        /* 12 digits */
    char status[24];    /* ACTIVE | SUSPENDED | PENDING_CLOSURE */
    char *arn, *name, *email;
} hgf_org_account;

void hgf_orgs_free_accounts(hgf_org_account *list, int n);

/* Appends the accounts of one ListAccounts reply to *list (growing it) and
 * sets *next_token to a malloc'd NextToken or NULL on the last page. A reply
 * without an Accounts array, or an account without a 12-digit Id, is
 * HGF_EFAIL naming the field. */
int hgf_orgs_parse_page(const json_t *page, hgf_org_account **list, int *n, char **next_token,
                        hgf_err *err);

/* Lists every account of the organization, page by page (MaxResults 20),
 * signing with the host's credentials for the partition of `region` (the
 * Organizations endpoint is global; AWS_ENDPOINT_URL_ORGANIZATIONS and
 * AWS_ENDPOINT_URL are honoured). Runs rt->loop until done, so it is for
 * CLI commands only, never from a loop callback. On success *out holds *n
 * accounts in the order AWS returned them. */
int hgf_orgs_list_accounts(hgf_runtime *rt, const char *region, hgf_org_account **out, int *n,
                           hgf_err *err);

#endif
