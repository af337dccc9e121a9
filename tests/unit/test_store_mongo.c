/* What only the MongoDB backend does, through the real mongo-c-driver, against
 * tests/emulators/mongo.py (test_store_backends.c checks what both backends share): the schema
 * applied once, also by processes opening one database at the same time; a batch's bindings
 * as one bulk write; a push-log row written twice kept once; the write concern it sends (w,
 * and the connection string's wtimeoutMS and journal); a write the server refuses; through the
 * store's worker, a batch in which one write fails while another stands (segments); a server
 * that is not there, one that never answers, and a bad connection string. */
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "emulator.h"
#include "store_checks.h"
#include "store_mongo.c"
#include "tap.h"

static char uri[256];

static struct mongo_db *open_db(const char *u, const char *w, char *err, size_t errlen)
{
    struct config cfg;
    config_defaults(&cfg);
    free(cfg.store_uri);
    cfg.store_uri = xstrdup(u);
    if (w) {
        free(cfg.store_write_concern);
        cfg.store_write_concern = xstrdup(w);
    }
    struct mongo_db *m = mongo_open(&cfg, err, errlen);
    config_free(&cfg);
    return m;
}

/* How many lines of the emulator's log name both strings. */
static int log_lines(const char *path, const char *a, const char *b)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[65536];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, a) && (!b || strstr(line, b));
    fclose(f);
    return n;
}

static struct ev_loop *loop;
static int call_rc = -2, bind_ok = -2;

static int put_work(void *db, const struct store_backend *backend, void *arg, char *err,
                    size_t errlen)
{
    static const char *const devs[] = {"contact:1"};
    struct store_message msg = {.aor = "sip:seg@x",
                                .call_id = "seg-1",
                                .cseq = 1,
                                .from_hdr = "<sip:a@x>;tag=1",
                                .to_hdr = "<sip:seg@x>",
                                .received_ms = 1,
                                .expires_ms = util_wall_ms() + 60000,
                                .new_devices = 1};
    int64_t id;
    (void)arg;
    return backend->message_put(db, &msg, devs, 1, 10, &id, err, errlen);
}

static void put_done(void *arg, int rc)
{
    (void)arg;
    call_rc = rc;
    if (bind_ok != -2)
        ev_break(loop, EVBREAK_ALL);
}

static void bind_done(void *arg, int ok_)
{
    (void)arg;
    bind_ok = ok_;
    if (call_rc != -2)
        ev_break(loop, EVBREAK_ALL);
}

static int admin_command(struct mongo_db *m, const char *json);

static void guard_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(l, EVBREAK_ALL);
}

/* The store (store.c's worker) on MongoDB: a MESSAGE's call and a binding write queued in one
 * batch while every update fails: the call is answered 1 (stored: it is), the binding 0. */
static int store_level(int port)
{
    struct config cfg;
    char err[512];
    config_defaults(&cfg);
    free(cfg.store_backend);
    cfg.store_backend = xstrdup("mongodb");
    free(cfg.store_uri);
    cfg.store_uri = xasprintf("mongodb://127.0.0.1:%d/segments", port);
    struct store *s;
    if (store_open(&cfg, &s, err, sizeof err) < 0) {
        printf("# %s\n", err);
        config_free(&cfg);
        return 0;
    }
    struct mongo_db *probe = open_db(cfg.store_uri, NULL, err, sizeof err);
    admin_command(probe, "{\"configureFailPoint\": \"failCommand\", \"mode\": \"alwaysOn\", "
                         "\"data\": {\"failCommands\": [\"update\"], \"errorCode\": 91}}");
    loop = ev_loop_new(EVFLAG_AUTO);
    store_start(s, loop);
    store_call(s, STORE_WRITE, put_work, put_done, NULL);
    struct store_binding b = binding(77, "seg", time(NULL) + 600);
    store_save_binding(s, &b, bind_done, NULL);
    ev_timer guard; /* a bound, should the answers never come */
    ev_timer_init(&guard, guard_cb, 30, 0);
    ev_timer_start(loop, &guard);
    ev_run(loop, 0);
    admin_command(probe, "{\"configureFailPoint\": \"failCommand\", \"mode\": \"off\"}");
    bson_t *q = BCON_NEW("call_id", BCON_UTF8("seg-1"));
    bson_t d;
    int stored = find_one(probe, "sipwake_messages", q, NULL, &d, "reading", err, sizeof err);
    if (stored == 1)
        bson_destroy(&d);
    bson_destroy(q);
    loaded_n = 0;
    load(probe, NULL);
    int bound = has(77);
    printf("# call rc %d, binding ok %d, message stored %d, binding stored %d\n", call_rc, bind_ok,
           stored, bound);
    mongo_close(probe);
    store_close(s);
    ev_loop_destroy(loop);
    config_free(&cfg);
    return call_rc == 1 && bind_ok == 0 && stored == 1 && !bound;
}

/* Run a command on the admin database (configureFailPoint runs only there). */
static int admin_command(struct mongo_db *m, const char *json)
{
    bson_error_t e;
    bson_t *cmd = bson_new_from_json((const uint8_t *)json, -1, &e);
    bson_t reply;
    bool ok = cmd && mongoc_client_command_simple(m->client, "admin", cmd, NULL, &reply, &e);
    if (!ok)
        printf("# %s\n", e.message);
    if (cmd) {
        bson_destroy(cmd);
        bson_destroy(&reply);
    }
    return ok ? 0 : -1;
}

int main(void)
{
    be = &store_mongo_backend;
    char dir[] = "/tmp/sipwake-mongo-XXXXXX";
    if (!mkdtemp(dir)) {
        printf("Bail out! mkdtemp\n");
        return 1;
    };
    char logpath[300], cmd[600];
    snprintf(logpath, sizeof logpath, "%s/mongo.log", dir);
    snprintf(cmd, sizeof cmd, "exec /usr/bin/python3 tests/emulators/mongo.py --port 0 --log %s",
             logpath);
    pid_t pid;
    int port = emulator_start(cmd, &pid);
    if (port <= 0) {
        printf("Bail out! the MongoDB emulator did not start\n");
        return 1;
    };
    snprintf(uri, sizeof uri, "mongodb://127.0.0.1:%d/sipwake_test", port);
    char err[512] = "";

    /* schema */
    struct mongo_db *m = open_db(uri, NULL, err, sizeof err);
    ok(m != NULL, "opens against the emulator (%s)", m ? "ok" : err);
    if (!m) {
        printf("Bail out! cannot go on\n");
        return 1;
    };
    ok(log_lines(logpath, "\"createIndexes\"", "\"subscriber\"") == 1,
       "the migration's createIndexes ran once");
    mongo_close(m);
    m = open_db(uri, NULL, err, sizeof err);
    ok(m != NULL && log_lines(logpath, "\"createIndexes\"", "\"subscriber\"") == 1,
       "a second open does not run a recorded migration again");

    /* bindings in a batch: one bulk write, in order (the conformance suite,
     * test_store_backends.c, checks what the backends share) */
    time_t now = time(NULL);
    struct store_binding a = binding(1, "alice", now + 3600), b = binding(2, "bob", now + 3600);
    mongo_begin(m, err, sizeof err);
    mongo_save_binding(m, &a, err, sizeof err);
    mongo_save_binding(m, &b, err, sizeof err);
    mongo_delete_binding(m, 1, err, sizeof err);
    int updates_before = log_lines(logpath, "\"update\"", "\"location\"");
    int deletes_before = log_lines(logpath, "\"delete\"", "\"location\"");
    ok(mongo_commit(m, err, sizeof err) == 0, "commit (%s)", err);
    ok(log_lines(logpath, "\"update\"", "\"location\"") == updates_before + 1,
       "the batch's saves went as one update command");
    ok(log_lines(logpath, "\"delete\"", "\"location\"") == deletes_before + 1,
       "and its delete after them, as one delete command");
    ok(load(m, NULL) == 1 && has(2) && !has(1), "bob only");
    ok(log_lines(logpath, "\"majority\"", "\"location\"") >= 1,
       "writes ask for the majority's acknowledgement by default");

    /* a push-log row written again (its batch applied again after a failure) is kept once */
    struct store_push_log r1 = {.time_ms = 1000,
                                .tenant = "a",
                                .provider = "apns",
                                .kind = "call",
                                .call_id = "c1",
                                .outcome = "delivered",
                                .status = 200};
    ok(mongo_push_log_add(m, &r1, err, sizeof err) == 0 &&
           mongo_push_log_add(m, &r1, err, sizeof err) == 0 && push_rows(m, NULL, NULL, 0) == 0 &&
           strcmp(names_seen, "c1:1000,") == 0,
       "a push-log row added twice is kept once (%s)", names_seen);

    /* a write the server refuses: the batch fails with the server's error; applied again, it
     * is the same state (writes are idempotent) */
    ok(admin_command(m, "{\"configureFailPoint\": \"failCommand\", \"mode\": {\"times\": 1}, "
                        "\"data\": {\"failCommands\": [\"update\"], \"errorCode\": 91}}") == 0,
       "a fail point on the next update");
    struct store_binding f = binding(6, "frank", now + 3600);
    mongo_begin(m, err, sizeof err);
    mongo_save_binding(m, &f, err, sizeof err);
    err[0] = 0;
    ok(mongo_commit(m, err, sizeof err) < 0 && strstr(err, "writing bindings") &&
           strstr(err, "code 91"),
       "the commit fails with the server's code (%s)", err);
    mongo_begin(m, err, sizeof err);
    mongo_save_binding(m, &f, err, sizeof err);
    ok(mongo_commit(m, err, sizeof err) == 0 && load(m, NULL) == 2 && has(6),
       "applied again, it is stored once");
    mongo_close(m);

    /* w: 1 when the operator asks for it; the connection string's wtimeoutMS and journal kept */
    m = open_db(uri, "1", err, sizeof err);
    struct store_binding g = binding(7, "gina", now + 3600);
    mongo_save_binding(m, &g, err, sizeof err);
    ok(log_lines(logpath, "\"w\": 1", "\"location\"") >= 1, "write_concern 1 is sent as w: 1");
    mongo_close(m);
    ok(log_lines(logpath, "\"wtimeout\": 5000", "\"location\"") >= 1,
       "majority waits at most 5 s for the nodes when the string names no wtimeoutMS");
    char uri_wc[300];
    snprintf(uri_wc, sizeof uri_wc, "%s?wtimeoutMS=1500&journal=true", uri);
    m = open_db(uri_wc, NULL, err, sizeof err);
    struct store_binding h2 = binding(8, "hal", now + 3600);
    mongo_save_binding(m, &h2, err, sizeof err);
    mongo_close(m);
    ok(log_lines(logpath, "\"wtimeout\": 1500", "\"location\"") >= 1 &&
           log_lines(logpath, "\"j\": true", "\"location\"") >= 1,
       "the string's wtimeoutMS and journal go with w: majority");

    /* four processes opening a new database at once all start (the migration recorded once) */
    char uri_race[300];
    snprintf(uri_race, sizeof uri_race, "mongodb://127.0.0.1:%d/race", port);
    pid_t kids[4];
    for (int i = 0; i < 4; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            char e2[512];
            struct mongo_db *k = open_db(uri_race, NULL, e2, sizeof e2);
            if (!k)
                printf("# child %d: %s\n", i, e2);
            mongo_close(k);
            _exit(k ? 0 : 1);
        }
    }
    int all_started = 1;
    for (int i = 0; i < 4; i++) {
        int st = 0;
        waitpid(kids[i], &st, 0);
        all_started &= WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    ok(all_started, "four processes opening one new database at once all open it");

    /* through the store's worker: a MESSAGE stored while the batch's binding write fails is
     * answered stored (segments), not failed while it stands */
    ok(store_level(port), "a batch's failing binding write does not fail the call beside it");

    /* a server that never answers: given up after the connection timeout (2 s), not the
     * driver's 10 s */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in la = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t ll = sizeof la;
    bind(lfd, (struct sockaddr *)&la, sizeof la);
    listen(lfd, 16); /* never accepted: the handshake gets no answer */
    getsockname(lfd, (struct sockaddr *)&la, &ll);
    char uri_hung[128];
    snprintf(uri_hung, sizeof uri_hung, "mongodb://127.0.0.1:%d/x", ntohs(la.sin_port));
    double t0 = util_mono_ms();
    m = open_db(uri_hung, NULL, err, sizeof err);
    double took = util_mono_ms() - t0;
    ok(m == NULL && took < 6000, "a server that never answers: open fails in %.0f ms (%s)", took,
       err);
    close(lfd);

    /* a server that is not there: a clear error */
    emulator_stop(pid);
    m = open_db(uri, NULL, err, sizeof err);
    ok(m == NULL && strstr(err, "reaching the server"), "no server: open fails (%s)", err);
    m = open_db("http://127.0.0.1/", NULL, err, sizeof err);
    ok(m == NULL && strstr(err, "[store] uri"), "a bad connection string is refused (%s)", err);

    char rm[400];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    if (system(rm) != 0)
        printf("# could not remove %s\n", dir);
    return done_testing();
}
