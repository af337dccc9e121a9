/*
 * transport_int: what the transport files share among themselves and nobody else.
 */
#ifndef SIPWAKE_TRANSPORT_INT_H
#define SIPWAKE_TRANSPORT_INT_H

#include <openssl/ssl.h>

#include "hashtab.h"
#include "transport.h"
#include "util.h"

struct conn;

/* Datagrams read per recvmmsg, and responses sent per sendmmsg. */
#define TRANSPORT_UDP_BATCH 32

/* UDP responses queued while a burst of datagrams is being handled, sent in one sendmmsg. */
struct udp_out {
    int n;
    size_t off[TRANSPORT_UDP_BATCH], len[TRANSPORT_UDP_BATCH];
    struct sockaddr_storage addr[TRANSPORT_UDP_BATCH];
    socklen_t addrlen[TRANSPORT_UDP_BATCH];
    struct buf data;
};

struct listener {
    struct transport *t;
    int index;
    int fd;
    enum config_transport transport;
    ev_io io;
    struct udp_out out;
    /* streams: accept() failing for want of descriptors (EMFILE, ENFILE...) pauses the
     * watcher for backoff seconds (0.1 doubling to 1) instead of spinning on the backlog */
    ev_timer backoff_timer;
    double backoff;              /* 0 while accepting normally */
    unsigned long accept_errors; /* failures since the last accepted connection */
};

struct transport {
    struct ev_loop *loop;
    const struct config *cfg;
    transport_msg_cb cb;
    void *cb_arg;
    void (*closed_cb)(void *arg, uint64_t flow_id);
    int (*between_cb)(void *arg); /* transport_on_between; NULL: none */
    void *between_arg;
    void *closed_arg;
    void (*heard_cb)(void *arg, const struct sip_source *src); /* every UDP datagram */
    void *heard_arg;
    struct listener *listeners;
    size_t n_listeners;
    SSL_CTX *tls_ctx;
    SSL_CTX *tls_client_ctx;     /* for connections sipwake opens, made on first use */
    struct hashtab flows;        /* open TCP/TLS connections by flow id */
    struct hashtab sources;      /* accepted connections per source address (struct source_count) */
    ev_tstamp refused_logged_at; /* refusals by a connection cap are logged once a second */
    unsigned long refused_unlogged;
    uint64_t next_flow_id;
    char *udp_buf; /* TRANSPORT_UDP_BATCH receive buffers of 65536 bytes */
    int batching;  /* inside a UDP burst: UDP sends are queued, flushed at its end */
    /* A loop iteration is one burst too: batch_begin (ev_check, first after the poll) turns
     * batching on, batch_end (ev_prepare, before the next poll) flushes. So the answers a
     * store commit releases (a group of REGISTERs' 200s), timers' retransmissions and a
     * readable socket's responses leave in one sendmmsg per listener per iteration, not one
     * sendto each. Started only by transport_open (a socket server). */
    ev_check batch_begin;
    ev_prepare batch_end;
    /* transport_open_recording: sends go here, not to a socket; NULL for the server */
    transport_record_cb record;
    void *record_arg;
};

/* Loop thread, as is everything here. buf arguments are copied when they must wait (as
 * transport_send). */

/* transport_udp.c */
void transport_udp_readable(struct listener *l);
int transport_udp_send(struct transport *t, const struct sip_source *dst, const char *buf,
                       size_t len);
/* transport_inject of a datagram: handled as one read from the socket is. */
void transport_udp_inject(struct transport *t, const struct sip_source *src, const char *buf,
                          size_t len);
/* Send what the burst queued, one sendmmsg per listener. */
void transport_udp_flush_all(struct transport *t);

/* transport_stream.c; transport_stream_find's conn belongs to t (NULL: the flow is gone),
 * valid until the loop runs again. */
void transport_stream_accept(struct listener *l);
int transport_stream_send(struct transport *t, uint64_t flow_id, const char *buf, size_t len);
struct conn *transport_stream_find(const struct transport *t, uint64_t flow_id);
void transport_stream_close_all(struct transport *t);
/* A connection without a socket (recording transports): from peer, or (connecting) to it. */
struct conn *transport_stream_open_socketless(struct transport *t, const struct sip_source *peer,
                                              int connecting, struct sip_source *out);
/* transport_inject on a stream: the bytes as read from flow_id. 0, or -1 if it is closed. */
int transport_stream_inject(struct transport *t, uint64_t flow_id, const char *buf, size_t len);

/* transport_tls.c */
/* The server TLS context of cfg [tls] (reads the certificate and key files, making a
 * self-signed pair in data_dir/tls when none is configured: at start). NULL with err. The
 * caller frees it with SSL_CTX_free. */
SSL_CTX *transport_tls_context(const struct config *cfg, char *err, size_t errlen);
/* Make t->tls_client_ctx if not yet made: peers are verified against [tls] ca, else the
 * system's CAs. 0 or -1 (logged). */
int transport_tls_client(struct transport *t);

#endif
