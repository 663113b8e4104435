/* Request and response values shared by the ecrsim modules, independent of
 * libmicrohttpd so that handlers can be reasoned about (and later driven)
 * without a socket.
 *
 * Ownership: an hgf_sim_req borrows everything it points to (server.c owns
 * it for the duration of one request). An hgf_sim_resp owns its body buffer,
 * its extra headers and its stream context; hgf_sim_resp_free releases them. */
#ifndef ECRSIM_SIMHTTP_H
#define ECRSIM_SIMHTTP_H

#include <stddef.h>

#include <jansson.h>

#include "hgfleet/buf.h"
#include "hgfleet/err.h"
#include "hgfleet/sigv4.h"

#define HGF_SIM_AMZ_JSON "application/x-amz-json-1.1"
/* Request bodies are cut (and the request refused) past this size. */
#define HGF_SIM_MAX_BODY (1024 * 1024)

typedef struct hgf_sim_req {
    const char *method;
    const char *path;   /* raw (still percent-encoded) path, no query */
    const char *query;  /* raw query without '?', NULL when none */
    const hgf_sigv4_header *headers;  /* in arrival order, names in any case */
    size_t n_headers;
    const char *body;   /* NUL-terminated for convenience; body_len excludes it */
    size_t body_len;
} hgf_sim_req;

/* The first header named `name` (case-insensitive), or NULL. */
const char *hgf_sim_req_header(const hgf_sim_req *req, const char *name);

/* Appends the next chunk of a streamed body to out: 1 when it appended
 * something, 0 at the end, negative on failure. */
typedef int (*hgf_sim_stream_fn)(void *ctx, hgf_buf *out);

#define HGF_SIM_RESP_MAX_HEADERS 8

typedef struct hgf_sim_resp_header {
    char *name;
    char *value;
} hgf_sim_resp_header;

typedef struct hgf_sim_resp {
    int status;
    const char *content_type;  /* static string */
    hgf_buf body;
    char error_code[64];       /* error code, "" on success (stats, x-amzn-ErrorType) */
    int quiet;                 /* error_code is for the stats only: no x-amzn-ErrorType */
    int drop;                  /* close the connection without any answer */
    char request_id[37];       /* x-amzn-RequestId, also quoted in STS bodies */
    hgf_sim_resp_header headers[HGF_SIM_RESP_MAX_HEADERS];
    size_t n_headers;
    hgf_sim_stream_fn stream;  /* when set, the body is produced by it instead */
    void *stream_ctx;
    void (*stream_free)(void *ctx);
} hgf_sim_resp;

/* Also draws a fresh request id. */
void hgf_sim_resp_init(hgf_sim_resp *resp);
void hgf_sim_resp_free(hgf_sim_resp *resp);

/* Adds a response header (copied): 0, HGF_ENOMEM, or HGF_EFAIL when
 * HGF_SIM_RESP_MAX_HEADERS are already set. */
int hgf_sim_resp_header_add(hgf_sim_resp *resp, const char *name, const char *value);

/* Replaces the body with text of the given status and content type. */
int hgf_sim_resp_text(hgf_sim_resp *resp, int status, const char *content_type,
                      const char *text);

/* Serializes doc as the body with the given status and content type; takes
 * ownership of doc (decrefs it). */
int hgf_sim_resp_json(hgf_sim_resp *resp, int status, const char *content_type, json_t *doc);

/* Fills resp with AWS's JSON 1.1 error shape for e (aws_code + msg). The
 * status is 500 for ServerException and 400 for every client error, as the
 * JSON 1.1 services answer; clients classify by the code, not the status. */
void hgf_sim_resp_aws_error(hgf_sim_resp *resp, const hgf_err *e);

/* Sets e to an AWS error: code HGF_EAWS, aws_code and a formatted message.
 * Returns HGF_EAWS. */
int hgf_sim_awserr(hgf_err *e, const char *aws_code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Appends s to out with XML's five special characters escaped. */
int hgf_sim_xml_escape(hgf_buf *out, const char *s);

#endif
