/* WWW-Authenticate values from a registry's 401. */
#include "fuzz.h"

#include "hgfleet/registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *header = fuzz_cstr(data, size);
    hgf_registry_challenge c;
    hgf_err e;
    int rc = hgf_registry_parse_challenge(header, &c, &e);
    if (rc == 0) {
        FUZZ_CHECK(c.scheme == HGF_REGISTRY_BASIC || c.scheme == HGF_REGISTRY_BEARER);
        FUZZ_CHECK(c.scheme != HGF_REGISTRY_BEARER || c.realm[0]);
        FUZZ_CHECK(memchr(c.realm, '\0', sizeof c.realm) && memchr(c.scope, '\0', sizeof c.scope));
        FUZZ_CHECK(memchr(c.service, '\0', sizeof c.service));
        FUZZ_CHECK(memchr(c.error, '\0', sizeof c.error));
    } else {
        FUZZ_CHECK(rc == HGF_EINPUT);
    }
    free(header);
    return 0;
}
