/* Unit tests that talk to an emulator in tests/emulators/: start it, wait on the loop, stop it.
 * Header-only, like tap.h. */
#ifndef SIPWAKE_TEST_EMULATOR_H
#define SIPWAKE_TEST_EMULATOR_H

#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ev.h>

/* Run cmd through sh (it must print "listening <port>" first); it dies with the test. The
 * port, or -1. */
static inline int emulator_start(const char *cmd, pid_t *pid)
{
    int fds[2];
    if (pipe(fds) < 0)
        return -1;
    *pid = fork();
    if (*pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        dup2(fds[1], 1);
        close(fds[0]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    int port = -1;
    char line[128];
    if (f && fgets(line, sizeof line, f))
        sscanf(line, "listening %d", &port);
    if (f)
        fclose(f);
    return port;
}

static inline void emulator_stop(pid_t pid)
{
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

/* Run loop until *done is set or max seconds passed. */
static inline void loop_until(struct ev_loop *loop, const int *done, double max)
{
    ev_tstamp end = ev_time() + max;
    while (!*done && ev_time() < end) {
        ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT);
        usleep(1000);
    }
}

#endif
