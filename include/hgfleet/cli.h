/* Command-line front ends, one function per command group. Each parses and
 * validates its own arguments before touching the database, prints results
 * on stdout (JSON with --json), logs and progress on stderr, and returns the
 * process exit code: 0 success, 1 the operation failed, 2 usage or input. */
#ifndef HGF_CLI_H
#define HGF_CLI_H

#include <jansson.h>
#include <stdio.h>

#include "hgfleet/config.h"
#include "hgfleet/err.h"
#include "hgfleet/runtime.h"

int hgf_cli_migrate(int argc, char **argv);
int hgf_cli_version(int argc, char **argv);
int hgf_cli_connection(int argc, char **argv);
int hgf_cli_sync(int argc, char **argv);
int hgf_cli_images(int argc, char **argv);
int hgf_cli_demo(int argc, char **argv);
int hgf_cli_serve(int argc, char **argv);
int hgf_cli_jobs(int argc, char **argv);
int hgf_cli_registry(int argc, char **argv);
int hgf_cli_sweep(int argc, char **argv);
int hgf_cli_discover(int argc, char **argv);
int hgf_cli_connection_import(int argc, char **argv);
int hgf_cli_rotate_master_key(int argc, char **argv);

/* What `discover` does once its flags are valid, for `demo`: ListAccounts
 * with the host's credentials, then one connection per ACTIVE account x
 * region assuming role `role` (schedule NULL: daily for new ones). Adds to
 * report (caller-owned) "accounts", "skipped", "created", "updated" and
 * "unchanged"; HGF_EINPUT names a bad role, region list or schedule. */
int hgf_cli_discover_apply(hgf_runtime *rt, const char *role, const char *regions,
                           const char *schedule, json_t *report, hgf_err *err);

/* ---- shared by the commands (src/cli/common.c) ---- */

/* Prints "hgfleet: <msg>" to stderr and returns the exit code for err. */
int hgf_cli_fail(const hgf_err *err);
/* Prints a usage error with a pointer to --help; returns 2. */
int hgf_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* 1 if argv holds -h or --help anywhere (before "--"). */
int hgf_cli_wants_help(int argc, char **argv);

/* Loads the config and opens the runtime; on failure prints why and returns
 * the exit code (2 for a bad variable, 1 for an unreachable database). */
int hgf_cli_open(hgf_config *cfg, hgf_runtime *rt);
void hgf_cli_close(hgf_config *cfg, hgf_runtime *rt);

/* Prints a JSON value on stdout followed by a newline (indent 2). */
void hgf_cli_print_json(json_t *v);

#endif
