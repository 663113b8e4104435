#include "hgfleet/posture.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define DAY_S 86400

/* Duplicate keys make a policy ambiguous (which Principal did AWS read?),
 * so such a text is not judged. */
static json_t *load(const char *what, const char *text, size_t len, hgf_err *err)
{
    json_error_t jerr;
    json_t *j = text ? json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (!j)
        hgf_err_set(err, HGF_EINPUT, "%s: not JSON (%s)", what, text ? jerr.text : "no text");
    else if (!json_is_object(j)) {
        json_decref(j);
        j = NULL;
        hgf_err_set(err, HGF_EINPUT, "%s: expected a JSON object", what);
    }
    return j;
}

static int is_str(const json_t *v, const char *want)
{
    return json_is_string(v) && !strcasecmp(json_string_value(v), want);
}

/* ---- repository policies --------------------------------------------- */

/* "*" itself, or an array holding it. */
static int has_star(const json_t *v)
{
    if (is_str(v, "*"))
        return 1;
    size_t i;
    const json_t *e;
    json_array_foreach(v, i, e) {
        if (is_str(e, "*"))
            return 1;
    }
    return 0;
}

static int principal_is_everyone(const json_t *p)
{
    if (has_star(p))
        return 1;
    const char *type;
    const json_t *v;
    json_object_foreach((json_t *)p, type, v) {
        if (has_star(v))
            return 1;
    }
    return 0;
}

/* Condition keys that tie a call to known callers or networks. */
static int narrowing_key(const char *k)
{
    static const char *const KEYS[] = {
        "aws:PrincipalOrgID", "aws:PrincipalOrgPaths", "aws:PrincipalAccount",
        "aws:PrincipalArn",   "aws:SourceAccount",     "aws:SourceArn",
        "aws:SourceOrgID",    "aws:SourceOrgPaths",    "aws:SourceOwner",
        "aws:userid",         "aws:username",          "aws:SourceVpc",
        "aws:SourceVpce",     "aws:SourceIp",          "aws:PrincipalServiceName",
    };
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++)
        if (!strcasecmp(k, KEYS[i]))
            return 1;
    return 0;
}

/* Negated operators, IfExists (an absent key passes), ForAllValues (an
 * empty set passes) and Null (it only asks whether the key is there) admit
 * callers the key does not name. */
static int narrowing_operator(const char *op)
{
    size_t n = strlen(op);
    for (size_t i = 0; i + 3 <= n; i++)
        if (!strncasecmp(op + i, "Not", 3))
            return 0;
    if (!strcasecmp(op, "Null") || !strncasecmp(op, "ForAllValues:", 13))
        return 0;
    return !(n >= 8 && !strcasecmp(op + n - 8, "IfExists"));
}

static int values_narrow(const json_t *v)
{
    if (has_star(v))
        return 0;
    return json_is_string(v) || (json_is_array(v) && json_array_size(v) > 0);
}

static int condition_narrows(const json_t *cond)
{
    const char *op, *key;
    const json_t *block, *v;
    json_object_foreach((json_t *)cond, op, block) {
        if (!narrowing_operator(op) || !json_is_object(block))
            continue;
        json_object_foreach((json_t *)block, key, v) {
            if (narrowing_key(key) && values_narrow(v))
                return 1;
        }
    }
    return 0;
}

static int statement_allows_everyone(const json_t *st, size_t i, int *out, hgf_err *err)
{
    if (!json_is_object(st))
        return hgf_err_set(err, HGF_EINPUT, "policy: Statement[%zu]: expected an object", i);
    const json_t *effect = json_object_get(st, "Effect");
    if (!json_is_string(effect))
        return hgf_err_set(err, HGF_EINPUT, "policy: Statement[%zu].Effect: expected a string", i);
    if (!is_str(effect, "Allow"))
        return 0;
    const json_t *p = json_object_get(st, "Principal");
    int open = json_object_get(st, "NotPrincipal") != NULL || principal_is_everyone(p);
    if (open && !condition_narrows(json_object_get(st, "Condition")))
        *out = 1;
    return 0;
}

int hgf_posture_policy_allows_everyone(const char *text, size_t len, int *out, hgf_err *err)
{
    *out = 0;
    json_t *j = load("repository policy", text, len, err);
    if (!j)
        return HGF_EINPUT;
    json_t *sts = json_object_get(j, "Statement");
    int rc = 0;
    if (json_is_object(sts))
        rc = statement_allows_everyone(sts, 0, out, err);
    else if (json_is_array(sts)) {
        size_t i;
        json_t *st;
        json_array_foreach(sts, i, st) {
            if ((rc = statement_allows_everyone(st, i, out, err)) != 0)
                break;
        }
    } else
        rc = hgf_err_set(err, HGF_EINPUT, "policy: Statement: expected an object or a list");
    json_decref(j);
    if (rc)
        *out = 0;
    return rc;
}

/* ---- lifecycle policies ---------------------------------------------- */

/* The rule's untagged window in days, or -1 when it has none. */
static int rule_window(const json_t *rule, size_t i, long *days, hgf_err *err)
{
    *days = -1;
    if (!json_is_object(rule))
        return hgf_err_set(err, HGF_EINPUT, "lifecycle policy: rules[%zu]: expected an object", i);
    const json_t *sel = json_object_get(rule, "selection");
    const json_t *act = json_object_get(rule, "action");
    if (!json_is_object(sel) || !json_is_object(act))
        return hgf_err_set(err, HGF_EINPUT,
                           "lifecycle policy: rules[%zu]: selection and action must be objects", i);
    const json_t *ts = json_object_get(sel, "tagStatus");
    if (!is_str(json_object_get(act, "type"), "expire") ||
        !(is_str(ts, "untagged") || is_str(ts, "any")) ||
        !is_str(json_object_get(sel, "countType"), "sinceImagePushed"))
        return 0;
    const json_t *n = json_object_get(sel, "countNumber");
    if (!is_str(json_object_get(sel, "countUnit"), "days"))
        return hgf_err_set(err, HGF_EINPUT,
                           "lifecycle policy: rules[%zu].selection.countUnit: expected \"days\"", i);
    if (!json_is_integer(n) || json_integer_value(n) < 1)
        return hgf_err_set(err, HGF_EINPUT,
                           "lifecycle policy: rules[%zu].selection.countNumber: expected a "
                           "positive integer",
                           i);
    *days = json_integer_value(n) > 36500 ? 36500 : (long)json_integer_value(n);
    return 0;
}

int hgf_posture_lifecycle_untagged_days(const char *text, size_t len, long *days, hgf_err *err)
{
    *days = -1;
    json_t *j = load("lifecycle policy", text, len, err);
    if (!j)
        return HGF_EINPUT;
    json_t *rules = json_object_get(j, "rules");
    int rc = json_is_array(rules)
                 ? 0
                 : hgf_err_set(err, HGF_EINPUT, "lifecycle policy: rules: expected a list");
    size_t i;
    json_t *rule;
    json_array_foreach(rules, i, rule) {
        long d;
        if (rc || (rc = rule_window(rule, i, &d, err)))
            break;
        if (d >= 0 && (*days < 0 || d < *days))
            *days = d;
    }
    json_decref(j);
    if (rc)
        *days = -1;
    return rc;
}

/* ---- image configs --------------------------------------------------- */

int hgf_posture_config_user(const char *text, size_t len, char *user, size_t n, hgf_err *err)
{
    if (n)
        user[0] = '\0';
    json_t *j = load("image config", text, len, err);
    if (!j)
        return HGF_EINPUT;
    const json_t *cfg = json_object_get(j, "config");
    const json_t *u = json_is_object(cfg) ? json_object_get(cfg, "User") : NULL;
    int rc = 0;
    if (cfg && !json_is_null(cfg) && !json_is_object(cfg))
        rc = hgf_err_set(err, HGF_EINPUT, "image config: config: expected an object");
    else if (u && !json_is_null(u) && !json_is_string(u))
        rc = hgf_err_set(err, HGF_EINPUT, "image config: config.User: expected a string");
    else if (json_is_string(u) && (json_string_length(u) >= n ||
                                   json_string_length(u) >= HGF_POSTURE_USER_MAX))
        rc = hgf_err_set(err, HGF_EINPUT, "image config: config.User: longer than %d bytes",
                         HGF_POSTURE_USER_MAX - 1);
    else if (json_is_string(u))
        memcpy(user, json_string_value(u), json_string_length(u) + 1);
    json_decref(j);
    return rc;
}

int hgf_posture_user_is_root(const char *user)
{
    size_t n = strcspn(user, ":");
    if (n == 0 || (n == 4 && !strncmp(user, "root", 4)))
        return 1;
    return strspn(user, "0") == n;
}

int hgf_posture_is_image_config(const char *media_type)
{
    static const char *const TYPES[] = {"application/vnd.oci.image.config.v1+json",
                                        "application/vnd.docker.container.image.v1+json"};
    for (size_t i = 0; media_type && i < sizeof TYPES / sizeof TYPES[0]; i++)
        if (!strcmp(media_type, TYPES[i]))
            return 1;
    return 0;
}

/* ---- the lifecycle race ---------------------------------------------- */

int hgf_posture_expiry_races_scan(long days, const hgf_schedule *s, int64_t now)
{
    if (days < 0 || s->on_push)
        return 0;
    int64_t interval = hgf_schedule_interval(s, now);
    return interval <= 0 || (int64_t)days * DAY_S < interval;
}
