/*
 * store_sqlite: the SQLite backend. WAL journal, synchronous=NORMAL (a commit survives a
 * process crash; a power cut may lose the last batch), prepared statements kept for the
 * life of the connection. Migrations from schemas/sqlite are applied in order at open and
 * recorded in sipwake_migrations.
 *
 * Only one thread at a time uses a connection: the store worker, or the caller of a
 * synchronous operation before the worker starts (or, for the CLI, without one).
 *
 * Every statement is reset (kept ones) or finalized (the others) on every path before the
 * function that stepped it returns: a statement left stepped to a row keeps its read
 * transaction, and with it a snapshot of the database. Once another connection (the CLI, the
 * admin) has written, that connection can no longer take the write lock (SQLITE_BUSY_SNAPSHOT,
 * "database is locked", which no busy timeout waits out) and it reads the old snapshot.
 * sqlite_settle checks this after every batch.
 *
 * Checkpoints (copying the WAL back into the database file, with its fsync) run on a thread of
 * their own with a connection of their own, not in the writer's commit as SQLite's automatic
 * checkpoint would: a REGISTER's 200 waits for its commit, and a checkpoint's fsync inside that
 * commit stalled every REGISTER behind it (at 10,000 REGISTER/s, seconds of retransmissions). A
 * passive checkpoint runs beside the writer. Should the WAL still grow past
 * SQLITE_WAL_PAGES_INLINE (checkpoints starved by a disk slower than the writes), the writer
 * checkpoints itself, as SQLite would, so the WAL stays bounded.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "log.h"
#include "store.h"
#include "store_sqlite_migrations.h"
#include "util.h"

/* WAL size (pages) that wakes the checkpointer: SQLite's own automatic threshold; and the size
 * at which the writer checkpoints itself. */
#define SQLITE_WAL_PAGES_CHECKPOINT 1000
#define SQLITE_WAL_PAGES_INLINE 16000

/* The checkpoint thread and its connection. */
struct sqlite_checkpointer {
    char *path;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int wanted, stop; /* under mu */
};

struct sqlite_db {
    sqlite3 *db;
    struct sqlite_checkpointer *ckpt; /* NULL until the first checkpoint is wanted */
    sqlite3_stmt *save;
    sqlite3_stmt *del;
    sqlite3_stmt *get_sub;
    sqlite3_stmt *begin, *commit; /* a batch's own: parsed once, not on every batch */
    sqlite3_stmt *push_log;       /* prepared on first use, like the message ones */
    sqlite3_stmt *msg_find, *msg_count, *msg_insert, *msg_counted, *msg_device;
    sqlite3_stmt *msg_read; /* a device's undelivered messages: read on every REGISTER */
};

static int sql_fail(sqlite3 *db, char *err, size_t errlen, const char *what)
{
    snprintf(err, errlen, "sqlite: %s: %s", what, sqlite3_errmsg(db));
    return -1;
}

static int exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "sqlite: %s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int migrate(sqlite3 *db, char *err, size_t errlen)
{
    if (exec(db,
             "CREATE TABLE IF NOT EXISTS sipwake_migrations (id INTEGER PRIMARY KEY, name TEXT "
             "NOT NULL, applied_at INTEGER NOT NULL)",
             err, errlen) < 0)
        return -1;
    for (int i = 0; i < store_sqlite_migrations_count; i++) {
        const struct store_sqlite_migration *m = &store_sqlite_migrations[i];
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(db, "SELECT 1 FROM sipwake_migrations WHERE id = ?", -1, &st,
                               NULL) != SQLITE_OK)
            return sql_fail(db, err, errlen, "reading migrations");
        sqlite3_bind_int(st, 1, m->id);
        int applied = sqlite3_step(st) == SQLITE_ROW;
        sqlite3_finalize(st);
        if (applied)
            continue;
        char sub[256];
        if (exec(db, "BEGIN IMMEDIATE", err, errlen) < 0)
            return -1;
        if (exec(db, m->sql, sub, sizeof sub) < 0) {
            exec(db, "ROLLBACK", err, errlen);
            snprintf(err, errlen, "migration %03d_%s: %s", m->id, m->name, sub);
            return -1;
        }
        char *rec = sqlite3_mprintf(
            "INSERT INTO sipwake_migrations (id, name, applied_at) VALUES (%d, %Q, %lld)", m->id,
            m->name, (long long)util_now());
        int rc = exec(db, rec, err, errlen);
        sqlite3_free(rec);
        if (rc < 0 || exec(db, "COMMIT", err, errlen) < 0) {
            exec(db, "ROLLBACK", sub, sizeof sub);
            return -1;
        }
        log_info("store: applied migration %03d_%s", m->id, m->name);
    }
    return 0;
}

static void *checkpointer(void *arg)
{
    struct sqlite_checkpointer *c = arg;
    pthread_setname_np(pthread_self(), "sipwake-ckpt");
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(c->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        log_error("store: the checkpoint connection cannot open %s: %s; the writer checkpoints "
                  "past %d WAL pages",
                  c->path, db ? sqlite3_errmsg(db) : "out of memory", SQLITE_WAL_PAGES_INLINE);
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 1000);
    /* a connection knows the database is in WAL mode only once it has read it */
    char err[256];
    if (exec(db, "PRAGMA journal_mode=WAL", err, sizeof err) < 0)
        log_error("store: the checkpoint connection: %s", err);
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->wanted && !c->stop)
            pthread_cond_wait(&c->cv, &c->mu);
        if (c->stop)
            break;
        c->wanted = 0;
        pthread_mutex_unlock(&c->mu);
        int log_pages = 0, done = 0;
        int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log_pages, &done);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            log_error("store: checkpoint failed: %s", sqlite3_errmsg(db));
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    sqlite3_close(db);
    return NULL;
}

/* The writer's commit hook (sqlite3_wal_hook): pages is the WAL's size after the commit. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    struct sqlite_db *s = arg;
    if (pages >= SQLITE_WAL_PAGES_INLINE) {
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        return SQLITE_OK;
    }
    if (pages < SQLITE_WAL_PAGES_CHECKPOINT || !s->ckpt)
        return SQLITE_OK;
    pthread_mutex_lock(&s->ckpt->mu);
    s->ckpt->wanted = 1;
    pthread_cond_signal(&s->ckpt->cv);
    pthread_mutex_unlock(&s->ckpt->mu);
    return SQLITE_OK;
}

/* Start the checkpoint thread; without it (no thread), SQLite checkpoints in the commit. */
static void checkpointer_start(struct sqlite_db *s, const char *path)
{
    struct sqlite_checkpointer *c = xcalloc(1, sizeof *c);
    c->path = xstrdup(path);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    if (pthread_create(&c->thread, NULL, checkpointer, c) != 0) {
        log_warn("store: cannot start the checkpoint thread; commits checkpoint themselves");
        free(c->path);
        free(c);
        return;
    }
    s->ckpt = c;
    sqlite3_wal_autocheckpoint(s->db, 0);
    sqlite3_wal_hook(s->db, wal_hook, s);
}

static void checkpointer_stop(struct sqlite_db *s)
{
    struct sqlite_checkpointer *c = s->ckpt;
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c->path);
    free(c);
    s->ckpt = NULL;
}

static void sqlite_close(void *p)
{
    struct sqlite_db *s = p;
    if (!s)
        return;
    checkpointer_stop(s);
    sqlite3_finalize(s->save);
    sqlite3_finalize(s->del);
    sqlite3_finalize(s->get_sub);
    sqlite3_finalize(s->begin);
    sqlite3_finalize(s->commit);
    sqlite3_finalize(s->push_log);
    sqlite3_finalize(s->msg_find);
    sqlite3_finalize(s->msg_count);
    sqlite3_finalize(s->msg_insert);
    sqlite3_finalize(s->msg_counted);
    sqlite3_finalize(s->msg_device);
    sqlite3_finalize(s->msg_read);
    sqlite3_close(s->db);
    free(s);
}

static void *sqlite_open(const struct config *cfg, char *err, size_t errlen)
{
    /* No memory statistics: with them every SQLite allocation takes a process-wide mutex
     * (SQLITE_CONFIG_MEMSTATUS), which a profile of the store thread at 10,000 REGISTER/s
     * showed. Only possible before SQLite initialises; after that it is refused, harmlessly. */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    struct sqlite_db *s = xcalloc(1, sizeof *s);
    /* Create the directory of the default database (data_dir) if needed. */
    const char *slash = strrchr(cfg->store_path, '/');
    if (slash && slash != cfg->store_path) {
        char *dir = xstrndup(cfg->store_path, (size_t)(slash - cfg->store_path));
        if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
            snprintf(err, errlen, "store: cannot create %s: %s", dir, strerror(errno));
            free(dir);
            free(s);
            return NULL;
        }
        free(dir);
    }
    /* the database holds push credentials: owner only (0600), its WAL files too */
    mode_t old_mask = umask(0077);
    int orc =
        sqlite3_open_v2(cfg->store_path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    umask(old_mask);
    if (orc != SQLITE_OK) {
        snprintf(err, errlen, "store: cannot open %s: %s", cfg->store_path,
                 s->db ? sqlite3_errmsg(s->db) : "out of memory");
        sqlite_close(s);
        return NULL;
    }
    struct stat sb;
    if (stat(cfg->store_path, &sb) == 0 && (sb.st_mode & 077) && chmod(cfg->store_path, 0600) == 0)
        log_notice("store: %s is now mode 0600 (it holds push credentials)", cfg->store_path);
    sqlite3_busy_timeout(s->db, 5000);
    char sub[512];
    if (exec(s->db, "PRAGMA journal_mode=WAL", sub, sizeof sub) < 0 ||
        exec(s->db, "PRAGMA synchronous=NORMAL", sub, sizeof sub) < 0 ||
        migrate(s->db, sub, sizeof sub) < 0) {
        snprintf(err, errlen, "store: %s: %s", cfg->store_path, sub);
        sqlite_close(s);
        return NULL;
    }
    if (sqlite3_prepare_v2(
            s->db,
            "INSERT OR REPLACE INTO location (contact_id, username, domain, contact, received, "
            "path, expires, q, callid, cseq, last_modified, flags, user_agent, socket, "
            "sip_instance, kv_store) VALUES (?,?,?,?,?,?,?,?,?,?,datetime(?, 'unixepoch'),?,?,?,"
            "?,?)",
            -1, &s->save, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "DELETE FROM location WHERE contact_id = ?", -1, &s->del, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(s->db,
                           "SELECT username, domain, password, ha1, ha1_sha256 FROM subscriber "
                           "WHERE username = ? AND domain = ?",
                           -1, &s->get_sub, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "BEGIN IMMEDIATE", -1, &s->begin, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "COMMIT", -1, &s->commit, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "store: preparing statements: %s", sqlite3_errmsg(s->db));
        sqlite_close(s);
        return NULL;
    }
    checkpointer_start(s, cfg->store_path);
    return s;
}

/* One step of a prepared statement that returns no row (BEGIN, COMMIT). */
static int step_done(struct sqlite_db *s, sqlite3_stmt *st, const char *what, char *err,
                     size_t errlen)
{
    int ok = sqlite3_step(st) == SQLITE_DONE ? 0 : sql_fail(s->db, err, errlen, what);
    sqlite3_reset(st);
    return ok;
}

static int sqlite_begin(void *p, char *err, size_t errlen)
{
    struct sqlite_db *s = p;
    return step_done(s, s->begin, "beginning a batch", err, errlen);
}

static int sqlite_commit(void *p, char *err, size_t errlen)
{
    struct sqlite_db *s = p;
    return step_done(s, s->commit, "committing a batch", err, errlen);
}

static void sqlite_rollback(void *p)
{
    char err[256];
    exec(((struct sqlite_db *)p)->db, "ROLLBACK", err, sizeof err);
}

static int sqlite_settle(void *p)
{
    struct sqlite_db *s = p;
    int n = 0;
    for (sqlite3_stmt *st = sqlite3_next_stmt(s->db, NULL); st; st = sqlite3_next_stmt(s->db, st)) {
        if (!sqlite3_stmt_busy(st))
            continue;
        log_error("store: a statement was left busy after a batch (a bug; reset now): %s",
                  sqlite3_sql(st));
        sqlite3_reset(st);
        n++;
    }
    return n;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static int sqlite_save_binding(void *p, const struct store_binding *b, char *err, size_t errlen)
{
    struct sqlite_db *s = p;
    sqlite3_stmt *st = s->save;
    sqlite3_reset(st);
    /* OpenSIPS contact ids use all 64 bits; SQLite integers are signed 64-bit. */
    sqlite3_bind_int64(st, 1, (sqlite3_int64)b->contact_id);
    bind_text(st, 2, b->username ? b->username : "");
    bind_text(st, 3, b->domain);
    bind_text(st, 4, b->contact);
    bind_text(st, 5, b->received);
    bind_text(st, 6, b->path);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)b->expires);
    sqlite3_bind_double(st, 8, b->q);
    bind_text(st, 9, b->callid ? b->callid : "Default-Call-ID");
    sqlite3_bind_int64(st, 10, (sqlite3_int64)b->cseq);
    sqlite3_bind_int64(st, 11, (sqlite3_int64)b->last_modified);
    sqlite3_bind_int(st, 12, b->flags);
    bind_text(st, 13, b->user_agent ? b->user_agent : "n/a");
    bind_text(st, 14, b->socket);
    bind_text(st, 15, b->sip_instance);
    bind_text(st, 16, b->kv_store);
    int rc = sqlite3_step(st);
    int ok = rc == SQLITE_DONE ? 0 : sql_fail(s->db, err, errlen, "saving a binding");
    sqlite3_reset(st);
    return ok;
}

static int sqlite_delete_binding(void *p, uint64_t contact_id, char *err, size_t errlen)
{
    struct sqlite_db *s = p;
    sqlite3_reset(s->del);
    sqlite3_bind_int64(s->del, 1, (sqlite3_int64)contact_id);
    int ok = sqlite3_step(s->del) == SQLITE_DONE
                 ? 0
                 : sql_fail(s->db, err, errlen, "deleting a binding");
    sqlite3_reset(s->del);
    return ok;
}

static void column_copy(sqlite3_stmt *st, int i, char *out, size_t n)
{
    const unsigned char *v = sqlite3_column_text(st, i);
    snprintf(out, n, "%s", v ? (const char *)v : "");
}

static int sqlite_get_subscriber(void *p, const char *user, const char *domain,
                                 struct store_subscriber *out, char *err, size_t errlen)
{
    struct sqlite_db *s = p;
    sqlite3_stmt *st = s->get_sub;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, domain, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        int found = rc == SQLITE_DONE ? 0 : sql_fail(s->db, err, errlen, "reading a subscriber");
        sqlite3_reset(st);
        return found;
    }
    column_copy(st, 0, out->username, sizeof out->username);
    column_copy(st, 1, out->domain, sizeof out->domain);
    column_copy(st, 2, out->password, sizeof out->password);
    column_copy(st, 3, out->ha1, sizeof out->ha1);
    column_copy(st, 4, out->ha1_sha256, sizeof out->ha1_sha256);
    sqlite3_reset(st);
    return 1;
}

static const char *col(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

static int sqlite_load_bindings(void *p, time_t now, store_binding_cb cb, void *arg, long *purged,
                                char *err, size_t errlen)
{
    struct sqlite_db *s = p;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "DELETE FROM location WHERE expires <= ?", -1, &st, NULL) !=
        SQLITE_OK)
        return sql_fail(s->db, err, errlen, "purging expired bindings");
    sqlite3_bind_int64(st, 1, (sqlite3_int64)now);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sql_fail(s->db, err, errlen, "purging expired bindings");
    *purged = sqlite3_changes(s->db);
    if (sqlite3_prepare_v2(s->db,
                           "SELECT contact_id, username, domain, contact, received, path, "
                           "expires, q, callid, cseq, CAST(strftime('%s', last_modified) AS "
                           "INTEGER), flags, user_agent, socket, sip_instance, kv_store FROM "
                           "location",
                           -1, &st, NULL) != SQLITE_OK)
        return sql_fail(s->db, err, errlen, "loading bindings");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_binding b = {
            .contact_id = (uint64_t)sqlite3_column_int64(st, 0),
            .username = col(st, 1),
            .domain = col(st, 2),
            .contact = col(st, 3),
            .received = col(st, 4),
            .path = col(st, 5),
            .expires = (time_t)sqlite3_column_int64(st, 6),
            .q = sqlite3_column_double(st, 7),
            .callid = col(st, 8),
            .cseq = (uint32_t)sqlite3_column_int64(st, 9),
            .last_modified = (time_t)sqlite3_column_int64(st, 10),
            .flags = sqlite3_column_int(st, 11),
            .user_agent = col(st, 12),
            .socket = col(st, 13),
            .sip_instance = col(st, 14),
            .kv_store = col(st, 15),
        };
        if (b.contact)
            cb(arg, &b);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sql_fail(s->db, err, errlen, "loading bindings");
    return 0;
}

static int sqlite_user_put(void *p, const struct store_subscriber *sub, char *err, size_t errlen)
{
    struct sqlite_db *s = p;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO subscriber (username, domain, password, ha1, ha1_sha256) "
                           "VALUES (?,?,?,?,?) ON CONFLICT (username, domain) DO UPDATE SET "
                           "password = excluded.password, ha1 = excluded.ha1, ha1_sha256 = "
                           "excluded.ha1_sha256",
                           -1, &st, NULL) != SQLITE_OK)
        return sql_fail(s->db, err, errlen, "writing a subscriber");
    sqlite3_bind_text(st, 1, sub->username, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, sub->domain, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, sub->password, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, sub->ha1, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, sub->ha1_sha256, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sql_fail(s->db, err, errlen, "writing a subscriber");
}

static int sqlite_user_del(void *p, const char *user, const char *domain, char *err, size_t errlen)
{
    struct sqlite_db *s = p;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "DELETE FROM subscriber WHERE username = ? AND domain = ?", -1,
                           &st, NULL) != SQLITE_OK)
        return sql_fail(s->db, err, errlen, "deleting a subscriber");
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, domain, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sql_fail(s->db, err, errlen, "deleting a subscriber");
    return sqlite3_changes(s->db) > 0 ? 1 : 0;
}

static int sqlite_user_list(void *p, store_user_cb cb, void *arg, char *err, size_t errlen)
{
    struct sqlite_db *s = p;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT username, domain FROM subscriber ORDER BY domain, username", -1,
                           &st, NULL) != SQLITE_OK)
        return sql_fail(s->db, err, errlen, "listing subscribers");
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_subscriber sub = {0};
        column_copy(st, 0, sub.username, sizeof sub.username);
        column_copy(st, 1, sub.domain, sizeof sub.domain);
        cb(arg, &sub);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sql_fail(s->db, err, errlen, "listing subscribers");
}

/* ------------------------------------------------------------------ tenants */

/* Run one statement with text parameters (NULL binds SQL NULL). 0 or -1 with err. */
static int run(struct sqlite_db *s, const char *sql, const char *what, char *err, size_t errlen,
               int n, ...)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return sql_fail(s->db, err, errlen, what);
    va_list ap;
    va_start(ap, n);
    for (int i = 1; i <= n; i++)
        bind_text(st, i, va_arg(ap, const char *));
    va_end(ap);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sql_fail(s->db, err, errlen, what);
}

/* 1 when a row matches sql with one text parameter, 0 when none, -1 on error. */
static int exists(struct sqlite_db *s, const char *sql, const char *v, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return sql_fail(s->db, err, errlen, "reading tenants");
    bind_text(st, 1, v);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sql_fail(s->db, err, errlen, "reading tenants");
    return rc == SQLITE_ROW;
}

static int sqlite_tenant_add(void *p, const char *name, time_t now, char *err, size_t errlen)
{
    struct sqlite_db *s = p;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO sipwake_tenants (name, created_at) VALUES (?, ?) "
                           "ON CONFLICT (name) DO NOTHING",
                           -1, &st, NULL) != SQLITE_OK)
        return sql_fail(s->db, err, errlen, "adding a tenant");
    bind_text(st, 1, name);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)now);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sql_fail(s->db, err, errlen, "adding a tenant");
    return sqlite3_changes(s->db) > 0;
}

static int sqlite_tenant_del(void *p, const char *name, char *err, size_t errlen)
{
    struct sqlite_db *s = p;
    int found = exists(s, "SELECT 1 FROM sipwake_tenants WHERE name = ?", name, err, errlen);
    if (found <= 0)
        return found;
    if (run(s, "DELETE FROM sipwake_tenant_domains WHERE tenant = ?", "deleting a tenant", err,
            errlen, 1, name) < 0 ||
        run(s, "DELETE FROM sipwake_credentials WHERE tenant = ?", "deleting a tenant", err, errlen,
            1, name) < 0 ||
        run(s, "DELETE FROM sipwake_tenants WHERE name = ?", "deleting a tenant", err, errlen, 1,
            name) < 0)
        return -1;
    return 1;
}

static int sqlite_tenant_rename(void *p, const char *from, const char *to, char *err, size_t errlen)
{
    struct sqlite_db *s = p;
    int found = exists(s, "SELECT 1 FROM sipwake_tenants WHERE name = ?", from, err, errlen);
    int taken =
        found > 0 ? exists(s, "SELECT 1 FROM sipwake_tenants WHERE name = ?", to, err, errlen) : 0;
    if (found <= 0 || taken != 0)
        return found < 0 || taken < 0 ? -1 : 0;
    static const char *const sql[] = {
        "UPDATE sipwake_tenants SET name = ?2 WHERE name = ?1",
        "UPDATE sipwake_tenant_domains SET tenant = ?2 WHERE tenant = ?1",
        "UPDATE sipwake_credentials SET tenant = ?2 WHERE tenant = ?1",
        "UPDATE sipwake_push_log SET tenant = ?2 WHERE tenant = ?1"};
    for (size_t i = 0; i < UTIL_ARRAY_LEN(sql); i++)
        if (run(s, sql[i], "renaming a tenant", err, errlen, 2, from, to) < 0)
            return -1;
    return 1;
}

static int sqlite_domain_add(void *p, const char *domain, const char *tenant, char *err,
                             size_t errlen)
{
    struct sqlite_db *s = p;
    int found = exists(s, "SELECT 1 FROM sipwake_tenants WHERE name = ?", tenant, err, errlen);
    int taken = found > 0 ? exists(s, "SELECT 1 FROM sipwake_tenant_domains WHERE domain = ?",
                                   domain, err, errlen)
                          : 0;
    if (found <= 0 || taken != 0)
        return found < 0 || taken < 0 ? -1 : 0;
    if (run(s, "INSERT INTO sipwake_tenant_domains (domain, tenant) VALUES (?, ?)",
            "adding a domain", err, errlen, 2, domain, tenant) < 0)
        return -1;
    return 1;
}

/* Delete with one text parameter: 1 a row went, 0 none did. */
static int delete_one(struct sqlite_db *s, const char *sql, const char *what, const char *v,
                      char *err, size_t errlen)
{
    return run(s, sql, what, err, errlen, 1, v) < 0 ? -1 : sqlite3_changes(s->db) > 0;
}

static int sqlite_domain_del(void *p, const char *domain, char *err, size_t errlen)
{
    return delete_one(p, "DELETE FROM sipwake_tenant_domains WHERE domain = ?", "deleting a domain",
                      domain, err, errlen);
}

static int sqlite_credential_put(void *p, const struct store_credential *c, char *err,
                                 size_t errlen)
{
    struct sqlite_db *s = p;
    int found = exists(s, "SELECT 1 FROM sipwake_tenants WHERE name = ?", c->tenant, err, errlen);
    if (found <= 0)
        return found;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT OR REPLACE INTO sipwake_credentials (tenant, set_name, kind, "
                           "key_id, team_id, label, secret, not_after, created_at, environment) "
                           "VALUES (?,?,?,?,?,?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK)
        return sql_fail(s->db, err, errlen, "storing a credential");
    bind_text(st, 1, c->tenant);
    bind_text(st, 2, c->set_name);
    bind_text(st, 3, c->kind);
    bind_text(st, 4, c->key_id);
    bind_text(st, 5, c->team_id);
    bind_text(st, 6, c->label);
    sqlite3_bind_blob(st, 7, c->secret, (int)c->secret_len, SQLITE_STATIC);
    if (c->not_after)
        sqlite3_bind_int64(st, 8, (sqlite3_int64)c->not_after);
    else
        sqlite3_bind_null(st, 8);
    sqlite3_bind_int64(st, 9, (sqlite3_int64)c->created_at);
    bind_text(st, 10, c->environment ? c->environment : "both");
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 1 : sql_fail(s->db, err, errlen, "storing a credential");
}

static int sqlite_credential_del(void *p, const char *tenant, const char *set_name,
                                 const char *kind, char *err, size_t errlen)
{
    struct sqlite_db *s = p;
    int rc = kind ? run(s,
                        "DELETE FROM sipwake_credentials WHERE tenant = ? AND set_name = ? AND "
                        "kind = ?",
                        "deleting a credential", err, errlen, 3, tenant, set_name, kind)
                  : run(s, "DELETE FROM sipwake_credentials WHERE tenant = ? AND set_name = ?",
                        "deleting a credential", err, errlen, 2, tenant, set_name);
    return rc < 0 ? -1 : sqlite3_changes(s->db) > 0;
}

static int sqlite_tenants_read(void *p, const struct store_tenant_visitor *v, char *err,
                               size_t errlen)
{
    struct sqlite_db *s = p;
    sqlite3_stmt *st;
    int rc;
    if (sqlite3_prepare_v2(s->db, "SELECT name, created_at FROM sipwake_tenants ORDER BY name", -1,
                           &st, NULL) != SQLITE_OK)
        return sql_fail(s->db, err, errlen, "reading tenants");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        v->tenant(v->arg, col(st, 0), (time_t)sqlite3_column_int64(st, 1));
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sql_fail(s->db, err, errlen, "reading tenants");
    if (sqlite3_prepare_v2(s->db,
                           "SELECT domain, tenant FROM sipwake_tenant_domains ORDER BY domain", -1,
                           &st, NULL) != SQLITE_OK)
        return sql_fail(s->db, err, errlen, "reading tenant domains");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        v->domain(v->arg, col(st, 0), col(st, 1));
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sql_fail(s->db, err, errlen, "reading tenant domains");
    if (sqlite3_prepare_v2(
            s->db,
            "SELECT tenant, set_name, kind, key_id, team_id, label, secret, "
            "not_after, created_at, environment FROM sipwake_credentials ORDER BY tenant, "
            "set_name, kind",
            -1, &st, NULL) != SQLITE_OK)
        return sql_fail(s->db, err, errlen, "reading credentials");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_credential c = {
            .tenant = col(st, 0),
            .set_name = col(st, 1),
            .kind = col(st, 2),
            .key_id = col(st, 3),
            .team_id = col(st, 4),
            .label = col(st, 5),
            .secret = sqlite3_column_blob(st, 6),
            .secret_len = (size_t)sqlite3_column_bytes(st, 6),
            .not_after = (time_t)sqlite3_column_int64(st, 7),
            .created_at = (time_t)sqlite3_column_int64(st, 8),
            .environment = col(st, 9),
        };
        if (c.tenant && c.set_name && c.kind && c.secret)
            v->credential(v->arg, &c);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sql_fail(s->db, err, errlen, "reading credentials");
    return 0;
}

/* ------------------------------------------------------------------ push log */

static int sqlite_push_log_add(void *p, const struct store_push_log *r, char *err, size_t errlen)
{
    struct sqlite_db *s = p;
    if (!s->push_log &&
        sqlite3_prepare_v2(s->db,
                           "INSERT INTO sipwake_push_log (time_ms, tenant, credentials, provider, "
                           "kind, aor, call_id, token_hash, outcome, status, reason, latency_ms) "
                           "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &s->push_log, NULL) != SQLITE_OK)
        return sql_fail(s->db, err, errlen, "writing the push log");
    sqlite3_stmt *st = s->push_log;
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)r->time_ms);
    bind_text(st, 2, r->tenant);
    bind_text(st, 3, r->credentials);
    bind_text(st, 4, r->provider ? r->provider : "?");
    bind_text(st, 5, r->kind ? r->kind : "?");
    bind_text(st, 6, r->aor);
    bind_text(st, 7, r->call_id);
    bind_text(st, 8, r->token_hash);
    bind_text(st, 9, r->outcome ? r->outcome : "?");
    sqlite3_bind_int(st, 10, r->status);
    bind_text(st, 11, r->reason);
    sqlite3_bind_int64(st, 12, (sqlite3_int64)r->latency_ms);
    int ok =
        sqlite3_step(st) == SQLITE_DONE ? 0 : sql_fail(s->db, err, errlen, "writing the push log");
    sqlite3_reset(st);
    return ok;
}

static int sqlite_push_log_prune(void *p, int64_t before_ms, char *err, size_t errlen)
{
    struct sqlite_db *s = p;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "DELETE FROM sipwake_push_log WHERE time_ms < ?", -1, &st,
                           NULL) != SQLITE_OK)
        return sql_fail(s->db, err, errlen, "pruning the push log");
    sqlite3_bind_int64(st, 1, (sqlite3_int64)before_ms);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sql_fail(s->db, err, errlen, "pruning the push log");
}

static int sqlite_push_log_read(void *p, const char *tenant, const char *provider,
                                const char *reason, int64_t before_ms, int limit,
                                store_push_log_cb cb, void *arg, char *err, size_t errlen)
{
    struct sqlite_db *s = p;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT time_ms, tenant, credentials, provider, kind, aor, call_id, "
                           "token_hash, outcome, status, reason, latency_ms FROM sipwake_push_log "
                           "WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR provider = ?2) "
                           "AND (?4 IS NULL OR reason = ?4 OR outcome = ?4) AND (?5 = 0 OR "
                           "time_ms < ?5) ORDER BY id DESC LIMIT ?3",
                           -1, &st, NULL) != SQLITE_OK)
        return sql_fail(s->db, err, errlen, "reading the push log");
    bind_text(st, 1, tenant);
    bind_text(st, 2, provider);
    sqlite3_bind_int(st, 3, limit);
    bind_text(st, 4, reason);
    sqlite3_bind_int64(st, 5, before_ms);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_push_log r = {
            .time_ms = sqlite3_column_int64(st, 0),
            .tenant = col(st, 1),
            .credentials = col(st, 2),
            .provider = col(st, 3),
            .kind = col(st, 4),
            .aor = col(st, 5),
            .call_id = col(st, 6),
            .token_hash = col(st, 7),
            .outcome = col(st, 8),
            .status = sqlite3_column_int(st, 9),
            .reason = col(st, 10),
            .latency_ms = (long)sqlite3_column_int64(st, 11),
        };
        cb(arg, &r);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sql_fail(s->db, err, errlen, "reading the push log");
}

/* ------------------------------------------------------------------ offline messages */

/* A statement of the hot path, prepared on first use and kept. */
static sqlite3_stmt *kept(struct sqlite_db *s, sqlite3_stmt **slot, const char *sql)
{
    if (!*slot && sqlite3_prepare_v2(s->db, sql, -1, slot, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_reset(*slot);
    sqlite3_clear_bindings(*slot);
    return *slot;
}

static void message_statements_reset(struct sqlite_db *s)
{
    sqlite3_stmt *const used[] = {s->msg_find,    s->msg_count,  s->msg_insert,
                                  s->msg_counted, s->msg_device, s->msg_read};
    for (size_t i = 0; i < UTIL_ARRAY_LEN(used); i++)
        if (used[i])
            sqlite3_reset(used[i]);
}

static int sqlite_message_put(void *p, const struct store_message *m, const char *const *devices,
                              size_t n_devices, long max_per_aor, int64_t *id, char *err,
                              size_t errlen)
{
    struct sqlite_db *s = p;
    int ret = -1;
    sqlite3_stmt *st = kept(s, &s->msg_find,
                            "SELECT id FROM sipwake_messages WHERE aor = ? AND call_id = ? AND "
                            "cseq = ?");
    if (!st) {
        sql_fail(s->db, err, errlen, "reading messages");
        goto out;
    }
    bind_text(st, 1, m->aor);
    bind_text(st, 2, m->call_id);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)m->cseq);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) { /* stored before: a retransmission */
        *id = sqlite3_column_int64(st, 0);
        ret = 0;
        goto out;
    }
    if (rc != SQLITE_DONE) {
        sql_fail(s->db, err, errlen, "reading messages");
        goto out;
    }
    st = kept(s, &s->msg_count, "SELECT n FROM sipwake_message_counts WHERE aor = ?");
    if (!st) {
        sql_fail(s->db, err, errlen, "counting messages");
        goto out;
    }
    bind_text(st, 1, m->aor);
    rc = sqlite3_step(st);
    long count = rc == SQLITE_ROW ? (long)sqlite3_column_int64(st, 0) : 0;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        sql_fail(s->db, err, errlen, "counting messages");
        goto out;
    }
    if (count >= max_per_aor) {
        ret = 2;
        goto out;
    }
    st = kept(s, &s->msg_insert,
              "INSERT INTO sipwake_messages (aor, call_id, cseq, from_hdr, to_hdr, content_type, "
              "body, received_ms, expires_ms, new_devices, tenant) VALUES (?,?,?,?,?,?,?,?,?,?,?)");
    if (!st) {
        sql_fail(s->db, err, errlen, "storing a message");
        goto out;
    }
    bind_text(st, 1, m->aor);
    bind_text(st, 2, m->call_id);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)m->cseq);
    bind_text(st, 4, m->from_hdr);
    bind_text(st, 5, m->to_hdr);
    bind_text(st, 6, m->content_type);
    if (m->body)
        sqlite3_bind_blob(st, 7, m->body, (int)m->body_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)m->received_ms);
    sqlite3_bind_int64(st, 9, (sqlite3_int64)m->expires_ms);
    sqlite3_bind_int(st, 10, m->new_devices);
    bind_text(st, 11, m->tenant);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sql_fail(s->db, err, errlen, "storing a message");
        goto out;
    }
    *id = sqlite3_last_insert_rowid(s->db);
    st = kept(s, &s->msg_counted,
              "INSERT INTO sipwake_message_counts (aor, n) VALUES (?, 1) ON CONFLICT (aor) DO "
              "UPDATE SET n = n + 1");
    if (!st) {
        sql_fail(s->db, err, errlen, "counting messages");
        goto out;
    }
    bind_text(st, 1, m->aor);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sql_fail(s->db, err, errlen, "counting messages");
        goto out;
    }
    for (size_t i = 0; i < n_devices; i++) {
        st = kept(s, &s->msg_device,
                  "INSERT OR IGNORE INTO sipwake_message_deliveries (message_id, device) VALUES "
                  "(?, ?)");
        if (!st) {
            sql_fail(s->db, err, errlen, "storing a delivery");
            goto out;
        }
        sqlite3_bind_int64(st, 1, (sqlite3_int64)*id);
        bind_text(st, 2, devices[i]);
        if (sqlite3_step(st) != SQLITE_DONE) {
            sql_fail(s->db, err, errlen, "storing a delivery");
            goto out;
        }
    }
    ret = 1;
out:
    /* every path: a statement left on a row would keep its read snapshot (see the top) */
    message_statements_reset(s);
    return ret;
}

/* Run sql with the message id as ?1 (and device, now_ms as ?2, ?3 when given). 0 or -1. */
static int run_for_message(struct sqlite_db *s, const char *sql, int64_t id, const char *device,
                           int64_t now_ms, const char *what, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return sql_fail(s->db, err, errlen, what);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    if (device) {
        bind_text(st, 2, device);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)now_ms);
    }
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sql_fail(s->db, err, errlen, what);
}

static int sqlite_message_delivered(void *p, int64_t id, const char *device, int64_t now_ms,
                                    char *err, size_t errlen)
{
    struct sqlite_db *s = p;
    static const char *const done_if_last =
        "NOT EXISTS (SELECT 1 FROM sipwake_message_deliveries WHERE message_id = ?1 AND "
        "delivered_ms IS NULL)";
    char count_sql[512], delete_sql[512];
    /* the last delivery: the message goes, and its AOR's count with it */
    snprintf(count_sql, sizeof count_sql,
             "UPDATE sipwake_message_counts SET n = n - 1 WHERE aor = (SELECT aor FROM "
             "sipwake_messages WHERE id = ?1 AND %s)",
             done_if_last);
    snprintf(delete_sql, sizeof delete_sql, "DELETE FROM sipwake_messages WHERE id = ?1 AND %s",
             done_if_last);
    if (run_for_message(s,
                        "INSERT INTO sipwake_message_deliveries (message_id, device, "
                        "delivered_ms) SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM "
                        "sipwake_messages WHERE id = ?1) ON CONFLICT (message_id, device) DO "
                        "UPDATE SET delivered_ms = ?3",
                        id, device, now_ms, "marking a delivery", err, errlen) < 0 ||
        run_for_message(s, count_sql, id, NULL, 0, "counting messages", err, errlen) < 0 ||
        run_for_message(s, delete_sql, id, NULL, 0, "removing a delivered message", err, errlen) <
            0)
        return -1;
    if (sqlite3_changes(s->db) == 0)
        return 0;
    return run_for_message(s, "DELETE FROM sipwake_message_deliveries WHERE message_id = ?1", id,
                           NULL, 0, "removing deliveries", err, errlen) < 0
               ? -1
               : 1;
}

static int sqlite_messages_for_device(void *p, const char *aor, const char *device, int64_t now_ms,
                                      store_message_cb cb, void *arg, char *err, size_t errlen)
{
    struct sqlite_db *s = p;
    /* kept, not prepared per call: every REGISTER reads this, and preparing it (parsing and
     * planning a join) was three quarters of the store thread's time at 10,000 REGISTER/s */
    sqlite3_stmt *st = kept(
        s, &s->msg_read,
        "SELECT m.id, m.call_id, m.cseq, m.from_hdr, m.to_hdr, m.content_type, m.body, "
        "m.received_ms, m.expires_ms, m.new_devices, m.tenant FROM sipwake_messages m LEFT JOIN "
        "sipwake_message_deliveries d ON d.message_id = m.id AND d.device = ?2 WHERE m.aor = ?1 "
        "AND m.expires_ms > ?3 AND ((d.device IS NOT NULL AND d.delivered_ms IS NULL) OR "
        "(d.device IS NULL AND m.new_devices = 1)) ORDER BY m.id");
    if (!st)
        return sql_fail(s->db, err, errlen, "reading messages");
    bind_text(st, 1, aor);
    bind_text(st, 2, device);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)now_ms);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_message m = {
            .id = sqlite3_column_int64(st, 0),
            .aor = aor,
            .call_id = col(st, 1),
            .cseq = (uint32_t)sqlite3_column_int64(st, 2),
            .from_hdr = col(st, 3),
            .to_hdr = col(st, 4),
            .content_type = col(st, 5),
            .body = sqlite3_column_blob(st, 6),
            .body_len = (size_t)sqlite3_column_bytes(st, 6),
            .received_ms = sqlite3_column_int64(st, 7),
            .expires_ms = sqlite3_column_int64(st, 8),
            .new_devices = sqlite3_column_int(st, 9),
            .tenant = col(st, 10),
        };
        cb(arg, &m);
    }
    if (rc != SQLITE_DONE)
        sql_fail(s->db, err, errlen, "reading messages");
    sqlite3_reset(st); /* not left busy (settle), nor holding a read snapshot */
    return rc == SQLITE_DONE ? 0 : -1;
}

static int sqlite_messages_expire(void *p, int64_t now_ms, char *err, size_t errlen)
{
    struct sqlite_db *s = p;
    char now[32];
    snprintf(now, sizeof now, "%lld", (long long)now_ms);
    if (run(s,
            "UPDATE sipwake_message_counts SET n = n - (SELECT count(*) FROM sipwake_messages m "
            "WHERE m.aor = sipwake_message_counts.aor AND m.expires_ms <= CAST(?1 AS INTEGER))",
            "expiring messages", err, errlen, 1, now) < 0 ||
        run(s, "DELETE FROM sipwake_message_counts WHERE n <= 0", "expiring messages", err, errlen,
            0) < 0 ||
        run(s,
            "DELETE FROM sipwake_message_deliveries WHERE message_id IN (SELECT id FROM "
            "sipwake_messages WHERE expires_ms <= CAST(? AS INTEGER))",
            "expiring messages", err, errlen, 1, now) < 0 ||
        run(s, "DELETE FROM sipwake_messages WHERE expires_ms <= CAST(? AS INTEGER)",
            "expiring messages", err, errlen, 1, now) < 0)
        return -1;
    return sqlite3_changes(s->db);
}

static int sqlite_messages_pending(void *p, const char *aor, store_pending_cb cb, void *arg,
                                   char *err, size_t errlen)
{
    struct sqlite_db *s = p;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT m.aor, d.device, count(*), min(m.received_ms) FROM "
                           "sipwake_messages m JOIN sipwake_message_deliveries d ON "
                           "d.message_id = m.id WHERE d.delivered_ms IS NULL AND (?1 IS NULL OR "
                           "m.aor = ?1) GROUP BY m.aor, d.device ORDER BY m.aor, d.device",
                           -1, &st, NULL) != SQLITE_OK)
        return sql_fail(s->db, err, errlen, "reading pending messages");
    bind_text(st, 1, aor);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        cb(arg, col(st, 0), col(st, 1), (long)sqlite3_column_int64(st, 2),
           sqlite3_column_int64(st, 3));
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sql_fail(s->db, err, errlen, "reading pending messages");
}

static int sqlite_messages_count(void *p, char *err, size_t errlen)
{
    struct sqlite_db *s = p;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT count(*) FROM sipwake_messages", -1, &st, NULL) !=
        SQLITE_OK)
        return sql_fail(s->db, err, errlen, "counting messages");
    int n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    sqlite3_finalize(st);
    return n < 0 ? sql_fail(s->db, err, errlen, "counting messages") : n;
}

static int sqlite_messages_purge(void *p, const char *aor, char *err, size_t errlen)
{
    struct sqlite_db *s = p;
    if (run(s,
            "DELETE FROM sipwake_message_deliveries WHERE message_id IN (SELECT id FROM "
            "sipwake_messages WHERE aor = ?)",
            "purging messages", err, errlen, 1, aor) < 0 ||
        run(s, "DELETE FROM sipwake_messages WHERE aor = ?", "purging messages", err, errlen, 1,
            aor) < 0)
        return -1;
    int n = sqlite3_changes(s->db);
    return run(s, "DELETE FROM sipwake_message_counts WHERE aor = ?", "purging messages", err,
               errlen, 1, aor) < 0
               ? -1
               : n;
}

/* ------------------------------------------------------------------ admin */

/* Run sql with text parameters a, b and integer c; changed rows, or -1. */
static int run_2t1i(struct sqlite_db *s, const char *sql, const char *what, const char *a,
                    const char *b, int64_t c, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return sql_fail(s->db, err, errlen, what);
    bind_text(st, 1, a);
    bind_text(st, 2, b);
    sqlite3_bind_int64(st, 3, c);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? sqlite3_changes(s->db) : sql_fail(s->db, err, errlen, what);
}

/* The first column of the row matching sql with one text parameter, copied into out: 1, or 0
 * when there is none. */
static int lookup(struct sqlite_db *s, const char *sql, const char *what, const char *v, char *out,
                  size_t out_len, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return sql_fail(s->db, err, errlen, what);
    bind_text(st, 1, v);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        snprintf(out, out_len, "%s", col(st, 0) ? col(st, 0) : "");
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sql_fail(s->db, err, errlen, what);
    return rc == SQLITE_ROW;
}

static int names(struct sqlite_db *s, const char *sql, const char *what, store_name_cb cb,
                 void *arg, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return sql_fail(s->db, err, errlen, what);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        cb(arg, col(st, 0), (time_t)sqlite3_column_int64(st, 1));
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sql_fail(s->db, err, errlen, what);
}

static int sqlite_admin_put(void *p, const char *name, const char *hash, time_t now, char *err,
                            size_t errlen)
{
    struct sqlite_db *s = p;
    int found = exists(s, "SELECT 1 FROM sipwake_admins WHERE name = ?", name, err, errlen);
    if (found < 0 ||
        run_2t1i(s,
                 "INSERT INTO sipwake_admins (name, password_hash, created_at) VALUES (?1, ?2, "
                 "?3) ON CONFLICT (name) DO UPDATE SET password_hash = ?2",
                 "storing an admin account", name, hash, (int64_t)now, err, errlen) < 0)
        return -1;
    return !found;
}

static int sqlite_admin_del(void *p, const char *name, char *err, size_t errlen)
{
    return delete_one(p, "DELETE FROM sipwake_admins WHERE name = ?", "deleting an admin account",
                      name, err, errlen);
}

static int sqlite_admin_hash(void *p, const char *name, char *hash, size_t hash_len, char *err,
                             size_t errlen)
{
    return lookup(p, "SELECT password_hash FROM sipwake_admins WHERE name = ?",
                  "reading an admin account", name, hash, hash_len, err, errlen);
}

static int sqlite_admin_list(void *p, store_name_cb cb, void *arg, char *err, size_t errlen)
{
    return names(p, "SELECT name, created_at FROM sipwake_admins ORDER BY name",
                 "listing admin accounts", cb, arg, err, errlen);
}

static int sqlite_token_put(void *p, const char *name, const char *sha256_hex, time_t now,
                            char *err, size_t errlen)
{
    return run_2t1i(p,
                    "INSERT INTO sipwake_admin_tokens (name, token_sha256, created_at) VALUES "
                    "(?1, ?2, ?3) ON CONFLICT DO NOTHING",
                    "storing an API token", name, sha256_hex, (int64_t)now, err, errlen);
}

static int sqlite_token_del(void *p, const char *name, char *err, size_t errlen)
{
    return delete_one(p, "DELETE FROM sipwake_admin_tokens WHERE name = ?", "deleting an API token",
                      name, err, errlen);
}

static int sqlite_token_find(void *p, const char *sha256_hex, char *name, size_t name_len,
                             char *err, size_t errlen)
{
    return lookup(p, "SELECT name FROM sipwake_admin_tokens WHERE token_sha256 = ?",
                  "reading API tokens", sha256_hex, name, name_len, err, errlen);
}

static int sqlite_token_list(void *p, store_name_cb cb, void *arg, char *err, size_t errlen)
{
    return names(p, "SELECT name, created_at FROM sipwake_admin_tokens ORDER BY name",
                 "listing API tokens", cb, arg, err, errlen);
}

static int sqlite_audit_add(void *p, const struct store_audit *a, char *err, size_t errlen)
{
    struct sqlite_db *s = p;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO sipwake_audit (time_ms, who, action, object, detail, "
                           "source) VALUES (?,?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK)
        return sql_fail(s->db, err, errlen, "writing the audit log");
    sqlite3_bind_int64(st, 1, a->time_ms);
    bind_text(st, 2, a->who);
    bind_text(st, 3, a->action);
    bind_text(st, 4, a->object);
    bind_text(st, 5, a->detail);
    bind_text(st, 6, a->source);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sql_fail(s->db, err, errlen, "writing the audit log");
}

static int sqlite_audit_read(void *p, int limit, store_audit_cb cb, void *arg, char *err,
                             size_t errlen)
{
    struct sqlite_db *s = p;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT time_ms, who, action, object, detail, source FROM "
                           "sipwake_audit ORDER BY id DESC LIMIT ?",
                           -1, &st, NULL) != SQLITE_OK)
        return sql_fail(s->db, err, errlen, "reading the audit log");
    sqlite3_bind_int(st, 1, limit);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_audit a = {.time_ms = sqlite3_column_int64(st, 0),
                                .who = col(st, 1),
                                .action = col(st, 2),
                                .object = col(st, 3),
                                .detail = col(st, 4),
                                .source = col(st, 5)};
        cb(arg, &a);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sql_fail(s->db, err, errlen, "reading the audit log");
}

const struct store_backend store_sqlite_backend = {
    .shared = 0, /* one sipwake process writes a database (README "More than one core") */
    .transactional = 1,
    .name = "sqlite",
    .open = sqlite_open,
    .close = sqlite_close,
    .begin = sqlite_begin,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
    .settle = sqlite_settle,
    .save_binding = sqlite_save_binding,
    .delete_binding = sqlite_delete_binding,
    .get_subscriber = sqlite_get_subscriber,
    .load_bindings = sqlite_load_bindings,
    .user_put = sqlite_user_put,
    .user_del = sqlite_user_del,
    .user_list = sqlite_user_list,
    .tenant_add = sqlite_tenant_add,
    .tenant_del = sqlite_tenant_del,
    .tenant_rename = sqlite_tenant_rename,
    .domain_add = sqlite_domain_add,
    .domain_del = sqlite_domain_del,
    .credential_put = sqlite_credential_put,
    .credential_del = sqlite_credential_del,
    .tenants_read = sqlite_tenants_read,
    .push_log_add = sqlite_push_log_add,
    .push_log_prune = sqlite_push_log_prune,
    .push_log_read = sqlite_push_log_read,
    .message_put = sqlite_message_put,
    .message_delivered = sqlite_message_delivered,
    .messages_for_device = sqlite_messages_for_device,
    .messages_expire = sqlite_messages_expire,
    .messages_pending = sqlite_messages_pending,
    .messages_count = sqlite_messages_count,
    .messages_purge = sqlite_messages_purge,
    .admin_put = sqlite_admin_put,
    .admin_del = sqlite_admin_del,
    .admin_hash = sqlite_admin_hash,
    .admin_list = sqlite_admin_list,
    .token_put = sqlite_token_put,
    .token_del = sqlite_token_del,
    .token_find = sqlite_token_find,
    .token_list = sqlite_token_list,
    .audit_add = sqlite_audit_add,
    .audit_read = sqlite_audit_read,
};
