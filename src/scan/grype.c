/* grype: `grype registry:<ref> -o json` (pulls straight from the registry,
 * no container daemon). Credentials go in GRYPE_REGISTRY_AUTH_* in the
 * child's environment, scoped to the registry with ..._AUTHORITY. */
#include "scan_internal.h"

#include <stdio.h>

int hgf_scan_grype_cmd(const scan_job *j, scan_cmd *c)
{
    static const char *const deny[] = {"GRYPE_REGISTRY_AUTH_", NULL};
    const hgf_scanner *s = j->s;
    if (hgf_scan_cmd_arg(c, "%s", s->tool) ||
        hgf_scan_cmd_arg(c, "registry:%s/%s@%s", j->host, j->repository, j->digest) ||
        hgf_scan_cmd_arg(c, "-o") || hgf_scan_cmd_arg(c, "json"))
        return HGF_ENOMEM;
    if (hgf_scan_cmd_base_env(c, s, "GRYPE_", deny))
        return HGF_ENOMEM;
    if (j->username && (hgf_scan_cmd_env(c, "GRYPE_REGISTRY_AUTH_AUTHORITY", j->host) ||
                        hgf_scan_cmd_env(c, "GRYPE_REGISTRY_AUTH_USERNAME", j->username) ||
                        hgf_scan_cmd_env(c, "GRYPE_REGISTRY_AUTH_PASSWORD", j->password)))
        return HGF_ENOMEM;
    return 0;
}

int hgf_scan_grype_parse(json_t *root, hgf_scan_summary *sum, char *version, size_t vn,
                         const char **why)
{
    json_t *matches = json_is_object(root) ? json_object_get(root, "matches") : NULL;
    if (!json_is_array(matches)) {
        *why = "not a grype JSON report: no matches array";
        return -1;
    }
    size_t i;
    json_t *m;
    json_array_foreach(matches, i, m) {
        json_t *vuln = json_object_get(m, "vulnerability");
        if (!json_is_object(vuln)) {
            *why = "a match has no vulnerability object";
            return -1;
        }
        hgf_scan_count(sum, json_string_value(json_object_get(vuln, "severity")));
    }
    json_t *d = json_object_get(root, "descriptor");
    const char *name = json_string_value(json_object_get(d, "name"));
    const char *v = json_string_value(json_object_get(d, "version"));
    if (name && v && vn)
        snprintf(version, vn, "%s %s", name, v);
    return 0;
}
