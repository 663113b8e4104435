/* `connection test`: runs the connection's auth path step by step and
 * diagnoses the first failure in the words of the guide's troubleshooting
 * table.
 *
 * Steps, in order: credentials (the source: static keys or the host chain),
 * GetCallerIdentity, AssumeRole (each hop), GetAuthorizationToken,
 * DescribeRepositories, DescribeImages on one repository, and a manifest HEAD
 * through the registry v2 API at the proxyEndpoint.
 *
 * Ownership: the connection and the runtime are borrowed until the callback
 * has run. The report and its JSON are valid during the callback only. */
#ifndef HGF_CONNTEST_H
#define HGF_CONNTEST_H

#include <jansson.h>

#include "hgfleet/conn.h"
#include "hgfleet/diagnose.h"
#include "hgfleet/runtime.h"

typedef struct hgf_conntest_report {
    int healthy;
    const hgf_diagnosis *diagnosis;  /* NULL when healthy */
    json_t *json;  /* {"connection_id","registry","auth_mode","healthy","steps":[..],"diagnosis"} */
} hgf_conntest_report;

typedef void (*hgf_conntest_cb)(const hgf_conntest_report *r, void *arg);

int hgf_conntest_run(hgf_runtime *rt, const hgf_connection *c, hgf_conntest_cb cb, void *arg,
                     hgf_err *err);

/* Fills spec from a connection, decrypting a static secret into *secret
 * (caller wipes and frees). Shared by sync and connection test. */
int hgf_conntest_auth_spec(const hgf_runtime *rt, const hgf_connection *c, hgf_auth_spec *spec,
                           char **secret, hgf_err *err);

#endif
