#include "hgfleet/buf.h"
#include "hgfleet/err.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void hgf_buf_init(hgf_buf *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
}

void hgf_buf_free(hgf_buf *b)
{
    free(b->data);
    hgf_buf_init(b);
}

void hgf_buf_reset(hgf_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

int hgf_buf_reserve(hgf_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return HGF_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int hgf_buf_append(hgf_buf *b, const void *p, size_t n)
{
    if (hgf_buf_reserve(b, n))
        return HGF_ENOMEM;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int hgf_buf_puts(hgf_buf *b, const char *s)
{
    return hgf_buf_append(b, s, strlen(s));
}

int hgf_buf_putc(hgf_buf *b, char c)
{
    return hgf_buf_append(b, &c, 1);
}

/* Formats once into the spare capacity, and again only when it did not fit. */
int hgf_buf_vprintf(hgf_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    size_t room = b->cap > b->len ? b->cap - b->len : 0;
    int n = vsnprintf(room ? b->data + b->len : NULL, room, fmt, ap2);
    va_end(ap2);
    if (n >= 0 && (size_t)n < room) {
        b->len += (size_t)n;
        return 0;
    }
    if (n < 0 || hgf_buf_reserve(b, (size_t)n))
        return HGF_ENOMEM;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

size_t hgf_fmt_i64(char *out, long long v)
{
    char rev[24];
    size_t n = 0, len = 0;
    /* Unsigned, so that LLONG_MIN negates. */
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        rev[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        out[len++] = '-';
    while (n)
        out[len++] = rev[--n];
    out[len] = '\0';
    return len;
}

/* For ms < 2^53 both ms and 1000 are exact, so ms / 1000.0 is the double
 * nearest the decimal ms/1000: that decimal reads back as v exactly. */
size_t hgf_fmt_real(char *out, double v)
{
    if (!signbit(v) && v < 1e12) {
        long long ms = llround(v * 1000.0);
        if ((double)ms / 1000.0 == v) {
            size_t len = hgf_fmt_i64(out, ms / 1000);
            int frac = (int)(ms % 1000);
            if (frac) {
                out[len++] = '.';
                for (int d = 100; frac; d /= 10) {
                    out[len++] = (char)('0' + frac / d);
                    frac %= d;
                }
                out[len] = '\0';
            }
            return len;
        }
    }
    int n = snprintf(out, HGF_FMT_MAX, "%.17g", v);
    return n > 0 ? (size_t)n : 0;
}

int hgf_buf_put_i64(hgf_buf *b, long long v)
{
    char t[HGF_FMT_MAX];
    return hgf_buf_append(b, t, hgf_fmt_i64(t, v));
}

int hgf_buf_put_real(hgf_buf *b, double v)
{
    char t[HGF_FMT_MAX];
    return hgf_buf_append(b, t, hgf_fmt_real(t, v));
}

int hgf_buf_printf(hgf_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = hgf_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

char *hgf_buf_detach(hgf_buf *b)
{
    char *p = b->data ? b->data : strdup("");
    hgf_buf_init(b);
    return p;
}

const char *hgf_buf_str(const hgf_buf *b)
{
    return b->data ? b->data : "";
}

int hgf_buf_put_hex(hgf_buf *b, const unsigned char *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (hgf_buf_reserve(b, n * 2))
        return HGF_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        b->data[b->len++] = hex[p[i] >> 4];
        b->data[b->len++] = hex[p[i] & 15];
    }
    b->data[b->len] = '\0';
    return 0;
}
