/* The control API's mutations of the fleet and their EventBridge events
 * (bodies are JSON objects; unknown members are refused; a bad member gets
 * 400 {"error": "<member>: ..."}):
 *
 *   POST /_sim/push {"account", "region", "repository", "tag"?, "count"?: 1,
 *                    "rate"?: R, "deliver"?: bool, "immutable"?: bool,
 *                    "force"?: bool, "scan_on_push"?: bool}
 *     A new image (new manifest, new digest). The repository is created when
 *     missing (MUTABLE unless "immutable"). An existing tag moves to the new
 *     image in a MUTABLE repository; in an IMMUTABLE one it is refused with
 *     409 ImageTagAlreadyExistsException and a FAILURE event, unless "force"
 *     (the guide's re-tag under a new digest). "deliver" defaults to whether
 *     a webhook is configured. Answer (200):
 *       {"digest", "repository", "tag"|null, "previous_digest"|null,
 *        "event_id"|null, "delivered_status"|null, "attempts",
 *        "created_repository", "immutable"}
 *     "count": N > 1 pushes N images (tags <tag>-1 .. <tag>-N) and answers
 *     {"count": N, "pushes": [answer, ...]} (409 if any was refused).
 *     With "rate": R, the N pushes run in the background at R per second and
 *     the answer is {"batch": id, "count": N, "rate": R} at once.
 *   POST /_sim/retag {"account", "region", "repository", "digest", "tag",
 *                     "force"?, "deliver"?}
 *     The tag on an existing image (PutImage of the same manifest): a PUSH
 *     event. 409 ImageAlreadyExistsException when it already has the tag.
 *   POST /_sim/delete {"account", "region", "repository", "digest" | "tag",
 *                      "deliver"?}
 *     Removes the image and all its tags: a DELETE event (image-tag: the
 *     tag given, else the image's first tag, omitted when it had none).
 *   POST /_sim/lifecycle {"account", "region", "repository"?,
 *                         "untagged_expire_after_seconds"?: N | null,
 *                         "delete_on_next_manifest_get"?: bool}
 *     Lifecycle expiry of untagged images (no events), for one repository
 *     or, without "repository", the whole registry (see fleet.h).
 *   GET /_sim/events[?batch=ID]   delivered events (webhook.h); with a batch
 *                                 also its progress under "batch"
 *   DELETE /_sim/events           clears the event log
 *
 * Missing registries, repositories and images answer 404 with "code"
 * RegistryNotFound, RepositoryNotFoundException or ImageNotFoundException.
 *
 * Ownership: borrows the fleet and the webhook (they must outlive it); owns
 * the bulk batches and their threads, which hgf_sim_mutate_free stops. */
#ifndef ECRSIM_MUTATE_H
#define ECRSIM_MUTATE_H

#include "fleet.h"
#include "hgfleet/err.h"
#include "simhttp.h"
#include "webhook.h"

#define HGF_SIM_BATCH_THREADS 8
#define HGF_SIM_MAX_PUSH_COUNT 1000000
#define HGF_SIM_MAX_SYNC_COUNT 1000

typedef struct hgf_sim_mutate hgf_sim_mutate;

int hgf_sim_mutate_create(hgf_sim_fleet *fleet, hgf_sim_webhook *webhook, hgf_sim_mutate **out,
                          hgf_err *err);
/* Stops the running batches (their deliveries give up) and joins them. */
void hgf_sim_mutate_free(hgf_sim_mutate *m);

void hgf_sim_mutate_push(hgf_sim_mutate *m, const hgf_sim_req *req, hgf_sim_resp *resp);
void hgf_sim_mutate_retag(hgf_sim_mutate *m, const hgf_sim_req *req, hgf_sim_resp *resp);
void hgf_sim_mutate_delete(hgf_sim_mutate *m, const hgf_sim_req *req, hgf_sim_resp *resp);
void hgf_sim_mutate_lifecycle(hgf_sim_mutate *m, const hgf_sim_req *req, hgf_sim_resp *resp);
/* GET or DELETE /_sim/events. */
void hgf_sim_mutate_events(hgf_sim_mutate *m, const hgf_sim_req *req, hgf_sim_resp *resp);

#endif
