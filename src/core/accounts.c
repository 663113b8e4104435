#include "hgfleet/accounts.h"

#include "hgfleet/buf.h"
#include "hgfleet/endpoint.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

/* Where a value came from, for messages: a line, and a column (0 = none). */
typedef struct where {
    const char *file;
    int line, col;
} where;

static int fail_at(hgf_err *err, const where *w, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail_at(hgf_err *err, const where *w, const char *field, const char *fmt, ...)
{
    char detail[640], col[32] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    if (w->col > 0)
        snprintf(col, sizeof col, ", column %d", w->col);
    return hgf_err_set(err, HGF_EINPUT, "%s: line %d%s: %s: %s", w->file ? w->file : "input",
                       w->line, col, field, detail);
}

void hgf_accounts_free(hgf_account_list *l)
{
    for (int i = 0; i < l->n; i++) {
        free(l->rows[i].name);
        free(l->rows[i].role_arn);
        free(l->rows[i].external_id);
    }
    free(l->rows);
    l->rows = NULL;
    l->n = 0;
}

static int all_digits(const char *s, size_t n)
{
    if (strlen(s) != n)
        return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return 0;
    return 1;
}

static int iam_chars(const char *s, const char *extra)
{
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && !strchr(extra, *s))
            return 0;
    return 1;
}

int hgf_accounts_role_name_valid(const char *name)
{
    size_t n = strlen(name);
    return n >= 1 && n <= 64 && iam_chars(name, "+=,.@-");
}

static int external_id_valid(const char *id)
{
    size_t n = strlen(id);
    return n >= 2 && n <= 1224 && iam_chars(id, "+=,.@:/-");
}

/* arn:<partition>:iam::<account>:role/[path/]name. The account may be any:
 * cross-account access is a role in account A that B's repository policy
 * grants (ecr-registry-guide.txt), as `connection add --role-arn` allows. */
static int check_role_arn(const char *arn, const char *partition, char *why, size_t n)
{
    char part[16], acct[16];
    int off = 0;
    if (sscanf(arn, "arn:%15[a-z-]:iam::%15[0-9]:role/%n", part, acct, &off) != 2 || !off) {
        snprintf(why, n, "expected arn:<partition>:iam::<12 digits>:role/<name> or a role name");
        return 0;
    }
    const char *name = strrchr(arn + off, '/');
    name = name ? name + 1 : arn + off;
    if (!all_digits(acct, 12) || !hgf_accounts_role_name_valid(name) || strlen(arn) > 2048 ||
        !iam_chars(arn + off, "+=,.@-/"))
        snprintf(why, n, "malformed role ARN");
    else if (strcmp(part, partition))
        snprintf(why, n, "partition %s does not match the region's partition %s", part, partition);
    else
        return 1;
    return 0;
}

int hgf_accounts_role_arn(const char *role, const char *account_id, const char *region,
                          const char *field, char **out, hgf_err *err)
{
    const char *partition = hgf_endpoint_partition_for_region(region);
    char why[160];
    *out = NULL;
    if (!strncmp(role, "arn:", 4)) {
        if (!check_role_arn(role, partition, why, sizeof why))
            return hgf_err_set(err, HGF_EINPUT, "%s: %s, got \"%.200s\"", field, why, role);
        *out = strdup(role);
    } else {
        if (!hgf_accounts_role_name_valid(role))
            return hgf_err_set(err, HGF_EINPUT,
                               "%s: expected a role ARN or a role name of 1 to 64 characters "
                               "[A-Za-z0-9+=,.@_-], got \"%.200s\"", field, role);
        hgf_buf b = HGF_BUF_INIT;
        hgf_buf_printf(&b, "arn:%s:iam::%s:role/%s", partition, account_id, role);
        *out = hgf_buf_detach(&b);
    }
    return *out ? 0 : hgf_err_set(err, HGF_ENOMEM, "out of memory");
}

/* ---- building rows (shared by both formats) ---------------------------- */

/* One account's fields before it is expanded over its regions. */
typedef struct account_spec {
    const char *account_id, *name, *role, *external_id;
    where w_account, w_name, w_role, w_external_id;
    const char *field_prefix;  /* "accounts[3]" or "" */
} account_spec;

static void field_name(const account_spec *a, const char *f, char *out, size_t n)
{
    snprintf(out, n, "%s%s%s", a->field_prefix, *a->field_prefix ? "." : "", f);
}

static int validate_spec(const account_spec *a, hgf_err *err)
{
    char f[96];
    if (!a->account_id || !all_digits(a->account_id, 12)) {
        field_name(a, "account_id", f, sizeof f);
        return fail_at(err, &a->w_account, f, "expected 12 digits, got \"%.40s\"",
                       a->account_id ? a->account_id : "");
    }
    if (a->name && (!*a->name || strlen(a->name) > 96)) {
        field_name(a, "name", f, sizeof f);
        return fail_at(err, &a->w_name, f, "expected 1 to 96 characters");
    }
    if (a->external_id && !external_id_valid(a->external_id)) {
        field_name(a, "external_id", f, sizeof f);
        return fail_at(err, &a->w_external_id, f,
                       "expected 2 to 1224 characters [A-Za-z0-9+=,.@:/_-]");
    }
    if (a->external_id && !a->role) {
        field_name(a, "external_id", f, sizeof f);
        return fail_at(err, &a->w_external_id, f, "needs a role");
    }
    return 0;
}

/* The rows being built, with a hash index over (account, region) for the
 * duplicate check: a list may expand to HGF_ACCOUNTS_MAX_ROWS rows, and a
 * linear search per row made an 11 KB file with an aliased region list take
 * seconds (found by fuzz_accounts_yaml). */
typedef struct row_builder {
    hgf_account_list *list;
    size_t cap;      /* rows allocated */
    int *slots;      /* row index + 1, 0 for empty; nslots is a power of two */
    size_t nslots;
} row_builder;

static size_t row_hash(const char *account, const char *region)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const char *p = account; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ '/') * 1099511628211ULL;
    for (const char *p = region; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return (size_t)h;
}

/* The slot holding (account, region), or the empty slot where it belongs. */
static int *row_slot(const row_builder *b, const char *account, const char *region)
{
    size_t mask = b->nslots - 1, i = row_hash(account, region) & mask;
    for (;; i = (i + 1) & mask) {
        int *slot = &b->slots[i];
        if (!*slot)
            return slot;
        const hgf_account_row *r = &b->list->rows[*slot - 1];
        if (!strcmp(r->account_id, account) && !strcmp(r->region, region))
            return slot;
    }
}

/* Keeps the index at most half full, and room for one more row. */
static int builder_reserve(row_builder *b)
{
    hgf_account_list *l = b->list;
    if ((size_t)l->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        hgf_account_row *grown = realloc(l->rows, cap * sizeof *grown);
        if (!grown)
            return HGF_ENOMEM;
        l->rows = grown;
        b->cap = cap;
    }
    if (2 * ((size_t)l->n + 1) <= b->nslots)
        return 0;
    size_t n = b->nslots ? b->nslots * 2 : 64;
    int *slots = calloc(n, sizeof *slots);
    if (!slots)
        return HGF_ENOMEM;
    free(b->slots);
    b->slots = slots;
    b->nslots = n;
    for (int i = 0; i < l->n; i++)
        *row_slot(b, l->rows[i].account_id, l->rows[i].region) = i + 1;
    return 0;
}

static void builder_free(row_builder *b)
{
    free(b->slots);
    b->slots = NULL;
    b->nslots = 0;
}

static int add_row(row_builder *b, const account_spec *a, const char *region,
                   const where *w_region, hgf_err *err)
{
    hgf_account_list *l = b->list;
    char f[96];
    if (!hgf_endpoint_region_valid(region) || strlen(region) >= 32) {
        /* YAML lists "regions"; a CSV row has one "region" column. */
        field_name(a, *a->field_prefix ? "regions" : "region", f, sizeof f);
        return fail_at(err, w_region, f, "\"%.40s\" is not an AWS region", region);
    }
    if (l->n >= HGF_ACCOUNTS_MAX_ROWS)
        return fail_at(err, &a->w_account, "accounts", "more than %d rows", HGF_ACCOUNTS_MAX_ROWS);
    if (builder_reserve(b))
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    int *slot = row_slot(b, a->account_id, region);
    if (*slot) {
        field_name(a, "account_id", f, sizeof f);
        return fail_at(err, &a->w_account, f, "%s in %s is already listed on line %d",
                       a->account_id, region, l->rows[*slot - 1].line);
    }
    hgf_account_row *r = &l->rows[l->n++];
    *slot = l->n;
    memset(r, 0, sizeof *r);
    snprintf(r->account_id, sizeof r->account_id, "%s", a->account_id);
    snprintf(r->region, sizeof r->region, "%s", region);
    r->line = a->w_account.line;
    hgf_buf name = HGF_BUF_INIT;
    hgf_buf_printf(&name, "%s/%s", a->name ? a->name : a->account_id, region);
    r->name = hgf_buf_detach(&name);
    r->external_id = a->external_id ? strdup(a->external_id) : NULL;
    if (a->role) {
        hgf_err inner;
        field_name(a, "role", f, sizeof f);
        if (hgf_accounts_role_arn(a->role, a->account_id, region, f, &r->role_arn, &inner))
            return inner.code == HGF_EINPUT
                       ? fail_at(err, &a->w_role, f, "%s", inner.msg + strlen(f) + 2)
                       : hgf_err_set(err, inner.code, "%s", inner.msg);
    }
    return 0;
}

/* ---- YAML --------------------------------------------------------------- */

typedef struct ydoc {
    yaml_document_t doc;
    const hgf_accounts_opts *o;
} ydoc;

static where ywhere(const ydoc *y, const yaml_node_t *n)
{
    return (where){y->o->file_name, (int)n->start_mark.line + 1, (int)n->start_mark.column + 1};
}

static const char *yscalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static yaml_node_t *ymap_get(ydoc *y, const yaml_node_t *map, const char *key)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        const char *k = yscalar(yaml_document_get_node(&y->doc, p->key));
        if (k && !strcmp(k, key))
            return yaml_document_get_node(&y->doc, p->value);
    }
    return NULL;
}

/* A string field: absent is fine (*out NULL); anything but a scalar is not. */
static int yfield(ydoc *y, const yaml_node_t *map, const char *key, account_spec *a,
                  const char **out, where *w, hgf_err *err)
{
    yaml_node_t *v = ymap_get(y, map, key);
    *out = NULL;
    *w = ywhere(y, map);
    if (!v)
        return 0;
    *w = ywhere(y, v);
    char f[96];
    field_name(a, key, f, sizeof f);
    if (!yscalar(v))
        return fail_at(err, w, f, "expected a string");
    *out = yscalar(v);
    return 0;
}

static int ydefault_regions(ydoc *y, row_builder *l, const account_spec *a,
                            const where *w, hgf_err *err)
{
    char f[96];
    field_name(a, "regions", f, sizeof f);
    if (y->o->n_default_regions <= 0)
        return fail_at(err, w, f, "\"all\" or no regions needs --regions R1,R2");
    int rc = 0;
    for (int i = 0; !rc && i < y->o->n_default_regions; i++)
        rc = add_row(l, a, y->o->default_regions[i], w, err);
    return rc;
}

static int yregions(ydoc *y, const yaml_node_t *item, const account_spec *a, row_builder *l,
                    hgf_err *err)
{
    yaml_node_t *v = ymap_get(y, item, "regions");
    char f[96];
    field_name(a, "regions", f, sizeof f);
    if (!v)
        return ydefault_regions(y, l, a, &a->w_account, err);
    where wv = ywhere(y, v);
    if (yscalar(v) && (!strcmp(yscalar(v), "all") || !*yscalar(v)))
        return ydefault_regions(y, l, a, &wv, err);
    if (v->type != YAML_SEQUENCE_NODE)
        return fail_at(err, &wv, f, "expected a list of regions or \"all\"");
    if (v->data.sequence.items.top == v->data.sequence.items.start)
        return fail_at(err, &wv, f, "the list is empty");
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
        yaml_node_t *r = yaml_document_get_node(&y->doc, *it);
        where w = ywhere(y, r);
        if (!yscalar(r))
            return fail_at(err, &w, f, "expected a region name");
        if (!strcmp(yscalar(r), "all")) {
            if (ydefault_regions(y, l, a, &w, err))
                return err->code;
            continue;
        }
        if (add_row(l, a, yscalar(r), &w, err))
            return err->code;
    }
    return 0;
}

static int ytags(ydoc *y, const yaml_node_t *item, const account_spec *a, hgf_err *err)
{
    yaml_node_t *v = ymap_get(y, item, "tags");
    char f[96];
    field_name(a, "tags", f, sizeof f);
    if (!v)
        return 0;
    where w = ywhere(y, v);
    if (v->type != YAML_SEQUENCE_NODE)
        return fail_at(err, &w, f, "expected a list of strings");
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
        yaml_node_t *t = yaml_document_get_node(&y->doc, *it);
        if (!yscalar(t)) {
            w = ywhere(y, t);
            return fail_at(err, &w, f, "expected a list of strings");
        }
    }
    return 0;
}

static int yaccount(ydoc *y, const yaml_node_t *item, int index, row_builder *l,
                    hgf_err *err)
{
    char prefix[32];
    snprintf(prefix, sizeof prefix, "accounts[%d]", index);
    account_spec a = {.field_prefix = prefix};
    where w = ywhere(y, item);
    if (item->type != YAML_MAPPING_NODE)
        return fail_at(err, &w, prefix, "expected a mapping with account_id, role, regions...");
    if (!ymap_get(y, item, "account_id")) {
        char f[64];
        snprintf(f, sizeof f, "%s.account_id", prefix);
        return fail_at(err, &w, f, "missing");
    }
    int rc = yfield(y, item, "account_id", &a, &a.account_id, &a.w_account, err);
    if (!rc)
        rc = yfield(y, item, "name", &a, &a.name, &a.w_name, err);
    if (!rc)
        rc = yfield(y, item, "role", &a, &a.role, &a.w_role, err);
    if (!rc)
        rc = yfield(y, item, "external_id", &a, &a.external_id, &a.w_external_id, err);
    if (!rc)
        rc = validate_spec(&a, err);
    if (!rc)
        rc = ytags(y, item, &a, err);
    return rc ? rc : yregions(y, item, &a, l, err);
}

static int ywalk(ydoc *y, row_builder *l, hgf_err *err)
{
    yaml_node_t *root = yaml_document_get_root_node(&y->doc);
    where w = {y->o->file_name, 1, 1};
    if (root)
        w = ywhere(y, root);
    if (!root || root->type != YAML_MAPPING_NODE)
        return fail_at(err, &w, "accounts", "expected a mapping with an \"accounts\" list");
    yaml_node_t *acc = ymap_get(y, root, "accounts");
    if (!acc)
        return fail_at(err, &w, "accounts", "missing");
    w = ywhere(y, acc);
    if (acc->type != YAML_SEQUENCE_NODE)
        return fail_at(err, &w, "accounts", "expected a list");
    int i = 0;
    for (yaml_node_item_t *it = acc->data.sequence.items.start; it < acc->data.sequence.items.top;
         it++, i++) {
        int rc = yaccount(y, yaml_document_get_node(&y->doc, *it), i, l, err);
        if (rc)
            return rc;
    }
    if (!l->list->n)
        return fail_at(err, &w, "accounts", "the list is empty");
    return 0;
}

int hgf_accounts_parse_yaml(const char *text, size_t len, const hgf_accounts_opts *o,
                            hgf_account_list *out, hgf_err *err)
{
    out->rows = NULL;
    out->n = 0;
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p))
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    ydoc y = {.o = o};
    int rc;
    if (!yaml_parser_load(&p, &y.doc)) {
        where w = {o->file_name, (int)p.problem_mark.line + 1, (int)p.problem_mark.column + 1};
        rc = fail_at(err, &w, "YAML", "%s%s%s", p.problem ? p.problem : "malformed",
                     p.context ? " " : "", p.context ? p.context : "");
        yaml_parser_delete(&p);
        return rc;
    }
    row_builder b = {.list = out};
    rc = ywalk(&y, &b, err);
    builder_free(&b);
    yaml_document_delete(&y.doc);
    yaml_parser_delete(&p);
    if (rc)
        hgf_accounts_free(out);
    return rc;
}

/* ---- CSV ---------------------------------------------------------------- */

static const char *const CSV_FIELDS[] = {"account_id", "region", "role_arn", "external_id"};

/* Splits one line at commas into at most 4 trimmed fields (in place). */
static int csv_split(char *line, char *fields[4], int cols[4], const where *w, hgf_err *err)
{
    int n = 0;
    char *p = line;
    for (;;) {
        char *end = strchr(p, ',');
        if (n == 4)
            return fail_at(err, w, "CSV", "expected at most 4 fields: %s",
                           "account_id,region[,role_arn,external_id]");
        if (end)
            *end = '\0';
        while (*p == ' ' || *p == '\t')
            p++;
        cols[n] = (int)(p - line) + 1;
        char *e = p + strlen(p);
        while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
            *--e = '\0';
        fields[n++] = p;
        if (!end)
            break;
        p = end + 1;
    }
    return n;
}

static int csv_line(row_builder *l, char *line, int lineno, const hgf_accounts_opts *o,
                    hgf_err *err)
{
    where w = {o->file_name, lineno, 0};
    char *f[4] = {0};
    int cols[4] = {0};
    int n = csv_split(line, f, cols, &w, err);
    if (n < 0)
        return n;
    if (n < 2 || !*f[1]) {
        w.col = n < 2 ? 0 : cols[1];
        return fail_at(err, &w, "region", "missing: expected account_id,region[,role_arn,external_id]");
    }
    account_spec a = {.account_id = f[0], .role = n > 2 && *f[2] ? f[2] : NULL,
                      .external_id = n > 3 && *f[3] ? f[3] : NULL, .field_prefix = ""};
    a.w_account = (where){o->file_name, lineno, cols[0]};
    a.w_role = (where){o->file_name, lineno, n > 2 ? cols[2] : 0};
    a.w_external_id = (where){o->file_name, lineno, n > 3 ? cols[3] : 0};
    int rc = validate_spec(&a, err);
    where wr = {o->file_name, lineno, cols[1]};
    return rc ? rc : add_row(l, &a, f[1], &wr, err);
}

/* Spreadsheets write headers as typed: Account_ID, ACCOUNT_ID. */
static int csv_header(const char *line)
{
    return !strncasecmp(line, CSV_FIELDS[0], strlen(CSV_FIELDS[0]));
}

int hgf_accounts_parse_csv(const char *text, size_t len, const hgf_accounts_opts *o,
                           hgf_account_list *out, hgf_err *err)
{
    out->rows = NULL;
    out->n = 0;
    char *copy = malloc(len + 1);
    if (!copy)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    memcpy(copy, text, len);
    copy[len] = '\0';
    int rc = 0, lineno = 0, seen = 0;
    char *save = NULL;
    row_builder b = {.list = out};
    for (char *line = copy; !rc && line; line = save) {
        save = strchr(line, '\n');
        if (save)
            *save++ = '\0';
        lineno++;
        const char *t = line + strspn(line, " \t\r");
        if (!*t || *t == '#')
            continue;
        if (!seen++ && csv_header(t))
            continue;
        if (strlen(line) != strcspn(line, "\""))
            rc = fail_at(err, &(where){o->file_name, lineno, (int)strcspn(line, "\"") + 1}, "CSV",
                         "quoted fields are not supported");
        else
            rc = csv_line(&b, line, lineno, o, err);
    }
    builder_free(&b);
    if (!rc && !out->n)
        rc = hgf_err_set(err, HGF_EINPUT, "%s: no rows: expected account_id,region[,role_arn,external_id]",
                         o->file_name ? o->file_name : "input");
    free(copy);
    if (rc)
        hgf_accounts_free(out);
    return rc;
}

/* ---- detection ---------------------------------------------------------- */

static int looks_csv(const char *text, size_t len, const char *file)
{
    size_t fl = file ? strlen(file) : 0;
    if (fl > 4 && !strcmp(file + fl - 4, ".csv"))
        return 1;
    size_t i = 0;
    while (i < len && (isspace((unsigned char)text[i])))
        i++;
    if (len - i >= 11 && !strncasecmp(text + i, "account_id,", 11))
        return 1;
    size_t d = 0;
    while (i + d < len && isdigit((unsigned char)text[i + d]))
        d++;
    return d == 12 && i + d < len && text[i + d] == ',';
}

int hgf_accounts_parse(const char *text, size_t len, const hgf_accounts_opts *o,
                       hgf_account_list *out, hgf_err *err)
{
    if (memchr(text, '\0', len)) {
        out->rows = NULL;
        out->n = 0;
        return hgf_err_set(err, HGF_EINPUT, "%s: binary data (a NUL byte)",
                           o->file_name ? o->file_name : "input");
    }
    /* Excel and Notepad start UTF-8 files with a byte-order mark. */
    if (len >= 3 && !memcmp(text, "\xef\xbb\xbf", 3)) {
        text += 3;
        len -= 3;
    }
    return looks_csv(text, len, o->file_name) ? hgf_accounts_parse_csv(text, len, o, out, err)
                                              : hgf_accounts_parse_yaml(text, len, o, out, err);
}
