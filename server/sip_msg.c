/*
 * sip_msg: osip2 parse/serialise wrappers, raw stream framing, RFC 3261 URI comparison and
 * responses built from a request.
 */
#include "sip_msg.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <osipparser2/osip_port.h>

void sip_msg_init(void)
{
    parser_init();
}

int sip_msg_parse(const char *buf, size_t len, osip_message_t **out)
{
    osip_message_t *m;
    if (osip_message_init(&m) != 0)
        return -1;
    if (osip_message_parse(m, buf, len) != 0) {
        osip_message_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

long sip_msg_header_end(const char *buf, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (buf[i + 1] == '\n')
            return (long)(i + 2);
        if (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n')
            return (long)(i + 3);
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
    if (!via)
        return;
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

static int str_eq_unescaped(const char *a, const char *b, int nocase)
{
    if (!a || !b)
        return !a && !b;
    char *x = osip_strdup(a), *y = osip_strdup(b);
    __osip_uri_unescape(x);
    __osip_uri_unescape(y);
    int eq = nocase ? util_caseeq(x, y) : strcmp(x, y) == 0;
    osip_free(x);
    osip_free(y);
    return eq;
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

int sip_uri_equal(const osip_uri_t *a, const osip_uri_t *b)
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

enum raw_header {
    RAW_OTHER = 0,
    RAW_FROM,
    RAW_TO,
    RAW_CALL_ID,
    RAW_CSEQ,
    RAW_CONTACT,
};

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
    }
    return RAW_OTHER;
}

/* Walk the header lines of raw (folded lines joined), calling fn for each. */
static void raw_lines(const char *raw, size_t rawlen,
                      void (*fn)(void *arg, const char *line, size_t len), void *arg)
{
    long hdr = sip_msg_header_end(raw, rawlen);
    size_t end = hdr < 0 ? rawlen : (size_t)hdr;
    size_t i = 0;
    while (i < end && raw[i] != '\n')
        i++;
    for (size_t start = i + 1; start < end;) {
        size_t j = start;
        while (j < end && raw[j] != '\n')
            j++;
        while (j + 1 < end && (raw[j + 1] == ' ' || raw[j + 1] == '\t')) { /* folded */
            j++;
            while (j < end && raw[j] != '\n')
                j++;
        }
        const char *line = raw + start;
        size_t l = j - start;
        while (l > 0 && (line[l - 1] == '\r' || line[l - 1] == '\n' || line[l - 1] == ' ' ||
                         line[l - 1] == '\t'))
            l--;
        if (l)
            fn(arg, line, l);
        start = j + 1;
    }
}

struct contact_scan {
    struct sip_msg_slice *out;
    size_t max, n;
    int overflow;
};

static void contact_line(void *arg, const char *line, size_t len)
{
    struct contact_scan *cs = arg;
    size_t v;
    if (raw_header_kind(line, len, &v) != RAW_CONTACT)
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
        } else {
            cs->overflow = 1;
        }
        cs->n++;
    }
}

size_t sip_msg_raw_contact_uris(const char *raw, size_t rawlen, struct sip_msg_slice *out,
                                size_t max)
{
    struct contact_scan cs = {.out = out, .max = max};
    raw_lines(raw, rawlen, contact_line, &cs);
    return cs.n;
}

int sip_msg_raw_400(const char *buf, size_t len, const char *reason, char **out, size_t *outlen)
{
    long hdr = sip_msg_header_end(buf, len);
    size_t end = hdr < 0 ? len : (size_t)hdr;
    /* The start line must look like "METHOD uri SIP/2.0" for a response to make sense. */
    size_t i = 0;
    while (i < end && buf[i] != '\n')
        i++;
    if (i >= end || i < 12 || !memmem(buf, i, " SIP/2.0", 8) || memcmp(buf, "SIP/", 4) == 0)
        return -1;
    struct buf vias = {0}, rest = {0};
    int have_from = 0, have_to = 0, have_callid = 0, have_cseq = 0, to_has_tag = 0;
    size_t line_start = i + 1;
    while (line_start < end) {
        size_t j = line_start;
        while (j < end && buf[j] != '\n')
            j++;
        /* unfold continuation lines (RFC 3261 §7.3.1) */
        while (j + 1 < end && (buf[j + 1] == ' ' || buf[j + 1] == '\t')) {
            j++;
            while (j < end && buf[j] != '\n')
                j++;
        }
        size_t l = j - line_start;
        const char *line = buf + line_start;
        while (l > 0 && (line[l - 1] == '\r' || line[l - 1] == '\n'))
            l--;
        int keep = 0;
        if (raw_header_is(line, l, "via", "v")) {
            buf_append(&vias, line, l);
            buf_puts(&vias, "\r\n");
        } else if (raw_header_is(line, l, "from", "f")) {
            have_from++, keep = 1;
        } else if (raw_header_is(line, l, "to", "t")) {
            have_to++, keep = 1;
            to_has_tag = memmem(line, l, ";tag=", 5) != NULL;
        } else if (raw_header_is(line, l, "call-id", "i")) {
            have_callid++, keep = 1;
        } else if (raw_header_is(line, l, "cseq", NULL)) {
            have_cseq++, keep = 1;
        }
        if (keep) {
            buf_append(&rest, line, l);
            if (raw_header_is(line, l, "to", "t") && !to_has_tag) {
                char tag[17];
                sip_msg_token(tag, 8);
                buf_printf(&rest, ";tag=%s", tag);
            }
            buf_puts(&rest, "\r\n");
        }
        line_start = j + 1;
    }
    int ok = vias.len && have_from == 1 && have_to == 1 && have_callid == 1 && have_cseq == 1;
    if (ok) {
        struct buf r = {0};
        buf_printf(&r, "SIP/2.0 400 %s\r\n", reason);
        buf_append(&r, vias.data, vias.len);
        buf_append(&r, rest.data, rest.len);
        buf_puts(&r, "Content-Length: 0\r\n\r\n");
        *out = r.data;
        *outlen = r.len;
    }
    buf_free(&vias);
    buf_free(&rest);
    return ok ? 0 : -1;
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
    if (k == RAW_OTHER || k == RAW_CONTACT)
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
