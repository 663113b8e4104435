/* Secrets at rest: AES-256-GCM under the master key (HGFLEET_MASTER_KEY),
 * plus base64 helpers.
 *
 * Sealed format (text, safe for a TEXT column):
 *   "v1:<keyid>:<base64(nonce[12] | ciphertext | tag[16])>"
 * where keyid is the first 8 hex digits of sha256(key), so a rotation can
 * tell which key sealed a value. A fresh random nonce is used every time.
 *
 * Ownership: outputs go into caller-owned hgf_buf values. Callers wipe
 * plaintext buffers with hgf_secret_wipe_buf when done. */
#ifndef HGF_SECRET_H
#define HGF_SECRET_H

#include <stddef.h>

#include "hgfleet/buf.h"
#include "hgfleet/err.h"

#define HGF_SECRET_KEY_LEN 32

typedef struct hgf_secret_key {
    unsigned char bytes[HGF_SECRET_KEY_LEN];
    char id[9];  /* 8 hex digits + NUL */
} hgf_secret_key;

/* Decodes a base64 master key; it must decode to exactly 32 bytes.
 * Surrounding whitespace (a key file's newline) is ignored.
 * The error names `field` (e.g. "HGFLEET_MASTER_KEY") but never the value. */
int hgf_secret_key_parse(const char *b64, const char *field, hgf_secret_key *out, hgf_err *err);

int hgf_secret_seal(const hgf_secret_key *key, const void *plaintext, size_t n,
                    hgf_buf *sealed, hgf_err *err);
/* HGF_EFAIL for a wrong key (keyid mismatch or tag failure), HGF_EINPUT for
 * a malformed blob. */
int hgf_secret_open(const hgf_secret_key *key, const char *sealed, hgf_buf *plaintext, hgf_err *err);

/* The keyid a sealed value names, into out[9]; HGF_EINPUT if malformed. */
int hgf_secret_sealed_keyid(const char *sealed, char out[9]);

/* Standard base64 with padding, appended to out. decode ignores no
 * characters: any invalid input (bad length, alphabet or padding, non-zero
 * pad bits) is HGF_EINPUT, and the message never quotes the input. */
int hgf_base64_encode(const void *p, size_t n, hgf_buf *out);
int hgf_base64_decode(const char *s, hgf_buf *out, hgf_err *err);

void hgf_secret_wipe(void *p, size_t n);
void hgf_secret_wipe_buf(hgf_buf *b);  /* wipes then frees */

#endif
