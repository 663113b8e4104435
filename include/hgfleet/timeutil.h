/* Wall-clock helpers: epoch milliseconds and ISO 8601 UTC.
 * All outputs go into caller-provided arrays. */
#ifndef HGF_TIMEUTIL_H
#define HGF_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

int64_t hgf_time_now_ms(void);
/* "2026-11-30T02:47:34Z" */
void hgf_time_format_iso(time_t t, char *out, size_t n);
/* "2026-11-30T02:47:34.123Z" */
void hgf_time_format_iso_ms(int64_t ms, char *out, size_t n);
/* Parses "YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM)"; -1 on error. */
time_t hgf_time_parse_iso(const char *s);

#endif
