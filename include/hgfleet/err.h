/* Errors as return codes plus a message the caller owns.
 *
 * Every fallible function returns 0 on success or a negative HGF_E* code,
 * and, when given a non-NULL hgf_err, fills it with a human message that
 * names the bad field. hgf_err is a plain value: the caller owns it (usually
 * on the stack); nothing inside it needs freeing. */
#ifndef HGF_ERR_H
#define HGF_ERR_H

#include <stddef.h>

enum hgf_errcode {
    HGF_OK = 0,
    HGF_EINPUT = -2,   /* usage or input error: exit 2 */
    HGF_EFAIL = -1,    /* the operation failed: exit 1 */
    HGF_ENOMEM = -3,
    HGF_EDB = -4,      /* database unreachable or failed */
    HGF_EAWS = -5,     /* AWS answered with an error (see aws_code) */
    HGF_EHTTP = -6,    /* transport failure */
    HGF_ENOTFOUND = -7,
    HGF_EEXIST = -8,   /* duplicate: exit 2 */
};

typedef struct hgf_err {
    int code;
    char aws_code[64];  /* AWS error code (__type / XML Code), "" if none */
    char msg[1024];
} hgf_err;

void hgf_err_clear(hgf_err *e);
/* Sets code and formats msg; returns code so callers can `return hgf_err_set(...)`.
 * Safe with e == NULL. */
int hgf_err_set(hgf_err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Maps an error code to the CLI exit code contract: 0, 1 or 2. */
int hgf_err_exit_code(int code);

#endif
