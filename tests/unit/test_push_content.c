/* What is pushed to a binding: APNs token, topic, type and payload for calls, messages and
 * refreshes (Linphone's dual-token form included), FCM data messages, Web Push urgency. */
#include <string.h>

#include "push_content.c"
#include "tap.h"

static struct pn_info pn(const char *provider, const char *param, const char *prid)
{
    struct pn_info p;
    pn_from_strings(provider, param, prid, &p);
    return p;
}

int main(void)
{
    char err[128], topic[256], *payload;
    struct apns_notification n;
    struct push_event call = {.kind = PUSH_CALL,
                              .call_id = "c1@h",
                              .from_uri = "sip:alice@example.com",
                              .from_name = "Alice \"A\"",
                              .ttl = 30};
    is_int(push_content_kind_of("INVITE"), PUSH_CALL, "INVITE: a call");
    is_int(push_content_kind_of("MESSAGE"), PUSH_MESSAGE, "MESSAGE: a message");
    is_int(push_content_kind_of("OPTIONS"), PUSH_WAKE, "OPTIONS: a wake, not a message");
    is_int(push_content_kind_of("SUBSCRIBE"), PUSH_WAKE, "SUBSCRIBE: a wake");
    is_int(push_content_kind_of("REFER"), PUSH_WAKE, "REFER: a wake");

    struct pn_info both =
        pn("apns", "TEAM123456.org.example.app.voip&remote", "AAAA:voip&BBBB:remote");
    is_int(both.kind, PN_PUSH, "Linphone's dual-token form");
    is_int(
        push_content_apns(&both, &call, 1000, &n, &payload, topic, sizeof topic, err, sizeof err),
        0, "a call");
    ok(n.type == APNS_VOIP && !strcmp(n.device_token, "AAAA") &&
           !strcmp(n.topic, "org.example.app.voip"),
       "a VoIP push to the voip token on the .voip topic");
    is_int((int)n.expiration, 1030, "expiring with the call's TTL");
    is_str(payload,
           "{\"aps\":{\"call-id\":\"c1@h\"},\"call-id\":\"c1@h\",\"from-uri\":\"sip:alice@example."
           "com\","
           "\"display-name\":\"Alice \\\"A\\\"\"}",
           "payload: aps.call-id for CallKit, the caller (JSON-escaped)");
    free(payload);

    struct push_event msg = {.kind = PUSH_MESSAGE,
                             .call_id = "m1@h",
                             .from_uri = "sip:bob@h",
                             .ttl = 3600,
                             .collapse_id = "bob"};
    push_content_apns(&both, &msg, 1000, &n, &payload, topic, sizeof topic, err, sizeof err);
    ok(n.type == APNS_ALERT && !strcmp(n.device_token, "BBBB") &&
           !strcmp(n.topic, "org.example.app") && !strcmp(n.collapse_id, "bob"),
       "a message: an alert to the remote token on the bundle's topic, collapsed per sender");
    ok(strstr(payload, "\"loc-key\":\"IM_MSG\"") &&
           strstr(payload, "\"loc-args\":[\"sip:bob@h\"]") &&
           strstr(payload, "\"sound\":\"default\""),
       "with Linphone's IM_MSG, the sender and a sound");
    free(payload);

    struct push_event refresh = {.kind = PUSH_REFRESH, .ttl = 120};
    push_content_apns(&both, &refresh, 1000, &n, &payload, topic, sizeof topic, err, sizeof err);
    ok(n.type == APNS_BACKGROUND && !strcmp(n.device_token, "BBBB"),
       "a refresh: a background push to the remote token");
    is_str(payload, "{\"aps\":{\"content-available\":1}}", "content-available only");
    free(payload);

    struct pn_info voip_only = pn("apns", "TEAM123456.org.example.app.voip", "CCCC:voip");
    ok(push_content_apns(&voip_only, &msg, 1000, &n, &payload, topic, sizeof topic, err,
                         sizeof err) < 0 &&
           strstr(err, "VoIP pushes are for calls"),
       "a message for an app with only a VoIP token: not pushed (%s)", err);
    ok(push_content_apns(&voip_only, &refresh, 1000, &n, &payload, topic, sizeof topic, err,
                         sizeof err) < 0,
       "nor a refresh");
    ok(!push_content_refreshable(&voip_only) && push_content_refreshable(&both),
       "a VoIP-only app cannot be refresh-pushed; one with a remote token can");
    struct push_event wake = {.kind = PUSH_WAKE,
                              .method = "SUBSCRIBE",
                              .call_id = "s1@h",
                              .from_uri = "sip:alice@example.com",
                              .ttl = 10};
    push_content_apns(&both, &wake, 1000, &n, &payload, topic, sizeof topic, err, sizeof err);
    ok(n.type == APNS_BACKGROUND && n.priority == 5 && !strcmp(n.device_token, "BBBB") &&
           !strstr(payload, "alert") && strstr(payload, "\"method\":\"SUBSCRIBE\""),
       "a wake: a silent background push to the remote token, naming the method");
    free(payload);
    struct pn_info remote_only = pn("apns.dev", "TEAM123456.org.example.app", "DDDD");
    struct push_event hidden = call;
    hidden.from_uri = NULL;
    push_content_apns(&remote_only, &hidden, 1000, &n, &payload, topic, sizeof topic, err,
                      sizeof err);
    ok(n.type == APNS_ALERT && !strcmp(n.device_token, "DDDD") && strstr(payload, "IC_MSG"),
       "a call for an app with only a remote token: an IC_MSG alert");
    ok(!strstr(payload, "from-uri") && !strstr(payload, "loc-args") && !strstr(payload, "Alice"),
       "a hidden caller is not named");
    free(payload);
    pn_free(&both);
    pn_free(&voip_only);
    pn_free(&remote_only);

    struct pn_info f = pn("fcm", "123456789", "fcm-token:APA91b");
    struct fcm_message m;
    char *data;
    is_int(push_content_fcm(&f, &call, &m, &data, err, sizeof err), 0, "FCM call");
    ok(!strcmp(m.token, "fcm-token:APA91b") && m.high && m.ttl == 30,
       "to the registration token, high priority, the call's TTL");
    is_str(data,
           "{\"type\":\"call\",\"call-id\":\"c1@h\",\"from-uri\":\"sip:alice@example.com\","
           "\"display-name\":\"Alice \\\"A\\\"\"}",
           "data: type, call-id, caller");
    free(data);
    push_content_fcm(&f, &refresh, &m, &data, err, sizeof err);
    ok(m.high && !strcmp(data, "{\"type\":\"refresh\"}"),
       "a refresh: high priority (normal waits for Doze), no caller");
    free(data);
    struct push_event fwake = {.kind = PUSH_WAKE, .method = "OPTIONS"};
    push_content_fcm(&f, &fwake, &m, &data, err, sizeof err);
    ok(!m.high && strstr(data, "\"type\":\"wake\""), "a wake: type wake, normal priority");
    free(data);
    pn_free(&f);

    struct pn_info w = pn("webpush", NULL, "https://push.example/sub/1");
    ok(!push_content_refreshable(&w),
       "Web Push gets no refresh push (a browser shows every push): +sip.pnsreg instead");
    const char *url;
    long ttl;
    enum webpush_urgency u;
    is_int(push_content_webpush(&w, &call, &url, &ttl, &u, err, sizeof err), 0, "Web Push call");
    ok(!strcmp(url, "https://push.example/sub/1") && ttl == 30 && u == WEBPUSH_HIGH,
       "to the subscription URL, Urgency high");
    push_content_webpush(&w, &refresh, &url, &ttl, &u, err, sizeof err);
    is_int(u, WEBPUSH_NORMAL, "a refresh: Urgency normal (low waits for power or Wi-Fi)");
    struct push_event again = refresh;
    again.attempt = 2;
    push_content_webpush(&w, &again, &url, &ttl, &u, err, sizeof err);
    is_int(u, WEBPUSH_HIGH, "the refresh pushes after the first: Urgency high");
    struct push_event wwake = {.kind = PUSH_WAKE, .method = "SUBSCRIBE"};
    ok(push_content_webpush(&w, &wwake, &url, &ttl, &u, err, sizeof err) < 0 &&
           strstr(err, "no silent wake"),
       "a wake is not sent to a browser, which shows every push (%s)", err);
    pn_free(&w);
    return done_testing();
}
