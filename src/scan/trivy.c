/* trivy: `trivy image --format json` (report SchemaVersion 2). Registry
 * credentials go in TRIVY_USERNAME / TRIVY_PASSWORD in the child's
 * environment, which trivy reads like its --username/--password flags. */
#include "scan_internal.h"

#include <stdio.h>

int hgf_scan_trivy_cmd(const scan_job *j, scan_cmd *c)
{
    static const char *const deny[] = {"TRIVY_USERNAME", "TRIVY_PASSWORD",
                                       "TRIVY_REGISTRY_TOKEN", NULL};
    const hgf_scanner *s = j->s;
    if (hgf_scan_cmd_arg(c, "%s", s->tool) || hgf_scan_cmd_arg(c, "image") ||
        hgf_scan_cmd_arg(c, "--format") || hgf_scan_cmd_arg(c, "json") ||
        hgf_scan_cmd_arg(c, "--quiet") || hgf_scan_cmd_arg(c, "--timeout") ||
        hgf_scan_cmd_arg(c, "%ds", s->timeout_s) ||
        hgf_scan_cmd_arg(c, "%s/%s@%s", j->host, j->repository, j->digest))
        return HGF_ENOMEM;
    if (hgf_scan_cmd_base_env(c, s, "TRIVY_", deny))
        return HGF_ENOMEM;
    if (j->username && (hgf_scan_cmd_env(c, "TRIVY_USERNAME", j->username) ||
                        hgf_scan_cmd_env(c, "TRIVY_PASSWORD", j->password)))
        return HGF_ENOMEM;
    return 0;
}

static int count_result(json_t *result, hgf_scan_summary *sum, const char **why)
{
    if (!json_is_object(result)) {
        *why = "a Results entry is not an object";
        return -1;
    }
    json_t *vulns = json_object_get(result, "Vulnerabilities");
    if (!vulns || json_is_null(vulns))
        return 0;  /* a target with nothing found has no Vulnerabilities */
    if (!json_is_array(vulns)) {
        *why = "Vulnerabilities is not an array";
        return -1;
    }
    size_t i;
    json_t *v;
    json_array_foreach(vulns, i, v) {
        if (!json_is_object(v)) {
            *why = "a vulnerability is not an object";
            return -1;
        }
        hgf_scan_count(sum, json_string_value(json_object_get(v, "Severity")));
    }
    return 0;
}

int hgf_scan_trivy_parse(json_t *root, hgf_scan_summary *sum, char *version, size_t vn,
                         const char **why)
{
    json_t *schema = json_is_object(root) ? json_object_get(root, "SchemaVersion") : NULL;
    if (!json_is_integer(schema)) {
        *why = "not a trivy JSON report: no SchemaVersion";
        return -1;
    }
    if (json_integer_value(schema) != 2) {
        *why = "only SchemaVersion 2 is understood";
        return -1;
    }
    json_t *results = json_object_get(root, "Results");
    if (results && !json_is_null(results) && !json_is_array(results)) {
        *why = "Results is not an array";
        return -1;
    }
    size_t i;
    json_t *r;
    json_array_foreach(results, i, r) {
        if (count_result(r, sum, why))
            return -1;
    }
    /* Newer releases name themselves in the report. */
    const char *v = json_string_value(json_object_get(json_object_get(root, "Trivy"), "Version"));
    if (v && vn)
        snprintf(version, vn, "trivy %s", v);
    return 0;
}
