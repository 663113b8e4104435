/* Shared by the files of the catalog module (src/store/catalog.c, sweeps.c):
 * filling a query and the usual shapes of a view's result. */
#ifndef HGF_CATALOG_INTERNAL_H
#define HGF_CATALOG_INTERNAL_H

#include "hgfleet/catalog.h"

#define HGF_CATALOG_ISO(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/* Empties q and gives it its statement and result reader. */
void hgf_catalog_reset(hgf_catalog_query *q, const char *sql, hgf_catalog_to_json to_json);
/* Sets parameter $<i+1> (value NULL: SQL NULL). Values are checked for
 * length by the builders, so a longer one is a bug: HGF_EINPUT anyway. */
int hgf_catalog_set(hgf_catalog_query *q, int i, const char *value);
int hgf_catalog_set_int(hgf_catalog_query *q, int i, int64_t value);

/* Result readers. One row, one column holding a JSON array's text: */
int hgf_catalog_read_array(const PGresult *res, const hgf_catalog_query *q, json_t **out,
                           hgf_err *err);
/* Zero or one row whose first column is a JSON object's text; none is
 * HGF_ENOTFOUND "<what> <q->id> does not exist". */
int hgf_catalog_read_object(const PGresult *res, const hgf_catalog_query *q, const char *what,
                            json_t **out, hgf_err *err);

#endif
