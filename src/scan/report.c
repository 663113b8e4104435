/* Report handling shared by the backends: severity words into counts, safe
 * excerpts of tool output for error messages, and the parse entry point. */
#include "scan_internal.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

void hgf_scan_count(hgf_scan_summary *sum, const char *sev)
{
    if (!sev)
        sum->unknown++;
    else if (strcasecmp(sev, "critical") == 0)
        sum->critical++;
    else if (strcasecmp(sev, "high") == 0)
        sum->high++;
    else if (strcasecmp(sev, "medium") == 0)
        sum->medium++;
    /* Negligible (grype, Harbor) and None (Harbor) are below Low: the summary
     * has no column for them, and dropping them would hide findings. */
    else if (strcasecmp(sev, "low") == 0 || strcasecmp(sev, "negligible") == 0 ||
             strcasecmp(sev, "none") == 0)
        sum->low++;
    else
        sum->unknown++;
}

void hgf_scan_excerpt(const char *p, size_t n, size_t max, char *out, size_t outn)
{
    size_t o = 0, i;
    if (outn == 0)
        return;
    for (i = 0; i < n && i < max; i++) {
        unsigned char c = (unsigned char)p[i];
        char esc[8];
        if (c == '\n')
            snprintf(esc, sizeof esc, "\\n");
        else if (c == '\\')
            snprintf(esc, sizeof esc, "\\\\");
        else if (c < 0x20 || c >= 0x7f)
            snprintf(esc, sizeof esc, "\\x%02x", c);
        else
            snprintf(esc, sizeof esc, "%c", c);
        size_t k = strlen(esc);
        if (o + k + 4 > outn)
            break;
        memcpy(out + o, esc, k);
        o += k;
    }
    if (i < n && o + 4 <= outn) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

int hgf_scan_redact(const char *text, size_t n, const char *secret, hgf_buf *out)
{
    size_t sl = secret ? strlen(secret) : 0;
    hgf_buf_reset(out);
    if (hgf_buf_reserve(out, n + 1))
        return HGF_ENOMEM;
    for (size_t i = 0; i < n;) {
        if (sl && i + sl <= n && memcmp(text + i, secret, sl) == 0) {
            hgf_buf_puts(out, "***");
            i += sl;
        } else {
            hgf_buf_putc(out, text[i++]);
        }
    }
    return 0;
}

typedef int (*parse_fn)(json_t *, hgf_scan_summary *, char *, size_t, const char **);

static const parse_fn parsers[] = {NULL, hgf_scan_trivy_parse, hgf_scan_grype_parse,
                                   hgf_scan_harbor_parse};

static int parse_fail(enum scan_kind k, const char *text, size_t len, const char *why,
                      hgf_err *err)
{
    char shown[300];
    hgf_scan_excerpt(text, len, 64, shown, sizeof shown);
    return hgf_err_set(err, HGF_EFAIL, "%s: cannot parse output: %s (%s)", hgf_scan_kind_name(k),
                       len ? shown : "(empty)", why);
}

int hgf_scan_parse(enum scan_kind k, const char *text, size_t len, hgf_scan_summary *sum,
                   json_t **report, char *version, size_t vn, hgf_err *err)
{
    json_error_t je;
    memset(sum, 0, sizeof *sum);
    if (vn)
        version[0] = '\0';
    json_t *root = json_loadb(text, len, 0, &je);
    if (!root)
        return parse_fail(k, text, len, je.text, err);
    const char *why = NULL;
    if (parsers[k](root, sum, version, vn, &why)) {
        memset(sum, 0, sizeof *sum);
        json_decref(root);
        return parse_fail(k, text, len, why, err);
    }
    if (report)
        *report = root;
    else
        json_decref(root);
    return 0;
}

int hgf_scanner_parse(const char *format, const char *text, size_t len, hgf_scan_summary *out,
                      json_t **report, hgf_err *err)
{
    if (report)
        *report = NULL;
    for (int k = SCAN_TRIVY; k <= SCAN_HARBOR; k++)
        if (format && strcmp(format, hgf_scan_kind_name((enum scan_kind)k)) == 0) {
            char version[128];
            return hgf_scan_parse((enum scan_kind)k, text, len, out, report, version,
                                  sizeof version, err);
        }
    return hgf_err_set(err, HGF_EINPUT, "report format: expected trivy, grype or harbor");
}
