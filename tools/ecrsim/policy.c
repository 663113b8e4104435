#include "policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define PULL_ACTIONS "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"

static const char *partition_of(const hgf_sim_registry *reg)
{
    return strncmp(reg->region, "cn-", 3) == 0 ? "aws-cn" : "aws";
}

static int put_json(json_t *doc, hgf_buf *out)
{
    char *text = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(doc);
    int rc = text ? hgf_buf_puts(out, text) : HGF_ENOMEM;
    free(text);
    return rc;
}

/* ---- lifecycle --------------------------------------------------------- */

static json_t *rule(int priority, const char *description, json_t *selection)
{
    return json_pack("{s:i, s:s, s:o, s:{s:s}}", "rulePriority", priority, "description",
                     description, "selection", selection, "action", "type", "expire");
}

static json_t *age_rule(int priority, const char *status, int days)
{
    char what[96];
    snprintf(what, sizeof what, "Expire %s images %d day%s after they were pushed", status, days,
             days == 1 ? "" : "s");
    return rule(priority, what,
                json_pack("{s:s, s:s, s:s, s:i}", "tagStatus", status, "countType",
                          "sinceImagePushed", "countUnit", "days", "countNumber", days));
}

static json_t *count_rule(int priority, const char *status, int keep)
{
    char what[96];
    snprintf(what, sizeof what, "Keep only the newest %d %s images", keep, status);
    json_t *sel = json_pack("{s:s, s:s, s:i}", "tagStatus", status, "countType",
                            "imageCountMoreThan", "countNumber", keep);
    if (sel && strcmp(status, "tagged") == 0)
        json_object_set_new(sel, "tagPrefixList", json_pack("[s]", "v"));
    return rule(priority, what, sel);
}

int hgf_sim_policy_lifecycle(const hgf_sim_registry *reg, const hgf_sim_repo *repo, hgf_buf *out,
                             int *untagged_days)
{
    hgf_sim_repo_posture p;
    hgf_sim_fleet_repo_posture(repo, &p);
    *untagged_days = p.untagged_days;
    if (p.lifecycle == HGF_SIM_LC_NONE)
        return HGF_ENOTFOUND;
    json_t *rules = json_array();
    if (p.lifecycle == HGF_SIM_LC_UNTAGGED) {
        json_array_append_new(rules, age_rule(1, "untagged", p.untagged_days));
        json_array_append_new(rules, count_rule(2, "tagged", 30));
    } else if (p.lifecycle == HGF_SIM_LC_ANY) {
        json_array_append_new(rules, age_rule(1, "any", p.untagged_days));
    } else {
        json_array_append_new(rules, count_rule(1, "tagged", 50));
        json_array_append_new(rules, count_rule(2, "untagged", 10));
    }
    return put_json(json_pack("{s:o}", "rules", rules), out);
}

/* ---- repository policies ----------------------------------------------- */

static json_t *role_arn(const hgf_sim_registry *reg)
{
    char arn[HGF_SIM_ARN_MAX];
    snprintf(arn, sizeof arn, "arn:%s:iam::%s:role/ci-puller", partition_of(reg), reg->account);
    return json_string(arn);
}

static json_t *allow(const char *sid, json_t *principal)
{
    return json_pack("{s:s, s:s, s:o, s:[ss]}", "Sid", sid, "Effect", "Allow", "Principal",
                     principal, "Action", PULL_ACTIONS);
}

/* The seed's statements for the repository (none for HGF_SIM_POL_NONE). */
static int generated(const hgf_sim_registry *reg, int kind, json_t *sts)
{
    json_t *st = NULL, *extra = NULL;
    switch (kind) {
    case HGF_SIM_POL_NONE:
        return 0;
    case HGF_SIM_POL_CROSS_ACCOUNT:
        st = allow("AllowCiPull", json_pack("{s:o}", "AWS", role_arn(reg)));
        break;
    case HGF_SIM_POL_STAR:
    case HGF_SIM_POL_AWS_STAR:
        st = allow("AllowEveryonePull", kind == HGF_SIM_POL_STAR ? json_string("*")
                                                                 : json_pack("{s:s}", "AWS", "*"));
        break;
    case HGF_SIM_POL_AWS_ARRAY:
        st = allow("AllowPull", json_pack("{s:[os]}", "AWS", role_arn(reg), "*"));
        break;
    case HGF_SIM_POL_DENY_STAR:
        st = json_pack("{s:s, s:s, s:s, s:[s]}", "Sid", "DenyDeletes", "Effect", "Deny",
                       "Principal", "*", "Action", "ecr:BatchDeleteImage");
        extra = allow("AllowCiPull", json_pack("{s:o}", "AWS", role_arn(reg)));
        break;
    default:
        st = allow("AllowOrgPull", json_string("*"));
        json_object_set_new(st, "Condition",
                            json_pack("{s:{s:s}}", "StringEquals", "aws:PrincipalOrgID",
                                      "o-ecrsim0example"));
    }
    int rc = st && json_array_append_new(sts, st) == 0 ? 0 : HGF_ENOMEM;
    if (!rc && extra)
        return json_array_append_new(sts, extra) == 0 ? 0 : HGF_ENOMEM;
    json_decref(rc ? extra : NULL);
    return rc;
}

static int generated_open(int kind)
{
    return kind == HGF_SIM_POL_STAR || kind == HGF_SIM_POL_AWS_STAR ||
           kind == HGF_SIM_POL_AWS_ARRAY;
}

int hgf_sim_policy_repository(hgf_sim_iam *iam, const hgf_sim_registry *reg,
                              const hgf_sim_repo *repo, hgf_buf *out, int *everyone)
{
    hgf_sim_repo_posture p;
    hgf_sim_fleet_repo_posture(repo, &p);
    *everyone = generated_open(p.policy);
    json_t *sts = json_array();
    int rc = sts ? generated(reg, p.policy, sts) : HGF_ENOMEM;
    if (!rc)
        rc = hgf_sim_iam_repository_statements(iam, reg->account, partition_of(reg), repo->name,
                                               sts, everyone);
    if (!rc && json_array_size(sts) == 0)
        rc = HGF_ENOTFOUND;
    if (rc) {
        json_decref(sts);
        return rc;
    }
    /* A policy may give its one statement as an object, and GetRepositoryPolicy
     * returns the text as it was set. */
    json_t *statement = sts;
    if (p.policy == HGF_SIM_POL_AWS_STAR && json_array_size(sts) == 1) {
        statement = json_incref(json_array_get(sts, 0));
        json_decref(sts);
    }
    return put_json(json_pack("{s:s, s:o}", "Version", "2012-10-17", "Statement", statement),
                    out);
}
