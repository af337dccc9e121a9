/* Gateway keys (stable per device, opaque) and the lifetime an upstream's 2xx grants. */
#include <string.h>

#include "gateway.c"
#include "sip_msg.h"
#include "tap.h"

int main(void)
{
    sip_msg_init();
    char a[GATEWAY_KEY_LEN + 1], b[GATEWAY_KEY_LEN + 1];

    gateway_key("alice@example.com", "<urn:uuid:1>", 0, "fcm", "p", "tok1", "sip:a@192.0.2.1", a);
    is_int((int)strlen(a), GATEWAY_KEY_LEN, "a key is 24 characters");
    ok(strspn(a, "0123456789abcdef") == GATEWAY_KEY_LEN, "of lower-case hex");
    gateway_key("alice@example.com", "<urn:uuid:1>", 0, "fcm", "p", "tok2", "sip:a@192.0.2.7:5070",
                b);
    is_str(b, a, "same instance: same key, whatever the token or address (token rotation)");
    gateway_key("alice@example.com", "<urn:uuid:1>", 1, "fcm", "p", "tok1", "sip:a@192.0.2.1", b);
    ok(strcmp(a, b) != 0, "another reg-id (RFC 5626 flow): another key");
    gateway_key("bob@example.com", "<urn:uuid:1>", 0, "fcm", "p", "tok1", "sip:a@192.0.2.1", b);
    ok(strcmp(a, b) != 0, "another AOR: another key");
    gateway_key("alice@example.com", NULL, 0, "fcm", "p", "tok1", "sip:a@192.0.2.1", a);
    gateway_key("alice@example.com", NULL, 0, "fcm", "p", "tok1", "sip:a@192.0.2.9:1", b);
    is_str(b, a, "no instance: the push params identify the device");
    ok(!strstr(a, "tok1"), "and the key does not carry them");
    gateway_key("alice@example.com", NULL, 0, NULL, NULL, NULL, "sip:a@192.0.2.1", a);
    gateway_key("alice@example.com", NULL, 0, NULL, NULL, NULL, "sip:a@192.0.2.2", b);
    ok(strcmp(a, b) != 0, "a plain contact: its URI identifies it");

    /* the lifetime granted in an upstream's 2xx */
    struct config cfg;
    config_defaults(&cfg);
    struct gateway gw = {.cfg = &cfg};
    const char *ok200 = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a:1;branch=z9hG4bKx\r\n"
                        "From: <sip:alice@h>;tag=1\r\nTo: <sip:alice@h>;tag=2\r\nCall-ID: c\r\n"
                        "CSeq: 2 REGISTER\r\n"
                        "Contact: <sip:00112233445566778899aabb@127.0.0.1:5060>;expires=600\r\n"
                        "Contact: <sip:someone@192.0.2.5>;expires=3600\r\n"
                        "Expires: 1800\r\n\r\n";
    osip_message_t *resp = NULL;
    ok(sip_msg_parse(ok200, strlen(ok200), &resp) == 0, "2xx parsed");
    struct gateway_contact c = {
        .key = "00112233445566778899aabb", .uri = "sip:a@x", .expires = 3600};
    is_int((int)gateway_granted(&gw, resp, &c), 600, "the contact's expires param");
    struct gateway_contact gone = {.key = "ffffffffffffffffffffffff", .expires = 3600};
    is_int((int)gateway_granted(&gw, resp, &gone), 0, "a contact the 2xx does not list: 0");
    osip_message_free(resp);
    const char *hdr200 = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a:1;branch=z9hG4bKx\r\n"
                         "From: <sip:alice@h>;tag=1\r\nTo: <sip:alice@h>;tag=2\r\nCall-ID: c\r\n"
                         "CSeq: 2 REGISTER\r\n"
                         "Contact: <sip:00112233445566778899aabb@127.0.0.1:5060>\r\n"
                         "Expires: 1800\r\n\r\n";
    ok(sip_msg_parse(hdr200, strlen(hdr200), &resp) == 0, "2xx without expires params parsed");
    is_int((int)gateway_granted(&gw, resp, &c), 1800, "then the Expires header");
    osip_message_free(resp);
    cfg.upstream_path = 1;
    const char *path200 = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a:1;branch=z9hG4bKx\r\n"
                          "From: <sip:alice@h>;tag=1\r\nTo: <sip:alice@h>;tag=2\r\nCall-ID: c\r\n"
                          "CSeq: 2 REGISTER\r\nContact: <sip:a@192.0.2.1:5060>;expires=300\r\n\r\n";
    ok(sip_msg_parse(path200, strlen(path200), &resp) == 0, "Path-mode 2xx parsed");
    struct gateway_contact pc = {.key = "00112233445566778899aabb",
                                 .uri = "sip:a@192.0.2.1:5060;pn-provider=fcm;pn-prid=t",
                                 .expires = 3600};
    is_int((int)gateway_granted(&gw, resp, &pc), 300,
           "Path mode: matched on the phone's URI without its push params");
    osip_message_free(resp);
    config_free(&cfg);
    return done_testing();
}
