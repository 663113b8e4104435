/* bench-rusage: runs a command and reports what it cost.
 *
 *   bench-rusage [--out FILE] [--timeout SECONDS] -- CMD [ARGS...]
 *
 * Writes one JSON object (wall_seconds, user_seconds, sys_seconds,
 * max_rss_kib, exit, timed_out) to FILE, or to stderr, and exits with the
 * command's status. CPU and peak RSS come from wait4(), so they are the
 * command's own (and its waited-for children's), not the harness's: the
 * benchmark's figures must not depend on whether /usr/bin/time is installed.
 * With --timeout the command is sent SIGTERM, then SIGKILL 5 s later. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KILL_GRACE_S 5.0

typedef struct outcome {
    double wall;
    struct rusage ru;
    int status;
    int timed_out;
} outcome;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* Polls rather than blocking in wait4 so that the timeout needs no signal
 * handler; 10 ms is far below any figure this wraps. */
static int wait_child(pid_t pid, double timeout, double t0, outcome *o)
{
    const struct timespec tick = {0, 10 * 1000 * 1000};
    int sent = 0;
    for (;;) {
        pid_t r = wait4(pid, &o->status, WNOHANG, &o->ru);
        if (r == pid)
            return 0;
        if (r < 0 && errno != EINTR)
            return -1;
        double waited = now_s() - t0;
        if (timeout > 0 && waited > timeout && sent == 0) {
            kill(pid, SIGTERM);
            o->timed_out = sent = 1;
        } else if (timeout > 0 && waited > timeout + KILL_GRACE_S && sent == 1) {
            kill(pid, SIGKILL);
            sent = 2;
        }
        nanosleep(&tick, NULL);
    }
}

static int exit_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;
}

static void report(FILE *f, const outcome *o)
{
    fprintf(f,
            "{\"wall_seconds\":%.3f,\"user_seconds\":%.3f,\"sys_seconds\":%.3f,"
            "\"max_rss_kib\":%ld,\"exit\":%d,\"timed_out\":%s}\n",
            o->wall, tv_s(o->ru.ru_utime), tv_s(o->ru.ru_stime), o->ru.ru_maxrss,
            exit_code(o->status), o->timed_out ? "true" : "false");
}

static int parse_args(int argc, char **argv, const char **out, double *timeout)
{
    static const struct option opts[] = {{"out", required_argument, NULL, 'o'},
                                         {"timeout", required_argument, NULL, 't'},
                                         {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        if (c == 'o')
            *out = optarg;
        else if (c == 't')
            *timeout = atof(optarg);
        else
            return -1;
    }
    return optind < argc ? 0 : -1;
}

int main(int argc, char **argv)
{
    const char *out = NULL;
    double timeout = 0;
    if (parse_args(argc, argv, &out, &timeout) != 0) {
        fputs("usage: bench-rusage [--out FILE] [--timeout SECONDS] -- CMD [ARGS...]\n", stderr);
        return 2;
    }
    outcome o = {0};
    double t0 = now_s();
    pid_t pid = fork();
    if (pid == 0) {
        execvp(argv[optind], argv + optind);
        fprintf(stderr, "bench-rusage: %s: %s\n", argv[optind], strerror(errno));
        _exit(127);
    }
    if (pid < 0 || wait_child(pid, timeout, t0, &o) != 0) {
        perror("bench-rusage");
        return 1;
    }
    o.wall = now_s() - t0;
    FILE *f = out ? fopen(out, "w") : stderr;
    if (!f) {
        perror(out);
        return 1;
    }
    report(f, &o);
    if (f != stderr)
        fclose(f);
    return exit_code(o.status);
}
