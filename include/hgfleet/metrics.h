/* Prometheus metrics: counters, gauges and histograms keyed by name and a
 * label string, rendered in the text exposition format.
 *
 * One registry per process, owned by the runtime (hgf_runtime.metrics) and
 * borrowed by every module that counts. Names and label strings are copied.
 * Label strings are pre-formatted: `service="ecr",op="DescribeImages"`; label
 * values must be escaped by the caller with hgf_metrics_escape when they can
 * contain '"', '\' or newlines. Not thread-safe: use it from the loop thread. */
#ifndef HGF_METRICS_H
#define HGF_METRICS_H

#include <stddef.h>

#include "hgfleet/buf.h"

typedef struct hgf_metrics hgf_metrics;

enum hgf_metric_type { HGF_METRIC_COUNTER, HGF_METRIC_GAUGE, HGF_METRIC_HISTOGRAM };

hgf_metrics *hgf_metrics_new(void);
void hgf_metrics_free(hgf_metrics *m);

/* Declares a metric family (type and help text). Using an undeclared name
 * declares it as a counter (inc), gauge (set) or histogram (observe). */
void hgf_metrics_describe(hgf_metrics *m, const char *name, enum hgf_metric_type type,
                          const char *help);

void hgf_metrics_inc(hgf_metrics *m, const char *name, const char *labels, double v);
void hgf_metrics_set(hgf_metrics *m, const char *name, const char *labels, double v);
/* Histograms use fixed latency buckets from 1 ms to 60 s. */
void hgf_metrics_observe(hgf_metrics *m, const char *name, const char *labels, double v);
/* The current value of a counter or gauge series (0 when absent). */
double hgf_metrics_get(const hgf_metrics *m, const char *name, const char *labels);
/* Removes every series of a family (e.g. gauges rebuilt from the database). */
void hgf_metrics_clear(hgf_metrics *m, const char *name);

/* Appends the whole registry in Prometheus text format 0.0.4. */
int hgf_metrics_render(const hgf_metrics *m, hgf_buf *out);

/* Escapes a label value into out (at most n bytes with the NUL). */
void hgf_metrics_escape(const char *value, char *out, size_t n);

#endif
