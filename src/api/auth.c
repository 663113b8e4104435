/* Token checks shared by the webhook and the read-only API. */
#include "hgfleet/api.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>

/* Hashing first makes the comparison constant-time in the length too.
 * Trailing blanks are the header's optional whitespace (RFC 9110), which the
 * HTTP server leaves on the value; no token ends with one. */
int hgf_api_token_equal(const char *given, size_t n, const char *want)
{
    while (n && (given[n - 1] == ' ' || given[n - 1] == '\t'))
        n--;
    unsigned char a[32], b[32];
    unsigned int la = 0, lb = 0;
    if (!EVP_Digest(given, n, a, &la, EVP_sha256(), NULL) ||
        !EVP_Digest(want, strlen(want), b, &lb, EVP_sha256(), NULL))
        return 0;
    return CRYPTO_memcmp(a, b, 32) == 0;
}
