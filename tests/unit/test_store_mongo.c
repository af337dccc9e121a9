/* The MongoDB backend through the real mongo-c-driver, against tests/emulators/mongo.py:
 * schema, bindings written in batches (one bulk write, the batch's order kept, a rollback
 * dropping what was not sent), subscribers, admin accounts, API tokens, the audit log, the
 * write concern it sends, and the errors it meets (a server that is not there, a command that
 * fails). */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "emulator.h"
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

static struct store_binding binding(uint64_t id, const char *user, time_t expires)
{
    struct store_binding b = {.contact_id = id,
                              .username = user,
                              .domain = "example.com",
                              .contact = "sip:phone@192.0.2.1:5060",
                              .received = NULL,
                              .expires = expires,
                              .q = 0.5,
                              .callid = "call-1",
                              .cseq = 7,
                              .last_modified = 1700000000,
                              .flags = 0,
                              .user_agent = "test",
                              .sip_instance = "<urn:uuid:00000000-0000-0000-0000-000000000001>"};
    return b;
}

static uint64_t loaded_ids[16];
static int loaded_n;
static char loaded_instance[128];
static double loaded_q;
static time_t loaded_modified;

static void on_binding(void *arg, const struct store_binding *b)
{
    (void)arg;
    if (loaded_n < 16)
        loaded_ids[loaded_n++] = b->contact_id;
    snprintf(loaded_instance, sizeof loaded_instance, "%s", b->sip_instance ? b->sip_instance : "");
    loaded_q = b->q;
    loaded_modified = b->last_modified;
}

static int load(struct mongo_db *m, long *purged)
{
    char err[512];
    loaded_n = 0;
    long p = 0;
    int rc = mongo_load_bindings(m, time(NULL), on_binding, NULL, &p, err, sizeof err);
    if (rc < 0)
        printf("# load: %s\n", err);
    if (purged)
        *purged = p;
    return rc < 0 ? -1 : loaded_n;
}

static int has(uint64_t id)
{
    for (int i = 0; i < loaded_n; i++)
        if (loaded_ids[i] == id)
            return 1;
    return 0;
}

static char names_seen[256];
static void on_push(void *arg, const struct store_push_log *r)
{
    (void)arg;
    snprintf(names_seen + strlen(names_seen), sizeof names_seen - strlen(names_seen), "%s:%ld,",
             r->call_id ? r->call_id : "-", (long)r->time_ms);
}

static int push_rows(struct mongo_db *m, const char *tenant, const char *reason, int64_t before)
{
    char err[512];
    names_seen[0] = 0;
    int rc =
        mongo_push_log_read(m, tenant, NULL, reason, before, 10, on_push, NULL, err, sizeof err);
    if (rc < 0)
        printf("# %s\n", err);
    return rc;
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

    /* w: 1 when the operator asks for it */
    m = open_db(uri, "1", err, sizeof err);
    struct store_binding g = binding(7, "gina", now + 3600);
    mongo_save_binding(m, &g, err, sizeof err);
    ok(log_lines(logpath, "\"w\": 1", "\"location\"") >= 1, "write_concern 1 is sent as w: 1");
    mongo_close(m);

    /* a server that is not there: a clear error, and quickly */
    emulator_stop(pid);
    double t0 = util_mono_ms();
    m = open_db(uri, NULL, err, sizeof err);
    ok(m == NULL && strstr(err, "reaching the server"), "no server: open fails (%s)", err);
    ok(util_mono_ms() - t0 < 15000, "within the selection timeout");
    m = open_db("http://127.0.0.1/", NULL, err, sizeof err);
    ok(m == NULL && strstr(err, "[store] uri"), "a bad connection string is refused (%s)", err);

    char rm[400];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    if (system(rm) != 0)
        printf("# could not remove %s\n", dir);
    return done_testing();
}
