#include "hgfleet/log.h"
#include "hgfleet/err.h"
#include "hgfleet/timeutil.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Process config, written once by hgf_log_init_from_env before any thread. */
static struct {
    enum hgf_log_level level;
    int json;
} log_cfg = {HGF_LOG_INFO, 1};

static const char *level_names[] = {"debug", "info", "warn", "error"};

static int parse_level(const char *lv, hgf_err *err)
{
    for (int i = 0; i < 4; i++)
        if (!strcasecmp(lv, level_names[i])) {
            log_cfg.level = (enum hgf_log_level)i;
            return 0;
        }
    if (!strcasecmp(lv, "warning")) {
        log_cfg.level = HGF_LOG_WARN;
        return 0;
    }
    return hgf_err_set(err, HGF_EINPUT,
                       "HGFLEET_LOG_LEVEL: expected debug, info, warn or error, got \"%.32s\"", lv);
}

int hgf_log_init_from_env(hgf_err *err)
{
    const char *lv = getenv("HGFLEET_LOG_LEVEL");
    int rc = lv && *lv ? parse_level(lv, err) : 0;
    const char *fmt = getenv("HGFLEET_LOG_FORMAT");
    if (rc || !fmt || !*fmt)
        return rc;
    if (!strcasecmp(fmt, "text"))
        log_cfg.json = 0;
    else if (strcasecmp(fmt, "json"))
        return hgf_err_set(err, HGF_EINPUT,
                          "HGFLEET_LOG_FORMAT: expected json or text, got \"%.32s\"", fmt);
    return 0;
}

void hgf_log_set_level(enum hgf_log_level level)
{
    log_cfg.level = level;
}

void hgf_log_reopen(void)
{
    fflush(stderr);
}

void hgf_log(enum hgf_log_level level, const char *event, const char *fmt, ...)
{
    if (level < log_cfg.level)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char ts[40];
    hgf_time_format_iso_ms(hgf_time_now_ms(), ts, sizeof ts);
    if (!log_cfg.json) {
        fprintf(stderr, "%s %-5s %s %s\n", ts, level_names[level], event, msg);
        return;
    }
    /* jansson does the escaping so a hostile value cannot forge fields. */
    json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "ts", ts, "level", level_names[level],
                          "event", event, "msg", msg);
    char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (line)
        fprintf(stderr, "%s\n", line);
    free(line);
    json_decref(o);
}
