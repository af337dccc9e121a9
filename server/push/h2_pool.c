/*
 * h2_pool: connections, streams and the queue of an HTTP/2 pool.
 *
 * A connection goes RESOLVING (a thread runs getaddrinfo and wakes the loop through the
 * lookup's ev_async) -> CONNECTING (non-blocking connect) -> HANDSHAKING (TLS, ALPN h2) ->
 * READY, and ends in close_conn. nghttp2 runs in memory mode: what it wants to send is
 * appended to the connection's output buffer and written with SSL_write as the socket
 * allows; what SSL_read returns is fed to nghttp2_session_mem_recv.
 *
 * A lookup (struct h2_lookup) is shared by its thread and its connection, each holding a
 * reference; the last to let go frees it. A connection closed while its lookup runs (its pool
 * freed, its deadline passed) lets go at once and the thread's answer is dropped: the loop
 * never waits for getaddrinfo, and the thread never sees the connection or the pool.
 */
#include "h2_pool.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "metrics.h"
#include "util.h"

#define H2_MAX_RESPONSE_BODY (64 * 1024)
#define H2_MAX_RESPONSE_HEADERS 32
/* a request refused (REFUSED_STREAM) more often than this fails: the server keeps refusing */
#define H2_MAX_REFUSALS 10

enum conn_state { C_RESOLVING, C_CONNECTING, C_HANDSHAKING, C_READY, C_CLOSED };

struct h2_req;
struct h2_lookup;

struct h2_conn {
    struct h2_conn *next;
    struct h2_pool *pool;
    enum conn_state state;
    int fd;
    SSL *ssl;
    nghttp2_session *session;
    ev_io io;
    ev_timer timer;          /* connect/handshake deadline, then the idle PING */
    ev_timer ping_wait;      /* running while our PING waits for its ACK */
    ev_tstamp last_activity; /* last read or PING sent: the idle PING counts from it */
    ev_tstamp last_read;
    int settings_seen; /* the server's first SETTINGS arrived */
    int replay;        /* closing because the server stopped answering: in-flight requests go
                        * again on another connection */
    struct buf out;
    size_t out_off;
    size_t streams;           /* requests in flight on it */
    struct h2_req *flight;    /* those requests */
    int goaway;               /* no new streams */
    struct h2_lookup *lookup; /* while RESOLVING: the connection's reference to its lookup */
    char fail_why[200];       /* failed before it started: closed by its timer (conn_fail_soon) */
};

struct h2_req {
    struct h2_req *prev, *next; /* the pool's queue while queued, the connection's list while
                                 * in flight */
    struct h2_pool *pool;
    struct h2_conn *conn; /* while in flight */
    int32_t stream_id;
    char *method, *path;
    struct h2_header *headers; /* copies */
    size_t n_headers;
    char *body;
    size_t body_len, body_off;
    h2_cb cb;
    void *arg;
    ev_timer deadline;
    int refused;          /* times the server refused its stream (REFUSED_STREAM) */
    const char *fail_why; /* on the pool's failed list: why (a static string) */
    int replayed;         /* sent again after its connection stopped answering */
    int status;
    struct buf rbody;
    struct h2_header rh[H2_MAX_RESPONSE_HEADERS];
    size_t n_rh;
};

/* One getaddrinfo on its own thread. The thread reads host and port (fixed before it starts)
 * and writes the answer under lock; it wakes the loop through wake only while the connection
 * still holds its reference, so after lookup_release the thread touches this struct alone. */
struct h2_lookup {
    pthread_mutex_t lock;
    int refs;     /* under lock: the thread's and the connection's, 2 at the start */
    int orphaned; /* under lock: the connection let go; the answer goes nowhere */
    int done;     /* under lock: rc, addr and addrlen are set */
    int rc;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char *host;
    int port;
    struct ev_loop *loop;
    ev_async wake;        /* started on the loop until the connection lets go */
    struct h2_conn *conn; /* loop thread only; NULL once orphaned */
};

struct h2_pool {
    struct ev_loop *loop;
    char *host;
    int port;
    int host_is_ip;
    int (*addr_refused)(const struct sockaddr *sa); /* h2_pool_options */
    SSL_CTX *ctx;
    int max_connections;
    size_t max_queue;
    double timeout, ping_after, ping_timeout;
    struct h2_req *qhead, *qtail;
    size_t queued, in_flight;
    struct h2_conn *conns;
    size_t n_conns;
    struct h2_conn *dead; /* closed connections, freed once their callbacks unwound */
    ev_timer reaper;
    /* requests that failed inside h2_pool_submit (no stream), reported from the loop by kick:
     * a callback never runs before h2_pool_submit returns */
    struct h2_req *failed, **failed_tail;
    ev_timer kick;
    int freeing;
};

static void pump(struct h2_pool *p);
static void close_conn(struct h2_conn *c, const char *why);
static void conn_replace(struct h2_conn *c, const char *why);

/* The resolver's getaddrinfo: tests/unit/test_h2_pool.c puts one there that waits on a
 * condition the test controls, to hold a lookup in progress. */
static int (*lookup_getaddrinfo)(const char *node, const char *service,
                                 const struct addrinfo *hints, struct addrinfo **res) = getaddrinfo;
/* lookups not freed yet, whoever holds them (the unit test waits for 0) */
static atomic_int lookups_alive;

/* What pools use when their options leave ping_after / ping_timeout at 0 (loop thread). */
static double default_ping_after = 3600, default_ping_timeout = 5;

/* ------------------------------------------------------------------ requests */

static void req_free(struct h2_req *r)
{
    for (size_t i = 0; i < r->n_headers; i++) {
        free((char *)r->headers[i].name);
        free((char *)r->headers[i].value);
    }
    for (size_t i = 0; i < r->n_rh; i++) {
        free((char *)r->rh[i].name);
        free((char *)r->rh[i].value);
    }
    free(r->headers);
    free(r->method);
    free(r->path);
    free(r->body);
    buf_free(&r->rbody);
    free(r);
}

/* Forget what came back for r, so it can be sent again. */
static void req_reset(struct h2_req *r)
{
    for (size_t i = 0; i < r->n_rh; i++) {
        free((char *)r->rh[i].name);
        free((char *)r->rh[i].value);
    }
    r->n_rh = 0;
    r->status = 0;
    r->body_off = 0;
    r->rbody.len = 0;
}

static void queue_remove(struct h2_req *r)
{
    struct h2_pool *p = r->pool;
    if (r->prev)
        r->prev->next = r->next;
    else
        p->qhead = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        p->qtail = r->prev;
    r->prev = r->next = NULL;
    p->queued--;
}

static void queue_push(struct h2_req *r, int front)
{
    struct h2_pool *p = r->pool;
    if (front) {
        r->next = p->qhead;
        r->prev = NULL;
        if (p->qhead)
            p->qhead->prev = r;
        else
            p->qtail = r;
        p->qhead = r;
    } else {
        r->prev = p->qtail;
        r->next = NULL;
        if (p->qtail)
            p->qtail->next = r;
        else
            p->qhead = r;
        p->qtail = r;
    }
    p->queued++;
}

static void flight_add(struct h2_conn *c, struct h2_req *r)
{
    r->conn = c;
    r->prev = NULL;
    r->next = c->flight;
    if (c->flight)
        c->flight->prev = r;
    c->flight = r;
    c->streams++;
    c->pool->in_flight++;
}

static void flight_remove(struct h2_req *r)
{
    struct h2_conn *c = r->conn;
    if (r->prev)
        r->prev->next = r->next;
    else
        c->flight = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    c->streams--;
    c->pool->in_flight--;
    r->conn = NULL;
}

/* Report r's outcome (error NULL: its response) and free it. r is off the queue and off its
 * stream. */
static void finish(struct h2_req *r, const char *error)
{
    ev_timer_stop(r->pool->loop, &r->deadline);
    size_t body_len = r->rbody.len;
    buf_puts(&r->rbody, ""); /* NUL after the body */
    struct h2_response resp = {
        .status = error ? 0 : r->status,
        .headers = r->rh,
        .n_headers = r->n_rh,
        .body = r->rbody.data,
        .body_len = body_len,
        .error = error,
    };
    r->cb(r->arg, &resp);
    req_free(r);
}

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct h2_req *r = w->data;
    struct h2_pool *p = r->pool;
    if (r->conn) {
        struct h2_conn *c = r->conn;
        nghttp2_session_set_stream_user_data(c->session, r->stream_id, NULL);
        nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, r->stream_id, NGHTTP2_CANCEL);
        flight_remove(r);
        finish(r, "timeout");
        if (c->state == C_READY) {
            /* flush the RST_STREAM */
            ev_feed_event(p->loop, &c->io, EV_WRITE);
        }
    } else {
        queue_remove(r);
        finish(r, "timeout");
    }
}

/* ------------------------------------------------------------------ nghttp2 callbacks */

static ssize_t read_body(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *user)
{
    (void)s;
    (void)sid;
    (void)user;
    struct h2_req *r = src->ptr;
    size_t left = r->body_len - r->body_off;
    size_t n = left < len ? left : len;
    memcpy(buf, r->body + r->body_off, n);
    r->body_off += n;
    if (r->body_off == r->body_len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    (void)flags;
    (void)user;
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    struct h2_req *r = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!r)
        return 0;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        char v[8];
        snprintf(v, sizeof v, "%.*s", (int)(valuelen < 7 ? valuelen : 7), (const char *)value);
        r->status = atoi(v);
    } else if (r->n_rh < H2_MAX_RESPONSE_HEADERS) {
        r->rh[r->n_rh].name = xstrndup((const char *)name, namelen);
        r->rh[r->n_rh].value = xstrndup((const char *)value, valuelen);
        r->n_rh++;
    }
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data, size_t len,
                   void *user)
{
    (void)flags;
    (void)user;
    struct h2_req *r = nghttp2_session_get_stream_user_data(s, sid);
    if (r && r->rbody.len + len <= H2_MAX_RESPONSE_BODY)
        buf_append(&r->rbody, data, len);
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t sid, uint32_t error_code, void *user)
{
    struct h2_conn *c = user;
    struct h2_req *r = nghttp2_session_get_stream_user_data(s, sid);
    if (!r)
        return 0;
    struct h2_pool *p = c->pool;
    (void)c;
    nghttp2_session_set_stream_user_data(s, sid, NULL);
    flight_remove(r);
    if (r->status && error_code == NGHTTP2_NO_ERROR) {
        finish(r, NULL);
    } else if (error_code == NGHTTP2_REFUSED_STREAM && !p->freeing &&
               ++r->refused <= H2_MAX_REFUSALS) {
        /* not processed by the server (RFC 9113 §8.7): safe to send again. Refused with a
         * GOAWAY, it goes on another connection; refused by RST_STREAM (a stream over the
         * server's SETTINGS_MAX_CONCURRENT_STREAMS, RFC 9113 §5.1.2), on this one once a
         * stream is free: the pump never opens more streams than the server allows. */
        if (c->goaway) {
            log_info("h2: %s:%d did not process stream %d (GOAWAY): it goes again", p->host,
                     p->port, sid);
        } else {
            metrics_inc(METRICS_PUSH_STREAMS_REFUSED);
            log_info("h2: %s:%d refused stream %d (REFUSED_STREAM): it goes again", p->host,
                     p->port, sid);
        }
        req_reset(r);
        queue_push(r, 1);
    } else {
        finish(r, r->status                              ? NULL
                  : error_code == NGHTTP2_REFUSED_STREAM ? "refused by the server"
                                                         : "stream reset");
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    (void)s;
    struct h2_conn *c = user;
    if (f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK)) {
        c->settings_seen = 1; /* nghttp2 applied it: its stream limit is the server's now */
    } else if (f->hd.type == NGHTTP2_PING && (f->hd.flags & NGHTTP2_FLAG_ACK)) {
        ev_timer_stop(c->pool->loop, &c->ping_wait); /* the server is there */
    } else if (f->hd.type == NGHTTP2_GOAWAY) {
        c->goaway = 1;
        log_info("h2: %s:%d sent GOAWAY (error %u, last stream %d): %.*s", c->pool->host,
                 c->pool->port, f->goaway.error_code, f->goaway.last_stream_id,
                 (int)(f->goaway.opaque_data_len < 200 ? f->goaway.opaque_data_len : 200),
                 (const char *)f->goaway.opaque_data);
    }
    return 0;
}

/* ------------------------------------------------------------------ connection I/O */

static void conn_want(struct h2_conn *c, int events)
{
    struct ev_loop *loop = c->pool->loop;
    if (c->io.events == events && ev_is_active(&c->io))
        return;
    ev_io_stop(loop, &c->io);
    ev_io_set(&c->io, c->fd, events);
    ev_io_start(loop, &c->io);
}

/* Move what nghttp2 wants to send into out and write out. 0, or -1 (connection failed). */
static int conn_flush(struct h2_conn *c)
{
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(c->session, &data);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        buf_append(&c->out, data, (size_t)n);
    }
    while (c->out_off < c->out.len) {
        ERR_clear_error();
        int n = SSL_write(c->ssl, c->out.data + c->out_off, (int)(c->out.len - c->out_off));
        if (n <= 0) {
            int e = SSL_get_error(c->ssl, n);
            if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
                break;
            return -1;
        }
        c->out_off += (size_t)n;
    }
    if (c->out_off == c->out.len) {
        c->out.len = c->out_off = 0;
        conn_want(c, EV_READ);
    } else {
        conn_want(c, EV_READ | EV_WRITE);
    }
    if (!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session) &&
        c->out.len == 0)
        return -1; /* the session is over (GOAWAY done) */
    return 0;
}

static void conn_read(struct h2_conn *c)
{
    uint8_t tmp[16384];
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int n = SSL_read(c->ssl, tmp, sizeof tmp);
        if (n <= 0) {
            int e = SSL_get_error(c->ssl, n);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return;
            if (e == SSL_ERROR_SYSCALL && errno == ETIMEDOUT)
                /* TCP keepalive or TCP_USER_TIMEOUT gave up on the peer: it stopped
                 * answering, it did not refuse */
                conn_replace(c, "the server stopped answering (TCP keepalive)");
            else
                close_conn(c, e == SSL_ERROR_ZERO_RETURN ? "closed by the server" : "read failed");
            return;
        }
        c->last_activity = c->last_read = ev_now(c->pool->loop);
        if (nghttp2_session_mem_recv(c->session, tmp, (size_t)n) < 0) {
            close_conn(c, "HTTP/2 protocol error");
            return;
        }
        if (c->state == C_CLOSED)
            return;
    }
}

static int session_start(struct h2_conn *c)
{
    nghttp2_session_callbacks *cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    int rc = nghttp2_session_client_new(&c->session, cbs, c);
    nghttp2_session_callbacks_del(cbs);
    if (rc != 0)
        return -1;
    nghttp2_settings_entry s[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
    return nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, s, 1) == 0 ? 0 : -1;
}

static void conn_handshake(struct h2_conn *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r != 1) {
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ) {
            conn_want(c, EV_READ);
            return;
        }
        if (e == SSL_ERROR_WANT_WRITE) {
            conn_want(c, EV_READ | EV_WRITE);
            return;
        }
        char msg[256] = "handshake failed";
        unsigned long err = ERR_get_error();
        if (err) {
            char detail[200];
            ERR_error_string_n(err, detail, sizeof detail);
            snprintf(msg, sizeof msg, "TLS handshake failed: %s", detail);
        }
        long v = SSL_get_verify_result(c->ssl);
        if (v != X509_V_OK)
            snprintf(msg, sizeof msg, "certificate not trusted: %s",
                     X509_verify_cert_error_string(v));
        close_conn(c, msg);
        return;
    }
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
    if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
        close_conn(c, "the server did not agree to HTTP/2 (ALPN h2)");
        return;
    }
    if (session_start(c) < 0) {
        close_conn(c, "nghttp2 session");
        return;
    }
    c->state = C_READY;
    c->last_activity = c->last_read = ev_now(c->pool->loop);
    ev_timer_stop(c->pool->loop, &c->timer);
    ev_timer_set(&c->timer, c->pool->ping_after, c->pool->ping_after);
    ev_timer_start(c->pool->loop, &c->timer);
    log_debug("h2: connected to %s:%d", c->pool->host, c->pool->port);
    pump(c->pool);
    if (c->state == C_READY && conn_flush(c) < 0)
        close_conn(c, "write failed");
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct h2_conn *c = w->data;
    if (c->state == C_CONNECTING) {
        int e = 0;
        socklen_t el = sizeof e;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &el);
        if (e) {
            char msg[128];
            snprintf(msg, sizeof msg, "connect failed: %s", strerror(e));
            close_conn(c, msg);
            return;
        }
        c->state = C_HANDSHAKING;
        conn_handshake(c);
        return;
    }
    if (c->state == C_HANDSHAKING) {
        conn_handshake(c);
        return;
    }
    if (c->state != C_READY)
        return;
    if (revents & EV_READ)
        conn_read(c);
    if (c->state == C_READY) {
        pump(c->pool);
        if (c->state == C_READY && conn_flush(c) < 0)
            close_conn(c, c->goaway ? "closed after GOAWAY" : "write failed");
    }
}

/* PING the server unless a PING already waits for its ACK; without the ACK within
 * ping_timeout the connection is replaced (ping_wait_cb). The caller flushes. */
static void conn_ping(struct h2_conn *c)
{
    struct ev_loop *loop = c->pool->loop;
    if (ev_is_active(&c->ping_wait))
        return;
    if (nghttp2_submit_ping(c->session, NGHTTP2_FLAG_NONE, NULL) != 0)
        return;
    c->last_activity = ev_now(loop);
    ev_timer_set(&c->ping_wait, c->pool->ping_timeout, 0);
    ev_timer_start(loop, &c->ping_wait);
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct h2_conn *c = w->data;
    if (*c->fail_why) {
        close_conn(c, c->fail_why);
        return;
    }
    if (c->state != C_READY) {
        close_conn(c, "connect or TLS handshake timed out");
        return;
    }
    if (ev_now(loop) - c->last_activity >= c->pool->ping_after) {
        conn_ping(c);
        if (conn_flush(c) < 0)
            close_conn(c, "write failed");
    }
}

/* An unanswered PING: the server (or the path to it) is gone even if TCP has not noticed —
 * a NAT that forgot the flow, a peer that stopped reading. Waiting for the kernel would
 * take ~15 minutes of retransmissions (tcp_retries2), so the connection is replaced now. */
static void ping_wait_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct h2_conn *c = w->data;
    char why[120];
    snprintf(why, sizeof why, "no answer to a PING within %.0f s", c->pool->ping_timeout);
    conn_replace(c, why);
}

/* ------------------------------------------------------------------ opening and closing */

static void lookup_free(struct h2_lookup *l)
{
    pthread_mutex_destroy(&l->lock);
    free(l->host);
    free(l);
    atomic_fetch_sub(&lookups_alive, 1);
}

/* Drop one reference (lock held); the caller frees l when this returns 1. */
static int lookup_unref_locked(struct h2_lookup *l)
{
    return --l->refs == 0;
}

/* Loop thread: the connection lets go of its lookup. Its answer, if it comes later, is
 * dropped; a thread still in getaddrinfo keeps l alive until it returns. Never waits for
 * the thread: the lock is only ever held for a few instructions. */
static void lookup_release(struct h2_lookup *l)
{
    pthread_mutex_lock(&l->lock);
    /* under the lock: the thread wakes the loop only while not orphaned, so no
     * ev_async_send races the stop */
    ev_async_stop(l->loop, &l->wake);
    l->orphaned = 1;
    l->conn = NULL;
    int last = lookup_unref_locked(l);
    pthread_mutex_unlock(&l->lock);
    if (last)
        lookup_free(l);
}

static void *resolve_thread(void *arg)
{
    struct h2_lookup *l = arg;
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    char port[8];
    snprintf(port, sizeof port, "%d", l->port);
    int rc = lookup_getaddrinfo(l->host, port, &hints, &res);
    if (rc == 0 && !res)
        rc = EAI_NONAME;
    pthread_mutex_lock(&l->lock);
    l->rc = rc;
    if (rc == 0) {
        memcpy(&l->addr, res->ai_addr, res->ai_addrlen);
        l->addrlen = res->ai_addrlen;
    }
    l->done = 1;
    if (!l->orphaned)
        ev_async_send(l->loop, &l->wake);
    int last = lookup_unref_locked(l);
    pthread_mutex_unlock(&l->lock);
    if (res)
        freeaddrinfo(res);
    if (last)
        lookup_free(l);
    return NULL;
}

/* c failed before it could start (an address refused, no socket, a connect refused at once,
 * no resolver thread): it is closed by its timer on the loop's next turn, not now, since this
 * may run inside h2_pool_submit, whose callback must not run before it returns. */
static void conn_fail_soon(struct h2_conn *c, const char *why)
{
    struct ev_loop *loop = c->pool->loop;
    snprintf(c->fail_why, sizeof c->fail_why, "%s", why);
    ev_io_stop(loop, &c->io);
    ev_timer_stop(loop, &c->timer);
    ev_timer_set(&c->timer, 0, 0);
    ev_timer_start(loop, &c->timer);
}

static void conn_connect(struct h2_conn *c, const struct sockaddr_storage *ss, socklen_t len)
{
    struct h2_pool *p = c->pool;
    if (p->addr_refused && p->addr_refused((const struct sockaddr *)ss)) {
        char msg[200];
        snprintf(msg, sizeof msg, "refused: %s is a local or private address", p->host);
        conn_fail_soon(c, msg);
        return;
    }
    c->fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0 ||
        (connect(c->fd, (const struct sockaddr *)ss, len) < 0 && errno != EINPROGRESS)) {
        char msg[128];
        snprintf(msg, sizeof msg, "connect failed: %s", strerror(errno));
        conn_fail_soon(c, msg);
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* TCP keepalive, so a peer that vanished (host down, NAT state lost) is found while the
     * connection is idle: probes after ping_timeout s of silence, every ping_timeout/2 s,
     * 3 unanswered ones close it. TCP_USER_TIMEOUT bounds the same way the time data we
     * wrote may stay unacknowledged, which keepalive does not cover (default: ~15 min of
     * retransmissions). Either ends in ETIMEDOUT on the next read. */
    int idle = p->ping_timeout >= 1 ? (int)p->ping_timeout : 1;
    int intvl = idle / 2 > 0 ? idle / 2 : 1, cnt = 3;
    unsigned user_timeout = (unsigned)(idle + intvl * cnt) * 1000u;
    setsockopt(c->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    setsockopt(c->fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout);
    c->ssl = SSL_new(p->ctx);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_connect_state(c->ssl);
    if (p->host_is_ip) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), p->host);
    } else {
        SSL_set_tlsext_host_name(c->ssl, p->host);
        SSL_set1_host(c->ssl, p->host);
    }
    c->state = C_CONNECTING;
    ev_io_init(&c->io, conn_io_cb, c->fd, EV_WRITE);
    c->io.data = c;
    ev_io_start(p->loop, &c->io);
}

/* Loop thread: the lookup's answer for the connection still waiting for it. */
static void lookup_done_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    struct h2_lookup *l = w->data;
    pthread_mutex_lock(&l->lock);
    int done = l->done, rc = l->rc;
    struct sockaddr_storage addr = l->addr;
    socklen_t addrlen = l->addrlen;
    pthread_mutex_unlock(&l->lock);
    if (!done)
        return;
    struct h2_conn *c = l->conn;
    c->lookup = NULL;
    lookup_release(l);
    if (rc != 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "cannot resolve %s: %s", c->pool->host, gai_strerror(rc));
        close_conn(c, msg);
    } else {
        conn_connect(c, &addr, addrlen);
    }
}

static void conn_open(struct h2_pool *p)
{
    struct h2_conn *c = xcalloc(1, sizeof *c);
    c->pool = p;
    c->fd = -1;
    c->next = p->conns;
    p->conns = c;
    p->n_conns++;
    ev_init(&c->timer, conn_timer_cb);
    c->timer.data = c;
    ev_timer_set(&c->timer, p->timeout > 5 ? p->timeout : 5, 0);
    ev_timer_start(p->loop, &c->timer);
    ev_init(&c->ping_wait, ping_wait_cb);
    c->ping_wait.data = c;
    ev_init(&c->io, conn_io_cb);
    c->io.data = c;
    if (p->host_is_ip) {
        struct sockaddr_storage ss = {0};
        socklen_t len;
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        if (inet_pton(AF_INET, p->host, &s4->sin_addr) == 1) {
            s4->sin_family = AF_INET;
            s4->sin_port = htons((uint16_t)p->port);
            len = sizeof *s4;
        } else {
            inet_pton(AF_INET6, p->host, &s6->sin6_addr);
            s6->sin6_family = AF_INET6;
            s6->sin6_port = htons((uint16_t)p->port);
            len = sizeof *s6;
        }
        conn_connect(c, &ss, len);
        return;
    }
    /* a fresh lookup per connection, off the loop */
    struct h2_lookup *l = xcalloc(1, sizeof *l);
    atomic_fetch_add(&lookups_alive, 1);
    pthread_mutex_init(&l->lock, NULL);
    l->refs = 2; /* the thread's and the connection's */
    l->host = xstrdup(p->host);
    l->port = p->port;
    l->loop = p->loop;
    l->conn = c;
    ev_async_init(&l->wake, lookup_done_cb);
    l->wake.data = l;
    ev_async_start(p->loop, &l->wake);
    c->state = C_RESOLVING;
    c->lookup = l;
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &attr, resolve_thread, l) != 0) {
        l->refs--; /* no thread: only the connection holds it */
        conn_fail_soon(c, "cannot start the resolver thread");
    }
    pthread_attr_destroy(&attr);
}

static void close_conn(struct h2_conn *c, const char *why)
{
    if (c->state == C_CLOSED)
        return;
    struct h2_pool *p = c->pool;
    int was_ready = c->state == C_READY;
    c->state = C_CLOSED;
    if (!p->freeing)
        log_warn("h2: connection to %s:%d closed: %s", p->host, p->port, why);
    for (struct h2_conn **pp = &p->conns; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            p->n_conns--;
            break;
        }
    }
    ev_io_stop(p->loop, &c->io);
    ev_timer_stop(p->loop, &c->timer);
    ev_timer_stop(p->loop, &c->ping_wait);
    if (c->lookup) { /* still resolving: orphan the lookup, its thread frees it */
        lookup_release(c->lookup);
        c->lookup = NULL;
    }
    /* The requests still in flight fail: the server may have acted on them. When it stopped
     * answering (c->replay), each goes again once on another connection: a push delivered
     * twice costs less than a call that never rings. The flight list is newest first, so
     * pushing each to the queue's head keeps their order. */
    while (c->flight) {
        struct h2_req *r = c->flight;
        if (c->session)
            nghttp2_session_set_stream_user_data(c->session, r->stream_id, NULL);
        flight_remove(r);
        if (c->replay && !r->replayed && !p->freeing) {
            r->replayed = 1;
            req_reset(r);
            queue_push(r, 1);
        } else {
            /* freeing the pool: "shut down", as h2_pool.h says, whatever the state */
            finish(r, was_ready && !p->freeing ? "connection lost" : why);
        }
    }
    if (c->session) {
        nghttp2_session_del(c->session);
        c->session = NULL;
    }
    if (c->ssl)
        SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    buf_free(&c->out);
    /* the queue waits for another connection; if none can be made, it fails */
    if (!was_ready && p->n_conns == 0 && !p->freeing) {
        while (p->qhead) {
            struct h2_req *r = p->qhead;
            queue_remove(r);
            char msg[300];
            snprintf(msg, sizeof msg, "%s:%d: %s", p->host, p->port, why);
            finish(r, msg);
        }
    }
    /* closed from inside its own callbacks, maybe: freed from the loop later */
    c->next = p->dead;
    p->dead = c;
    if (!p->freeing)
        ev_timer_start(p->loop, &p->reaper);
    if (!p->freeing)
        pump(p);
}

/* c stopped answering: count it, close it with its in-flight requests put back at the head
 * of the queue, and let the pump open its successor (now if requests wait, else at the next
 * one). */
static void conn_replace(struct h2_conn *c, const char *why)
{
    if (c->state == C_CLOSED)
        return;
    metrics_inc(METRICS_PUSH_CONNS_REPLACED);
    log_warn("h2: %s:%d stopped answering (%s): replacing the connection, %zu requests in "
             "flight go again",
             c->pool->host, c->pool->port, why, c->streams);
    c->replay = 1;
    close_conn(c, why);
}

static void reap(struct h2_pool *p)
{
    while (p->dead) {
        struct h2_conn *c = p->dead;
        p->dead = c->next;
        free(c);
    }
}

static void reaper_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    reap(w->data);
}

/* ------------------------------------------------------------------ the queue */

static int submit(struct h2_conn *c, struct h2_req *r)
{
    struct h2_pool *p = c->pool;
    size_t n = 5 + r->n_headers + 1;
    nghttp2_nv *nv = xcalloc(n, sizeof *nv);
    char authority[300];
    snprintf(authority, sizeof authority, "%s%s%s:%d", strchr(p->host, ':') ? "[" : "", p->host,
             strchr(p->host, ':') ? "]" : "", p->port);
    char clen[24];
    snprintf(clen, sizeof clen, "%zu", r->body_len);
    const char *names[] = {":method", ":scheme", ":authority", ":path"};
    const char *values[] = {r->method, "https", authority, r->path};
    size_t k = 0;
    for (; k < 4; k++)
        nv[k] = (nghttp2_nv){(uint8_t *)names[k], (uint8_t *)values[k], strlen(names[k]),
                             strlen(values[k]), NGHTTP2_NV_FLAG_NONE};
    for (size_t i = 0; i < r->n_headers; i++, k++)
        nv[k] = (nghttp2_nv){(uint8_t *)r->headers[i].name, (uint8_t *)r->headers[i].value,
                             strlen(r->headers[i].name), strlen(r->headers[i].value),
                             NGHTTP2_NV_FLAG_NONE};
    if (r->body_len)
        nv[k++] = (nghttp2_nv){(uint8_t *)"content-length", (uint8_t *)clen, 14, strlen(clen),
                               NGHTTP2_NV_FLAG_NONE};
    nghttp2_data_provider dp = {.source.ptr = r, .read_callback = read_body};
    int32_t sid = nghttp2_submit_request(c->session, NULL, nv, k, r->body_len ? &dp : NULL, r);
    free(nv);
    if (sid < 0)
        return -1;
    r->stream_id = sid;
    flight_add(c, r);
    return 0;
}

/* r (off the queue, on no stream) failed: reported by kick on the loop's next turn. */
static void fail_soon(struct h2_req *r, const char *why)
{
    struct h2_pool *p = r->pool;
    ev_timer_stop(p->loop, &r->deadline);
    r->fail_why = why;
    r->next = NULL;
    *p->failed_tail = r;
    p->failed_tail = &r->next;
    ev_timer_start(p->loop, &p->kick);
}

static void kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct h2_pool *p = w->data;
    while (p->failed) {
        struct h2_req *r = p->failed;
        p->failed = r->next;
        if (!p->failed)
            p->failed_tail = &p->failed;
        finish(r, r->fail_why);
    }
}

/* Put queued requests on free streams; open a connection when they need one. */
static void pump(struct h2_pool *p)
{
    for (struct h2_conn *c = p->conns; c && p->qhead; c = c->next) {
        if (c->state != C_READY || c->goaway)
            continue;
        /* Until the server's first SETTINGS arrives, one stream. RFC 9113 §6.5.2 makes the
         * initial limit unlimited (nghttp2 assumes 100), but a server may advertise less in
         * the SETTINGS that is already on its way and then refuse the excess (§5.1.2):
         * APNs allows one stream on a token-auth connection until a request with a valid
         * provider token (Apple, "Sending notification requests to APNs"). One stream costs
         * one round trip at connection start; the rest wait in the queue. */
        uint32_t max = c->settings_seen ? nghttp2_session_get_remote_settings(
                                              c->session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)
                                        : 1;
        int sent = 0;
        while (p->qhead && c->streams < max) {
            struct h2_req *r = p->qhead;
            queue_remove(r);
            if (submit(c, r) < 0) {
                fail_soon(r, "cannot open a stream");
                continue;
            }
            sent = 1;
        }
        /* a connection that was quiet longer than ping_timeout may have died meanwhile: a
         * PING goes with the request, so a dead one is replaced within ping_timeout instead
         * of failing the request at its deadline */
        if (sent && ev_now(p->loop) - c->last_read >= p->ping_timeout)
            conn_ping(c);
        if (sent)
            ev_feed_event(p->loop, &c->io, EV_WRITE);
    }
    if (!p->qhead)
        return;
    /* what is left waits for a connection: open one unless one is on its way or the pool is
     * full (a connection draining after GOAWAY does not count) */
    int pending = 0, live = 0;
    for (struct h2_conn *c = p->conns; c; c = c->next) {
        pending |= c->state != C_READY && c->state != C_CLOSED;
        live += !c->goaway;
    }
    if (!pending && live < p->max_connections)
        conn_open(p);
}

int h2_pool_submit(struct h2_pool *p, const char *method, const char *path,
                   const struct h2_header *headers, size_t n_headers, const char *body,
                   size_t body_len, h2_cb cb, void *arg)
{
    /* a callback run by h2_pool_free that tries again: nothing may be left on the pool */
    if (p->freeing || p->queued >= p->max_queue)
        return -1;
    struct h2_req *r = xcalloc(1, sizeof *r);
    r->pool = p;
    r->method = xstrdup(method);
    r->path = xstrdup(path);
    r->headers = xcalloc(n_headers ? n_headers : 1, sizeof *r->headers);
    for (size_t i = 0; i < n_headers; i++) {
        r->headers[i].name = xstrdup(headers[i].name);
        r->headers[i].value = xstrdup(headers[i].value);
    }
    r->n_headers = n_headers;
    if (body_len) {
        r->body = xmalloc(body_len);
        memcpy(r->body, body, body_len);
    }
    r->body_len = body_len;
    r->cb = cb;
    r->arg = arg;
    ev_timer_init(&r->deadline, deadline_cb, p->timeout, 0);
    r->deadline.data = r;
    ev_timer_start(p->loop, &r->deadline);
    queue_push(r, 0);
    pump(p);
    return 0;
}

size_t h2_pool_queued(const struct h2_pool *p)
{
    return p->queued;
}

size_t h2_pool_in_flight(const struct h2_pool *p)
{
    return p->in_flight;
}

size_t h2_pool_connections(const struct h2_pool *p)
{
    size_t n = 0;
    for (const struct h2_conn *c = p->conns; c; c = c->next)
        n += c->state == C_READY;
    return n;
}

/* ------------------------------------------------------------------ the pool */

void h2_pool_set_health(double ping_after, double ping_timeout)
{
    if (ping_after > 0)
        default_ping_after = ping_after;
    if (ping_timeout > 0)
        default_ping_timeout = ping_timeout;
}

/* A client certificate chain and key given as PEM text (a stored credential). 1 or 0. */
static int use_client_pem(SSL_CTX *ctx, const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *leaf = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    int ok = leaf && SSL_CTX_use_certificate(ctx, leaf) == 1;
    X509 *extra;
    while (ok && (extra = PEM_read_bio_X509(bio, NULL, NULL, NULL)))
        if (SSL_CTX_add_extra_chain_cert(ctx, extra) != 1) {
            X509_free(extra);
            ok = 0;
        }
    ERR_clear_error(); /* the end of the certificates */
    BIO_free(bio);
    X509_free(leaf);
    bio = ok ? BIO_new_mem_buf(pem, -1) : NULL;
    EVP_PKEY *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    ok = key && SSL_CTX_use_PrivateKey(ctx, key) == 1;
    EVP_PKEY_free(key);
    BIO_free(bio);
    return ok;
}

struct h2_pool *h2_pool_new(struct ev_loop *loop, const struct h2_pool_options *o, char *err,
                            size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, errlen, "cannot make a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    static const unsigned char alpn[] = {2, 'h', '2'};
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn);
    const char *what = NULL;
    if (o->ca_file ? SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL) != 1
                   : SSL_CTX_set_default_verify_paths(ctx) != 1)
        what = o->ca_file ? o->ca_file : "the system's CAs";
    else if (o->client_cert && strncmp(o->client_cert, "-----BEGIN", 10) == 0)
        what = use_client_pem(ctx, o->client_cert) && SSL_CTX_check_private_key(ctx) == 1
                   ? NULL
                   : "the client certificate";
    else if (o->client_cert && SSL_CTX_use_certificate_chain_file(ctx, o->client_cert) != 1)
        what = o->client_cert;
    else if (o->client_cert &&
             (SSL_CTX_use_PrivateKey_file(ctx, o->client_key ? o->client_key : o->client_cert,
                                          SSL_FILETYPE_PEM) != 1 ||
              SSL_CTX_check_private_key(ctx) != 1))
        what = o->client_key ? o->client_key : o->client_cert;
    if (what) {
        char detail[200] = "";
        unsigned long e = ERR_get_error();
        if (e)
            ERR_error_string_n(e, detail, sizeof detail);
        ERR_clear_error();
        snprintf(err, errlen, "%s: %s", what, *detail ? detail : "unusable");
        SSL_CTX_free(ctx);
        return NULL;
    }
    struct h2_pool *p = xcalloc(1, sizeof *p);
    p->loop = loop;
    p->host = xstrdup(o->host);
    p->port = o->port;
    unsigned char tmp[16];
    p->host_is_ip = inet_pton(AF_INET, o->host, tmp) == 1 || inet_pton(AF_INET6, o->host, tmp) == 1;
    p->ctx = ctx;
    p->max_connections = o->max_connections > 0 ? o->max_connections : 1;
    p->max_queue = o->max_queue ? o->max_queue : 1000;
    p->timeout = o->timeout > 0 ? o->timeout : 10;
    p->ping_after = o->ping_after > 0 ? o->ping_after : default_ping_after;
    p->ping_timeout = o->ping_timeout > 0 ? o->ping_timeout : default_ping_timeout;
    p->addr_refused = o->addr_refused;
    ev_timer_init(&p->reaper, reaper_cb, 0, 0);
    p->reaper.data = p;
    p->failed_tail = &p->failed;
    ev_timer_init(&p->kick, kick_cb, 0, 0);
    p->kick.data = p;
    return p;
}

void h2_pool_free(struct h2_pool *p)
{
    if (!p)
        return;
    p->freeing = 1;
    while (p->conns)
        close_conn(p->conns, "shut down");
    while (p->qhead) {
        struct h2_req *r = p->qhead;
        queue_remove(r);
        finish(r, "shut down");
    }
    ev_timer_stop(p->loop, &p->kick);
    kick_cb(p->loop, &p->kick, 0); /* what failed already, with its reason */
    /* a lookup still running was orphaned by close_conn: its thread frees it, and never
     * touches the pool */
    ev_timer_stop(p->loop, &p->reaper);
    reap(p);
    SSL_CTX_free(p->ctx);
    free(p->host);
    free(p);
}
