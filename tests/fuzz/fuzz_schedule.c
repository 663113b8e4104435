/* Schedule specs and durations: parse, format, parse again, and the next
 * fire times. The first 8 bytes (when there are more than 8) are the
 * `after` instant; the rest is the spec. */
#include "fuzz.h"

#include "hgfleet/schedule.h"

static int64_t take_after(const uint8_t **data, size_t *size)
{
    uint64_t v = 0;
    if (*size <= 8)
        return 1700000000;
    for (int i = 0; i < 8; i++)
        v = v << 8 | (*data)[i];
    *data += 8;
    *size -= 8;
    return (int64_t)v;
}

static void round_trip(const hgf_schedule *s)
{
    char text[HGF_SCHEDULE_TEXT_MAX];
    FUZZ_CHECK(hgf_schedule_format(s, text, sizeof text) == 0);
    hgf_schedule again;
    hgf_err e;
    if (hgf_schedule_parse(text, &again, &e)) {
        fprintf(stderr, "invariant failed: canonical \"%s\" does not parse: %s\n", text, e.msg);
        abort();
    }
    FUZZ_CHECK(memcmp(&again, s, sizeof again) == 0);
}

static void timing(const hgf_schedule *s, int64_t after)
{
    int64_t next = hgf_schedule_next(s, after);
    FUZZ_CHECK(next == -1 || next > after);
    int64_t iv = hgf_schedule_interval(s, after);
    FUZZ_CHECK(iv >= 0);
    int64_t j = hgf_schedule_jitter(s, (uint64_t)after, after);
    FUZZ_CHECK(j >= 0 && j <= 300);
    int64_t nj = hgf_schedule_next_jittered(s, 42, after);
    FUZZ_CHECK(nj == -1 || nj > after);
}

static void duration(const char *text)
{
    int64_t secs;
    hgf_err e;
    if (hgf_duration_parse(text, "--every", &secs, &e))
        return;
    FUZZ_CHECK(secs >= 1 && secs <= HGF_DURATION_MAX_SECONDS);
    char out[32];
    FUZZ_CHECK(hgf_duration_format(secs, out, sizeof out) == 0);
    int64_t again;
    FUZZ_CHECK(hgf_duration_parse(out, "--every", &again, &e) == 0 && again == secs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t after = take_after(&data, &size);
    char *spec = fuzz_cstr(data, size);
    hgf_schedule s;
    hgf_err e;
    if (hgf_schedule_parse(spec, &s, &e) == 0) {
        round_trip(&s);
        timing(&s, after);
    }
    duration(spec);
    free(spec);
    return 0;
}
