/* Master-key rotation: re-seals every stored static secret (connections'
 * secret access keys, removed connections included) from the old master key
 * to a new one.
 *
 * hgf_rekey_connections works in ONE transaction that holds a SHARE ROW
 * EXCLUSIVE lock on `connections` (no connection is added or changed
 * meanwhile), so a crash, a lost database connection or a secret that does
 * not open leaves every row as it was. A value already sealed under the new
 * key is left alone, so a rotation that was interrupted, or that another
 * process raced, can simply be run again. After COMMIT it re-reads the table
 * and fails unless every sealed value now names the new key: a COMMIT that
 * went to a re-made database connection (so committed nothing) cannot pass
 * as success.
 *
 * Plaintext secrets only live in wiped buffers inside this module; messages
 * name connections (id, name, registry) and key ids, never a secret.
 *
 * Ownership: the caller owns the keys and the result struct; hgf_rekey_value
 * appends to a caller-owned hgf_buf. */
#ifndef HGF_REKEY_H
#define HGF_REKEY_H

#include "hgfleet/buf.h"
#include "hgfleet/err.h"
#include "hgfleet/secret.h"
#include "hgfleet/store.h"

typedef struct hgf_rekey_result {
    int reencrypted;  /* rows re-sealed under the new key (would be, with dry_run) */
    int already_new;  /* rows found sealed under the new key already */
} hgf_rekey_result;

/* Re-seals one value. Returns 0 with the new seal appended to out, 1 when
 * the value already names new_key (out untouched), HGF_EFAIL when it names
 * neither key or does not authenticate under old_key, HGF_EINPUT when it is
 * malformed. */
int hgf_rekey_value(const hgf_secret_key *old_key, const hgf_secret_key *new_key,
                    const char *sealed, hgf_buf *out, hgf_err *err);

/* Re-seals every connections.secret_sealed. With dry_run it checks that
 * every value opens, then rolls back. The store must have nothing else in
 * flight (a CLI store): the transaction spans several queries on its one
 * connection. Errors name the connection ("connection 3 \"prod\"
 * (123456789012.dkr.ecr.us-east-1.amazonaws.com)") and say nothing changed. */
int hgf_rekey_connections(hgf_store *s, const hgf_secret_key *old_key,
                          const hgf_secret_key *new_key, int dry_run, hgf_rekey_result *res,
                          hgf_err *err);

#endif
