/*
 * transport: the UDP, TCP and TLS listeners, their connections, and the flow table.
 *
 * Every complete SIP message received is handed to one callback with a struct sip_source
 * that says where it came from: transport, peer address, the listener, and for TCP/TLS the
 * flow id of the connection. A flow id is never reused, not even by a later run, so a binding that
 * remembers one can later ask whether that connection is still open (transport_flow_alive)
 * and send down it; once the connection closes, the id simply stops resolving.
 *
 * Streams are framed by Content-Length (RFC 3261 §18.3). A CRLFCRLF ping is answered with a
 * CRLF pong (RFC 5626 §3.5.1). A connection silent for tcp_idle_timeout, or that takes longer
 * than tcp_message_timeout to finish a message or a TLS handshake, is closed.
 */
#ifndef SIPWAKE_TRANSPORT_H
#define SIPWAKE_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <ev.h>

#include "config.h"

struct transport;

struct sip_source {
    enum config_transport transport;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char ip[INET6_ADDRSTRLEN];
    int port;
    int listener;     /* index into the configured listeners */
    uint64_t flow_id; /* the TCP/TLS connection; 0 for UDP */
    /* UDP: seconds the datagram waited since it arrived, in the kernel's receive queue and
     * behind the others of its recvmmsg batch (the kernel's SO_TIMESTAMPNS stamp against the
     * clock when it is handed over); 0 when unknown, and for TCP/TLS */
    double queued;
};

/* Called for each complete message, on the loop. buf and src are borrowed for the call
 * only. */
typedef void (*transport_msg_cb)(void *arg, const char *buf, size_t len,
                                 const struct sip_source *src);

/* Bind every listener of cfg and start serving on loop. cfg is borrowed for the transport's
 * lifetime, loop too; arg is passed back to cb untouched. 0 with *out (the caller frees it
 * with transport_close), or -1 with err (nothing left open). Loop thread, as is every
 * function here that takes a struct transport. */
int transport_open(struct ev_loop *loop, const struct config *cfg, transport_msg_cb cb, void *arg,
                   struct transport **out, char *err, size_t errlen);

/* Send bytes to dst: a UDP datagram from dst->listener's socket to dst->addr, or the bytes
 * queued on the connection dst->flow_id. buf is copied when it cannot go at once (a UDP
 * burst being answered, a stream's pending output): the caller keeps it. 0, or -1 if the
 * flow is gone or the send failed. Loop thread. */
int transport_send(struct transport *t, const struct sip_source *dst, const char *buf, size_t len);

/* Open a TCP or TLS connection to addr; *out is where to send (its flow id set). Bytes sent
 * before the connection is up wait for it. The local side is the first listener of that
 * transport and family (for Via and Record-Route). TLS checks the peer's certificate
 * against [tls] ca, else the system's CAs, and its name against tls_host when given (not
 * NULL or ""; copied). 0, or -1 when no such listener exists or the connect fails at once.
 * addr is only read; out is the caller's. Loop thread. */
int transport_stream_connect(struct transport *t, enum config_transport tr,
                             const struct sockaddr_storage *addr, socklen_t len,
                             const char *tls_host, struct sip_source *out);

/* Call cb (on the loop) when a TCP/TLS connection closes, for any reason but shutdown. One
 * observer: a second call replaces the first. */
void transport_on_close(struct transport *t, void (*cb)(void *arg, uint64_t flow_id), void *arg);

/* Call cb on the loop between two UDP datagrams of one read batch (up to
 * TRANSPORT_UDP_BATCH, served one after the other): work finished elsewhere (a store commit)
 * is taken up then, not after the whole batch. cb returns 1 if it queued sends, which then
 * go out at once instead of with the batch's. cb must be cheap when there is nothing to do.
 * One observer: a second call replaces the first. */
void transport_on_between(struct transport *t, int (*cb)(void *arg), void *arg);

/* Call cb for every UDP datagram received, keep-alives (CRLF, STUN) and garbage included,
 * before anything else looks at it: what proves a UDP peer is there. src is borrowed for
 * the call; cb must be cheap. One observer: a second call replaces the first. */
void transport_on_udp_heard(struct transport *t,
                            void (*cb)(void *arg, const struct sip_source *src), void *arg);

/* The UDP listeners' receive queues now, summed: bytes waiting (the kernel's count, which
 * includes its per-datagram overhead) and datagrams the kernel dropped because the queue was
 * full, since the sockets opened (SO_MEMINFO). Loop thread. */
void transport_udp_load(const struct transport *t, uint64_t *queued_bytes, uint64_t *drops);

/* 1 if the TCP/TLS connection of flow_id is still open. Loop thread. */
int transport_flow_alive(const struct transport *t, uint64_t flow_id);

/* The listener a source arrived on (borrowed from the config: valid while it is). */
const struct config_listen *transport_listener(const struct transport *t, int index);

/* Print one line per listener: "listening on udp:127.0.0.1:5060". */
void transport_log_listeners(const struct transport *t);

/* Close every listener and connection (no close callbacks) and free t. NULL: no-op. Loop
 * thread. */
void transport_close(struct transport *t);

/* ---- the seam for the fuzzers (tests/fuzz/): a transport without sockets ---- */

/* Where a recording transport's sends go instead of a socket: dst and buf borrowed for the
 * call. */
typedef void (*transport_record_cb)(void *arg, const struct sip_source *dst, const char *buf,
                                    size_t len);

/* A transport with cfg's listeners (for Via, Record-Route, transport_find_listener) but no
 * socket: nothing is bound, every send goes to record (as transport_send answers: -1 for a
 * closed flow), transport_stream_connect opens a connection without a socket, and messages
 * arrive only through transport_inject. cfg is borrowed for its lifetime; free it with
 * transport_close. Not for the server: tests/fuzz/ drives the dispatch through it. */
struct transport *transport_open_recording(struct ev_loop *loop, const struct config *cfg,
                                           transport_msg_cb cb, void *arg,
                                           transport_record_cb record, void *record_arg);

/* Open a TCP or TLS connection from peer (its transport, address and listener) on a
 * recording transport, without a socket (TLS bytes are taken as already decrypted); *out is
 * peer with the new flow id. */
void transport_inject_connection(struct transport *t, const struct sip_source *peer,
                                 struct sip_source *out);

/* Bytes received from src on a recording transport, as the listeners receive them: over UDP
 * one datagram (src's address, listener and queued: how long it waited; at most 65535 bytes), over
 * TCP/TLS bytes arriving on the connection src->flow_id, framed by Content-Length with keep-alives
 * answered, as a connection frames what it reads. buf is borrowed for the call. 0, or -1 when
 * the connection is closed (by the framing, or a send that failed). */
int transport_inject(struct transport *t, const struct sip_source *src, const char *buf,
                     size_t len);

/* A sockaddr from a numeric IPv4/IPv6 address and a port, into the caller's ss. 0 or -1. Any
 * thread (as transport_addr_str). */
int transport_addr_make(const char *ip, int port, struct sockaddr_storage *ss, socklen_t *len);

/* The first listener of this transport and address family, or -1. */
int transport_find_listener(const struct transport *t, enum config_transport tr, int family);

/* The URI parameter naming transport t: "" for UDP (the default), ";transport=tcp" or
 * ";transport=tls" (static strings). Any thread. */
const char *transport_uri_param(enum config_transport t);

/* Format a sockaddr as numeric ip (the caller's iplen bytes) and port. */
void transport_addr_str(const struct sockaddr *sa, char *ip, size_t iplen, int *port);

#endif
