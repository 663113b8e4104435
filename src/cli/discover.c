#include "hgfleet/accounts.h"
#include "hgfleet/cli.h"
#include "hgfleet/orgs.h"
#include "hgfleet/provision.h"
#include "hgfleet/schedule.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "Usage: hgfleet discover --org-role-name NAME --regions R1,R2 [options]\n"
    "\n"
    "Lists the organization's accounts (AWS Organizations ListAccounts, with the host's\n"
    "credentials) and makes one connection per ACTIVE account and region that assumes\n"
    "arn:<partition>:iam::<account>:role/NAME. New connections get their first sync\n"
    "queued; existing ones are updated when their role changed. Suspended and closing\n"
    "accounts are skipped and reported. Running it again creates nothing new.\n"
    "\n"
    "Options:\n"
    "  --org-role-name NAME   the role every member account trusts ([A-Za-z0-9+=,.@_-]{1,64})\n"
    "  --regions R1,R2        the regions to cover in every account\n"
    "  --schedule SPEC        schedule of the connections (default daily for new ones)\n"
    "  --external-id ID       the ExternalId the roles' trust policies require\n"
    "  --dry-run              show what would change; write nothing\n"
    "  --json                 print the details as JSON\n"
    "  -h, --help             this help\n"
    "\n"
    "Exit codes: 0 done, 1 failed (ListAccounts refused, database down), 2 bad input.\n";

static const char CMD[] = "discover";

typedef struct disc_opts {
    const char *role, *regions_text, *schedule, *external_id;
    int json, dry_run;
    char **regions;
    int n_regions;
} disc_opts;

static int parse(int argc, char **argv, disc_opts *o)
{
    static const struct option longopts[] = {
        {"org-role-name", required_argument, 0, 'r'}, {"regions", required_argument, 0, 'g'},
        {"schedule", required_argument, 0, 's'},      {"external-id", required_argument, 0, 'e'},
        {"json", no_argument, 0, 'j'},                {"dry-run", no_argument, 0, 'n'},
        {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case 'r': o->role = optarg; break;
        case 'g': o->regions_text = optarg; break;
        case 's': o->schedule = optarg; break;
        case 'e': o->external_id = optarg; break;
        case 'j': o->json = 1; break;
        case 'n': o->dry_run = 1; break;
        case ':': return hgf_cli_usage_error(CMD, "%s: needs a value", argv[optind - 1]);
        default: return hgf_cli_usage_error(CMD, "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return hgf_cli_usage_error(CMD, "unexpected argument \"%s\"", argv[optind]);
    if (!o->role)
        return hgf_cli_usage_error(CMD, "--org-role-name: required");
    if (!o->regions_text)
        return hgf_cli_usage_error(CMD, "--regions: required");
    return 0;
}

static int validate(disc_opts *o, hgf_err *err)
{
    if (!hgf_accounts_role_name_valid(o->role))
        return hgf_err_set(err, HGF_EINPUT,
                           "--org-role-name: expected a role name of 1 to 64 characters "
                           "[A-Za-z0-9+=,.@_-], got \"%.80s\"", o->role);
    int rc = hgf_provision_parse_regions(o->regions_text, "--regions", &o->regions,
                                         &o->n_regions, err);
    hgf_schedule s;
    if (!rc && o->schedule)
        rc = hgf_schedule_parse(o->schedule, &s, err);
    size_t n = o->external_id ? strlen(o->external_id) : 2;
    if (!rc && o->external_id && (n < 2 || n > 1224 ||
                strspn(o->external_id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                       "0123456789_+=,.@:/-") != n))
        rc = hgf_err_set(err, HGF_EINPUT,
                         "--external-id: expected 2 to 1224 characters [A-Za-z0-9+=,.@:/_-]");
    return rc;
}

static json_t *skipped_entry(const hgf_org_account *a)
{
    char reason[64];
    snprintf(reason, sizeof reason, "account status is %s", a->status);
    return json_pack("{s:s, s:s, s:s, s:s}", "account_id", a->id, "name", a->name, "status",
                     a->status, "reason", reason);
}

/* ACTIVE accounts x regions become rows; the others go to report.skipped. */
static int build_rows(const disc_opts *o, const hgf_org_account *acc, int n, hgf_account_list *l,
                      json_t *skipped, hgf_err *err)
{
    l->rows = calloc((size_t)n * (size_t)o->n_regions + 1, sizeof *l->rows);
    l->n = 0;
    if (!l->rows)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        if (strcmp(acc[i].status, "ACTIVE")) {
            json_array_append_new(skipped, skipped_entry(&acc[i]));
            continue;
        }
        for (int g = 0; g < o->n_regions; g++) {
            hgf_account_row *r = &l->rows[l->n++];
            snprintf(r->account_id, sizeof r->account_id, "%s", acc[i].id);
            snprintf(r->region, sizeof r->region, "%s", o->regions[g]);
            size_t len = strlen(acc[i].name) + strlen(o->regions[g]) + 2;
            r->name = malloc(len);
            if (r->name)
                snprintf(r->name, len, "%s/%s", *acc[i].name ? acc[i].name : acc[i].id,
                         o->regions[g]);
            r->external_id = o->external_id ? strdup(o->external_id) : NULL;
            int rc = hgf_accounts_role_arn(o->role, acc[i].id, o->regions[g], "--org-role-name",
                                           &r->role_arn, err);
            if (rc)
                return rc;
            if (!r->name || (o->external_id && !r->external_id))
                return hgf_err_set(err, HGF_ENOMEM, "out of memory");
        }
    }
    return 0;
}

static int run(hgf_runtime *rt, const disc_opts *o, json_t *report, hgf_err *err)
{
    hgf_org_account *acc = NULL;
    int n = 0;
    int rc = hgf_orgs_list_accounts(rt, o->regions[0], &acc, &n, err);
    if (rc)
        return rc;
    json_t *skipped = json_array();
    json_object_set_new(report, "accounts", json_integer(n));
    json_object_set_new(report, "skipped", skipped);
    hgf_account_list l = {0};
    rc = build_rows(o, acc, n, &l, skipped, err);
    hgf_provision_opts po = {.schedule = o->schedule, .dry_run = o->dry_run};
    if (!rc)
        rc = hgf_provision_apply(rt, &l, &po, report, err);
    hgf_accounts_free(&l);
    hgf_orgs_free_accounts(acc, n);
    return rc;
}

int hgf_cli_discover_apply(hgf_runtime *rt, const char *role, const char *regions,
                           const char *schedule, json_t *report, hgf_err *err)
{
    disc_opts o = {.role = role, .regions_text = regions, .schedule = schedule};
    int rc = validate(&o, err);
    if (!rc)
        rc = run(rt, &o, report, err);
    free(o.regions);
    return rc;
}

int hgf_cli_discover(int argc, char **argv)
{
    if (hgf_cli_wants_help(argc, argv)) {
        fputs(USAGE, stdout);
        return 0;
    }
    disc_opts o = {0};
    int code = parse(argc, argv, &o);
    if (code)
        return code;
    hgf_err err;
    hgf_err_clear(&err);
    if (validate(&o, &err)) {
        free(o.regions);
        return hgf_cli_fail(&err);
    }
    hgf_config cfg;
    hgf_runtime rt;
    code = hgf_cli_open(&cfg, &rt);
    if (!code) {
        json_t *report = json_object();
        if (run(&rt, &o, report, &err))
            code = hgf_cli_fail(&err);
        else if (o.json)
            hgf_cli_print_json(report);
        else
            hgf_provision_print(report, o.dry_run);
        json_decref(report);
        hgf_cli_close(&cfg, &rt);
    }
    free(o.regions);
    return code;
}
