/* Opaque pagination tokens: base64 of a payload plus a truncated
 * HMAC-SHA256, so a token from another instance, another operation or a
 * garbled copy is recognised and rejected instead of misread.
 *
 * Ownership: callers own the key and every buffer passed in. */
#ifndef ECRSIM_TOKEN_H
#define ECRSIM_TOKEN_H

#include <stddef.h>

#include "hgfleet/buf.h"

#define HGF_SIM_TOKEN_KEY_LEN 32

/* Appends the token for payload (a C string) to out. 0 or HGF_ENOMEM. */
int hgf_sim_token_encode(const unsigned char key[HGF_SIM_TOKEN_KEY_LEN], const char *payload,
                         hgf_buf *out);

/* Verifies token and appends its payload to out: 0, HGF_EINPUT when the
 * token is malformed or was not made with key, HGF_ENOMEM. */
int hgf_sim_token_decode(const unsigned char key[HGF_SIM_TOKEN_KEY_LEN], const char *token,
                         hgf_buf *out);

#endif
