/* h2sink: an HTTP/2 server over TLS that checks nothing and answers every request at once with
 * 200 and an apns-id header, as fast as one thread can: the target tests/bench/push.sh puts
 * sipwake's push client and h2load against when the APNs emulator (Python, checking every
 * request) would be the bottleneck. Built on nghttp2's own server API (nghttp2_session_server_new,
 * nghttp2_session_mem_recv/mem_send), OpenSSL (ALPN h2) and libev. Used only by the
 * benchmarks.
 *
 *   h2sink CERT KEY STREAMS
 *       listens on a free port of 127.0.0.1, prints "listening PORT" on stdout, and serves
 *       until killed, allowing STREAMS concurrent streams per connection (SETTINGS
 *       MAX_CONCURRENT_STREAMS, RFC 9113 section 6.5.2). On SIGTERM or SIGINT it prints
 *       "requests N" and exits.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#define READ_CHUNK 65536

struct conn {
    int fd;
    SSL *ssl;
    nghttp2_session *session;
    ev_io io;
    /* bytes nghttp2 produced that TLS has not taken yet; owned */
    unsigned char *out;
    size_t out_len, out_cap, out_off;
};

static struct ev_loop *loop;
static SSL_CTX *ctx;
static unsigned long streams = 100;
static unsigned long long requests;

static void conn_free(struct conn *c)
{
    ev_io_stop(loop, &c->io);
    nghttp2_session_del(c->session);
    SSL_free(c->ssl);
    close(c->fd);
    free(c->out);
    free(c);
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    (void)arg;
    if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
        !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    /* the request is complete: answer it, whatever it was */
    char id[40];
    requests++;
    snprintf(id, sizeof id, "00000000-0000-4000-8000-%012llx", requests);
    nghttp2_nv nva[] = {
        {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"apns-id", (uint8_t *)id, 7, strlen(id), NGHTTP2_NV_FLAG_NONE},
    };
    /* nghttp2 copies the name/value pairs */
    if (nghttp2_submit_response(s, f->hd.stream_id, nva, 2, NULL) != 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return 0;
}

/* Moves what nghttp2 has to send into c->out and as much of it as TLS takes to the socket.
 * Returns -1 when the connection is to be closed. */
static int conn_flush(struct conn *c)
{
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(c->session, &data);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        if (c->out_len + (size_t)n > c->out_cap) {
            size_t cap = c->out_cap ? c->out_cap : READ_CHUNK;
            while (cap < c->out_len + (size_t)n)
                cap *= 2;
            unsigned char *p = realloc(c->out, cap);
            if (!p)
                return -1;
            c->out = p;
            c->out_cap = cap;
        }
        memcpy(c->out + c->out_len, data, (size_t)n);
        c->out_len += (size_t)n;
    }
    while (c->out_off < c->out_len) {
        int n = SSL_write(c->ssl, c->out + c->out_off, (int)(c->out_len - c->out_off));
        if (n <= 0) {
            int e = SSL_get_error(c->ssl, n);
            if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
                break;
            return -1;
        }
        c->out_off += (size_t)n;
    }
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    int want = EV_READ | (c->out_len ? EV_WRITE : 0);
    if ((c->io.events & (EV_READ | EV_WRITE)) != want) {
        ev_io_stop(loop, &c->io);
        ev_io_set(&c->io, c->fd, want);
        ev_io_start(loop, &c->io);
    }
    if (!c->out_len && !nghttp2_session_want_read(c->session) &&
        !nghttp2_session_want_write(c->session))
        return -1;
    return 0;
}

static void conn_cb(struct ev_loop *l, ev_io *w, int revents)
{
    (void)l;
    (void)revents;
    struct conn *c = w->data;
    if (!SSL_is_init_finished(c->ssl)) {
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                conn_free(c);
                return;
            }
            ev_io_stop(loop, &c->io);
            ev_io_set(&c->io, c->fd, e == SSL_ERROR_WANT_READ ? EV_READ : EV_WRITE);
            ev_io_start(loop, &c->io);
            return;
        }
    }
    unsigned char buf[READ_CHUNK];
    for (;;) {
        int n = SSL_read(c->ssl, buf, sizeof buf);
        if (n <= 0) {
            int e = SSL_get_error(c->ssl, n);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                break;
            conn_free(c);
            return;
        }
        if (nghttp2_session_mem_recv(c->session, buf, (size_t)n) < 0) {
            conn_free(c);
            return;
        }
    }
    if (conn_flush(c) < 0)
        conn_free(c);
}

static void accept_cb(struct ev_loop *l, ev_io *w, int revents)
{
    (void)l;
    (void)revents;
    for (;;) {
        int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->ssl = SSL_new(ctx);
        nghttp2_session_callbacks *cbs;
        nghttp2_session_callbacks_new(&cbs);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
        int r = nghttp2_session_server_new(&c->session, cbs, c);
        nghttp2_session_callbacks_del(cbs);
        if (!c->ssl || r != 0) {
            SSL_free(c->ssl);
            close(fd);
            free(c);
            continue;
        }
        SSL_set_fd(c->ssl, fd);
        SSL_set_accept_state(c->ssl);
        nghttp2_settings_entry iv[] = {
            {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, (uint32_t)streams}};
        nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 1);
        ev_io_init(&c->io, conn_cb, fd, EV_READ);
        c->io.data = c;
        ev_io_start(loop, &c->io);
    }
}

static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    /* RFC 9113 section 3.2: "h2" over TLS */
    if (nghttp2_select_next_protocol((unsigned char **)out, outlen, in, inlen) != 1)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    return SSL_TLSEXT_ERR_OK;
}

static void stop_cb(struct ev_loop *l, ev_signal *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(l, EVBREAK_ALL);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: h2sink CERT KEY STREAMS\n");
        return 2;
    }
    streams = strtoul(argv[3], NULL, 10);
    signal(SIGPIPE, SIG_IGN);
    ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, argv[1]) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, argv[2], SSL_FILETYPE_PEM) != 1) {
        fprintf(stderr, "h2sink: cannot load %s / %s\n", argv[1], argv[2]);
        ERR_print_errors_fp(stderr);
        return 1;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 128) != 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &len) != 0) {
        fprintf(stderr, "h2sink: cannot listen: %s\n", strerror(errno));
        return 1;
    }
    loop = EV_DEFAULT;
    ev_io acc;
    ev_io_init(&acc, accept_cb, lfd, EV_READ);
    ev_io_start(loop, &acc);
    ev_signal term, intr;
    ev_signal_init(&term, stop_cb, SIGTERM);
    ev_signal_init(&intr, stop_cb, SIGINT);
    ev_signal_start(loop, &term);
    ev_signal_start(loop, &intr);
    printf("listening %u\n", ntohs(sa.sin_port));
    fflush(stdout);
    ev_run(loop, 0);
    printf("requests %llu\n", requests);
    return 0;
}
