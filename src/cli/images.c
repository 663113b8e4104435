#include "hgfleet/catalog.h"
#include "hgfleet/cli.h"

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

/* Pages keep memory flat however large the catalog is. */
#define PAGE_ROWS 2000

typedef struct list_opts {
    hgf_catalog_images_filter filter;
    int json;
    hgf_catalog_query q;   /* the next page to read */
} list_opts;

static int parse(int argc, char **argv, list_opts *o)
{
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int has_next = i + 1 < argc;
        if (!strcmp(a, "--json"))
            o->json = 1;
        else if (!strcmp(a, "--registry") && has_next)
            o->filter.registry = argv[++i];
        else if (!strcmp(a, "--repository") && has_next)
            o->filter.repository = argv[++i];
        else if (!strcmp(a, "--state") && has_next)
            o->filter.state = argv[++i];
        else if (!strcmp(a, "--registry") || !strcmp(a, "--repository") || !strcmp(a, "--state"))
            return hgf_cli_usage_error("images list", "%s: needs a value", a);
        else
            return hgf_cli_usage_error("images list", "unexpected argument \"%s\"", a);
    }
    hgf_err err;
    o->filter.limit = PAGE_ROWS;
    if (hgf_catalog_images(&o->q, &o->filter, "--", &err))
        return hgf_cli_usage_error("images list", "%s", err.msg);
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

static size_t emit_page(json_t *page, const list_opts *o, long *count)
{
    size_t i;
    json_t *img;
    json_array_foreach(page, i, img)
    {
        if (o->json) {
            char *text = json_dumps(img, JSON_COMPACT | JSON_PRESERVE_ORDER);
            printf("%s\n  %s", *count ? "," : "", text ? text : "null");
            free(text);
        } else {
            print_text(img);
        }
        (*count)++;
    }
    return json_array_size(page);
}

static int run(hgf_runtime *rt, list_opts *o)
{
    long count = 0;
    size_t rows;
    hgf_err err;
    if (o->json)
        printf("[");
    else
        printf("%-44s %-32s %-19s %-24s %-20s %-8s %s\n", "REGISTRY", "REPOSITORY", "DIGEST",
               "TAGS", "PUSHED", "STATE", "SCAN");
    do {
        json_t *page = NULL;
        int rc = hgf_catalog_exec(rt->store, &o->q, &page, &err);
        rows = rc ? 0 : emit_page(page, o, &count);
        if (!rc && rows)
            rc = hgf_catalog_images_after(&o->q, json_array_get(page, rows - 1), &err);
        json_decref(page);
        if (rc) {
            if (o->json)
                printf("]\n");
            return hgf_cli_fail(&err);
        }
    } while (rows == PAGE_ROWS);
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
    list_opts o;
    memset(&o, 0, sizeof o);
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
