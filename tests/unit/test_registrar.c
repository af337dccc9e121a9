/* Binding matching: push params, then +sip.instance, and host:port only for plain bindings. */
#include "registrar.c"
#include "tap.h"

static struct location *loc;

static void add(const char *aor, const char *contact, const char *instance, int push)
{
    osip_uri_t *u;
    osip_uri_init(&u);
    osip_uri_parse(u, contact);
    struct pn_info pn;
    pn_parse(contact, &pn);
    struct binding_fields f = {
        .contact_id = location_new_id(loc),
        .expires = util_now() + 3600,
        .q = -1,
        .contact = contact,
        .instance = instance,
        .flags = push ? LOCATION_FLAG_PUSH : 0,
        .pn_provider = pn.kind == PN_PUSH ? pn.provider : NULL,
        .pn_param = pn.param,
        .pn_prid = pn.prid,
    };
    location_save(loc, aor, location_binding_new(&f), NULL);
    pn_free(&pn);
    osip_uri_free(u);
}

/* The contact of the stored binding a Contact header value matches, or "none". */
static const char *match(const char *aor, const char *header, long expires)
{
    static char result[512];
    osip_contact_t *c;
    osip_contact_init(&c);
    osip_contact_parse(c, header);
    /* the URI as written, as the registrar takes it from the raw header */
    const char *lt = strchr(header, '<'), *gt = strchr(header, '>');
    struct reg_contact rc = {
        .c = c, .expires = expires, .uri = xstrndup(lt + 1, (size_t)(gt - lt - 1))};
    pn_parse(rc.uri, &rc.pn);
    const char *inst = sip_msg_param(&c->gen_params, "+sip.instance");
    rc.instance = inst ? unquote(inst) : NULL;
    struct binding *b = find_match(location_find(loc, aor), &rc);
    snprintf(result, sizeof result, "%s", b ? b->contact : "none");
    free(rc.instance);
    free(rc.uri);
    pn_free(&rc.pn);
    osip_contact_free(c);
    return result;
}

/* The binding made from what the registrar writes as received for src: its parsed transport
 * and address are src's (the text stays as OpenSIPS stores it). */
static void received_round_trip(const char *ip, int port, enum config_transport tr,
                                const char *want_text)
{
    struct sip_source src = {.transport = tr, .port = port};
    snprintf(src.ip, sizeof src.ip, "%s", ip);
    char received[INET6_ADDRSTRLEN + 40];
    format_received(&src, received, sizeof received);
    is_str(received, want_text, "received written for %s:%d", ip, port);
    struct binding_fields f = {.contact = "sip:bob@example.com", .received = received, .q = -1};
    struct binding *b = location_binding_new(&f);
    char got_ip[INET6_ADDRSTRLEN] = "";
    int got_port = 0;
    ok(b->received_len > 0, "%s: the address is parsed", received);
    if (b->received_len)
        transport_addr_str(&b->received_addr.sa, got_ip, sizeof got_ip, &got_port);
    is_str(got_ip, ip, "%s: its ip", received);
    is_int(got_port, port, "%s: its port", received);
    is_int(b->transport, tr, "%s: its transport", received);
    is_str(b->received, want_text, "%s: the text is kept for the store", received);
    location_binding_free(b);
}

int main(void)
{
    parser_init();
    loc = location_new(NULL, NULL);
    const char *aor = "alice@example.com";
    add(aor, "sip:alice@10.0.0.1:5060;pn-provider=fcm;pn-param=p;pn-prid=TOK1", NULL, 1);
    add(aor, "sip:alice@10.0.0.2:5060", "<urn:uuid:1>", 0);
    add(aor, "sip:alice@10.0.0.3:5070;transport=tcp", NULL, 0);
    add(aor,
        "sip:alice@10.0.0.4:5060;pn-provider=apns;pn-param=T.org.app.voip&remote;"
        "pn-prid=AA:voip&BB:remote",
        "<urn:uuid:ios>", 1);
    is_int(location_aor_count(location_find(loc, aor)), 4, "four bindings");

    is_str(match(aor, "<sip:alice@192.0.2.9:40000;pn-provider=fcm;pn-param=p;pn-prid=TOK1>", 3600),
           "sip:alice@10.0.0.1:5060;pn-provider=fcm;pn-param=p;pn-prid=TOK1",
           "same push params from a new address and port");
    is_str(match(aor, "<sip:alice@10.0.0.1:5060;pn-provider=fcm;pn-param=p;pn-prid=TOK2>", 3600),
           "none", "new token at the same host:port is not matched on host:port");
    is_str(match(aor,
                 "<sip:alice@192.0.2.9:1;pn-provider=apns;pn-param=T.org.app.voip&remote;"
                 "pn-prid=CC:voip&BB:remote>",
                 3600),
           "sip:alice@10.0.0.4:5060;pn-provider=apns;pn-param=T.org.app.voip&remote;"
           "pn-prid=AA:voip&BB:remote",
           "APNs: one rotated token, the other equal");
    is_str(match(aor,
                 "<sip:alice@192.0.2.9:1;pn-provider=apns;pn-param=T.org.app.voip&remote;"
                 "pn-prid=XX:voip&YY:remote>;+sip.instance=\"<urn:uuid:ios>\"",
                 3600),
           "sip:alice@10.0.0.4:5060;pn-provider=apns;pn-param=T.org.app.voip&remote;"
           "pn-prid=AA:voip&BB:remote",
           "both tokens new: matched on +sip.instance");
    is_str(match(aor, "<sip:alice@192.0.2.50:9>;+sip.instance=\"<urn:uuid:1>\"", 3600),
           "sip:alice@10.0.0.2:5060", "plain binding matched on instance from anywhere");
    is_str(match(aor, "<sip:alice@10.0.0.3:5070;transport=tcp>", 3600),
           "sip:alice@10.0.0.3:5070;transport=tcp", "plain binding matched on its URI");
    is_str(match(aor, "<sip:alice@10.0.0.3:5070>", 3600), "none",
           "transport present in one URI only: no match");
    is_str(match(aor, "<sip:alice@10.0.0.1:5060>", 3600), "none",
           "a push binding is never refreshed by host:port");
    is_str(match(aor, "<sip:alice@10.0.0.1:5060;pn-provider=fcm;pn-param=p>", 0),
           "sip:alice@10.0.0.1:5060;pn-provider=fcm;pn-param=p;pn-prid=TOK1",
           "RFC 8599 §4.1.2 removal without pn-prid matches by URI");
    is_str(match("bob@example.com", "<sip:alice@10.0.0.2:5060>", 3600), "none",
           "other AORs are not searched");
    add("null@example.com", "sip:%00@host5.example.com", NULL, 0);
    is_str(match("null@example.com", "<sip:%00%00@host5.example.com>", 3600), "none",
           "escaped NULs are compared as written: %%00%%00 is not %%00");
    is_str(match("null@example.com", "<sip:%00@HOST5.example.com>", 3600),
           "sip:%00@host5.example.com", "the same escaped NUL user matches");
    location_free(loc);
    received_round_trip("192.0.2.7", 5060, CONFIG_TRANSPORT_UDP, "sip:192.0.2.7:5060");
    received_round_trip("2001:db8::7", 40123, CONFIG_TRANSPORT_TCP,
                        "sip:[2001:db8::7]:40123;transport=tcp");
    received_round_trip("127.0.0.1", 5061, CONFIG_TRANSPORT_TLS,
                        "sip:127.0.0.1:5061;transport=tls");
    {
        /* a received the proxy cannot use (not numeric): no address, never a guess */
        struct binding_fields f = {.contact = "sip:bob@example.com",
                                   .received = "sip:host.example:5060;transport=tcp"};
        struct binding *b = location_binding_new(&f);
        is_int(b->received_len, 0, "a host name in received gives no address");
        is_int(b->transport, CONFIG_TRANSPORT_TCP, "... but its transport");
        location_binding_free(b);
        f.received = NULL;
        b = location_binding_new(&f);
        ok(b->received_len == 0 && b->transport == CONFIG_TRANSPORT_UDP,
           "no received: no address, UDP");
        location_binding_free(b);
    }
    return done_testing();
}
