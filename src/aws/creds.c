#include "hgfleet/creds.h"
#include "hgfleet/secret.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void wipe_free(char **p)
{
    if (*p) {
        hgf_secret_wipe(*p, strlen(*p));
        free(*p);
        *p = NULL;
    }
}

void hgf_creds_clear(hgf_creds *c)
{
    wipe_free(&c->access_key_id);
    wipe_free(&c->secret_access_key);
    wipe_free(&c->session_token);
    c->expiration = 0;
    c->source[0] = '\0';
}

int hgf_creds_set(hgf_creds *c, const char *akid, const char *secret, const char *token,
                  time_t expiration, const char *source, hgf_err *err)
{
    hgf_creds_clear(c);
    c->access_key_id = strdup(akid);
    c->secret_access_key = strdup(secret);
    c->session_token = token && *token ? strdup(token) : NULL;
    if (!c->access_key_id || !c->secret_access_key || (token && *token && !c->session_token)) {
        hgf_creds_clear(c);
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    }
    c->expiration = expiration;
    snprintf(c->source, sizeof c->source, "%s", source);
    return 0;
}

int hgf_creds_copy(hgf_creds *dst, const hgf_creds *src, hgf_err *err)
{
    return hgf_creds_set(dst, src->access_key_id, src->secret_access_key, src->session_token,
                         src->expiration, src->source, err);
}

int hgf_creds_from_env(hgf_creds *out, hgf_err *err)
{
    const char *id = getenv("AWS_ACCESS_KEY_ID");
    const char *secret = getenv("AWS_SECRET_ACCESS_KEY");
    if (!id || !*id) {
        if (secret && *secret)
            return hgf_err_set(err, HGF_EINPUT,
                               "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not");
        return hgf_err_set(err, HGF_ENOTFOUND, "AWS_ACCESS_KEY_ID is not set");
    }
    if (!secret || !*secret)
        return hgf_err_set(err, HGF_EINPUT,
                           "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
    int rc = hgf_creds_validate_access_key_id(id, "AWS_ACCESS_KEY_ID", err);
    if (rc)
        return rc;
    return hgf_creds_set(out, id, secret, getenv("AWS_SESSION_TOKEN"), 0, "env", err);
}

int hgf_creds_validate_access_key_id(const char *akid, const char *field, hgf_err *err)
{
    size_t n = strlen(akid);
    if (n < 16 || n > 128)
        return hgf_err_set(err, HGF_EINPUT, "%s: expected 16 to 128 characters, got %zu", field, n);
    for (size_t i = 0; i < n; i++)
        if (!isupper((unsigned char)akid[i]) && !isdigit((unsigned char)akid[i]))
            return hgf_err_set(err, HGF_EINPUT,
                               "%s: expected only upper-case letters and digits (position %zu)",
                               field, i + 1);
    return 0;
}

void hgf_creds_describe(const hgf_creds *c, char *out, size_t n)
{
    const char *id = c->access_key_id ? c->access_key_id : "";
    size_t len = strlen(id);
    if (len >= 8)
        snprintf(out, n, "%.4s****%s (%s)", id, id + len - 4, c->source);
    else
        snprintf(out, n, "**** (%s)", c->source);
}
