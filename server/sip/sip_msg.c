/*
 * sip_msg: osip2 parse/serialise wrappers, raw stream framing, RFC 3261 URI comparison and
 * responses built from a request.
 */
#include "sip_msg.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <osipparser2/osip_port.h>

#include "log.h"

/* osip2 reports parse trouble on stderr by default; sipwake logs its own line for every
 * message it refuses, so osip2's go to the debug level, in the one-line format. */
/* osip2's traces quote what they could not parse ("Could not set header: contact: <...>"), and
 * a header osip2 cannot parse is no URI that pn_redacted could hide a push token in: only the
 * trace's format, never its arguments, reaches the log. */
static void osip_trace_to_log(const char *file, int line, osip_trace_level_t level, const char *fmt,
                              va_list ap)
{
    (void)level;
    (void)ap;
    if (log_get_level() < LOG_LEVEL_DEBUG)
        return;
    log_debug("osip2: %s:%d: %.*s", file, line, (int)strcspn(fmt, "\r\n"), fmt);
}

void sip_msg_init(void)
{
    parser_init();
    osip_trace_initialize_func(OSIP_INFO4, osip_trace_to_log);
}

/* Headers the raw scans tell apart. */
enum raw_header {
    RAW_OTHER = 0,
    RAW_FROM,
    RAW_TO,
    RAW_CALL_ID,
    RAW_CSEQ,
    RAW_CONTACT,
    RAW_CONTENT_LENGTH,
};

static enum raw_header raw_header_kind(const char *line, size_t len, size_t *value);
static void raw_lines(const char *raw, size_t rawlen,
                      void (*fn)(void *arg, const char *line, size_t len), void *arg);

static void raw_lines_in(const char *raw, const char *end,
                         void (*fn)(void *arg, const char *line, size_t len), void *arg);

/* The header lines osip2 is given for a message with a body, written into memory sized by
 * the caller (never more than twice the header block: a bare-LF line gains a CR). */
struct kept {
    char *p;
    size_t n;
};

static void keep_line(void *arg, const char *line, size_t len)
{
    struct kept *k = arg;
    size_t v;
    if (raw_header_kind(line, len, &v) == RAW_CONTENT_LENGTH)
        return;
    memcpy(k->p + k->n, line, len);
    memcpy(k->p + k->n + len, "\r\n", 2);
    k->n += len + 2;
}

int sip_msg_parse(const char *buf, size_t len, osip_message_t **out)
{
    return sip_msg_parse_hdr(buf, len, sip_msg_header_end(buf, len), out);
}

int sip_msg_parse_hdr(const char *buf, size_t len, long hdr, osip_message_t **out)
{
    osip_message_t *m;
    if (osip_message_init(&m) != 0)
        return -1;
    /* osip2 is only asked for the headers: its MIME body parser leaks on malformed multipart
     * bodies (found by tests/fuzz), and sipwake reads bodies as raw bytes. A message with a
     * body is given to osip2 as its start line and headers without Content-Length. */
    int rc;
    size_t hlen = hdr > 0 ? (size_t)hdr : len;
    char *denul = NULL;
    if (memchr(buf, '\0', hlen)) {
        /* RFC 3261 §25.1: a quoted-pair may escape a NUL (RFC 4475 §3.1.1.2); osip2 reads C
         * strings and would stop there. It sees "\0" instead (it is only read, the bytes
         * forwarded and echoed are the received ones); any other NUL stays and fails. */
        denul = xmalloc(len);
        memcpy(denul, buf, len);
        for (size_t i = 1; i < hlen; i++)
            if (denul[i] == '\0' && denul[i - 1] == '\\')
                denul[i] = '0';
        buf = denul;
    }
    if (hdr > 0 && (size_t)hdr < len) {
        /* one copy, on the stack for any datagram-sized header block (osip2 copies it again
         * anyway): the lines as raw_lines walks them, Content-Length left out */
        char stack[8192], *heap = NULL;
        size_t cap = 2 * (size_t)hdr + 2;
        struct kept k = {.p = cap <= sizeof stack ? stack : (heap = xmalloc(cap)), .n = 0};
        const char *eol = memchr(buf, '\n', (size_t)hdr);
        k.n = (size_t)(eol - buf) + 1;
        memcpy(k.p, buf, k.n);
        raw_lines_in(buf, buf + hdr, keep_line, &k);
        memcpy(k.p + k.n, "\r\n", 2);
        rc = osip_message_parse(m, k.p, k.n + 2);
        free(heap);
    } else {
        rc = osip_message_parse(m, buf, len);
    }
    free(denul);
    if (rc != 0) {
        osip_message_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

long sip_msg_header_end(const char *buf, size_t len)
{
    /* the first line end followed by CRLF, or by a bare LF from a sloppy peer */
    const char *p = buf, *end = buf + len;
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        if (p + 1 < end && p[1] == '\n')
            return (long)(p - buf) + 2;
        if (p + 2 < end && p[1] == '\r' && p[2] == '\n')
            return (long)(p - buf) + 3;
        p++;
    }
    return -1;
}

int sip_msg_raw_content_length(const char *buf, size_t hdr_len, long *cl)
{
    size_t i = 0;
    /* skip the start line */
    while (i < hdr_len && buf[i] != '\n')
        i++;
    while (++i < hdr_len) {
        const char *line = buf + i;
        size_t rest = hdr_len - i, n = 0;
        /* only a line starting with c or l can be Content-Length or l: the others are
         * skipped whole (this runs several times for every message) */
        if ((line[0] | 0x20) != 'c' && (line[0] | 0x20) != 'l') {
            const char *nl = memchr(line, '\n', rest);
            if (!nl)
                break;
            i = (size_t)(nl - buf);
            continue;
        }
        while (n < rest && line[n] != ':' && line[n] != '\n')
            n++;
        size_t name_len = n;
        while (name_len > 0 && (line[name_len - 1] == ' ' || line[name_len - 1] == '\t'))
            name_len--;
        if (n < rest && line[n] == ':' &&
            (util_strncaseeq(line, name_len, "content-length", 14) ||
             util_strncaseeq(line, name_len, "l", 1))) {
            const char *v = line + n + 1;
            while (v < buf + hdr_len && (*v == ' ' || *v == '\t'))
                v++;
            long value = 0;
            int digits = 0;
            while (v < buf + hdr_len && isdigit((unsigned char)*v)) {
                if (value > 100000000)
                    return -1;
                value = value * 10 + (*v++ - '0');
                digits++;
            }
            while (v < buf + hdr_len && (*v == ' ' || *v == '\t' || *v == '\r'))
                v++;
            if (!digits || (v < buf + hdr_len && *v != '\n'))
                return -1;
            *cl = value;
            return 1;
        }
        while (i < hdr_len && buf[i] != '\n')
            i++;
    }
    return 0;
}

long sip_msg_frame(const char *buf, size_t len, size_t max)
{
    long hdr = sip_msg_header_end(buf, len);
    if (hdr < 0)
        return len > max ? -1 : -2;
    long cl = 0;
    /* RFC 3261 §18.3: on a stream Content-Length is mandatory; a missing one is read as 0 so
     * that the message can still be answered. */
    if (sip_msg_raw_content_length(buf, (size_t)hdr, &cl) < 0)
        return -1;
    if ((size_t)hdr + (size_t)cl > max)
        return -1;
    if ((size_t)hdr + (size_t)cl > len)
        return -2;
    return hdr + cl;
}

const char *sip_msg_param(const osip_list_t *params, const char *name)
{
    osip_generic_param_t *p = NULL;
    if (osip_generic_param_get_byname((osip_list_t *)params, (char *)name, &p) != 0 || !p)
        return NULL;
    return p->gvalue ? p->gvalue : "";
}

void sip_msg_fix_via(osip_message_t *req, const char *src_ip, int src_port)
{
    osip_via_t *via = osip_list_get(&req->vias, 0);
    if (via)
        sip_msg_fix_via_value(via, src_ip, src_port);
}

void sip_msg_fix_via_value(osip_via_t *via, const char *src_ip, int src_port)
{
    osip_generic_param_t *rport = NULL;
    osip_via_param_get_byname(via, "rport", &rport);
    int host_differs = !via->host || strcmp(via->host, src_ip) != 0;
    /* RFC 3581 §4: with rport, received is added even if the host matches. */
    if (host_differs || rport) {
        osip_generic_param_t *rcv = NULL;
        osip_via_param_get_byname(via, "received", &rcv);
        if (rcv) {
            osip_free(rcv->gvalue);
            rcv->gvalue = osip_strdup(src_ip);
        } else {
            osip_via_set_received(via, osip_strdup(src_ip));
        }
    }
    if (rport && !rport->gvalue) {
        char port[8];
        snprintf(port, sizeof port, "%d", src_port);
        rport->gvalue = osip_strdup(port);
    }
}

void sip_msg_token(char *out, size_t n)
{
    unsigned char raw[32];
    if (n > sizeof raw)
        n = sizeof raw;
    for (size_t i = 0; i < n; i += 8) {
        uint64_t r = util_fast_random();
        memcpy(raw + i, &r, n - i < 8 ? n - i : 8);
    }
    util_hex(raw, n, out);
}

osip_message_t *sip_msg_response(const osip_message_t *req, int code, const char *reason,
                                 const char *to_tag)
{
    osip_message_t *r;
    osip_message_init(&r);
    osip_message_set_version(r, osip_strdup("SIP/2.0"));
    osip_message_set_status_code(r, code);
    osip_message_set_reason_phrase(r, osip_strdup(reason));
    for (int i = 0; i < osip_list_size(&req->vias); i++) {
        osip_via_t *v = osip_list_get(&req->vias, i), *copy = NULL;
        if (osip_via_clone(v, &copy) == 0)
            osip_list_add(&r->vias, copy, -1);
    }
    if (req->from)
        osip_from_clone(req->from, &r->from);
    if (req->to) {
        osip_to_clone(req->to, &r->to);
        osip_generic_param_t *tag = NULL;
        osip_to_get_tag(r->to, &tag);
        if (code > 100 && !tag) {
            char buf[17];
            if (!to_tag) {
                sip_msg_token(buf, 8);
                to_tag = buf;
            }
            osip_to_set_tag(r->to, osip_strdup(to_tag));
        }
    }
    if (req->call_id)
        osip_call_id_clone(req->call_id, &r->call_id);
    if (req->cseq)
        osip_cseq_clone(req->cseq, &r->cseq);
    return r;
}

int sip_msg_to_str(osip_message_t *msg, char **out, size_t *len)
{
    if (!msg->content_length)
        osip_message_set_content_length(msg, "0");
    return osip_message_to_str(msg, out, len) == 0 ? 0 : -1;
}

const char *sip_msg_header(const osip_message_t *msg, const char *name)
{
    osip_header_t *h = NULL;
    if (osip_message_header_get_byname(msg, name, 0, &h) < 0 || !h)
        return NULL;
    return h->hvalue ? h->hvalue : "";
}

/* %-decode s into out (at least strlen(s) bytes); returns the length. NUL-safe: an escaped
 * NUL stays a byte of the result (RFC 4475 §3.1.1.4). */
static size_t unescape_bytes(const char *s, unsigned char *out)
{
    size_t n = 0;
    for (; *s; s++) {
        if (s[0] == '%' && isxdigit((unsigned char)s[1]) && isxdigit((unsigned char)s[2])) {
            char hex[3] = {s[1], s[2], 0};
            out[n++] = (unsigned char)strtol(hex, NULL, 16);
            s += 2;
        } else {
            out[n++] = (unsigned char)*s;
        }
    }
    return n;
}

static int str_eq_unescaped(const char *a, const char *b, int nocase)
{
    if (!a || !b)
        return !a && !b;
    unsigned char *x = xmalloc(strlen(a) + 1), *y = xmalloc(strlen(b) + 1);
    size_t nx = unescape_bytes(a, x), ny = unescape_bytes(b, y);
    int eq = nx == ny;
    for (size_t i = 0; eq && i < nx; i++)
        eq = nocase ? tolower(x[i]) == tolower(y[i]) : x[i] == y[i];
    free(x);
    free(y);
    return eq;
}

char *sip_msg_canonical_user(const char *user)
{
    static const char keep[] = "-_.!~*'()&=+$,;?/"; /* mark and user-unreserved */
    size_t n = strlen(user);
    unsigned char *raw = xmalloc(n + 1);
    size_t len = unescape_bytes(user, raw);
    char *out = xmalloc(3 * len + 1), *o = out;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = raw[i];
        if (isalnum(c) || (c && strchr(keep, c))) {
            *o++ = (char)c;
        } else {
            static const char hex[] = "0123456789ABCDEF";
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = '\0';
    free(raw);
    return out;
}

/* RFC 3261 §19.1.4: these params must match if present in either URI. */
static int param_must_match(const char *name)
{
    static const char *const names[] = {"transport", "user", "ttl", "method", "maddr"};
    for (size_t i = 0; i < UTIL_ARRAY_LEN(names); i++)
        if (util_caseeq(name, names[i]))
            return 1;
    return 0;
}

static int params_match(const osip_list_t *a, const osip_list_t *b)
{
    for (int i = 0; i < osip_list_size(a); i++) {
        osip_uri_param_t *p = osip_list_get(a, i);
        if (!p->gname || strncasecmp(p->gname, "pn-", 3) == 0)
            continue;
        const char *other = sip_msg_param(b, p->gname);
        if (!other) {
            if (param_must_match(p->gname))
                return 0;
            continue;
        }
        if (!str_eq_unescaped(p->gvalue ? p->gvalue : "", other, 1))
            return 0;
    }
    return 1;
}

static int user_text_equal(const char *a, const char *b)
{
    struct sip_msg_slice ua = sip_msg_uri_text_user(a, strlen(a));
    struct sip_msg_slice ub = sip_msg_uri_text_user(b, strlen(b));
    char *x = xstrndup(ua.p, ua.len), *y = xstrndup(ub.p, ub.len);
    int eq = str_eq_unescaped(x, y, 0);
    free(x);
    free(y);
    return eq;
}

int sip_msg_uri_text_equal(const char *a, const char *b)
{
    osip_uri_t *x = NULL, *y = NULL;
    int eq = 0;
    if (osip_uri_init(&x) == 0 && osip_uri_init(&y) == 0 && osip_uri_parse(x, a) == 0 &&
        osip_uri_parse(y, b) == 0) {
        /* osip2 unescapes user parts while parsing, and an escaped NUL cuts them short
         * (RFC 4475 §3.1.1.4): compare the users as written, then the rest. */
        char *ux = x->username, *uy = y->username;
        x->username = y->username = NULL;
        eq = user_text_equal(a, b) && sip_msg_uri_equal(x, y);
        x->username = ux;
        y->username = uy;
    }
    osip_uri_free(x);
    osip_uri_free(y);
    return eq;
}

int sip_msg_uri_equal(const osip_uri_t *a, const osip_uri_t *b)
{
    if (!a || !b)
        return 0;
    if (!util_caseeq(a->scheme ? a->scheme : "sip", b->scheme ? b->scheme : "sip"))
        return 0;
    if (!str_eq_unescaped(a->username, b->username, 0) ||
        !str_eq_unescaped(a->password, b->password, 0))
        return 0;
    if (!util_caseeq(a->host ? a->host : "", b->host ? b->host : ""))
        return 0;
    /* An explicit default port is not the same as no port (§19.1.4). */
    if ((a->port == NULL) != (b->port == NULL))
        return 0;
    if (a->port && atoi(a->port) != atoi(b->port))
        return 0;
    return params_match(&a->url_params, &b->url_params) &&
           params_match(&b->url_params, &a->url_params);
}

/* Is the raw header line a header named by one of the names (full or compact)? */
static int raw_header_is(const char *line, size_t len, const char *full, const char *compact)
{
    size_t n = 0;
    while (n < len && line[n] != ':')
        n++;
    if (n == len)
        return 0;
    size_t name_len = n;
    while (name_len > 0 && (line[name_len - 1] == ' ' || line[name_len - 1] == '\t'))
        name_len--;
    return util_strncaseeq(line, name_len, full, strlen(full)) ||
           (compact && util_strncaseeq(line, name_len, compact, strlen(compact)));
}

/* Which of the headers a response copies is this line? Offset of the value in *value. */
static enum raw_header raw_header_kind(const char *line, size_t len, size_t *value)
{
    size_t n = 0;
    while (n < len && line[n] != ':' && line[n] != ' ' && line[n] != '\t')
        n++;
    size_t v = n;
    while (v < len && (line[v] == ' ' || line[v] == '\t'))
        v++;
    if (v == len || line[v] != ':')
        return RAW_OTHER;
    *value = v + 1;
    switch (n) {
    case 1:
        switch (line[0] | 0x20) {
        case 'f':
            return RAW_FROM;
        case 't':
            return RAW_TO;
        case 'i':
            return RAW_CALL_ID;
        case 'm':
            return RAW_CONTACT;
        case 'l':
            return RAW_CONTENT_LENGTH;
        }
        return RAW_OTHER;
    case 2:
        return util_strncaseeq(line, 2, "to", 2) ? RAW_TO : RAW_OTHER;
    case 4:
        return util_strncaseeq(line, 4, "from", 4)   ? RAW_FROM
               : util_strncaseeq(line, 4, "cseq", 4) ? RAW_CSEQ
                                                     : RAW_OTHER;
    case 7:
        return util_strncaseeq(line, 7, "call-id", 7)   ? RAW_CALL_ID
               : util_strncaseeq(line, 7, "contact", 7) ? RAW_CONTACT
                                                        : RAW_OTHER;
    case 14:
        return util_strncaseeq(line, 14, "content-length", 14) ? RAW_CONTENT_LENGTH : RAW_OTHER;
    }
    return RAW_OTHER;
}

/* Walk the header lines of raw (folded lines joined), calling fn for each. */
static void raw_lines(const char *raw, size_t rawlen,
                      void (*fn)(void *arg, const char *line, size_t len), void *arg)
{
    long hdr = sip_msg_header_end(raw, rawlen);
    raw_lines_in(raw, raw + (hdr < 0 ? rawlen : (size_t)hdr), fn, arg);
}

/* raw_lines over the header block raw..end (end: just past its blank line, or the end of
 * the bytes when there is none), for a caller that already knows where it ends. */
static void raw_lines_in(const char *raw, const char *end,
                         void (*fn)(void *arg, const char *line, size_t len), void *arg)
{
    const char *p = memchr(raw, '\n', (size_t)(end - raw));
    if (!p)
        return;
    for (const char *start = p + 1; start < end;) {
        const char *nl = memchr(start, '\n', (size_t)(end - start));
        if (!nl)
            nl = end;
        while (nl + 1 < end && (nl[1] == ' ' || nl[1] == '\t')) { /* folded */
            const char *more = memchr(nl + 1, '\n', (size_t)(end - nl - 1));
            nl = more ? more : end;
        }
        size_t l = (size_t)(nl - start);
        while (l > 0 && (start[l - 1] == '\r' || start[l - 1] == ' ' || start[l - 1] == '\t'))
            l--;
        if (l)
            fn(arg, start, l);
        start = nl + 1;
    }
}

struct contact_scan {
    enum raw_header kind;
    struct sip_msg_slice *out;
    int *bracketed;
    size_t max, n;
    int overflow;
};

static void contact_line(void *arg, const char *line, size_t len)
{
    struct contact_scan *cs = arg;
    size_t v;
    if (raw_header_kind(line, len, &v) != cs->kind)
        return;
    /* split on commas outside quotes and angle brackets (RFC 3261 §20.10) */
    size_t i = v;
    while (i < len) {
        while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == ','))
            i++;
        if (i >= len)
            break;
        size_t start = i, lt = 0, gt = 0;
        int quoted = 0, angle = 0;
        for (; i < len; i++) {
            char c = line[i];
            if (quoted) {
                if (c == '\\' && i + 1 < len)
                    i++;
                else if (c == '"')
                    quoted = 0;
            } else if (c == '"') {
                quoted = 1;
            } else if (c == '<' && !angle) {
                angle = 1;
                lt = i + 1;
            } else if (c == '>' && angle) {
                angle = 0;
                gt = i;
            } else if (c == ',' && !angle) {
                break;
            }
        }
        const char *u;
        size_t ulen;
        if (gt > lt) {
            u = line + lt;
            ulen = gt - lt;
        } else {
            /* no <>: the URI ends at the first ';' (those are header params) */
            u = line + start;
            ulen = 0;
            while (start + ulen < i && u[ulen] != ';')
                ulen++;
            while (ulen && (u[ulen - 1] == ' ' || u[ulen - 1] == '\t'))
                ulen--;
        }
        if (ulen == 1 && u[0] == '*')
            continue;
        if (cs->n < cs->max) {
            cs->out[cs->n].p = u;
            cs->out[cs->n].len = ulen;
            if (cs->bracketed)
                cs->bracketed[cs->n] = gt > lt;
        } else {
            cs->overflow = 1;
        }
        cs->n++;
    }
}

size_t sip_msg_raw_contact_uris(const char *raw, size_t rawlen, struct sip_msg_slice *out,
                                int *bracketed, size_t max)
{
    struct contact_scan cs = {.kind = RAW_CONTACT, .out = out, .bracketed = bracketed, .max = max};
    raw_lines(raw, rawlen, contact_line, &cs);
    return cs.n;
}

int sip_msg_raw_to_uri(const char *raw, size_t rawlen, struct sip_msg_slice *out)
{
    struct contact_scan cs = {.kind = RAW_TO, .out = out, .max = 1};
    raw_lines(raw, rawlen, contact_line, &cs);
    return cs.n >= 1 ? 0 : -1;
}

struct sip_msg_slice sip_msg_uri_text_user(const char *uri, size_t len)
{
    struct sip_msg_slice none = {uri, 0};
    const char *colon = memchr(uri, ':', len);
    if (!colon)
        return none;
    const char *start = colon + 1, *end = uri + len;
    /* the userinfo ends at the first '@' (an '@' in a user part is escaped) */
    const char *at = memchr(start, '@', (size_t)(end - start));
    if (!at)
        return none;
    const char *pw = memchr(start, ':', (size_t)(at - start));
    return (struct sip_msg_slice){start, (size_t)((pw ? pw : at) - start)};
}

int sip_msg_raw_request_line(const char *buf, size_t len, struct sip_msg_slice *method,
                             struct sip_msg_slice *uri, struct sip_msg_slice *version)
{
    size_t eol = 0;
    while (eol < len && buf[eol] != '\r' && buf[eol] != '\n')
        eol++;
    size_t end = eol;
    while (end > 0 && (buf[end - 1] == ' ' || buf[end - 1] == '\t'))
        end--;
    const char *sp1 = memchr(buf, ' ', end);
    if (!sp1 || sp1 == buf || memcmp(buf, "SIP/", end < 4 ? end : 4) == 0)
        return -1;
    /* the version is the last word; whatever lies between is the (maybe broken) URI */
    const char *sp2 = buf + end;
    while (sp2 > sp1 && sp2[-1] != ' ')
        sp2--;
    if (sp2 <= sp1 + 1)
        return -1;
    *method = (struct sip_msg_slice){buf, (size_t)(sp1 - buf)};
    const char *u = sp1 + 1, *ue = sp2 - 1;
    while (u < ue && *u == ' ')
        u++;
    while (ue > u && ue[-1] == ' ')
        ue--;
    *uri = (struct sip_msg_slice){u, (size_t)(ue - u)};
    *version = (struct sip_msg_slice){sp2, (size_t)(buf + end - sp2)};
    if (version->len < 5 || memcmp(version->p, "SIP/", 4) != 0)
        return -1;
    return 0;
}

struct raw_reply_ctx {
    struct buf vias, rest;
    int cseq, from, to, callid;
};

static void raw_reply_line(void *arg, const char *line, size_t len)
{
    struct raw_reply_ctx *c = arg;
    size_t v;
    enum raw_header k = raw_header_kind(line, len, &v);
    if (k == RAW_OTHER && raw_header_is(line, len, "via", "v")) {
        buf_append(&c->vias, line, len);
        buf_append(&c->vias, "\r\n", 2);
        return;
    }
    if (k == RAW_OTHER || k == RAW_CONTACT || k == RAW_CONTENT_LENGTH)
        return;
    int *seen = k == RAW_CSEQ   ? &c->cseq
                : k == RAW_FROM ? &c->from
                : k == RAW_TO   ? &c->to
                                : &c->callid;
    if ((*seen)++)
        return; /* a repeated header: the first one answers for it */
    buf_append(&c->rest, line, len);
    if (k == RAW_TO && !memmem(line, len, ";tag=", 5)) {
        char tag[17];
        sip_msg_token(tag, 8);
        buf_puts(&c->rest, ";tag=");
        buf_puts(&c->rest, tag);
    }
    buf_append(&c->rest, "\r\n", 2);
}

int sip_msg_raw_reply(const char *buf, size_t len, int code, const char *reason, const char *extra,
                      char **out, size_t *outlen)
{
    struct sip_msg_slice m, u, v;
    if (sip_msg_raw_request_line(buf, len, &m, &u, &v) < 0)
        return -1;
    struct raw_reply_ctx c = {0};
    raw_lines(buf, len, raw_reply_line, &c);
    /* A response needs somewhere to go (Via) and a transaction to belong to (CSeq); the
     * other headers are copied when they are there (the first of each). */
    int ok = c.vias.len && c.cseq;
    if (ok) {
        struct buf r = {0};
        buf_printf(&r, "SIP/2.0 %03d %s\r\n", code, reason);
        buf_append(&r, c.vias.data, c.vias.len);
        buf_append(&r, c.rest.data, c.rest.len);
        if (extra)
            buf_puts(&r, extra);
        buf_puts(&r, "Content-Length: 0\r\n\r\n");
        *out = r.data;
        *outlen = r.len;
    }
    buf_free(&c.vias);
    buf_free(&c.rest);
    return ok ? 0 : -1;
}

struct header_count {
    int kind[RAW_CONTENT_LENGTH + 1];
};

static void count_line(void *arg, const char *line, size_t len)
{
    struct header_count *hc = arg;
    size_t v;
    hc->kind[raw_header_kind(line, len, &v)]++;
}

const char *sip_msg_raw_repeated(const char *buf, size_t len)
{
    struct header_count hc = {{0}};
    raw_lines(buf, len, count_line, &hc);
    if (hc.kind[RAW_FROM] > 1)
        return "From";
    if (hc.kind[RAW_TO] > 1)
        return "To";
    if (hc.kind[RAW_CALL_ID] > 1)
        return "Call-ID";
    if (hc.kind[RAW_CSEQ] > 1)
        return "CSeq";
    if (hc.kind[RAW_CONTENT_LENGTH] > 1)
        return "Content-Length";
    return NULL;
}

struct reply_ctx {
    struct buf *out;
    int add_tag;
    const char *to_tag;
};

static void reply_line(void *arg, const char *line, size_t len)
{
    struct reply_ctx *rc = arg;
    size_t v;
    enum raw_header k = raw_header_kind(line, len, &v);
    if (k == RAW_OTHER || k == RAW_CONTACT || k == RAW_CONTENT_LENGTH)
        return;
    buf_append(rc->out, line, len);
    if (k == RAW_TO && rc->add_tag) {
        buf_puts(rc->out, ";tag=");
        buf_puts(rc->out, rc->to_tag);
    }
    buf_append(rc->out, "\r\n", 2);
}

void sip_msg_reply_begin(struct buf *out, const char *raw, size_t rawlen, const osip_message_t *req,
                         int code, const char *reason, const char *to_tag)
{
    if (!out->data) {
        out->cap = 1024 + rawlen; /* one allocation for a typical response */
        out->data = xmalloc(out->cap);
        out->len = 0;
    }
    char status[16];
    int sl = snprintf(status, sizeof status, "SIP/2.0 %03d ", code);
    buf_append(out, status, (size_t)sl);
    buf_puts(out, reason);
    buf_append(out, "\r\n", 2);
    for (int i = 0; i < osip_list_size(&req->vias); i++) {
        char *v = NULL;
        if (osip_via_to_str(osip_list_get(&req->vias, i), &v) == 0) {
            buf_append(out, "Via: ", 5);
            buf_puts(out, v);
            buf_append(out, "\r\n", 2);
        }
        osip_free(v);
    }
    osip_generic_param_t *tag = NULL;
    if (req->to)
        osip_to_get_tag(req->to, &tag);
    char t[17];
    struct reply_ctx rc = {.out = out, .add_tag = code > 100 && !tag, .to_tag = to_tag};
    if (rc.add_tag && !to_tag) {
        sip_msg_token(t, 8);
        rc.to_tag = t;
    }
    raw_lines(raw, rawlen, reply_line, &rc);
}

void sip_msg_reply_header(struct buf *out, const char *name, const char *value)
{
    buf_puts(out, name);
    buf_puts(out, ": ");
    buf_puts(out, value);
    buf_puts(out, "\r\n");
}

void sip_msg_reply_end(struct buf *out)
{
    buf_puts(out, "Content-Length: 0\r\n\r\n");
}

static const char *const known_methods[] = {"INVITE",   "ACK",   "BYE",       "CANCEL", "OPTIONS",
                                            "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY", "PUBLISH",
                                            "INFO",     "REFER", "MESSAGE",   "UPDATE", NULL};

int sip_msg_method_known(const char *method, size_t len)
{
    for (int i = 0; known_methods[i]; i++)
        if (strlen(known_methods[i]) == len && memcmp(known_methods[i], method, len) == 0)
            return 1;
    return 0;
}

static int verdict(struct sip_msg_verdict *out, int code, const char *reason)
{
    out->code = code;
    out->reason = reason;
    return code;
}

static int scheme_supported(const char *s, size_t n)
{
    return util_strncaseeq(s, n, "sip", 3) || util_strncaseeq(s, n, "sips", 4) ||
           util_strncaseeq(s, n, "tel", 3);
}

/* Option tags in a Require value that are not in supported; appended to out. */
static void unsupported_tags(const char *value, const char *supported, struct buf *out)
{
    const char *p = value;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *start = p;
        while (*p && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        size_t n = (size_t)(p - start);
        if (!n)
            continue;
        int ok = 0;
        for (const char *q = supported; *q && !ok;) {
            while (*q == ' ' || *q == ',')
                q++;
            const char *t = q;
            while (*q && *q != ',' && *q != ' ')
                q++;
            ok = util_strncaseeq(start, n, t, (size_t)(q - t));
        }
        if (!ok) {
            if (out->len)
                buf_puts(out, ", ");
            buf_append(out, start, n);
        }
    }
}

int sip_msg_check_request(const osip_message_t *req, const char *raw, size_t len, int dgram,
                          const char *supported, struct sip_msg_verdict *out)
{
    memset(out, 0, sizeof *out);
    if (!req->sip_version || strcmp(req->sip_version, "SIP/2.0") != 0)
        return verdict(out, 505, "Version Not Supported");
    if (osip_list_size(&req->vias) == 0)
        return verdict(out, 400, "Missing Via");
    if (!req->from || !req->from->url || !req->to || !req->to->url)
        return verdict(out, 400, "Missing or Malformed From/To");
    if (!req->call_id || !req->call_id->number)
        return verdict(out, 400, "Missing Call-ID");
    if (!req->cseq || !req->cseq->number || !req->cseq->method)
        return verdict(out, 400, "Missing CSeq");
    const char *rep = sip_msg_raw_repeated(raw, len);
    if (rep) {
        /* RFC 4475 §3.3.8 / §3.3.9 */
        snprintf(out->hvalue, sizeof out->hvalue, "399 sipwake \"Repeated %s header\"", rep);
        out->hname = "Warning";
        return verdict(out, 400, "Repeated Single-Value Header");
    }
    long hdr = sip_msg_header_end(raw, len), cl;
    int clr = hdr > 0 ? sip_msg_raw_content_length(raw, (size_t)hdr, &cl) : 0;
    if (clr < 0)
        return verdict(out, 400, "Malformed Content-Length");
    /* RFC 3261 §18.3: a Content-Length beyond the end of the datagram is an error */
    if (dgram && clr == 1 && (size_t)hdr + (size_t)cl > len)
        return verdict(out, 400, "Content-Length Larger Than The Message");
    /* An unknown method is no error here: a request for a user is forwarded like any
     * non-INVITE request (RFC 3261 §16; RFC 4475 §3.1.1.2), and only an element that would
     * answer it itself says 501 (sipwake for a request addressed to it). With a CSeq method
     * that does not match, 501 rather than 400 (RFC 4475 §3.1.2.18). */
    if (!sip_msg_method_known(req->sip_method, strlen(req->sip_method)) &&
        strcmp(req->cseq->method, req->sip_method) != 0) {
        out->hname = "Allow";
        snprintf(out->hvalue, sizeof out->hvalue, "REGISTER, OPTIONS");
        return verdict(out, 501, "Not Implemented");
    }
    long cseq;
    /* RFC 3261 §8.1.1.5: the sequence number is below 2**31 */
    if (util_parse_long(req->cseq->number, 0, 0x7fffffffL, &cseq) < 0)
        return verdict(out, 400, "Bad CSeq Number");
    if (strcmp(req->cseq->method, req->sip_method) != 0)
        return verdict(out, 400, "CSeq Method Does Not Match The Request");
    const osip_uri_t *ru = req->req_uri;
    if (!ru || !ru->scheme)
        return verdict(out, 400, "Bad Request-URI");
    if (!scheme_supported(ru->scheme, strlen(ru->scheme)))
        return verdict(out, 416, "Unsupported URI Scheme");
    if (!util_caseeq(ru->scheme, "tel")) {
        long port;
        if (!ru->host || !*ru->host)
            return verdict(out, 400, "Request-URI Without Host");
        if (ru->port && util_parse_long(ru->port, 1, 65535, &port) < 0)
            return verdict(out, 400, "Bad Request-URI Port");
        /* RFC 5118 §4.2: an IPv6 host must be in brackets */
        struct sip_msg_slice m, u, v;
        if (sip_msg_raw_request_line(raw, len, &m, &u, &v) == 0) {
            struct sip_msg_slice user = sip_msg_uri_text_user(u.p, u.len);
            const char *host = user.len ? user.p + user.len : memchr(u.p, ':', u.len);
            if (host) {
                while (host < u.p + u.len && *host != '@' && *host != ':')
                    host++;
                host++;
                size_t hl = 0, colons = 0;
                while (host + hl < u.p + u.len && !strchr(";?>", host[hl]))
                    colons += host[hl++] == ':';
                if (hl && host[0] != '[' && colons > 1)
                    return verdict(out, 400, "IPv6 Address Without Brackets");
            }
        }
        /* RFC 3261 §19.1.1: headers are not allowed in a Request-URI (RFC 4475 §3.1.2.11) */
        if (osip_list_size(&ru->url_headers) > 0)
            return verdict(out, 400, "Request-URI With Headers");
    }
    /* RFC 3261 §8.2.2.3; never for ACK and CANCEL */
    if (strcmp(req->sip_method, "ACK") != 0 && strcmp(req->sip_method, "CANCEL") != 0) {
        struct buf bad = {0};
        osip_header_t *h = NULL;
        int pos = 0;
        while ((pos = osip_message_header_get_byname(req, "require", pos, &h)) >= 0) {
            if (h && h->hvalue)
                unsupported_tags(h->hvalue, supported ? supported : "", &bad);
            pos++;
        }
        if (bad.len) {
            out->hname = "Unsupported";
            snprintf(out->hvalue, sizeof out->hvalue, "%s", bad.data);
            buf_free(&bad);
            return verdict(out, 420, "Bad Extension");
        }
        buf_free(&bad);
    }
    return 0;
}

int sip_msg_check_unparsable(const char *raw, size_t len, struct sip_msg_verdict *out)
{
    memset(out, 0, sizeof *out);
    struct sip_msg_slice m, u, v;
    if (sip_msg_raw_request_line(raw, len, &m, &u, &v) < 0)
        return verdict(out, 400, "Malformed Request-Line");
    if (!util_strncaseeq(v.p, v.len, "SIP/2.0", 7))
        return verdict(out, 505, "Version Not Supported");
    if (!sip_msg_method_known(m.p, m.len)) {
        out->hname = "Allow";
        snprintf(out->hvalue, sizeof out->hvalue, "REGISTER, OPTIONS");
        return verdict(out, 501, "Not Implemented");
    }
    const char *colon = memchr(u.p, ':', u.len);
    if (colon && colon > u.p && u.p[0] != '<' && !scheme_supported(u.p, (size_t)(colon - u.p)))
        return verdict(out, 416, "Unsupported URI Scheme");
    return verdict(out, 400, "Malformed Message");
}

struct forward_ctx {
    struct buf *out;
    int max_forwards;
    int wrote_mf;
    const char *top_via;
    int via_done;
    const char *routes;
    const char *contacts;
};

/* Offset of the first comma that separates header values (outside quotes), or len. */
static size_t first_value_end(const char *line, size_t len)
{
    const char *colon = memchr(line, ':', len);
    int quoted = 0;
    for (const char *p = colon ? colon + 1 : line; p < line + len; p++) {
        if (*p == '"')
            quoted = !quoted;
        else if (*p == ',' && !quoted)
            return (size_t)(p - line);
    }
    return len;
}

static void forward_line(void *arg, const char *line, size_t len)
{
    struct forward_ctx *f = arg;
    if (f->top_via && !f->via_done && raw_header_is(line, len, "via", "v")) {
        f->via_done = 1;
        buf_puts(f->out, "Via: ");
        buf_puts(f->out, f->top_via);
        size_t end = first_value_end(line, len);
        if (end < len) /* the other values of that line stay as they were */
            buf_append(f->out, line + end, len - end);
        buf_append(f->out, "\r\n", 2);
        return;
    }
    if (raw_header_is(line, len, "max-forwards", NULL)) {
        if (!f->wrote_mf)
            buf_printf(f->out, "Max-Forwards: %d\r\n", f->max_forwards);
        f->wrote_mf = 1;
        return;
    }
    if (f->routes && raw_header_is(line, len, "route", NULL))
        return; /* replaced as a whole */
    if (f->contacts && raw_header_is(line, len, "contact", "m"))
        return;
    buf_append(f->out, line, len);
    buf_append(f->out, "\r\n", 2);
}

void sip_msg_forward_request(const char *raw, size_t len, const struct sip_forward_edit *e,
                             struct buf *out)
{
    struct sip_msg_slice m, u, v;
    if (sip_msg_raw_request_line(raw, len, &m, &u, &v) < 0)
        return;
    buf_append(out, m.p, m.len);
    buf_append(out, " ", 1);
    if (e->ruri)
        buf_puts(out, e->ruri);
    else
        buf_append(out, u.p, u.len);
    buf_puts(out, " SIP/2.0\r\n");
    buf_puts(out, e->via_line);
    buf_append(out, "\r\n", 2);
    if (e->record_route) /* above any received Record-Route: ours is the newest (§16.6 step 4) */
        buf_puts(out, e->record_route);
    if (e->routes)
        buf_puts(out, e->routes);
    struct forward_ctx f = {.out = out,
                            .max_forwards = e->max_forwards,
                            .top_via = e->top_via,
                            .routes = e->routes,
                            .contacts = e->contacts};
    raw_lines(raw, len, forward_line, &f);
    if (!f.wrote_mf) /* §16.6 step 3 */
        buf_printf(out, "Max-Forwards: %d\r\n", e->max_forwards);
    if (e->contacts)
        buf_puts(out, e->contacts);
    if (e->extra)
        buf_puts(out, e->extra);
    buf_append(out, "\r\n", 2);
    long hdr = sip_msg_header_end(raw, len);
    if (hdr > 0 && (size_t)hdr < len)
        buf_append(out, raw + hdr, len - (size_t)hdr);
}

struct strip_ctx {
    struct buf *out;
    int done;
    const char *contacts;
};

static void strip_line(void *arg, const char *line, size_t len)
{
    struct strip_ctx *st = arg;
    if (!st->done && raw_header_is(line, len, "via", "v")) {
        st->done = 1;
        /* the first value of the first Via line is ours; keep any others on that line */
        size_t end = first_value_end(line, len);
        if (end < len) {
            const char *rest = line + end + 1;
            while (rest < line + len && (*rest == ' ' || *rest == '\t'))
                rest++;
            buf_puts(st->out, "Via: ");
            buf_append(st->out, rest, (size_t)(line + len - rest));
            buf_append(st->out, "\r\n", 2);
        }
        return;
    }
    if (st->contacts && raw_header_is(line, len, "contact", "m"))
        return;
    buf_append(st->out, line, len);
    buf_append(st->out, "\r\n", 2);
}

int sip_msg_strip_top_via(const char *raw, size_t len, const char *contacts, struct buf *out)
{
    const char *eol = memchr(raw, '\n', len);
    if (!eol)
        return -1;
    buf_append(out, raw, (size_t)(eol - raw) + 1);
    struct strip_ctx st = {.out = out, .contacts = contacts};
    raw_lines(raw, len, strip_line, &st);
    if (!st.done)
        return -1;
    if (contacts)
        buf_puts(out, contacts);
    buf_append(out, "\r\n", 2);
    long hdr = sip_msg_header_end(raw, len);
    if (hdr > 0 && (size_t)hdr < len)
        buf_append(out, raw + hdr, len - (size_t)hdr);
    return 0;
}

char *sip_msg_route_lines(const osip_message_t *req, int from)
{
    struct buf b = {0};
    buf_puts(&b, "");
    for (int i = from; i < osip_list_size(&req->routes); i++) {
        char *v = NULL;
        if (osip_route_to_str(osip_list_get(&req->routes, i), &v) == 0 && v)
            buf_printf(&b, "Route: %s\r\n", v);
        osip_free(v);
    }
    return b.data;
}

char *sip_msg_contacts_without_pn(const osip_message_t *req)
{
    if (!req)
        return NULL;
    int any = 0;
    for (int i = 0; i < osip_list_size(&req->contacts) && !any; i++) {
        osip_contact_t *c = osip_list_get(&req->contacts, i);
        for (int j = 0; c && c->url && j < osip_list_size(&c->url->url_params); j++) {
            osip_uri_param_t *up = osip_list_get(&c->url->url_params, j);
            any |= up && up->gname && strncasecmp(up->gname, "pn-", 3) == 0;
        }
    }
    if (!any)
        return NULL;
    struct buf b = {0};
    for (int i = 0; i < osip_list_size(&req->contacts); i++) {
        osip_contact_t *c = osip_list_get(&req->contacts, i);
        char *uri = NULL;
        if (!c->url || osip_uri_to_str(c->url, &uri) != 0 || !uri)
            continue;
        char *bare = sip_msg_uri_without_pn(uri);
        osip_free(uri);
        buf_puts(&b, "Contact: ");
        if (c->displayname)
            buf_printf(&b, "%s ", c->displayname);
        buf_printf(&b, "<%s>", bare);
        free(bare);
        for (int j = 0; j < osip_list_size(&c->gen_params); j++) {
            osip_generic_param_t *gp = osip_list_get(&c->gen_params, j);
            buf_printf(&b, ";%s%s%s", gp->gname, gp->gvalue ? "=" : "",
                       gp->gvalue ? gp->gvalue : "");
        }
        buf_puts(&b, "\r\n");
    }
    return b.data;
}

/* Where the parameters of uri begin: past the scheme, the userinfo (which ends at the first
 * '@'; one inside a user part is escaped) and the host and port. */
static size_t uri_params_start(const char *uri, size_t len)
{
    const char *colon = memchr(uri, ':', len);
    size_t i = colon ? (size_t)(colon - uri) + 1 : 0;
    const char *at = memchr(uri + i, '@', len - i);
    if (at)
        i = (size_t)(at - uri) + 1;
    if (i < len && uri[i] == '[') { /* an IPv6 reference holds ':' */
        const char *rb = memchr(uri + i, ']', len - i);
        i = rb ? (size_t)(rb - uri) + 1 : len;
    }
    while (i < len && uri[i] != ';' && uri[i] != '?' && uri[i] != '>')
        i++;
    return i;
}

size_t sip_msg_uri_headers_start(const char *uri, size_t len)
{
    size_t i = uri_params_start(uri, len);
    while (i < len && uri[i] != '?' && uri[i] != '>')
        i++;
    return i;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

int sip_msg_uri_next_param(const char *uri, size_t len, size_t *pos, struct sip_msg_uri_param *out)
{
    size_t i = *pos ? *pos : uri_params_start(uri, len);
    if (i >= len || uri[i] != ';')
        return 0;
    size_t start = i++, n = 0;
    int spoilt = 0; /* too long, or an escaped NUL: the name matches no known one */
    memset(out, 0, sizeof *out);
    while (i < len && !strchr(";?>=", uri[i])) {
        char c = uri[i];
        int h1, h2;
        if (c == '%' && i + 2 < len && (h1 = hexval(uri[i + 1])) >= 0 &&
            (h2 = hexval(uri[i + 2])) >= 0) {
            c = (char)(h1 * 16 + h2);
            i += 2;
        }
        if (n + 1 < sizeof out->name && c != '\0')
            out->name[n++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        else
            spoilt = 1;
        i++;
    }
    if (spoilt)
        out->name[0] = '#';
    if (i < len && uri[i] == '=') {
        out->has_value = 1;
        size_t v = ++i;
        while (i < len && !strchr(";?>", uri[i]))
            i++;
        out->value = (struct sip_msg_slice){uri + v, i - v};
    } else {
        out->value = (struct sip_msg_slice){uri + i, 0};
    }
    out->whole = (struct sip_msg_slice){uri + start, i - start};
    *pos = i;
    return 1;
}

/* uri without the params drop() refuses and, if no_headers, without its headers. */
static char *uri_filtered(const char *uri, int (*drop)(const char *name), int no_headers)
{
    size_t len = strlen(uri), pos = 0;
    struct buf b = {0};
    buf_append(&b, uri, uri_params_start(uri, len));
    struct sip_msg_uri_param up;
    while (sip_msg_uri_next_param(uri, len, &pos, &up))
        if (!drop(up.name))
            buf_append(&b, up.whole.p, up.whole.len);
    if (!no_headers)
        buf_puts(&b, uri + sip_msg_uri_headers_start(uri, len));
    return b.data ? b.data : xstrdup("");
}

static int is_pn(const char *name)
{
    return strncmp(name, "pn-", 3) == 0;
}

/* RFC 3261 §19.1.1 table 1: method is not allowed in a Request-URI */
static int not_in_ruri(const char *name)
{
    return is_pn(name) || strcmp(name, "method") == 0;
}

char *sip_msg_uri_without_pn(const char *uri)
{
    return uri_filtered(uri, is_pn, 0);
}

char *sip_msg_ruri_of_contact(const char *contact)
{
    return uri_filtered(contact, not_in_ruri, 1);
}

/* Append "Name: value\r\n" for one of osip2's header structures, through its serialiser. */
#define PUT_HEADER(b, name, to_str, h)                                                             \
    do {                                                                                           \
        char *v_ = NULL;                                                                           \
        if (to_str(h, &v_) != 0 || !v_)                                                            \
            goto done;                                                                             \
        buf_printf(b, "%s: %s\r\n", name, v_);                                                     \
        osip_free(v_);                                                                             \
    } while (0)

int sip_msg_hop_request(const char *req_raw, size_t len, const char *method,
                        const osip_message_t *resp, struct buf *out)
{
    osip_message_t *req = NULL;
    struct sip_msg_slice m, u, v;
    if (sip_msg_raw_request_line(req_raw, len, &m, &u, &v) < 0 ||
        sip_msg_parse(req_raw, len, &req) < 0)
        return -1;
    osip_to_t *to = resp && resp->to ? resp->to : req->to;
    osip_via_t *via = osip_list_get(&req->vias, 0);
    int rc = -1;
    buf_printf(out, "%s %.*s SIP/2.0\r\n", method, (int)u.len, u.p);
    if (!via || !req->from || !to || !req->call_id || !req->cseq || !req->cseq->number)
        goto done;
    PUT_HEADER(out, "Via", osip_via_to_str, via);
    PUT_HEADER(out, "From", osip_from_to_str, req->from);
    PUT_HEADER(out, "To", osip_to_to_str, to);
    PUT_HEADER(out, "Call-ID", osip_call_id_to_str, req->call_id);
    buf_printf(out, "CSeq: %s %s\r\nMax-Forwards: 70\r\n", req->cseq->number, method);
    for (int i = 0; i < osip_list_size(&req->routes); i++)
        PUT_HEADER(out, "Route", osip_route_to_str, (osip_route_t *)osip_list_get(&req->routes, i));
    buf_puts(out, "Content-Length: 0\r\n\r\n");
    rc = 0;
done:
    osip_message_free(req);
    return rc;
}
