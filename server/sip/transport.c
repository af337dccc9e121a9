/*
 * transport: listener setup and the send path shared by UDP and streams.
 */
#include "transport.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "transport_int.h"

/* Dotted-quad of a (network order) into out, which has room for INET_ADDRSTRLEN bytes:
 * what inet_ntop writes, without the sprintf glibc's inet_ntop runs per address; this is
 * done for every datagram received. */
static void ipv4_str(const struct in_addr *a, char *out)
{
    const unsigned char *b = (const unsigned char *)&a->s_addr;
    char *o = out;
    for (int i = 0; i < 4; i++) {
        unsigned v = b[i];
        if (v >= 100)
            *o++ = (char)('0' + v / 100);
        if (v >= 10)
            *o++ = (char)('0' + v / 10 % 10);
        *o++ = (char)('0' + v % 10);
        *o++ = i < 3 ? '.' : '\0';
    }
}

void transport_addr_str(const struct sockaddr *sa, char *ip, size_t iplen, int *port)
{
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, (socklen_t)iplen);
        *port = ntohs(s6->sin6_port);
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        if (iplen >= INET_ADDRSTRLEN)
            ipv4_str(&s4->sin_addr, ip);
        else
            inet_ntop(AF_INET, &s4->sin_addr, ip, (socklen_t)iplen);
        *port = ntohs(s4->sin_port);
    }
}

int transport_addr_make(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        *len = sizeof *s4;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        *len = sizeof *s6;
        return 0;
    }
    return -1;
}

const char *transport_uri_param(enum config_transport t)
{
    return t == CONFIG_TRANSPORT_UDP   ? ""
           : t == CONFIG_TRANSPORT_TCP ? ";transport=tcp"
                                       : ";transport=tls";
}

static void listener_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct listener *l = w->data;
    if (l->transport == CONFIG_TRANSPORT_UDP)
        transport_udp_readable(l);
    else
        transport_stream_accept(l);
}

static int open_listener(struct transport *t, size_t i, char *err, size_t errlen)
{
    const struct config_listen *cl = &t->cfg->listens[i];
    struct listener *l = &t->listeners[i];
    l->t = t;
    l->index = (int)i;
    l->transport = cl->transport;
    struct sockaddr_storage ss;
    socklen_t len;
    if (transport_addr_make(cl->host, cl->port, &ss, &len) < 0) {
        snprintf(err, errlen, "bad address %s", cl->host);
        return -1;
    }
    int stream = cl->transport != CONFIG_TRANSPORT_UDP;
    l->fd =
        socket(ss.ss_family, (stream ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ss.ss_family == AF_INET6)
        setsockopt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (!stream) {
        int size = (int)t->cfg->udp_queue_kb * 1024;
        /* past net.core.rmem_max only with CAP_NET_ADMIN; else cut to it, and said below */
        if (setsockopt(l->fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
            setsockopt(l->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
        int got = 0;
        socklen_t gotlen = sizeof got;
        /* the kernel reports twice what it grants (its bookkeeping overhead) */
        if (getsockopt(l->fd, SOL_SOCKET, SO_RCVBUF, &got, &gotlen) == 0 && got / 2 < size)
            log_warn("udp: the receive queue of udp:%s:%d is %d KB, not the %ld KB asked ([sip] "
                     "udp_queue_kb): net.core.rmem_max cuts it, and new requests will be "
                     "dropped by the kernel before they wait overload_queue_ms; raise it "
                     "(sysctl -w net.core.rmem_max=%d) or give sipwake CAP_NET_ADMIN",
                     cl->host, cl->port, got / 2 / 1024, t->cfg->udp_queue_kb, size);
        int snd = 4 * 1024 * 1024;
        setsockopt(l->fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd);
        /* each datagram carries the time it was queued: how long it waited is what
         * overload.c sheds new work on */
        setsockopt(l->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
    }
    if (bind(l->fd, (struct sockaddr *)&ss, len) < 0) {
        snprintf(err, errlen, "cannot listen on %s:%s:%d: %s", config_transport_name(cl->transport),
                 cl->host, cl->port, strerror(errno));
        close(l->fd);
        l->fd = -1;
        return -1;
    }
    if (stream && listen(l->fd, 1024) < 0) {
        snprintf(err, errlen, "listen %s:%d: %s", cl->host, cl->port, strerror(errno));
        close(l->fd);
        l->fd = -1;
        return -1;
    }
    ev_io_init(&l->io, listener_cb, l->fd, EV_READ);
    l->io.data = l;
    ev_io_start(t->loop, &l->io);
    return 0;
}

/* The loop iteration's UDP batch (see struct transport): on after the poll, before any
 * other callback of the iteration (highest priority, and checks are invoked first)... */
static void batch_begin_cb(struct ev_loop *loop, ev_check *w, int revents)
{
    (void)loop;
    (void)revents;
    struct transport *t = w->data;
    t->batching = 1;
}

/* ...and flushed before the loop waits again. */
static void batch_end_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    struct transport *t = w->data;
    t->batching = 0;
    transport_udp_flush_all(t);
}

int transport_open(struct ev_loop *loop, const struct config *cfg, transport_msg_cb cb, void *arg,
                   struct transport **out, char *err, size_t errlen)
{
    struct transport *t = xcalloc(1, sizeof *t);
    t->loop = loop;
    t->cfg = cfg;
    t->cb = cb;
    t->cb_arg = arg;
    /* flow ids start at the wall clock in microseconds, so an id a flow token or a binding
     * kept from an earlier run never names a connection of this one (that would take more
     * connections than microseconds between the two starts) */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    t->next_flow_id = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    hashtab_init(&t->flows, 256);
    hashtab_init(&t->sources, 256);
    t->udp_buf = xmalloc((size_t)TRANSPORT_UDP_BATCH * 65536);
    t->listeners = xcalloc(cfg->n_listens, sizeof *t->listeners);
    for (size_t i = 0; i < cfg->n_listens; i++)
        t->listeners[i].fd = -1;
    for (size_t i = 0; i < cfg->n_listens; i++) {
        if (cfg->listens[i].transport == CONFIG_TRANSPORT_TLS && !t->tls_ctx) {
            t->tls_ctx = transport_tls_context(cfg, err, errlen);
            if (!t->tls_ctx)
                goto fail;
        }
    }
    for (size_t i = 0; i < cfg->n_listens; i++) {
        t->n_listeners = i + 1;
        if (open_listener(t, i, err, errlen) < 0)
            goto fail;
    }
    ev_check_init(&t->batch_begin, batch_begin_cb);
    t->batch_begin.data = t;
    ev_set_priority(&t->batch_begin, EV_MAXPRI);
    ev_check_start(loop, &t->batch_begin);
    ev_unref(loop); /* the batch watchers alone do not keep the loop running */
    ev_prepare_init(&t->batch_end, batch_end_cb);
    t->batch_end.data = t;
    ev_set_priority(&t->batch_end, EV_MINPRI);
    ev_prepare_start(loop, &t->batch_end);
    ev_unref(loop);
    *out = t;
    return 0;
fail:
    transport_close(t);
    return -1;
}

/* A recording transport's send: as transport_send answers, without a socket. */
static int record_send(struct transport *t, const struct sip_source *dst, const char *buf,
                       size_t len)
{
    if (dst->transport != CONFIG_TRANSPORT_UDP
            ? !transport_stream_find(t, dst->flow_id)
            : dst->listener < 0 || (size_t)dst->listener >= t->n_listeners)
        return -1;
    t->record(t->record_arg, dst, buf, len);
    return 0;
}

int transport_send(struct transport *t, const struct sip_source *dst, const char *buf, size_t len)
{
    if (t->record)
        return record_send(t, dst, buf, len);
    if (dst->transport != CONFIG_TRANSPORT_UDP)
        return transport_stream_send(t, dst->flow_id, buf, len);
    return transport_udp_send(t, dst, buf, len);
}

struct transport *transport_open_recording(struct ev_loop *loop, const struct config *cfg,
                                           transport_msg_cb cb, void *arg,
                                           transport_record_cb record, void *record_arg)
{
    struct transport *t = xcalloc(1, sizeof *t);
    t->loop = loop;
    t->cfg = cfg;
    t->cb = cb;
    t->cb_arg = arg;
    t->record = record;
    t->record_arg = record_arg;
    t->next_flow_id = 1;
    hashtab_init(&t->flows, 256);
    hashtab_init(&t->sources, 256);
    t->udp_buf = xmalloc(65536);
    t->listeners = xcalloc(cfg->n_listens, sizeof *t->listeners);
    t->n_listeners = cfg->n_listens;
    for (size_t i = 0; i < cfg->n_listens; i++) {
        t->listeners[i].t = t;
        t->listeners[i].index = (int)i;
        t->listeners[i].transport = cfg->listens[i].transport;
        t->listeners[i].fd = -1;
    }
    return t;
}

void transport_inject_connection(struct transport *t, const struct sip_source *peer,
                                 struct sip_source *out)
{
    transport_stream_open_socketless(t, peer, 0, out);
}

int transport_inject(struct transport *t, const struct sip_source *src, const char *buf, size_t len)
{
    if (src->transport != CONFIG_TRANSPORT_UDP)
        return transport_stream_inject(t, src->flow_id, buf, len);
    transport_udp_inject(t, src, buf, len);
    return 0;
}

int transport_find_listener(const struct transport *t, enum config_transport tr, int family)
{
    for (size_t i = 0; i < t->n_listeners; i++) {
        const struct config_listen *cl = &t->cfg->listens[i];
        int v6 = strchr(cl->host, ':') != NULL;
        if (cl->transport == tr && (family == AF_INET6) == v6)
            return (int)i;
    }
    return -1;
}

void transport_on_udp_heard(struct transport *t,
                            void (*cb)(void *arg, const struct sip_source *src), void *arg)
{
    t->heard_cb = cb;
    t->heard_arg = arg;
}

void transport_on_between(struct transport *t, int (*cb)(void *arg), void *arg)
{
    t->between_cb = cb;
    t->between_arg = arg;
}

void transport_on_close(struct transport *t, void (*cb)(void *arg, uint64_t flow_id), void *arg)
{
    t->closed_cb = cb;
    t->closed_arg = arg;
}

int transport_flow_alive(const struct transport *t, uint64_t flow_id)
{
    return flow_id && transport_stream_find(t, flow_id) != NULL;
}

const struct config_listen *transport_listener(const struct transport *t, int index)
{
    return &t->cfg->listens[index];
}

void transport_log_listeners(const struct transport *t)
{
    for (size_t i = 0; i < t->n_listeners; i++) {
        const struct config_listen *cl = &t->cfg->listens[i];
        int v6 = strchr(cl->host, ':') != NULL;
        log_notice("listening on %s:%s%s%s:%d", config_transport_name(cl->transport), v6 ? "[" : "",
                   cl->host, v6 ? "]" : "", cl->port);
    }
}

void transport_close(struct transport *t)
{
    if (!t)
        return;
    if (ev_is_active(&t->batch_begin)) {
        /* ev_break left the last iteration's batch unflushed, and what was sent since
         * (answers at shutdown) queued behind it */
        ev_ref(t->loop);
        ev_check_stop(t->loop, &t->batch_begin);
        ev_ref(t->loop);
        ev_prepare_stop(t->loop, &t->batch_end);
        t->batching = 0;
        transport_udp_flush_all(t);
    }
    transport_stream_close_all(t);
    for (size_t i = 0; i < t->n_listeners; i++) {
        if (t->listeners[i].fd >= 0) {
            ev_io_stop(t->loop, &t->listeners[i].io);
            ev_timer_stop(t->loop, &t->listeners[i].backoff_timer);
            close(t->listeners[i].fd);
        }
        buf_free(&t->listeners[i].out.data);
    }
    if (t->tls_ctx)
        SSL_CTX_free(t->tls_ctx);
    if (t->tls_client_ctx)
        SSL_CTX_free(t->tls_client_ctx);
    free(t->listeners);
    hashtab_free(&t->flows);
    hashtab_free(&t->sources); /* emptied by transport_stream_close_all */
    free(t->udp_buf);
    free(t);
}
