/* A growable byte buffer, always NUL-terminated.
 *
 * The hgf_buf struct is owned by whoever declares it; its data is owned by
 * the buffer until hgf_buf_detach() hands it (malloc'd) to the caller. */
#ifndef HGF_BUF_H
#define HGF_BUF_H

#include <stddef.h>
#include <stdarg.h>

typedef struct hgf_buf {
    char *data;  /* NULL until the first append; data[len] == '\0' after it */
    size_t len;
    size_t cap;
} hgf_buf;

#define HGF_BUF_INIT {NULL, 0, 0}

void hgf_buf_init(hgf_buf *b);
void hgf_buf_free(hgf_buf *b);
void hgf_buf_reset(hgf_buf *b);               /* len = 0, keeps capacity */
int hgf_buf_reserve(hgf_buf *b, size_t extra); /* 0 or HGF_ENOMEM */
int hgf_buf_append(hgf_buf *b, const void *p, size_t n);
int hgf_buf_puts(hgf_buf *b, const char *s);
int hgf_buf_putc(hgf_buf *b, char c);
int hgf_buf_printf(hgf_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int hgf_buf_vprintf(hgf_buf *b, const char *fmt, va_list ap);
/* Numbers as text without printf, which a catalog listing calls millions of
 * times. The hgf_fmt_ forms write into out (HGF_FMT_MAX bytes, NUL-terminated)
 * and return the length. */
#define HGF_FMT_MAX 32
size_t hgf_fmt_i64(char *out, long long v);               /* as "%lld" */
/* Text that a correctly rounding strtod reads back as exactly v: the shortest
 * for a multiple of 0.001 in [0, 1e12) (AWS's epoch times), "%.17g" else. */
size_t hgf_fmt_real(char *out, double v);
int hgf_buf_put_i64(hgf_buf *b, long long v);
int hgf_buf_put_real(hgf_buf *b, double v);
/* Returns the data ("" if empty) and leaves b empty; caller frees. */
char *hgf_buf_detach(hgf_buf *b);
/* The data as a C string, "" when empty; owned by b. */
const char *hgf_buf_str(const hgf_buf *b);
/* Lowercase hex of n bytes appended to b. */
int hgf_buf_put_hex(hgf_buf *b, const unsigned char *p, size_t n);

#endif
