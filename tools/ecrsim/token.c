#include "token.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "hgfleet/err.h"

/* 128 bits of MAC are plenty against forgery in a simulator, and keep the
 * tokens short. */
#define MAC_LEN 16
#define MAX_TOKEN 4096

static int mac(const unsigned char *key, const void *data, size_t len, unsigned char out[32])
{
    unsigned int n = 0;
    return HMAC(EVP_sha256(), key, HGF_SIM_TOKEN_KEY_LEN, data, len, out, &n) && n == 32 ? 0
                                                                                         : -1;
}

int hgf_sim_token_encode(const unsigned char key[HGF_SIM_TOKEN_KEY_LEN], const char *payload,
                         hgf_buf *out)
{
    size_t len = strlen(payload);
    unsigned char *raw = malloc(len + MAC_LEN);
    unsigned char tag[32];
    if (!raw)
        return HGF_ENOMEM;
    memcpy(raw, payload, len);
    int rc = mac(key, payload, len, tag) ? HGF_EFAIL : 0;
    memcpy(raw + len, tag, MAC_LEN);
    size_t enc_len = 4 * ((len + MAC_LEN + 2) / 3);
    if (!rc)
        rc = hgf_buf_reserve(out, enc_len);
    if (!rc) {
        int n = EVP_EncodeBlock((unsigned char *)out->data + out->len, raw, (int)(len + MAC_LEN));
        out->len += (size_t)n;
        out->data[out->len] = '\0';
    }
    free(raw);
    return rc;
}

int hgf_sim_token_decode(const unsigned char key[HGF_SIM_TOKEN_KEY_LEN], const char *token,
                         hgf_buf *out)
{
    size_t len = strlen(token);
    if (len == 0 || len % 4 != 0 || len > MAX_TOKEN)
        return HGF_EINPUT;
    unsigned char *raw = malloc(len);
    if (!raw)
        return HGF_ENOMEM;
    int n = EVP_DecodeBlock(raw, (const unsigned char *)token, (int)len);
    /* EVP_DecodeBlock counts the padding as zero bytes. */
    size_t pad = (token[len - 1] == '=') + (len > 1 && token[len - 2] == '=');
    int rc = n < 0 || (size_t)n < pad + MAC_LEN + 1 ? HGF_EINPUT : 0;
    size_t plen = rc ? 0 : (size_t)n - pad - MAC_LEN;
    unsigned char tag[32];
    if (!rc && (mac(key, raw, plen, tag) || CRYPTO_memcmp(tag, raw + plen, MAC_LEN) != 0))
        rc = HGF_EINPUT;
    if (!rc && memchr(raw, '\0', plen))
        rc = HGF_EINPUT;
    if (!rc)
        rc = hgf_buf_append(out, raw, plen);
    free(raw);
    return rc;
}
