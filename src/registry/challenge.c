/* WWW-Authenticate parsing (RFC 7235 section 4.1 and 2.1):
 *
 *   challenges  = challenge *( OWS "," OWS challenge )   (empty elements allowed)
 *   challenge   = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
 *   auth-param  = token BWS "=" BWS ( token / quoted-string )
 *
 * After a comma, "token =" continues the parameters and anything else starts
 * the next challenge. Every challenge is checked, including ones whose
 * scheme we do not use, so a malformed header is always an error. */
#include "hgfleet/registry.h"

#include <string.h>
#include <strings.h>

enum { SEEN_REALM = 1, SEEN_SERVICE = 2, SEEN_SCOPE = 4, SEEN_ERROR = 8 };

typedef struct parser {
    const char *start, *p;
    hgf_err *err;
} parser;

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int is_token68_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("-._~+/", c));
}

static size_t span(const char *p, int (*ok)(unsigned char))
{
    size_t n = 0;
    while (ok((unsigned char)p[n]))
        n++;
    return n;
}

static const char *skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

static int fail(const parser *ps, const char *what)
{
    return hgf_err_set(ps->err, HGF_EINPUT, "WWW-Authenticate: %s at offset %ld", what,
                       (long)(ps->p - ps->start));
}

/* Copies the value (token or quoted-string, unescaped) into out[n]; out may
 * be NULL for parameters we do not keep. 1 when it did not fit. */
static int read_value(parser *ps, char *out, size_t n, int *overflow)
{
    size_t len = 0;
    const char *p = ps->p;
    if (*p != '"') {
        size_t t = span(p, is_tchar);
        if (!t)
            return fail(ps, "expected a parameter value");
        for (size_t i = 0; i < t; i++, len++)
            if (out && len + 1 < n)
                out[len] = p[i];
        ps->p = p + t;
    } else {
        for (p++; *p != '"'; p++, len++) {
            if (*p == '\\')
                p++;
            unsigned char c = (unsigned char)*p;
            if (!c || (c < 0x20 && c != '\t') || c == 0x7f) {
                ps->p = p;
                return fail(ps, c ? "control character in a quoted string" : "unterminated quoted string");
            }
            if (out && len + 1 < n)
                out[len] = (char)c;
        }
        ps->p = p + 1;
    }
    if (out)
        out[len < n ? len : n - 1] = '\0';
    *overflow = out && len >= n;
    return 0;
}

static char *param_slot(hgf_registry_challenge *ch, const char *name, size_t n, size_t *cap,
                        int *bit)
{
    static const struct {
        const char *name;
        int bit;
    } KNOWN[] = {{"realm", SEEN_REALM}, {"service", SEEN_SERVICE}, {"scope", SEEN_SCOPE},
                 {"error", SEEN_ERROR}};
    char *slots[] = {ch->realm, ch->service, ch->scope, ch->error};
    size_t caps[] = {sizeof ch->realm, sizeof ch->service, sizeof ch->scope, sizeof ch->error};
    for (size_t i = 0; i < sizeof KNOWN / sizeof KNOWN[0]; i++) {
        if (strlen(KNOWN[i].name) == n && !strncasecmp(name, KNOWN[i].name, n)) {
            *cap = caps[i];
            *bit = KNOWN[i].bit;
            return slots[i];
        }
    }
    return NULL;
}

static int read_param(parser *ps, hgf_registry_challenge *ch, int *seen)
{
    const char *name = ps->p;
    size_t n = span(name, is_tchar);
    if (!n)
        return fail(ps, "expected a parameter name");
    ps->p = skip_ows(name + n);
    if (*ps->p != '=')
        return fail(ps, "expected '=' after a parameter name");
    ps->p = skip_ows(ps->p + 1);
    size_t cap = 0;
    int bit = 0, overflow = 0;
    char *slot = param_slot(ch, name, n, &cap, &bit);
    if (slot && (*seen & bit)) {
        ps->p = name;
        return fail(ps, "parameter given twice");
    }
    *seen |= bit;
    int rc = read_value(ps, slot, cap, &overflow);
    if (!rc && overflow)
        return hgf_err_set(ps->err, HGF_EINPUT, "WWW-Authenticate: parameter %.*s is longer "
                           "than %zu characters", (int)n, name, cap - 1);
    return rc;
}

/* 1 when p (after a comma) continues the parameter list: "token =". */
static int is_param_start(const char *p)
{
    size_t n = span(p, is_tchar);
    return n && *skip_ows(p + n) == '=';
}

/* token68: only when it is followed by the end or a comma; "realm=x" is not. */
static int skip_token68(parser *ps)
{
    size_t n = span(ps->p, is_token68_char);
    const char *q = ps->p + n;
    while (n && *q == '=')
        q++;
    q = skip_ows(q);
    if (!n || (*q && *q != ','))
        return 0;
    ps->p = q;
    return 1;
}

static int read_params(parser *ps, hgf_registry_challenge *ch)
{
    int seen = 0;
    if (skip_token68(ps))
        return 0;
    for (;;) {
        int rc = read_param(ps, ch, &seen);
        if (rc)
            return rc;
        ps->p = skip_ows(ps->p);
        if (!*ps->p)
            return 0;
        if (*ps->p != ',')
            return fail(ps, "expected ',' between parameters");
        const char *q = ps->p;
        while (*q == ',' || *q == ' ' || *q == '\t')
            q++;
        ps->p = q;
        if (!*q || !is_param_start(q))
            return 0;
    }
}

static hgf_registry_scheme scheme_of(const char *p, size_t n)
{
    if (n == 5 && !strncasecmp(p, "Basic", 5))
        return HGF_REGISTRY_BASIC;
    if (n == 6 && !strncasecmp(p, "Bearer", 6))
        return HGF_REGISTRY_BEARER;
    return HGF_REGISTRY_NONE;
}

/* One challenge at ps->p; fills ch (which the caller cleared). */
static int read_challenge(parser *ps, hgf_registry_challenge *ch)
{
    size_t n = span(ps->p, is_tchar);
    if (!n)
        return fail(ps, "expected an auth scheme");
    ch->scheme = scheme_of(ps->p, n);
    ps->p += n;
    if (*ps->p == ' ' || *ps->p == '\t') {
        ps->p = skip_ows(ps->p);
        if (*ps->p && *ps->p != ',')
            return read_params(ps, ch);
    }
    if (*ps->p && *ps->p != ',')
        return fail(ps, "expected a space after the auth scheme");
    return 0;
}

static int check_chosen(const parser *ps, hgf_registry_challenge *out, int found)
{
    if (!found)
        return hgf_err_set(ps->err, HGF_EINPUT, "WWW-Authenticate: no Basic or Bearer challenge");
    if (out->scheme == HGF_REGISTRY_BEARER && !out->realm[0])
        return hgf_err_set(ps->err, HGF_EINPUT, "WWW-Authenticate: Bearer challenge without realm");
    return 0;
}

int hgf_registry_parse_challenge(const char *header, hgf_registry_challenge *out, hgf_err *err)
{
    memset(out, 0, sizeof *out);
    if (!header)
        return hgf_err_set(err, HGF_EINPUT, "WWW-Authenticate: missing");
    parser ps = {.start = header, .p = header, .err = err};
    hgf_registry_challenge scratch;
    int found = 0, rc = 0;
    while (!rc) {
        while (*ps.p == ',' || *ps.p == ' ' || *ps.p == '\t')
            ps.p++;
        if (!*ps.p)
            break;
        hgf_registry_challenge *ch = found ? &scratch : out;
        memset(ch, 0, sizeof *ch);
        rc = read_challenge(&ps, ch);
        found = found || (!rc && ch->scheme != HGF_REGISTRY_NONE);
    }
    if (!rc)
        rc = check_chosen(&ps, out, found);
    if (rc)
        memset(out, 0, sizeof *out);
    return rc;
}
