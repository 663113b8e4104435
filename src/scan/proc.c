/* Tool children (trivy, grype): posix_spawn without a shell, in a process
 * group of their own so that a timeout reaches the tool's own children too;
 * stdout and stderr through non-blocking pipes on ev_io, the exit through
 * ev_child, the timeout through ev_timer (SIGTERM, then SIGKILL 2 s later). */
#define _GNU_SOURCE /* pipe2, posix_spawn_file_actions_addclosefrom_np */
#include "scan_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/crypto.h>

#define KILL_GRACE_S 2.0
#define DRAIN_GRACE_S 2.0
#define STDERR_SHOWN 500

extern char **environ;

/* ------------------------------------------------------------------ */
/* command lines                                                       */

static int push(char ***v, size_t *n, size_t *cap, char *s)
{
    if (!s)
        return HGF_ENOMEM;
    if (*n + 2 > *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        char **nv = realloc(*v, nc * sizeof *nv);
        if (!nv) {
            free(s);
            return HGF_ENOMEM;
        }
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = s;
    (*v)[*n] = NULL;
    return 0;
}

int hgf_scan_cmd_arg(scan_cmd *c, const char *fmt, ...)
{
    hgf_buf b = HGF_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    int rc = hgf_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    if (rc) {
        hgf_buf_free(&b);
        return rc;
    }
    return push(&c->argv, &c->argc, &c->argcap, hgf_buf_detach(&b));
}

int hgf_scan_cmd_env(scan_cmd *c, const char *name, const char *value)
{
    hgf_buf b = HGF_BUF_INIT;
    if (hgf_buf_printf(&b, "%s=%s", name, value)) {
        hgf_buf_free(&b);
        return HGF_ENOMEM;
    }
    return push(&c->envp, &c->envc, &c->envcap, hgf_buf_detach(&b));
}

static int denied(const char *var, const char *const *deny)
{
    for (size_t i = 0; deny && deny[i]; i++)
        if (strncmp(var, deny[i], strlen(deny[i])) == 0)
            return 1;
    return 0;
}

/* Only what a scanner needs to reach the registry and its database; never
 * our AWS_* credentials or HGFLEET_* secrets. */
int hgf_scan_cmd_base_env(scan_cmd *c, const hgf_scanner *s, const char *prefix,
                          const char *const *deny)
{
    static const char *const keep[] = {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy",
                                       "https_proxy", "no_proxy", "SSL_CERT_FILE",
                                       "SSL_CERT_DIR", "TMPDIR", "TZ", NULL};
    const char *path = getenv("PATH");
    if (hgf_scan_cmd_env(c, "PATH", path && *path ? path : "/usr/local/bin:/usr/bin:/bin") ||
        hgf_scan_cmd_env(c, "HOME", s->home))
        return HGF_ENOMEM;
    for (size_t i = 0; keep[i]; i++) {
        const char *v = getenv(keep[i]);
        if (v && hgf_scan_cmd_env(c, keep[i], v))
            return HGF_ENOMEM;
    }
    for (char **e = environ; e && *e; e++)
        if (strncmp(*e, prefix, strlen(prefix)) == 0 && strchr(*e, '=') && !denied(*e, deny) &&
            push(&c->envp, &c->envc, &c->envcap, strdup(*e)))
            return HGF_ENOMEM;
    return 0;
}

void hgf_scan_cmd_free(scan_cmd *c)
{
    for (size_t i = 0; i < c->argc; i++)
        free(c->argv[i]);
    for (size_t i = 0; i < c->envc; i++) {
        OPENSSL_cleanse(c->envp[i], strlen(c->envp[i]));
        free(c->envp[i]);
    }
    free(c->argv);
    free(c->envp);
    memset(c, 0, sizeof *c);
}

/* ------------------------------------------------------------------ */
/* finishing                                                           */

static int stderr_says_not_found(const hgf_buf *e)
{
    static const char *const codes[] = {"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "manifest unknown",
                                        NULL};
    for (size_t i = 0; e->data && codes[i]; i++)
        if (strstr(e->data, codes[i]))
            return 1;
    return 0;
}

static void stderr_shown(const scan_job *j, char *out, size_t n)
{
    hgf_buf red = HGF_BUF_INIT;
    if (j->p.errb.len == 0)
        snprintf(out, n, "(nothing on stderr)");
    else if (hgf_scan_redact(hgf_buf_str(&j->p.errb), j->p.errb.len, j->password, &red) == 0)
        hgf_scan_excerpt(hgf_buf_str(&red), red.len, STDERR_SHOWN, out, n);
    else
        snprintf(out, n, "(stderr not shown)");
    hgf_buf_free(&red);
}

static void fail_exit(scan_job *j, const char *name)
{
    char shown[STDERR_SHOWN * 2 + 8];
    stderr_shown(j, shown, sizeof shown);
    int st = j->p.status;
    if (WIFSIGNALED(st))
        hgf_scan_job_fail_now(j, HGF_EFAIL, 1, "%s: killed by signal %d: %s", name, WTERMSIG(st),
                              shown);
    else if (stderr_says_not_found(&j->p.errb))
        hgf_scan_job_fail_now(j, HGF_ENOTFOUND, 0, "%s: exit status %d: %s", name,
                              WEXITSTATUS(st), shown);
    else
        hgf_scan_job_fail_now(j, HGF_EFAIL, 1, "%s: exit status %d: %s", name, WEXITSTATUS(st),
                              shown);
}

static void finish_ok(scan_job *j, const char *name)
{
    hgf_scan_result res = {.scanner = name};
    char version[128];
    int rc = hgf_scan_parse(j->s->kind, hgf_buf_str(&j->p.out), j->p.out.len, &res.summary,
                            &res.report, version, sizeof version, &res.err);
    if (rc) {
        hgf_scan_job_fail_now(j, rc, 0, "%s", res.err.msg);
        return;
    }
    res.version = version;
    res.seconds = ev_time() - j->started;
    hgf_scan_job_deliver(j, &res);
    json_decref(res.report);
}

static void finish(scan_job *j)
{
    hgf_scanner *s = j->s;
    const char *name = hgf_scan_kind_name(s->kind);
    if (j->p.timed_out)
        hgf_scan_job_fail_now(j, HGF_EFAIL, 1, "%s: timed out after %d s", name, s->timeout_s);
    else if (!WIFEXITED(j->p.status) || WEXITSTATUS(j->p.status) != 0)
        fail_exit(j, name);
    else if (j->p.out_over)
        hgf_scan_job_fail_now(j, HGF_EFAIL, 0, "%s: output larger than %zu bytes", name,
                              s->max_stdout);
    else
        finish_ok(j, name);
}

static int pipes_open(const scan_job *j)
{
    return j->p.out_w.fd >= 0 || j->p.err_w.fd >= 0;
}

static void close_pipe(struct ev_loop *loop, ev_io *w)
{
    if (w->fd < 0)
        return;
    ev_io_stop(loop, w);
    close(w->fd);
    w->fd = -1;
}

static void maybe_done(scan_job *j)
{
    if (j->p.exited && !pipes_open(j))
        finish(j);
}

static void kill_group(scan_job *j, int sig)
{
    if (j->p.pid > 0)
        kill(-j->p.pid, sig);
}

/* ------------------------------------------------------------------ */
/* watchers                                                            */

static void arm_aux(scan_job *j, void (*cb)(struct ev_loop *, ev_timer *, int), double after)
{
    ev_timer_stop(j->s->loop, &j->aux);
    ev_timer_init(&j->aux, cb, after, 0.);
    j->aux.data = j;
    ev_timer_start(j->s->loop, &j->aux);
}

static void on_drained(struct ev_loop *loop, ev_timer *w, int revents)
{
    scan_job *j = w->data;
    /* The tool exited but something it started still holds a pipe. */
    kill_group(j, SIGKILL);
    close_pipe(loop, &j->p.out_w);
    close_pipe(loop, &j->p.err_w);
    finish(j);
}

static void on_kill(struct ev_loop *loop, ev_timer *w, int revents)
{
    kill_group(w->data, SIGKILL);
}

static void on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    scan_job *j = w->data;
    j->p.timed_out = 1;
    kill_group(j, SIGTERM);
    arm_aux(j, on_kill, KILL_GRACE_S);
}

static void on_child(struct ev_loop *loop, ev_child *w, int revents)
{
    scan_job *j = w->data;
    ev_child_stop(loop, w);
    j->p.exited = 1;
    j->p.status = w->rstatus;
    ev_timer_stop(loop, &j->deadline);
    ev_timer_stop(loop, &j->aux);
    if (pipes_open(j))
        arm_aux(j, on_drained, DRAIN_GRACE_S);
    maybe_done(j);
}

static void keep(scan_job *j, int is_out, const char *p, size_t n)
{
    hgf_buf *b = is_out ? &j->p.out : &j->p.errb;
    size_t cap = is_out ? j->s->max_stdout : j->s->max_stderr;
    size_t room = b->len < cap ? cap - b->len : 0;
    if (n > room && is_out)
        j->p.out_over = 1;
    if (room && hgf_buf_append(b, p, n < room ? n : room) && is_out)
        j->p.out_over = 1;  /* out of memory: fail rather than parse half a report */
}

static void on_pipe(struct ev_loop *loop, ev_io *w, int revents)
{
    scan_job *j = w->data;
    int is_out = w == &j->p.out_w;
    char chunk[65536];
    /* Bounded per wake-up so one chatty child cannot starve the loop. */
    for (int i = 0; i < 16; i++) {
        ssize_t n = read(w->fd, chunk, sizeof chunk);
        if (n > 0) {
            keep(j, is_out, chunk, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        close_pipe(loop, w);
        maybe_done(j);
        return;
    }
}

/* ------------------------------------------------------------------ */
/* spawning                                                            */

static int spawn_attrs(posix_spawn_file_actions_t *fa, posix_spawnattr_t *at, int out_w,
                       int err_w)
{
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    int rc = posix_spawn_file_actions_init(fa);
    if (rc)
        return rc;
    rc = posix_spawnattr_init(at);
    if (rc) {
        posix_spawn_file_actions_destroy(fa);
        return rc;
    }
    /* libev blocks SIGCHLD and we may ignore SIGPIPE: the tool gets defaults. */
    if ((rc = posix_spawn_file_actions_addopen(fa, 0, "/dev/null", O_RDONLY, 0)) ||
        (rc = posix_spawn_file_actions_adddup2(fa, out_w, 1)) ||
        (rc = posix_spawn_file_actions_adddup2(fa, err_w, 2)) ||
        /* Whatever another module opened without O_CLOEXEC (database and
         * HTTP sockets) stays out of the tool. */
        (rc = posix_spawn_file_actions_addclosefrom_np(fa, 3)) ||
        (rc = posix_spawnattr_setflags(at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                               POSIX_SPAWN_SETSIGDEF)) ||
        (rc = posix_spawnattr_setpgroup(at, 0)) ||
        (rc = posix_spawnattr_setsigmask(at, &none)) ||
        (rc = posix_spawnattr_setsigdefault(at, &all))) {
        posix_spawn_file_actions_destroy(fa);
        posix_spawnattr_destroy(at);
    }
    return rc;
}

static int spawn(scan_job *j, const scan_cmd *cmd, int out[2], int err[2])
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    int rc = spawn_attrs(&fa, &at, out[1], err[1]);
    if (rc == 0) {
        rc = posix_spawn(&j->p.pid, j->s->tool, &fa, &at, cmd->argv, cmd->envp);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&at);
    }
    close(out[1]);
    close(err[1]);
    if (rc) {
        j->p.pid = 0;
        close(out[0]);
        close(err[0]);
    }
    return rc;
}

static void watch(scan_job *j, int out_fd, int err_fd)
{
    struct ev_loop *loop = j->s->loop;
    fcntl(out_fd, F_SETFL, fcntl(out_fd, F_GETFL) | O_NONBLOCK);
    fcntl(err_fd, F_SETFL, fcntl(err_fd, F_GETFL) | O_NONBLOCK);
    ev_io_init(&j->p.out_w, on_pipe, out_fd, EV_READ);
    ev_io_init(&j->p.err_w, on_pipe, err_fd, EV_READ);
    j->p.out_w.data = j->p.err_w.data = j;
    ev_io_start(loop, &j->p.out_w);
    ev_io_start(loop, &j->p.err_w);
    /* Before the loop runs again, so libev's SIGCHLD reaper finds it. */
    ev_child_init(&j->p.child, on_child, j->p.pid, 0);
    j->p.child.data = j;
    ev_child_start(loop, &j->p.child);
    ev_timer_init(&j->deadline, on_timeout, j->s->timeout_s, 0.);
    j->deadline.data = j;
    ev_timer_start(loop, &j->deadline);
}

static int open_pipes(int out[2], int err[2])
{
    if (pipe2(out, O_CLOEXEC) != 0)
        return errno;
    if (pipe2(err, O_CLOEXEC) != 0) {
        int e = errno;
        close(out[0]);
        close(out[1]);
        return e;
    }
    return 0;
}

void hgf_scan_proc_start(scan_job *j)
{
    const char *name = hgf_scan_kind_name(j->s->kind);
    scan_cmd cmd = {0};
    int out[2], err[2];
    int rc = j->s->kind == SCAN_TRIVY ? hgf_scan_trivy_cmd(j, &cmd) : hgf_scan_grype_cmd(j, &cmd);
    if (rc) {
        hgf_scan_job_fail_later(j, HGF_ENOMEM, 1, "%s: out of memory", name);
    } else if ((rc = open_pipes(out, err)) != 0) {
        hgf_scan_job_fail_later(j, HGF_EFAIL, 1, "%s: pipe: %s", name, strerror(rc));
    } else if ((rc = spawn(j, &cmd, out, err)) != 0) {
        hgf_scan_job_fail_later(j, HGF_EFAIL, 1, "%s: cannot run %s: %s", name, j->s->tool,
                                strerror(rc));
    } else {
        watch(j, out[0], err[0]);
    }
    hgf_scan_cmd_free(&cmd);
}

void hgf_scan_proc_cancel(struct ev_loop *loop, scan_job *j)
{
    close_pipe(loop, &j->p.out_w);
    close_pipe(loop, &j->p.err_w);
    if (j->p.pid <= 0 || j->p.exited)
        return;
    /* A pending child event means libev already reaped it: the pid may be
     * someone else's by now. */
    int reaped = ev_is_pending(&j->p.child);
    ev_child_stop(loop, &j->p.child);
    if (reaped)
        return;
    kill_group(j, SIGKILL);
    int st;
    while (waitpid(j->p.pid, &st, 0) < 0 && errno == EINTR)
        ;
}
