/* The bearer token cache. A handful of registries and repositories per
 * process is the norm, so a small array searched linearly is enough; when
 * it is full the entry that expires first makes room. */
#include "hgfleet/registry.h"
#include "hgfleet/secret.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { MAX_ENTRIES = 64 };

#define DEFAULT_TTL 60L

typedef struct entry {
    char *realm, *service, *scope, *username;
    char *origin, *repository;
    char *token;
    double expires;  /* monotonic seconds; refreshed a little early */
} entry;

struct hgf_registry_tokens {
    entry e[MAX_ENTRIES];
    int n;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *or_empty(const char *s)
{
    return s ? s : "";
}

static void entry_clear(entry *e)
{
    if (e->token)
        hgf_secret_wipe(e->token, strlen(e->token));
    free(e->realm);
    free(e->service);
    free(e->scope);
    free(e->username);
    free(e->origin);
    free(e->repository);
    free(e->token);
    memset(e, 0, sizeof *e);
}

static void remove_at(hgf_registry_tokens *t, int i)
{
    entry_clear(&t->e[i]);
    t->e[i] = t->e[--t->n];
    memset(&t->e[t->n], 0, sizeof t->e[t->n]);
}

static void drop_expired(hgf_registry_tokens *t)
{
    double now = now_s();
    for (int i = t->n - 1; i >= 0; i--)
        if (t->e[i].expires <= now)
            remove_at(t, i);
}

hgf_registry_tokens *hgf_registry_tokens_new(void)
{
    return calloc(1, sizeof(hgf_registry_tokens));
}

void hgf_registry_tokens_free(hgf_registry_tokens *t)
{
    if (!t)
        return;
    while (t->n)
        remove_at(t, t->n - 1);
    free(t);
}

static int same_key(const entry *e, const hgf_registry_token_key *k)
{
    return !strcmp(e->realm, or_empty(k->realm)) && !strcmp(e->service, or_empty(k->service)) &&
           !strcmp(e->scope, or_empty(k->scope)) && !strcmp(e->username, or_empty(k->username));
}

const char *hgf_registry_tokens_get(hgf_registry_tokens *t, const hgf_registry_token_key *k)
{
    drop_expired(t);
    for (int i = 0; i < t->n; i++)
        if (same_key(&t->e[i], k))
            return t->e[i].token;
    return NULL;
}

const char *hgf_registry_tokens_for_repo(hgf_registry_tokens *t, const hgf_registry_token_key *k)
{
    drop_expired(t);
    for (int i = 0; i < t->n; i++) {
        const entry *e = &t->e[i];
        if (!strcmp(e->origin, or_empty(k->origin)) &&
            !strcmp(e->repository, or_empty(k->repository)) &&
            !strcmp(e->username, or_empty(k->username)))
            return e->token;
    }
    return NULL;
}

static int slot_for(hgf_registry_tokens *t, const hgf_registry_token_key *k)
{
    drop_expired(t);
    for (int i = 0; i < t->n; i++)
        if (same_key(&t->e[i], k))
            return i;
    if (t->n == MAX_ENTRIES) {
        int soonest = 0;
        for (int i = 1; i < t->n; i++)
            if (t->e[i].expires < t->e[soonest].expires)
                soonest = i;
        remove_at(t, soonest);
    }
    return t->n++;
}

/* Expiry with a margin, so that a token is not sent in its last seconds:
 * a quarter of its life, at most 30 s. */
static double expiry(long expires_in)
{
    double ttl = (double)(expires_in > 0 ? expires_in : DEFAULT_TTL);
    double margin = ttl / 4 < 30 ? ttl / 4 : 30;
    return now_s() + ttl - margin;
}

int hgf_registry_tokens_put(hgf_registry_tokens *t, const hgf_registry_token_key *k,
                            const char *token, long expires_in, hgf_err *err)
{
    if (!token || !*token)
        return hgf_err_set(err, HGF_EINPUT, "token: empty");
    int i = slot_for(t, k);
    entry *e = &t->e[i];
    entry_clear(e);
    e->realm = strdup(or_empty(k->realm));
    e->service = strdup(or_empty(k->service));
    e->scope = strdup(or_empty(k->scope));
    e->username = strdup(or_empty(k->username));
    e->origin = strdup(or_empty(k->origin));
    e->repository = strdup(or_empty(k->repository));
    e->token = strdup(token);
    e->expires = expiry(expires_in);
    if (!e->realm || !e->service || !e->scope || !e->username || !e->origin || !e->repository ||
        !e->token) {
        remove_at(t, i);
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    }
    return 0;
}

void hgf_registry_tokens_drop(hgf_registry_tokens *t, const char *token)
{
    if (!t || !token)
        return;
    for (int i = t->n - 1; i >= 0; i--)
        if (!strcmp(t->e[i].token, token))
            remove_at(t, i);
}
