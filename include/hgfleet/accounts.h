/* Account lists to import as connections: a Cloud Custodian c7n-org
 * accounts.yml, or a CSV of account_id,region[,role_arn,external_id].
 * Pure parsing and validation (text in, rows or an error out); no I/O.
 *
 * YAML: a mapping with `accounts`, a list of mappings with account_id
 * (12 digits, required), name, role (a role ARN in any account of the
 * region's partition, for cross-account access, or a bare role name, which
 * becomes arn:<partition of the region>:iam::<account_id>:role/<name>),
 * external_id, regions (a list, or "all"; "all" or missing means the default
 * regions) and tags (a list of strings). Other keys (vars, email...) are
 * ignored. CSV: an optional header line starting with "account_id", blank
 * lines and lines starting with '#' are skipped; an empty role_arn means the
 * host's own credentials.
 *
 * Errors are HGF_EINPUT and name the line (and, for YAML, the column) and
 * the field: `accounts.yml: line 7, column 5: accounts[1].account_id:
 * expected 12 digits, got "12345"`.
 *
 * Ownership: hgf_accounts_parse fills an hgf_account_list the caller
 * releases with hgf_accounts_free (also after an error). */
#ifndef HGF_ACCOUNTS_H
#define HGF_ACCOUNTS_H

#include <stddef.h>

#include "hgfleet/err.h"

/* Most rows a file may expand to (accounts x regions). */
#define HGF_ACCOUNTS_MAX_ROWS 100000

typedef struct hgf_account_row {
    char account_id[13];
    char region[32];
    char *name;         /* "<account name>/<region>", or "<account_id>/<region>" */
    char *role_arn;     /* NULL: the host's credentials */
    char *external_id;  /* or NULL */
    int line;           /* where the row was defined (1-based) */
} hgf_account_row;

typedef struct hgf_account_list {
    hgf_account_row *rows;
    int n;
} hgf_account_list;

typedef struct hgf_accounts_opts {
    const char *file_name;            /* for messages and format detection; may be NULL */
    const char *const *default_regions; /* for YAML accounts with "all" or no regions */
    int n_default_regions;
} hgf_accounts_opts;

/* Detects the format (extension .csv, or a first line that starts with 12
 * digits or "account_id,"), then parses and validates every row, including
 * duplicates of the same (account, region). */
int hgf_accounts_parse(const char *text, size_t len, const hgf_accounts_opts *o,
                       hgf_account_list *out, hgf_err *err);
int hgf_accounts_parse_yaml(const char *text, size_t len, const hgf_accounts_opts *o,
                            hgf_account_list *out, hgf_err *err);
int hgf_accounts_parse_csv(const char *text, size_t len, const hgf_accounts_opts *o,
                           hgf_account_list *out, hgf_err *err);
void hgf_accounts_free(hgf_account_list *l);

/* 1 if name is an IAM role name: [\w+=,.@-]{1,64}. */
int hgf_accounts_role_name_valid(const char *name);

/* The role ARN for role into a malloc'd *out: an ARN is checked to be
 * arn:<region's partition>:iam::<12 digits>:role/<path/name>, in any account
 * (a role in account A may read B's registry); a bare role name becomes the
 * role of that name in account_id. field names the input in messages. */
int hgf_accounts_role_arn(const char *role, const char *account_id, const char *region,
                          const char *field, char **out, hgf_err *err);

#endif
