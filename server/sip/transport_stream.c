/*
 * transport_stream: TCP and TLS connections.
 *
 * A connection owns its socket, its OpenSSL session (TLS), a read buffer and a write queue.
 * One ev_io watches the socket; writes are attempted at once and what does not fit waits for
 * EV_WRITE. One ev_timer enforces both deadlines: the idle timeout (no byte for
 * tcp_idle_timeout) and the message timeout (a partial message or a TLS handshake older than
 * tcp_message_timeout). A connection is in the flow table from accept to close; closing
 * removes it, so a stale flow id resolves to nothing.
 *
 * Accepting is bounded three ways: tcp_max_connections in all, tcp_max_connections_per_source
 * from one address (an IPv6 /64: one host owns at least that), and, when the process runs
 * out of descriptors, a paused accept watcher that retries after a back-off rather than
 * waking at once for the same backlog and failing again.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "metrics.h"
#include "sip_msg.h"
#include "transport_int.h"

/* Accepted connections open from one source, keyed by address family and address (IPv6
 * cut to its /64). Freed when its last connection closes. */
struct source_count {
    struct hashtab_node hn;
    unsigned char key[9];
    size_t n;
};

struct conn {
    struct transport *t;
    struct hashtab_node hn;
    uint64_t id;
    int fd;
    SSL *ssl;
    int connecting; /* outbound: connect() in progress */
    int handshaking;
    int closing;
    struct sip_source src;
    struct source_count *source; /* accepted connections: their source's count; else NULL */
    ev_io io;
    ev_timer timer;
    ev_tstamp last_activity;
    ev_tstamp partial_since; /* 0 when no partial message (or handshake) is pending */
    struct buf in;
    struct buf out;
    size_t out_off;
};

static void conn_close(struct conn *c, const char *why);
static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void conn_timer_schedule(struct conn *c);

static uint64_t flow_hash(uint64_t id)
{
    return id * 11400714819323198485ull;
}

struct conn *transport_stream_find(const struct transport *t, uint64_t flow_id)
{
    struct hashtab *flows = (struct hashtab *)&t->flows;
    for (struct hashtab_node *n = hashtab_first(flows, flow_hash(flow_id)); n;
         n = hashtab_next(flows, n)) {
        struct conn *c = HASHTAB_ENTRY(n, struct conn, hn);
        if (c->id == flow_id)
            return c->closing ? NULL : c;
    }
    return NULL;
}

static void conn_want(struct conn *c, int events)
{
    if (c->io.events == events)
        return;
    ev_io_stop(c->t->loop, &c->io);
    ev_io_set(&c->io, c->fd, events);
    ev_io_start(c->t->loop, &c->io);
}

static void ssl_log_errors(const char *what, const struct conn *c)
{
    unsigned long e;
    char msg[256];
    while ((e = ERR_get_error()) != 0) {
        ERR_error_string_n(e, msg, sizeof msg);
        log_warn("tls: %s with %s:%d: %s", what, c->src.ip, c->src.port, msg);
    }
}

/* Try to write queued output. 0 ok (maybe partial), -1 connection failed. */
static int conn_flush(struct conn *c)
{
    while (c->out_off < c->out.len) {
        const char *p = c->out.data + c->out_off;
        size_t left = c->out.len - c->out_off;
        if (c->ssl) {
            ERR_clear_error();
            int n = SSL_write(c->ssl, p, (int)left);
            if (n <= 0) {
                int e = SSL_get_error(c->ssl, n);
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
                    break;
                ssl_log_errors("write", c);
                return -1;
            }
            c->out_off += (size_t)n;
        } else {
            ssize_t n = send(c->fd, p, left, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                    break;
                return -1;
            }
            c->out_off += (size_t)n;
        }
    }
    if (c->out_off == c->out.len) {
        c->out.len = 0;
        c->out_off = 0;
        conn_want(c, EV_READ);
    } else {
        conn_want(c, EV_READ | EV_WRITE);
    }
    return 0;
}

int transport_stream_send(struct transport *t, uint64_t flow_id, const char *buf, size_t len)
{
    struct conn *c = transport_stream_find(t, flow_id);
    if (!c) {
        log_warn("stream: flow %llu is closed, %zu bytes not sent", (unsigned long long)flow_id,
                 len);
        return -1;
    }
    buf_append(&c->out, buf, len);
    if (c->connecting || c->handshaking)
        return 0; /* sent once the connection is up */
    if (conn_flush(c) < 0) {
        conn_close(c, "write failed");
        return -1;
    }
    return 0;
}

/* Hand complete messages in c->in to the callback. -1 if the connection must close. */
static int conn_deliver(struct conn *c)
{
    struct transport *t = c->t;
    size_t off = 0;
    int rc = 0;
    while (off < c->in.len && !c->closing) {
        const char *p = c->in.data + off;
        size_t left = c->in.len - off;
        if (p[0] == '\r' || p[0] == '\n') {
            /* RFC 5626 §3.5.1: CRLFCRLF is a ping, answered with CRLF. Other stray line
             * ends before a message are ignored (RFC 3261 §7.5). */
            if (left >= 4 && memcmp(p, "\r\n\r\n", 4) == 0) {
                transport_send(t, &c->src, "\r\n", 2);
                off += 4;
                continue;
            }
            if (left < 4 && strspn(p, "\r\n") >= left)
                break;
            off += (p[0] == '\r' && left >= 2 && p[1] == '\n') ? 2 : 1;
            continue;
        }
        long n = sip_msg_frame(p, left, (size_t)t->cfg->max_message_size);
        if (n == -2)
            break;
        if (n < 0) {
            log_warn("stream: unframable or oversized message from %s:%d (%zu bytes pending), "
                     "closing",
                     c->src.ip, c->src.port, left);
            metrics_inc(METRICS_DROPPED);
            rc = -1;
            break;
        }
        /* NUL-terminate a copy boundary for parsers that like it, without moving data. */
        char saved = (size_t)n < left ? p[n] : '\0';
        if ((size_t)n < left)
            ((char *)p)[n] = '\0';
        t->cb(t->cb_arg, p, (size_t)n, &c->src);
        if ((size_t)n < left)
            ((char *)p)[n] = saved;
        off += (size_t)n;
    }
    if (off) {
        memmove(c->in.data, c->in.data + off, c->in.len - off);
        c->in.len -= off;
    }
    /* The message timeout runs from the first byte of the message still incomplete: one
     * that started in this read (after complete ones) starts a new clock. */
    ev_tstamp was = c->partial_since;
    if (!c->in.len)
        c->partial_since = 0;
    else if (off || !c->partial_since)
        c->partial_since = ev_now(t->loop);
    /* the timer was set for the idle timeout; a partial message needs the earlier deadline */
    if (c->partial_since && c->partial_since != was && !c->closing)
        conn_timer_schedule(c);
    return rc;
}

/* n bytes read from c: framed, and the messages handed over. -1 if c is now closed. */
static int conn_received(struct conn *c, const char *bytes, size_t n)
{
    c->last_activity = ev_now(c->t->loop);
    buf_append(&c->in, bytes, n);
    if (conn_deliver(c) < 0) {
        conn_close(c, "protocol error");
        return -1;
    }
    return c->closing ? -1 : 0;
}

int transport_stream_inject(struct transport *t, uint64_t flow_id, const char *buf, size_t len)
{
    struct conn *c = transport_stream_find(t, flow_id);
    return c ? conn_received(c, buf, len) : -1;
}

static void conn_read(struct conn *c)
{
    char tmp[16384];
    for (;;) {
        ssize_t n;
        if (c->ssl) {
            ERR_clear_error();
            int r = SSL_read(c->ssl, tmp, sizeof tmp);
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                    return;
                if (e != SSL_ERROR_ZERO_RETURN)
                    ssl_log_errors("read", c);
                conn_close(c, "closed by peer");
                return;
            }
            n = r;
        } else {
            n = recv(c->fd, tmp, sizeof tmp, 0);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                    return;
                conn_close(c, strerror(errno));
                return;
            }
            if (n == 0) {
                conn_close(c, "closed by peer");
                return;
            }
        }
        if (conn_received(c, tmp, (size_t)n) < 0)
            return;
    }
}

static void conn_handshake(struct conn *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->handshaking = 0;
        c->partial_since = 0;
        if (conn_flush(c) < 0) { /* what was queued while connecting */
            conn_close(c, "write failed");
            return;
        }
        conn_read(c); /* data may already sit in OpenSSL's buffer */
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        conn_want(c, EV_READ);
        return;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        conn_want(c, EV_READ | EV_WRITE);
        return;
    }
    ssl_log_errors("handshake", c);
    metrics_inc(METRICS_TLS_HANDSHAKE_FAILURES);
    conn_close(c, "TLS handshake failed");
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct conn *c = w->data;
    if (c->connecting) {
        int e = 0;
        socklen_t elen = sizeof e;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &elen) < 0)
            e = errno;
        if (e) {
            log_warn("%s: cannot connect to %s:%d: %s", config_transport_name(c->src.transport),
                     c->src.ip, c->src.port, strerror(e));
            conn_close(c, "connect failed");
            return;
        }
        c->connecting = 0;
        c->last_activity = ev_now(loop);
        if (c->ssl) {
            c->handshaking = 1;
            conn_handshake(c);
        } else {
            c->partial_since = 0;
            if (conn_flush(c) < 0)
                conn_close(c, "write failed");
        }
        return;
    }
    if (c->handshaking) {
        conn_handshake(c);
        return;
    }
    if ((revents & EV_WRITE) && conn_flush(c) < 0) {
        conn_close(c, "write failed");
        return;
    }
    if (revents & EV_READ)
        conn_read(c);
}

/* The idle deadline, and the message deadline when a message (or handshake) is pending. */
static void conn_deadlines(const struct conn *c, ev_tstamp *idle_at, ev_tstamp *stall_at)
{
    const struct config *cfg = c->t->cfg;
    *idle_at = c->last_activity + (ev_tstamp)cfg->tcp_idle_timeout;
    *stall_at =
        c->partial_since ? c->partial_since + (ev_tstamp)cfg->tcp_message_timeout : *idle_at;
}

/* (Re)arm c's timer for the nearer of its deadlines. */
static void conn_timer_schedule(struct conn *c)
{
    ev_tstamp idle_at, stall_at, now = ev_now(c->t->loop);
    conn_deadlines(c, &idle_at, &stall_at);
    ev_tstamp next = stall_at < idle_at ? stall_at : idle_at;
    c->timer.repeat = next - now > 0.05 ? next - now : 0.05;
    ev_timer_again(c->t->loop, &c->timer);
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct conn *c = w->data;
    ev_tstamp now = ev_now(loop);
    ev_tstamp idle_at, stall_at;
    conn_deadlines(c, &idle_at, &stall_at);
    if (now >= stall_at && c->partial_since) {
        metrics_inc(METRICS_TCP_TIMEOUTS);
        conn_close(c, c->connecting    ? "connect timed out"
                      : c->handshaking ? "TLS handshake timed out"
                                       : "incomplete message timed out");
        return;
    }
    if (now >= idle_at) {
        metrics_inc(METRICS_TCP_TIMEOUTS);
        conn_close(c, "idle timeout");
        return;
    }
    conn_timer_schedule(c);
}

/* A connection on fd, in the flow table, not yet watched. */
static struct conn *conn_new(struct transport *t, int fd, enum config_transport tr, int listener,
                             const struct sockaddr_storage *ss, socklen_t len, SSL_CTX *ctx)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof one);
    struct conn *c = xcalloc(1, sizeof *c);
    c->t = t;
    c->fd = fd;
    c->id = t->next_flow_id++;
    c->src.transport = tr;
    memcpy(&c->src.addr, ss, len);
    c->src.addrlen = len;
    c->src.listener = listener;
    c->src.flow_id = c->id;
    transport_addr_str((const struct sockaddr *)ss, c->src.ip, sizeof c->src.ip, &c->src.port);
    c->last_activity = ev_now(t->loop);
    if (tr == CONFIG_TRANSPORT_TLS) {
        c->ssl = SSL_new(ctx);
        SSL_set_fd(c->ssl, fd);
    }
    hashtab_insert(&t->flows, &c->hn, flow_hash(c->id));
    metrics_add(METRICS_TCP_CONNECTIONS, 1);
    return c;
}

/* Watch c for events; a handshake or a connect must finish within tcp_message_timeout. */
static void conn_start(struct conn *c, int events)
{
    struct transport *t = c->t;
    int pending = c->handshaking || c->connecting;
    if (pending)
        c->partial_since = ev_now(t->loop);
    ev_io_init(&c->io, conn_io_cb, c->fd, events);
    c->io.data = c;
    ev_io_start(t->loop, &c->io);
    ev_init(&c->timer, conn_timer_cb);
    c->timer.data = c;
    c->timer.repeat =
        pending ? (ev_tstamp)t->cfg->tcp_message_timeout : (ev_tstamp)t->cfg->tcp_idle_timeout;
    ev_timer_again(t->loop, &c->timer);
}

/* The per-source key of an address: family, then the IPv4 address or the IPv6 /64. */
static void source_key(const struct sockaddr_storage *ss, unsigned char key[9])
{
    memset(key, 0, 9);
    key[0] = (unsigned char)ss->ss_family;
    if (ss->ss_family == AF_INET6)
        memcpy(key + 1, &((const struct sockaddr_in6 *)ss)->sin6_addr, 8);
    else
        memcpy(key + 1, &((const struct sockaddr_in *)ss)->sin_addr, 4);
}

/* The count for key, or NULL (with create: a new zero count in the table). */
static struct source_count *source_find(struct transport *t, const unsigned char key[9], int create)
{
    uint64_t h = util_hash(key, 9);
    for (struct hashtab_node *n = hashtab_first(&t->sources, h); n;
         n = hashtab_next(&t->sources, n)) {
        struct source_count *sc = HASHTAB_ENTRY(n, struct source_count, hn);
        if (memcmp(sc->key, key, 9) == 0)
            return sc;
    }
    if (!create)
        return NULL;
    struct source_count *sc = xcalloc(1, sizeof *sc);
    memcpy(sc->key, key, 9);
    hashtab_insert(&t->sources, &sc->hn, h);
    return sc;
}

static void source_release(struct conn *c)
{
    struct source_count *sc = c->source;
    if (!sc)
        return;
    c->source = NULL;
    if (--sc->n == 0) {
        hashtab_remove(&c->t->sources, &sc->hn);
        free(sc);
    }
}

static void accept_resume_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct listener *l = w->data;
    ev_timer_stop(loop, w);
    ev_io_start(loop, &l->io); /* fires at once if connections wait in the backlog */
}

/* accept() failed with err for a reason that retrying at once will not cure (out of file
 * descriptors, out of memory): stop watching the listener for a back-off, 100 ms doubling
 * to 1 s, so a full backlog does not wake the loop in a tight loop. One log line per
 * back-off period, with the count of failures since the last success. */
static void accept_pause(struct listener *l, int err)
{
    struct transport *t = l->t;
    const struct config_listen *cl = &t->cfg->listens[l->index];
    l->accept_errors++;
    metrics_inc(METRICS_TCP_ACCEPT_ERRORS);
    l->backoff = l->backoff > 0 ? (l->backoff * 2 < 1.0 ? l->backoff * 2 : 1.0) : 0.1;
    log_warn("%s: accept on %s:%d failed: %s; accepting paused for %.1f s (%lu failures in a "
             "row)",
             config_transport_name(l->transport), cl->host, cl->port, strerror(err), l->backoff,
             l->accept_errors);
    ev_io_stop(t->loop, &l->io);
    ev_timer_init(&l->backoff_timer, accept_resume_cb, l->backoff, 0);
    l->backoff_timer.data = l;
    ev_timer_start(t->loop, &l->backoff_timer);
}

/* Close a just-accepted fd that a cap refuses; logged at most once a second. */
static void accept_refuse(struct listener *l, int fd, const char *ip, const char *why)
{
    struct transport *t = l->t;
    close(fd);
    metrics_inc(METRICS_TCP_REFUSED);
    metrics_inc(METRICS_DROPPED);
    ev_tstamp now = ev_now(t->loop);
    if (t->refused_logged_at && now - t->refused_logged_at < 1.0) {
        t->refused_unlogged++;
        return;
    }
    log_warn("%s: connection from %s refused: %s (%lu more refused since the last report)",
             config_transport_name(l->transport), ip, why, t->refused_unlogged);
    t->refused_logged_at = now;
    t->refused_unlogged = 0;
}

void transport_stream_accept(struct listener *l)
{
    struct transport *t = l->t;
    for (int budget = 0; budget < 64; budget++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return;
            if (errno == ECONNABORTED)
                continue; /* that one gave up while waiting; others may be there */
            accept_pause(l, errno);
            return;
        }
        if (l->accept_errors) {
            log_notice("%s: accepting again after %lu failed accepts",
                       config_transport_name(l->transport), l->accept_errors);
            l->accept_errors = 0;
        }
        l->backoff = 0;
        char ip[INET6_ADDRSTRLEN];
        int port;
        transport_addr_str((const struct sockaddr *)&ss, ip, sizeof ip, &port);
        if (t->flows.count >= (size_t)t->cfg->tcp_max_connections) {
            accept_refuse(l, fd, ip, "tcp_max_connections reached");
            continue;
        }
        unsigned char key[9];
        source_key(&ss, key);
        struct source_count *sc = source_find(t, key, 0);
        long cap = t->cfg->tcp_max_connections_per_source;
        if (cap > 0 && sc && sc->n >= (size_t)cap) {
            accept_refuse(l, fd, ip, "tcp_max_connections_per_source reached");
            continue;
        }
        struct conn *c = conn_new(t, fd, l->transport, l->index, &ss, len, t->tls_ctx);
        c->source = sc ? sc : source_find(t, key, 1);
        c->source->n++;
        if (c->ssl) {
            SSL_set_accept_state(c->ssl);
            c->handshaking = 1;
        }
        conn_start(c, EV_READ);
        log_debug("%s: connection %llu from %s:%d", config_transport_name(l->transport),
                  (unsigned long long)c->id, c->src.ip, c->src.port);
    }
}

struct conn *transport_stream_open_socketless(struct transport *t, const struct sip_source *peer,
                                              int connecting, struct sip_source *out)
{
    /* made as TCP so that no TLS session is made: the bytes are the decrypted ones */
    struct conn *c =
        conn_new(t, -1, CONFIG_TRANSPORT_TCP, peer->listener, &peer->addr, peer->addrlen, NULL);
    c->src.transport = peer->transport;
    c->connecting = connecting;
    ev_io_init(&c->io, conn_io_cb, -1, EV_READ); /* never started: there is no socket */
    ev_init(&c->timer, conn_timer_cb);
    c->timer.data = c;
    c->timer.repeat = (ev_tstamp)t->cfg->tcp_idle_timeout;
    ev_timer_again(t->loop, &c->timer);
    *out = c->src;
    return c;
}

int transport_stream_connect(struct transport *t, enum config_transport tr,
                             const struct sockaddr_storage *addr, socklen_t len,
                             const char *tls_host, struct sip_source *out)
{
    int listener = transport_find_listener(t, tr, addr->ss_family);
    if (listener < 0)
        return -1;
    if (t->record) { /* transport_open_recording: no socket, the sends are recorded */
        struct sip_source peer = {.transport = tr, .addrlen = len, .listener = listener};
        memcpy(&peer.addr, addr, len);
        transport_stream_open_socketless(t, &peer, 1, out);
        return 0;
    }
    if (tr == CONFIG_TRANSPORT_TLS && transport_tls_client(t) < 0)
        return -1;
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (const struct sockaddr *)addr, len) < 0 && errno != EINPROGRESS) {
        char ip[INET6_ADDRSTRLEN];
        int port;
        transport_addr_str((const struct sockaddr *)addr, ip, sizeof ip, &port);
        log_warn("%s: cannot connect to %s:%d: %s", config_transport_name(tr), ip, port,
                 strerror(errno));
        close(fd);
        return -1;
    }
    struct conn *c = conn_new(t, fd, tr, listener, addr, len, t->tls_client_ctx);
    c->connecting = 1;
    if (c->ssl) {
        SSL_set_connect_state(c->ssl);
        if (tls_host && *tls_host) {
            unsigned char ip[16];
            if (inet_pton(AF_INET, tls_host, ip) == 1 || inet_pton(AF_INET6, tls_host, ip) == 1) {
                /* an address: checked against the certificate's IP SANs, no SNI */
                X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), tls_host);
            } else {
                SSL_set_tlsext_host_name(c->ssl, tls_host);
                SSL_set1_host(c->ssl, tls_host);
            }
        }
    }
    conn_start(c, EV_WRITE);
    log_debug("%s: connection %llu to %s:%d", config_transport_name(tr), (unsigned long long)c->id,
              c->src.ip, c->src.port);
    *out = c->src;
    return 0;
}

static void conn_free_cb(struct ev_loop *loop, ev_timer *w, int revents);

static void conn_close(struct conn *c, const char *why)
{
    if (c->closing)
        return;
    c->closing = 1;
    struct transport *t = c->t;
    log_debug("%s: connection %llu from %s:%d closed: %s", config_transport_name(c->src.transport),
              (unsigned long long)c->id, c->src.ip, c->src.port, why);
    if (strcmp(why, "closed by peer") != 0 && strcmp(why, "shutdown") != 0)
        log_info("%s: closing connection from %s:%d: %s", config_transport_name(c->src.transport),
                 c->src.ip, c->src.port, why);
    hashtab_remove(&t->flows, &c->hn);
    source_release(c);
    metrics_add(METRICS_TCP_CONNECTIONS, -1);
    ev_io_stop(t->loop, &c->io);
    ev_timer_stop(t->loop, &c->timer);
    if (c->ssl) {
        if (!c->handshaking)
            SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    close(c->fd);
    if (t->closed_cb && strcmp(why, "shutdown") != 0)
        t->closed_cb(t->closed_arg, c->id);
    /* The connection may be closed from inside its own callback chain; free it from the
     * loop once that chain has unwound. */
    ev_timer_init(&c->timer, conn_free_cb, 0, 0);
    c->timer.data = c;
    ev_timer_start(t->loop, &c->timer);
}

static void conn_free_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct conn *c = w->data;
    ev_timer_stop(loop, w);
    buf_free(&c->in);
    buf_free(&c->out);
    free(c);
}

static void close_node(struct hashtab_node *n, void *arg)
{
    (void)arg;
    struct conn *c = HASHTAB_ENTRY(n, struct conn, hn);
    conn_close(c, "shutdown");
    ev_timer_stop(c->t->loop, &c->timer);
    buf_free(&c->in);
    buf_free(&c->out);
    free(c);
}

void transport_stream_close_all(struct transport *t)
{
    /* drained first: conn_close then finds nothing left to unlink */
    hashtab_drain(&t->flows, close_node, NULL);
}
