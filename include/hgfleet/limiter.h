/* Bounds how many things run at once per key (a registry), with FIFO waiters
 * released from the loop. Used by scan jobs so one huge registry cannot take
 * every scanner slot.
 *
 * Ownership: the limiter is owned by the runtime; keys are copied. A waiter's
 * callback runs exactly once, from the loop, never inside acquire, unless
 * the limiter is freed first (then never). */
#ifndef HGF_LIMITER_H
#define HGF_LIMITER_H

struct ev_loop;

typedef struct hgf_limiter hgf_limiter;
typedef void (*hgf_limiter_cb)(void *arg);

hgf_limiter *hgf_limiter_new(struct ev_loop *loop, int per_key);
void hgf_limiter_free(hgf_limiter *l);

/* 0, or HGF_ENOMEM. cb runs once a slot for key is held. */
int hgf_limiter_acquire(hgf_limiter *l, const char *key, hgf_limiter_cb cb, void *arg);
/* Gives back a slot acquired for key. */
void hgf_limiter_release(hgf_limiter *l, const char *key);
/* Slots held for key now. */
int hgf_limiter_held(const hgf_limiter *l, const char *key);

#endif
