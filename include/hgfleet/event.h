/* EventBridge "ECR Image Action" events, as an API destination delivers them
 * to POST /api/webhooks/ecr (reference/aws-facts.md "EventBridge").
 *
 * Pure validation, split from the webhook handler so that it can be unit
 * tested and fuzzed without a server or a database.
 *
 * Ownership: the string pointers of hgf_ecr_event borrow from the json_t
 * passed in; bad_field points to a static string. */
#ifndef HGF_EVENT_H
#define HGF_EVENT_H

#include <jansson.h>

#include "hgfleet/err.h"

typedef struct hgf_ecr_event {
    int image_action; /* 1: source aws.ecr and detail-type "ECR Image Action" */
    const char *account, *region, *repo, *digest, *tag, *action, *result, *time;
    const char *bad_field; /* on HGF_EINPUT: the field to name in the reply */
} hgf_ecr_event;

/* Checks the envelope (detail-type, source) and, for an image action, every
 * field the webhook uses: 12-digit account, region, action-type, result,
 * repository-name, sha256 digest, image-tag when present and not null,
 * ISO 8601 time when present. Other events are valid with image_action 0.
 * HGF_EINPUT sets out->bad_field and err->msg "missing or invalid field:
 * <field>". */
int hgf_event_parse(json_t *root, hgf_ecr_event *out, hgf_err *err);

#endif
