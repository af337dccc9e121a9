/*
 * h2_pool: HTTP/2 over TLS to the push services, on the loop (nghttp2 + OpenSSL).
 *
 * A pool serves one endpoint (host, port) with one credential (a client certificate for
 * APNs certificate auth, or none): up to max_connections TLS connections that offered and
 * agreed ALPN "h2", each carrying as many concurrent streams as the server's SETTINGS allow.
 * Requests wait in a bounded FIFO queue until a stream is free; a full queue is refused at
 * once. Every request has a deadline: unanswered by then, its stream is reset and it fails
 * with "timeout". A connection never carries more streams than the server's
 * SETTINGS_MAX_CONCURRENT_STREAMS, and one until its first SETTINGS arrived (APNs allows one
 * until it saw a valid provider token).
 *
 * Health: a connection idle for ping_after seconds is PINGed (APNs asks for that), and so is
 * one that gets a request after more than ping_timeout seconds of silence. A PING not
 * ACKed within ping_timeout means the server stopped answering: the connection is replaced
 * and the requests it carried go again, once each, on another one. TCP keepalive and
 * TCP_USER_TIMEOUT (derived from ping_timeout) find a vanished peer in seconds and are
 * handled the same way.
 *
 * A GOAWAY stops new streams on that connection; the requests the server did not process
 * (above its last stream id, or refused) go back to the head of the queue and are sent on
 * a new connection, so nothing queued is lost; a stream refused with RST_STREAM
 * REFUSED_STREAM (RFC 9113 §8.7: not processed) goes again on the same pool. A connection
 * that breaks otherwise fails the requests it was carrying ("connection lost") — the
 * server may have acted on them, so retrying is the caller's decision.
 *
 * Host names are resolved on a thread (getaddrinfo), fresh for each connection (Apple asks
 * for that); the loop never blocks. Nothing here knows APNs or FCM.
 */
#ifndef SIPWAKE_H2_POOL_H
#define SIPWAKE_H2_POOL_H

#include <stddef.h>

#include <ev.h>

struct h2_header {
    const char *name;
    const char *value;
};

struct h2_response {
    int status;                      /* 0 when the request failed (then error is set) */
    const struct h2_header *headers; /* response headers (lower-case names), n_headers */
    size_t n_headers;
    const char *body; /* NUL-terminated for convenience; body_len bytes */
    size_t body_len;
    const char *error; /* "timeout", "queue shut down", "connection lost", ... or NULL */
};

/* Called once per submitted request, on the loop; resp and its strings live for the call
 * only. */
typedef void (*h2_cb)(void *arg, const struct h2_response *resp);

struct sockaddr;
struct h2_pool_options {
    const char *host; /* name or numeric address; also the TLS name checked */
    int port;
    const char *ca_file;     /* CAs the server's certificate is checked against; NULL: system's */
    const char *client_cert; /* PEM file (chain) for certificate auth, or the PEM text itself
                              * (chain and key; starts "-----BEGIN"), or NULL */
    const char *client_key;  /* its PEM key file (NULL: in client_cert) */
    int max_connections;     /* 0: 1 */
    size_t max_queue;        /* requests waiting for a stream; 0: 1000 */
    double timeout;          /* seconds per request; 0: 10 */
    double ping_after;       /* idle seconds before a PING; 0: the process default (3600) */
    double ping_timeout;     /* seconds a PING may wait for its ACK; 0: the default (5) */
    /* if set, an address it returns 1 for is not connected to (the connection fails, its
     * requests with it): checked on the address the name resolved to */
    int (*addr_refused)(const struct sockaddr *sa);
};

/* The process-wide defaults for pools whose options leave ping_after or ping_timeout at 0
 * ([push] ping_interval and ping_timeout); a value <= 0 keeps the current one. Loop thread;
 * pools made afterwards use them. */
void h2_pool_set_health(double ping_after, double ping_timeout);

struct h2_pool;

/* A pool (no connection is opened before the first request). NULL with err when the TLS
 * context cannot be made (unreadable CA file, client certificate or key). o->host is copied
 * and the files are read during the call (at start, a reload or a credential change: not
 * per request); loop is borrowed and must outlive the pool. The caller frees it with
 * h2_pool_free. Loop thread, as is every function here. */
struct h2_pool *h2_pool_new(struct ev_loop *loop, const struct h2_pool_options *o, char *err,
                            size_t errlen);

/* Fail every request with "shut down" (their callbacks run before it returns), close every
 * connection and free p. Loop thread. Never waits: a host name lookup in progress is
 * orphaned (its thread frees it and drops the answer; it never touches p again). NULL: no-op.
 * Never from inside one of p's callbacks (one may run inside nghttp2's processing of p's
 * connection, which would go on in freed memory): a callback that wants p gone frees it from
 * the loop's next turn (push.c retires a credential set so). */
void h2_pool_free(struct h2_pool *p);

/* Queue a request: method, path, extra headers (":authority" and ":scheme" are added), and
 * a body, all copied. 0: cb will be called exactly once, from the loop, never before
 * h2_pool_submit returns (a request that fails at once — a connection that cannot even
 * start, a stream nghttp2 will not open — is reported on the loop's next turn). -1: the
 * queue is full, or p is being freed (a callback of h2_pool_free trying again); cb is not
 * called. arg is passed back untouched. Loop thread. */
int h2_pool_submit(struct h2_pool *p, const char *method, const char *path,
                   const struct h2_header *headers, size_t n_headers, const char *body,
                   size_t body_len, h2_cb cb, void *arg);

/* Requests queued (not yet on a stream) and in flight, and connections open. Loop thread. */
size_t h2_pool_queued(const struct h2_pool *p);
size_t h2_pool_in_flight(const struct h2_pool *p);
size_t h2_pool_connections(const struct h2_pool *p);

#endif
