#include "simhttp.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/rand.h>

const char *hgf_sim_req_header(const hgf_sim_req *req, const char *name)
{
    for (size_t i = 0; i < req->n_headers; i++)
        if (req->headers[i].name && strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

static void request_id(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1)
        memset(b, 0, sizeof b);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
             b[13], b[14], b[15]);
}

void hgf_sim_resp_init(hgf_sim_resp *resp)
{
    memset(resp, 0, sizeof *resp);
    hgf_buf_init(&resp->body);
    resp->status = 200;
    resp->content_type = "application/json";
    request_id(resp->request_id);
}

int hgf_sim_resp_header_add(hgf_sim_resp *resp, const char *name, const char *value)
{
    if (resp->n_headers == HGF_SIM_RESP_MAX_HEADERS)
        return HGF_EFAIL;
    hgf_sim_resp_header *h = &resp->headers[resp->n_headers];
    h->name = strdup(name);
    h->value = strdup(value);
    if (!h->name || !h->value) {
        free(h->name);
        free(h->value);
        return HGF_ENOMEM;
    }
    resp->n_headers++;
    return 0;
}

int hgf_sim_resp_text(hgf_sim_resp *resp, int status, const char *content_type,
                      const char *text)
{
    hgf_buf_reset(&resp->body);
    resp->status = status;
    resp->content_type = content_type;
    return hgf_buf_puts(&resp->body, text);
}

void hgf_sim_resp_free(hgf_sim_resp *resp)
{
    for (size_t i = 0; i < resp->n_headers; i++) {
        free(resp->headers[i].name);
        free(resp->headers[i].value);
    }
    resp->n_headers = 0;
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

int hgf_sim_xml_escape(hgf_buf *out, const char *s)
{
    int rc = 0;
    for (; !rc && *s; s++) {
        switch (*s) {
        case '<':
            rc = hgf_buf_puts(out, "&lt;");
            break;
        case '>':
            rc = hgf_buf_puts(out, "&gt;");
            break;
        case '&':
            rc = hgf_buf_puts(out, "&amp;");
            break;
        case '"':
            rc = hgf_buf_puts(out, "&quot;");
            break;
        case '\'':
            rc = hgf_buf_puts(out, "&apos;");
            break;
        default:
            rc = hgf_buf_putc(out, *s);
        }
    }
    return rc;
}
