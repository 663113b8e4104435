#include "hgfleet/cli.h"
#include "hgfleet/migrations.h"

#include <curl/curl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <openssl/opensslv.h>
#include <string.h>

int hgf_cli_migrate(int argc, char **argv)
{
    if (hgf_cli_wants_help(argc, argv)) {
        printf("Usage: hgfleet migrate\n\n"
               "Applies the database migrations this binary carries (%d) that are not yet\n"
               "applied. Safe to run again and from several replicas at once.\n",
               hgf_migrations_count);
        return 0;
    }
    if (argc > 1)
        return hgf_cli_usage_error("migrate", "unexpected argument \"%s\"", argv[1]);
    hgf_config cfg;
    hgf_runtime rt;
    int code = hgf_cli_open(&cfg, &rt);
    if (code)
        return code;
    hgf_err err;
    hgf_err_clear(&err);
    int applied = 0;
    if (hgf_store_migrate(rt.store, &applied, &err))
        code = hgf_cli_fail(&err);
    else
        printf("migrations: %d applied, schema at version %d\n", applied,
               hgf_migrations[hgf_migrations_count - 1].version);
    hgf_cli_close(&cfg, &rt);
    return code;
}

int hgf_cli_version(int argc, char **argv)
{
    if (hgf_cli_wants_help(argc, argv)) {
        printf("Usage: hgfleet version [--json]\n");
        return 0;
    }
    int json = argc > 1 && !strcmp(argv[1], "--json");
    if (argc > 1 && !json)
        return hgf_cli_usage_error("version", "unexpected argument \"%s\"", argv[1]);
    curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
    if (json) {
        json_t *o = json_pack("{s:s, s:i, s:s, s:s, s:s, s:i}", "version", HGF_VERSION,
                              "schema_version", hgf_migrations[hgf_migrations_count - 1].version,
                              "curl", cv->version, "openssl", OPENSSL_VERSION_STR, "jansson",
                              JANSSON_VERSION, "libpq", PQlibVersion());
        hgf_cli_print_json(o);
        json_decref(o);
    } else {
        printf("hgfleet %s (schema %d; curl %s, OpenSSL %s, jansson %s, libpq %d)\n", HGF_VERSION,
               hgf_migrations[hgf_migrations_count - 1].version, cv->version, OPENSSL_VERSION_STR,
               JANSSON_VERSION, PQlibVersion());
    }
    return 0;
}
