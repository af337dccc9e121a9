/*
 * store: the queue, the worker thread and the completions; the backend does the I/O.
 *
 * Queued operations own copies of their data. The loop collects them without locking and
 * hands them over as a group commit does: at the end of the loop turn that queued them when the
 * worker is idle, else as soon as the worker finishes the batch it is busy with. An idle store
 * so answers a REGISTER one commit after it arrives (its 200 waits for the commit), and a busy
 * one gathers everything that arrived during a commit into the next transaction, however many
 * REGISTERs arrive. The worker takes the whole queue at once, applies all writes in one
 * transaction, then runs the reads and hands them back to the loop through an ev_async watcher.
 *
 * A batch whose commit fails is tried again, a bounded number of times within a bounded time
 * (STORE_WRITE_ATTEMPTS, STORE_WRITE_GIVE_UP_MS): a store that keeps failing must not hold
 * every later operation, nor the stop, hostage. When the bound is reached the batch's writes
 * are given up: logged, counted (store:failed_writes), and whoever waits for them hears of it
 * (done ok 0, store_call rc -1, store_sync ok 0), so nothing is acknowledged that is not stored.
 * Between attempts and after every batch the backend is asked to settle: a statement left
 * stepped (the bug that once held an old read snapshot and wedged the store for good) is
 * reported, counted and reset.
 */
#include "store.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "util.h"

/* Attempts at committing one batch, and the time after which no new attempt starts. The
 * backend's own busy wait (SQLite: its busy timeout) comes on top of the last attempt. */
#define STORE_WRITE_ATTEMPTS 5
#define STORE_WRITE_GIVE_UP_MS 5000
#define STORE_WRITE_BACKOFF_MS 50 /* doubled after each failed attempt */

enum op_kind {
    OP_SAVE = 0,
    OP_DELETE,
    OP_GET_SUBSCRIBER,
    OP_PUSH_LOG,
    OP_CALL_WRITE,
    OP_CALL_READ,
    OP_SYNC, /* no write of its own: done says whether the writes since mark were committed */
};

/* How often the worker prunes the push log, in pushes logged. */
#define STORE_PRUNE_EVERY 1000

struct op {
    struct op *next;
    enum op_kind kind;
    struct store_binding b; /* OP_SAVE: strings point into strings */
    char *strings;
    uint64_t contact_id; /* OP_DELETE */
    char user[65], domain[65];
    store_subscriber_cb cb; /* OP_GET_SUBSCRIBER */
    store_done_cb done;     /* writes, optional */
    void *arg;
    int found;
    struct store_subscriber sub;
    struct store_push_log log; /* OP_PUSH_LOG: strings point into strings */
    store_work_fn work;        /* OP_CALL_* */
    store_result_cb result;
    int rc;
    uint64_t seq;       /* order of queueing */
    uint64_t queued_ms; /* when it was queued (util_mono_ms), for store_backlog_ms */
    uint64_t mark;      /* OP_SYNC: the first seq it answers for */
    int ok;             /* writes with done: committed (1) or given up (0) */
};

struct store {
    const struct store_backend *be;
    void *db;
    struct ev_loop *loop;
    ev_async done_watcher;
    atomic_int done_ready;    /* the worker handed completions over: store_poll takes them */
    ev_prepare flush_watcher; /* hands the loop's batch over at the end of the loop turn */
    struct op *local_head, *local_tail; /* loop thread only */
    size_t local_n;
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct op *head, *tail; /* queued */
    size_t queued;
    struct op *done_head, *done_tail;
    int stopping;
    int busy;                    /* under mu: the worker holds a batch */
    uint64_t busy_since;         /* under mu: when the oldest op of that batch was queued */
    unsigned long errors;        /* under mu; moved into metrics on the loop */
    unsigned long failed_writes; /* under mu; writes given up, moved into metrics likewise */
    unsigned long left_busy;     /* under mu; statements found left busy, likewise */
    uint64_t next_seq;           /* loop thread only */
    uint64_t lost_seq;           /* worker only: 1 + the highest seq of a write given up */
    long log_days;               /* push log retention, 0: none kept */
    unsigned long logged;        /* worker only: push log rows since the last prune */
};

static void flush_cb(struct ev_loop *loop, ev_prepare *w, int revents);
static void flush_local(struct store *s);

static void op_free(struct op *o)
{
    free(o->strings);
    free(o);
}

/* The completions the worker handed over: run on the loop (done_cb, store_poll). 1 if any
 * ran. */
static int take_done(struct store *s)
{
    atomic_store_explicit(&s->done_ready, 0, memory_order_relaxed);
    pthread_mutex_lock(&s->mu);
    struct op *list = s->done_head;
    s->done_head = s->done_tail = NULL;
    unsigned long errors = s->errors, failed = s->failed_writes, busy = s->left_busy;
    s->errors = s->failed_writes = s->left_busy = 0;
    pthread_mutex_unlock(&s->mu);
    metrics_add(METRICS_STORE_ERRORS, (int64_t)errors);
    metrics_add(METRICS_STORE_FAILED_WRITES, (int64_t)failed);
    metrics_add(METRICS_STORE_LEFT_BUSY, (int64_t)busy);
    int ran = list != NULL;
    while (list) {
        struct op *next = list->next;
        if (list->kind == OP_GET_SUBSCRIBER)
            list->cb(list->arg, list->found, list->found == 1 ? &list->sub : NULL);
        else if (list->kind == OP_CALL_WRITE || list->kind == OP_CALL_READ)
            list->result(list->arg, list->rc);
        else
            list->done(list->arg, list->ok);
        op_free(list);
        list = next;
    }
    /* the worker may have finished a batch: what was queued meanwhile goes now */
    if (s->local_head && !ev_is_active(&s->flush_watcher))
        ev_prepare_start(s->loop, &s->flush_watcher);
    return ran;
}

static void done_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    take_done(w->data);
}

int store_poll(struct store *s)
{
    if (!s || !atomic_load_explicit(&s->done_ready, memory_order_acquire))
        return 0;
    return take_done(s);
}

/* Completed operations go to the loop. */
static void hand_over(struct store *s, struct op *list)
{
    if (!list)
        return;
    struct op *t = list;
    while (t->next)
        t = t->next;
    pthread_mutex_lock(&s->mu);
    if (s->done_tail)
        s->done_tail->next = list;
    else
        s->done_head = list;
    s->done_tail = t;
    pthread_mutex_unlock(&s->mu);
    atomic_store_explicit(&s->done_ready, 1, memory_order_release);
    ev_async_send(s->loop, &s->done_watcher);
}

/* Worker: a statement the backend left busy is a bug that can hold a read snapshot (and so
 * the write lock) for good; it is reported, counted and reset. */
static void settle(struct store *s)
{
    if (!s->be->settle)
        return;
    int n = s->be->settle(s->db);
    if (n > 0) {
        pthread_mutex_lock(&s->mu);
        s->left_busy += (unsigned long)n;
        s->errors += (unsigned long)n;
        pthread_mutex_unlock(&s->mu);
    }
}

static int stopping(struct store *s)
{
    pthread_mutex_lock(&s->mu);
    int stop = s->stopping;
    pthread_mutex_unlock(&s->mu);
    return stop;
}

/* Apply a batch of writes in one transaction, retrying a bounded number of times. Calls
 * (OP_CALL_WRITE) are not retried: after a failed attempt they are answered at once with rc
 * -1 and the rest of the batch goes again without them. Returns the list, each op's ok set:
 * 1 committed, 0 given up (then logged and counted). */
static struct op *apply_writes(struct store *s, struct op *list)
{
    char err[512];
    uint64_t start = util_mono_ms();
    long backoff = STORE_WRITE_BACKOFF_MS;
    int attempt;
    for (attempt = 1;; attempt++) {
        int ok = s->be->begin(s->db, err, sizeof err) == 0;
        for (struct op *o = list; ok && o; o = o->next) {
            if (o->kind == OP_SAVE)
                ok = s->be->save_binding(s->db, &o->b, err, sizeof err) == 0;
            else if (o->kind == OP_DELETE)
                ok = s->be->delete_binding(s->db, o->contact_id, err, sizeof err) == 0;
            else if (o->kind == OP_PUSH_LOG)
                ok = s->be->push_log_add(s->db, &o->log, err, sizeof err) == 0;
            else if (o->kind == OP_CALL_WRITE)
                ok = (o->rc = o->work(s->db, s->be, o->arg, err, sizeof err)) >= 0;
        }
        if (ok && s->be->commit(s->db, err, sizeof err) == 0) {
            for (struct op *o = list; o; o = o->next)
                o->ok = o->kind != OP_SYNC || s->lost_seq <= o->mark;
            return list;
        }
        s->be->rollback(s->db);
        settle(s); /* what made it fail may be a statement left busy */
        pthread_mutex_lock(&s->mu);
        s->errors++;
        pthread_mutex_unlock(&s->mu);
        struct op *failed = NULL;
        for (struct op **pp = &list; *pp;) {
            struct op *o = *pp;
            if (o->kind == OP_CALL_WRITE) {
                *pp = o->next;
                o->rc = -1;
                o->next = failed;
                failed = o;
            } else {
                pp = &o->next;
            }
        }
        long elapsed = (long)(util_mono_ms() - start);
        int last = attempt >= STORE_WRITE_ATTEMPTS || elapsed + backoff >= STORE_WRITE_GIVE_UP_MS ||
                   (stopping(s) && attempt >= 2);
        log_error("store: writing a batch failed (attempt %d of %d%s): %s", attempt,
                  STORE_WRITE_ATTEMPTS,
                  failed ? ", its calls answered as failed"
                  : last ? ""
                         : ", trying again",
                  err);
        if (failed)
            hand_over(s, failed); /* those waiting hear of it now */
        if (!list)
            return NULL;
        if (last)
            break;
        if (failed)
            continue; /* a call failed, not the disk: the rest goes again at once */
        usleep((useconds_t)backoff * 1000);
        backoff *= 2;
    }
    /* given up: nothing of the batch was committed; those waiting are told */
    size_t n = 0;
    for (struct op *o = list; o; o = o->next) {
        o->ok = 0;
        if (o->kind != OP_SYNC) {
            n++;
            if (o->seq + 1 > s->lost_seq)
                s->lost_seq = o->seq + 1;
        }
    }
    log_error("store: gave up a batch of %zu writes after %d attempts in %ld ms; they are "
              "lost and whoever waited for them was told: %s",
              n, attempt, (long)(util_mono_ms() - start), err);
    pthread_mutex_lock(&s->mu);
    s->failed_writes += n;
    pthread_mutex_unlock(&s->mu);
    ev_async_send(s->loop, &s->done_watcher); /* the metric, even when nobody waits */
    return list;
}

/* A backend without transactions keeps what it applied when a batch fails, so a call whose
 * batch failed because of another operation would be told it failed while its writes stand (a
 * MESSAGE answered 500 though stored). The batch goes in segments that succeed or fail on
 * their own: each call and each push-log row alone, and each run of binding writes, with the
 * syncs among them, as one (the backend sends it as one bulk write). In the batch's order. */
static struct op *apply_segments(struct store *s, struct op *list)
{
    struct op *done = NULL, **dtail = &done;
    while (list) {
        struct op *seg = list, **t = &list->next;
#define BINDING_OP(o) ((o)->kind == OP_SAVE || (o)->kind == OP_DELETE || (o)->kind == OP_SYNC)
        if (BINDING_OP(seg))
            while (*t && BINDING_OP(*t))
                t = &(*t)->next;
#undef BINDING_OP
        list = *t;
        *t = NULL;
        *dtail = apply_writes(s, seg);
        while (*dtail)
            dtail = &(*dtail)->next;
    }
    return done;
}

static void *worker(void *arg)
{
    struct store *s = arg;
    pthread_setname_np(pthread_self(), "sipwake-store");
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->head && !s->stopping)
            pthread_cond_wait(&s->cv, &s->mu);
        struct op *list = s->head;
        s->head = s->tail = NULL;
        s->busy = list != NULL;
        s->busy_since = list ? list->queued_ms : 0;
        int stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        if (!list && stopping)
            break;

        struct op *writes = NULL, **wtail = &writes, *reads = NULL, **rtail = &reads;
        size_t n = 0;
        for (struct op *o = list, *next; o; o = next) {
            next = o->next;
            o->next = NULL;
            n++;
            if (o->kind == OP_PUSH_LOG)
                s->logged++;
            if (o->kind == OP_GET_SUBSCRIBER || o->kind == OP_CALL_READ) {
                *rtail = o;
                rtail = &o->next;
            } else {
                *wtail = o;
                wtail = &o->next;
            }
        }
        if (writes)
            writes = s->be->transactional ? apply_writes(s, writes) : apply_segments(s, writes);
        settle(s);
        if (s->logged >= STORE_PRUNE_EVERY) {
            char err[512];
            s->logged = 0;
            if (s->be->push_log_prune(s->db, util_wall_ms() - (int64_t)s->log_days * 86400000, err,
                                      sizeof err) < 0)
                log_error("store: %s", err);
        }
        /* committed: writes someone waits for are answered with the reads */
        struct op *answered = NULL, **atail = &answered;
        while (writes) {
            struct op *next = writes->next;
            if (writes->done || writes->kind == OP_CALL_WRITE || writes->kind == OP_SYNC) {
                writes->next = NULL;
                *atail = writes;
                atail = &writes->next;
            } else {
                op_free(writes);
            }
            writes = next;
        }
        *atail = reads;
        reads = answered;
        for (struct op *o = reads; o; o = o->next) {
            char err[512];
            if (o->kind == OP_CALL_READ) {
                o->rc = o->work(s->db, s->be, o->arg, err, sizeof err);
                if (o->rc < 0) {
                    log_error("store: %s", err);
                    pthread_mutex_lock(&s->mu);
                    s->errors++;
                    pthread_mutex_unlock(&s->mu);
                }
                continue;
            }
            if (o->kind != OP_GET_SUBSCRIBER)
                continue;
            o->found = s->be->get_subscriber(s->db, o->user, o->domain, &o->sub, err, sizeof err);
            if (o->found < 0) {
                log_error("store: subscriber lookup failed: %s", err);
                pthread_mutex_lock(&s->mu);
                s->errors++;
                pthread_mutex_unlock(&s->mu);
            }
        }
        settle(s);
        pthread_mutex_lock(&s->mu);
        s->queued -= n;
        s->busy = 0;
        pthread_mutex_unlock(&s->mu);
        hand_over(s, reads);
        /* idle again: the loop hands over what it gathered during this batch */
        atomic_store_explicit(&s->done_ready, 1, memory_order_release);
        ev_async_send(s->loop, &s->done_watcher);
    }
    return NULL;
}

int store_open(const struct config *cfg, struct store **out, char *err, size_t errlen)
{
    struct store *s = xcalloc(1, sizeof *s);
    s->be =
        strcmp(cfg->store_backend, "mongodb") == 0 ? &store_mongo_backend : &store_sqlite_backend;
    s->db = s->be->open(cfg, err, errlen);
    if (!s->db) {
        free(s);
        return -1;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->log_days = cfg->push_log_days;
    s->logged = STORE_PRUNE_EVERY; /* prune once soon after start */
    *out = s;
    return 0;
}

int store_load_bindings(struct store *s, time_t now, store_binding_cb cb, void *arg, long *purged,
                        char *err, size_t errlen)
{
    return s->be->load_bindings(s->db, now, cb, arg, purged, err, errlen);
}

void store_start(struct store *s, struct ev_loop *loop)
{
    s->loop = loop;
    ev_async_init(&s->done_watcher, done_cb);
    s->done_watcher.data = s;
    ev_async_start(loop, &s->done_watcher);
    ev_prepare_init(&s->flush_watcher, flush_cb);
    s->flush_watcher.data = s;
    if (pthread_create(&s->thread, NULL, worker, s) != 0) {
        log_error("store: cannot start the writer thread");
        abort();
    }
    s->started = 1;
    if (s->local_head) /* queued before the loop ran */
        ev_prepare_start(loop, &s->flush_watcher);
}

/* Loop side: collect operations without locking; flush_cb hands them over in one go. */
static void enqueue(struct store *s, struct op *o)
{
    o->seq = s->next_seq++;
    o->queued_ms = util_mono_ms();
    if (s->started && !ev_is_active(&s->flush_watcher))
        ev_prepare_start(s->loop, &s->flush_watcher);
    if (s->local_tail)
        s->local_tail->next = o;
    else
        s->local_head = o;
    s->local_tail = o;
    s->local_n++;
}

static void flush_local(struct store *s)
{
    if (!s->local_head)
        return;
    pthread_mutex_lock(&s->mu);
    if (s->tail)
        s->tail->next = s->local_head;
    else
        s->head = s->local_head;
    s->tail = s->local_tail;
    s->queued += s->local_n;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    s->local_head = s->local_tail = NULL;
    s->local_n = 0;
}

/* Before the loop blocks, after every event of its turn: the batch goes to an idle worker.
 * A busy one gets it when it finishes (done_cb starts this watcher again): that wait is what
 * gathers a busy store's operations into one transaction. */
static void flush_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)revents;
    struct store *s = w->data;
    ev_prepare_stop(loop, w);
    pthread_mutex_lock(&s->mu);
    int busy = s->busy || s->head;
    pthread_mutex_unlock(&s->mu);
    if (!busy)
        flush_local(s);
}

void store_save_binding(struct store *s, const struct store_binding *b, store_done_cb done,
                        void *arg)
{
    struct op *o = xcalloc(1, sizeof *o);
    o->kind = OP_SAVE;
    o->done = done;
    o->arg = arg;
    o->b = *b;
    const char *const fields[] = {b->username,     b->domain,  b->contact,    b->received,
                                  b->path,         b->callid,  b->user_agent, b->socket,
                                  b->sip_instance, b->kv_store};
    size_t total = 0;
    for (size_t i = 0; i < UTIL_ARRAY_LEN(fields); i++)
        total += fields[i] ? strlen(fields[i]) + 1 : 0;
    char *p = o->strings = xmalloc(total ? total : 1);
    o->b.username = util_pack_str(&p, b->username);
    o->b.domain = util_pack_str(&p, b->domain);
    o->b.contact = util_pack_str(&p, b->contact);
    o->b.received = util_pack_str(&p, b->received);
    o->b.path = util_pack_str(&p, b->path);
    o->b.callid = util_pack_str(&p, b->callid);
    o->b.user_agent = util_pack_str(&p, b->user_agent);
    o->b.socket = util_pack_str(&p, b->socket);
    o->b.sip_instance = util_pack_str(&p, b->sip_instance);
    o->b.kv_store = util_pack_str(&p, b->kv_store);
    enqueue(s, o);
}

void store_delete_binding(struct store *s, uint64_t contact_id, store_done_cb done, void *arg)
{
    struct op *o = xcalloc(1, sizeof *o);
    o->kind = OP_DELETE;
    o->done = done;
    o->arg = arg;
    o->contact_id = contact_id;
    enqueue(s, o);
}

uint64_t store_mark(const struct store *s)
{
    return s->next_seq;
}

void store_sync(struct store *s, uint64_t mark, store_done_cb done, void *arg)
{
    struct op *o = xcalloc(1, sizeof *o);
    o->kind = OP_SYNC;
    o->done = done;
    o->arg = arg;
    o->mark = mark;
    enqueue(s, o);
}

void store_get_subscriber(struct store *s, const char *user, const char *domain,
                          store_subscriber_cb cb, void *arg)
{
    struct op *o = xcalloc(1, sizeof *o);
    o->kind = OP_GET_SUBSCRIBER;
    snprintf(o->user, sizeof o->user, "%s", user);
    snprintf(o->domain, sizeof o->domain, "%s", domain);
    o->cb = cb;
    o->arg = arg;
    enqueue(s, o);
}

void store_push_log(struct store *s, const struct store_push_log *row)
{
    if (s->log_days <= 0)
        return;
    struct op *o = xcalloc(1, sizeof *o);
    o->kind = OP_PUSH_LOG;
    o->log = *row;
    const char *const fields[] = {row->tenant,     row->credentials, row->provider,
                                  row->kind,       row->aor,         row->call_id,
                                  row->token_hash, row->outcome,     row->reason};
    size_t total = 0;
    for (size_t i = 0; i < UTIL_ARRAY_LEN(fields); i++)
        total += fields[i] ? strlen(fields[i]) + 1 : 0;
    char *p = o->strings = xmalloc(total ? total : 1);
    o->log.tenant = util_pack_str(&p, row->tenant);
    o->log.credentials = util_pack_str(&p, row->credentials);
    o->log.provider = util_pack_str(&p, row->provider);
    o->log.kind = util_pack_str(&p, row->kind);
    o->log.aor = util_pack_str(&p, row->aor);
    o->log.call_id = util_pack_str(&p, row->call_id);
    o->log.token_hash = util_pack_str(&p, row->token_hash);
    o->log.outcome = util_pack_str(&p, row->outcome);
    o->log.reason = util_pack_str(&p, row->reason);
    enqueue(s, o);
}

void store_call(struct store *s, int flags, store_work_fn work, store_result_cb done, void *arg)
{
    struct op *o = xcalloc(1, sizeof *o);
    o->kind = flags & STORE_WRITE ? OP_CALL_WRITE : OP_CALL_READ;
    o->work = work;
    o->result = done;
    o->arg = arg;
    enqueue(s, o);
    if ((flags & STORE_NOW) && s->started)
        flush_local(s);
}

int store_shared(const struct store *s)
{
    return s->be->shared;
}

uint64_t store_backlog_ms(struct store *s)
{
    if (!s)
        return 0;
    uint64_t now = util_mono_ms(), oldest = s->local_head ? s->local_head->queued_ms : now;
    pthread_mutex_lock(&s->mu);
    if (s->busy && s->busy_since && s->busy_since < oldest)
        oldest = s->busy_since;
    if (s->head && s->head->queued_ms < oldest)
        oldest = s->head->queued_ms;
    pthread_mutex_unlock(&s->mu);
    return now > oldest ? now - oldest : 0;
}

size_t store_pending(struct store *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->queued + s->local_n;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int store_user_put(struct store *s, const struct store_subscriber *sub, char *err, size_t errlen)
{
    return s->be->user_put(s->db, sub, err, errlen);
}

int store_user_del(struct store *s, const char *user, const char *domain, char *err, size_t errlen)
{
    return s->be->user_del(s->db, user, domain, err, errlen);
}

int store_user_list(struct store *s, store_user_cb cb, void *arg, char *err, size_t errlen)
{
    return s->be->user_list(s->db, cb, arg, err, errlen);
}

int store_tenant_add(struct store *s, const char *name, char *err, size_t errlen)
{
    return s->be->tenant_add(s->db, name, util_now(), err, errlen);
}

int store_tenant_del(struct store *s, const char *name, char *err, size_t errlen)
{
    if (s->be->begin(s->db, err, errlen) < 0)
        return -1;
    int rc = s->be->tenant_del(s->db, name, err, errlen);
    if (rc < 0 || s->be->commit(s->db, err, errlen) < 0) {
        s->be->rollback(s->db);
        return -1;
    }
    return rc;
}

int store_tenant_rename(struct store *s, const char *from, const char *to, char *err, size_t errlen)
{
    if (s->be->begin(s->db, err, errlen) < 0)
        return -1;
    int rc = s->be->tenant_rename(s->db, from, to, err, errlen);
    if (rc < 0 || s->be->commit(s->db, err, errlen) < 0) {
        s->be->rollback(s->db);
        return -1;
    }
    return rc;
}

int store_domain_add(struct store *s, const char *domain, const char *tenant, char *err,
                     size_t errlen)
{
    return s->be->domain_add(s->db, domain, tenant, err, errlen);
}

int store_domain_del(struct store *s, const char *domain, char *err, size_t errlen)
{
    return s->be->domain_del(s->db, domain, err, errlen);
}

int store_credential_put(struct store *s, const struct store_credential *c, char *err,
                         size_t errlen)
{
    return s->be->credential_put(s->db, c, err, errlen);
}

int store_credential_del(struct store *s, const char *tenant, const char *set_name,
                         const char *kind, char *err, size_t errlen)
{
    return s->be->credential_del(s->db, tenant, set_name, kind, err, errlen);
}

int store_tenants_read(struct store *s, const struct store_tenant_visitor *v, char *err,
                       size_t errlen)
{
    return s->be->tenants_read(s->db, v, err, errlen);
}

int store_push_log_read(struct store *s, const char *tenant, const char *provider, int limit,
                        store_push_log_cb cb, void *arg, char *err, size_t errlen)
{
    return s->be->push_log_read(s->db, tenant, provider, NULL, 0, limit, cb, arg, err, errlen);
}

int store_admin_put(struct store *s, const char *name, const char *hash, char *err, size_t errlen)
{
    return s->be->admin_put(s->db, name, hash, util_now(), err, errlen);
}

int store_admin_del(struct store *s, const char *name, char *err, size_t errlen)
{
    return s->be->admin_del(s->db, name, err, errlen);
}

int store_admin_list(struct store *s, store_name_cb cb, void *arg, char *err, size_t errlen)
{
    return s->be->admin_list(s->db, cb, arg, err, errlen);
}

int store_token_put(struct store *s, const char *name, const char *sha256_hex, char *err,
                    size_t errlen)
{
    return s->be->token_put(s->db, name, sha256_hex, util_now(), err, errlen);
}

int store_token_del(struct store *s, const char *name, char *err, size_t errlen)
{
    return s->be->token_del(s->db, name, err, errlen);
}

int store_token_list(struct store *s, store_name_cb cb, void *arg, char *err, size_t errlen)
{
    return s->be->token_list(s->db, cb, arg, err, errlen);
}

int store_messages_pending(struct store *s, const char *aor, store_pending_cb cb, void *arg,
                           char *err, size_t errlen)
{
    return s->be->messages_pending(s->db, aor, cb, arg, err, errlen);
}

void store_close(struct store *s)
{
    if (!s)
        return;
    if (s->started) {
        ev_prepare_stop(s->loop, &s->flush_watcher);
        flush_local(s);
        pthread_mutex_lock(&s->mu);
        s->stopping = 1;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
        ev_async_stop(s->loop, &s->done_watcher);
        /* Completed after the loop stopped: nobody waits for them any more; calls only free
         * what they hold (rc STORE_CLOSED). */
        while (s->done_head) {
            struct op *next = s->done_head->next;
            if (s->done_head->kind == OP_CALL_WRITE || s->done_head->kind == OP_CALL_READ)
                s->done_head->result(s->done_head->arg, STORE_CLOSED);
            op_free(s->done_head);
            s->done_head = next;
        }
    } else {
        while (s->head) {
            struct op *next = s->head->next;
            op_free(s->head);
            s->head = next;
        }
    }
    s->be->close(s->db);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
