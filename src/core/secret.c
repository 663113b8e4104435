#include "hgfleet/secret.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define VERSION_PREFIX "v1:"
#define KEYID_HEX 8
#define HEADER_LEN (sizeof VERSION_PREFIX - 1 + KEYID_HEX + 1) /* "v1:<keyid>:" */
#define NONCE_LEN 12
#define TAG_LEN 16
#define KEY_HINT "expected 32 random bytes in standard base64, e.g. from `openssl rand -base64 32`"

/* ---- base64 ----------------------------------------------------------- */

static int b64_index(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int hgf_base64_encode(const void *p, size_t n, hgf_buf *out)
{
    if (n > (size_t)INT_MAX / 4 * 3)
        return HGF_EINPUT;
    size_t need = 4 * ((n + 2) / 3);
    if (hgf_buf_reserve(out, need))
        return HGF_ENOMEM;
    /* EVP_EncodeBlock also writes the NUL, which reserve left room for. */
    int w = EVP_EncodeBlock((unsigned char *)out->data + out->len,
                            (const unsigned char *)(p ? p : ""), (int)n);
    if (w < 0 || (size_t)w != need)
        return HGF_EFAIL;
    out->len += need;
    out->data[out->len] = '\0';
    return 0;
}

/* EVP_DecodeBlock skips surrounding whitespace and does not report padding,
 * so the strict checks (alphabet, length, padding, zero pad bits) are ours. */
static int b64_validate(const char *s, size_t n, size_t *pad, hgf_err *err)
{
    if (n % 4)
        return hgf_err_set(err, HGF_EINPUT, "base64: length %zu is not a multiple of 4", n);
    *pad = (n >= 1 && s[n - 1] == '=') + (n >= 2 && s[n - 2] == '=');
    for (size_t i = 0; i < n - *pad; i++)
        if (b64_index((unsigned char)s[i]) < 0)
            return hgf_err_set(err, HGF_EINPUT, "base64: invalid character at offset %zu", i);
    /* The bits below the last full byte must be zero, or two strings would
     * decode to the same bytes. */
    int last = n ? b64_index((unsigned char)s[n - *pad - 1]) : 0;
    if ((*pad == 1 && (last & 3)) || (*pad == 2 && (last & 15)))
        return hgf_err_set(err, HGF_EINPUT, "base64: non-zero bits in the final padding");
    return 0;
}

int hgf_base64_decode(const char *s, hgf_buf *out, hgf_err *err)
{
    if (!s)
        return hgf_err_set(err, HGF_EINPUT, "base64: no input");
    size_t n = strlen(s), pad = 0;
    if (n > INT_MAX)
        return hgf_err_set(err, HGF_EINPUT, "base64: input too long");
    int rc = b64_validate(s, n, &pad, err);
    if (rc)
        return rc;
    if (hgf_buf_reserve(out, n / 4 * 3))
        return hgf_err_set(err, HGF_ENOMEM, "base64: out of memory");
    int w = n ? EVP_DecodeBlock((unsigned char *)out->data + out->len, (const unsigned char *)s,
                                (int)n)
              : 0;
    if (w < 0 || (size_t)w != n / 4 * 3)
        return hgf_err_set(err, HGF_EINPUT, "base64: invalid input");
    out->len += (size_t)w - pad;
    out->data[out->len] = '\0';
    return 0;
}

/* ---- wiping ----------------------------------------------------------- */

void hgf_secret_wipe(void *p, size_t n)
{
    if (p && n)
        OPENSSL_cleanse(p, n);
}

void hgf_secret_wipe_buf(hgf_buf *b)
{
    if (!b)
        return;
    hgf_secret_wipe(b->data, b->cap);
    hgf_buf_free(b);
}

/* ---- keys ------------------------------------------------------------- */

static int key_id(const unsigned char *key, char out[KEYID_HEX + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!EVP_Digest(key, HGF_SECRET_KEY_LEN, md, &len, EVP_sha256(), NULL))
        return HGF_EFAIL;
    for (int i = 0; i < KEYID_HEX / 2; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[KEYID_HEX] = '\0';
    return 0;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Decodes the key without ever putting its value in a message. Surrounding
 * whitespace is dropped because key files usually end in a newline. */
static int decode_key(const char *b64, const char *field, hgf_buf *raw, hgf_err *err)
{
    while (is_space(*b64))
        b64++;
    size_t n = strlen(b64);
    while (n && is_space(b64[n - 1]))
        n--;
    if (n == 0)
        return hgf_err_set(err, HGF_EINPUT, "%s is empty: " KEY_HINT, field);
    char *trimmed = malloc(n + 1);
    if (!trimmed)
        return hgf_err_set(err, HGF_ENOMEM, "%s: out of memory", field);
    memcpy(trimmed, b64, n);
    trimmed[n] = '\0';
    hgf_err inner;
    hgf_err_clear(&inner);
    int rc = hgf_base64_decode(trimmed, raw, &inner);
    hgf_secret_wipe(trimmed, n);
    free(trimmed);
    if (rc)
        return hgf_err_set(err, rc, "%s is not valid base64 (%s): " KEY_HINT, field, inner.msg);
    if (raw->len != HGF_SECRET_KEY_LEN)
        return hgf_err_set(err, HGF_EINPUT, "%s decodes to %zu bytes, not %d: " KEY_HINT, field,
                           raw->len, HGF_SECRET_KEY_LEN);
    return 0;
}

int hgf_secret_key_parse(const char *b64, const char *field, hgf_secret_key *out, hgf_err *err)
{
    const char *name = field && *field ? field : "master key";
    memset(out, 0, sizeof *out);
    if (!b64)
        return hgf_err_set(err, HGF_EINPUT, "%s is not set: " KEY_HINT, name);
    hgf_buf raw = HGF_BUF_INIT;
    int rc = decode_key(b64, name, &raw, err);
    if (!rc) {
        memcpy(out->bytes, raw.data, HGF_SECRET_KEY_LEN);
        rc = key_id(out->bytes, out->id);
        if (rc)
            hgf_err_set(err, rc, "%s: cannot compute the key id", name);
    }
    hgf_secret_wipe_buf(&raw);
    if (rc)
        hgf_secret_wipe(out, sizeof *out);
    return rc;
}

/* ---- sealing ---------------------------------------------------------- */

/* AES-256-GCM over in[0..n) into out, with a 16-byte tag after it. */
static int gcm_encrypt(const hgf_secret_key *key, const unsigned char nonce[NONCE_LEN],
                       const void *in, size_t n, unsigned char *out)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int len = 0, fin = 0;
    int ok = ctx && EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key->bytes, nonce) == 1 &&
             (n == 0 || EVP_EncryptUpdate(ctx, out, &len, in, (int)n) == 1) &&
             EVP_EncryptFinal_ex(ctx, out + len, &fin) == 1 && (size_t)(len + fin) == n &&
             EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, out + n) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : HGF_EFAIL;
}

int hgf_secret_seal(const hgf_secret_key *key, const void *plaintext, size_t n, hgf_buf *sealed,
                    hgf_err *err)
{
    if (!key || (n && !plaintext))
        return hgf_err_set(err, HGF_EINPUT, "seal: key and plaintext are required");
    if (n > (size_t)INT_MAX / 2)
        return hgf_err_set(err, HGF_EINPUT, "seal: plaintext of %zu bytes is too large", n);
    size_t blob_len = NONCE_LEN + n + TAG_LEN;
    unsigned char *blob = malloc(blob_len);
    if (!blob)
        return hgf_err_set(err, HGF_ENOMEM, "seal: out of memory");
    int rc = RAND_bytes(blob, NONCE_LEN) == 1 ? 0 : HGF_EFAIL;
    if (rc)
        hgf_err_set(err, rc, "seal: cannot get random bytes for the nonce");
    if (!rc && (rc = gcm_encrypt(key, blob, plaintext, n, blob + NONCE_LEN)))
        hgf_err_set(err, rc, "seal: AES-256-GCM encryption failed");
    if (!rc)
        rc = hgf_buf_printf(sealed, VERSION_PREFIX "%s:", key->id);
    if (!rc)
        rc = hgf_base64_encode(blob, blob_len, sealed);
    free(blob);
    if (rc == HGF_ENOMEM)
        return hgf_err_set(err, rc, "seal: out of memory");
    return rc;
}

int hgf_secret_sealed_keyid(const char *sealed, char out[9])
{
    size_t plen = sizeof VERSION_PREFIX - 1;
    if (!sealed || strncmp(sealed, VERSION_PREFIX, plen) != 0)
        return HGF_EINPUT;
    const char *id = sealed + plen;
    for (int i = 0; i < KEYID_HEX; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return HGF_EINPUT;
    if (id[KEYID_HEX] != ':')
        return HGF_EINPUT;
    memcpy(out, id, KEYID_HEX);
    out[KEYID_HEX] = '\0';
    return 0;
}

/* Decrypts and authenticates blob = nonce | ciphertext | tag into out,
 * which has room for the ciphertext. */
static int gcm_decrypt(const hgf_secret_key *key, const unsigned char *blob, size_t ct_len,
                       unsigned char *out)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int len = 0, fin = 0;
    const unsigned char *ct = blob + NONCE_LEN;
    int ok = ctx && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key->bytes, blob) == 1 &&
             (ct_len == 0 || EVP_DecryptUpdate(ctx, out, &len, ct, (int)ct_len) == 1) &&
             EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, (void *)(ct + ct_len)) == 1 &&
             EVP_DecryptFinal_ex(ctx, out + len, &fin) == 1;
    EVP_CIPHER_CTX_free(ctx);
    if (!ok)
        hgf_secret_wipe(out, ct_len);
    return ok ? 0 : HGF_EFAIL;
}

static int open_blob(const hgf_secret_key *key, const hgf_buf *blob, hgf_buf *plaintext,
                     hgf_err *err)
{
    if (blob->len < NONCE_LEN + TAG_LEN)
        return hgf_err_set(err, HGF_EINPUT, "sealed secret: payload of %zu bytes is too short",
                           blob->len);
    size_t ct_len = blob->len - NONCE_LEN - TAG_LEN;
    if (ct_len > (size_t)INT_MAX || hgf_buf_reserve(plaintext, ct_len))
        return hgf_err_set(err, HGF_ENOMEM, "sealed secret: out of memory");
    unsigned char *dst = (unsigned char *)plaintext->data + plaintext->len;
    if (gcm_decrypt(key, (const unsigned char *)blob->data, ct_len, dst))
        return hgf_err_set(err, HGF_EFAIL,
                           "sealed secret does not authenticate under master key %s (wrong key "
                           "or tampered data)",
                           key->id);
    plaintext->len += ct_len;
    plaintext->data[plaintext->len] = '\0';
    return 0;
}

int hgf_secret_open(const hgf_secret_key *key, const char *sealed, hgf_buf *plaintext,
                    hgf_err *err)
{
    char id[KEYID_HEX + 1];
    if (!key)
        return hgf_err_set(err, HGF_EINPUT, "open: no master key");
    if (hgf_secret_sealed_keyid(sealed, id))
        return hgf_err_set(err, HGF_EINPUT,
                           "sealed secret is malformed: expected v1:<8 hex keyid>:<base64>");
    if (strcmp(id, key->id) != 0)
        return hgf_err_set(err, HGF_EFAIL,
                           "sealed secret was sealed with key %s, but the master key is %s", id,
                           key->id);
    hgf_buf blob = HGF_BUF_INIT;
    hgf_err inner;
    hgf_err_clear(&inner);
    int rc = hgf_base64_decode(sealed + HEADER_LEN, &blob, &inner);
    if (rc)
        hgf_err_set(err, rc, "sealed secret is malformed: %s", inner.msg);
    else
        rc = open_blob(key, &blob, plaintext, err);
    hgf_buf_free(&blob);
    return rc;
}
