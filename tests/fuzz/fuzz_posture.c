/* Policy documents and image configs, as AWS and registries hand them over:
 * the same bytes go to every posture parser. */
#include "fuzz.h"

#include "hgfleet/posture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    hgf_err e;
    int open = -1;
    int rc = hgf_posture_policy_allows_everyone(text, size, &open, &e);
    FUZZ_CHECK(rc == 0 ? open == 0 || open == 1 : rc == HGF_EINPUT && open == 0);

    long days = -2;
    rc = hgf_posture_lifecycle_untagged_days(text, size, &days, &e);
    FUZZ_CHECK(rc == 0 ? days == -1 || (days >= 1 && days <= 36500)
                       : rc == HGF_EINPUT && days == -1);

    char user[HGF_POSTURE_USER_MAX];
    rc = hgf_posture_config_user(text, size, user, sizeof user, &e);
    FUZZ_CHECK(rc == 0 || (rc == HGF_EINPUT && user[0] == '\0'));
    FUZZ_CHECK(memchr(user, '\0', sizeof user));
    /* An empty user runs as root: no config that parses can hide that. */
    FUZZ_CHECK(rc != 0 || user[0] || hgf_posture_user_is_root(user));
    return 0;
}
