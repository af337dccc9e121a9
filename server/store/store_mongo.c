/*
 * store_mongo: the MongoDB backend, through mongo-c-driver (issue 16). One client, used by one
 * thread at a time as store.h requires of every backend: the store worker, or the caller of a
 * synchronous operation before the worker starts (or, for the CLI, without one).
 *
 * A batch is not a transaction here (transactional = 0): MongoDB has multi-document
 * transactions only on replica sets, and the backend must work on a single server too. A write
 * stands once acknowledged, whatever happens to the rest of the batch, so store.c hands this
 * backend a batch in segments that succeed or fail on their own (store.c apply_segments): a
 * run of binding writes, sent at commit as one ordered bulk write (one round trip, one
 * acknowledgement), or one other operation. Any other operation first sends the binding
 * writes pending, so the order is kept even when called otherwise. A rollback drops the
 * binding writes not yet sent; those already sent stay. Every write is idempotent, so a
 * segment that failed may be applied again: a binding is a replacement by its contact id, a
 * delete by its id, an account or a subscriber an upsert by its key, a push-log row's _id is
 * made from its content, a MESSAGE and its deliveries are one insert.
 *
 * Every write is acknowledged with the write concern of [store] write_concern ("majority" by
 * default: on a replica set a write the majority has is never rolled back by a failover; on
 * a single server it costs nothing more than w: 1), waiting at most the connection string's
 * wtimeoutMS (5 s when it names none) for the nodes, and keeping its journal option.
 *
 * Schema: the numbered files of schemas/mongo (createIndexes commands), embedded at build time
 * like the SQLite migrations, are run in order at open, each recorded in sipwake_migrations.
 * The documents keep OpenSIPS's column names (location, subscriber), as OpenSIPS's db_mongodb
 * does. The backend uses a small, fixed set of commands and operators, listed in the README
 * ("MongoDB"), which tests/emulators/mongo.py implements for the tests.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mongoc/mongoc.h>

#include "log.h"
#include "store.h"
#include "store_mongo_migrations.h"
#include "util.h"

/* How long a call waits for a server it cannot reach, unless the URI says otherwise: the
 * driver's defaults (10 s to connect and get a handshake's answer, 5 minutes on a socket)
 * would hold the store thread, and every write queued behind it, far longer than a SIP client
 * waits. A single-threaded client tries a server once per call (serverSelectionTryOnce), so
 * serverSelectionTimeoutMS bounds nothing here; after a failure the driver leaves the server
 * alone for 5 s, and calls fail at once meanwhile. */
#define MONGO_CONNECT_TIMEOUT_MS 2000
#define MONGO_SOCKET_TIMEOUT_MS 10000
/* How long a write waits for the nodes its write concern names (w: majority or n), unless the
 * URI says (wtimeoutMS): without it, a replica set that lost its majority holds each write
 * until the socket times out. */
#define MONGO_WTIMEOUT_MS 5000

struct mongo_db {
    mongoc_client_t *client;
    char *dbname;
    int in_batch;
    mongoc_bulk_operation_t *bulk; /* the batch's binding writes not yet sent */
};

static int fail(char *err, size_t errlen, const char *what, const bson_error_t *e)
{
    snprintf(err, errlen, "mongodb: %s: %s (domain %" PRIu32 ", code %" PRIu32 ")", what,
             e->message, e->domain, e->code);
    return -1;
}

static mongoc_collection_t *coll(struct mongo_db *m, const char *name)
{
    return mongoc_client_get_collection(m->client, m->dbname, name);
}

/* The driver's own log lines go to sipwake's log, at the matching level. */
static void driver_log(mongoc_log_level_t level, const char *domain, const char *message, void *arg)
{
    (void)arg;
    if (level <= MONGOC_LOG_LEVEL_CRITICAL)
        log_error("mongodb driver (%s): %s", domain, message);
    else if (level == MONGOC_LOG_LEVEL_WARNING)
        log_warn("mongodb driver (%s): %s", domain, message);
    else
        log_debug("mongodb driver (%s): %s", domain, message);
}

/* ------------------------------------------------------------------ documents */

/* A string field, or null for NULL (the table's SQL NULL). */
static void put_str(bson_t *d, const char *key, const char *v)
{
    if (v)
        BSON_APPEND_UTF8(d, key, v);
    else
        BSON_APPEND_NULL(d, key);
}

/* The string at key, or NULL when missing, null or not a string. Borrowed from doc. */
static const char *get_str(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, key) || !BSON_ITER_HOLDS_UTF8(&it))
        return NULL;
    return bson_iter_utf8(&it, NULL);
}

/* The number at key (int32, int64, double, date as ms), or def. */
static int64_t get_int(const bson_t *doc, const char *key, int64_t def)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, key))
        return def;
    if (BSON_ITER_HOLDS_DATE_TIME(&it))
        return bson_iter_date_time(&it);
    if (BSON_ITER_HOLDS_NUMBER(&it))
        return bson_iter_as_int64(&it);
    return def;
}

static double get_double(const bson_t *doc, const char *key, double def)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, key) || !BSON_ITER_HOLDS_NUMBER(&it))
        return def;
    return bson_iter_as_double(&it);
}

static void copy_str(const bson_t *doc, const char *key, char *out, size_t n)
{
    const char *v = get_str(doc, key);
    snprintf(out, n, "%s", v ? v : "");
}

/* A count from a write's reply (deletedCount, upsertedCount, ...). */
static int64_t reply_count(const bson_t *reply, const char *key)
{
    return get_int(reply, key, 0);
}

/* 1 when a write failed on a unique index (E11000), which some callers answer as "taken". */
static int duplicate_key(const bson_error_t *e)
{
    return e->code == 11000;
}

/* ------------------------------------------------------------------ batches */

static int flush_bulk(struct mongo_db *m, char *err, size_t errlen)
{
    if (!m->bulk)
        return 0;
    bson_t reply;
    bson_error_t e;
    uint32_t ok = mongoc_bulk_operation_execute(m->bulk, &reply, &e);
    bson_destroy(&reply);
    mongoc_bulk_operation_destroy(m->bulk);
    m->bulk = NULL;
    return ok ? 0 : fail(err, errlen, "writing bindings", &e);
}

static int mongo_begin(void *p, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    struct mongo_db *m = p;
    m->in_batch = 1;
    return 0;
}

static int mongo_commit(void *p, char *err, size_t errlen)
{
    struct mongo_db *m = p;
    m->in_batch = 0;
    return flush_bulk(m, err, errlen);
}

static void mongo_rollback(void *p)
{
    struct mongo_db *m = p;
    m->in_batch = 0;
    if (m->bulk)
        mongoc_bulk_operation_destroy(m->bulk);
    m->bulk = NULL;
}

/* Before any operation other than a binding write: the batch's pending binding writes go
 * first, so that the batch keeps its order. */
static int settle_order(struct mongo_db *m, char *err, size_t errlen)
{
    return flush_bulk(m, err, errlen);
}

/* ------------------------------------------------------------------ open, schema */

static int run_command(struct mongo_db *m, const char *json, const char *what, char *err,
                       size_t errlen)
{
    bson_error_t e;
    bson_t *cmd = bson_new_from_json((const uint8_t *)json, -1, &e);
    if (!cmd)
        return fail(err, errlen, what, &e);
    bson_t reply;
    bool ok = mongoc_client_command_simple(m->client, m->dbname, cmd, NULL, &reply, &e);
    bson_destroy(cmd);
    bson_destroy(&reply);
    return ok ? 0 : fail(err, errlen, what, &e);
}

static int64_t count(struct mongo_db *m, const char *name, const bson_t *q, const char *what,
                     char *err, size_t errlen);

/* Apply the migrations of schemas/mongo not yet recorded, in order. */
static int migrate(struct mongo_db *m, char *err, size_t errlen)
{
    mongoc_collection_t *c = coll(m, "sipwake_migrations");
    int rc = 0;
    for (int i = 0; i < store_mongo_migrations_count && rc == 0; i++) {
        const struct store_mongo_migration *mg = &store_mongo_migrations[i];
        bson_t *q = BCON_NEW("_id", BCON_INT32(mg->id));
        bson_error_t e = {0};
        int64_t n = count(m, "sipwake_migrations", q, "reading sipwake_migrations", err, errlen);
        if (n < 0) {
            rc = -1;
        } else if (n == 0) {
            /* one command per line of the file's JSON array, run in order */
            bson_t *cmds = bson_new_from_json((const uint8_t *)mg->text, -1, &e);
            bson_iter_t it;
            if (!cmds || !bson_iter_init(&it, cmds)) {
                rc = fail(err, errlen, mg->name, &e);
            } else {
                while (rc == 0 && bson_iter_next(&it)) {
                    const uint8_t *data;
                    uint32_t len;
                    bson_t cmd, reply;
                    if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
                        snprintf(err, errlen, "mongodb: migration %s: not a command document",
                                 mg->name);
                        rc = -1;
                        break;
                    }
                    bson_iter_document(&it, &len, &data);
                    bson_init_static(&cmd, data, len);
                    if (!mongoc_client_command_simple(m->client, m->dbname, &cmd, NULL, &reply, &e))
                        rc = fail(err, errlen, mg->name, &e);
                    bson_destroy(&reply);
                }
                if (rc == 0) {
                    /* another process opening the database at the same time may have recorded
                     * it first: its commands are idempotent (createIndexes), so that is fine */
                    bson_t *doc = BCON_NEW("_id", BCON_INT32(mg->id), "name", BCON_UTF8(mg->name),
                                           "applied_at", BCON_DATE_TIME(util_wall_ms()));
                    if (!mongoc_collection_insert_one(c, doc, NULL, NULL, &e) && !duplicate_key(&e))
                        rc = fail(err, errlen, "recording a migration", &e);
                    else
                        log_notice("store: applied MongoDB migration %03d_%s", mg->id, mg->name);
                    bson_destroy(doc);
                }
            }
            if (cmds)
                bson_destroy(cmds);
        }
        bson_destroy(q);
    }
    mongoc_collection_destroy(c);
    return rc;
}

static void mongo_close(void *p)
{
    struct mongo_db *m = p;
    if (!m)
        return;
    mongo_rollback(m);
    mongoc_client_destroy(m->client);
    free(m->dbname);
    free(m);
}

static void *mongo_open(const struct config *cfg, char *err, size_t errlen)
{
    mongoc_init(); /* once per process; later calls do nothing */
    mongoc_log_set_handler(driver_log, NULL);
    bson_error_t e;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(cfg->store_uri, &e);
    if (!uri) {
        fail(err, errlen, "the connection string [store] uri", &e);
        return NULL;
    }
    if (!mongoc_uri_has_option(uri, MONGOC_URI_CONNECTTIMEOUTMS))
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_CONNECTTIMEOUTMS, MONGO_CONNECT_TIMEOUT_MS);
    if (!mongoc_uri_has_option(uri, MONGOC_URI_SOCKETTIMEOUTMS))
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SOCKETTIMEOUTMS, MONGO_SOCKET_TIMEOUT_MS);
    struct mongo_db *m = xcalloc(1, sizeof *m);
    const char *dbname = mongoc_uri_get_database(uri);
    m->dbname = xstrdup(dbname && *dbname ? dbname : "sipwake");
    /* the URI's write concern (its wtimeoutMS and journal) with [store] write_concern's w */
    mongoc_write_concern_t *wc = mongoc_write_concern_copy(mongoc_uri_get_write_concern(uri));
    int64_t wtimeout = mongoc_write_concern_get_wtimeout_int64(wc);
    if (wtimeout <= 0)
        wtimeout = MONGO_WTIMEOUT_MS;
    const char *w = cfg->store_write_concern ? cfg->store_write_concern : "majority";
    if (strcmp(w, "majority") == 0) {
        mongoc_write_concern_set_wmajority(wc, (int32_t)wtimeout);
    } else {
        mongoc_write_concern_set_w(wc, (int32_t)atoi(w));
        if (atoi(w) > 1)
            mongoc_write_concern_set_wtimeout_int64(wc, wtimeout);
    }
    m->client = mongoc_client_new_from_uri_with_error(uri, &e);
    mongoc_uri_destroy(uri);
    if (!m->client) {
        mongoc_write_concern_destroy(wc);
        fail(err, errlen, "the connection string [store] uri", &e);
        mongo_close(m);
        return NULL;
    }
    mongoc_client_set_appname(m->client, "sipwake");
    mongoc_client_set_write_concern(m->client, wc);
    mongoc_write_concern_destroy(wc);
    if (run_command(m, "{\"ping\": 1}", "reaching the server", err, errlen) < 0 ||
        migrate(m, err, errlen) < 0) {
        mongo_close(m);
        return NULL;
    }
    return m;
}

/* ------------------------------------------------------------------ location */

static bson_t *binding_doc(const struct store_binding *b)
{
    bson_t *d = bson_new();
    BSON_APPEND_INT64(d, "_id", (int64_t)b->contact_id);
    BSON_APPEND_INT64(d, "contact_id", (int64_t)b->contact_id);
    put_str(d, "username", b->username ? b->username : "");
    put_str(d, "domain", b->domain);
    put_str(d, "contact", b->contact);
    put_str(d, "received", b->received);
    put_str(d, "path", b->path);
    BSON_APPEND_INT64(d, "expires", (int64_t)b->expires);
    BSON_APPEND_DOUBLE(d, "q", b->q);
    put_str(d, "callid", b->callid ? b->callid : "Default-Call-ID");
    BSON_APPEND_INT64(d, "cseq", (int64_t)b->cseq);
    BSON_APPEND_DATE_TIME(d, "last_modified", (int64_t)b->last_modified * 1000);
    BSON_APPEND_INT32(d, "flags", b->flags);
    put_str(d, "user_agent", b->user_agent ? b->user_agent : "n/a");
    put_str(d, "socket", b->socket);
    put_str(d, "sip_instance", b->sip_instance);
    put_str(d, "kv_store", b->kv_store);
    return d;
}

/* The batch's bulk write of bindings, made when the first one comes. */
static mongoc_bulk_operation_t *bulk(struct mongo_db *m)
{
    if (!m->bulk) {
        mongoc_collection_t *c = coll(m, "location");
        bson_t *opts = BCON_NEW("ordered", BCON_BOOL(true));
        m->bulk = mongoc_collection_create_bulk_operation_with_opts(c, opts);
        bson_destroy(opts);
        mongoc_collection_destroy(c);
    }
    return m->bulk;
}

static int mongo_save_binding(void *p, const struct store_binding *b, char *err, size_t errlen)
{
    struct mongo_db *m = p;
    bson_t *sel = BCON_NEW("_id", BCON_INT64((int64_t)b->contact_id));
    bson_t *doc = binding_doc(b);
    bson_t *opts = BCON_NEW("upsert", BCON_BOOL(true));
    bson_error_t e;
    int rc = 0;
    if (!mongoc_bulk_operation_replace_one_with_opts(bulk(m), sel, doc, opts, &e))
        rc = fail(err, errlen, "saving a binding", &e);
    bson_destroy(sel);
    bson_destroy(doc);
    bson_destroy(opts);
    if (rc == 0 && !m->in_batch)
        rc = flush_bulk(m, err, errlen);
    return rc;
}

static int mongo_delete_binding(void *p, uint64_t contact_id, char *err, size_t errlen)
{
    struct mongo_db *m = p;
    bson_t *sel = BCON_NEW("_id", BCON_INT64((int64_t)contact_id));
    bson_error_t e;
    int rc = 0;
    if (!mongoc_bulk_operation_remove_one_with_opts(bulk(m), sel, NULL, &e))
        rc = fail(err, errlen, "deleting a binding", &e);
    bson_destroy(sel);
    if (rc == 0 && !m->in_batch)
        rc = flush_bulk(m, err, errlen);
    return rc;
}

static int mongo_load_bindings(void *p, time_t now, store_binding_cb cb, void *arg, long *purged,
                               char *err, size_t errlen)
{
    struct mongo_db *m = p;
    if (settle_order(m, err, errlen) < 0)
        return -1;
    mongoc_collection_t *c = coll(m, "location");
    bson_t *q = BCON_NEW("expires", "{", "$lte", BCON_INT64((int64_t)now), "}");
    bson_t reply;
    bson_error_t e;
    int rc = 0;
    if (!mongoc_collection_delete_many(c, q, NULL, &reply, &e))
        rc = fail(err, errlen, "purging expired bindings", &e);
    else
        *purged = (long)reply_count(&reply, "deletedCount");
    bson_destroy(&reply);
    bson_destroy(q);
    if (rc == 0) {
        bson_t all = BSON_INITIALIZER;
        mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, &all, NULL, NULL);
        const bson_t *d;
        while (mongoc_cursor_next(cur, &d)) {
            struct store_binding b = {
                .contact_id = (uint64_t)get_int(d, "contact_id", 0),
                .username = get_str(d, "username"),
                .domain = get_str(d, "domain"),
                .contact = get_str(d, "contact"),
                .received = get_str(d, "received"),
                .path = get_str(d, "path"),
                .expires = (time_t)get_int(d, "expires", 0),
                .q = get_double(d, "q", -1),
                .callid = get_str(d, "callid"),
                .cseq = (uint32_t)get_int(d, "cseq", 0),
                .last_modified = (time_t)(get_int(d, "last_modified", 0) / 1000),
                .flags = (int)get_int(d, "flags", 0),
                .user_agent = get_str(d, "user_agent"),
                .socket = get_str(d, "socket"),
                .sip_instance = get_str(d, "sip_instance"),
                .kv_store = get_str(d, "kv_store"),
            };
            if (b.contact)
                cb(arg, &b);
        }
        if (mongoc_cursor_error(cur, &e))
            rc = fail(err, errlen, "loading bindings", &e);
        mongoc_cursor_destroy(cur);
    }
    mongoc_collection_destroy(c);
    return rc;
}

/* ------------------------------------------------------------------ one-document helpers */

/* The first document matching q in collection name (sorted by sort when not NULL), copied
 * into *out (the caller destroys it): 1, 0 when none, -1 with err. */
static int find_one(struct mongo_db *m, const char *name, const bson_t *q, const bson_t *sort,
                    bson_t *out, const char *what, char *err, size_t errlen)
{
    if (settle_order(m, err, errlen) < 0)
        return -1;
    mongoc_collection_t *c = coll(m, name);
    bson_t opts = BSON_INITIALIZER;
    BSON_APPEND_INT64(&opts, "limit", 1);
    if (sort)
        BSON_APPEND_DOCUMENT(&opts, "sort", sort);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, q, &opts, NULL);
    const bson_t *d;
    bson_error_t e;
    int rc = 0;
    if (mongoc_cursor_next(cur, &d)) {
        bson_copy_to(d, out);
        rc = 1;
    } else if (mongoc_cursor_error(cur, &e)) {
        rc = fail(err, errlen, what, &e);
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(&opts);
    mongoc_collection_destroy(c);
    return rc;
}

/* Delete the document matching q: 1 deleted, 0 none, -1 with err. */
static int delete_one(struct mongo_db *m, const char *name, const bson_t *q, const char *what,
                      char *err, size_t errlen)
{
    if (settle_order(m, err, errlen) < 0)
        return -1;
    mongoc_collection_t *c = coll(m, name);
    bson_t reply;
    bson_error_t e;
    int rc = mongoc_collection_delete_one(c, q, NULL, &reply, &e)
                 ? reply_count(&reply, "deletedCount") > 0
                 : fail(err, errlen, what, &e);
    bson_destroy(&reply);
    mongoc_collection_destroy(c);
    return rc;
}

/* Upsert by q with the update u: 1 a document was made, 0 one was changed, -1 with err. */
static int upsert(struct mongo_db *m, const char *name, const bson_t *q, const bson_t *u,
                  const char *what, char *err, size_t errlen)
{
    if (settle_order(m, err, errlen) < 0)
        return -1;
    mongoc_collection_t *c = coll(m, name);
    bson_t *opts = BCON_NEW("upsert", BCON_BOOL(true));
    bson_t reply;
    bson_error_t e;
    int rc = mongoc_collection_update_one(c, q, u, opts, &reply, &e)
                 ? reply_count(&reply, "upsertedCount") > 0
                 : fail(err, errlen, what, &e);
    bson_destroy(&reply);
    bson_destroy(opts);
    mongoc_collection_destroy(c);
    return rc;
}

/* Insert doc: 1 inserted, 0 refused by a unique index, -1 with err. */
static int insert_unique(struct mongo_db *m, const char *name, const bson_t *doc, const char *what,
                         char *err, size_t errlen)
{
    if (settle_order(m, err, errlen) < 0)
        return -1;
    mongoc_collection_t *c = coll(m, name);
    bson_error_t e;
    int rc = 1;
    if (!mongoc_collection_insert_one(c, doc, NULL, NULL, &e))
        rc = duplicate_key(&e) ? 0 : fail(err, errlen, what, &e);
    mongoc_collection_destroy(c);
    return rc;
}

/* Visit the documents of collection name matching q, sorted, at most limit (0: all). */
static int each(struct mongo_db *m, const char *name, const bson_t *q, const bson_t *sort,
                int64_t limit, void (*fn)(const bson_t *d, void *arg), void *arg, const char *what,
                char *err, size_t errlen)
{
    if (settle_order(m, err, errlen) < 0)
        return -1;
    mongoc_collection_t *c = coll(m, name);
    bson_t opts = BSON_INITIALIZER;
    if (sort)
        BSON_APPEND_DOCUMENT(&opts, "sort", sort);
    if (limit > 0)
        BSON_APPEND_INT64(&opts, "limit", limit);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, q, &opts, NULL);
    const bson_t *d;
    while (mongoc_cursor_next(cur, &d))
        fn(d, arg);
    bson_error_t e;
    int rc = mongoc_cursor_error(cur, &e) ? fail(err, errlen, what, &e) : 0;
    mongoc_cursor_destroy(cur);
    bson_destroy(&opts);
    mongoc_collection_destroy(c);
    return rc;
}

/* ------------------------------------------------------------------ subscriber */

static int mongo_get_subscriber(void *p, const char *user, const char *domain,
                                struct store_subscriber *out, char *err, size_t errlen)
{
    bson_t *q = BCON_NEW("username", BCON_UTF8(user), "domain", BCON_UTF8(domain));
    bson_t d;
    int rc = find_one(p, "subscriber", q, NULL, &d, "reading a subscriber", err, errlen);
    if (rc == 1) {
        copy_str(&d, "username", out->username, sizeof out->username);
        copy_str(&d, "domain", out->domain, sizeof out->domain);
        copy_str(&d, "password", out->password, sizeof out->password);
        copy_str(&d, "ha1", out->ha1, sizeof out->ha1);
        copy_str(&d, "ha1_sha256", out->ha1_sha256, sizeof out->ha1_sha256);
        bson_destroy(&d);
    }
    bson_destroy(q);
    return rc;
}

static int mongo_user_put(void *p, const struct store_subscriber *sub, char *err, size_t errlen)
{
    bson_t *q = BCON_NEW("username", BCON_UTF8(sub->username), "domain", BCON_UTF8(sub->domain));
    bson_t *u = BCON_NEW("$set", "{", "password", BCON_UTF8(sub->password), "ha1",
                         BCON_UTF8(sub->ha1), "ha1_sha256", BCON_UTF8(sub->ha1_sha256), "}");
    int rc = upsert(p, "subscriber", q, u, "writing a subscriber", err, errlen);
    bson_destroy(q);
    bson_destroy(u);
    return rc < 0 ? -1 : 0;
}

static int mongo_user_del(void *p, const char *user, const char *domain, char *err, size_t errlen)
{
    bson_t *q = BCON_NEW("username", BCON_UTF8(user), "domain", BCON_UTF8(domain));
    int rc = delete_one(p, "subscriber", q, "deleting a subscriber", err, errlen);
    bson_destroy(q);
    return rc;
}

struct user_visit {
    store_user_cb cb;
    void *arg;
};

static void user_row(const bson_t *d, void *arg)
{
    struct user_visit *v = arg;
    struct store_subscriber sub = {0};
    copy_str(d, "username", sub.username, sizeof sub.username);
    copy_str(d, "domain", sub.domain, sizeof sub.domain);
    v->cb(v->arg, &sub);
}

static int mongo_user_list(void *p, store_user_cb cb, void *arg, char *err, size_t errlen)
{
    struct user_visit v = {cb, arg};
    bson_t all = BSON_INITIALIZER;
    bson_t *sort = BCON_NEW("domain", BCON_INT32(1), "username", BCON_INT32(1));
    int rc = each(p, "subscriber", &all, sort, 0, user_row, &v, "listing subscribers", err, errlen);
    bson_destroy(sort);
    return rc;
}

/* ------------------------------------------------------------------ admin */

static int mongo_admin_put(void *p, const char *name, const char *hash, time_t now, char *err,
                           size_t errlen)
{
    bson_t *q = BCON_NEW("_id", BCON_UTF8(name));
    bson_t *u = BCON_NEW("$set", "{", "password_hash", BCON_UTF8(hash), "}", "$setOnInsert", "{",
                         "created_at", BCON_INT64((int64_t)now), "}");
    int rc = upsert(p, "sipwake_admins", q, u, "storing an admin account", err, errlen);
    bson_destroy(q);
    bson_destroy(u);
    return rc;
}

static int mongo_admin_del(void *p, const char *name, char *err, size_t errlen)
{
    bson_t *q = BCON_NEW("_id", BCON_UTF8(name));
    int rc = delete_one(p, "sipwake_admins", q, "deleting an admin account", err, errlen);
    bson_destroy(q);
    return rc;
}

static int mongo_admin_hash(void *p, const char *name, char *hash, size_t hash_len, char *err,
                            size_t errlen)
{
    bson_t *q = BCON_NEW("_id", BCON_UTF8(name));
    bson_t d;
    int rc = find_one(p, "sipwake_admins", q, NULL, &d, "reading an admin account", err, errlen);
    if (rc == 1) {
        copy_str(&d, "password_hash", hash, hash_len);
        bson_destroy(&d);
    }
    bson_destroy(q);
    return rc;
}

struct name_visit {
    store_name_cb cb;
    void *arg;
};

static void name_row(const bson_t *d, void *arg)
{
    struct name_visit *v = arg;
    const char *name = get_str(d, "_id");
    if (name)
        v->cb(v->arg, name, (time_t)get_int(d, "created_at", 0));
}

/* Every document of collection name, by _id (the name): cb(name, created_at). */
static int names(struct mongo_db *m, const char *name, store_name_cb cb, void *arg,
                 const char *what, char *err, size_t errlen)
{
    struct name_visit v = {cb, arg};
    bson_t all = BSON_INITIALIZER;
    bson_t *sort = BCON_NEW("_id", BCON_INT32(1));
    int rc = each(m, name, &all, sort, 0, name_row, &v, what, err, errlen);
    bson_destroy(sort);
    return rc;
}

static int mongo_admin_list(void *p, store_name_cb cb, void *arg, char *err, size_t errlen)
{
    return names(p, "sipwake_admins", cb, arg, "listing admin accounts", err, errlen);
}

static int mongo_token_put(void *p, const char *name, const char *sha256_hex, time_t now, char *err,
                           size_t errlen)
{
    bson_t *d = BCON_NEW("_id", BCON_UTF8(name), "token_sha256", BCON_UTF8(sha256_hex),
                         "created_at", BCON_INT64((int64_t)now));
    int rc = insert_unique(p, "sipwake_admin_tokens", d, "storing an API token", err, errlen);
    bson_destroy(d);
    return rc;
}

static int mongo_token_del(void *p, const char *name, char *err, size_t errlen)
{
    bson_t *q = BCON_NEW("_id", BCON_UTF8(name));
    int rc = delete_one(p, "sipwake_admin_tokens", q, "deleting an API token", err, errlen);
    bson_destroy(q);
    return rc;
}

static int mongo_token_find(void *p, const char *sha256_hex, char *name, size_t name_len, char *err,
                            size_t errlen)
{
    bson_t *q = BCON_NEW("token_sha256", BCON_UTF8(sha256_hex));
    bson_t d;
    int rc = find_one(p, "sipwake_admin_tokens", q, NULL, &d, "reading API tokens", err, errlen);
    if (rc == 1) {
        copy_str(&d, "_id", name, name_len);
        bson_destroy(&d);
    }
    bson_destroy(q);
    return rc;
}

static int mongo_token_list(void *p, store_name_cb cb, void *arg, char *err, size_t errlen)
{
    return names(p, "sipwake_admin_tokens", cb, arg, "listing API tokens", err, errlen);
}

static int mongo_audit_add(void *p, const struct store_audit *a, char *err, size_t errlen)
{
    bson_t d = BSON_INITIALIZER;
    BSON_APPEND_INT64(&d, "time_ms", a->time_ms);
    put_str(&d, "who", a->who);
    put_str(&d, "action", a->action);
    put_str(&d, "object", a->object);
    put_str(&d, "detail", a->detail);
    put_str(&d, "source", a->source);
    int rc = insert_unique(p, "sipwake_audit", &d, "writing the audit log", err, errlen);
    bson_destroy(&d);
    if (rc == 0) { /* the _id is the driver's new ObjectId: a collision is not ours */
        snprintf(err, errlen, "mongodb: writing the audit log: duplicate key");
        return -1;
    }
    return rc < 0 ? -1 : 0;
}

struct audit_visit {
    store_audit_cb cb;
    void *arg;
};

static void audit_row(const bson_t *d, void *arg)
{
    struct audit_visit *v = arg;
    struct store_audit a = {.time_ms = get_int(d, "time_ms", 0),
                            .who = get_str(d, "who"),
                            .action = get_str(d, "action"),
                            .object = get_str(d, "object"),
                            .detail = get_str(d, "detail"),
                            .source = get_str(d, "source")};
    v->cb(v->arg, &a);
}

static int mongo_audit_read(void *p, int limit, store_audit_cb cb, void *arg, char *err,
                            size_t errlen)
{
    struct audit_visit v = {cb, arg};
    bson_t all = BSON_INITIALIZER;
    /* newest first; within one millisecond by _id, the ObjectId the driver made (seconds, then
     * a per-process counter) */
    bson_t *sort = BCON_NEW("time_ms", BCON_INT32(-1), "_id", BCON_INT32(-1));
    int rc = each(p, "sipwake_audit", &all, sort, limit, audit_row, &v, "reading the audit log",
                  err, errlen);
    bson_destroy(sort);
    return rc;
}

/* ------------------------------------------------------------------ tenants */

/* 1 when collection name has a document with _id id, 0 when not, -1 with err. */
static int exists_id(struct mongo_db *m, const char *name, const char *id, char *err, size_t errlen)
{
    bson_t *q = BCON_NEW("_id", BCON_UTF8(id));
    bson_t d;
    int rc = find_one(m, name, q, NULL, &d, "reading tenants", err, errlen);
    if (rc == 1)
        bson_destroy(&d);
    bson_destroy(q);
    return rc;
}

/* Apply update u to every document of collection name matching q (u NULL: delete them); *n
 * (when n is not NULL): how many matched, or were deleted. */
static int update_all(struct mongo_db *m, const char *name, const bson_t *q, const bson_t *u,
                      int64_t *n, const char *what, char *err, size_t errlen)
{
    if (settle_order(m, err, errlen) < 0)
        return -1;
    mongoc_collection_t *c = coll(m, name);
    bson_t reply;
    bson_error_t e;
    int ok = u ? mongoc_collection_update_many(c, q, u, NULL, &reply, &e)
               : mongoc_collection_delete_many(c, q, NULL, &reply, &e);
    if (ok && n)
        *n = reply_count(&reply, u ? "matchedCount" : "deletedCount");
    bson_destroy(&reply);
    mongoc_collection_destroy(c);
    return ok ? 0 : fail(err, errlen, what, &e);
}

static int mongo_tenant_add(void *p, const char *name, time_t now, char *err, size_t errlen)
{
    bson_t *d = BCON_NEW("_id", BCON_UTF8(name), "created_at", BCON_INT64((int64_t)now));
    int rc = insert_unique(p, "sipwake_tenants", d, "adding a tenant", err, errlen);
    bson_destroy(d);
    return rc;
}

/* A tenant goes with its domains and credentials; the tenant's own document last, so that a
 * delete cut short leaves a tenant to delete again, not orphans. */
static int mongo_tenant_del(void *p, const char *name, char *err, size_t errlen)
{
    struct mongo_db *m = p;
    int found = exists_id(m, "sipwake_tenants", name, err, errlen);
    if (found <= 0)
        return found;
    bson_t *q = BCON_NEW("tenant", BCON_UTF8(name));
    bson_t *id = BCON_NEW("_id", BCON_UTF8(name));
    int rc = update_all(m, "sipwake_tenant_domains", q, NULL, NULL, "deleting a tenant", err,
                        errlen) < 0 ||
                     update_all(m, "sipwake_credentials", q, NULL, NULL, "deleting a tenant", err,
                                errlen) < 0 ||
                     update_all(m, "sipwake_tenants", id, NULL, NULL, "deleting a tenant", err,
                                errlen) < 0
                 ? -1
                 : 1;
    bson_destroy(q);
    bson_destroy(id);
    return rc;
}

/* The new name is taken first (its insert fails if it exists), then everything that names
 * the tenant moves, then the old name goes. Without a transaction, a rename cut short leaves
 * both names, the old one's documents partly moved: renaming the rest by hand ends it. */
static int mongo_tenant_rename(void *p, const char *from, const char *to, char *err, size_t errlen)
{
    struct mongo_db *m = p;
    bson_t *q = BCON_NEW("_id", BCON_UTF8(from));
    bson_t d;
    int found = find_one(m, "sipwake_tenants", q, NULL, &d, "renaming a tenant", err, errlen);
    bson_destroy(q);
    if (found <= 0)
        return found;
    bson_t *nd =
        BCON_NEW("_id", BCON_UTF8(to), "created_at", BCON_INT64(get_int(&d, "created_at", 0)));
    bson_destroy(&d);
    int rc = insert_unique(m, "sipwake_tenants", nd, "renaming a tenant", err, errlen);
    bson_destroy(nd);
    if (rc <= 0)
        return rc;
    static const char *const children[] = {"sipwake_tenant_domains", "sipwake_credentials",
                                           "sipwake_push_log"};
    bson_t *cq = BCON_NEW("tenant", BCON_UTF8(from));
    bson_t *u = BCON_NEW("$set", "{", "tenant", BCON_UTF8(to), "}");
    bson_t *old = BCON_NEW("_id", BCON_UTF8(from));
    for (size_t i = 0; i < UTIL_ARRAY_LEN(children) && rc == 1; i++)
        if (update_all(m, children[i], cq, u, NULL, "renaming a tenant", err, errlen) < 0)
            rc = -1;
    if (rc == 1 &&
        update_all(m, "sipwake_tenants", old, NULL, NULL, "renaming a tenant", err, errlen) < 0)
        rc = -1;
    bson_destroy(cq);
    bson_destroy(u);
    bson_destroy(old);
    return rc;
}

static int mongo_domain_add(void *p, const char *domain, const char *tenant, char *err,
                            size_t errlen)
{
    struct mongo_db *m = p;
    int found = exists_id(m, "sipwake_tenants", tenant, err, errlen);
    if (found <= 0)
        return found;
    bson_t *d = BCON_NEW("_id", BCON_UTF8(domain), "tenant", BCON_UTF8(tenant));
    int rc = insert_unique(m, "sipwake_tenant_domains", d, "adding a domain", err, errlen);
    bson_destroy(d);
    return rc;
}

static int mongo_domain_del(void *p, const char *domain, char *err, size_t errlen)
{
    bson_t *q = BCON_NEW("_id", BCON_UTF8(domain));
    int rc = delete_one(p, "sipwake_tenant_domains", q, "deleting a domain", err, errlen);
    bson_destroy(q);
    return rc;
}

static int mongo_credential_put(void *p, const struct store_credential *c, char *err, size_t errlen)
{
    struct mongo_db *m = p;
    int found = exists_id(m, "sipwake_tenants", c->tenant, err, errlen);
    if (found <= 0)
        return found;
    bson_t *q = BCON_NEW("tenant", BCON_UTF8(c->tenant), "set_name", BCON_UTF8(c->set_name), "kind",
                         BCON_UTF8(c->kind));
    bson_t d = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&d, "tenant", c->tenant);
    BSON_APPEND_UTF8(&d, "set_name", c->set_name);
    BSON_APPEND_UTF8(&d, "kind", c->kind);
    put_str(&d, "key_id", c->key_id);
    put_str(&d, "team_id", c->team_id);
    put_str(&d, "label", c->label);
    BSON_APPEND_BINARY(&d, "secret", BSON_SUBTYPE_BINARY, c->secret, (uint32_t)c->secret_len);
    if (c->not_after)
        BSON_APPEND_INT64(&d, "not_after", (int64_t)c->not_after);
    else
        BSON_APPEND_NULL(&d, "not_after");
    BSON_APPEND_INT64(&d, "created_at", (int64_t)c->created_at);
    BSON_APPEND_UTF8(&d, "environment", c->environment ? c->environment : "both");
    int rc = 1;
    if (settle_order(m, err, errlen) < 0) {
        rc = -1;
    } else {
        mongoc_collection_t *cl = coll(m, "sipwake_credentials");
        bson_t *opts = BCON_NEW("upsert", BCON_BOOL(true));
        bson_error_t e;
        if (!mongoc_collection_replace_one(cl, q, &d, opts, NULL, &e))
            rc = fail(err, errlen, "storing a credential", &e);
        bson_destroy(opts);
        mongoc_collection_destroy(cl);
    }
    bson_destroy(&d);
    bson_destroy(q);
    return rc;
}

static int mongo_credential_del(void *p, const char *tenant, const char *set_name, const char *kind,
                                char *err, size_t errlen)
{
    bson_t *q = kind ? BCON_NEW("tenant", BCON_UTF8(tenant), "set_name", BCON_UTF8(set_name),
                                "kind", BCON_UTF8(kind))
                     : BCON_NEW("tenant", BCON_UTF8(tenant), "set_name", BCON_UTF8(set_name));
    int64_t n = 0;
    int rc =
        update_all(p, "sipwake_credentials", q, NULL, &n, "deleting a credential", err, errlen);
    bson_destroy(q);
    return rc < 0 ? -1 : n > 0;
}

static void tenant_row(const bson_t *d, void *arg)
{
    const struct store_tenant_visitor *v = arg;
    const char *name = get_str(d, "_id");
    if (name)
        v->tenant(v->arg, name, (time_t)get_int(d, "created_at", 0));
}

static void domain_row(const bson_t *d, void *arg)
{
    const struct store_tenant_visitor *v = arg;
    const char *domain = get_str(d, "_id"), *tenant = get_str(d, "tenant");
    if (domain && tenant)
        v->domain(v->arg, domain, tenant);
}

static void credential_row(const bson_t *d, void *arg)
{
    const struct store_tenant_visitor *v = arg;
    struct store_credential c = {
        .tenant = get_str(d, "tenant"),
        .set_name = get_str(d, "set_name"),
        .kind = get_str(d, "kind"),
        .key_id = get_str(d, "key_id"),
        .team_id = get_str(d, "team_id"),
        .label = get_str(d, "label"),
        .not_after = (time_t)get_int(d, "not_after", 0),
        .created_at = (time_t)get_int(d, "created_at", 0),
        .environment = get_str(d, "environment"),
    };
    bson_iter_t it;
    if (bson_iter_init_find(&it, d, "secret") && BSON_ITER_HOLDS_BINARY(&it)) {
        bson_subtype_t sub;
        uint32_t len;
        bson_iter_binary(&it, &sub, &len, &c.secret);
        c.secret_len = len;
    }
    if (c.tenant && c.set_name && c.kind && c.secret)
        v->credential(v->arg, &c);
}

static int mongo_tenants_read(void *p, const struct store_tenant_visitor *v, char *err,
                              size_t errlen)
{
    bson_t all = BSON_INITIALIZER;
    bson_t *by_id = BCON_NEW("_id", BCON_INT32(1));
    bson_t *by_key =
        BCON_NEW("tenant", BCON_INT32(1), "set_name", BCON_INT32(1), "kind", BCON_INT32(1));
    int rc = each(p, "sipwake_tenants", &all, by_id, 0, tenant_row, (void *)v, "reading tenants",
                  err, errlen) < 0 ||
                     each(p, "sipwake_tenant_domains", &all, by_id, 0, domain_row, (void *)v,
                          "reading tenant domains", err, errlen) < 0 ||
                     each(p, "sipwake_credentials", &all, by_key, 0, credential_row, (void *)v,
                          "reading credentials", err, errlen) < 0
                 ? -1
                 : 0;
    bson_destroy(by_id);
    bson_destroy(by_key);
    return rc;
}

/* ------------------------------------------------------------------ push log */

/* A row's _id is made from its fields, so that a batch applied again after a failure does not
 * log the same push twice (its insert meets the row already there). */
static int mongo_push_log_add(void *p, const struct store_push_log *r, char *err, size_t errlen)
{
    const char *const fields[] = {r->tenant,  r->credentials, r->provider, r->kind,  r->aor,
                                  r->call_id, r->token_hash,  r->outcome,  r->reason};
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < UTIL_ARRAY_LEN(fields); i++) {
        const char *f = fields[i] ? fields[i] : "";
        h = (h ^ util_hash(f, strlen(f) + 1)) * 1099511628211ull;
    }
    h ^= (uint64_t)r->status * 31 + (uint64_t)r->latency_ms;
    char id[64];
    snprintf(id, sizeof id, "%" PRId64 "-%016" PRIx64, r->time_ms, h);
    bson_t d = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&d, "_id", id);
    BSON_APPEND_INT64(&d, "time_ms", r->time_ms);
    put_str(&d, "tenant", r->tenant);
    put_str(&d, "credentials", r->credentials);
    put_str(&d, "provider", r->provider ? r->provider : "?");
    put_str(&d, "kind", r->kind ? r->kind : "?");
    put_str(&d, "aor", r->aor);
    put_str(&d, "call_id", r->call_id);
    put_str(&d, "token_hash", r->token_hash);
    put_str(&d, "outcome", r->outcome ? r->outcome : "?");
    BSON_APPEND_INT32(&d, "status", r->status);
    put_str(&d, "reason", r->reason);
    BSON_APPEND_INT64(&d, "latency_ms", (int64_t)r->latency_ms);
    int rc = insert_unique(p, "sipwake_push_log", &d, "writing the push log", err, errlen);
    bson_destroy(&d);
    return rc < 0 ? -1 : 0;
}

static int mongo_push_log_prune(void *p, int64_t before_ms, char *err, size_t errlen)
{
    bson_t *q = BCON_NEW("time_ms", "{", "$lt", BCON_INT64(before_ms), "}");
    int rc = update_all(p, "sipwake_push_log", q, NULL, NULL, "pruning the push log", err, errlen);
    bson_destroy(q);
    return rc;
}

struct push_visit {
    store_push_log_cb cb;
    void *arg;
};

static void push_row(const bson_t *d, void *arg)
{
    struct push_visit *v = arg;
    struct store_push_log r = {
        .time_ms = get_int(d, "time_ms", 0),
        .tenant = get_str(d, "tenant"),
        .credentials = get_str(d, "credentials"),
        .provider = get_str(d, "provider"),
        .kind = get_str(d, "kind"),
        .aor = get_str(d, "aor"),
        .call_id = get_str(d, "call_id"),
        .token_hash = get_str(d, "token_hash"),
        .outcome = get_str(d, "outcome"),
        .status = (int)get_int(d, "status", 0),
        .reason = get_str(d, "reason"),
        .latency_ms = (long)get_int(d, "latency_ms", 0),
    };
    v->cb(v->arg, &r);
}

static int mongo_push_log_read(void *p, const char *tenant, const char *provider,
                               const char *reason, int64_t before_ms, int limit,
                               store_push_log_cb cb, void *arg, char *err, size_t errlen)
{
    bson_t q = BSON_INITIALIZER;
    if (tenant)
        BSON_APPEND_UTF8(&q, "tenant", tenant);
    if (provider)
        BSON_APPEND_UTF8(&q, "provider", provider);
    if (reason) { /* a reason, or an outcome, as the SQLite query takes it */
        bson_t or, a, b;
        BSON_APPEND_ARRAY_BEGIN(&q, "$or", & or);
        BSON_APPEND_DOCUMENT_BEGIN(& or, "0", &a);
        BSON_APPEND_UTF8(&a, "reason", reason);
        bson_append_document_end(& or, &a);
        BSON_APPEND_DOCUMENT_BEGIN(& or, "1", &b);
        BSON_APPEND_UTF8(&b, "outcome", reason);
        bson_append_document_end(& or, &b);
        bson_append_array_end(&q, & or);
    }
    if (before_ms > 0) {
        bson_t lt;
        BSON_APPEND_DOCUMENT_BEGIN(&q, "time_ms", &lt);
        BSON_APPEND_INT64(&lt, "$lt", before_ms);
        bson_append_document_end(&q, &lt);
    }
    struct push_visit v = {cb, arg};
    bson_t *sort = BCON_NEW("time_ms", BCON_INT32(-1), "_id", BCON_INT32(-1));
    int rc = each(p, "sipwake_push_log", &q, sort, limit, push_row, &v, "reading the push log", err,
                  errlen);
    bson_destroy(sort);
    bson_destroy(&q);
    return rc;
}

/* ------------------------------------------------------------------ offline messages */

/*
 * One document per stored MESSAGE, its deliveries inside it: {_id: the order of receipt (a
 * counter in sipwake_counters), aor, call_id, cseq, ..., deliveries: {KEY: {device,
 * delivered_ms}}}, KEY being the device with '%', '.' and '$' percent-encoded (a field name
 * cannot hold them), delivered_ms 0 until delivered. A message and its deliveries are one
 * document, so storing it is one insert, all or nothing: a batch applied again finds it
 * stored (same AOR, Call-ID and CSeq, a unique index) and does not store it twice.
 */

static void device_key(const char *device, char *out, size_t n)
{
    size_t j = 0;
    const char *c = device;
    for (; *c && j + 24 < n; c++) {
        if (*c == '%' || *c == '.' || *c == '$')
            j += (size_t)snprintf(out + j, n - j, "%%%02X", (unsigned char)*c);
        else
            out[j++] = *c;
    }
    if (*c) /* too long to keep whole: the rest as a hash of the whole name, so two differ */
        j += (size_t)snprintf(out + j, n - j, "#%016" PRIx64, util_hash(device, strlen(device)));
    out[j] = 0;
}

/* The next message id: {_id: "messages", n} in sipwake_counters, incremented. */
static int next_message_id(struct mongo_db *m, int64_t *id, char *err, size_t errlen)
{
    mongoc_collection_t *c = coll(m, "sipwake_counters");
    mongoc_find_and_modify_opts_t *o = mongoc_find_and_modify_opts_new();
    bson_t *u = BCON_NEW("$inc", "{", "n", BCON_INT64(1), "}");
    mongoc_find_and_modify_opts_set_update(o, u);
    mongoc_find_and_modify_opts_set_flags(o, MONGOC_FIND_AND_MODIFY_UPSERT |
                                                 MONGOC_FIND_AND_MODIFY_RETURN_NEW);
    bson_t *q = BCON_NEW("_id", BCON_UTF8("messages"));
    bson_t reply;
    bson_error_t e;
    int rc = 0;
    if (!mongoc_collection_find_and_modify_with_opts(c, q, o, &reply, &e)) {
        rc = fail(err, errlen, "numbering a message", &e);
    } else {
        bson_iter_t it, v;
        if (bson_iter_init_find(&it, &reply, "value") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
            bson_iter_recurse(&it, &v) && bson_iter_find(&v, "n") && BSON_ITER_HOLDS_NUMBER(&v)) {
            *id = bson_iter_as_int64(&v);
        } else {
            snprintf(err, errlen, "mongodb: numbering a message: no counter in the reply");
            rc = -1;
        }
    }
    bson_destroy(&reply);
    bson_destroy(q);
    bson_destroy(u);
    mongoc_find_and_modify_opts_destroy(o);
    mongoc_collection_destroy(c);
    return rc;
}

/* The count command's n for q in collection name, or -1 with err. */
static int64_t count(struct mongo_db *m, const char *name, const bson_t *q, const char *what,
                     char *err, size_t errlen)
{
    if (settle_order(m, err, errlen) < 0)
        return -1;
    bson_t cmd = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&cmd, "count", name);
    BSON_APPEND_DOCUMENT(&cmd, "query", q);
    bson_t reply;
    bson_error_t e;
    int64_t n = mongoc_client_command_simple(m->client, m->dbname, &cmd, NULL, &reply, &e)
                    ? get_int(&reply, "n", -1)
                    : fail(err, errlen, what, &e);
    bson_destroy(&reply);
    bson_destroy(&cmd);
    return n;
}

static int mongo_message_put(void *p, const struct store_message *msg, const char *const *devices,
                             size_t n_devices, long max_per_aor, int64_t *id, char *err,
                             size_t errlen)
{
    struct mongo_db *m = p;
    bson_t *q = BCON_NEW("aor", BCON_UTF8(msg->aor), "call_id", BCON_UTF8(msg->call_id), "cseq",
                         BCON_INT64((int64_t)msg->cseq));
    bson_t d;
    int rc = find_one(m, "sipwake_messages", q, NULL, &d, "reading messages", err, errlen);
    bson_destroy(q);
    if (rc == 1) { /* stored before: a retransmission, or this batch applied again */
        *id = get_int(&d, "_id", 0);
        bson_destroy(&d);
        return 0;
    }
    if (rc < 0)
        return -1;
    bson_t *by_aor = BCON_NEW("aor", BCON_UTF8(msg->aor));
    int64_t n = count(m, "sipwake_messages", by_aor, "counting messages", err, errlen);
    bson_destroy(by_aor);
    if (n < 0)
        return -1;
    if (n >= max_per_aor)
        return 2;
    if (next_message_id(m, id, err, errlen) < 0)
        return -1;
    bson_t doc = BSON_INITIALIZER, dl;
    BSON_APPEND_INT64(&doc, "_id", *id);
    BSON_APPEND_UTF8(&doc, "aor", msg->aor);
    BSON_APPEND_UTF8(&doc, "call_id", msg->call_id);
    BSON_APPEND_INT64(&doc, "cseq", (int64_t)msg->cseq);
    put_str(&doc, "from_hdr", msg->from_hdr);
    put_str(&doc, "to_hdr", msg->to_hdr);
    put_str(&doc, "content_type", msg->content_type);
    if (msg->body)
        BSON_APPEND_BINARY(&doc, "body", BSON_SUBTYPE_BINARY, msg->body, (uint32_t)msg->body_len);
    else
        BSON_APPEND_NULL(&doc, "body");
    BSON_APPEND_INT64(&doc, "received_ms", msg->received_ms);
    BSON_APPEND_INT64(&doc, "expires_ms", msg->expires_ms);
    BSON_APPEND_INT32(&doc, "new_devices", msg->new_devices ? 1 : 0);
    put_str(&doc, "tenant", msg->tenant);
    BSON_APPEND_DOCUMENT_BEGIN(&doc, "deliveries", &dl);
    for (size_t i = 0; i < n_devices; i++) {
        char key[512];
        bson_t one;
        device_key(devices[i], key, sizeof key);
        BSON_APPEND_DOCUMENT_BEGIN(&dl, key, &one);
        BSON_APPEND_UTF8(&one, "device", devices[i]);
        BSON_APPEND_INT64(&one, "delivered_ms", 0);
        bson_append_document_end(&dl, &one);
    }
    bson_append_document_end(&doc, &dl);
    rc = insert_unique(m, "sipwake_messages", &doc, "storing a message", err, errlen);
    bson_destroy(&doc);
    if (rc == 0) { /* another node stored it meanwhile */
        snprintf(err, errlen, "mongodb: storing a message: stored meanwhile; applied again");
        return -1;
    }
    return rc < 0 ? -1 : 1;
}

/* 1 when every delivery of message d is done. */
static int all_delivered(const bson_t *d)
{
    bson_iter_t it, dl, one;
    if (!bson_iter_init_find(&it, d, "deliveries") || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
        !bson_iter_recurse(&it, &dl))
        return 1;
    while (bson_iter_next(&dl)) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&dl) || !bson_iter_recurse(&dl, &one))
            continue;
        if (bson_iter_find(&one, "delivered_ms") && BSON_ITER_HOLDS_NUMBER(&one) &&
            bson_iter_as_int64(&one) == 0)
            return 0;
    }
    return 1;
}

static int mongo_message_delivered(void *p, int64_t id, const char *device, int64_t now_ms,
                                   char *err, size_t errlen)
{
    struct mongo_db *m = p;
    char key[512], path[600];
    device_key(device, key, sizeof key);
    snprintf(path, sizeof path, "deliveries.%s", key);
    bson_t *q = BCON_NEW("_id", BCON_INT64(id));
    bson_t *u = BCON_NEW("$set", "{", path, "{", "device", BCON_UTF8(device), "delivered_ms",
                         BCON_INT64(now_ms), "}", "}");
    int64_t matched = 0;
    int rc = update_all(m, "sipwake_messages", q, u, &matched, "marking a delivery", err, errlen);
    bson_destroy(u);
    if (rc == 0 && matched > 0) { /* the last delivery: the message goes */
        bson_t d;
        rc = find_one(m, "sipwake_messages", q, NULL, &d, "reading a message", err, errlen);
        if (rc == 1) {
            int last = all_delivered(&d);
            bson_destroy(&d);
            rc = last ? delete_one(m, "sipwake_messages", q, "removing a delivered message", err,
                                   errlen)
                      : 0;
        }
    }
    bson_destroy(q);
    return rc;
}

/* The query for what device of aor is still to get: its pending deliveries, and the
 * messages for new devices that have none for it; unexpired. */
static bson_t *for_device_query(const char *aor, const char *device, int64_t now_ms)
{
    char key[512], dpath[600], done[640];
    device_key(device, key, sizeof key);
    snprintf(dpath, sizeof dpath, "deliveries.%s", key);
    snprintf(done, sizeof done, "deliveries.%s.delivered_ms", key);
    return BCON_NEW("aor", BCON_UTF8(aor), "expires_ms", "{", "$gt", BCON_INT64(now_ms), "}", "$or",
                    "[", "{", done, BCON_INT64(0), "}", "{", dpath, "{", "$exists",
                    BCON_BOOL(false), "}", "new_devices", BCON_INT32(1), "}", "]");
}

struct message_visit {
    const char *aor;
    store_message_cb cb;
    void *arg;
};

static void message_row(const bson_t *d, void *arg)
{
    struct message_visit *v = arg;
    struct store_message msg = {
        .id = get_int(d, "_id", 0),
        .aor = v->aor,
        .call_id = get_str(d, "call_id"),
        .cseq = (uint32_t)get_int(d, "cseq", 0),
        .from_hdr = get_str(d, "from_hdr"),
        .to_hdr = get_str(d, "to_hdr"),
        .content_type = get_str(d, "content_type"),
        .received_ms = get_int(d, "received_ms", 0),
        .expires_ms = get_int(d, "expires_ms", 0),
        .new_devices = (int)get_int(d, "new_devices", 0),
        .tenant = get_str(d, "tenant"),
    };
    bson_iter_t it;
    if (bson_iter_init_find(&it, d, "body") && BSON_ITER_HOLDS_BINARY(&it)) {
        bson_subtype_t sub;
        uint32_t len;
        bson_iter_binary(&it, &sub, &len, &msg.body);
        msg.body_len = len;
    }
    if (msg.call_id)
        v->cb(v->arg, &msg);
}

static int mongo_messages_for_device(void *p, const char *aor, const char *device, int64_t now_ms,
                                     store_message_cb cb, void *arg, char *err, size_t errlen)
{
    bson_t *q = for_device_query(aor, device, now_ms);
    bson_t *sort = BCON_NEW("_id", BCON_INT32(1));
    struct message_visit v = {aor, cb, arg};
    int rc =
        each(p, "sipwake_messages", q, sort, 0, message_row, &v, "reading messages", err, errlen);
    bson_destroy(sort);
    bson_destroy(q);
    return rc;
}

static int mongo_messages_expire(void *p, int64_t now_ms, char *err, size_t errlen)
{
    bson_t *q = BCON_NEW("expires_ms", "{", "$lte", BCON_INT64(now_ms), "}");
    int64_t n = 0;
    int rc = update_all(p, "sipwake_messages", q, NULL, &n, "expiring messages", err, errlen);
    bson_destroy(q);
    return rc < 0 ? -1 : (int)n;
}

/* messages_pending: the pending deliveries of one AOR at a time, grouped by device. */
struct pending {
    char device[256];
    long count;
    int64_t oldest_ms;
};

struct pending_visit {
    char *aor; /* the AOR being gathered */
    struct pending *dev;
    size_t n, cap;
    store_pending_cb cb;
    void *arg;
};

static int pending_cmp(const void *a, const void *b)
{
    return strcmp(((const struct pending *)a)->device, ((const struct pending *)b)->device);
}

static void pending_emit(struct pending_visit *v)
{
    if (v->n > 1)
        qsort(v->dev, v->n, sizeof *v->dev, pending_cmp);
    for (size_t i = 0; i < v->n; i++)
        v->cb(v->arg, v->aor, v->dev[i].device, v->dev[i].count, v->dev[i].oldest_ms);
    v->n = 0;
}

static void pending_row(const bson_t *d, void *arg)
{
    struct pending_visit *v = arg;
    const char *aor = get_str(d, "aor");
    if (!aor)
        return;
    if (!v->aor || strcmp(aor, v->aor) != 0) {
        pending_emit(v);
        free(v->aor);
        v->aor = xstrdup(aor);
    }
    int64_t received = get_int(d, "received_ms", 0);
    bson_iter_t it, dl;
    if (!bson_iter_init_find(&it, d, "deliveries") || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
        !bson_iter_recurse(&it, &dl))
        return;
    while (bson_iter_next(&dl)) {
        bson_t sub;
        const uint8_t *data;
        uint32_t len;
        if (!BSON_ITER_HOLDS_DOCUMENT(&dl))
            continue;
        bson_iter_document(&dl, &len, &data);
        bson_init_static(&sub, data, len);
        const char *device = get_str(&sub, "device");
        if (!device || get_int(&sub, "delivered_ms", 1) != 0)
            continue;
        size_t i = 0;
        while (i < v->n && strcmp(v->dev[i].device, device) != 0)
            i++;
        if (i == v->n) {
            if (v->n == v->cap) {
                v->cap = v->cap ? v->cap * 2 : 8;
                v->dev = xrealloc(v->dev, v->cap * sizeof *v->dev);
            }
            snprintf(v->dev[i].device, sizeof v->dev[i].device, "%s", device);
            v->dev[i].count = 0;
            v->dev[i].oldest_ms = received;
            v->n++;
        }
        v->dev[i].count++;
        if (received < v->dev[i].oldest_ms)
            v->dev[i].oldest_ms = received;
    }
}

static int mongo_messages_pending(void *p, const char *aor, store_pending_cb cb, void *arg,
                                  char *err, size_t errlen)
{
    struct pending_visit v = {.cb = cb, .arg = arg};
    bson_t q = BSON_INITIALIZER;
    if (aor)
        BSON_APPEND_UTF8(&q, "aor", aor);
    bson_t *sort = BCON_NEW("aor", BCON_INT32(1), "_id", BCON_INT32(1));
    int rc = each(p, "sipwake_messages", &q, sort, 0, pending_row, &v, "reading pending messages",
                  err, errlen);
    if (rc == 0)
        pending_emit(&v);
    free(v.dev);
    free(v.aor);
    bson_destroy(sort);
    bson_destroy(&q);
    return rc;
}

static int mongo_messages_count(void *p, char *err, size_t errlen)
{
    bson_t all = BSON_INITIALIZER;
    int64_t n = count(p, "sipwake_messages", &all, "counting messages", err, errlen);
    return n < 0 ? -1 : (int)n;
}

static int mongo_messages_purge(void *p, const char *aor, char *err, size_t errlen)
{
    bson_t *q = BCON_NEW("aor", BCON_UTF8(aor));
    int64_t n = 0;
    int rc = update_all(p, "sipwake_messages", q, NULL, &n, "purging messages", err, errlen);
    bson_destroy(q);
    return rc < 0 ? -1 : (int)n;
}

/* Every operation of store.h. One sipwake node per database until the cluster's parts (the
 * node holding a binding, leases, cross-node wake: issue 16) are built. */
const struct store_backend store_mongo_backend = {
    .shared = 1,        /* several sipwake processes may share one database */
    .transactional = 0, /* store.c applies a batch in segments */
    .name = "mongodb",
    .open = mongo_open,
    .close = mongo_close,
    .begin = mongo_begin,
    .commit = mongo_commit,
    .rollback = mongo_rollback,
    .save_binding = mongo_save_binding,
    .delete_binding = mongo_delete_binding,
    .get_subscriber = mongo_get_subscriber,
    .load_bindings = mongo_load_bindings,
    .user_put = mongo_user_put,
    .user_del = mongo_user_del,
    .user_list = mongo_user_list,
    .tenant_add = mongo_tenant_add,
    .tenant_del = mongo_tenant_del,
    .tenant_rename = mongo_tenant_rename,
    .domain_add = mongo_domain_add,
    .domain_del = mongo_domain_del,
    .credential_put = mongo_credential_put,
    .credential_del = mongo_credential_del,
    .tenants_read = mongo_tenants_read,
    .push_log_add = mongo_push_log_add,
    .push_log_prune = mongo_push_log_prune,
    .push_log_read = mongo_push_log_read,
    .message_put = mongo_message_put,
    .message_delivered = mongo_message_delivered,
    .messages_for_device = mongo_messages_for_device,
    .messages_expire = mongo_messages_expire,
    .messages_pending = mongo_messages_pending,
    .messages_count = mongo_messages_count,
    .messages_purge = mongo_messages_purge,
    .admin_put = mongo_admin_put,
    .admin_del = mongo_admin_del,
    .admin_hash = mongo_admin_hash,
    .admin_list = mongo_admin_list,
    .token_put = mongo_token_put,
    .token_del = mongo_token_del,
    .token_find = mongo_token_find,
    .token_list = mongo_token_list,
    .audit_add = mongo_audit_add,
    .audit_read = mongo_audit_read,
};
