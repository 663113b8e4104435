#include "hgfleet/accounts.h"
#include "hgfleet/cli.h"
#include "hgfleet/provision.h"
#include "hgfleet/schedule.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "Usage: hgfleet connection import FILE [options]\n"
    "\n"
    "Creates or updates one connection per (account, region) listed in FILE, either a\n"
    "Cloud Custodian c7n-org accounts.yml:\n"
    "  accounts:\n"
    "    - account_id: \"123456789012\"\n"
    "      name: prod\n"
    "      role: arn:aws:iam::123456789012:role/hgfleet-reader   # or just a role name\n"
    "      external_id: hg-ext-42\n"
    "      regions: [us-east-1, eu-west-1]                      # or \"all\" = --regions\n"
    "      tags: [env:prod]\n"
    "or a CSV (extension .csv, or a first line of account_id,... or 12 digits):\n"
    "  account_id,region[,role_arn,external_id]\n"
    "A role ARN may be in any account of the region's partition (cross-account: the\n"
    "role in account A, granted by B's repository policy); a bare role name is that\n"
    "role in the row's own account. Rows without a role use the host's credentials.\n"
    "Every row is validated first; a malformed file imports nothing and the error names\n"
    "the line and field. New connections get their first sync queued; importing the\n"
    "same file again changes nothing.\n"
    "\n"
    "Options:\n"
    "  --regions R1,R2   regions for accounts with regions \"all\" or none\n"
    "  --schedule SPEC   schedule of the connections (default daily for new ones)\n"
    "  --dry-run         show what would change; write nothing\n"
    "  --json            print the details as JSON\n"
    "  -h, --help        this help\n"
    "\n"
    "Exit codes: 0 done, 1 failed (database down), 2 bad input (nothing imported).\n";

static const char CMD[] = "connection import";

/* The file's size cap: far above any real fleet, far below memory trouble. */
#define MAX_FILE_BYTES (64L * 1024 * 1024)

typedef struct import_opts {
    const char *file, *regions_text, *schedule;
    int json, dry_run;
    char **regions;
    int n_regions;
} import_opts;

static int parse(int argc, char **argv, import_opts *o)
{
    static const struct option longopts[] = {
        {"regions", required_argument, 0, 'g'}, {"schedule", required_argument, 0, 's'},
        {"json", no_argument, 0, 'j'},          {"dry-run", no_argument, 0, 'n'},
        {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case 'g': o->regions_text = optarg; break;
        case 's': o->schedule = optarg; break;
        case 'j': o->json = 1; break;
        case 'n': o->dry_run = 1; break;
        case ':': return hgf_cli_usage_error(CMD, "%s: needs a value", argv[optind - 1]);
        default: return hgf_cli_usage_error(CMD, "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return hgf_cli_usage_error(CMD, "FILE: missing");
    if (argc - optind > 1)
        return hgf_cli_usage_error(CMD, "unexpected argument \"%s\"", argv[optind + 1]);
    o->file = argv[optind];
    return 0;
}

static int read_file(const char *path, hgf_buf *out, hgf_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return hgf_err_set(err, HGF_EINPUT, "FILE: cannot open %s: %s", path, strerror(errno));
    char chunk[65536];
    size_t got;
    int rc = 0;
    while (!rc && (got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if ((long)(out->len + got) > MAX_FILE_BYTES)
            rc = hgf_err_set(err, HGF_EINPUT, "FILE: %s is larger than %ld bytes", path,
                             MAX_FILE_BYTES);
        else if (hgf_buf_append(out, chunk, got))
            rc = hgf_err_set(err, HGF_ENOMEM, "out of memory");
    }
    if (!rc && ferror(f))
        rc = hgf_err_set(err, HGF_EINPUT, "FILE: cannot read %s", path);
    fclose(f);
    return rc;
}

/* Everything that can be checked without the database, in order. */
static int prepare(import_opts *o, hgf_account_list *l, hgf_err *err)
{
    int rc = 0;
    hgf_schedule s;
    if (o->regions_text)
        rc = hgf_provision_parse_regions(o->regions_text, "--regions", &o->regions,
                                         &o->n_regions, err);
    if (!rc && o->schedule)
        rc = hgf_schedule_parse(o->schedule, &s, err);
    hgf_buf text = HGF_BUF_INIT;
    if (!rc)
        rc = read_file(o->file, &text, err);
    const char *base = strrchr(o->file, '/');
    hgf_accounts_opts ao = {.file_name = base ? base + 1 : o->file,
                            .default_regions = (const char *const *)o->regions,
                            .n_default_regions = o->n_regions};
    if (!rc)
        rc = hgf_accounts_parse(hgf_buf_str(&text), text.len, &ao, l, err);
    hgf_buf_free(&text);
    return rc;
}

int hgf_cli_connection_import(int argc, char **argv)
{
    if (hgf_cli_wants_help(argc, argv)) {
        fputs(USAGE, stdout);
        return 0;
    }
    import_opts o = {0};
    int code = parse(argc, argv, &o);
    if (code)
        return code;
    hgf_err err;
    hgf_err_clear(&err);
    hgf_account_list l = {0};
    if (prepare(&o, &l, &err)) {
        hgf_accounts_free(&l);
        free(o.regions);
        return hgf_cli_fail(&err);
    }
    hgf_config cfg;
    hgf_runtime rt;
    code = hgf_cli_open(&cfg, &rt);
    if (!code) {
        json_t *report = json_object();
        json_object_set_new(report, "rows", json_integer(l.n));
        hgf_provision_opts po = {.schedule = o.schedule, .dry_run = o.dry_run};
        if (hgf_provision_apply(&rt, &l, &po, report, &err))
            code = hgf_cli_fail(&err);
        else if (o.json)
            hgf_cli_print_json(report);
        else
            hgf_provision_print(report, o.dry_run);
        json_decref(report);
        hgf_cli_close(&cfg, &rt);
    }
    hgf_accounts_free(&l);
    free(o.regions);
    return code;
}
