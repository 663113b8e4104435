/* STS Query replies (AssumeRole*, GetCallerIdentity, ErrorResponse). */
#include "fuzz.h"

#include "hgfleet/sts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hgf_sts_result r;
    hgf_err e;
    int rc = hgf_sts_parse_response((const char *)data, size, &r, &e);
    FUZZ_CHECK(rc == r.rc);
    FUZZ_CHECK(memchr(r.arn, '\0', sizeof r.arn) && memchr(r.account, '\0', sizeof r.account));
    FUZZ_CHECK(memchr(r.user_id, '\0', sizeof r.user_id));
    FUZZ_CHECK(memchr(r.request_id, '\0', sizeof r.request_id));
    FUZZ_CHECK(r.action && *r.action);
    if (rc) {
        FUZZ_CHECK(memchr(e.msg, '\0', sizeof e.msg) && memchr(e.aws_code, '\0', sizeof e.aws_code));
        /* A secret from the body must never reach the message. */
        if (r.creds.secret_access_key && strlen(r.creds.secret_access_key) >= 8)
            FUZZ_CHECK(!strstr(e.msg, r.creds.secret_access_key));
    }
    hgf_creds_clear(&r.creds);
    return 0;
}
