#include "hgfleet/cli.h"
#include "hgfleet/endpoint.h"

#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "Usage: hgfleet images list [--registry REGISTRY_URL] [--repository NAME]\n"
    "                           [--state present|deleted] [--json]\n"
    "\n"
    "Lists the stored catalog: one row per digest, with its tags, state and scan status.\n"
    "--json prints one JSON array of objects with registry, account_id, region,\n"
    "repository, digest, tags, pushed_at, last_scanned_at, size_bytes, media_type,\n"
    "state and scan_status.\n";

/* Keyset pages keep memory flat however large the catalog is. */
static const char PAGE_SQL[] =
    "SELECT c.registry, r.name, i.digest, json_build_object("
    " 'registry', c.registry, 'account_id', c.account_id, 'region', c.region,"
    " 'repository', r.name, 'digest', i.digest,"
    " 'tags', coalesce((SELECT json_agg(t.tag ORDER BY t.tag) FROM image_tags t"
    "                   WHERE t.image_id = i.id), '[]'::json),"
    " 'pushed_at', to_char(i.pushed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
    " 'last_scanned_at', (SELECT to_char(max(s.finished_at) AT TIME ZONE 'UTC',"
    "                     'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM scans s"
    "                     WHERE s.image_id = i.id AND s.status = 'ok'),"
    " 'size_bytes', i.size_bytes, 'media_type', i.media_type,"
    " 'state', CASE WHEN i.deleted_at IS NULL THEN 'present' ELSE 'deleted' END,"
    " 'scan_status', coalesce((SELECT s.status FROM scans s WHERE s.image_id = i.id"
    "                          AND s.status <> 'running' ORDER BY s.id DESC LIMIT 1),"
    "   CASE WHEN EXISTS (SELECT 1 FROM jobs j WHERE j.kind = 'scan'"
    "        AND j.state IN ('queued', 'running') AND j.dedup_key = 'scan:' || c.registry"
    "        || '/' || r.name || '@' || i.digest) THEN 'queued' ELSE 'none' END))::text"
    " FROM images i JOIN repositories r ON r.id = i.repository_id"
    " JOIN connections c ON c.id = r.connection_id"
    " WHERE c.removed_at IS NULL AND ($1::text IS NULL OR c.registry = $1)"
    " AND ($2::text IS NULL OR r.name = $2)"
    " AND ($3::text IS NULL OR (i.deleted_at IS NULL) = ($3 = 'present'))"
    " AND ($4::text IS NULL OR (c.registry, r.name, i.digest) > ($4, $5, $6))"
    " ORDER BY c.registry, r.name, i.digest LIMIT 2000";

typedef struct list_opts {
    const char *registry, *repository, *state;
    int json;
    hgf_registry reg;
} list_opts;

static int parse(int argc, char **argv, list_opts *o)
{
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int has_next = i + 1 < argc;
        if (!strcmp(a, "--json"))
            o->json = 1;
        else if (!strcmp(a, "--registry") && has_next)
            o->registry = argv[++i];
        else if (!strcmp(a, "--repository") && has_next)
            o->repository = argv[++i];
        else if (!strcmp(a, "--state") && has_next)
            o->state = argv[++i];
        else if (!strcmp(a, "--registry") || !strcmp(a, "--repository") || !strcmp(a, "--state"))
            return hgf_cli_usage_error("images list", "%s: needs a value", a);
        else
            return hgf_cli_usage_error("images list", "unexpected argument \"%s\"", a);
    }
    hgf_err err;
    if (o->registry && hgf_endpoint_parse_registry(o->registry, &o->reg, &err))
        return hgf_cli_usage_error("images list", "--registry: %s", err.msg);
    if (o->state && strcmp(o->state, "present") && strcmp(o->state, "deleted"))
        return hgf_cli_usage_error("images list", "--state: expected present or deleted, got \"%s\"",
                                   o->state);
    return 0;
}

static void print_text(json_t *o)
{
    json_t *tags = json_object_get(o, "tags");
    char tagtext[256] = "";
    size_t i;
    json_t *t;
    json_array_foreach(tags, i, t)
    {
        size_t len = strlen(tagtext);
        snprintf(tagtext + len, sizeof tagtext - len, "%s%s", i ? "," : "", json_string_value(t));
    }
    const char *pushed = json_string_value(json_object_get(o, "pushed_at"));
    printf("%-44s %-32.32s %-19.19s %-24.24s %-20s %-8s %s\n",
           json_string_value(json_object_get(o, "registry")),
           json_string_value(json_object_get(o, "repository")),
           json_string_value(json_object_get(o, "digest")), *tagtext ? tagtext : "<untagged>",
           pushed ? pushed : "-", json_string_value(json_object_get(o, "state")),
           json_string_value(json_object_get(o, "scan_status")));
}

static int emit_page(PGresult *r, const list_opts *o, long *count)
{
    for (int i = 0; i < PQntuples(r); i++) {
        const char *text = PQgetvalue(r, i, 3);
        if (o->json) {
            printf("%s\n  %s", *count ? "," : "", text);
        } else {
            json_t *j = json_loads(text, 0, NULL);
            print_text(j);
            json_decref(j);
        }
        (*count)++;
    }
    return PQntuples(r);
}

static int run(hgf_runtime *rt, const list_opts *o)
{
    char k1[256] = "", k2[512] = "", k3[128] = "";
    int have_key = 0, rows;
    long count = 0;
    hgf_err err;
    if (o->json)
        printf("[");
    else
        printf("%-44s %-32s %-19s %-24s %-20s %-8s %s\n", "REGISTRY", "REPOSITORY", "DIGEST",
               "TAGS", "PUSHED", "STATE", "SCAN");
    do {
        const char *p[] = {o->registry ? o->reg.host : NULL, o->repository, o->state,
                           have_key ? k1 : NULL, k2, k3};
        PGresult *r;
        if (hgf_store_exec(rt->store, PAGE_SQL, 6, p, &r, &err)) {
            if (o->json)
                printf("]\n");
            return hgf_cli_fail(&err);
        }
        rows = emit_page(r, o, &count);
        if (rows > 0) {
            snprintf(k1, sizeof k1, "%s", PQgetvalue(r, rows - 1, 0));
            snprintf(k2, sizeof k2, "%s", PQgetvalue(r, rows - 1, 1));
            snprintf(k3, sizeof k3, "%s", PQgetvalue(r, rows - 1, 2));
            have_key = 1;
        }
        PQclear(r);
    } while (rows == 2000);
    printf(o->json ? "%s]\n" : "%s", count && o->json ? "\n" : "");
    if (!o->json)
        fprintf(stderr, "%ld image%s\n", count, count == 1 ? "" : "s");
    return 0;
}

int hgf_cli_images(int argc, char **argv)
{
    if (hgf_cli_wants_help(argc, argv) || (argc >= 2 && !strcmp(argv[1], "help"))) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (argc < 2 || strcmp(argv[1], "list"))
        return hgf_cli_usage_error("images", "expected the command \"list\"");
    list_opts o = {0};
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc;
    hgf_config cfg;
    hgf_runtime rt;
    int code = hgf_cli_open(&cfg, &rt);
    if (code)
        return code;
    code = run(&rt, &o);
    hgf_cli_close(&cfg, &rt);
    return code;
}
