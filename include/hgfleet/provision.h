/* Applies a list of (account, region, role) rows as connections, for
 * `hgfleet discover` and `hgfleet connection import`: creates what is new
 * (queuing its first sync), updates what changed, leaves the rest alone.
 * All or nothing: every write happens in one transaction.
 *
 * A row matches the live connection of the same (partition, account,
 * region). It is unchanged when its auth mode, role ARN and external id are
 * the same (and the schedule, when one was asked for); an update changes
 * those and keeps the connection's name, tag filters and history.
 *
 * Ownership: the caller owns rt, the list and the report object; this only
 * appends to the report's arrays "created", "updated" and "unchanged"
 * (objects with connection_id, name, registry, account_id, region, auth_mode,
 * role_arn and, for created ones, first_sync_job). */
#ifndef HGF_PROVISION_H
#define HGF_PROVISION_H

#include <jansson.h>

#include "hgfleet/accounts.h"
#include "hgfleet/err.h"
#include "hgfleet/runtime.h"

typedef struct hgf_provision_opts {
    const char *schedule;  /* NULL: "daily" for new ones, existing ones keep theirs */
    int dry_run;           /* classify only: nothing is written */
} hgf_provision_opts;

/* Runs the store queries synchronously (CLI only). On error nothing was
 * written and err names the row's line and what failed. */
int hgf_provision_apply(hgf_runtime *rt, const hgf_account_list *l, const hgf_provision_opts *o,
                        json_t *report, hgf_err *err);

/* Prints "created N, updated N, unchanged N[, skipped N]" and one line per
 * created, updated and skipped entry of the report to stdout. */
void hgf_provision_print(const json_t *report, int dry_run);

/* Parses "R1,R2" (each a valid region, no duplicates, all in one partition)
 * into *out: one malloc'd block the caller frees with free(*out), holding
 * the pointers and the strings. HGF_EINPUT names flag. */
int hgf_provision_parse_regions(const char *text, const char *flag, char ***out, int *n,
                                hgf_err *err);

#endif
