/* The per-registry limiter: bounds per key, FIFO hand-over, callbacks only
 * from the loop, idle keys forgotten. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ev.h>

#include "hgfleet/limiter.h"

typedef struct rec {
    int order[16];
    int n;
} rec;

typedef struct tok {
    rec *r;
    int id;
} tok;

static void granted(void *arg)
{
    tok *t = arg;
    t->r->order[t->r->n++] = t->id;
}

static void test_bound_and_fifo(void **state)
{
    struct ev_loop *loop = ev_loop_new(0);
    hgf_limiter *l = hgf_limiter_new(loop, 2);
    rec r = {{0}, 0};
    tok t[5];
    for (int i = 0; i < 5; i++) {
        t[i] = (tok){&r, i};
        assert_int_equal(hgf_limiter_acquire(l, i < 4 ? "a" : "b", granted, &t[i]), 0);
    }
    assert_int_equal(r.n, 0); /* never inside acquire */
    ev_run(loop, EVRUN_NOWAIT);
    ev_run(loop, EVRUN_NOWAIT);
    assert_int_equal(r.n, 3); /* two of "a", one of "b" */
    assert_int_equal(r.order[0], 0);
    assert_int_equal(r.order[1], 1);
    assert_int_equal(r.order[2], 4);
    assert_int_equal(hgf_limiter_held(l, "a"), 2);
    hgf_limiter_release(l, "a");
    ev_run(loop, EVRUN_NOWAIT);
    assert_int_equal(r.n, 4);
    assert_int_equal(r.order[3], 2); /* the oldest waiter of "a" */
    assert_int_equal(hgf_limiter_held(l, "a"), 2);
    hgf_limiter_release(l, "a");
    hgf_limiter_release(l, "a");
    hgf_limiter_release(l, "b");
    ev_run(loop, EVRUN_NOWAIT);
    assert_int_equal(r.n, 5);
    assert_int_equal(r.order[4], 3);
    hgf_limiter_release(l, "a");
    assert_int_equal(hgf_limiter_held(l, "a"), 0);
    assert_int_equal(hgf_limiter_held(l, "b"), 0);
    hgf_limiter_release(l, "zzz"); /* unknown keys are harmless */
    hgf_limiter_free(l);
    ev_loop_destroy(loop);
}

static void test_free_with_waiters(void **state)
{
    struct ev_loop *loop = ev_loop_new(0);
    hgf_limiter *l = hgf_limiter_new(loop, 1);
    rec r = {{0}, 0};
    tok t[3] = {{&r, 0}, {&r, 1}, {&r, 2}};
    for (int i = 0; i < 3; i++)
        hgf_limiter_acquire(l, "k", granted, &t[i]);
    hgf_limiter_free(l); /* pending grants and waiters: no callbacks, no leaks */
    ev_run(loop, EVRUN_NOWAIT);
    assert_int_equal(r.n, 0);
    ev_loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bound_and_fifo),
        cmocka_unit_test(test_free_with_waiters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
