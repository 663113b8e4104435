/* Unit tests for the sweep settings of the configuration:
 * HGFLEET_SWEEP_SCHEDULE (a timed schedule spec, validated at load and
 * named in errors) and HGFLEET_RESCAN_AFTER (a duration, default 7d). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "hgfleet/config.h"

/* Everything else hgf_config_load reads is left unset, so only the
 * variables under test can fail it. */
static int setup(void **state)
{
    static const char *const VARS[] = {
        "HGFLEET_WORKERS", "HGFLEET_REGISTRY_INFLIGHT", "HGFLEET_TOTAL_INFLIGHT",
        "HGFLEET_LEASE_SECONDS", "HGFLEET_SCANS_PER_REGISTRY", "HGFLEET_MASTER_KEY",
        "HGFLEET_MASTER_KEY_FILE", "HGFLEET_WEBHOOK_TOKEN", "HGFLEET_WEBHOOK_TOKEN_FILE",
        "HGFLEET_ADMIN_TOKEN", "HGFLEET_ADMIN_TOKEN_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "HGFLEET_SWEEP_SCHEDULE",
        "HGFLEET_RESCAN_AFTER", "HGFLEET_DATABASE_URL_FILE"};
    for (size_t i = 0; i < sizeof VARS / sizeof *VARS; i++)
        unsetenv(VARS[i]);
    return 0;
}

static int load(hgf_config *cfg, hgf_err *err)
{
    hgf_err_clear(err);
    return hgf_config_load(cfg, err);
}

static void test_defaults(void **state)
{
    hgf_config cfg;
    hgf_err err;
    assert_int_equal(load(&cfg, &err), 0);
    assert_null(cfg.sweep_schedule);
    assert_int_equal(cfg.rescan_after_s, 7 * 86400);
    hgf_config_free(&cfg);
}

static void test_schedule_accepted(void **state)
{
    static const char *const OK[] = {"every:5s", "cron:0 3 * * 0", "weekly@sun 03:00",
                                     " daily@02:30 "};
    for (size_t i = 0; i < sizeof OK / sizeof *OK; i++) {
        hgf_config cfg;
        hgf_err err;
        setenv("HGFLEET_SWEEP_SCHEDULE", OK[i], 1);
        assert_int_equal(load(&cfg, &err), 0);
        assert_non_null(cfg.sweep_schedule);
        assert_string_equal(cfg.sweep_schedule, OK[i]);
        hgf_config_free(&cfg);
    }
    /* "The cron spec" (DESIGN): a bare expression is taken as cron:<it>. */
    static const char *const BARE[][2] = {{"0 3 * * 0", "cron:0 3 * * 0"},
                                          {"*/15 * * * *", "cron:*/15 * * * *"}};
    for (size_t i = 0; i < sizeof BARE / sizeof *BARE; i++) {
        hgf_config cfg;
        hgf_err err;
        setenv("HGFLEET_SWEEP_SCHEDULE", BARE[i][0], 1);
        assert_int_equal(load(&cfg, &err), 0);
        assert_string_equal(cfg.sweep_schedule, BARE[i][1]);
        hgf_config_free(&cfg);
    }
    unsetenv("HGFLEET_SWEEP_SCHEDULE");
}

/* Empty (the chart's default) and manual both mean: no scheduled sweeps. */
static void test_schedule_off(void **state)
{
    static const char *const OFF[] = {"", "manual", "MANUAL"};
    for (size_t i = 0; i < sizeof OFF / sizeof *OFF; i++) {
        hgf_config cfg;
        hgf_err err;
        setenv("HGFLEET_SWEEP_SCHEDULE", OFF[i], 1);
        assert_int_equal(load(&cfg, &err), 0);
        assert_null(cfg.sweep_schedule);
        hgf_config_free(&cfg);
    }
    unsetenv("HGFLEET_SWEEP_SCHEDULE");
}

static void test_schedule_rejected(void **state)
{
    static const struct {
        const char *spec, *says;
    } BAD[] = {{"every:5x", "unknown unit"},
               {"daily@25:00", "25"},
               {"cron:0 3 * *", "cron"},
               {"on_push", "on_push does not apply to sweeps"},
               {"on_push+every:1h", "on_push does not apply to sweeps"},
               {"hourly", "hourly"},
               {"0 3 * *", "cron"},
               {"61 * * * *", "cron"}};
    for (size_t i = 0; i < sizeof BAD / sizeof *BAD; i++) {
        hgf_config cfg;
        hgf_err err;
        setenv("HGFLEET_SWEEP_SCHEDULE", BAD[i].spec, 1);
        assert_int_equal(load(&cfg, &err), HGF_EINPUT);
        assert_non_null(strstr(err.msg, "HGFLEET_SWEEP_SCHEDULE"));
        if (!strstr(err.msg, BAD[i].says))
            fail_msg("%s: \"%s\" not in: %s", BAD[i].spec, BAD[i].says, err.msg);
        hgf_config_free(&cfg);
    }
    unsetenv("HGFLEET_SWEEP_SCHEDULE");
}

static void test_rescan_after(void **state)
{
    hgf_config cfg;
    hgf_err err;
    setenv("HGFLEET_RESCAN_AFTER", "1d12h", 1);
    assert_int_equal(load(&cfg, &err), 0);
    assert_int_equal(cfg.rescan_after_s, 36 * 3600);
    hgf_config_free(&cfg);
    setenv("HGFLEET_RESCAN_AFTER", "7 days", 1);
    assert_int_equal(load(&cfg, &err), HGF_EINPUT);
    assert_non_null(strstr(err.msg, "HGFLEET_RESCAN_AFTER"));
    hgf_config_free(&cfg);
    unsetenv("HGFLEET_RESCAN_AFTER");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, setup),
        cmocka_unit_test_setup(test_schedule_accepted, setup),
        cmocka_unit_test_setup(test_schedule_off, setup),
        cmocka_unit_test_setup(test_schedule_rejected, setup),
        cmocka_unit_test_setup(test_rescan_after, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
