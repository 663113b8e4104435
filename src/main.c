/* hgfleet: the ECR fleet scheduler. main only dispatches; each command group
 * lives in src/cli/. */
#include "hgfleet/cli.h"
#include "hgfleet/log.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

static const char USAGE[] =
    "Usage: hgfleet <command> [options]\n"
    "\n"
    "Keeps every ECR registry (account x region) of an AWS organization synced and scanned.\n"
    "\n"
    "Commands:\n"
    "  migrate                         apply database migrations\n"
    "  serve                           run the daemon (HTTP, scheduler, workers)\n"
    "  connection COMMAND              manage registry connections: add, list, show,\n"
    "                                  update, test (diagnose), import, remove\n"
    "  discover                        make connections for an AWS organization\n"
    "  sync [ID|REGISTRY...|--all]     sync catalogs (--wait to run them here)\n"
    "  images list                     list the stored catalog\n"
    "  registry manifest|config URL    inspect an image in any v2 registry\n"
    "  jobs list                       list the job queue\n"
    "  sweep --wait|list|show          org-wide sync, scan and report\n"
    "  demo                            sync a simulated organization end to end\n"
    "  rotate-master-key               re-encrypt stored secrets under a new master key\n"
    "  version                         print the version\n"
    "\n"
    "Every command takes --help. Configuration comes from the environment\n"
    "(HGFLEET_DATABASE_URL, HGFLEET_MASTER_KEY, AWS_*); see docs/architecture.md.\n"
    "Exit codes: 0 success, 1 the operation failed, 2 usage or input error.\n";

typedef int (*command_fn)(int, char **);

static const struct {
    const char *name;
    command_fn fn;
} COMMANDS[] = {
    {"migrate", hgf_cli_migrate}, {"connection", hgf_cli_connection}, {"sync", hgf_cli_sync},
    {"images", hgf_cli_images},   {"demo", hgf_cli_demo},             {"version", hgf_cli_version},
    {"serve", hgf_cli_serve},     {"jobs", hgf_cli_jobs},
    {"registry", hgf_cli_registry}, {"discover", hgf_cli_discover},
    {"sweep", hgf_cli_sweep},
    {"rotate-master-key", hgf_cli_rotate_master_key},
};

static int asks_help_or_version(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "version") || !strcmp(argv[1], "--version"))
        return 1;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h") || !strcmp(argv[i], "help"))
            return 1;
    return 0;
}

int main(int argc, char **argv)
{
    /* Core dumps would hold decrypted secrets. */
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    hgf_err err;
    hgf_err_clear(&err);
    if (hgf_log_init_from_env(&err)) {
        fprintf(stderr, "hgfleet: %s\n", err.msg);
        /* A bad setting is input: only help and version still run. */
        if (!asks_help_or_version(argc, argv))
            return 2;
    }
    if (argc < 2) {
        fputs(USAGE, stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version"))
        return hgf_cli_version(1, argv + 1);
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++) {
        if (!strcmp(argv[1], COMMANDS[i].name)) {
            curl_global_init(CURL_GLOBAL_DEFAULT);
            int rc = COMMANDS[i].fn(argc - 1, argv + 1);
            curl_global_cleanup();
            return rc;
        }
    }
    fprintf(stderr, "hgfleet: unknown command \"%s\"\n\n%s", argv[1], USAGE);
    return 2;
}
