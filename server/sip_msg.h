/*
 * sip_msg: SIP parsing and serialising on top of osip2, and the helpers the registrar and
 * the transports need around it.
 *
 * Parsing goes through osip2, which owns the parsed tree (osip_message_t; free it with
 * osip_message_free). Framing on streams does not need a full parse: sip_msg_frame scans
 * the raw bytes for the end of the headers and Content-Length, picohttpparser-style, and
 * returns a length, -1 (error) or -2 (need more). Responses are built with osip2 from the
 * request (RFC 3261 §8.2.6: Via, From, To with a tag, Call-ID, CSeq copied) and serialised by
 * osip2. When osip2 cannot parse a request at all, sip_msg_raw_400 still builds a 400 from
 * the raw header lines if the ones a response needs are readable.
 */
#ifndef SIPWAKE_SIP_MSG_H
#define SIPWAKE_SIP_MSG_H

#include <stddef.h>

#include <osipparser2/osip_parser.h>

#include "util.h"

/* One-time osip2 parser setup. */
void sip_msg_init(void);

/* Parse len bytes. 0 and *out set (caller frees with osip_message_free), or -1. The buffer
 * need not be NUL-terminated and is not kept. */
int sip_msg_parse(const char *buf, size_t len, osip_message_t **out);

/* Stream framing: given the bytes received so far, return the length of the first complete
 * message, -2 if more bytes are needed, -1 if the bytes can never make a message of at most
 * max bytes (headers too long, bad Content-Length). Leading CRLFs are not skipped here. */
long sip_msg_frame(const char *buf, size_t len, size_t max);

/* Content-Length read from raw headers (full or compact "l:" form). 1 found, 0 absent, -1
 * malformed. hdr_end is the offset just past the blank line. */
int sip_msg_raw_content_length(const char *buf, size_t hdr_len, long *cl);

/* Offset just past the CRLFCRLF (or LFLF) ending the headers, or -1 if not present. */
long sip_msg_header_end(const char *buf, size_t len);

/* RFC 3261 §18.2.1 / RFC 3581: mark the top Via of a received request with received= and,
 * if the client asked with a bare rport, rport=<source port>. */
void sip_msg_fix_via(osip_message_t *req, const char *src_ip, int src_port);

/* Build a response to req (not modified). A To-tag is added to responses above 100 when the
 * request's To has none; to_tag NULL means a random one. Caller frees with
 * osip_message_free. */
osip_message_t *sip_msg_response(const osip_message_t *req, int code, const char *reason,
                                 const char *to_tag);

/* Serialise with osip2 (Content-Length is set from the bodies). 0 and *out (caller frees with
 * osip_free), or -1. */
int sip_msg_to_str(osip_message_t *msg, char **out, size_t *len);

/* Value of the first header named name (case-insensitive) that osip2 keeps as a generic
 * header, or NULL. Borrowed from msg. */
const char *sip_msg_header(const osip_message_t *msg, const char *name);

/* Value of a generic (URI or header) parameter, "" for a flag param, or NULL if absent. */
const char *sip_msg_param(const osip_list_t *params, const char *name);

/* RFC 3261 §19.1.4 URI equality, except that parameters whose names start with "pn-" are
 * left out (RFC 8599 push params are compared by the caller). 1 equal, 0 not. */
int sip_uri_equal(const osip_uri_t *a, const osip_uri_t *b);

/* Build a 400 Bad Request from a request osip2 could not parse, copying the raw Via, From,
 * To, Call-ID and CSeq lines. 0 with *out (caller frees with free), -1 if the message is not
 * a request or lacks one of those headers. */
int sip_msg_raw_400(const char *buf, size_t len, const char *reason, char **out, size_t *outlen);

/* A response written as text from the request's own bytes (RFC 3261 §8.2.6: Via, From,
 * To, Call-ID and CSeq are copied), for the hot path: no osip2 clone or serialiser runs.
 * The Vias are written from req as sip_msg_fix_via left them (received, rport); From,
 * Call-ID and CSeq are the request's raw lines; To is the raw line plus a tag when the
 * request had none. Usage: begin, any number of header calls, end. */
void sip_msg_reply_begin(struct buf *out, const char *raw, size_t rawlen, const osip_message_t *req,
                         int code, const char *reason, const char *to_tag);
void sip_msg_reply_header(struct buf *out, const char *name, const char *value);
/* Content-Length and the blank line (no body). */
void sip_msg_reply_end(struct buf *out);

/* A slice of a caller's buffer. */
struct sip_msg_slice {
    const char *p;
    size_t len;
};

/* The URIs of the Contact header values in raw, in order ('*' skipped), as slices into raw.
 * Returns how many there are (even beyond max; only the first max are filled). */
size_t sip_msg_raw_contact_uris(const char *raw, size_t rawlen, struct sip_msg_slice *out,
                                size_t max);

/* Random token of 2n hex characters, for tags. out must hold 2n+1 bytes. */
void sip_msg_token(char *out, size_t n);

#endif
