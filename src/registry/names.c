/* Names the distribution spec defines: repositories, tags, digests, and the
 * URL_REF form the CLI takes. */
#include "hgfleet/registry.h"
#include "hgfleet/buf.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

int hgf_registry_is_digest(const char *ref)
{
    if (!ref || strncmp(ref, "sha256:", 7) || strlen(ref) != 71)
        return 0;
    for (const char *p = ref + 7; *p; p++)
        if (!isxdigit((unsigned char)*p) || isupper((unsigned char)*p))
            return 0;
    return 1;
}

/* Distribution spec: path components [a-z0-9]+(([._]|__|[-]*)[a-z0-9]+)*,
 * joined by '/'. A loose check is enough to keep the URL well-formed. */
static int name_char(char c)
{
    return islower((unsigned char)c) || isdigit((unsigned char)c);
}

/* One path component: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*. Returns its end,
 * or NULL. A component such as ".." or "a..b" is not one. */
static const char *component_end(const char *p)
{
    if (!name_char(*p))
        return NULL;
    for (;;) {
        while (name_char(*p))
            p++;
        const char *sep = p;
        if (*p == '.')
            p++;
        else if (*p == '_')
            p += p[1] == '_' ? 2 : 1;
        else
            while (*p == '-')
                p++;
        if (p == sep)
            return p;
        if (!name_char(*p))
            return NULL;
    }
}

int hgf_registry_valid_repository(const char *r)
{
    size_t n = r ? strlen(r) : 0;
    if (n == 0 || n > 256)
        return 0;
    for (const char *p = r;;) {
        if (!(p = component_end(p)))
            return 0;
        if (*p == '\0')
            return 1;
        if (*p++ != '/')
            return 0;
    }
}

int hgf_registry_valid_tag(const char *t)
{
    size_t n = t ? strlen(t) : 0;
    if (n == 0 || n > 128 || !(isalnum((unsigned char)t[0]) || t[0] == '_'))
        return 0;
    for (const char *p = t; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("._-", *p))
            return 0;
    return 1;
}

void hgf_registry_sha256(const void *data, size_t len, char out[80])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    hgf_buf b = HGF_BUF_INIT;
    hgf_buf_puts(&b, "sha256:");
    hgf_buf_put_hex(&b, md, mdlen);
    snprintf(out, 80, "%s", hgf_buf_str(&b));
    hgf_buf_free(&b);
}

static int valid_host(const char *h, size_t n)
{
    if (n == 0 || n > 261)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)h[i]) && !strchr(".-:[]", h[i]))
            return 0;
    return 1;
}

static int split_name(const char *path, hgf_registry_ref *out, hgf_err *err)
{
    const char *at = strchr(path, '@');
    const char *slash = strrchr(path, '/');
    const char *colon = strrchr(slash ? slash : path, ':');
    const char *end = at ? at : colon ? colon : path + strlen(path);
    const char *ref = at ? at + 1 : colon ? colon + 1 : "latest";
    if ((size_t)(end - path) >= sizeof out->repository)
        return hgf_err_set(err, HGF_EINPUT, "URL_REF: the repository name is longer than 256 "
                           "characters");
    snprintf(out->repository, sizeof out->repository, "%.*s", (int)(end - path), path);
    if (!hgf_registry_valid_repository(out->repository))
        return hgf_err_set(err, HGF_EINPUT, "URL_REF: \"%.256s\" is not a valid repository name "
                           "(lowercase letters, digits, '.', '_', '-', '/')", out->repository);
    if (at ? !hgf_registry_is_digest(ref) : !hgf_registry_valid_tag(ref))
        return hgf_err_set(err, HGF_EINPUT, at ? "URL_REF: \"%.100s\" is not a sha256:<64 hex> "
                           "digest" : "URL_REF: \"%.100s\" is not a valid tag", ref);
    snprintf(out->reference, sizeof out->reference, "%s", ref);
    return 0;
}

int hgf_registry_parse_ref(const char *s, hgf_registry_ref *out, hgf_err *err)
{
    memset(out, 0, sizeof *out);
    size_t skip = !strncasecmp(s, "https://", 8) ? 8 : !strncasecmp(s, "http://", 7) ? 7 : 0;
    if (!skip)
        return hgf_err_set(err, HGF_EINPUT, "URL_REF: expected http://host[:port]/repo[:tag|@digest] "
                           "or https://...");
    const char *host = s + skip, *slash = strchr(host, '/');
    size_t hlen = slash ? (size_t)(slash - host) : strlen(host);
    if (memchr(host, '@', hlen))
        return hgf_err_set(err, HGF_EINPUT, "URL_REF: credentials in the URL are not accepted; use "
                           "--username and --password-file");
    if (!valid_host(host, hlen))
        return hgf_err_set(err, HGF_EINPUT, "URL_REF: \"%.*s\" is not a valid host[:port]",
                           (int)(hlen > 100 ? 100 : hlen), host);
    if (!slash || !slash[1])
        return hgf_err_set(err, HGF_EINPUT, "URL_REF: no repository after the host");
    snprintf(out->base, sizeof out->base, "%.*s", (int)(skip + hlen), s);
    int rc = split_name(slash + 1, out, err);
    if (rc)
        memset(out, 0, sizeof *out);
    return rc;
}
