/*
 * msgstore: storing MESSAGEs, couriers delivering them per device, expiry.
 */
#include "msgstore.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "destination.h"
#include "hashtab.h"
#include "log.h"
#include "metrics.h"
#include "sip_msg.h"
#include "store.h"
#include "util.h"

#define MSGSTORE_RETRY_MAX 30.0 /* seconds between delivery attempts, at most */

/* A stored message on its way to one device (owned copies). */
struct parcel {
    struct parcel *next;
    int64_t id;
    char *call_id, *from_hdr, *to_hdr, *content_type;
    unsigned char *body;
    size_t body_len;
    uint32_t cseq;
    int64_t received_ms, expires_ms;
};

/* Delivers one device's messages, one at a time. */
struct courier {
    struct hashtab_node hn;
    struct msgstore *ms;
    char *aor;
    char *device;
    uint64_t contact_id; /* the binding it delivers to */
    struct parcel *queue, *tail;
    int reading;  /* the store is reading what it is to get */
    int reread;   /* it registered again meanwhile: read again when done */
    int sending;  /* a MESSAGE is out, or its delivery mark is being committed */
    int attempts; /* of the head parcel */
    ev_timer retry;
};

struct msgstore {
    struct ev_loop *loop;
    const struct config *cfg;
    struct store *store;
    struct location *loc;
    struct destination *dest; /* sends the deliveries (destination.h) */
    struct hashtab couriers;
    ev_timer sweep;
    long count;      /* messages stored */
    int count_known; /* count was read from the store at start */
    long puts;       /* msgstore_put jobs not yet answered */
};

static void parcel_free(struct parcel *p)
{
    free(p->call_id);
    free(p->from_hdr);
    free(p->to_hdr);
    free(p->content_type);
    free(p->body);
    free(p);
}

void msgstore_device_of(const struct binding *b, char *out, size_t n)
{
    if (b->instance && *b->instance)
        snprintf(out, n, "%s", b->instance);
    else
        snprintf(out, n, "contact:%llu", (unsigned long long)b->contact_id);
}

long msgstore_count(const struct msgstore *ms)
{
    return ms->count;
}

static void gauge(struct msgstore *ms, long delta)
{
    ms->count += delta;
    metrics_add(METRICS_OFFLINE_PENDING, delta);
}

/* ------------------------------------------------------------------ storing */

struct put_job {
    struct msgstore *ms;
    struct store_message m;
    char *strings; /* what m points to */
    unsigned char *body;
    char **devices;
    size_t n_devices;
    int64_t id;
    msgstore_put_cb cb;
    void *arg;
};

static int put_work(void *db, const struct store_backend *be, void *arg, char *err, size_t errlen)
{
    struct put_job *j = arg;
    return be->message_put(db, &j->m, (const char *const *)j->devices, j->n_devices,
                           j->ms->cfg->offline_max_per_aor, &j->id, err, errlen);
}

static void put_job_free(struct put_job *j)
{
    for (size_t i = 0; i < j->n_devices; i++)
        free(j->devices[i]);
    free(j->devices);
    free(j->strings);
    free(j->body);
    free(j);
}

static void put_done(void *arg, int rc)
{
    struct put_job *j = arg;
    j->ms->puts--;
    if (rc == STORE_CLOSED) { /* stopping: the request ends without an answer */
        j->cb(j->arg, MSGSTORE_STOPPED, 0);
        put_job_free(j);
        return;
    }
    enum msgstore_result r = rc == 1   ? MSGSTORE_STORED
                             : rc == 0 ? MSGSTORE_DUPLICATE
                             : rc == 2 ? MSGSTORE_QUOTA
                                       : MSGSTORE_FAILED;
    static const enum metrics_id counters[] = {METRICS_OFFLINE_STORED, METRICS_OFFLINE_DUPLICATES,
                                               METRICS_OFFLINE_QUOTA, METRICS_OFFLINE_FAILURES};
    metrics_inc(counters[r]);
    if (r == MSGSTORE_STORED)
        gauge(j->ms, 1);
    if (r == MSGSTORE_QUOTA)
        log_info("offline: %s holds %ld messages: MESSAGE %s refused", j->m.aor,
                 j->ms->cfg->offline_max_per_aor, j->m.call_id);
    else if (r == MSGSTORE_FAILED)
        log_error("offline: MESSAGE %s for %s could not be stored", j->m.call_id, j->m.aor);
    else
        log_debug("offline: MESSAGE %s for %s %s (id %lld, %zu devices)", j->m.call_id, j->m.aor,
                  r == MSGSTORE_STORED ? "stored" : "stored before", (long long)j->id,
                  j->n_devices);
    j->cb(j->arg, r, r <= MSGSTORE_DUPLICATE ? j->id : 0);
    put_job_free(j);
}

/* A header of req as its value text (osip2's own form), or NULL. */
static char *header_text(const osip_message_t *req, const char *name)
{
    char *s = NULL;
    if (strcmp(name, "from") == 0 && req->from)
        osip_from_to_str(req->from, &s);
    else if (strcmp(name, "to") == 0 && req->to)
        osip_to_to_str(req->to, &s);
    else if (strcmp(name, "content-type") == 0 && req->content_type)
        osip_content_type_to_str(req->content_type, &s);
    char *out = s ? xstrdup(s) : NULL;
    osip_free(s);
    return out;
}

void msgstore_put(struct msgstore *ms, const osip_message_t *req, const char *body, size_t body_len,
                  const char *aor, const char *const *devices, size_t n_devices, long ttl,
                  int new_devices, const char *tenant, msgstore_put_cb cb, void *arg)
{
    struct put_job *j = xcalloc(1, sizeof *j);
    j->ms = ms;
    j->cb = cb;
    j->arg = arg;
    char *from = header_text(req, "from"), *to = header_text(req, "to");
    char *ct = header_text(req, "content-type");
    const char *parts[] = {aor, req->call_id->number, from, to, ct, tenant};
    size_t total = 0;
    for (size_t i = 0; i < UTIL_ARRAY_LEN(parts); i++)
        total += parts[i] ? strlen(parts[i]) + 1 : 0;
    char *p = j->strings = xmalloc(total);
    int64_t now = util_wall_ms();
    j->m = (struct store_message){
        .aor = util_pack_str(&p, aor),
        .call_id = util_pack_str(&p, req->call_id->number),
        .cseq = (uint32_t)strtoul(req->cseq->number, NULL, 10),
        .from_hdr = util_pack_str(&p, from),
        .to_hdr = util_pack_str(&p, to),
        .content_type = util_pack_str(&p, ct),
        .received_ms = now,
        .expires_ms = now + (int64_t)ttl * 1000,
        .new_devices = new_devices,
        .tenant = util_pack_str(&p, tenant),
    };
    free(from);
    free(to);
    free(ct);
    if (body_len) {
        j->body = xmalloc(body_len);
        memcpy(j->body, body, body_len);
        j->m.body = j->body;
        j->m.body_len = body_len;
    }
    j->devices = xcalloc(n_devices ? n_devices : 1, sizeof *j->devices);
    for (size_t i = 0; i < n_devices; i++)
        j->devices[i] = xstrdup(devices[i]);
    j->n_devices = n_devices;
    ms->puts++;
    store_call(ms->store, STORE_WRITE, put_work, put_done, j);
}

/* ------------------------------------------------------------------ marking */

struct mark_job {
    struct msgstore *ms;
    int64_t id;
    char *device;
    struct courier *c; /* waiting for the commit, or NULL */
};

static int mark_work(void *db, const struct store_backend *be, void *arg, char *err, size_t errlen)
{
    struct mark_job *j = arg;
    return be->message_delivered(db, j->id, j->device, util_wall_ms(), err, errlen);
}

static void courier_next(struct courier *c);

static void mark_done(void *arg, int rc)
{
    struct mark_job *j = arg;
    if (rc == 1)
        gauge(j->ms, -1); /* every device has it: the message is gone */
    struct courier *c = rc == STORE_CLOSED ? NULL : j->c;
    free(j->device);
    free(j);
    if (c) {
        c->sending = 0;
        courier_next(c);
    }
}

static void mark(struct msgstore *ms, int64_t id, const char *device, struct courier *c)
{
    struct mark_job *j = xcalloc(1, sizeof *j);
    j->ms = ms;
    j->id = id;
    j->device = xstrdup(device);
    j->c = c;
    /* a courier waits for it before the next message: no batching delay */
    store_call(ms->store, STORE_WRITE | (c ? STORE_NOW : 0), mark_work, mark_done, j);
}

void msgstore_delivered(struct msgstore *ms, int64_t id, const char *device)
{
    metrics_inc(METRICS_OFFLINE_DELIVERED);
    mark(ms, id, device, NULL);
}

/* ------------------------------------------------------------------ couriers */

static uint64_t courier_hash(const char *aor, const char *device)
{
    return util_hash(aor, strlen(aor)) ^ util_hash(device, strlen(device));
}

static struct courier *courier_find(struct msgstore *ms, const char *aor, const char *device)
{
    for (struct hashtab_node *n = hashtab_first(&ms->couriers, courier_hash(aor, device)); n;
         n = hashtab_next(&ms->couriers, n)) {
        struct courier *c = HASHTAB_ENTRY(n, struct courier, hn);
        if (strcmp(c->aor, aor) == 0 && strcmp(c->device, device) == 0)
            return c;
    }
    return NULL;
}

static void courier_free(struct courier *c)
{
    ev_timer_stop(c->ms->loop, &c->retry);
    while (c->queue) {
        struct parcel *p = c->queue;
        c->queue = p->next;
        parcel_free(p);
    }
    free(c->aor);
    free(c->device);
    free(c);
}

/* The courier has nothing more to do: it goes (unless the store still reads for it). */
static void courier_done(struct courier *c)
{
    if (c->reading || c->sending)
        return;
    hashtab_remove(&c->ms->couriers, &c->hn);
    courier_free(c);
}

static void courier_read(struct courier *c);

static void retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    courier_next(t->data);
}

static void courier_backoff(struct courier *c)
{
    double delay = 1.0;
    for (int i = 1; i < c->attempts && delay < MSGSTORE_RETRY_MAX; i++)
        delay *= 2;
    if (delay > MSGSTORE_RETRY_MAX)
        delay = MSGSTORE_RETRY_MAX;
    ev_timer_set(&c->retry, delay, 0);
    ev_timer_start(c->ms->loop, &c->retry);
}

/* The device's answer to the head parcel. */
static void sent_cb(void *arg, const osip_message_t *resp, const char *raw, size_t len)
{
    (void)raw;
    (void)len;
    struct courier *c = arg;
    int code = resp ? resp->status_code : 408;
    if (code < 200)
        return;
    struct parcel *p = c->queue;
    if (code < 300 || (code >= 400 && code != 408 && code != 480 && code < 500 && code != 429)) {
        /* delivered; or refused by the device for good (415, 488, ...): either way it is
         * not sent to this device again */
        if (code >= 300)
            log_info("offline: %s refused MESSAGE %s for %s with %d; not sent to it again",
                     c->device, p->call_id, c->aor, code);
        else
            metrics_inc(METRICS_OFFLINE_DELIVERED);
        c->queue = p->next;
        if (!c->queue)
            c->tail = NULL;
        c->attempts = 0;
        mark(c->ms, p->id, c->device, c); /* the next one once this is committed */
        parcel_free(p);
        return;
    }
    c->sending = 0;
    log_info("offline: MESSAGE %s to %s of %s: %d, trying again later", p->call_id, c->device,
             c->aor, code);
    courier_backoff(c);
}

/* The request a parcel is delivered as: the original From, To, Call-ID, CSeq, Content-Type
 * and body, and a Date for when sipwake received it. destination_send_to_binding adds the
 * Request-URI line and its Via. */
static struct buf parcel_request(const struct parcel *p)
{
    struct buf b = {0};
    time_t t = (time_t)(p->received_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char date[64];
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    buf_printf(&b,
               "Max-Forwards: 70\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %u MESSAGE\r\n"
               "Date: %s\r\n",
               p->from_hdr, p->to_hdr, p->call_id, p->cseq, date);
    if (p->content_type)
        buf_printf(&b, "Content-Type: %s\r\n", p->content_type);
    buf_printf(&b, "Content-Length: %zu\r\n\r\n", p->body_len);
    if (p->body_len)
        buf_append(&b, p->body, p->body_len);
    return b;
}

static void courier_next(struct courier *c)
{
    struct msgstore *ms = c->ms;
    if (c->sending || c->reading)
        return;
    int64_t now = util_wall_ms();
    while (c->queue && c->queue->expires_ms <= now) {
        struct parcel *p = c->queue; /* expired meanwhile: the sweep removes it */
        c->queue = p->next;
        parcel_free(p);
    }
    if (!c->queue) {
        c->tail = NULL;
        if (c->reread) {
            c->reread = 0;
            courier_read(c);
            return;
        }
        courier_done(c);
        return;
    }
    const struct binding *b = location_find_binding(ms->loc, c->aor, c->contact_id);
    if (!b) {
        log_info("offline: %s of %s is gone; %s wait for it to register again", c->device, c->aor,
                 c->queue->next ? "its messages" : "its message");
        courier_done(c);
        return;
    }
    struct buf req = parcel_request(c->queue);
    c->attempts++;
    c->sending = 1;
    if (!ms->dest ||
        destination_send_to_binding(ms->dest, b, "MESSAGE", req.data, req.len, sent_cb, c) < 0) {
        c->sending = 0;
        courier_backoff(c); /* no flow now */
    }
    buf_free(&req);
}

static void read_row(void *arg, const struct store_message *m)
{
    struct courier *c = arg; /* runs on the worker: the courier is not touched by the loop
                              * while it reads (c->reading) */
    struct parcel *p = xcalloc(1, sizeof *p);
    p->id = m->id;
    p->call_id = xstrdup(m->call_id ? m->call_id : "");
    p->from_hdr = xstrdup(m->from_hdr ? m->from_hdr : "");
    p->to_hdr = xstrdup(m->to_hdr ? m->to_hdr : "");
    p->content_type = m->content_type ? xstrdup(m->content_type) : NULL;
    if (m->body_len) {
        p->body = xmalloc(m->body_len);
        memcpy(p->body, m->body, m->body_len);
        p->body_len = m->body_len;
    }
    p->cseq = m->cseq;
    p->received_ms = m->received_ms;
    p->expires_ms = m->expires_ms;
    if (c->tail)
        c->tail->next = p;
    else
        c->queue = p;
    c->tail = p;
}

static int read_work(void *db, const struct store_backend *be, void *arg, char *err, size_t errlen)
{
    struct courier *c = arg;
    return be->messages_for_device(db, c->aor, c->device, util_wall_ms(), read_row, c, err, errlen);
}

static void read_done(void *arg, int rc)
{
    struct courier *c = arg;
    if (rc == STORE_CLOSED)
        return; /* msgstore_free frees it */
    c->reading = 0;
    if (rc < 0)
        c->reread = 0;
    else if (c->queue)
        log_info("offline: %s of %s registered: delivering its stored messages", c->device, c->aor);
    courier_next(c);
}

static void courier_read(struct courier *c)
{
    c->reading = 1;
    store_call(c->ms->store, STORE_NOW, read_work, read_done, c);
}

void msgstore_wake(struct msgstore *ms, const char *aor, const struct binding *b)
{
    char device[300];
    msgstore_device_of(b, device, sizeof device);
    struct courier *c = courier_find(ms, aor, device);
    /* Nothing stored for anyone, and nothing being stored: no read. The store would answer
     * with no row, a read per binding saved (the store thread's largest cost at 10,000
     * REGISTER/s). The count is exact: every store, delivery, expiry and purge moves it, on
     * the loop, once committed; a message stored after this REGISTER is offered to the
     * device as any message is. Only while this process is the only writer: a store that
     * other processes write (a cluster's, issue 16) is read every time. */
    if (!c && ms->count_known && ms->count <= 0 && ms->puts == 0 && !store_shared(ms->store)) {
        metrics_inc(METRICS_OFFLINE_READS_SKIPPED);
        return;
    }
    if (c) {
        c->contact_id = b->contact_id;
        if (c->reading || c->sending || c->queue) {
            c->reread = !c->queue; /* what was stored since it last read */
            ev_timer_stop(ms->loop, &c->retry);
            c->attempts = 0;
            courier_next(c); /* a new flow: try now */
            return;
        }
    } else {
        c = xcalloc(1, sizeof *c);
        c->ms = ms;
        c->aor = xstrdup(aor);
        c->device = xstrdup(device);
        c->contact_id = b->contact_id;
        ev_init(&c->retry, retry_cb);
        c->retry.data = c;
        hashtab_insert(&ms->couriers, &c->hn, courier_hash(aor, device));
    }
    courier_read(c);
}

/* ------------------------------------------------------------------ expiry */

static int expire_work(void *db, const struct store_backend *be, void *arg, char *err,
                       size_t errlen)
{
    (void)arg;
    return be->messages_expire(db, util_wall_ms(), err, errlen);
}

static void expire_done(void *arg, int rc)
{
    struct msgstore *ms = arg;
    if (rc > 0) {
        gauge(ms, -rc);
        metrics_add(METRICS_OFFLINE_EXPIRED, rc);
        log_info("offline: %d stored message%s expired undelivered", rc, rc == 1 ? "" : "s");
    }
}

static void sweep_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct msgstore *ms = t->data;
    store_call(ms->store, STORE_WRITE, expire_work, expire_done, ms);
}

static int count_work(void *db, const struct store_backend *be, void *arg, char *err, size_t errlen)
{
    (void)arg;
    return be->messages_count(db, err, errlen);
}

static void count_done(void *arg, int rc)
{
    struct msgstore *ms = arg;
    if (rc == STORE_CLOSED)
        return;
    if (rc < 0) { /* the count stays unknown: every REGISTER reads */
        log_warn("offline: the stored messages could not be counted at start: "
                 "offline:pending_messages misses them, and every REGISTER reads the store");
        return;
    }
    gauge(ms, rc);
    ms->count_known = 1;
}

/* ------------------------------------------------------------------ lifetime */

struct msgstore *msgstore_new(struct ev_loop *loop, const struct config *cfg, struct store *store,
                              struct location *loc, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    struct msgstore *ms = xcalloc(1, sizeof *ms);
    ms->loop = loop;
    ms->cfg = cfg;
    ms->store = store;
    ms->loc = loc;
    hashtab_init(&ms->couriers, 64);
    /* expiry is checked often enough for the shortest TTL configured */
    double every = (double)cfg->offline_ttl / 4;
    every = every < 1 ? 1 : every > 60 ? 60 : every;
    ev_timer_init(&ms->sweep, sweep_cb, every, every);
    ms->sweep.data = ms;
    ev_timer_start(loop, &ms->sweep);
    store_call(store, 0, count_work, count_done, ms);
    return ms;
}

void msgstore_set_destination(struct msgstore *ms, struct destination *dest)
{
    ms->dest = dest;
}

/* ------------------------------------------------------------------ purging */

struct purge_job {
    struct msgstore *ms;
    char *aor;
    void (*done)(void *arg, int n);
    void *arg;
};

static int purge_work(void *db, const struct store_backend *be, void *arg, char *err, size_t errlen)
{
    struct purge_job *j = arg;
    return be->messages_purge(db, j->aor, err, errlen);
}

struct purge_walk {
    const char *aor;
    struct courier *hit[64];
    size_t n;
};

static void purge_pick(struct hashtab_node *n, void *arg)
{
    struct purge_walk *w = arg;
    struct courier *c = HASHTAB_ENTRY(n, struct courier, hn);
    if (strcmp(c->aor, w->aor) == 0 && w->n < UTIL_ARRAY_LEN(w->hit))
        w->hit[w->n++] = c;
}

static void purge_done(void *arg, int rc)
{
    struct purge_job *j = arg;
    if (rc >= 0) {
        gauge(j->ms, -rc);
        struct purge_walk w = {.aor = j->aor};
        hashtab_each(&j->ms->couriers, purge_pick, &w);
        for (size_t i = 0; i < w.n; i++) {
            struct courier *c = w.hit[i];
            struct parcel **keep = c->sending && c->queue ? &c->queue->next : &c->queue;
            while (*keep) {
                struct parcel *p = *keep;
                *keep = p->next;
                parcel_free(p);
            }
            c->tail = c->queue;
            c->reread = 0;
        }
        log_notice("offline: %d stored messages of %s purged", rc, j->aor);
    }
    j->done(j->arg, rc == STORE_CLOSED ? -1 : rc);
    free(j->aor);
    free(j);
}

void msgstore_purge(struct msgstore *ms, const char *aor, void (*done)(void *arg, int n), void *arg)
{
    struct purge_job *j = xcalloc(1, sizeof *j);
    j->ms = ms;
    j->aor = xstrdup(aor);
    j->done = done;
    j->arg = arg;
    store_call(ms->store, STORE_WRITE | STORE_NOW, purge_work, purge_done, j);
}

static void free_courier_node(struct hashtab_node *n, void *arg)
{
    (void)arg;
    courier_free(HASHTAB_ENTRY(n, struct courier, hn));
}

void msgstore_free(struct msgstore *ms)
{
    if (!ms)
        return;
    ev_timer_stop(ms->loop, &ms->sweep);
    hashtab_drain(&ms->couriers, free_courier_node, NULL);
    hashtab_free(&ms->couriers);
    free(ms);
}
