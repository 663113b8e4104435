/* c7n-org accounts.yml import: the bytes as a file named accounts.yml to
 * hgf_accounts_parse (which also takes the CSV path when the text looks like
 * CSV), once with default regions for "all" and once without. Every row it
 * accepts must be one that `connection import` can store; every rejection
 * must be an input error that leaves no rows behind. */
#include "fuzz.h"

#include "hgfleet/accounts.h"
#include "hgfleet/endpoint.h"

/* Quadratic only in the number of rows, which small inputs keep small;
 * larger lists are checked by their first rows. */
#define DUP_CHECK_ROWS 2000

static int all_digits(const char *s, size_t n)
{
    return strlen(s) == n && strspn(s, "0123456789") == n;
}

static void check_row(const hgf_account_row *r)
{
    FUZZ_CHECK(all_digits(r->account_id, 12));
    FUZZ_CHECK(hgf_endpoint_region_valid(r->region));
    FUZZ_CHECK(r->line >= 1);
    /* The connection's name is "<label>/<region>". */
    FUZZ_CHECK(r->name != NULL);
    size_t n = strlen(r->name), rl = strlen(r->region);
    FUZZ_CHECK(n > rl + 1 && r->name[n - rl - 1] == '/' && !strcmp(r->name + n - rl, r->region));
    FUZZ_CHECK(!r->external_id || r->role_arn);
    if (r->role_arn) {
        /* Always in the region's partition; the account may be another one
         * (cross-account), but it is 12 digits. */
        char want[96];
        snprintf(want, sizeof want, "arn:%s:iam::", hgf_endpoint_partition_for_region(r->region));
        size_t w = strlen(want);
        FUZZ_CHECK(!strncmp(r->role_arn, want, w));
        FUZZ_CHECK(strlen(r->role_arn) > w + 18 && strspn(r->role_arn + w, "0123456789") == 12);
        FUZZ_CHECK(!strncmp(r->role_arn + w + 12, ":role/", 6));
    }
}

static void check_list(const hgf_account_list *l)
{
    FUZZ_CHECK(l->n >= 1 && l->n <= HGF_ACCOUNTS_MAX_ROWS && l->rows);
    int upto = l->n < DUP_CHECK_ROWS ? l->n : DUP_CHECK_ROWS;
    for (int i = 0; i < l->n; i++)
        check_row(&l->rows[i]);
    for (int i = 0; i < upto; i++)
        for (int k = i + 1; k < upto; k++)
            FUZZ_CHECK(strcmp(l->rows[i].account_id, l->rows[k].account_id) ||
                       strcmp(l->rows[i].region, l->rows[k].region));
}

static void parse_once(const char *text, size_t size, const char *const *regions, int n_regions)
{
    hgf_accounts_opts o = {.file_name = "accounts.yml", .default_regions = regions,
                           .n_default_regions = n_regions};
    hgf_account_list l = {0};
    hgf_err e;
    hgf_err_clear(&e);
    int rc = hgf_accounts_parse(text, size, &o, &l, &e);
    if (rc == 0) {
        check_list(&l);
    } else {
        FUZZ_CHECK(rc == HGF_EINPUT || rc == HGF_ENOMEM);
        FUZZ_CHECK(e.code == rc && e.msg[0] != '\0');
        FUZZ_CHECK(memchr(e.msg, '\0', sizeof e.msg) != NULL);
        FUZZ_CHECK(l.n == 0 && l.rows == NULL);
    }
    hgf_accounts_free(&l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const regions[] = {"us-east-1", "eu-west-1", "cn-north-1"};
    /* The parser takes a length, so no NUL is appended: reads past the end
     * show up under ASan. */
    char *text = malloc(size ? size : 1);
    if (!text)
        abort();
    if (size)
        memcpy(text, data, size);
    parse_once(text, size, regions, 3);
    parse_once(text, size, NULL, 0);
    free(text);
    return 0;
}
