/*
 * admin_http: the web admin's HTTP server on sipwake's loop (libmicrohttpd, driven by libev
 * through MHD's epoll descriptor; HTTPS through MHD's GnuTLS when a certificate is set).
 *
 * It owns connections and the request's life: it reads the body (up to [admin] max_body, else
 * 413 at once), hands each complete request to the handler, and sends what the handler
 * answers — at once, or later for a handler that waits for the store (the connection is
 * suspended meanwhile). It serves the static pages, refusing anything outside the root, and
 * sets the security headers every answer carries.
 */
#ifndef SIPWAKE_ADMIN_HTTP_H
#define SIPWAKE_ADMIN_HTTP_H

#include <ev.h>
#include <stddef.h>
#include <sys/types.h>

#include "config.h"
#include "util.h"

struct admin_http;

struct admin_req {
    struct admin_http *http;
    struct MHD_Connection *conn;
    char method[8];
    char *path;
    struct buf body;
    char source[64]; /* the client's address */
    /* who is asking, set by the handler once it knows: an account, or "token:NAME" */
    char who[80];
    int via_token;
    void *state; /* the handler's, freed by it before it answers */

    /* the answer */
    int status;
    struct buf out;
    const char *content_type;
    char *set_cookie;
    long retry_after;
    /* a streamed answer (admin_http_reply_stream) */
    struct admin_stream *stream;

    /* private to admin_http */
    int too_large, started, suspended, answered, waiting, gone;
    struct admin_req *next_suspended, *prev_suspended;
};

/* A body written piece by piece as the client reads it, so a large table (ul_dump) is never
 * held whole. next appends the next piece to out and returns 1, or 0 at the end, -1 to
 * abort; done frees state. It runs on the loop, after the request's handler has returned. */
struct admin_stream {
    int (*next)(void *state, struct buf *out);
    void (*done)(void *state);
    void *state;
    struct buf pending;
    size_t off;
    int ended;
};

/* Called once per complete request (body read), on the loop. The handler answers with
 * admin_http_reply*, now or later; if later it must call admin_http_wait first. r belongs to
 * admin_http: valid until the handler answers it (it may be freed by the answer), so the
 * handler copies what it keeps and touches r no more after answering. Every function here
 * runs on the loop thread. */
typedef void (*admin_handler)(void *arg, struct admin_req *r);

/* Listen as cfg [admin] says (cfg and loop borrowed for the server's lifetime; the
 * certificate and key files are read now). NULL with err (address in use, certificate
 * unreadable). The caller frees it with admin_http_free. */
struct admin_http *admin_http_new(struct ev_loop *loop, const struct config *cfg,
                                  admin_handler handler, void *arg, char *err, size_t errlen);
/* Close every connection and free h. Requests still waiting are dropped: their handlers
 * must still answer them (each r is freed by that answer), and what they answer is
 * discarded. NULL: no-op. */
void admin_http_free(struct admin_http *h);
int admin_http_is_tls(const struct admin_http *h);

/* A request header / query argument / cookie, or NULL. The string is libmicrohttpd's: valid
 * until r is answered, and NULL once the client left (admin_http_gone). */
const char *admin_http_header(struct admin_req *r, const char *name);
const char *admin_http_query(struct admin_req *r, const char *name);
const char *admin_http_cookie(struct admin_req *r, const char *name);

/* The handler answers later (the store is asked first). */
void admin_http_wait(struct admin_req *r);
/* 1 when the client is gone while the request waited: nothing to answer, just free state. */
int admin_http_gone(const struct admin_req *r);

/* Answer with r->out as it is (status, content type: borrowed, a static string). r must not
 * be used afterwards. */
void admin_http_reply(struct admin_req *r, int status, const char *content_type);
/* Answer {"error": message} with status (the message is formatted into r->out). r must not
 * be used afterwards. */
void admin_http_reply_error(struct admin_req *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Answer a streamed body; the stream owns state from now on (done frees it, also when the
 * client left). content_type is borrowed (a static string). r must not be used afterwards. */
void admin_http_reply_stream(struct admin_req *r, int status, const char *content_type,
                             int (*next)(void *state, struct buf *out), void (*done)(void *state),
                             void *state);
/* Serve a file of root for r->path ("/" is index.html); 404 for anything else, 403 for a
 * path that tries to leave root. Reads the file on the loop (the pages are small and local).
 * r must not be used afterwards. */
void admin_http_reply_file(struct admin_req *r, const char *root);

#endif
