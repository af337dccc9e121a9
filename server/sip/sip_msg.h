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

/* A slice of a caller's buffer. */
struct sip_msg_slice {
    const char *p;
    size_t len;
};

/* Threads: SIP messages are handled on the loop. The functions here keep no state of their
 * own once sip_msg_init ran, except those that draw a random tag (sip_msg_token, and the
 * builders that add a To-tag when none is given: sip_msg_response, sip_msg_raw_reply,
 * sip_msg_reply_begin), which use the loop's unlocked generator (util_fast_random): loop
 * thread only. Arguments are only read during the call unless a result is said to point
 * into them. */

/* One-time osip2 parser setup: at start, before any other function here. */
void sip_msg_init(void);

/* Parse the start line and headers of len bytes. 0 and *out set (caller frees with
 * osip_message_free), or -1. The buffer need not be NUL-terminated and is not kept. The
 * body is not parsed (and osip2 sees no Content-Length): read it from the raw bytes after
 * sip_msg_header_end. */
int sip_msg_parse(const char *buf, size_t len, osip_message_t **out);

/* sip_msg_parse for a caller that has the header end already: hdr is
 * sip_msg_header_end(buf, len), passed so that it is computed once per message. */
int sip_msg_parse_hdr(const char *buf, size_t len, long hdr, osip_message_t **out);

/* Stream framing: given the bytes received so far, return the length of the first complete
 * message, -2 if more bytes are needed, -1 if the bytes can never make a message of at most
 * max bytes (headers too long, bad Content-Length). Leading CRLFs are not skipped here.
 * Copies nothing. */
long sip_msg_frame(const char *buf, size_t len, size_t max);

/* Content-Length read from raw headers (full or compact "l:" form). 1 found, 0 absent, -1
 * malformed. hdr_len is the offset just past the blank line. */
int sip_msg_raw_content_length(const char *buf, size_t hdr_len, long *cl);

/* Offset just past the CRLFCRLF (or LFLF) ending the headers, or -1 if not present. */
long sip_msg_header_end(const char *buf, size_t len);

/* RFC 3261 §18.2.1 / RFC 3581: mark the top Via of a received request with received= and,
 * if the client asked with a bare rport, rport=<source port>. Edits req in place (the new
 * values are osip2's copies, freed with req). */
void sip_msg_fix_via(osip_message_t *req, const char *src_ip, int src_port);
/* The same for one Via value parsed on its own (osip_via_parse). */
void sip_msg_fix_via_value(osip_via_t *via, const char *src_ip, int src_port);

/* Build a response to req (not modified; what the response needs is copied). A To-tag is
 * added to responses above 100 when the request's To has none; to_tag NULL means a random
 * one (loop thread then). Caller frees with osip_message_free. */
osip_message_t *sip_msg_response(const osip_message_t *req, int code, const char *reason,
                                 const char *to_tag);

/* Serialise with osip2 (Content-Length is set from the bodies). 0 and *out (caller frees with
 * osip_free), or -1. */
int sip_msg_to_str(osip_message_t *msg, char **out, size_t *len);

/* Value of the first header named name (case-insensitive) that osip2 keeps as a generic
 * header, or NULL. Borrowed from msg. */
const char *sip_msg_header(const osip_message_t *msg, const char *name);

/* Value of a generic (URI or header) parameter, "" for a flag param, or NULL if absent.
 * Borrowed from params. */
const char *sip_msg_param(const osip_list_t *params, const char *name);

/* RFC 3261 §19.1.4 URI equality, except that parameters whose names start with "pn-" are
 * left out (RFC 8599 push params are compared by the caller). 1 equal, 0 not. */
int sip_msg_uri_equal(const osip_uri_t *a, const osip_uri_t *b);

/* The Request-Line of raw bytes: method (first word), version (last word, trailing blanks
 * ignored) and whatever lies between as the Request-URI, as slices. 0, or -1 if the line
 * cannot be a request line. */
int sip_msg_raw_request_line(const char *buf, size_t len, struct sip_msg_slice *method,
                             struct sip_msg_slice *uri, struct sip_msg_slice *version);

/* Build a response to a request osip2 could not use, from its raw Via, From, To, Call-ID and
 * CSeq lines (Via and CSeq are required; of the others the first of each is copied). extra
 * (may be NULL) is appended as is ("Name: value\r\n" lines). 0 with *out (caller frees with
 * free), -1 if no response can be built. Adds a random To-tag when To has none: loop
 * thread. */
int sip_msg_raw_reply(const char *buf, size_t len, int code, const char *reason, const char *extra,
                      char **out, size_t *outlen);

/* The name of the first single-value header that appears more than once (From, To, Call-ID,
 * CSeq, Content-Length; RFC 3261 §7.3.1 allows repetition only for comma lists), or NULL.
 * A static string. */
const char *sip_msg_raw_repeated(const char *buf, size_t len);

/* A response written as text from the request's own bytes (RFC 3261 §8.2.6: Via, From,
 * To, Call-ID and CSeq are copied), for the hot path: no osip2 clone or serialiser runs.
 * The Vias are written from req as sip_msg_fix_via left them (received, rport); From,
 * Call-ID and CSeq are the request's raw lines; To is the raw line plus a tag when the
 * request had none (to_tag, or a random one when NULL: loop thread then). Usage: begin, any
 * number of header calls, end; each appends to out (the caller's, freed with buf_free). raw,
 * req, name and value are only read during the call. */
void sip_msg_reply_begin(struct buf *out, const char *raw, size_t rawlen, const osip_message_t *req,
                         int code, const char *reason, const char *to_tag);
void sip_msg_reply_header(struct buf *out, const char *name, const char *value);
/* Content-Length and the blank line (no body). */
void sip_msg_reply_end(struct buf *out);

/* The URIs of the Contact header values in raw, in order ('*' skipped), as slices into raw,
 * and (if bracketed is not NULL) whether each was written inside <>. Returns how many there
 * are (even beyond max; only the first max are filled). */
size_t sip_msg_raw_contact_uris(const char *raw, size_t rawlen, struct sip_msg_slice *out,
                                int *bracketed, size_t max);

/* The URI of the (first) To header in raw, as a slice. 0, or -1 if there is none. */
int sip_msg_raw_to_uri(const char *raw, size_t rawlen, struct sip_msg_slice *out);

/* The user part of a URI written as text ("sip:user:pw@host" -> "user"), as a slice; empty
 * when the URI has none. */
struct sip_msg_slice sip_msg_uri_text_user(const char *uri, size_t len);

/* sip_msg_uri_equal for two URIs given as text, comparing the user parts as written (escaped
 * NULs included), which osip2's parse cannot. */
int sip_msg_uri_text_equal(const char *a, const char *b);

/* A URI user part in one canonical form (new string, caller frees): escapes of characters
 * that need none are decoded, everything else (an escaped NUL included) stays %XX in upper
 * case, so equal users compare equal as C strings (RFC 3261 §19.1.4, RFC 4475 §3.1.1.4). */
char *sip_msg_canonical_user(const char *user);

/* What to answer a request that fails the checks every request must pass. */
struct sip_msg_verdict {
    int code; /* 0: the request may proceed */
    const char *reason;
    const char *hname; /* an extra header for the response, or NULL */
    char hvalue[256];
};

/* The checks of RFC 3261 §8.2 (and RFC 4475's reading of them) that need no knowledge of
 * the request's target, in the order the RFC applies them: SIP version (505), required and
 * repeated single-value headers, Content-Length against the bytes received (400), an
 * unknown method whose CSeq names another (501; an unknown method alone is no error: a
 * proxy forwards it), CSeq (400), Request-URI scheme (416) and form (400), Require (420). raw/len
 * are the request's bytes; dgram says whether they were one datagram. `supported` lists the option
 * tags Require may name, comma-separated. Returns out->code: 0 if the request may proceed.
 * out->reason and out->hname are static strings; out->hvalue is out's own copy. */
int sip_msg_check_request(const osip_message_t *req, const char *raw, size_t len, int dgram,
                          const char *supported, struct sip_msg_verdict *out);

/* The same for a request osip2 could not parse, from its Request-Line alone: 505, 501 or 416
 * when the Request-Line says so, else 400. */
int sip_msg_check_unparsable(const char *raw, size_t len, struct sip_msg_verdict *out);

/* 1 if method is one of the methods sipwake knows (RFC 3261 and its extensions). */
int sip_msg_method_known(const char *method, size_t len);

/* A request to forward (RFC 3261 §16.6), edited, not rebuilt: the Request-Line with ruri
 * (NULL keeps it), via_line ("Via: ...", without CRLF) on top, the received top Via replaced
 * by top_via (its value with received/rport, RFC 3581; NULL keeps it), Max-Forwards set to
 * max_forwards, record_route ("Record-Route: ...\r\n" lines, or NULL) above the received
 * ones, every Route line replaced by routes (whole lines; "" drops them; NULL keeps them),
 * likewise every Contact line by contacts, extra lines ("Name: value" and CRLF each) added
 * at the end of the headers, every other header line and the body as received. Appended to
 * out (the caller's); raw and e's strings are only read during the call. */
struct sip_forward_edit {
    const char *ruri;
    const char *via_line;
    const char *top_via;
    int max_forwards;
    const char *record_route;
    const char *routes;
    const char *contacts;
    const char *extra;
};
void sip_msg_forward_request(const char *raw, size_t len, const struct sip_forward_edit *e,
                             struct buf *out);

/* A response to pass upstream (RFC 3261 §16.7 step 3): the same bytes without the top Via
 * value (sipwake's own), and with every Contact line replaced by contacts unless that is
 * NULL. Appended to out (the caller's); raw and contacts are only read. -1 if it has no Via. */
int sip_msg_strip_top_via(const char *raw, size_t len, const char *contacts, struct buf *out);

/* RFC 3261 §9.1 and §17.1.1.3: the CANCEL, or the ACK for a final non-2xx response, of a
 * request sipwake sent (its bytes): the same Request-URI, top Via, From, Call-ID, CSeq
 * number and Route headers; To is resp's (the ACK carries the To tag) or, with resp NULL,
 * the request's. Appended to out (the caller's); req_raw and resp are only read. 0, or -1 if
 * the request's bytes lack one of these. */
int sip_msg_hop_request(const char *req_raw, size_t len, const char *method,
                        const osip_message_t *resp, struct buf *out);

/* "Route: ...\r\n" lines for the Route entries of req from index from on; "" when none.
 * New string; caller frees. */
char *sip_msg_route_lines(const osip_message_t *req, int from);

/* One URI parameter of a URI written as text, as sip_msg_uri_next_param finds it. */
struct sip_msg_uri_param {
    struct sip_msg_slice whole; /* ";name=value" as written */
    struct sip_msg_slice value; /* as written (still escaped); len 0 for a flag */
    int has_value;              /* "name=" seen */
    char name[40]; /* %-unescaped (RFC 3261 §19.1.4: escaped and unescaped are the same), lower
                    * case; a longer name is cut short and never equals a known one */
};

/* The URI parameters of uri (len bytes, without <>), one per call: *pos is 0 on the first
 * call and is advanced. The parameters start after the host and port: ';' inside the user
 * part belongs to the user (RFC 3261 §19.1.1, user-unreserved), and they end at the headers
 * ('?') or a '>'. 1 and *out filled (slices into uri), 0 when there is none left. This is
 * the one reading of a URI's parameters for pn-* classification, stripping and redaction. */
int sip_msg_uri_next_param(const char *uri, size_t len, size_t *pos, struct sip_msg_uri_param *out);

/* Offset of the URI headers ('?...') of uri, or len when it has none. */
size_t sip_msg_uri_headers_start(const char *uri, size_t len);

/* A URI without its pn-* parameters (RFC 8599 §4.1: push parameters never leave toward the
 * phone), names compared unescaped. Headers stay. New string; caller frees. */
char *sip_msg_uri_without_pn(const char *uri);

/* The Request-URI for a request to a registered contact: without pn-* parameters, without
 * the method parameter and without headers, which RFC 3261 §19.1.1 (table 1) does not allow
 * in a Request-URI. New string; caller frees. */
char *sip_msg_ruri_of_contact(const char *contact);

/* Contact lines for the Contacts of a request or response with the pn-* params taken out
 * of their URIs, or NULL when none has any (or msg is NULL). New string; caller frees. */
char *sip_msg_contacts_without_pn(const osip_message_t *req);

/* Random token of 2n hex characters (n at most 32), for tags. out must hold 2n+1 bytes. Not
 * secret (util_fast_random): loop thread only. */
void sip_msg_token(char *out, size_t n);

#endif
