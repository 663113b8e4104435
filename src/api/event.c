#include "hgfleet/event.h"
#include "hgfleet/endpoint.h"
#include "hgfleet/registry.h"
#include "hgfleet/timeutil.h"

#include <ctype.h>
#include <string.h>

static const char *field(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int valid_tag(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 300)
        return 0;
    for (const char *p = t; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("._-", *p))
            return 0;
    return 1;
}

/* ECR's RepositoryName: the distribution spec's grammar, 2 to 256 long. A
 * name such as "../x" would otherwise become a path in the scan's registry
 * URL. */
static int valid_repo(const char *r)
{
    return strlen(r) >= 2 && hgf_registry_valid_repository(r);
}

/* NULL when the image action's fields are valid; else the bad field. */
static const char *check_image_action(json_t *root, json_t *d, hgf_ecr_event *ev)
{
    ev->account = field(root, "account");
    ev->region = field(root, "region");
    ev->time = field(root, "time");
    ev->action = field(d, "action-type");
    ev->result = field(d, "result");
    ev->repo = field(d, "repository-name");
    ev->digest = field(d, "image-digest");
    ev->tag = field(d, "image-tag");
    if (!ev->account || strlen(ev->account) != 12 || strspn(ev->account, "0123456789") != 12)
        return "account";
    if (!ev->region || !hgf_endpoint_region_valid(ev->region))
        return "region";
    if (!ev->action)
        return "detail.action-type";
    if (!ev->result)
        return "detail.result";
    /* A failed push or delete is ignored (200), whatever else it lacks. */
    if (strcmp(ev->result, "SUCCESS"))
        return NULL;
    if (!ev->repo || !valid_repo(ev->repo))
        return "detail.repository-name";
    if (!ev->digest || !hgf_registry_is_digest(ev->digest))
        return "detail.image-digest";
    json_t *tag = json_object_get(d, "image-tag");
    if (tag && !json_is_null(tag) && (!ev->tag || !valid_tag(ev->tag)))
        return "detail.image-tag";
    json_t *time = json_object_get(root, "time");
    if ((time && !json_is_null(time) && !ev->time) || (ev->time && hgf_time_parse_iso(ev->time) < 0))
        return "time";
    return NULL;
}

static const char *check(json_t *root, hgf_ecr_event *ev)
{
    if (!json_is_object(root))
        return "body (expected a JSON object)";
    const char *dt = field(root, "detail-type");
    if (!dt)
        return "detail-type";
    const char *src = field(root, "source");
    if (!src)
        return "source";
    ev->image_action = !strcmp(dt, "ECR Image Action") && !strcmp(src, "aws.ecr");
    if (!ev->image_action)
        return NULL;
    json_t *d = json_object_get(root, "detail");
    if (!json_is_object(d))
        return "detail";
    return check_image_action(root, d, ev);
}

int hgf_event_parse(json_t *root, hgf_ecr_event *out, hgf_err *err)
{
    memset(out, 0, sizeof *out);
    out->bad_field = check(root, out);
    if (out->bad_field)
        return hgf_err_set(err, HGF_EINPUT, "missing or invalid field: %s", out->bad_field);
    return 0;
}
