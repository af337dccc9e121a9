/*
 * transport_udp: datagrams in and out. One datagram is one message (RFC 3261 §18.3).
 * A wake-up reads one recvmmsg of up to TRANSPORT_UDP_BATCH datagrams, and the responses
 * produced while handling them are queued and leave in one sendmmsg per listener at the end
 * of the burst, so a busy server makes two system calls per burst instead of two per
 * request. Outside a burst (timers, the store's answers) a send goes out at once.
 * One batch per wake-up, not the socket drained: the loop turn is the unit at which the
 * store's batch goes to its thread and the store's answers come back (store.c), so a turn
 * of 256 datagrams (it read up to 8 batches until 2026-12-06) held the first REGISTER's
 * commit, and its 200, for the whole turn. A datagram left in the socket wakes the next turn
 * at once; a REGISTER at 10,000/s then waited 1.6-1.7 ms (median) to 3.5-5.5 ms (p99) for
 * its 200 on the wire, against 1.9 and 7.5-10 ms with 8 batches (two runs each, register.sh).
 * Each datagram comes with the kernel's arrival stamp (SO_TIMESTAMPNS): how long it waited,
 * in the receive queue and then behind the datagrams read in the same batch, up to when it
 * is handed over, goes up in struct sip_source queued, for overload.c.
 */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <linux/sock_diag.h>

#include "log.h"
#include "metrics.h"
#include "transport_int.h"

static void udp_flush(struct listener *l)
{
    struct udp_out *o = &l->out;
    struct mmsghdr msgs[TRANSPORT_UDP_BATCH];
    struct iovec iov[TRANSPORT_UDP_BATCH];
    int sent = 0;
    for (int i = 0; i < o->n; i++) {
        iov[i].iov_base = o->data.data + o->off[i];
        iov[i].iov_len = o->len[i];
        memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].msg_hdr.msg_name = &o->addr[i];
        msgs[i].msg_hdr.msg_namelen = o->addrlen[i];
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    while (sent < o->n) {
        int r = sendmmsg(l->fd, msgs + sent, (unsigned)(o->n - sent), 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            /* One bad destination must not hold back the others: skip it. */
            char ip[INET6_ADDRSTRLEN];
            int port;
            transport_addr_str((struct sockaddr *)&o->addr[sent], ip, sizeof ip, &port);
            log_warn("udp: send to %s:%d failed: %s", ip, port, strerror(errno));
            sent++;
            continue;
        }
        sent += r;
    }
    o->n = 0;
    o->data.len = 0;
}

int transport_udp_send(struct transport *t, const struct sip_source *dst, const char *buf,
                       size_t len)
{
    if (dst->listener < 0 || (size_t)dst->listener >= t->n_listeners)
        return -1;
    struct listener *l = &t->listeners[dst->listener];
    if (!t->batching) {
        ssize_t n = sendto(l->fd, buf, len, 0, (const struct sockaddr *)&dst->addr, dst->addrlen);
        if (n < 0) {
            log_warn("udp: send to %s:%d failed: %s", dst->ip, dst->port, strerror(errno));
            return -1;
        }
        return 0;
    }
    struct udp_out *o = &l->out;
    if (o->n == TRANSPORT_UDP_BATCH)
        udp_flush(l);
    o->off[o->n] = o->data.len;
    o->len[o->n] = len;
    memcpy(&o->addr[o->n], &dst->addr, dst->addrlen);
    o->addrlen[o->n] = dst->addrlen;
    buf_append(&o->data, buf, len);
    o->n++;
    return 0;
}

static void handle(struct listener *l, char *buf, size_t n, struct sip_source *src)
{
    struct transport *t = l->t;
    src->transport = CONFIG_TRANSPORT_UDP;
    src->listener = l->index;
    src->flow_id = 0;
    transport_addr_str((struct sockaddr *)&src->addr, src->ip, sizeof src->ip, &src->port);
    if (t->heard_cb)
        t->heard_cb(t->heard_arg, src);
    /* A lone CRLF or CRLFCRLF keep-alive over UDP carries nothing to answer. */
    if (n <= 4 && strspn(buf, "\r\n") >= n)
        return;
    if (n > (size_t)t->cfg->max_message_size) {
        log_warn("udp: %zu-byte datagram from %s:%d exceeds max_message_size, dropped", n, src->ip,
                 src->port);
        metrics_inc(METRICS_DROPPED);
        return;
    }
    buf[n] = '\0';
    t->cb(t->cb_arg, buf, n, src);
}

void transport_udp_load(const struct transport *t, uint64_t *queued_bytes, uint64_t *drops)
{
    *queued_bytes = *drops = 0;
    for (size_t i = 0; i < t->n_listeners; i++) {
        const struct listener *l = &t->listeners[i];
        if (l->transport != CONFIG_TRANSPORT_UDP || l->fd < 0)
            continue;
        uint32_t mem[SK_MEMINFO_VARS] = {0};
        socklen_t len = sizeof mem;
        if (getsockopt(l->fd, SOL_SOCKET, SO_MEMINFO, mem, &len) < 0)
            continue;
        *queued_bytes += mem[SK_MEMINFO_RMEM_ALLOC];
        *drops += mem[SK_MEMINFO_DROPS];
    }
}

void transport_udp_inject(struct transport *t, const struct sip_source *src, const char *buf,
                          size_t len)
{
    if (src->listener < 0 || (size_t)src->listener >= t->n_listeners || len > 65535)
        return;
    struct sip_source s = {.addrlen = src->addrlen, .queued = src->queued};
    memcpy(&s.addr, &src->addr, src->addrlen);
    memcpy(t->udp_buf, buf, len); /* room for the NUL handle() writes, as a read has */
    handle(&t->listeners[src->listener], t->udp_buf, len, &s);
}

void transport_udp_flush_all(struct transport *t)
{
    for (size_t i = 0; i < t->n_listeners; i++)
        if (t->listeners[i].out.n)
            udp_flush(&t->listeners[i]);
}

/* How long the datagram of m waited since it arrived: its SO_TIMESTAMPNS stamp against now
 * (CLOCK_REALTIME, the stamp's clock). 0 without a stamp, or when the clock was stepped
 * (a negative age, or one longer than any queue holds). */
static double queue_age(struct msghdr *m, const struct timespec *now)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_TIMESTAMPNS)
            continue;
        struct timespec ts;
        memcpy(&ts, CMSG_DATA(c), sizeof ts);
        if (!ts.tv_sec)
            return 0;
        double age = (double)(now->tv_sec - ts.tv_sec) + (now->tv_nsec - ts.tv_nsec) / 1e9;
        return age > 0 && age < 60 ? age : 0;
    }
    return 0;
}

void transport_udp_readable(struct listener *l)
{
    struct transport *t = l->t;
    int outer = t->batching; /* the loop iteration's batch (transport.c): it flushes */
    struct mmsghdr msgs[TRANSPORT_UDP_BATCH];
    struct iovec iov[TRANSPORT_UDP_BATCH];
    struct sip_source src[TRANSPORT_UDP_BATCH];
    union {
        char buf[CMSG_SPACE(sizeof(struct timespec))];
        struct cmsghdr align;
    } ctl[TRANSPORT_UDP_BATCH];
    t->batching = 1;
    for (int i = 0; i < TRANSPORT_UDP_BATCH; i++) {
        iov[i].iov_base = t->udp_buf + (size_t)i * 65536;
        iov[i].iov_len = 65535; /* room for a terminating NUL */
        memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].msg_hdr.msg_name = &src[i].addr;
        msgs[i].msg_hdr.msg_namelen = sizeof src[i].addr;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_control = ctl[i].buf;
        msgs[i].msg_hdr.msg_controllen = sizeof ctl[i].buf;
    }
    int n = recvmmsg(l->fd, msgs, TRANSPORT_UDP_BATCH, MSG_DONTWAIT, NULL);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        log_warn("udp: receive failed: %s", strerror(errno));
    for (int i = 0; i < n; i++) {
        /* read the clock for each datagram, not once per batch: the batch is served one
         * datagram after the other, and the last of 32 has waited for the 31 before it as
         * well (a slow policy makes that hundreds of ms) */
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        src[i].addrlen = msgs[i].msg_hdr.msg_namelen;
        src[i].queued = queue_age(&msgs[i].msg_hdr, &now);
        handle(l, iov[i].iov_base, msgs[i].msg_len, &src[i]);
        /* what finished meanwhile (a commit a REGISTER's 200 waits for) goes out now, not
         * after the rest of the batch */
        if (i + 1 < n && t->between_cb && t->between_cb(t->between_arg))
            transport_udp_flush_all(t);
    }
    t->batching = outer;
    if (!outer)
        transport_udp_flush_all(t);
}
