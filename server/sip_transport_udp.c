/*
 * sip_transport_udp: reading datagrams. One datagram is one message (RFC 3261 §18.3); the
 * receive loop drains the socket so one wake-up serves a burst.
 */
#include <errno.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "sip_transport_int.h"

void transport_udp_readable(struct listener *l)
{
    struct transport *t = l->t;
    for (int budget = 0; budget < 256; budget++) {
        struct sip_source src;
        src.addrlen = sizeof src.addr;
        ssize_t n =
            recvfrom(l->fd, t->udp_buf, 65535, 0, (struct sockaddr *)&src.addr, &src.addrlen);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                log_warn("udp: receive failed: %s", strerror(errno));
            return;
        }
        src.transport = CONFIG_TRANSPORT_UDP;
        src.listener = l->index;
        src.flow_id = 0;
        transport_addr_str((struct sockaddr *)&src.addr, src.ip, sizeof src.ip, &src.port);
        /* A lone CRLF or CRLFCRLF keep-alive over UDP carries nothing to answer. */
        if (n <= 4 && strspn(t->udp_buf, "\r\n") >= (size_t)n)
            continue;
        if ((size_t)n > (size_t)t->cfg->max_message_size) {
            log_warn("udp: %zd-byte datagram from %s:%d exceeds max_message_size, dropped", n,
                     src.ip, src.port);
            metrics_inc(METRICS_DROPPED);
            continue;
        }
        t->udp_buf[n] = '\0';
        t->cb(t->cb_arg, t->udp_buf, (size_t)n, &src);
    }
}
