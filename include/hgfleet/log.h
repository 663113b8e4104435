/* Structured logs on stderr: JSON lines (the default) or text.
 *
 * Configuration is set once at start-up from HGFLEET_LOG_LEVEL and
 * HGFLEET_LOG_FORMAT; it is part of the process's config, the one piece of
 * global state besides the loop. Callers never pass secrets to the logger:
 * the fields are free text, so redaction must happen before the call. */
#ifndef HGF_LOG_H
#define HGF_LOG_H

#include "hgfleet/err.h"

enum hgf_log_level { HGF_LOG_DEBUG, HGF_LOG_INFO, HGF_LOG_WARN, HGF_LOG_ERROR };

/* Reads HGFLEET_LOG_LEVEL / HGFLEET_LOG_FORMAT. An unknown value is
 * HGF_EINPUT naming the variable; the setting read so far stays (info/json
 * by default). */
int hgf_log_init_from_env(hgf_err *err);
void hgf_log_set_level(enum hgf_log_level level);
/* Reopens nothing today (stderr only) but is the SIGHUP hook. */
void hgf_log_reopen(void);

/* event: a dotted name such as "sync.done"; fmt: "key=value ..." text. */
void hgf_log(enum hgf_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define hgf_log_debug(ev, ...) hgf_log(HGF_LOG_DEBUG, ev, __VA_ARGS__)
#define hgf_log_info(ev, ...) hgf_log(HGF_LOG_INFO, ev, __VA_ARGS__)
#define hgf_log_warn(ev, ...) hgf_log(HGF_LOG_WARN, ev, __VA_ARGS__)
#define hgf_log_error(ev, ...) hgf_log(HGF_LOG_ERROR, ev, __VA_ARGS__)

#endif
