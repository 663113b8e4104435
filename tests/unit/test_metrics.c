/* The metrics registry: values by labels, declaration and creation order in
 * the output, and the index that keeps ten thousand series cheap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "hgfleet/buf.h"
#include "hgfleet/metrics.h"

static void test_values_and_order(void **state)
{
    hgf_metrics *m = hgf_metrics_new();
    hgf_metrics_describe(m, "b_total", HGF_METRIC_COUNTER, "b");
    hgf_metrics_describe(m, "a_gauge", HGF_METRIC_GAUGE, "a");
    hgf_metrics_inc(m, "b_total", "op=\"x\"", 2);
    hgf_metrics_inc(m, "b_total", "op=\"x\"", 3);
    hgf_metrics_set(m, "a_gauge", "k=\"2\"", 7);
    hgf_metrics_set(m, "a_gauge", "k=\"1\"", 8);
    hgf_metrics_set(m, "a_gauge", NULL, 9);
    assert_true(hgf_metrics_get(m, "b_total", "op=\"x\"") == 5);
    assert_true(hgf_metrics_get(m, "a_gauge", "") == 9);
    assert_true(hgf_metrics_get(m, "a_gauge", "k=\"3\"") == 0);
    hgf_buf out = HGF_BUF_INIT;
    assert_int_equal(hgf_metrics_render(m, &out), 0);
    const char *text = hgf_buf_str(&out);
    /* Families in declaration order, series in creation order. */
    const char *b = strstr(text, "b_total{op=\"x\"} 5");
    const char *k2 = strstr(text, "a_gauge{k=\"2\"} 7");
    const char *k1 = strstr(text, "a_gauge{k=\"1\"} 8");
    assert_non_null(b);
    assert_non_null(k2);
    assert_non_null(k1);
    assert_true(b < k2 && k2 < k1);
    hgf_buf_free(&out);
    hgf_metrics_free(m);
}

static void test_many_series(void **state)
{
    enum { N = 20000 };
    hgf_metrics *m = hgf_metrics_new();
    char labels[64];
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < N; i++) {
            snprintf(labels, sizeof labels, "registry=\"r%d\"", i);
            hgf_metrics_set(m, "lag_seconds", labels, i + round);
        }
    for (int i = 0; i < N; i += 997) {
        snprintf(labels, sizeof labels, "registry=\"r%d\"", i);
        assert_true(hgf_metrics_get(m, "lag_seconds", labels) == i + 2);
    }
    hgf_metrics_clear(m, "lag_seconds");
    assert_true(hgf_metrics_get(m, "lag_seconds", "registry=\"r5\"") == 0);
    hgf_metrics_set(m, "lag_seconds", "registry=\"r5\"", 1);
    assert_true(hgf_metrics_get(m, "lag_seconds", "registry=\"r5\"") == 1);
    hgf_buf out = HGF_BUF_INIT;
    assert_int_equal(hgf_metrics_render(m, &out), 0);
    assert_null(strstr(hgf_buf_str(&out), "r6\""));
    hgf_buf_free(&out);
    hgf_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_and_order),
        cmocka_unit_test(test_many_series),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
