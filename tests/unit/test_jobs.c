/* The pure parts of the job queue and the scheduler: retry backoff, state
 * and kind names, which failures are retried, and what the scheduler does
 * with a claimed connection. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "hgfleet/jobs.h"
#include "hgfleet/schedule.h"
#include "hgfleet/scheduler.h"
#include "hgfleet/worker.h"

static void test_backoff(void **state)
{
    /* min(2^attempts * 5 s, 10 min); attempts counts the failed run. */
    assert_int_equal(hgf_jobs_backoff_seconds(0), 5);
    assert_int_equal(hgf_jobs_backoff_seconds(1), 10);
    assert_int_equal(hgf_jobs_backoff_seconds(2), 20);
    assert_int_equal(hgf_jobs_backoff_seconds(3), 40);
    assert_int_equal(hgf_jobs_backoff_seconds(6), 320);
    assert_int_equal(hgf_jobs_backoff_seconds(7), 600);
    assert_int_equal(hgf_jobs_backoff_seconds(40), 600);
    assert_int_equal(hgf_jobs_backoff_seconds(1000000), 600);
    assert_int_equal(hgf_jobs_backoff_seconds(-3), 5);
}

static void test_names(void **state)
{
    const char *states[] = {"queued", "running", "done", "failed"};
    for (size_t i = 0; i < 4; i++)
        assert_true(hgf_jobs_valid_state(states[i]));
    assert_false(hgf_jobs_valid_state("bogus"));
    assert_false(hgf_jobs_valid_state("Queued"));
    assert_false(hgf_jobs_valid_state(""));
    assert_false(hgf_jobs_valid_state(NULL));
    assert_true(hgf_jobs_valid_kind("sync"));
    assert_true(hgf_jobs_valid_kind("scan"));
    assert_true(hgf_jobs_valid_kind("sweep"));
    assert_false(hgf_jobs_valid_kind("queued"));
}

static void test_id_array(void **state)
{
    int64_t ids[] = {1, 42, 9007199254740993LL};
    hgf_buf b = HGF_BUF_INIT;
    hgf_jobs_id_array(ids, 3, &b);
    assert_string_equal(hgf_buf_str(&b), "{1,42,9007199254740993}");
    hgf_buf_reset(&b);
    hgf_jobs_id_array(ids, 0, &b);
    assert_string_equal(hgf_buf_str(&b), "{}");
    hgf_buf_free(&b);
}

static int permanent(int code, const char *aws_code)
{
    hgf_err e;
    hgf_err_clear(&e);
    e.code = code;
    snprintf(e.aws_code, sizeof e.aws_code, "%s", aws_code);
    return hgf_worker_error_is_permanent(&e);
}

static void test_permanence(void **state)
{
    assert_true(permanent(HGF_EINPUT, ""));
    assert_true(permanent(HGF_ENOTFOUND, ""));
    assert_true(permanent(HGF_EAWS, "AccessDeniedException"));
    assert_true(permanent(HGF_EAWS, "InvalidSignatureException"));
    assert_true(permanent(HGF_EAWS, "RepositoryNotFoundException"));
    assert_false(permanent(HGF_EDB, ""));
    assert_false(permanent(HGF_EHTTP, ""));
    assert_false(permanent(HGF_EFAIL, ""));
    assert_false(permanent(HGF_EAWS, "ThrottlingException"));
    assert_false(permanent(HGF_EAWS, "TooManyRequestsException"));
    assert_false(permanent(HGF_EAWS, "ServerException"));
    assert_false(permanent(HGF_EAWS, "ExpiredTokenException"));
    assert_false(permanent(HGF_EAWS, "")); /* a 5xx with no error body */
}

static void test_executors(void **state)
{
    const hgf_worker_executor *x = hgf_worker_executor_find("sync");
    assert_non_null(x);
    assert_string_equal(x->kind, "sync");
    assert_non_null(x->start);
    assert_null(hgf_worker_executor_find("bogus"));
}

/* ---- the scheduler's plan -------------------------------------------- */

static int64_t at(int y, int mon, int d, int h, int mi, int s)
{
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    return (int64_t)timegm(&tm);
}

static hgf_sched_plan plan(const char *spec, int64_t id, int was_due, int64_t now)
{
    hgf_sched_plan p;
    hgf_err err;
    hgf_err_clear(&err);
    int rc = hgf_scheduler_plan(spec, id, was_due, now, &p, &err);
    if (rc)
        print_error("plan(\"%s\"): %s\n", spec, err.msg);
    assert_int_equal(rc, 0);
    return p;
}

static void test_plan_no_timer(void **state)
{
    int64_t now = at(2026, 3, 4, 10, 0, 0);
    const char *specs[] = {"manual", "on_push", " MANUAL ", "On_Push"};
    for (size_t i = 0; i < 4; i++) {
        hgf_sched_plan p = plan(specs[i], 7, 1, now);
        assert_int_equal(p.fire, 0); /* due or not, it never fires */
        assert_int_equal(p.next, HGF_SCHED_NO_TIMER);
    }
}

static void test_plan_timed(void **state)
{
    int64_t now = at(2026, 3, 4, 10, 0, 1);
    hgf_schedule s;
    assert_int_equal(hgf_schedule_parse("every:2s", &s, NULL), 0);
    hgf_sched_plan due = plan("every:2s", 11, 1, now);
    assert_int_equal(due.fire, 1);
    assert_int_equal(due.next, hgf_schedule_next_jittered(&s, 11, now));
    assert_true(due.next > now && due.next <= now + 2);
    /* A changed schedule (no next_sync_at) is planned, not fired. */
    hgf_sched_plan fresh = plan("every:2s", 11, 0, now);
    assert_int_equal(fresh.fire, 0);
    assert_int_equal(fresh.next, due.next);
    /* daily@02:00 for connection 5: tomorrow 02:00 plus its jitter (<= 5 min). */
    hgf_sched_plan daily = plan("daily@02:00", 5, 1, now);
    int64_t base = at(2026, 3, 5, 2, 0, 0);
    assert_true(daily.next >= base && daily.next <= base + 300);
    assert_int_equal(daily.fire, 1);
    /* on_push with a safety net has a timer. */
    hgf_sched_plan net = plan("on_push+every:1h", 5, 1, now);
    assert_int_equal(net.fire, 1);
    assert_true(net.next > now && net.next <= now + 3600 + 300);
}

static void test_plan_never_and_bad(void **state)
{
    int64_t now = at(2026, 3, 4, 10, 0, 0);
    hgf_sched_plan never = plan("cron:0 0 31 2 *", 3, 1, now);
    assert_int_equal(never.next, HGF_SCHED_NEVER);
    assert_int_equal(never.fire, 0);
    hgf_sched_plan p;
    hgf_err err;
    hgf_err_clear(&err);
    assert_int_equal(hgf_scheduler_plan("every:5x", 3, 1, now, &p, &err), HGF_EINPUT);
    assert_non_null(strstr(err.msg, "every:5x"));
    assert_int_equal(p.fire, 0);
    assert_int_equal(p.next, HGF_SCHED_NEVER);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff),           cmocka_unit_test(test_names),
        cmocka_unit_test(test_id_array),          cmocka_unit_test(test_permanence),
        cmocka_unit_test(test_executors),         cmocka_unit_test(test_plan_no_timer),
        cmocka_unit_test(test_plan_timed),        cmocka_unit_test(test_plan_never_and_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
