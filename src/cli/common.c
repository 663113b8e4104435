#include "hgfleet/cli.h"
#include "hgfleet/log.h"

#include <stdarg.h>
#include <string.h>

int hgf_cli_fail(const hgf_err *err)
{
    fprintf(stderr, "hgfleet: %s\n", err->msg[0] ? err->msg : "failed");
    return hgf_err_exit_code(err->code ? err->code : HGF_EFAIL);
}

int hgf_cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "hgfleet %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nRun 'hgfleet %s --help' for usage.\n", cmd);
    va_end(ap);
    return 2;
}

int hgf_cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--"))
            break;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return 1;
    }
    return 0;
}

int hgf_cli_open(hgf_config *cfg, hgf_runtime *rt)
{
    hgf_err err;
    hgf_err_clear(&err);
    memset(rt, 0, sizeof *rt);
    if (hgf_config_load(cfg, &err) || hgf_runtime_check(cfg, &err)) {
        hgf_config_free(cfg);
        return hgf_cli_fail(&err);
    }
    if (hgf_runtime_open(rt, cfg, &err)) {
        hgf_config_free(cfg);
        if (err.code == HGF_EINPUT) /* never exit 2 for an unreachable database */
            err.code = HGF_EFAIL;
        return hgf_cli_fail(&err);
    }
    return 0;
}

void hgf_cli_close(hgf_config *cfg, hgf_runtime *rt)
{
    hgf_runtime_close(rt);
    hgf_config_free(cfg);
}

void hgf_cli_print_json(json_t *v)
{
    json_dumpf(v, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', stdout);
    fflush(stdout);
}
