#include "hgfleet/cli.h"
#include "hgfleet/rekey.h"
#include "hgfleet/store.h"

#include <ev.h>
#include <stdlib.h>
#include <string.h>

#define CMD "rotate-master-key"
#define NEW_KEY_VAR "HGFLEET_NEW_MASTER_KEY"

static const char USAGE[] =
    "Usage: hgfleet rotate-master-key [--new-key-file FILE|-] [--dry-run] [--json]\n"
    "\n"
    "Re-encrypts every stored static secret (the secret access keys of all\n"
    "connections, removed ones included) from the current master key to a new one,\n"
    "in one database transaction: a crash or an error leaves every secret as it was.\n"
    "\n"
    "The old key is the current HGFLEET_MASTER_KEY (or HGFLEET_MASTER_KEY_FILE).\n"
    "The new key, 32 random bytes in base64 (openssl rand -base64 32), comes from\n"
    "--new-key-file, or else from HGFLEET_NEW_MASTER_KEY_FILE or\n"
    "HGFLEET_NEW_MASTER_KEY; keys are never taken from the command line. Secrets\n"
    "already under the new key are left alone, so an interrupted rotation can be\n"
    "run again.\n"
    "\n"
    "Options:\n"
    "  --new-key-file FILE   read the new key from FILE ('-' reads stdin)\n"
    "  --dry-run             check that every secret opens with the old key, then\n"
    "                        roll back: nothing changes\n"
    "  --json                print {\"old_key_id\", \"new_key_id\",\n"
    "                        \"connections_reencrypted\", \"already_new_key\", \"dry_run\"}\n"
    "  -h, --help            this help\n"
    "\n"
    "Then set HGFLEET_MASTER_KEY to the new key in every replica and restart them.\n"
    "Until a replica restarts, its static-key syncs fail with \"sealed with key\n"
    "<new key id>\" and are retried. Key ids are the first 8 hex digits of the\n"
    "key's SHA-256, never the key. See docs/reliability.md.\n"
    "\n"
    "Exit codes: 0 rotated, 1 failed (the message says whether anything changed),\n"
    "2 bad usage or key.\n";

typedef struct rotate_opts {
    const char *new_key_file;
    int dry_run, json;
} rotate_opts;

static int parse(int argc, char **argv, rotate_opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json"))
            o->json = 1;
        else if (!strcmp(a, "--dry-run"))
            o->dry_run = 1;
        else if (!strcmp(a, "--new-key-file") && i + 1 < argc && !o->new_key_file)
            o->new_key_file = argv[++i];
        else if (!strcmp(a, "--new-key-file"))
            return hgf_cli_usage_error(CMD, "--new-key-file: %s",
                                       o->new_key_file ? "given twice" : "needs a FILE (or -)");
        else if (!strncmp(a, "--new-key", 9) || !strncmp(a, "--key", 5))
            return hgf_cli_usage_error(CMD, "%.40s: keys are never taken from the command line; "
                                       "use --new-key-file FILE", a);
        else
            return hgf_cli_usage_error(CMD, "unexpected argument \"%.200s\"", a);
    }
    return 0;
}

/* The new key's text, from the flag or the environment; NULL with err set
 * when missing, ambiguous or unreadable. *field names its source. */
static char *new_key_text(const rotate_opts *o, const char **field, hgf_err *err)
{
    const char *env = getenv(NEW_KEY_VAR), *env_file = getenv(NEW_KEY_VAR "_FILE");
    int env_set = (env && *env) || (env_file && *env_file);
    if (o->new_key_file && env_set) {
        hgf_err_set(err, HGF_EINPUT, "--new-key-file: " NEW_KEY_VAR "[_FILE] is set too; give the "
                                     "new key one way only");
        return NULL;
    }
    if (o->new_key_file) {
        *field = "--new-key-file";
        return hgf_config_read_secret_file(o->new_key_file, *field, err);
    }
    *field = env_file && *env_file ? NEW_KEY_VAR "_FILE" : NEW_KEY_VAR;
    char *text = hgf_config_secret_env(NEW_KEY_VAR, err);
    if (!text && !err->code)
        hgf_err_set(err, HGF_EINPUT, "--new-key-file: required (or " NEW_KEY_VAR "[_FILE]): "
                                     "the new master key, e.g. from openssl rand -base64 32");
    return text;
}

static int load_new_key(const rotate_opts *o, hgf_secret_key *key, hgf_err *err)
{
    const char *field = "--new-key-file";
    char *text = new_key_text(o, &field, err);
    if (!text)
        return err->code ? err->code : HGF_EINPUT;
    int rc = hgf_secret_key_parse(text, field, key, err);
    hgf_secret_wipe(text, strlen(text));
    free(text);
    return rc;
}

/* Both keys, checked before any database work (exit 2 on a bad one). */
static int load_keys(const rotate_opts *o, hgf_config *cfg, hgf_secret_key *new_key,
                     hgf_err *err)
{
    int rc = hgf_config_load(cfg, err);
    if (!rc && !cfg->has_master_key)
        rc = hgf_err_set(err, HGF_EINPUT, "HGFLEET_MASTER_KEY: required: it is the old key "
                                          "that the stored secrets are sealed with");
    if (!rc)
        rc = load_new_key(o, new_key, err);
    if (!rc && !memcmp(new_key->bytes, cfg->master_key.bytes, HGF_SECRET_KEY_LEN))
        rc = hgf_err_set(err, HGF_EINPUT, "%s: the new key is the current HGFLEET_MASTER_KEY",
                         o->new_key_file ? "--new-key-file" : NEW_KEY_VAR);
    return rc;
}

static void report(const rotate_opts *o, const hgf_secret_key *old_key,
                   const hgf_secret_key *new_key, const hgf_rekey_result *res)
{
    if (o->json) {
        json_t *j = json_pack("{s:s, s:s, s:i, s:i, s:b}", "old_key_id", old_key->id,
                              "new_key_id", new_key->id, "connections_reencrypted",
                              res->reencrypted, "already_new_key", res->already_new, "dry_run",
                              o->dry_run);
        hgf_cli_print_json(j);
        json_decref(j);
        return;
    }
    printf("%s %d connection secret(s) from master key %s to %s (%d already under the new "
           "key)\n",
           o->dry_run ? "dry run: would re-encrypt" : "re-encrypted", res->reencrypted,
           old_key->id, new_key->id, res->already_new);
    if (!o->dry_run)
        printf("next: set HGFLEET_MASTER_KEY to the new key (id %s) in every replica and "
               "restart them\n",
               new_key->id);
}

static int rotate(const rotate_opts *o, const hgf_config *cfg, const hgf_secret_key *new_key)
{
    hgf_err err;
    hgf_err_clear(&err);
    hgf_store *s = hgf_store_open(EV_DEFAULT, cfg->database_url, &err);
    if (!s) {
        if (err.code == HGF_EINPUT) /* never exit 2 for an unreachable database */
            err.code = HGF_EFAIL;
        return hgf_cli_fail(&err);
    }
    hgf_rekey_result res;
    int rc = hgf_rekey_connections(s, &cfg->master_key, new_key, o->dry_run, &res, &err);
    hgf_store_close(s);
    if (rc)
        return hgf_cli_fail(&err);
    report(o, &cfg->master_key, new_key, &res);
    return 0;
}

int hgf_cli_rotate_master_key(int argc, char **argv)
{
    if (hgf_cli_wants_help(argc, argv)) {
        fputs(USAGE, stdout);
        return 0;
    }
    rotate_opts o = {0};
    int code = parse(argc, argv, &o);
    if (code)
        return code;
    hgf_config cfg;
    hgf_secret_key new_key;
    hgf_err err;
    hgf_err_clear(&err);
    memset(&new_key, 0, sizeof new_key);
    if (load_keys(&o, &cfg, &new_key, &err))
        code = hgf_cli_fail(&err);
    else
        code = rotate(&o, &cfg, &new_key);
    hgf_secret_wipe(&new_key, sizeof new_key);
    hgf_config_free(&cfg);
    return code;
}
