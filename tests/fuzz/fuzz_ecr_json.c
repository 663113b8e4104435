/* ECR JSON 1.1 replies: the error body parser, and the items of a
 * DescribeRepositories / DescribeImages page. */
#include "fuzz.h"

#include "hgfleet/awsjson.h"
#include "hgfleet/ecr.h"

#include <jansson.h>

static void error_body(const uint8_t *data, size_t size)
{
    hgf_err e;
    const char *hdr = size && data[0] & 1 ? "com.amazon.coral#ThrottlingException:http://x" : NULL;
    int rc = hgf_awsjson_parse_error("DescribeImages", 400, (const char *)data, size, hdr, &e);
    FUZZ_CHECK(rc == HGF_EAWS && e.code == HGF_EAWS);
    FUZZ_CHECK(memchr(e.aws_code, '\0', sizeof e.aws_code) && e.aws_code[0]);
    FUZZ_CHECK(!strncmp(e.msg, "DescribeImages: ", 16));
}

static void items(json_t *page)
{
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(page, "repositories"), i, item) {
        hgf_ecr_repo r;
        hgf_err e;
        if (!hgf_ecr_parse_repo(item, &r, &e))
            FUZZ_CHECK(r.name && *r.name);
    }
    json_array_foreach(json_object_get(page, "imageDetails"), i, item) {
        hgf_ecr_image im;
        hgf_err e;
        if (hgf_ecr_parse_image(item, &im, &e))
            continue;
        FUZZ_CHECK(im.digest && !strncmp(im.digest, "sha256:", 7));
        size_t j;
        json_t *tag;
        json_array_foreach(im.tags, j, tag) (void)json_string_value(tag);
    }
    const char *next = hgf_ecr_next_token(page);
    FUZZ_CHECK(!next || *next);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    error_body(data, size);
    json_t *page = json_loadb((const char *)data, size, 0, NULL);
    if (page)
        items(page);
    json_decref(page);
    return 0;
}
