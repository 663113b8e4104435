/* Shared by the libFuzzer targets: NUL-terminated copies of the input and a
 * check that aborts (a crash the fuzzer reports) when an invariant breaks. */
#ifndef HGF_FUZZ_H
#define HGF_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The caller frees the copy; an embedded NUL simply ends the string. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    if (size)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* Splits s in place at the first '\n'; returns the rest or "" at the end. */
static inline char *fuzz_next_line(char *s)
{
    char *nl = strchr(s, '\n');
    if (!nl)
        return s + strlen(s);
    *nl = '\0';
    return nl + 1;
}

#define FUZZ_CHECK(cond)                                                                        \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);        \
            abort();                                                                            \
        }                                                                                       \
    } while (0)

#endif
