/*
 * admin_http: libmicrohttpd on the libev loop.
 *
 * MHD runs without threads of its own: its epoll descriptor is watched by an ev_io, and
 * MHD_get_timeout sets an ev_timer; both call MHD_run. A request whose handler waits for the
 * store is suspended (MHD stops watching it) and resumed when the answer is ready; MHD's
 * inter-thread channel then wakes its epoll descriptor and the answer goes out.
 *
 * At its connection limit MHD takes its listening socket out of its epoll set, and puts it
 * back only at the start of a run once connections have closed; a run that closed any is
 * therefore followed by another at once, or nothing would ever wake the daemon again. One
 * client address holds at most [admin] max_connections_per_address of the 128.
 *
 * MHD's own connection timeout only measures inactivity, so a client sending a byte now and
 * then could hold a connection for ever, and 128 of them the whole admin (slowloris). Each
 * connection therefore has [admin] request_timeout to send a request's headers — counted from
 * its opening or from the end of its previous answer — and as long again for the body; one
 * that does not is shut down (its socket, so MHD sees the end at its next run and closes it).
 * The connections waiting for a request are kept oldest first, so one timer serves them all.
 * A connection whose request is with the handler, or whose answer is going out, is not timed
 * here (MHD's inactivity timeout still applies).
 *
 * A client that closes its end before its request is complete can never complete it. Driven
 * from outside, MHD does not always see that end when it arrives with the data in a burst of
 * new connections (they stayed open until their deadline, keeping everyone else out for as
 * long), so while connections wait for a request they are polled every ADMIN_GONE_POLL_S for
 * an end with nothing unread behind it, and shut down like overdue ones.
 *
 * Before anything else, a request's Host must name this admin (an IP address, localhost, a
 * name of [admin] hostnames or of the certificate): a page of another site whose name was
 * made to resolve to this address (DNS rebinding) gets 421 and nothing else.
 */
#include "admin_http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* One TCP connection (MHD's socket context), listed in its admin_http's `receiving` while a
 * request is awaited on it. Allocated when MHD opens the connection, freed when it closes. */
struct admin_conn {
    struct MHD_Connection *c;
    ev_tstamp since; /* when the current wait began (opening, headers, end of an answer) */
    int listed;
    struct admin_conn *prev, *next;
};

struct admin_http {
    struct ev_loop *loop;
    struct MHD_Daemon *d;
    ev_io io;
    ev_timer timer;
    admin_handler handler;
    void *arg;
    long max_body;
    int tls;
    char *cert, *key;
    struct admin_req *suspended; /* resumed before the daemon stops */
    char **names;                /* what Host may name besides an IP address (lower case) */
    size_t n_names;
    int at_limit; /* logged once each time the connection limit is reached */
    /* connections awaiting (part of) a request, oldest `since` first; the timer fires for
     * the first one's deadline */
    struct admin_conn *receiving, *receiving_last;
    ev_timer deadline;
    ev_timer gone; /* polls the connections waiting for a request for their client's end */
    double request_timeout;
};

#define CONNECTION_LIMIT 128
#define ADMIN_GONE_POLL_S 0.25

static void run(struct admin_http *h);
static const char *client_address(struct MHD_Connection *c, char *out, size_t n);

static void rearm(struct admin_http *h)
{
    MHD_UNSIGNED_LONG_LONG ms;
    ev_timer_stop(h->loop, &h->timer);
    if (MHD_get_timeout(h->d, &ms) == MHD_YES) {
        ev_timer_set(&h->timer, (double)ms / 1000.0, 0);
        ev_timer_start(h->loop, &h->timer);
    }
}

static unsigned connections(struct admin_http *h)
{
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return di ? di->num_connections : 0;
}

static void run(struct admin_http *h)
{
    unsigned before = connections(h);
    MHD_run(h->d);
    unsigned after = connections(h);
    if (after >= CONNECTION_LIMIT && !h->at_limit)
        log_warn("admin: %u connections open, the most it takes: new ones wait", after);
    h->at_limit = after >= CONNECTION_LIMIT;
    /* Connections came or went: run again at once. A connection closed lets MHD put its
     * listening socket back in its set, which it does only at the start of a run; and a
     * connection accepted with its data (and its end) already waiting may need a second run
     * to be read, since its edge-triggered event has been consumed. */
    if (after != before) {
        ev_timer_stop(h->loop, &h->timer);
        ev_timer_set(&h->timer, 0, 0);
        ev_timer_start(h->loop, &h->timer);
        return;
    }
    rearm(h);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    run(w->data);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    run(w->data);
}

/* ------------------------------------------------------------------ request deadline */

static void receiving_unlink(struct admin_http *h, struct admin_conn *k)
{
    if (!k->listed)
        return;
    if (k->prev)
        k->prev->next = k->next;
    else
        h->receiving = k->next;
    if (k->next)
        k->next->prev = k->prev;
    else
        h->receiving_last = k->prev;
    k->prev = k->next = NULL;
    k->listed = 0;
}

static void deadline_arm(struct admin_http *h)
{
    if (ev_is_active(&h->deadline) || !h->receiving)
        return;
    double after = h->receiving->since + h->request_timeout - ev_now(h->loop);
    ev_timer_set(&h->deadline, after > 0 ? after : 0, 0);
    ev_timer_start(h->loop, &h->deadline);
}

/* k starts waiting for a request (or its body) now: it goes last, its clock reset. */
static void receiving_start(struct admin_http *h, struct admin_conn *k)
{
    receiving_unlink(h, k);
    k->since = ev_now(h->loop);
    k->prev = h->receiving_last;
    if (h->receiving_last)
        h->receiving_last->next = k;
    else
        h->receiving = k;
    h->receiving_last = k;
    k->listed = 1;
    deadline_arm(h);
    if (!ev_is_active(&h->gone))
        ev_timer_again(h->loop, &h->gone);
}

/* The admin_conn of c (NULL only if MHD opened it before telling us). */
static struct admin_conn *conn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct admin_http *h = cls;
    struct admin_conn *k = *socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        k = xcalloc(1, sizeof *k);
        k->c = c;
        *socket_context = k;
        receiving_start(h, k); /* the TLS handshake and the first request count */
    } else if (k) {
        receiving_unlink(h, k);
        free(k);
        *socket_context = NULL;
    }
}

/* Shuts down the connections whose request is overdue, then lets MHD see their end. */
static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct admin_http *h = w->data;
    ev_tstamp now = ev_now(loop);
    unsigned n = 0;
    char first[64] = "";
    while (h->receiving && h->receiving->since + h->request_timeout <= now + 0.001) {
        struct admin_conn *k = h->receiving;
        receiving_unlink(h, k);
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(k->c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!ci)
            continue;
        if (!n)
            client_address(k->c, first, sizeof first);
        shutdown(ci->connect_fd, SHUT_RDWR);
        n++;
    }
    if (n) {
        log_info("admin: closed %u connection%s (%s%s) that sent no complete request within "
                 "[admin] request_timeout (%.0f s): idle keep-alive or too slow",
                 n, n == 1 ? "" : "s", first, n == 1 ? "" : " and others", h->request_timeout);
        run(h);
    }
    deadline_arm(h);
}

/* Shuts down the connections waiting for a request whose client has closed its end with
 * nothing left unread (a request it can no longer complete), then lets MHD see their end. */
static void gone_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct admin_http *h = w->data;
    struct pollfd pf[CONNECTION_LIMIT + 16];
    struct admin_conn *ks[CONNECTION_LIMIT + 16];
    nfds_t n = 0;
    for (struct admin_conn *k = h->receiving; k && n < UTIL_ARRAY_LEN(pf); k = k->next) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(k->c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!ci)
            continue;
        pf[n] = (struct pollfd){.fd = ci->connect_fd, .events = POLLIN | POLLRDHUP};
        ks[n++] = k;
    }
    unsigned closed = 0;
    if (n && poll(pf, n, 0) > 0) {
        for (nfds_t i = 0; i < n; i++) {
            int unread = 0;
            if (!(pf[i].revents & (POLLRDHUP | POLLHUP | POLLERR)) ||
                (ioctl(pf[i].fd, FIONREAD, &unread) == 0 && unread > 0))
                continue; /* still sending, or MHD has yet to read what it sent */
            receiving_unlink(h, ks[i]);
            shutdown(pf[i].fd, SHUT_RDWR);
            closed++;
        }
    }
    if (closed) {
        log_debug("admin: %u connection%s closed by the client before a complete request", closed,
                  closed == 1 ? "" : "s");
        run(h);
    }
    if (!h->receiving)
        ev_timer_stop(loop, w);
}

static void mhd_log(void *arg, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    log_warn("admin: %s", msg);
}

/* ------------------------------------------------------------------ requests */

static void req_free(struct admin_req *r)
{
    free(r->path);
    buf_free_secret(&r->body); /* it may have held a password or a key */
    buf_free(&r->out);
    free(r->set_cookie);
    free(r);
}

static void add_headers(struct admin_http *h, struct admin_req *r, struct MHD_Response *resp)
{
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                            "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
                            "base-uri 'none'; form-action 'self'");
    if (h->tls)
        MHD_add_response_header(resp, "Strict-Transport-Security", "max-age=31536000");
    if (r->content_type)
        MHD_add_response_header(resp, "Content-Type", r->content_type);
    if (r->set_cookie)
        MHD_add_response_header(resp, "Set-Cookie", r->set_cookie);
    if (r->retry_after > 0) {
        char v[24];
        snprintf(v, sizeof v, "%ld", r->retry_after);
        MHD_add_response_header(resp, "Retry-After", v);
    }
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
    struct admin_stream *s = cls;
    while (s->off == s->pending.len) {
        s->pending.len = s->off = 0;
        if (s->ended)
            return MHD_CONTENT_READER_END_OF_STREAM;
        int rc = s->next(s->state, &s->pending);
        if (rc < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (rc == 0)
            s->ended = 1;
    }
    size_t n = s->pending.len - s->off;
    if (n > max)
        n = max;
    memcpy(out, s->pending.data + s->off, n);
    s->off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    struct admin_stream *s = cls;
    s->done(s->state);
    buf_free(&s->pending);
    free(s);
}

static enum MHD_Result queue(struct admin_http *h, struct admin_req *r)
{
    struct MHD_Response *resp;
    struct admin_conn *k = conn_of(r->conn);
    if (k) /* answered: no longer waiting for the client */
        receiving_unlink(h, k);
    if (r->stream) {
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 32 * 1024, stream_read,
                                                 r->stream, stream_free);
        r->stream = NULL;
    } else {
        resp = MHD_create_response_from_buffer(r->out.len, r->out.data ? r->out.data : "",
                                               MHD_RESPMEM_MUST_COPY);
    }
    if (!resp)
        return MHD_NO;
    add_headers(h, r, resp);
    if (!r->content_type || strncmp(r->content_type, "text/html", 9) != 0)
        MHD_add_response_header(resp, "Cache-Control", "no-store");
    enum MHD_Result rc = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static void suspended_unlink(struct admin_http *h, struct admin_req *r)
{
    if (r->prev_suspended)
        r->prev_suspended->next_suspended = r->next_suspended;
    else
        h->suspended = r->next_suspended;
    if (r->next_suspended)
        r->next_suspended->prev_suspended = r->prev_suspended;
    r->next_suspended = r->prev_suspended = NULL;
}

static void answered(struct admin_req *r)
{
    struct admin_http *h = r->http;
    r->answered = 1;
    if (r->gone) { /* the client left while we waited */
        if (r->stream) {
            stream_free(r->stream);
            r->stream = NULL;
        }
        req_free(r);
        return;
    }
    r->waiting = 0;
    if (r->suspended) {
        r->suspended = 0;
        suspended_unlink(h, r);
        MHD_resume_connection(r->conn);
        ev_timer_stop(h->loop, &h->timer); /* MHD_run soon: the answer goes out */
        ev_timer_set(&h->timer, 0, 0);
        ev_timer_start(h->loop, &h->timer);
    }
}

static const char *client_address(struct MHD_Connection *c, char *out, size_t n)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(out, n, "?");
    if (!ci || !ci->client_addr)
        return out;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)n);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)n);
    return out;
}

/* s as printable ASCII for a log line (others as '?'), cut to fit out. */
static void printable(const char *s, char *out, size_t n)
{
    size_t i = 0;
    for (; s[i] && i + 1 < n; i++)
        out[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    out[i] = '\0';
}

/* Host's name (port and brackets off, lower case, one trailing dot off) into out; -1 when
 * it is not a plausible host. RFC 7230 §3.2.4: the value may be wrapped in optional
 * whitespace, SP or HTAB, which is not part of it. */
static int host_name(const char *host, char *out, size_t n)
{
    host += strspn(host, " \t");
    const char *last = host + strlen(host);
    while (last > host && (last[-1] == ' ' || last[-1] == '\t'))
        last--;
    const char *end;
    if (*host == '[') {
        end = memchr(host, ']', (size_t)(last - host));
        if (!end || (end + 1 < last && end[1] != ':'))
            return -1;
        host++;
    } else {
        end = memchr(host, ':', (size_t)(last - host));
        if (!end)
            end = last;
    }
    size_t len = (size_t)(end - host);
    if (len == 0 || len >= n)
        return -1;
    for (size_t i = 0; i < len; i++)
        out[i] = (char)tolower((unsigned char)host[i]);
    if (len > 1 && out[len - 1] == '.')
        len--;
    out[len] = '\0';
    return 0;
}

/* 1 when name matches pattern: equal, or pattern "*.rest" and name one label then ".rest"
 * (RFC 6125 §6.4.3, the wildcard alone in the left-most label). */
static int name_matches(const char *pattern, const char *name)
{
    if (strcmp(pattern, name) == 0)
        return 1;
    if (strncmp(pattern, "*.", 2) != 0)
        return 0;
    const char *dot = strchr(name, '.');
    return dot && dot != name && strcmp(dot, pattern + 1) == 0;
}

static enum MHD_Result count_host(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    if (strcasecmp(key, "Host") == 0)
        (*(unsigned *)cls)++;
    return MHD_YES;
}

/* How many Host header lines the request has. */
static unsigned host_count(struct MHD_Connection *c)
{
    unsigned n = 0;
    MHD_get_connection_values(c, MHD_HEADER_KIND, count_host, &n);
    return n;
}

/* 1 when the request's Host names this admin. An IP address cannot be a rebound name, so
 * any is taken; a name must be one of h->names. */
static int host_ok(struct admin_http *h, struct MHD_Connection *c)
{
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
    char name[256];
    unsigned char addr[16];
    if (!host || host_name(host, name, sizeof name) < 0)
        return 0;
    if (inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1)
        return 1;
    for (size_t i = 0; i < h->n_names; i++)
        if (name_matches(h->names[i], name))
            return 1;
    return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **ctx)
{
    struct admin_http *h = cls;
    struct admin_req *r = *ctx;
    if (!r) {
        r = xcalloc(1, sizeof *r);
        r->http = h;
        r->conn = c;
        snprintf(r->method, sizeof r->method, "%s", method);
        r->path = xstrdup(url);
        client_address(c, r->source, sizeof r->source);
        *ctx = r;
        struct admin_conn *k = conn_of(c);
        if (k) /* the headers are in: the body has its own request_timeout */
            receiving_start(h, k);
        if (host_count(c) > 1) {
            /* RFC 7230 §5.4: more than one Host line is a 400; which one to check would be
             * a guess an attacker could exploit */
            log_warn("admin: %s %s from %s refused: more than one Host header", r->method, r->path,
                     r->source);
            r->too_large = 1; /* the body, if any, is not read */
            admin_http_reply_error(r, 400, "more than one Host header (RFC 7230 section 5.4)");
            return queue(h, r);
        }
        if (!host_ok(h, c)) {
            char shown[64];
            const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
            printable(host ? host : "(none)", shown, sizeof shown);
            log_warn("admin: %s %s from %s refused: Host '%s' is not a name of this admin "
                     "([admin] hostnames)",
                     r->method, r->path, r->source, shown);
            r->too_large = 1; /* the body, if any, is not read */
            admin_http_reply_error(r, 421,
                                   "this server does not answer for that Host; add it to "
                                   "[admin] hostnames if it is this admin's name");
            return queue(h, r);
        }
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        long len;
        if (cl && (util_parse_long(cl, 0, LONG_MAX, &len) < 0 || len > h->max_body)) {
            r->too_large = 1; /* answered now, before the body is read */
            admin_http_reply_error(r, 413,
                                   "the request body is larger than [admin] max_body (%ld "
                                   "bytes)",
                                   h->max_body);
            return queue(h, r);
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (!r->too_large && r->body.len + *upload_data_size <= (size_t)h->max_body)
            buf_append(&r->body, upload_data, *upload_data_size);
        else
            r->too_large = 1;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->answered)
        return queue(h, r);
    if (r->started) /* resumed without an answer: cannot happen */
        return MHD_NO;
    r->started = 1;
    if (r->too_large) {
        admin_http_reply_error(
            r, 413, "the request body is larger than [admin] max_body (%ld bytes)", h->max_body);
        return queue(h, r);
    }
    if (r->body.data) { /* NUL-terminated for parsers */
        buf_append(&r->body, "", 1);
        r->body.len--;
    }
    struct admin_conn *k = conn_of(c);
    if (k) /* all received: the handler's time is not the client's */
        receiving_unlink(h, k);
    h->handler(h->arg, r);
    if (r->answered)
        return queue(h, r);
    if (!r->waiting) {
        admin_http_reply_error(r, 500, "no answer");
        return queue(h, r);
    }
    r->suspended = 1;
    r->next_suspended = h->suspended;
    if (h->suspended)
        h->suspended->prev_suspended = r;
    h->suspended = r;
    MHD_suspend_connection(c);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **ctx,
                         enum MHD_RequestTerminationCode toe)
{
    struct admin_http *h = cls;
    struct admin_conn *k = conn_of(c);
    if (k) /* keep-alive: the next request's clock starts now */
        receiving_start(h, k);
    struct admin_req *r = *ctx;
    if (!r)
        return;
    *ctx = NULL;
    if (r->waiting && !r->answered) { /* the handler still owes an answer: it frees */
        r->gone = 1;
        r->conn = NULL;
        return;
    }
    req_free(r);
}

/* ------------------------------------------------------------------ answers */

const char *admin_http_header(struct admin_req *r, const char *name)
{
    return r->conn ? MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name) : NULL;
}

const char *admin_http_query(struct admin_req *r, const char *name)
{
    return r->conn ? MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name) : NULL;
}

const char *admin_http_cookie(struct admin_req *r, const char *name)
{
    return r->conn ? MHD_lookup_connection_value(r->conn, MHD_COOKIE_KIND, name) : NULL;
}

void admin_http_wait(struct admin_req *r)
{
    r->waiting = 1;
}

int admin_http_gone(const struct admin_req *r)
{
    return r->gone;
}

void admin_http_reply(struct admin_req *r, int status, const char *content_type)
{
    r->status = status;
    r->content_type = content_type;
    answered(r);
}

void admin_http_reply_error(struct admin_req *r, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->out.len = 0;
    buf_puts(&r->out, "{\"error\":\"");
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
        if (*p == '"' || *p == '\\')
            buf_printf(&r->out, "\\%c", *p);
        else if (*p < 0x20 || *p == '<' || *p == '>' || *p == '&')
            buf_printf(&r->out, "\\u%04x", *p);
        else
            buf_append(&r->out, p, 1);
    }
    buf_puts(&r->out, "\"}");
    admin_http_reply(r, status, "application/json");
}

void admin_http_reply_stream(struct admin_req *r, int status, const char *content_type,
                             int (*next)(void *state, struct buf *out), void (*done)(void *state),
                             void *state)
{
    struct admin_stream *s = xcalloc(1, sizeof *s);
    s->next = next;
    s->done = done;
    s->state = state;
    r->stream = s;
    admin_http_reply(r, status, content_type);
}

static const char *type_of(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".json", "application/json"},
        {".yaml", "text/yaml; charset=utf-8"},
        {".txt", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < UTIL_ARRAY_LEN(types); i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return NULL;
}

/* A path the static server may open: "/" then segments of [A-Za-z0-9._-], none starting with
 * a dot (so no "..", no hidden files), with a known type. */
static int static_path_ok(const char *p)
{
    if (*p != '/')
        return 0;
    for (const char *seg = p + 1; *seg;) {
        size_t n = strcspn(seg, "/");
        if (n == 0 || seg[0] == '.' ||
            strspn(seg, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") < n)
            return 0;
        seg += n;
        if (*seg == '/')
            seg++;
    }
    return type_of(p) != NULL;
}

void admin_http_reply_file(struct admin_req *r, const char *root)
{
    const char *p = strcmp(r->path, "/") == 0 ? "/index.html" : r->path;
    if (!static_path_ok(p)) {
        admin_http_reply_error(
            r, strstr(p, "..") || strchr(p, '\\') ? 403 : 404,
            strstr(p, "..") || strchr(p, '\\') ? "refused: outside the admin root" : "not found");
        return;
    }
    char rootreal[PATH_MAX], real[PATH_MAX], want[PATH_MAX * 2];
    snprintf(want, sizeof want, "%s%s", root, p);
    if (!realpath(root, rootreal) || !realpath(want, real)) {
        admin_http_reply_error(r, 404, "not found");
        return;
    }
    size_t rl = strlen(rootreal);
    if (strncmp(real, rootreal, rl) != 0 || real[rl] != '/') { /* a symlink out of root */
        admin_http_reply_error(r, 403, "refused: outside the admin root");
        return;
    }
    int fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > 8 * 1024 * 1024) {
        if (fd >= 0)
            close(fd);
        admin_http_reply_error(r, 404, "not found");
        return;
    }
    r->out.len = 0;
    struct buf b = {0};
    char chunk[8192];
    ssize_t got;
    while ((got = read(fd, chunk, sizeof chunk)) > 0)
        buf_append(&b, chunk, (size_t)got);
    close(fd);
    buf_free(&r->out);
    r->out = b;
    admin_http_reply(r, 200, type_of(p));
}

/* ------------------------------------------------------------------ the server */

static int read_pem(const char *path, char **out, char *err, size_t errlen)
{
    struct buf b = {0};
    if (util_read_file(path, 1024 * 1024, &b, err, errlen) < 0)
        return -1;
    buf_append(&b, "", 1);
    *out = b.data;
    return 0;
}

static void add_name(struct admin_http *h, const char *name, size_t len)
{
    char *n = xstrndup(name, len);
    for (char *p = n; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    h->names = xrealloc(h->names, (h->n_names + 1) * sizeof *h->names);
    h->names[h->n_names++] = n;
}

/* The DNS names of the certificate (PEM in h->cert): its subjectAltName, else its CN. */
static void add_certificate_names(struct admin_http *h)
{
    BIO *bio = BIO_new_mem_buf(h->cert, -1);
    X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (!x)
        return;
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int found = 0;
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type == GEN_DNS) {
            add_name(h, (const char *)ASN1_STRING_get0_data(g->d.dNSName),
                     (size_t)ASN1_STRING_length(g->d.dNSName));
            found = 1;
        }
    }
    GENERAL_NAMES_free(sans);
    char cn[256];
    if (!found &&
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn) > 0)
        add_name(h, cn, strlen(cn));
    X509_free(x);
    ERR_clear_error();
}

struct admin_http *admin_http_new(struct ev_loop *loop, const struct config *cfg,
                                  admin_handler handler, void *arg, char *err, size_t errlen)
{
    struct admin_http *h = xcalloc(1, sizeof *h);
    h->loop = loop;
    h->handler = handler;
    h->arg = arg;
    h->max_body = cfg->admin_max_body;
    h->request_timeout = (double)cfg->admin_request_timeout;
    ev_init(&h->deadline, deadline_cb);
    h->deadline.data = h;
    ev_init(&h->gone, gone_cb);
    h->gone.repeat = ADMIN_GONE_POLL_S;
    h->gone.data = h;
    h->tls = *cfg->admin_certificate != '\0';
    char why[512];
    if (h->tls && (read_pem(cfg->admin_certificate, &h->cert, why, sizeof why) < 0 ||
                   read_pem(cfg->admin_private_key, &h->key, why, sizeof why) < 0)) {
        snprintf(err, errlen, "[admin] %s: %s", h->cert ? "private_key" : "certificate", why);
        admin_http_free(h);
        return NULL;
    }
    add_name(h, "localhost", 9);
    for (size_t i = 0; i < cfg->admin_hostnames.n; i++)
        add_name(h, cfg->admin_hostnames.items[i], strlen(cfg->admin_hostnames.items[i]));
    if (h->tls)
        add_certificate_names(h);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (inet_pton(AF_INET, cfg->admin_host, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
        ((struct sockaddr_in *)&ss)->sin_family = AF_INET;
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)cfg->admin_port);
    } else {
        inet_pton(AF_INET6, cfg->admin_host, &((struct sockaddr_in6 *)&ss)->sin6_addr);
        ((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)cfg->admin_port);
        flags |= MHD_USE_IPv6;
    }
    if (h->tls)
        flags |= MHD_USE_TLS;
    struct MHD_OptionItem opts[] = {
        {MHD_OPTION_SOCK_ADDR, 0, &ss},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, h},
        {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, h},
        {MHD_OPTION_CONNECTION_LIMIT, CONNECTION_LIMIT, NULL},
        {MHD_OPTION_PER_IP_CONNECTION_LIMIT, (intptr_t)cfg->admin_max_conn_per_address, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, 60, NULL},
        {h->tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, h->cert},
        {h->tls ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0, h->key},
        {MHD_OPTION_END, 0, NULL},
    };
    h->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER,
                            mhd_log, h, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (!h->d) {
        snprintf(err, errlen, "admin: cannot listen on %s%s: %s", cfg->admin_listen,
                 h->tls ? " (HTTPS: is the certificate or key bad?)" : "",
                 errno ? strerror(errno) : "libmicrohttpd refused");
        admin_http_free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
    ev_io_init(&h->io, io_cb, di->epoll_fd, EV_READ);
    h->io.data = h;
    ev_io_start(loop, &h->io);
    ev_init(&h->timer, timer_cb);
    h->timer.data = h;
    rearm(h);
    log_notice("admin: listening on %s://%s", h->tls ? "https" : "http", cfg->admin_listen);
    if (config_admin_insecure(cfg))
        log_warn("admin: %s is not loopback and the admin has no certificate: passwords, "
                 "cookies and API tokens cross the network in clear text ([admin] "
                 "allow_insecure = yes)",
                 cfg->admin_listen);
    return h;
}

int admin_http_is_tls(const struct admin_http *h)
{
    return h->tls;
}

void admin_http_free(struct admin_http *h)
{
    if (!h)
        return;
    if (h->d) {
        ev_io_stop(h->loop, &h->io);
        ev_timer_stop(h->loop, &h->timer);
        ev_timer_stop(h->loop, &h->deadline);
        ev_timer_stop(h->loop, &h->gone);
        while (h->suspended) { /* MHD closes them; their handlers' answers are dropped */
            struct admin_req *r = h->suspended;
            suspended_unlink(h, r);
            r->suspended = 0;
            MHD_resume_connection(r->conn);
        }
        MHD_stop_daemon(h->d); /* closes every connection: their admin_conn are freed */
        ev_timer_stop(h->loop, &h->deadline);
        ev_timer_stop(h->loop, &h->gone);
    }
    if (h->key) {
        OPENSSL_cleanse(h->key, strlen(h->key));
        free(h->key);
    }
    free(h->cert);
    for (size_t i = 0; i < h->n_names; i++)
        free(h->names[i]);
    free(h->names);
    free(h);
}
