/*
 * fuzz_sip_input: libFuzzer target for everything sipwake does with bytes from the network,
 * through the real entry point: the transport's framing and server/core/dispatch.c, with the
 * transactions, registrar (auth off, so bindings are made), proxy, location, offline store
 * and policy wired as main.c wires them (tests/fuzz/fuzz_server.c: no sockets, sends
 * recorded). Each input goes over UDP, one datagram per part (parts split at "@@@@" lines),
 * then over one TCP connection in chunks of pseudo-random sizes (Content-Length framing,
 * CRLF keep-alives), each time into a fresh server; "@BRANCH@" and "@RECORD-ROUTE@" in a part
 * become what the server last sent (fuzz_server_fill_in), so that a response reaches the
 * branch it answers and a request its dialog. Then the same bytes go through the
 * sip_msg edits a forwarded request gets (Via, Record-Route, Route lines replaced, the
 * CANCEL and ACK built from it, a response without its top Via), and the RFC 8599 parameters
 * of every Contact. Built by `make fuzz-build` with clang's libFuzzer and the sanitizers;
 * `make test` replays the seed corpus (tests/fuzz/corpus and tests/torture) through it once.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_server.h"
#include "pn.h"
#include "sip_msg.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* sip_msg's edits straight on the bytes: what the proxy does to a request it forwards, which
 * the dispatch reaches only for a request routed to a binding. */
static void edits(const uint8_t *data, size_t size)
{
    /* the transports hand over NUL-terminated copies */
    char *buf = xmalloc(size + 1);
    memcpy(buf, data, size);
    buf[size] = '\0';

    (void)sip_msg_frame(buf, size, 65535);
    long hdr = sip_msg_header_end(buf, size), cl;
    if (hdr > 0)
        (void)sip_msg_raw_content_length(buf, (size_t)hdr, &cl);

    struct sip_msg_slice uris[8];
    int bracketed[8];
    size_t n = sip_msg_raw_contact_uris(buf, size, uris, bracketed, 8);
    for (size_t i = 0; i < n && i < 8; i++) {
        char *u = xstrndup(uris[i].p, uris[i].len);
        struct pn_info pn;
        pn_parse(u, &pn);
        pn_free(&pn);
        free(pn_redacted(u));
        free(sip_msg_uri_without_pn(u));
        free(sip_msg_ruri_of_contact(u));
        struct sip_msg_slice user = sip_msg_uri_text_user(u, strlen(u));
        char *raw_user = xstrndup(user.p, user.len);
        free(sip_msg_canonical_user(raw_user));
        free(raw_user);
        free(u);
    }
    struct sip_msg_slice to;
    (void)sip_msg_raw_to_uri(buf, size, &to);
    (void)sip_msg_raw_repeated(buf, size);

    struct sip_msg_verdict v;
    osip_message_t *msg = NULL;
    if (sip_msg_parse(buf, size, &msg) == 0) {
        if (MSG_IS_REQUEST(msg)) {
            sip_msg_check_request(msg, buf, size, 1, "outbound", &v);
            if (osip_list_size(&msg->vias) > 0)
                sip_msg_fix_via(msg, "192.0.2.1", 5060);
            for (int i = 0; i < osip_list_size(&msg->contacts); i++) {
                osip_contact_t *c = osip_list_get(&msg->contacts, i);
                char *cs = NULL;
                if (c->url && osip_uri_to_str(c->url, &cs) == 0 && cs) {
                    struct pn_info pn;
                    pn_parse(cs, &pn);
                    pn_free(&pn);
                }
                osip_free(cs);
            }
            struct buf r = {0};
            sip_msg_reply_begin(&r, buf, size, msg, 400, "Bad Request", NULL);
            sip_msg_reply_end(&r);
            buf_free(&r);
            char *contacts = sip_msg_contacts_without_pn(msg);
            struct sip_forward_edit e = {.via_line = "Via: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bKsw1",
                                         .max_forwards = 69,
                                         .record_route = "Record-Route: <sip:192.0.2.2;lr>\r\n",
                                         .routes = "",
                                         .contacts = contacts,
                                         .extra = "Path: <sip:k@192.0.2.2;lr>\r\n"};
            struct buf fw = {0};
            sip_msg_forward_request(buf, size, &e, &fw);
            if (fw.data) {
                struct buf hop = {0};
                (void)sip_msg_hop_request(fw.data, fw.len, "CANCEL", NULL, &hop);
                buf_free(&hop);
                hop = (struct buf){0};
                (void)sip_msg_hop_request(fw.data, fw.len, "ACK", msg, &hop);
                buf_free(&hop);
            }
            buf_free(&fw);
            free(contacts);
        } else {
            char *contacts = sip_msg_contacts_without_pn(msg);
            struct buf up = {0};
            (void)sip_msg_strip_top_via(buf, size, contacts, &up);
            buf_free(&up);
            free(contacts);
        }
        osip_message_free(msg);
    } else {
        sip_msg_check_unparsable(buf, size, &v);
        char *out;
        size_t outlen;
        if (sip_msg_raw_reply(buf, size, v.code ? v.code : 400, "Bad Request", NULL, &out,
                              &outlen) == 0)
            free(out);
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialised;
    if (!initialised) {
        fuzz_server_init(0);
        initialised = 1;
    }
    fuzz_server_run(data, size, fuzz_server_fill_in);
    edits(data, size);
    return 0;
}
