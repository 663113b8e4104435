#include "hgfleet/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void hgf_err_clear(hgf_err *e)
{
    if (!e)
        return;
    e->code = HGF_OK;
    e->aws_code[0] = '\0';
    e->msg[0] = '\0';
}

int hgf_err_set(hgf_err *e, int code, const char *fmt, ...)
{
    if (!e)
        return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->code = code;
    return code;
}

int hgf_err_exit_code(int code)
{
    switch (code) {
    case HGF_OK:
        return 0;
    case HGF_EINPUT:
    case HGF_EEXIST:
        return 2;
    default:
        return 1;
    }
}
