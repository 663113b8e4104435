#include "hgfleet/report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const SEVERITIES[] = {"critical", "high", "medium", "low", "unknown"};
#define N_SEV 5

static const char *str(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static long long num(const json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

/* ---- JSON ------------------------------------------------------------ */

static int render_json(const json_t *report, hgf_buf *out)
{
    char *t = json_dumps(report, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    int rc = t ? hgf_buf_puts(out, t) : HGF_ENOMEM;
    if (!rc)
        rc = hgf_buf_putc(out, '\n');
    free(t);
    return rc;
}

/* ---- CSV (RFC 4180) -------------------------------------------------- */

static void csv_field(hgf_buf *b, const char *s, int last)
{
    if (strpbrk(s, ",\"\r\n")) {
        hgf_buf_putc(b, '"');
        for (; *s; s++) {
            if (*s == '"')
                hgf_buf_putc(b, '"');
            hgf_buf_putc(b, *s);
        }
        hgf_buf_putc(b, '"');
    } else {
        hgf_buf_puts(b, s);
    }
    hgf_buf_puts(b, last ? "\r\n" : ",");
}

static void csv_num(hgf_buf *b, long long v)
{
    hgf_buf_printf(b, "%lld,", v);
}

static const char CSV_HEADER[] =
    "row_type,registry,account_id,region,status,repositories,images,images_scanned,critical,"
    "high,medium,low,unknown,diagnosis,name,value\r\n";

/* A diagnosis in one cell: "symptom -- cause -- fix". */
static void diag_text(const json_t *d, hgf_buf *t)
{
    if (!json_is_object(d))
        return;
    hgf_buf_printf(t, "%s -- %s -- %s", str(d, "symptom"), str(d, "cause"), str(d, "fix"));
}

static void csv_counts(hgf_buf *b, const json_t *row)
{
    csv_num(b, num(row, "repositories"));
    csv_num(b, num(row, "images"));
    csv_num(b, num(row, "images_scanned"));
    const json_t *f = json_object_get(row, "findings");
    for (int i = 0; i < N_SEV; i++)
        csv_num(b, num(f, SEVERITIES[i]));
}

static void csv_connection(hgf_buf *b, const json_t *c)
{
    csv_field(b, "connection", 0);
    csv_field(b, str(c, "registry"), 0);
    csv_field(b, str(c, "account_id"), 0);
    csv_field(b, str(c, "region"), 0);
    csv_field(b, str(c, "status"), 0);
    csv_counts(b, c);
    hgf_buf d = HGF_BUF_INIT;
    diag_text(json_object_get(c, "diagnosis"), &d);
    if (!d.len && json_object_get(c, "error"))
        hgf_buf_puts(&d, str(c, "error"));
    csv_field(b, hgf_buf_str(&d), 0);
    hgf_buf_free(&d);
    csv_field(b, "", 0);
    csv_field(b, "", 1);
}

/* Rows that carry one named number in name,value (a severity total or a
 * posture check), and maybe a reason in the diagnosis column; the other
 * columns stay empty. */
static void csv_named_why(hgf_buf *b, const char *type, const char *why, const char *name,
                          const char *value)
{
    csv_field(b, type, 0);
    for (int i = 0; i < 12; i++)
        csv_field(b, "", 0);
    csv_field(b, why, 0);
    csv_field(b, name, 0);
    csv_field(b, value, 1);
}

static void csv_named(hgf_buf *b, const char *type, const char *name, const char *value)
{
    csv_named_why(b, type, "", name, value);
}

static void csv_totals(hgf_buf *b, const json_t *report)
{
    const json_t *t = json_object_get(report, "totals");
    csv_field(b, "totals", 0);
    for (int i = 0; i < 4; i++)
        csv_field(b, "", 0);
    csv_counts(b, t);
    for (int i = 0; i < 2; i++)
        csv_field(b, "", 0);
    csv_field(b, "", 1);
    const json_t *f = json_object_get(t, "findings");
    char v[32];
    for (int i = 0; i < N_SEV; i++) {
        snprintf(v, sizeof v, "%lld", num(f, SEVERITIES[i]));
        csv_named(b, "findings", SEVERITIES[i], v);
    }
    const json_t *ne = json_object_get(report, "posture_not_evaluated");
    const char *k;
    json_t *val;
    json_object_foreach(json_object_get(t, "posture"), k, val) {
        if (json_is_integer(val))
            snprintf(v, sizeof v, "%lld", (long long)json_integer_value(val));
        csv_named(b, "posture", k, json_is_integer(val) ? v : str(ne, k));
    }
    /* How many repositories or images each check could not judge, and why. */
    json_object_foreach(json_object_get(t, "posture_not_evaluated"), k, val) {
        snprintf(v, sizeof v, "%lld", (long long)json_integer_value(val));
        csv_named_why(b, "posture_not_evaluated", str(ne, k), k, v);
    }
}

static int render_csv(const json_t *report, hgf_buf *out)
{
    hgf_buf_puts(out, CSV_HEADER);
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(report, "connections"), i, c)
        csv_connection(out, c);
    csv_totals(out, report);
    return 0;
}

/* ---- HTML ------------------------------------------------------------ */

/* Registry data is untrusted: every string goes through here. */
static void esc(hgf_buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': hgf_buf_puts(b, "&amp;"); break;
        case '<': hgf_buf_puts(b, "&lt;"); break;
        case '>': hgf_buf_puts(b, "&gt;"); break;
        case '"': hgf_buf_puts(b, "&quot;"); break;
        case '\'': hgf_buf_puts(b, "&#39;"); break;
        default: hgf_buf_putc(b, *s);
        }
    }
}

static const char CSS[] =
    "body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;"
    "color:#1f2328;background:#f6f8fa}h1{margin:0 0 4px}h2{margin:28px 0 8px;border-bottom:"
    "1px solid #d0d7de;padding-bottom:4px}.meta{color:#57606a}.cards{display:flex;flex-wrap:wrap;"
    "gap:12px;margin-top:16px}.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;"
    "padding:12px 16px;min-width:120px}.card .v{font-size:26px;font-weight:600}.card .k{color:"
    "#57606a;font-size:13px}.crit .v{color:#b3261e}.high .v{color:#d4700a}.bad .v{color:#b3261e}"
    "table{border-collapse:collapse;background:#fff;width:100%;margin:8px 0 16px}th,td{border:"
    "1px solid #d0d7de;padding:5px 8px;text-align:left;font-size:14px}th{background:#eaeef2}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}.bar{background:#eaeef2;"
    "border-radius:4px;height:12px;width:160px;display:inline-block;vertical-align:middle}"
    ".bar>span{display:block;height:12px;border-radius:4px;background:#2da44e}"
    ".na{color:#6e7781;font-style:italic}"
    ".status-ok{color:#1a7f37;font-weight:600}.status-failed{color:#b3261e;font-weight:600}"
    ".diag{background:#fff;border:1px solid #d0d7de;border-left:4px solid #b3261e;"
    "border-radius:6px;padding:8px 12px;margin:8px 0}.diag dt{font-weight:600}.diag dd"
    "{margin:0 0 6px 0}.ne{color:#57606a;font-style:italic}code{font-size:12px;word-break:"
    "break-all}td.viol{color:#b3261e;font-weight:600}table.posture th{font-size:12px}";

static void card(hgf_buf *b, const char *cls, const char *label, long long v)
{
    hgf_buf_printf(b, "<div class=\"card %s\"><div class=\"v\">%lld</div><div class=\"k\">", cls,
                   v);
    esc(b, label);
    hgf_buf_puts(b, "</div></div>\n");
}

static void html_head(hgf_buf *b, const json_t *r)
{
    hgf_buf_printf(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                      "<title>hgfleet sweep %lld</title><style>%s</style></head><body>\n",
                   num(r, "sweep_id"), CSS);
    hgf_buf_printf(b, "<h1>hgfleet sweep %lld</h1>\n<p class=\"meta\">status <b>", num(r, "sweep_id"));
    esc(b, str(r, "status"));
    hgf_buf_puts(b, "</b> &middot; started ");
    esc(b, str(r, "started_at"));
    hgf_buf_puts(b, " &middot; finished ");
    esc(b, str(r, "finished_at"));
    hgf_buf_puts(b, "</p>\n");
}

static void html_cards(hgf_buf *b, const json_t *t)
{
    const json_t *f = json_object_get(t, "findings");
    hgf_buf_puts(b, "<section id=\"totals\"><h2>Totals</h2><div class=\"cards\">\n");
    card(b, "", "connections", num(t, "connections"));
    card(b, num(t, "connections_failed") ? "bad" : "", "connections failed",
         num(t, "connections_failed"));
    card(b, "", "repositories", num(t, "repositories"));
    card(b, "", "images", num(t, "images"));
    card(b, "", "images scanned", num(t, "images_scanned"));
    card(b, "crit", "critical", num(f, "critical"));
    card(b, "high", "high", num(f, "high"));
    card(b, "", "medium", num(f, "medium"));
    card(b, "", "low", num(f, "low"));
    card(b, "", "unknown", num(f, "unknown"));
    hgf_buf_puts(b, "</div></section>\n");
}

static void coverage_bar(hgf_buf *b, long long scanned, long long images)
{
    if (images == 0) {
        /* Nothing to cover: a full bar would read as "all scanned". */
        hgf_buf_puts(b, "<span class=\"na\">no images</span>");
        return;
    }
    double pct = 100.0 * (double)scanned / (double)images;
    if (pct > 100.0)
        pct = 100.0;
    hgf_buf_printf(b, "<span class=\"bar\"><span style=\"width:%.1f%%\"></span></span> %.0f%%",
                   pct, pct);
}

static void html_conn_row(hgf_buf *b, const json_t *c)
{
    const json_t *f = json_object_get(c, "findings");
    hgf_buf_puts(b, "<tr><td>");
    esc(b, str(c, "region"));
    hgf_buf_puts(b, "</td><td><code>");
    esc(b, str(c, "registry"));
    hgf_buf_printf(b, "</code></td><td class=\"status-%s\">",
                   strcmp(str(c, "status"), "ok") ? "failed" : "ok");
    esc(b, str(c, "status"));
    hgf_buf_printf(b, "</td><td class=\"n\">%lld</td><td class=\"n\">%lld</td><td class=\"n\">%lld"
                      "</td><td>",
                   num(c, "repositories"), num(c, "images"), num(c, "images_scanned"));
    coverage_bar(b, num(c, "images_scanned"), num(c, "images"));
    hgf_buf_puts(b, "</td>");
    for (int i = 0; i < N_SEV; i++)
        hgf_buf_printf(b, "<td class=\"n\">%lld</td>", num(f, SEVERITIES[i]));
    hgf_buf_puts(b, "</tr>\n");
}

static const char CONN_TABLE_HEAD[] =
    "<table><thead><tr><th>region</th><th>registry</th><th>status</th><th>repositories</th>"
    "<th>images</th><th>scanned</th><th>coverage</th><th>critical</th><th>high</th>"
    "<th>medium</th><th>low</th><th>unknown</th></tr></thead><tbody>\n";

/* Connections arrive sorted by account then region: one table per account. */
static void html_accounts(hgf_buf *b, const json_t *conns)
{
    hgf_buf_puts(b, "<section id=\"accounts\"><h2>Accounts and regions</h2>\n");
    const char *open = NULL;
    size_t i;
    json_t *c;
    json_array_foreach(conns, i, c) {
        const char *acct = str(c, "account_id");
        if (!open || strcmp(open, acct)) {
            if (open)
                hgf_buf_puts(b, "</tbody></table>\n");
            hgf_buf_puts(b, "<h3>Account ");
            esc(b, acct);
            hgf_buf_puts(b, "</h3>\n");
            hgf_buf_puts(b, CONN_TABLE_HEAD);
            open = acct;
        }
        html_conn_row(b, c);
    }
    if (open)
        hgf_buf_puts(b, "</tbody></table>\n");
    hgf_buf_puts(b, "</section>\n");
}

static void dd(hgf_buf *b, const char *term, const char *text)
{
    if (!*text)
        return;
    hgf_buf_puts(b, "<dt>");
    esc(b, term);
    hgf_buf_puts(b, "</dt><dd>");
    esc(b, text);
    hgf_buf_puts(b, "</dd>");
}

static void html_failures(hgf_buf *b, const json_t *conns)
{
    hgf_buf_puts(b, "<section id=\"failures\"><h2>Failing connections</h2>\n");
    int n = 0;
    size_t i;
    json_t *c;
    json_array_foreach(conns, i, c) {
        if (!strcmp(str(c, "status"), "ok"))
            continue;
        n++;
        const json_t *d = json_object_get(c, "diagnosis");
        hgf_buf_puts(b, "<div class=\"diag\"><b><code>");
        esc(b, str(c, "registry"));
        hgf_buf_puts(b, "</code></b><dl>");
        dd(b, "Symptom", str(d, "symptom"));
        dd(b, "Cause", str(d, "cause"));
        dd(b, "Fix", str(d, "fix"));
        dd(b, "Failed step", str(d, "step"));
        dd(b, "AWS said", str(d, "detail"));
        if (!json_is_object(d))
            dd(b, "Error", str(c, "error"));
        hgf_buf_puts(b, "</dl></div>\n");
    }
    if (!n)
        hgf_buf_puts(b, "<p>None: every connection synced.</p>\n");
    hgf_buf_puts(b, "</section>\n");
}

static void html_worst(hgf_buf *b, const json_t *worst)
{
    hgf_buf_printf(b, "<section id=\"worst-images\"><h2>Worst images (top %d by critical "
                      "findings)</h2>\n", HGF_REPORT_WORST_IMAGES);
    if (!json_array_size(worst)) {
        hgf_buf_puts(b, "<p>No image has critical or high findings.</p></section>\n");
        return;
    }
    hgf_buf_puts(b, "<table><thead><tr><th>registry</th><th>repository</th><th>tags</th>"
                    "<th>digest</th><th>critical</th><th>high</th><th>medium</th></tr></thead>"
                    "<tbody>\n");
    size_t i;
    json_t *w;
    json_array_foreach(worst, i, w) {
        const json_t *f = json_object_get(w, "findings");
        static const char *const COLS[] = {"registry", "repository", "tags", "digest"};
        hgf_buf_puts(b, "<tr>");
        for (int k = 0; k < 4; k++) {
            hgf_buf_puts(b, "<td><code>");
            esc(b, str(w, COLS[k]));
            hgf_buf_puts(b, "</code></td>");
        }
        hgf_buf_printf(b, "<td class=\"n\">%lld</td><td class=\"n\">%lld</td><td class=\"n\">"
                          "%lld</td></tr>\n",
                       num(f, "critical"), num(f, "high"), num(f, "medium"));
    }
    hgf_buf_puts(b, "</tbody></table></section>\n");
}

/* A check's cell: its count, or "not evaluated" (never shown as 0). */
static void posture_cell(hgf_buf *b, const json_t *v)
{
    if (json_is_integer(v))
        hgf_buf_printf(b, "<td class=\"n%s\">%lld</td>", json_integer_value(v) ? " viol" : "",
                       (long long)json_integer_value(v));
    else
        hgf_buf_puts(b, "<td class=\"ne\">not evaluated</td>");
}

/* "N: reason" for what a check could not judge, or nothing. */
static void not_evaluated_cell(hgf_buf *b, long long n, const char *why)
{
    hgf_buf_puts(b, "<td class=\"ne\">");
    if (n) {
        hgf_buf_printf(b, "%lld &middot; ", n);
        esc(b, why);
    }
    hgf_buf_puts(b, "</td>");
}

static void html_posture_totals(hgf_buf *b, const json_t *report)
{
    const json_t *tot = json_object_get(report, "totals");
    const json_t *t = json_object_get(tot, "posture");
    const json_t *counts = json_object_get(tot, "posture_not_evaluated");
    const json_t *ne = json_object_get(report, "posture_not_evaluated");
    hgf_buf_puts(b, "<table><thead><tr><th>check</th><th>violations</th><th>not evaluated</th>"
                    "</tr></thead><tbody>\n");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)t, k, v) {
        hgf_buf_puts(b, "<tr><td>");
        esc(b, k);
        hgf_buf_puts(b, "</td>");
        posture_cell(b, v);
        long long n = (long long)json_integer_value(json_object_get(counts, k));
        not_evaluated_cell(b, n ? n : !json_is_integer(v), str(ne, k));
        hgf_buf_puts(b, "</tr>\n");
    }
    hgf_buf_puts(b, "</tbody></table>\n");
}

static int has_posture_news(const json_t *c)
{
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(c, "posture"), k, v) {
        if (!json_is_integer(v) || json_integer_value(v))
            return 1;
    }
    return json_object_size(json_object_get(c, "posture_not_evaluated")) > 0;
}

static void html_posture_row(hgf_buf *b, const json_t *c)
{
    hgf_buf_puts(b, "<tr><td><code>");
    esc(b, str(c, "registry"));
    hgf_buf_puts(b, "</code></td>");
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(c, "posture"), k, v) posture_cell(b, v);
    hgf_buf_puts(b, "<td class=\"ne\">");
    const json_t *ne;
    int first = 1;
    json_object_foreach(json_object_get(c, "posture_not_evaluated"), k, ne) {
        hgf_buf_printf(b, "%s%lld ", first ? "" : "<br>", num(ne, "count"));
        esc(b, k);
        hgf_buf_puts(b, ": ");
        esc(b, str(ne, "reason"));
        first = 0;
    }
    hgf_buf_puts(b, "</td></tr>\n");
}

/* Connections with a violation or an unjudged check, one column per check. */
static void html_posture_connections(hgf_buf *b, const json_t *conns)
{
    const json_t *first = json_array_get(conns, 0);
    if (!first)
        return;
    hgf_buf_puts(b, "<h3>By connection</h3><table class=\"posture\"><thead><tr><th>registry</th>");
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(first, "posture"), k, v) {
        /* Spaces let the narrow column headers wrap between words. */
        char label[96];
        snprintf(label, sizeof label, "%s", k);
        for (char *u = strchr(label, '_'); u; u = strchr(u, '_'))
            *u = ' ';
        hgf_buf_puts(b, "<th>");
        esc(b, label);
        hgf_buf_puts(b, "</th>");
    }
    hgf_buf_puts(b, "<th>not evaluated</th></tr></thead><tbody>\n");
    size_t i, shown = 0;
    json_t *c;
    json_array_foreach(conns, i, c) {
        if (!has_posture_news(c))
            continue;
        html_posture_row(b, c);
        shown++;
    }
    if (!shown)
        hgf_buf_puts(b, "<tr><td colspan=\"99\">No violations anywhere.</td></tr>\n");
    hgf_buf_puts(b, "</tbody></table>\n");
}

static void html_posture(hgf_buf *b, const json_t *report)
{
    hgf_buf_puts(b, "<section id=\"posture\"><h2>Posture</h2>\n");
    html_posture_totals(b, report);
    html_posture_connections(b, json_object_get(report, "connections"));
    hgf_buf_puts(b, "</section>\n");
}

static int render_html(const json_t *r, hgf_buf *out)
{
    html_head(out, r);
    html_cards(out, json_object_get(r, "totals"));
    html_failures(out, json_object_get(r, "connections"));
    html_accounts(out, json_object_get(r, "connections"));
    html_worst(out, json_object_get(r, "worst_images"));
    html_posture(out, r);
    if (json_object_get(r, "note")) {
        hgf_buf_puts(out, "<p class=\"ne\">");
        esc(out, str(r, "note"));
        hgf_buf_puts(out, "</p>\n");
    }
    hgf_buf_puts(out, "</body></html>\n");
    return 0;
}

int hgf_report_render(const json_t *report, hgf_report_format f, hgf_buf *out, hgf_err *err)
{
    size_t before = out->len;
    int rc = f == HGF_REPORT_JSON  ? render_json(report, out)
             : f == HGF_REPORT_CSV ? render_csv(report, out)
                                   : render_html(report, out);
    /* Appends inside the renderers only fail when memory runs out; a data
     * pointer still NULL after rendering is how that shows. */
    if (!rc && !out->data)
        rc = HGF_ENOMEM;
    if (rc)
        return hgf_err_set(err, rc, "rendering the report failed after %zu bytes",
                           out->len - before);
    return 0;
}
