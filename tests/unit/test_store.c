/* The async store on SQLite: writes committed in batches and reported on the loop,
 * subscriber lookups answered on the loop, the OpenSIPS tables, loading and purging. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store.c"
#include "store_sqlite_migrations.h"
#include "tap.h"

static struct ev_loop *loop;
static int commits, lookups, found_flag;
static char found_ha1[65];

static void on_commit(void *arg, int ok)
{
    commits += ok;
    if (commits == *(int *)arg)
        ev_break(loop, EVBREAK_ALL);
}

static void on_subscriber(void *arg, int found, const struct store_subscriber *sub)
{
    lookups++;
    found_flag = found;
    snprintf(found_ha1, sizeof found_ha1, "%s", sub ? sub->ha1 : "");
    ev_break(loop, EVBREAK_ALL);
}

static void on_row(void *arg, const struct store_binding *row)
{
    int *n = arg;
    (*n)++;
    if (row->contact_id == 2)
        printf("# row 2: %s expires %lld q %.1f\n", row->contact, (long long)row->expires, row->q);
}

static int count_rows(const char *path, const char *sql)
{
    sqlite3 *db;
    sqlite3_open(path, &db);
    sqlite3_stmt *st;
    int n = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* store_call: a write that fails is answered -1 at once (a MESSAGE gets 500, never 202);
 * the other writes of its batch are committed on the next attempt */
static int call_rc[3];
static int failing_work(void *db, const struct store_backend *be, void *arg, char *err,
                        size_t errlen)
{
    (void)db;
    (void)be;
    (void)arg;
    snprintf(err, errlen, "disk full (test)");
    return -1;
}
static int fine_work(void *db, const struct store_backend *be, void *arg, char *err, size_t errlen)
{
    (void)arg;
    return be->messages_count(db, err, errlen) >= 0 ? 7 : -2;
}
static void call_done(void *arg, int rc)
{
    int *slot = arg;
    *slot = rc;
    if (call_rc[0] && call_rc[1])
        ev_break(loop, EVBREAK_ALL);
}

/* A backend whose commit always fails (a disk that stays full): the bounded retry. */
static struct store_backend failing_be;
static int failing_commits;
static int failing_commit(void *db, char *err, size_t errlen)
{
    (void)db;
    failing_commits++;
    snprintf(err, errlen, "disk I/O error (test)");
    return -1;
}
static int settled, settled_ok[3], settled_rc;
static void on_settled(void *arg, int ok)
{
    *(int *)arg = ok;
    if (++settled == 3)
        ev_break(loop, EVBREAK_ALL);
}
static void on_settled_poll(void *arg, int ok)
{
    *(int *)arg = ok;
}
static void ignore_result(void *arg, int rc)
{
    (void)arg;
    (void)rc;
}
static void on_settled_call(void *arg, int rc)
{
    settled_rc = rc;
    if (++settled == 3)
        ev_break(loop, EVBREAK_ALL);
}

/* A bug of the kind issue 12 found: a statement stepped to a row and never reset. */
static sqlite3_stmt *leaked;
static int leaky_work(void *db, const struct store_backend *be, void *arg, char *err, size_t errlen)
{
    sqlite3 *conn = *(sqlite3 **)db; /* struct sqlite_db starts with its connection */
    if (!leaked &&
        sqlite3_prepare_v2(conn, "SELECT username FROM subscriber", -1, &leaked, NULL) != SQLITE_OK)
        return -1;
    return sqlite3_step(leaked) == SQLITE_ROW ? 5 : -1;
}
static int other_write(const char *path, const char *sql)
{
    sqlite3 *db;
    sqlite3_open(path, &db);
    sqlite3_busy_timeout(db, 2000);
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
}

static void timeout_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    ev_break(l, EVBREAK_ALL);
}

int main(void)
{
    char dir[] = "/tmp/sipwake-store-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    struct config cfg;
    char err[512];
    config_defaults(&cfg);
    free(cfg.store_path);
    cfg.store_path = xasprintf("%s/sub/test.db", dir);

    struct store *s;
    ok(store_open(&cfg, &s, err, sizeof err) == 0, "open creates the directory and migrates: %s",
       err);
    is_int(count_rows(cfg.store_path, "select table_version from version where "
                                      "table_name='location'"),
           1013, "location table version 1013");
    is_int(count_rows(cfg.store_path, "select count(*) from sipwake_migrations"),
           store_sqlite_migrations_count, "migrations recorded");

    struct store_subscriber sub = {0};
    snprintf(sub.username, sizeof sub.username, "alice");
    snprintf(sub.domain, sizeof sub.domain, "example.com");
    snprintf(sub.ha1, sizeof sub.ha1, "0123456789abcdef0123456789abcdef");
    ok(store_user_put(s, &sub, err, sizeof err) == 0, "user put (synchronous)");

    loop = ev_loop_new(EVFLAG_AUTO);
    ev_timer guard;
    ev_timer_init(&guard, timeout_cb, 5, 0);
    ev_timer_start(loop, &guard);
    store_start(s, loop);

    time_t now = time(NULL);
    int want = 3;
    for (uint64_t id = 1; id <= 3; id++) {
        char contact[64];
        snprintf(contact, sizeof contact, "sip:u%llu@192.0.2.1", (unsigned long long)id);
        struct store_binding b = {
            .contact_id = id,
            .username = "alice",
            .domain = "example.com",
            .contact = contact,
            .expires = id == 3 ? now - 5 : now + 600,
            .q = id == 2 ? 0.5 : -1,
            .callid = "c1",
            .cseq = 1,
            .last_modified = now,
        };
        store_save_binding(s, &b, on_commit, &want);
    }
    ev_run(loop, 0);
    is_int(commits, 3, "three writes reported committed on the loop");
    is_int(count_rows(cfg.store_path, "select count(*) from location"), 3,
           "and they are in the database");

    store_get_subscriber(s, "alice", "example.com", on_subscriber, NULL);
    ev_run(loop, 0);
    is_int(lookups, 1, "subscriber lookup answered on the loop");
    is_int(found_flag, 1, "found");
    is_str(found_ha1, "0123456789abcdef0123456789abcdef", "with its ha1");
    store_get_subscriber(s, "bob", "example.com", on_subscriber, NULL);
    ev_run(loop, 0);
    is_int(found_flag, 0, "unknown subscriber: not found");

    /* a call whose write fails: answered -1, while the binding saved with it is committed */
    struct store_binding b9 = {.contact_id = 9,
                               .username = "carol",
                               .domain = "example.com",
                               .contact = "sip:c@192.0.2.9",
                               .expires = now + 600,
                               .q = -1,
                               .callid = "c9",
                               .cseq = 1,
                               .last_modified = now};
    call_rc[0] = call_rc[1] = 0;
    store_save_binding(s, &b9, NULL, NULL);
    store_call(s, STORE_WRITE, failing_work, call_done, &call_rc[0]);
    store_call(s, STORE_WRITE | STORE_NOW, fine_work, call_done, &call_rc[1]);
    ev_run(loop, 0);
    is_int(call_rc[0], -1, "a write call that fails is answered -1, not retried");
    is_int(call_rc[1], -1, "so is a call of the same batch: nothing it wrote was committed");
    is_int(count_rows(cfg.store_path, "select count(*) from location where contact_id=9"), 1,
           "and the binding in the same batch committed on the next attempt");

    want = 4;
    store_delete_binding(s, 1, on_commit, &want);
    ev_run(loop, 0);
    is_int(count_rows(cfg.store_path, "select count(*) from location where contact_id=1"), 0,
           "delete committed");
    store_close(s);

    ok(store_open(&cfg, &s, err, sizeof err) == 0, "reopen (migrations not applied twice)");
    int rows = 0;
    long purged = 0;
    ok(store_load_bindings(s, time(NULL), on_row, &rows, &purged, err, sizeof err) == 0, "load");
    is_int(rows, 2, "two unexpired bindings loaded");
    is_int(purged, 1, "one expired binding purged");
    store_close(s);

    /* a statement left stepped by a bug, then a write from another connection (the CLI):
     * the store finds the statement after the batch, resets it, and keeps committing */
    ok(store_open(&cfg, &s, err, sizeof err) == 0, "reopen for the statement check");
    store_start(s, loop);
    call_rc[0] = call_rc[1] = 0;
    store_call(s, STORE_WRITE | STORE_NOW, leaky_work, call_done, &call_rc[0]);
    store_call(s, STORE_NOW, fine_work, call_done, &call_rc[1]);
    ev_run(loop, 0);
    is_int(call_rc[0], 5, "a work function leaves a statement on a row");
    ok(sqlite3_stmt_busy(leaked) == 0, "the store reset it after the batch");
    is_int(other_write(cfg.store_path, "INSERT INTO subscriber (username, domain, ha1) VALUES "
                                       "('dave', 'example.com', 'x')"),
           SQLITE_OK, "another connection writes");
    want = commits + 1;
    struct store_binding b10 = b9;
    b10.contact_id = 10;
    store_save_binding(s, &b10, on_commit, &want);
    ev_run(loop, 0);
    is_int(count_rows(cfg.store_path, "select count(*) from location where contact_id=10"), 1,
           "the next write commits (no \"database is locked\")");
    store_get_subscriber(s, "dave", "example.com", on_subscriber, NULL);
    ev_run(loop, 0);
    is_int(found_flag, 1, "and a read sees the other connection's row");
    ok(metrics_values[METRICS_STORE_LEFT_BUSY] >= 1, "counted in store:statements_left_busy");
    sqlite3_finalize(leaked);

    /* store_poll takes up a commit's completion without the loop turning (the UDP transport
     * calls it between the datagrams of a read batch): nothing to take, 0 at the cost of a
     * load; once the worker has handed the sync over, 1 and the sync's waiter answered */
    is_int(store_poll(s), 0, "store_poll with nothing finished: 0");
    is_int(store_poll(NULL), 0, "store_poll(NULL): 0");
    int polled = -1, took_up = 0;
    uint64_t pmark = store_mark(s);
    struct store_binding b13 = b9;
    b13.contact_id = 13;
    store_save_binding(s, &b13, NULL, NULL);
    store_sync(s, pmark, on_settled_poll, &polled);
    store_call(s, STORE_WRITE | STORE_NOW, fine_work, ignore_result, NULL); /* hand over now */
    for (int i = 0; i < 1000 && !took_up; i++) { /* up to 10 s, not the loop */
        took_up = store_poll(s);
        if (!took_up)
            usleep(10000);
    }
    is_int(took_up, 1, "store_poll ran the completions once the worker handed them over");
    is_int(polled, 1, "the sync's waiter was answered by it, committed");
    is_int(count_rows(cfg.store_path, "select count(*) from location where contact_id=13"), 1,
           "and the row is in the database");
    is_int(store_poll(s), 0, "then nothing is left to take");
    store_close(s);

    /* checkpoints run beside the writer (the commit a 200 waits for holds no fsync): once the
     * WAL passes SQLITE_WAL_PAGES_CHECKPOINT pages, the rows reach the database file while the
     * store stays open */
    ok(store_open(&cfg, &s, err, sizeof err) == 0, "reopen for the checkpoint thread");
    store_start(s, loop);
    struct stat st0;
    stat(cfg.store_path, &st0);
    char big[400];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    for (int round = 0; round < 12; round++) {
        commits = 0;
        want = 1000;
        for (int i = 0; i < 1000; i++) {
            struct store_binding bb = b9;
            bb.contact_id = 1000 + (uint64_t)round * 1000 + (uint64_t)i;
            bb.user_agent = big;
            store_save_binding(s, &bb, on_commit, &want);
        }
        ev_run(loop, 0);
    }
    struct stat stw;
    char walp[600];
    snprintf(walp, sizeof walp, "%s-wal", cfg.store_path);
    stat(walp, &stw);
    printf("# wal %lld commits %d\n", (long long)stw.st_size, commits);
    struct stat st1 = st0;
    for (int i = 0; i < 500 && st1.st_size < st0.st_size + 4 * 1024 * 1024; i++) {
        usleep(10000);
        stat(cfg.store_path, &st1);
    }
    ok(st1.st_size >= st0.st_size + 4 * 1024 * 1024,
       "12,000 rows reached the database file while the store is open (%lld -> %lld bytes)",
       (long long)st0.st_size, (long long)st1.st_size);
    store_close(s);

    /* a commit that always fails: bounded retries, then every waiter is told */
    ok(store_open(&cfg, &s, err, sizeof err) == 0, "reopen with a failing commit");
    failing_be = *s->be;
    failing_be.commit = failing_commit;
    s->be = &failing_be;
    store_start(s, loop);
    uint64_t errors_before = metrics_values[METRICS_STORE_FAILED_WRITES];
    uint64_t mark = store_mark(s);
    struct store_binding b11 = b9;
    b11.contact_id = 11;
    settled_ok[0] = settled_ok[1] = -1;
    store_save_binding(s, &b11, on_settled, &settled_ok[0]);
    store_call(s, STORE_WRITE, fine_work, on_settled_call, NULL);
    store_sync(s, mark, on_settled, &settled_ok[1]);
    uint64_t t0 = util_mono_ms();
    ev_timer_stop(loop, &guard);
    ev_timer_set(&guard, 15, 0);
    ev_timer_start(loop, &guard);
    ev_run(loop, 0);
    uint64_t took = util_mono_ms() - t0;
    is_int(settled, 3, "every waiter was answered");
    is_int(settled_ok[0], 0, "the binding's write: given up (ok 0)");
    is_int(settled_rc, -1, "the write call: -1");
    is_int(settled_ok[1], 0, "the sync: not stored");
    is_int(failing_commits, STORE_WRITE_ATTEMPTS, "after STORE_WRITE_ATTEMPTS attempts");
    ok(took < STORE_WRITE_GIVE_UP_MS + 1000, "within the bound (%llu ms)",
       (unsigned long long)took);
    ok(metrics_values[METRICS_STORE_FAILED_WRITES] > errors_before,
       "counted in store:failed_writes");
    is_int(count_rows(cfg.store_path, "select count(*) from location where contact_id=11"), 0,
           "nothing of it is in the database");
    /* stopping with a write queued that can never commit: store_close returns */
    struct store_binding b12 = b9;
    b12.contact_id = 12;
    store_save_binding(s, &b12, NULL, NULL);
    t0 = util_mono_ms();
    store_close(s);
    took = util_mono_ms() - t0;
    ok(took < STORE_WRITE_GIVE_UP_MS + 1000, "store_close returns within the bound (%llu ms)",
       (unsigned long long)took);
    ev_loop_destroy(loop);

    free(cfg.store_path);
    cfg.store_path = xstrdup("/proc/forbidden/x.db");
    ok(store_open(&cfg, &s, err, sizeof err) < 0 && strstr(err, "/proc/forbidden"),
       "an unusable path is a clear error: %s", err);
    config_free(&cfg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return done_testing();
}
