/* Stream framing, raw Content-Length, the raw 400, URI comparison, Via fixing. */
#include "sip_msg.c"
#include "tap.h"

#include <stdlib.h>

static osip_uri_t *uri(const char *s)
{
    osip_uri_t *u;
    osip_uri_init(&u);
    osip_uri_parse(u, s);
    return u;
}

static int uri_eq(const char *a, const char *b)
{
    osip_uri_t *x = uri(a), *y = uri(b);
    int r = sip_msg_uri_equal(x, y);
    osip_uri_free(x);
    osip_uri_free(y);
    return r;
}

int main(void)
{
    sip_msg_init();
    const char *m = "OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 4\r\n\r\nbodyREGISTER";
    is_int(sip_msg_frame(m, strlen(m), 65535), strlen(m) - 8, "frame ends after the body");
    is_int(sip_msg_frame(m, 20, 65535), -2, "partial headers need more");
    is_int(sip_msg_frame(m, strlen(m) - 10, 65535), -2, "partial body needs more");
    const char *compact = "OPTIONS sip:a@b SIP/2.0\r\nl: 2\r\n\r\nxy";
    is_int(sip_msg_frame(compact, strlen(compact), 65535), strlen(compact), "compact l: header");
    const char *nocl = "OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n";
    is_int(sip_msg_frame(nocl, strlen(nocl), 65535), strlen(nocl), "missing CL reads as 0");
    const char *badcl = "OPTIONS sip:a@b SIP/2.0\r\nContent-Length: x1\r\n\r\n";
    is_int(sip_msg_frame(badcl, strlen(badcl), 65535), -1, "malformed CL is an error");
    const char *big = "OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 99999999\r\n\r\n";
    is_int(sip_msg_frame(big, strlen(big), 65535), -1, "CL beyond max is an error");
    char huge[2000];
    memset(huge, 'a', sizeof huge);
    is_int(sip_msg_frame(huge, sizeof huge, 1024), -1, "headers beyond max without end");

    const char *garbled = "INVITE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\n"
                          "From: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\ni: abc\r\n"
                          "CSeq: 1 INVITE\r\nContact: <<<<\r\n\r\n";
    char *out;
    size_t outlen;
    ok(sip_msg_raw_reply(garbled, strlen(garbled), 400, "Malformed Message", NULL, &out, &outlen) ==
           0,
       "raw 400 built from readable headers");
    ok(strstr(out, "SIP/2.0 400 Malformed Message\r\n") == out, "status line");
    ok(strstr(out, "Via: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\n") != NULL, "Via copied");
    ok(strstr(out, "i: abc\r\n") != NULL, "compact Call-ID copied");
    ok(strstr(out, "To: <sip:x@y>;tag=") != NULL, "To-tag added");
    ok(strstr(out, "Content-Length: 0\r\n\r\n") != NULL, "Content-Length 0");
    free(out);
    const char *nocseq = "INVITE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: a\r\nTo: b\r\n"
                         "Call-ID: c\r\n\r\n";
    ok(sip_msg_raw_reply(nocseq, strlen(nocseq), 400, "x", NULL, &out, &outlen) < 0,
       "no CSeq: no answer");
    const char *resp = "SIP/2.0 200 OK\r\nVia: a\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\n"
                       "CSeq: 1 X\r\n\r\n";
    ok(sip_msg_raw_reply(resp, strlen(resp), 400, "x", NULL, &out, &outlen) < 0,
       "responses get no answer");

    /* RFC 3261 §19.1.4 examples */
    ok(uri_eq("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
       "escapes and case of host and params");
    ok(!uri_eq("sip:alice@atlanta.com", "sip:alice@atlanta.com:5060"), "default port not equal");
    ok(!uri_eq("sip:ALICE@atlanta.com", "sip:alice@atlanta.com"), "user is case-sensitive");
    ok(!uri_eq("sip:bob@biloxi.com;transport=udp", "sip:bob@biloxi.com"),
       "transport present in one");
    ok(uri_eq("sip:carol@chicago.com;security=on", "sip:carol@chicago.com"),
       "other param present in one is ignored");
    ok(!uri_eq("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
       "other param present in both must match");
    ok(uri_eq("sip:a@h:5;pn-provider=fcm;pn-prid=1", "sip:a@h:5;pn-provider=fcm;pn-prid=2"),
       "pn-* params are left to the push comparison");

    osip_message_t *req;
    const char *reg = "REGISTER sip:h SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;rport;"
                      "branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:a@h>\r\n"
                      "Call-ID: c\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n";
    ok(sip_msg_parse(reg, strlen(reg), &req) == 0, "parse REGISTER");
    sip_msg_fix_via(req, "192.0.2.1", 40000);
    osip_message_t *r = sip_msg_response(req, 200, "OK", "abc");
    char *s;
    size_t len;
    sip_msg_to_str(r, &s, &len);
    ok(strstr(s, "rport=40000") && strstr(s, "received=192.0.2.1"),
       "RFC 3581 received and rport in the response Via");
    ok(strstr(s, "To: <sip:a@h>;tag=abc") != NULL, "To-tag");
    ok(strstr(s, "Content-Length: 0") != NULL, "Content-Length");
    osip_free(s);
    osip_message_free(r);
    osip_message_free(req);
    /* request checks, in RFC 3261 §8.2 order */
    struct sip_msg_verdict v;
    const char *vreq[][2] = {
        {"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: "
         "<sip:x@y>;tag=1\r\n"
         "To: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
         "0"},
        {"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: "
         "<sip:x@y>;tag=1\r\n"
         "To: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nRequire: foo, outbound\r\n\r\n",
         "420"},
        {"OPTIONS tel:+123 SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: "
         "<sip:x@y>;tag=1\r\n"
         "To: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n",
         "0"},
        {"OPTIONS http://a.example SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: "
         "<sip:x@y>;"
         "tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n",
         "416"},
        {"FOO sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\n"
         "To: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 BAR\r\n\r\n",
         "501"},
        /* an unknown method alone passes: a proxy forwards it (RFC 3261 §16, RFC 4475 3.1.1.2) */
        {"FOO sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\n"
         "To: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 FOO\r\n\r\n",
         "0"},
        {"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: "
         "<sip:x@y>;tag=1\r\n"
         "To: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nl: 1\r\nContent-Length: 1\r\n\r\nx",
         "400"},
        {"OPTIONS sip:a@b:99999 SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;"
         "tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n",
         "400"},
    };
    for (size_t i = 0; i < sizeof vreq / sizeof vreq[0]; i++) {
        osip_message_t *rq = NULL;
        size_t n = strlen(vreq[i][0]);
        int parsed = sip_msg_parse(vreq[i][0], n, &rq) == 0;
        /* what osip2 cannot parse takes the server's other path */
        int code = parsed ? sip_msg_check_request(rq, vreq[i][0], n, 1, "outbound", &v)
                          : sip_msg_check_unparsable(vreq[i][0], n, &v);
        is_int(code, atoi(vreq[i][1]), "request check %zu answers %s", i, vreq[i][1]);
        if (code == 420)
            is_str(v.hvalue, "foo", "Unsupported lists only the unknown option");
        if (parsed)
            osip_message_free(rq);
    }
    const char *bad_line = "NEWMETHOD sip:x y SIP/2.0\r\nVia: a\r\nCSeq: 1 NEWMETHOD\r\n\r\n";
    is_int(sip_msg_check_unparsable(bad_line, strlen(bad_line), &v), 501,
           "unparsable request with an unknown method: 501");
    const char *v7 = "OPTIONS sip:x SIP/7.0\r\n\r\n";
    is_int(sip_msg_check_unparsable(v7, strlen(v7), &v), 505, "unknown version: 505");

    char *cu = sip_msg_canonical_user("null-%00-null");
    is_str(cu, "null-%00-null", "an escaped NUL stays escaped");
    free(cu);
    cu = sip_msg_canonical_user("%61lice%2d%3b");
    is_str(cu, "alice-;", "needless escapes are decoded");
    free(cu);
    cu = sip_msg_canonical_user("a%40b%20c");
    is_str(cu, "a%40b%20c", "@ and space stay escaped");
    free(cu);
    ok(!sip_msg_uri_text_equal("sip:%00@h", "sip:%00%00@h"),
       "%%00 and %%00%%00 are different users");
    ok(sip_msg_uri_text_equal("sip:%61@h;transport=udp", "sip:a@H;transport=UDP"),
       "escaped and plain user, host case");
    struct sip_msg_slice sl[4];
    int br[4];
    const char *mc = "REGISTER sip:h SIP/2.0\r\nContact: <sip:a@h;x>;q=1, \"N, M\" <sip:b@h>\r\n"
                     "m: sip:c@h;expires=5\r\n\r\n";
    is_int(sip_msg_raw_contact_uris(mc, strlen(mc), sl, br, 4), 3, "three raw contacts");
    ok(sl[0].len == 9 && memcmp(sl[0].p, "sip:a@h;x", 9) == 0 && br[0], "bracketed URI with param");
    ok(sl[1].len == 7 && memcmp(sl[1].p, "sip:b@h", 7) == 0, "comma in a quoted display name");
    ok(sl[2].len == 7 && memcmp(sl[2].p, "sip:c@h", 7) == 0 && !br[2],
       "unbracketed: params belong to the header");

    /* forwarding edits: Record-Route on top of the received one, Route lines replaced */
    const char *inv = "INVITE sip:bob@h SIP/2.0\r\nVia: SIP/2.0/UDP a:1;branch=z9hG4bKa\r\n"
                      "Record-Route: <sip:up;lr>\r\nRoute: <sip:me;lr>\r\nRoute: <sip:next;lr>\r\n"
                      "From: <sip:a@h>;tag=1\r\nTo: <sip:bob@h>\r\nCall-ID: c1\r\n"
                      "CSeq: 7 INVITE\r\nContent-Length: 2\r\n\r\nxy";
    struct sip_forward_edit e = {.via_line = "Via: SIP/2.0/UDP me:5060;branch=z9hG4bKsw1",
                                 .max_forwards = 69,
                                 .record_route = "Record-Route: <sip:tok@me;lr>\r\n",
                                 .routes = "Route: <sip:next;lr>\r\n"};
    struct buf fw = {0};
    sip_msg_forward_request(inv, strlen(inv), &e, &fw);
    buf_puts(&fw, "");
    ok(strstr(fw.data,
              "branch=z9hG4bKsw1\r\nRecord-Route: <sip:tok@me;lr>\r\nRoute: <sip:next;lr>\r\n"
              "Via: SIP/2.0/UDP a:1") != NULL,
       "our Via, our Record-Route and the remaining Route on top");
    ok(strstr(fw.data, "<sip:me;lr>") == NULL, "the popped Route is gone");
    ok(strstr(fw.data, "Record-Route: <sip:up;lr>") != NULL, "the received Record-Route stays");
    ok(strstr(fw.data, "Max-Forwards: 69\r\n\r\nxy") != NULL, "Max-Forwards added, body kept");
    buf_free(&fw);

    /* CANCEL and ACK built from a request sipwake sent */
    struct buf hop = {0};
    is_int(sip_msg_hop_request(inv, strlen(inv), "CANCEL", NULL, &hop), 0, "CANCEL built");
    buf_puts(&hop, "");
    ok(strncmp(hop.data, "CANCEL sip:bob@h SIP/2.0\r\nVia: SIP/2.0/UDP a:1;branch=z9hG4bKa\r\n",
               64) == 0,
       "same Request-URI and top Via");
    ok(strstr(hop.data, "CSeq: 7 CANCEL\r\n") && strstr(hop.data, "To: <sip:bob@h>\r\n") &&
           strstr(hop.data, "Route: <sip:me;lr>\r\nRoute: <sip:next;lr>\r\n"),
       "CSeq number kept, To without tag, Route copied");
    buf_free(&hop);
    osip_message_t *busy = NULL;
    const char *r486 = "SIP/2.0 486 Busy\r\nVia: SIP/2.0/UDP a:1;branch=z9hG4bKa\r\n"
                       "From: <sip:a@h>;tag=1\r\nTo: <sip:bob@h>;tag=b9\r\nCall-ID: c1\r\n"
                       "CSeq: 7 INVITE\r\n\r\n";
    ok(sip_msg_parse(r486, strlen(r486), &busy) == 0, "486 parsed");
    hop = (struct buf){0};
    is_int(sip_msg_hop_request(inv, strlen(inv), "ACK", busy, &hop), 0, "ACK built");
    buf_puts(&hop, "");
    ok(strstr(hop.data, "To: <sip:bob@h>;tag=b9\r\n") && strstr(hop.data, "CSeq: 7 ACK\r\n"),
       "the response's To tag, CSeq 7 ACK");
    buf_free(&hop);
    osip_message_free(busy);
    hop = (struct buf){0};
    is_int(sip_msg_hop_request("INVITE sip:x SIP/2.0\r\nCall-ID: c\r\n\r\n", 36, "ACK", NULL, &hop),
           -1, "a request without Via/From/CSeq: no ACK");
    buf_free(&hop);

    /* push params never travel: Contacts of forwarded requests and passed-on responses */
    const char *r200 =
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP me:5060;branch=z9hG4bKsw1\r\nVia: SIP/2.0/UDP a:1;"
        "branch=z9hG4bKa\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:bob@h>;tag=b9\r\nCall-ID: c1\r\n"
        "CSeq: 7 INVITE\r\nContact: \"Bob\" <sip:bob@192.0.2.9:5060;transport=tcp;pn-provider=fcm;"
        "pn-param=p;pn-prid=tok>;+sip.instance=\"<urn:uuid:1>\"\r\nContent-Length: 0\r\n\r\n";
    osip_message_t *ok200 = NULL;
    ok(sip_msg_parse(r200, strlen(r200), &ok200) == 0, "200 with a push Contact parsed");
    char *cl = sip_msg_contacts_without_pn(ok200);
    is_str(cl,
           "Contact: \"Bob\" <sip:bob@192.0.2.9:5060;transport=tcp>;+sip.instance=\"<urn:uuid:1>\""
           "\r\n",
           "Contact without pn-* params, display name and header params kept");
    struct buf up = {0};
    is_int(sip_msg_strip_top_via(r200, strlen(r200), cl, &up), 0, "response passed on");
    buf_puts(&up, "");
    ok(!strstr(up.data, "pn-") && strstr(up.data, "Contact: \"Bob\" <sip:bob@192.0.2.9:5060;") &&
           !strstr(up.data, "branch=z9hG4bKsw1") && strstr(up.data, "\r\n\r\n"),
       "without our Via and without the push params");
    buf_free(&up);
    free(cl);
    osip_message_free(ok200);
    osip_message_t *plain = NULL;
    ok(sip_msg_parse(r486, strlen(r486), &plain) == 0 && !sip_msg_contacts_without_pn(plain),
       "no Contact with push params: nothing to replace");
    osip_message_free(plain);
    struct sip_forward_edit ge = {.via_line = "Via: SIP/2.0/UDP me;branch=z9hG4bKswg1",
                                  .max_forwards = 69,
                                  .contacts = "Contact: <sip:k1@me>;expires=60\r\n",
                                  .extra = "Path: <sip:k1@me;lr>\r\n"};
    struct buf gw = {0};
    sip_msg_forward_request(inv, strlen(inv), &ge, &gw);
    buf_puts(&gw, "");
    ok(strstr(gw.data, "Contact: <sip:k1@me>;expires=60\r\nPath: <sip:k1@me;lr>\r\n\r\n") &&
           !strstr(gw.data, "Contact: <sip:a"),
       "a relayed REGISTER's Contacts replaced, Path added at the end of the headers");
    buf_free(&gw);
    /* a message with a body reaches osip2 as its headers without Content-Length, from a
     * copy on the stack, or on the heap when the header block is larger than a datagram's;
     * bare-LF and folded lines are read the same either way */
    for (int large = 0; large <= 1; large++) {
        struct buf mb = {0};
        buf_printf(&mb, "MESSAGE sip:b@h SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK2\n"
                        "From: <sip:a@h>;tag=1\nTo: <sip:b@h>\nCall-ID: c2\nCSeq: 1 MESSAGE\n"
                        "Subject: one\n  two\nContent-Length: 5\n");
        for (int i = 0; large && i < 100; i++)
            buf_printf(&mb, "X-Pad-%d: %0100d\n", i, i);
        buf_printf(&mb, "Content-Type: text/plain\n\nhello");
        osip_message_t *msg = NULL;
        ok(sip_msg_parse_hdr(mb.data, mb.len, sip_msg_header_end(mb.data, mb.len), &msg) == 0,
           "a MESSAGE with a body and %s header block parses", large ? "a 10 KB" : "a small");
        is_str(msg && msg->content_length ? msg->content_length->value : NULL, "0",
               "osip2 saw no Content-Length (%s)", large ? "heap copy" : "stack copy");
        const char *subj = msg ? sip_msg_header(msg, "Subject") : NULL;
        ok(subj && strncmp(subj, "one", 3) == 0 && strspn(subj + 3, " ") > 0 &&
               strcmp(subj + 3 + strspn(subj + 3, " "), "two") == 0,
           "the folded header is one value (%s)", large ? "heap copy" : "stack copy");
        ok(msg && msg->content_type && strcmp(msg->content_type->subtype, "plain") == 0,
           "the header after Content-Length is kept (%s)", large ? "heap copy" : "stack copy");
        if (large)
            is_str(msg ? sip_msg_header(msg, "X-Pad-99") : NULL,
                   "0000000000000000000000000000000000000000000000000000000000000000000000000"
                   "000000000000000000000000099",
                   "the last padding header is whole");
        osip_message_free(msg);
        buf_free(&mb);
    }
    /* the raw Content-Length: full and compact names in any case, wherever the line is,
     * never a header whose name only starts or ends like it */
    static const struct {
        const char *msg;
        int rc;
        long cl;
        const char *why;
    } rcl[] = {
        {"INVITE sip:b@h SIP/2.0\r\nContent-Length: 12\r\nCall-ID: x\r\n\r\n", 1, 12, "first"},
        {"INVITE sip:b@h SIP/2.0\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContact: <sip:a@h>\r\n"
         "Content-Type: a/b\r\ncontent-length:7\r\n\r\n",
         1, 7, "last, after other c- headers, lower case, no space"},
        {"SIP/2.0 200 OK\r\nVia: x\r\nl: 3\r\nTo: y\r\n\r\n", 1, 3, "compact l"},
        {"SIP/2.0 200 OK\r\nVia: x\r\nL  :\t5 \r\n\r\n", 1, 5, "compact L, space before the colon"},
        {"SIP/2.0 200 OK\r\nCONTENT-LENGTH: 0\r\n\r\n", 1, 0, "upper case"},
        {"SIP/2.0 200 OK\nVia: x\nContent-Length: 9\n\n", 1, 9, "bare LF lines"},
        {"SIP/2.0 200 OK\r\nX-Content-Length: 9\r\nContent-Lengths: 8\r\nLen: 4\r\n\r\n", 0, -1,
         "look-alike names are not it"},
        {"SIP/2.0 200 OK\r\nSubject: a\r\n Content-Length: 4\r\n\r\n", 0, -1,
         "a folded line is not a header"},
        {"SIP/2.0 200 OK\r\nContent-Length: 4x\r\n\r\n", -1, -1, "a malformed value"},
        {"SIP/2.0 200 OK\r\nVia: x\r\n\r\n", 0, -1, "absent"},
    };
    for (size_t i = 0; i < sizeof rcl / sizeof rcl[0]; i++) {
        long got = -1;
        size_t n = strlen(rcl[i].msg);
        long hdr = sip_msg_header_end(rcl[i].msg, n);
        int rc = sip_msg_raw_content_length(rcl[i].msg, (size_t)hdr, &got);
        ok(rc == rcl[i].rc && (rc != 1 || got == rcl[i].cl), "raw Content-Length: %s (rc %d, %ld)",
           rcl[i].why, rc, got);
    }
    return done_testing();
}
