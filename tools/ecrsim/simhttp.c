#include "simhttp.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *hgf_sim_req_header(const hgf_sim_req *req, const char *name)
{
    for (size_t i = 0; i < req->n_headers; i++)
        if (req->headers[i].name && strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

void hgf_sim_resp_init(hgf_sim_resp *resp)
{
    memset(resp, 0, sizeof *resp);
    hgf_buf_init(&resp->body);
    resp->status = 200;
    resp->content_type = "application/json";
}

void hgf_sim_resp_free(hgf_sim_resp *resp)
{
    hgf_buf_free(&resp->body);
    if (resp->stream_free && resp->stream_ctx)
        resp->stream_free(resp->stream_ctx);
    resp->stream = NULL;
    resp->stream_ctx = NULL;
    resp->stream_free = NULL;
}

/* 13 significant digits print epoch seconds with milliseconds exactly
 * ("1767225600.123") instead of the binary expansion of the double. */
#define DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(13))

int hgf_sim_resp_json(hgf_sim_resp *resp, int status, const char *content_type, json_t *doc)
{
    if (!doc)
        return HGF_ENOMEM;
    hgf_buf_reset(&resp->body);
    char *text = json_dumps(doc, DUMP_FLAGS);
    json_decref(doc);
    if (!text)
        return HGF_ENOMEM;
    int rc = hgf_buf_puts(&resp->body, text);
    free(text);
    resp->status = status;
    resp->content_type = content_type;
    return rc;
}

void hgf_sim_resp_aws_error(hgf_sim_resp *resp, const hgf_err *e)
{
    const char *code = e->aws_code[0] ? e->aws_code : "ServerException";
    int status = strcmp(code, "ServerException") == 0 ? 500 : 400;
    json_t *doc = json_pack("{s:s, s:s}", "__type", code, "message", e->msg);
    snprintf(resp->error_code, sizeof resp->error_code, "%s", code);
    if (hgf_sim_resp_json(resp, status, HGF_SIM_AMZ_JSON, doc) != 0) {
        /* Out of memory while reporting an error: send the bare status. */
        hgf_buf_reset(&resp->body);
        resp->status = 500;
    }
}

int hgf_sim_awserr(hgf_err *e, const char *aws_code, const char *fmt, ...)
{
    if (!e)
        return HGF_EAWS;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    snprintf(e->aws_code, sizeof e->aws_code, "%s", aws_code);
    e->code = HGF_EAWS;
    return HGF_EAWS;
}
