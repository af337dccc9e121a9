/* The HTTP/2 client against tests/emulators/h2server.py on loopback: requests and their
 * responses, many streams on one connection, the per-request timeout, GOAWAY with the
 * refused requests sent again on a new connection, an untrusted certificate, a full queue,
 * a host name resolved off the loop, a pool freed while its lookup is stuck. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "h2_pool.c"
#include "log.h"
#include "emulator.h"
#include "metrics.h"
#include "tap.h"
#include "util.h"

static char dir[] = "/tmp/sipwake-h2-XXXXXX";
static struct ev_loop *loop;

struct result {
    int done;
    int status;
    char body[4096];
    char error[256];
};

static void cb(void *arg, const struct h2_response *resp)
{
    struct result *r = arg;
    r->done = 1;
    r->status = resp->status;
    snprintf(r->body, sizeof r->body, "%s", resp->body ? resp->body : "");
    snprintf(r->error, sizeof r->error, "%s", resp->error ? resp->error : "");
}

static void wait_all(struct result *rs, size_t n, double max)
{
    ev_tstamp end = ev_time() + max;
    for (;;) {
        size_t done = 0;
        for (size_t i = 0; i < n; i++)
            done += rs[i].done;
        if (done == n || ev_time() > end)
            return;
        ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT);
        usleep(1000);
    }
}

/* A resolver the test holds: it calls getaddrinfo once the test opens the gate. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_open, gate_entered, gate_left;

static int held_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                            struct addrinfo **res)
{
    pthread_mutex_lock(&gate_mu);
    gate_entered++;
    pthread_cond_broadcast(&gate_cv);
    while (!gate_open)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
    int rc = getaddrinfo(node, service, hints, res);
    pthread_mutex_lock(&gate_mu);
    gate_left++;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
    return rc;
}

static void gate_set_open(void)
{
    pthread_mutex_lock(&gate_mu);
    gate_open = 1;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
}

/* Wait until *counter reaches want or max seconds pass; the counter's value. */
static int gate_wait(const int *counter, int want, double max)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)max;
    pthread_mutex_lock(&gate_mu);
    while (*counter < want && pthread_cond_timedwait(&gate_cv, &gate_mu, &until) == 0)
        ;
    int v = *counter;
    pthread_mutex_unlock(&gate_mu);
    return v;
}

/* Opens the gate after 3 s whatever happens: a free that waits for the lookup then shows as
 * a slow free instead of a hung test. */
static void *gate_watchdog(void *arg)
{
    (void)arg;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 3;
    pthread_mutex_lock(&gate_mu);
    while (!gate_open && pthread_cond_timedwait(&gate_cv, &gate_mu, &until) == 0)
        ;
    gate_open = 1;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
    return NULL;
}

/* Set while h2_pool_submit runs: a callback seen then ran before it returned. */
static int submitting, called_inside;

static void cb_outside(void *arg, const struct h2_response *resp)
{
    called_inside |= submitting;
    cb(arg, resp);
}

static int refuse_all(const struct sockaddr *sa)
{
    (void)sa;
    return 1;
}

/* A caller that tries again when its request fails: the pool being freed must refuse it. */
static struct h2_pool *again_pool;
static int again_rc = 1;

static void cb_again(void *arg, const struct h2_response *resp)
{
    cb(arg, resp);
    if (again_rc == 1)
        again_rc = h2_pool_submit(again_pool, "GET", "/again", NULL, 0, NULL, 0, cb, arg);
}

/* Start the emulator with extra args; its port, or -1. */
static int start_server(const char *extra, pid_t *pid)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "exec /usr/bin/python3 tests/emulators/h2server.py --cert %s/cert.pem --key "
             "%s/key.pem --lifetime 60 %s",
             dir, dir, extra);
    return emulator_start(cmd, pid);
}

static struct h2_pool *pool(const char *host, int port, const char *ca, double timeout,
                            size_t max_queue)
{
    char err[256], cafile[300];
    snprintf(cafile, sizeof cafile, "%s/%s", dir, ca);
    struct h2_pool_options o = {
        .host = host, .port = port, .ca_file = cafile, .timeout = timeout, .max_queue = max_queue};
    struct h2_pool *p = h2_pool_new(loop, &o, err, sizeof err);
    if (!p)
        printf("# h2_pool_new: %s\n", err);
    return p;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    log_set_level(LOG_LEVEL_ERROR);
    if (!mkdtemp(dir))
        return 1;
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 "
             "-keyout %s/key.pem -out %s/cert.pem 2>/dev/null && "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-subj /CN=other -keyout %s/other.key -out %s/other.pem 2>/dev/null",
             dir, dir, dir, dir);
    if (system(cmd) != 0) {
        printf("Bail out! openssl could not make the test certificates\n");
        return 1;
    }
    loop = ev_default_loop(0);
    pid_t pid;
    int port = start_server("--max-streams 5", &pid);
    ok(port > 0, "emulator listening");

    struct h2_pool *p = pool("127.0.0.1", port, "cert.pem", 5, 0);
    ok(p != NULL, "pool made");
    struct result r[40];
    memset(r, 0, sizeof r);
    struct h2_header hs[] = {{"apns-topic", "org.example.app"},
                             {"content-type", "application/json"}};
    is_int(h2_pool_submit(p, "POST", "/3/device/abc", hs, 2, "{\"aps\":{}}", 10, cb, &r[0]), 0,
           "request queued");
    wait_all(r, 1, 5);
    is_int(r[0].status, 200, "answered 200");
    ok(strstr(r[0].body, "\"path\": \"/3/device/abc\"") &&
           strstr(r[0].body, "\"body\": \"{\\\"aps\\\":{}}\"") &&
           strstr(r[0].body, "\"apns-topic\": \"org.example.app\"") &&
           strstr(r[0].body, "\"content-length\": \"10\""),
       "the server saw the path, the headers, the body and its length");
    is_int((int)h2_pool_connections(p), 1, "one connection open");

    memset(r, 0, sizeof r);
    h2_pool_submit(p, "POST", "/status/410/x", NULL, 0, NULL, 0, cb, &r[0]);
    wait_all(r, 1, 5);
    is_int(r[0].status, 410, "a 410 comes back as such");
    ok(r[0].error[0] == '\0', "not as an error");

    memset(r, 0, sizeof r);
    for (int i = 0; i < 40; i++)
        h2_pool_submit(p, "GET", "/many", NULL, 0, NULL, 0, cb, &r[i]);
    ok(h2_pool_queued(p) + h2_pool_in_flight(p) == 40, "40 requests queued or in flight");
    ok(h2_pool_in_flight(p) <= 5, "no more in flight than the server's 5 streams");
    wait_all(r, 40, 10);
    int all = 1;
    for (int i = 0; i < 40; i++)
        all &= r[i].status == 200;
    ok(all, "all 40 answered");
    is_int((int)h2_pool_connections(p), 1, "on the one connection");
    h2_pool_free(p);

    /* the deadline */
    p = pool("127.0.0.1", port, "cert.pem", 0.3, 0);
    memset(r, 0, sizeof r);
    h2_pool_submit(p, "GET", "/delay/2000/x", NULL, 0, NULL, 0, cb, &r[0]);
    h2_pool_submit(p, "GET", "/fast", NULL, 0, NULL, 0, cb, &r[1]);
    wait_all(r, 2, 5);
    is_str(r[0].error, "timeout", "a request unanswered by its deadline fails with timeout");
    is_int(r[1].status, 200, "the other stream is unaffected");
    h2_pool_free(p);

    /* shutdown with requests pending */
    p = pool("127.0.0.1", port, "cert.pem", 5, 2);
    memset(r, 0, sizeof r);
    is_int(h2_pool_submit(p, "GET", "/a", NULL, 0, NULL, 0, cb, &r[0]), 0, "queue: 1");
    is_int(h2_pool_submit(p, "GET", "/b", NULL, 0, NULL, 0, cb, &r[1]), 0, "queue: 2");
    is_int(h2_pool_submit(p, "GET", "/c", NULL, 0, NULL, 0, cb, &r[2]), -1,
           "a full queue refuses at once");
    h2_pool_free(p);
    ok(r[0].done && r[1].done && !r[2].done, "freeing the pool reports what was queued");
    is_str(r[0].error, "shut down", "as shut down");
    p = pool("127.0.0.1", port, "cert.pem", 30, 0);
    memset(r, 0, sizeof r);
    h2_pool_submit(p, "GET", "/delay/20000/x", NULL, 0, NULL, 0, cb, &r[0]);
    for (ev_tstamp end = ev_time() + 10; h2_pool_in_flight(p) == 0 && ev_time() < end;) {
        ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT);
        usleep(1000);
    }
    is_int((int)h2_pool_in_flight(p), 1, "a request on its stream, unanswered");
    h2_pool_free(p);
    ok(r[0].done && strcmp(r[0].error, "shut down") == 0,
       "freeing the pool reports it as shut down too (%s)", r[0].error);
    emulator_stop(pid);

    /* GOAWAY after 3 requests: the rest go on a new connection */
    port = start_server("--goaway-after 3", &pid);
    p = pool("127.0.0.1", port, "cert.pem", 5, 0);
    memset(r, 0, sizeof r);
    for (int i = 0; i < 10; i++)
        h2_pool_submit(p, "GET", "/g", NULL, 0, NULL, 0, cb, &r[i]);
    wait_all(r, 10, 10);
    int ok200 = 0, lost = 0;
    for (int i = 0; i < 10; i++) {
        ok200 += r[i].status == 200;
        lost += strcmp(r[i].error, "connection lost") == 0;
    }
    is_int(ok200 + lost, 10, "every request reported");
    ok(ok200 >= 9, "GOAWAY: the refused requests were sent again and answered (%d of 10)", ok200);
    h2_pool_free(p);
    emulator_stop(pid);

    /* a server that advertises one stream: a burst at the fresh connection waits for its
     * SETTINGS instead of being refused (RFC 9113 §5.1.2) */
    port = start_server("--max-streams 1", &pid);
    p = pool("127.0.0.1", port, "cert.pem", 5, 0);
    memset(r, 0, sizeof r);
    uint64_t refused0 = metrics_values[METRICS_PUSH_STREAMS_REFUSED];
    for (int i = 0; i < 6; i++)
        h2_pool_submit(p, "GET", "/delay/50/one", NULL, 0, NULL, 0, cb, &r[i]);
    size_t most = 0;
    for (ev_tstamp end = ev_time() + 10; ev_time() < end;) {
        size_t done = 0;
        for (int i = 0; i < 6; i++)
            done += r[i].done;
        if (h2_pool_in_flight(p) > most)
            most = h2_pool_in_flight(p);
        if (done == 6)
            break;
        ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT);
        usleep(1000);
    }
    is_int((int)most, 1, "never more than one stream in flight, before its SETTINGS or after");
    all = 1;
    for (int i = 0; i < 6; i++)
        all &= r[i].status == 200;
    ok(all, "all 6 answered");
    is_int((int)(metrics_values[METRICS_PUSH_STREAMS_REFUSED] - refused0), 0,
           "none refused over the server's limit");
    h2_pool_free(p);
    emulator_stop(pid);

    /* streams refused with REFUSED_STREAM (not processed, RFC 9113 §8.7) go again on the
     * connection; one refused every time fails once the server refused it 10 times */
    port = start_server("--refuse-first 2", &pid);
    p = pool("127.0.0.1", port, "cert.pem", 5, 0);
    memset(r, 0, sizeof r);
    refused0 = metrics_values[METRICS_PUSH_STREAMS_REFUSED];
    h2_pool_submit(p, "GET", "/refused", NULL, 0, NULL, 0, cb, &r[0]);
    wait_all(r, 1, 5);
    is_int(r[0].status, 200, "a request refused twice is answered on its third stream");
    is_int((int)(metrics_values[METRICS_PUSH_STREAMS_REFUSED] - refused0), 2,
           "push:streams_refused counts the two refusals");
    is_int((int)h2_pool_connections(p), 1, "on the same connection");
    h2_pool_free(p);
    emulator_stop(pid);
    port = start_server("--refuse-first 1000", &pid);
    p = pool("127.0.0.1", port, "cert.pem", 5, 0);
    memset(r, 0, sizeof r);
    h2_pool_submit(p, "GET", "/never", NULL, 0, NULL, 0, cb, &r[0]);
    wait_all(r, 1, 6);
    is_str(r[0].error, "refused by the server",
           "a request the server always refuses fails, before its deadline");
    h2_pool_free(p);
    emulator_stop(pid);

    /* an untrusted certificate, a host name */
    port = start_server("", &pid);
    p = pool("127.0.0.1", port, "other.pem", 5, 0);
    memset(r, 0, sizeof r);
    h2_pool_submit(p, "GET", "/x", NULL, 0, NULL, 0, cb, &r[0]);
    wait_all(r, 1, 5);
    ok(r[0].status == 0 && strstr(r[0].error, "certificate not trusted"),
       "a server the CA did not sign: refused (%s)", r[0].error);
    h2_pool_free(p);
    p = pool("localhost", port, "cert.pem", 5, 0);
    memset(r, 0, sizeof r);
    h2_pool_submit(p, "GET", "/named", NULL, 0, NULL, 0, cb, &r[0]);
    wait_all(r, 1, 5);
    is_int(r[0].status, 200, "a host name (resolved on a thread) works");
    ok(strstr(r[0].body, "\"localhost:"), "with :authority naming it");
    h2_pool_free(p);

    /* a pool freed while its lookup is stuck (a tenant's credentials changed, a reload): the
     * free returns at once, the loop never waits for the resolver thread; the lookup,
     * orphaned, finishes later and frees itself without touching the freed pool (ASan) */
    lookup_getaddrinfo = held_getaddrinfo;
    p = pool("localhost", port, "cert.pem", 5, 0);
    memset(r, 0, sizeof r);
    h2_pool_submit(p, "GET", "/stuck", NULL, 0, NULL, 0, cb, &r[0]);
    is_int(gate_wait(&gate_entered, 1, 5), 1, "the lookup started and is held");
    pthread_t watchdog;
    pthread_create(&watchdog, NULL, gate_watchdog, NULL);
    ev_tstamp t0 = ev_time();
    h2_pool_free(p);
    double took = ev_time() - t0;
    ok(took < 0.5, "freeing the pool returns at once while its lookup is stuck (%.3f s)", took);
    pthread_mutex_lock(&gate_mu);
    int left = gate_left;
    pthread_mutex_unlock(&gate_mu);
    is_int(left, 0, "the lookup was still stuck when the free returned");
    ok(r[0].done && strcmp(r[0].error, "shut down") == 0,
       "the request waiting for it was reported shut down (%s)", r[0].error);
    r[0].done = 0;
    gate_set_open();
    is_int(gate_wait(&gate_left, 1, 5), 1, "the lookup finished after the pool was gone");
    for (ev_tstamp end = ev_time() + 5; lookups_alive > 0 && ev_time() < end;) {
        ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT);
        usleep(1000);
    }
    is_int(lookups_alive, 0, "the orphaned lookup freed itself");
    ev_run(loop, EVRUN_NOWAIT);
    ok(!r[0].done, "its answer went nowhere: the request was not reported again");
    pthread_join(watchdog, NULL);
    lookup_getaddrinfo = getaddrinfo;
    emulator_stop(pid);

    /* a connection that fails before it starts (its address refused): the request fails, but
     * from the loop, never inside h2_pool_submit (its caller may not be ready for it) */
    {
        char err[256], cafile[300];
        snprintf(cafile, sizeof cafile, "%s/cert.pem", dir);
        struct h2_pool_options o = {.host = "127.0.0.1",
                                    .port = port,
                                    .ca_file = cafile,
                                    .timeout = 5,
                                    .addr_refused = refuse_all};
        p = h2_pool_new(loop, &o, err, sizeof err);
        memset(r, 0, sizeof r);
        submitting = 1;
        is_int(h2_pool_submit(p, "GET", "/x", NULL, 0, NULL, 0, cb_outside, &r[0]), 0,
               "a request to a refused address is queued");
        submitting = 0;
        ok(!called_inside && !r[0].done, "its callback did not run inside h2_pool_submit");
        wait_all(r, 1, 5);
        ok(r[0].done && strstr(r[0].error, "refused:"), "it runs from the loop: %s", r[0].error);
        h2_pool_free(p);
    }

    /* a callback that submits again while the pool is being freed: refused, so nothing is
     * left on a freed pool (a connection opened for it outlived the pool: its timer fired
     * in freed memory) */
    p = pool("127.0.0.1", port, "cert.pem", 5, 0);
    again_pool = p;
    memset(r, 0, sizeof r);
    h2_pool_submit(p, "GET", "/x", NULL, 0, NULL, 0, cb_again, &r[0]);
    h2_pool_free(p);
    is_int(again_rc, -1, "a request submitted by a callback of h2_pool_free is refused");
    ok(r[0].done && strcmp(r[0].error, "shut down") == 0,
       "the first one was reported shut down (%s)", r[0].error);
    for (ev_tstamp end = ev_time() + 6; ev_time() < end;) { /* a connection's 5 s deadline */
        ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT);
        usleep(5000);
    }

    /* nobody listening */
    p = pool("127.0.0.1", port, "cert.pem", 5, 0);
    memset(r, 0, sizeof r);
    h2_pool_submit(p, "GET", "/x", NULL, 0, NULL, 0, cb, &r[0]);
    wait_all(r, 1, 5);
    ok(r[0].status == 0 && strstr(r[0].error, "connect failed"), "connection refused: %s",
       r[0].error);
    h2_pool_free(p);

    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
    return done_testing();
}
