/* Registry URLs and the role ARNs of an auth spec. Input lines: registry
 * URL, role ARN, via role ARN, external id, session name. */
#include "fuzz.h"

#include "hgfleet/credprov.h"
#include "hgfleet/endpoint.h"

static void registry(const char *url, hgf_registry *reg)
{
    hgf_err e;
    if (hgf_endpoint_parse_registry(url, reg, &e)) {
        memset(reg, 0, sizeof *reg);
        return;
    }
    FUZZ_CHECK(strlen(reg->account_id) == 12 && strspn(reg->account_id, "0123456789") == 12);
    FUZZ_CHECK(hgf_endpoint_region_valid(reg->region));
    /* The bare host names the same registry. */
    hgf_registry again;
    FUZZ_CHECK(hgf_endpoint_parse_registry(reg->host, &again, &e) == 0);
    FUZZ_CHECK(!strcmp(again.host, reg->host) && !strcmp(again.region, reg->region));
    FUZZ_CHECK(again.fips == reg->fips && !strcmp(again.api_endpoint, reg->api_endpoint));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = fuzz_cstr(data, size);
    char *role = fuzz_next_line(in);
    char *via = fuzz_next_line(role);
    char *ext = fuzz_next_line(via);
    char *session = fuzz_next_line(ext);
    fuzz_next_line(session);
    hgf_registry reg;
    registry(in, &reg);
    hgf_auth_spec spec = {
        .mode = "assume_role",
        .role_arn = role,
        .via_role_arn = *via ? via : NULL,
        .external_id = *ext ? ext : NULL,
        .session_name = *session ? session : NULL,
        .region = reg.region[0] ? reg.region : "us-east-1",
        .partition = reg.partition[0] ? reg.partition : NULL,
    };
    hgf_err e;
    int rc = hgf_credprov_validate(&spec, &e);
    FUZZ_CHECK(rc == 0 || (rc == HGF_EINPUT && memchr(e.msg, '\0', sizeof e.msg)));
    free(in);
    return 0;
}
