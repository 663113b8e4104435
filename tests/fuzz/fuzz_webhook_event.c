/* The webhook's EventBridge validation on arbitrary JSON bodies. */
#include "fuzz.h"

#include "hgfleet/event.h"
#include "hgfleet/registry.h"

#include <jansson.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!root)
        return 0;
    hgf_ecr_event ev;
    hgf_err e;
    int rc = hgf_event_parse(root, &ev, &e);
    if (rc) {
        FUZZ_CHECK(rc == HGF_EINPUT && ev.bad_field && strstr(e.msg, ev.bad_field));
    } else if (ev.image_action) {
        /* What the handler hands to the database must have been checked. */
        FUZZ_CHECK(ev.account && strlen(ev.account) == 12 && ev.region && ev.action);
        FUZZ_CHECK(ev.result);
        /* A failed push is ignored before anything reaches the database, so
         * only a SUCCESS needs its repository and digest checked. */
        if (!strcmp(ev.result, "SUCCESS"))
            FUZZ_CHECK(ev.repo && ev.digest && hgf_registry_is_digest(ev.digest));
    }
    json_decref(root);
    return 0;
}
