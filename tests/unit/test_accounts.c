/* Account lists for `connection import` (c7n-org YAML and CSV), role name
 * vs ARN, and the Organizations ListAccounts page parser. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hgfleet/accounts.h"
#include "hgfleet/orgs.h"

static const char *const DEFAULTS[] = {"us-west-2", "eu-central-1"};

static int parse(const char *text, const char *file, int n_defaults, hgf_account_list *l,
                 hgf_err *err)
{
    hgf_accounts_opts o = {.file_name = file, .default_regions = DEFAULTS,
                           .n_default_regions = n_defaults};
    hgf_err_clear(err);
    return hgf_accounts_parse(text, strlen(text), &o, l, err);
}

static void expect_error(const char *text, const char *file, const char *const *needles)
{
    hgf_account_list l;
    hgf_err err;
    int rc = parse(text, file, 2, &l, &err);
    if (rc != HGF_EINPUT)
        fail_msg("accepted: %s", text);
    assert_int_equal(l.n, 0);
    for (; *needles; needles++)
        if (!strstr(err.msg, *needles))
            fail_msg("\"%s\" not in: %s", *needles, err.msg);
}

static void test_yaml_full(void **state)
{
    (void)state;
    const char *yml = "# c7n-org\n"
                      "accounts:\n"
                      "  - account_id: '123456789012'\n"
                      "    name: prod\n"
                      "    role: arn:aws:iam::123456789012:role/path/CloudCustodian\n"
                      "    external_id: ext-1\n"
                      "    regions:\n"
                      "      - us-east-1\n"
                      "      - eu-west-1\n"
                      "    tags: [type:prod, 'team:a']\n"
                      "    vars: {x: 1}\n"
                      "  - account_id: 210987654321\n"
                      "    role: reader\n"
                      "    regions: all\n"
                      "  - account_id: \"000000000007\"\n";
    hgf_account_list l;
    hgf_err err;
    assert_int_equal(parse(yml, "accounts.yml", 2, &l, &err), 0);
    assert_int_equal(l.n, 6);
    assert_string_equal(l.rows[0].account_id, "123456789012");
    assert_string_equal(l.rows[0].region, "us-east-1");
    assert_string_equal(l.rows[0].name, "prod/us-east-1");
    assert_string_equal(l.rows[0].role_arn, "arn:aws:iam::123456789012:role/path/CloudCustodian");
    assert_string_equal(l.rows[0].external_id, "ext-1");
    assert_int_equal(l.rows[0].line, 3);
    assert_string_equal(l.rows[1].region, "eu-west-1");
    /* "all": the default regions; a bare role name becomes an ARN */
    assert_string_equal(l.rows[2].region, "us-west-2");
    assert_string_equal(l.rows[3].region, "eu-central-1");
    assert_string_equal(l.rows[2].name, "210987654321/us-west-2");
    assert_string_equal(l.rows[2].role_arn, "arn:aws:iam::210987654321:role/reader");
    assert_null(l.rows[2].external_id);
    /* no regions: the defaults; no role: the host's credentials */
    assert_string_equal(l.rows[4].account_id, "000000000007");
    assert_null(l.rows[4].role_arn);
    assert_int_equal(l.rows[5].line, 15);
    hgf_accounts_free(&l);
}

static void test_yaml_partition(void **state)
{
    (void)state;
    hgf_account_list l;
    hgf_err err;
    assert_int_equal(parse("accounts:\n- account_id: '123456789012'\n  role: r\n"
                           "  regions: [cn-north-1]\n", "a.yml", 0, &l, &err), 0);
    assert_string_equal(l.rows[0].role_arn, "arn:aws-cn:iam::123456789012:role/r");
    hgf_accounts_free(&l);
}

static void test_yaml_errors(void **state)
{
    (void)state;
    expect_error("accounts:\n  - account_id: '12345'\n", "a.yml",
                 (const char *const[]){"a.yml: line 2, column 17", "accounts[0].account_id",
                                       "12 digits", NULL});
    expect_error("accounts:\n  - name: x\n", "a.yml",
                 (const char *const[]){"line 2", "accounts[0].account_id", "missing", NULL});
    expect_error("accounts:\n  - account_id: '123456789012'\n    regions: [us-east-1, mars-9]\n",
                 "a.yml", (const char *const[]){"line 3, column 26", "accounts[0].regions",
                                                "mars-9", NULL});
    expect_error("accounts:\n  - account_id: '123456789012'\n    role: 'bad role'\n", "a.yml",
                 (const char *const[]){"line 3", "accounts[0].role", NULL});
    /* a role in another account is fine (cross-account), but not in another partition */
    expect_error("accounts:\n  - account_id: '123456789012'\n"
                 "    role: arn:aws-cn:iam::999999999999:role/x\n", "a.yml",
                 (const char *const[]){"line 3", "accounts[0].role", "partition", NULL});
    expect_error("accounts:\n  - account_id: '123456789012'\n"
                 "    role: arn:aws:iam::99999999999:role/x\n", "a.yml",
                 (const char *const[]){"line 3", "accounts[0].role", "malformed", NULL});
    expect_error("accounts:\n  - account_id: '123456789012'\n    role: r\n"
                 "    regions: [cn-north-1]\n    external_id: x\n", "a.yml",
                 (const char *const[]){"line 5", "accounts[0].external_id", NULL});
    expect_error("accounts:\n  - account_id: '123456789012'\n    external_id: abc\n", "a.yml",
                 (const char *const[]){"accounts[0].external_id", "needs a role", NULL});
    expect_error("accounts:\n  - account_id: '123456789012'\n    tags: prod\n", "a.yml",
                 (const char *const[]){"line 3", "accounts[0].tags", NULL});
    expect_error("accounts:\n  - account_id: '123456789012'\n    regions: [us-east-1]\n"
                 "  - account_id: '123456789012'\n    regions: [us-east-1]\n", "a.yml",
                 (const char *const[]){"line 4", "already listed on line 2", NULL});
    expect_error("accounts:\n  - account_id: '1'\n    regions: [us-east-1\n", "a.yml",
                 (const char *const[]){"line 4", "YAML", NULL});
    expect_error("accounts: {}\n", "a.yml", (const char *const[]){"accounts", "list", NULL});
    expect_error("accounts: []\n", "a.yml", (const char *const[]){"accounts", "empty", NULL});
    expect_error("- a\n", "a.yml", (const char *const[]){"accounts", "mapping", NULL});
    expect_error("", "a.yml", (const char *const[]){"accounts", NULL});
    expect_error("accounts:\n  - [1, 2]\n", "a.yml",
                 (const char *const[]){"line 2", "accounts[0]", NULL});
    expect_error("accounts:\n  - account_id: [1]\n", "a.yml",
                 (const char *const[]){"accounts[0].account_id", "string", NULL});
}

/* The guide's cross-account pattern: the sensor's role lives in account A
 * and B's repository policy grants it, so B's row names A's role. */
static void test_cross_account_role(void **state)
{
    (void)state;
    hgf_account_list l;
    hgf_err err;
    const char *yml = "accounts:\n"
                      "  - account_id: '222222222222'\n"
                      "    role: arn:aws:iam::111111111111:role/harborguard-sensor\n"
                      "    external_id: ext-1\n"
                      "    regions: [us-east-1]\n"
                      "  - account_id: '333333333333'\n"
                      "    role: reader\n"
                      "    regions: [us-east-1]\n";
    assert_int_equal(parse(yml, "a.yml", 0, &l, &err), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.rows[0].account_id, "222222222222");
    assert_string_equal(l.rows[0].role_arn, "arn:aws:iam::111111111111:role/harborguard-sensor");
    /* a bare name is still the row's own account's role */
    assert_string_equal(l.rows[1].role_arn, "arn:aws:iam::333333333333:role/reader");
    hgf_accounts_free(&l);
    const char *csv = "222222222222,eu-west-1,arn:aws:iam::111111111111:role/path/sensor\n"
                      "222222222222,cn-north-1,arn:aws-cn:iam::111111111111:role/sensor\n";
    assert_int_equal(parse(csv, "f.csv", 0, &l, &err), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.rows[0].role_arn, "arn:aws:iam::111111111111:role/path/sensor");
    assert_string_equal(l.rows[1].role_arn, "arn:aws-cn:iam::111111111111:role/sensor");
    hgf_accounts_free(&l);
    char *arn;
    assert_int_equal(hgf_accounts_role_arn("arn:aws-us-gov:iam::111111111111:role/s",
                                           "222222222222", "us-gov-west-1", "f", &arn, &err), 0);
    assert_string_equal(arn, "arn:aws-us-gov:iam::111111111111:role/s");
    free(arn);
    assert_int_equal(hgf_accounts_role_arn("arn:aws:iam::111111111111:role/s", "222222222222",
                                           "us-gov-west-1", "f", &arn, &err), HGF_EINPUT);
    assert_non_null(strstr(err.msg, "partition"));
}

static void test_yaml_all_without_defaults(void **state)
{
    (void)state;
    hgf_account_list l;
    hgf_err err;
    assert_int_equal(parse("accounts:\n- account_id: '123456789012'\n  regions: all\n", "a.yml",
                           0, &l, &err), HGF_EINPUT);
    assert_non_null(strstr(err.msg, "accounts[0].regions"));
    assert_non_null(strstr(err.msg, "--regions"));
    assert_non_null(strstr(err.msg, "line 3"));
}

static void test_csv(void **state)
{
    (void)state;
    hgf_account_list l;
    hgf_err err;
    const char *csv = "account_id,region,role_arn,external_id\n"
                      "\n# comment\n"
                      "123456789012,us-east-1,arn:aws:iam::123456789012:role/ro,ext-9\r\n"
                      "123456789012, eu-west-1 ,ro\n"
                      "210987654321,ap-south-1\n";
    assert_int_equal(parse(csv, "fleet.txt", 0, &l, &err), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.rows[0].external_id, "ext-9");
    assert_int_equal(l.rows[0].line, 4);
    assert_string_equal(l.rows[1].region, "eu-west-1");
    assert_string_equal(l.rows[1].role_arn, "arn:aws:iam::123456789012:role/ro");
    assert_null(l.rows[2].role_arn);
    assert_string_equal(l.rows[2].name, "210987654321/ap-south-1");
    hgf_accounts_free(&l);
    /* detected by extension without a header, and by a first line of 12 digits */
    assert_int_equal(parse("123456789012,us-east-1\n", "x.csv", 0, &l, &err), 0);
    assert_int_equal(l.n, 1);
    hgf_accounts_free(&l);
    /* as a spreadsheet saves it: a byte-order mark and a header in its own case */
    assert_int_equal(parse("\xef\xbb\xbf" "Account_ID,Region\r\n123456789012,us-east-1\r\n",
                           "fleet.txt", 0, &l, &err), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.rows[0].account_id, "123456789012");
    hgf_accounts_free(&l);
}

static void test_csv_errors(void **state)
{
    (void)state;
    expect_error("123456789012,us-east-1\n12345,us-east-1\n", "f.csv",
                 (const char *const[]){"f.csv: line 2, column 1", "account_id", NULL});
    expect_error("123456789012\n", "f.csv", (const char *const[]){"line 1", "region", NULL});
    expect_error("123456789012,moon-1\n", "f.csv",
                 (const char *const[]){"line 1, column 14", "region", "moon-1", NULL});
    expect_error("123456789012,us-east-1,arn:aws:iam::1:role/x\n", "f.csv",
                 (const char *const[]){"line 1, column 24", "role", NULL});
    expect_error("123456789012,us-east-1,r,x\n", "f.csv",
                 (const char *const[]){"line 1, column 26", "external_id", NULL});
    expect_error("123456789012,us-east-1,r,e1,extra\n", "f.csv",
                 (const char *const[]){"line 1", "at most 4", NULL});
    expect_error("account_id,region\n", "f.csv", (const char *const[]){"no rows", NULL});
    expect_error("123456789012,us-east-1\n123456789012,us-east-1\n", "f.csv",
                 (const char *const[]){"line 2", "already listed on line 1", NULL});
    expect_error("\"123456789012\",us-east-1\n", "f.csv",
                 (const char *const[]){"line 1", "quoted", NULL});
}

static void test_role_arn(void **state)
{
    (void)state;
    char *arn;
    hgf_err err;
    assert_int_equal(hgf_accounts_role_arn("r-1", "123456789012", "us-gov-west-1", "f", &arn, &err), 0);
    assert_string_equal(arn, "arn:aws-us-gov:iam::123456789012:role/r-1");
    free(arn);
    assert_int_equal(hgf_accounts_role_arn("arn:aws:iam::123456789012:role/a", "123456789012",
                                           "cn-north-1", "f", &arn, &err), HGF_EINPUT);
    assert_non_null(strstr(err.msg, "partition"));
    assert_int_equal(hgf_accounts_role_arn("arn:aws:iam::123456789012:user/a", "123456789012",
                                           "us-east-1", "--role", &arn, &err), HGF_EINPUT);
    assert_non_null(strstr(err.msg, "--role"));
    assert_true(hgf_accounts_role_name_valid("a+=,.@_-Z9"));
    assert_false(hgf_accounts_role_name_valid(""));
    assert_false(hgf_accounts_role_name_valid("a/b"));
    char longname[66];
    memset(longname, 'a', 65);
    longname[65] = '\0';
    assert_false(hgf_accounts_role_name_valid(longname));
    longname[64] = '\0';
    assert_true(hgf_accounts_role_name_valid(longname));
}

static void test_orgs_page(void **state)
{
    (void)state;
    json_t *p1 = json_loads("{\"Accounts\":[{\"Id\":\"123456789012\",\"Arn\":\"arn:x\","
                            "\"Name\":\"a\",\"Email\":\"a@x\",\"Status\":\"ACTIVE\"},"
                            "{\"Id\":\"210987654321\",\"Name\":\"b\",\"Status\":\"SUSPENDED\"}],"
                            "\"NextToken\":\"t2\"}", 0, NULL);
    json_t *p2 = json_loads("{\"Accounts\":[{\"Id\":\"000000000001\",\"Status\":"
                            "\"PENDING_CLOSURE\"}]}", 0, NULL);
    json_t *bad = json_loads("{\"Accounts\":[{\"Id\":\"12\",\"Status\":\"ACTIVE\"}]}", 0, NULL);
    hgf_org_account *list = NULL;
    int n = 0;
    char *next;
    hgf_err err;
    assert_int_equal(hgf_orgs_parse_page(p1, &list, &n, &next, &err), 0);
    assert_string_equal(next, "t2");
    free(next);
    assert_int_equal(hgf_orgs_parse_page(p2, &list, &n, &next, &err), 0);
    assert_null(next);
    assert_int_equal(n, 3);
    assert_string_equal(list[1].status, "SUSPENDED");
    assert_string_equal(list[1].email, "");
    assert_string_equal(list[2].id, "000000000001");
    assert_int_equal(hgf_orgs_parse_page(bad, &list, &n, &next, &err), HGF_EFAIL);
    assert_non_null(strstr(err.msg, "Accounts[0].Id"));
    assert_int_equal(hgf_orgs_parse_page(json_object_get(p2, "nothing"), &list, &n, &next, &err),
                     HGF_EFAIL);
    hgf_orgs_free_accounts(list, n);
    json_decref(p1);
    json_decref(p2);
    json_decref(bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_yaml_full),    cmocka_unit_test(test_yaml_partition),
        cmocka_unit_test(test_yaml_errors),  cmocka_unit_test(test_yaml_all_without_defaults),
        cmocka_unit_test(test_csv),          cmocka_unit_test(test_csv_errors),
        cmocka_unit_test(test_role_arn),     cmocka_unit_test(test_orgs_page),
        cmocka_unit_test(test_cross_account_role),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
