/* RFC 8599 push parameters in every form real clients send, and device matching. */
#include <stdlib.h>

#include <osipparser2/osip_parser.h>

#include "sip_msg.h"

#include "pn.c"
#include "tap.h"

static enum pn_kind parse(const char *s, struct pn_info *out)
{
    return pn_parse(s, out);
}

/* pn_redacted of s, in a static buffer. */
static const char *redacted(const char *s)
{
    static char out[512];
    char *r = pn_redacted(s);
    snprintf(out, sizeof out, "%s", r);
    free(r);
    return out;
}

static const char *stripped(const char *s, int ruri)
{
    static char out[512];
    char *r = ruri ? sip_msg_ruri_of_contact(s) : sip_msg_uri_without_pn(s);
    snprintf(out, sizeof out, "%s", r);
    free(r);
    return out;
}

static int same(const char *a, const char *b)
{
    struct pn_info x, y;
    parse(a, &x);
    parse(b, &y);
    int r = pn_same_device(&x, &y);
    pn_free(&x);
    pn_free(&y);
    return r;
}

int main(void)
{
    parser_init();
    struct pn_info p;

    is_int(parse("sip:a@h", &p), PN_NONE, "no pn params: ordinary binding");
    pn_free(&p);

    is_int(parse("sip:a@h;pn-provider=fcm;pn-param=proj-1;pn-prid=cAbC:APA91b", &p), PN_PUSH,
           "fcm with prid is a push binding");
    is_str(p.provider, "fcm", "provider");
    is_str(p.param, "proj-1", "param");
    is_str(p.prid, "cAbC:APA91b", "FCM token keeps its colon and case");
    pn_free(&p);

    is_int(parse("sip:a@h;pn-provider", &p), PN_QUERY, "bare pn-provider is a query for all");
    is_str(p.provider, "", "empty provider means every supported one");
    pn_free(&p);

    is_int(parse("sip:a@h;pn-provider=apns", &p), PN_QUERY, "provider without prid is a query");
    is_str(p.provider, "apns", "query names apns");
    pn_free(&p);

    is_int(parse("sip:a@h;pn-provider=APNS;pn-param=TEAM1.com.ex.app.voip;pn-prid=00fF", &p),
           PN_PUSH, "RFC 8599 apns form");
    is_str(p.provider, "apns", "provider lower-cased");
    is_str(p.team, "TEAM1", "team id before the first dot");
    is_str(p.bundle, "com.ex.app", "bundle id without the service");
    is_int(p.n_tokens, 1, "one token");
    is_str(p.tokens[0].service, "voip", "service from the pn-param suffix");
    pn_free(&p);

    is_int(parse("sip:a@h;pn-provider=apns.dev;pn-param=ABCD1234.org.linphone.phone.voip%26remote;"
                 "pn-prid=AAAA:voip%26BBBB:remote",
                 &p),
           PN_PUSH, "Linphone dual token (escaped &)");
    is_str(p.provider, "apns.dev", "sandbox provider kept");
    is_str(p.bundle, "org.linphone.phone", "bundle of dual form");
    is_int(p.n_tokens, 2, "two tokens");
    is_str(p.tokens[0].token, "AAAA", "voip token");
    is_str(p.tokens[1].service, "remote", "remote service");
    pn_free(&p);

    is_int(parse("sip:a@h;pn-provider=apns;pn-param=T.org.app.remote&voip;"
                 "pn-prid=BBBB:remote&AAAA:voip",
                 &p),
           PN_PUSH, "Linphone dual token, reversed order, raw &");
    pn_free(&p);

    is_int(parse("sip:a@h;pn-provider=apns;pn-param=T.org.app;pn-prid=CCCC", &p), PN_PUSH,
           "no service suffix: implied remote");
    is_str(p.bundle, "org.app", "whole rest is the bundle");
    is_str(p.tokens[0].service, "remote", "implied remote");
    pn_free(&p);

    is_int(parse("sip:a@h;pn-provider=apns;pn-param=T.org.app.voip&remote;pn-prid=AAAA:voip", &p),
           PN_INVALID, "token count must match services");
    pn_free(&p);
    is_int(parse("sip:a@h;pn-provider=apns;pn-prid=AAAA", &p), PN_INVALID,
           "apns without pn-param is unusable");
    pn_free(&p);
    is_int(parse("sip:a@h;pn-provider=apns;pn-param=T.org.app.voip&remote;"
                 "pn-prid=AAAA:voip&BBBB:video",
                 &p),
           PN_INVALID, "unknown token suffix");
    pn_free(&p);

    is_int(parse("sip:a@h;pn-provider=webpush;pn-prid=https%3A//push.example.net/sub/1", &p),
           PN_PUSH, "webpush subscription URL, escaped");
    is_str(p.prid, "https://push.example.net/sub/1", "prid unescaped");
    pn_free(&p);
    is_int(parse("sip:a@h;pn-provider=webpush;pn-prid=nope", &p), PN_INVALID,
           "webpush prid must be a URL");
    pn_free(&p);

    /* legacy pn-type / pn-tok / app-id */
    is_int(parse("sip:a@h;pn-type=firebase;pn-tok=tok123;app-id=9876", &p), PN_PUSH,
           "legacy firebase");
    ok(p.legacy, "marked legacy");
    is_str(p.provider, "fcm", "firebase -> fcm");
    is_str(p.prid, "tok123", "pn-tok -> prid");
    is_str(p.param, "9876", "app-id -> param");
    pn_free(&p);
    is_int(parse("sip:a@h;pn-type=google;pn-tok=t", &p), PN_PUSH, "legacy google -> fcm");
    is_str(p.provider, "fcm", "google -> fcm");
    pn_free(&p);
    is_int(parse("sip:a@h;pn-type=apple;pn-tok=ABCD;app-id=org.linphone.phone.dev", &p), PN_PUSH,
           "legacy apple with .dev app-id");
    is_str(p.provider, "apns.dev", ".dev suffix -> sandbox");
    is_str(p.bundle, "org.linphone.phone", "bundle from app-id");
    pn_free(&p);
    is_int(parse("sip:a@h;pn-type=apple;pn-tok=ABCD;app-id=org.linphone.phone.voip.prod", &p),
           PN_PUSH, "legacy apple voip prod");
    is_str(p.provider, "apns", ".prod -> production");
    is_str(p.tokens[0].service, "voip", "voip service");
    pn_free(&p);
    is_int(parse("sip:a@h;pn-type=blackberry;pn-tok=x", &p), PN_INVALID, "unknown legacy type");
    pn_free(&p);

    /* device identity */
    ok(same("sip:a@1.2.3.4:5;pn-provider=fcm;pn-param=p;pn-prid=T1",
            "sip:a@5.6.7.8:9;pn-provider=fcm;pn-param=p;pn-prid=T1"),
       "same push params from another address: same device");
    ok(!same("sip:a@h;pn-provider=fcm;pn-param=p;pn-prid=T1",
             "sip:a@h;pn-provider=fcm;pn-param=p;pn-prid=t1"),
       "FCM tokens are case-sensitive");
    ok(!same("sip:a@h;pn-provider=fcm;pn-param=p;pn-prid=T1",
             "sip:a@h;pn-provider=fcm;pn-param=q;pn-prid=T1"),
       "different pn-param: different device");
    ok(same("sip:a@h;pn-provider=apns;pn-param=T.org.app.voip&remote;pn-prid=AA:voip&BB:remote",
            "sip:a@h;pn-provider=apns;pn-param=T.org.app.remote&voip;pn-prid=bb:remote&CC:voip"),
       "dual token: one equal token (rotated the other) and either order");
    ok(!same("sip:a@h;pn-provider=apns;pn-param=T.org.app.voip&remote;pn-prid=AA:voip&BB:remote",
             "sip:a@h;pn-provider=apns;pn-param=T.org.app.voip&remote;pn-prid=BB:voip&AA:remote"),
       "a token equal for another service does not count");
    ok(!same("sip:a@h;pn-provider=apns;pn-param=T.org.app.voip;pn-prid=AA",
             "sip:a@h;pn-provider=apns.dev;pn-param=T.org.app.voip;pn-prid=AA"),
       "production and sandbox are different services");
    ok(!same("sip:a@h;pn-provider=apns;pn-param=T.org.app.voip&remote;pn-prid=AA:voip",
             "sip:a@h;pn-provider=apns;pn-param=T.org.app.voip&remote;pn-prid=AA:voip"),
       "malformed params cannot be compared");

    /* one reading of the params everywhere (issue 12): classification, stripping from a
     * Request-URI, redaction for logs and the admin */
    char hash[17], want[256];
    pn_token_hash("TOKEN1", hash);
    is_int(parse("sip:a@h;pn-provider=fcm;pn-param=p;pn%2Dprid=TOKEN1", &p), PN_PUSH,
           "pn%%2Dprid is pn-prid (RFC 3261 §19.1.4: escaped and unescaped names are equal)");
    is_str(p.prid, "TOKEN1", "its token");
    pn_free(&p);
    is_int(parse("sip:a@h;PN-Provider=fcm;pn-param=p;Pn-Prid=TOKEN1", &p), PN_PUSH,
           "names without case");
    pn_free(&p);
    is_str(stripped("sip:a@h:5;pn-provider=fcm;pn-param=p;pn%2Dprid=TOKEN1;transport=tcp", 0),
           "sip:a@h:5;transport=tcp", "pn%%2Dprid is stripped like pn-prid");
    is_str(stripped("sip:a@h;%70n-provider=fcm;x=1", 0), "sip:a@h;x=1",
           "any escaped letter of a pn- name");
    snprintf(want, sizeof want, "sip:a@h;pn-provider=fcm;pn%%2Dprid=" PN_REDACTED "%s;x=1", hash);
    is_str(redacted("sip:a@h;pn-provider=fcm;pn%2Dprid=TOKEN1;x=1"), want,
           "pn%%2Dprid is redacted like pn-prid");
    snprintf(want, sizeof want, "sip:a@h;pn-prid=" PN_REDACTED "%s", hash);
    is_str(redacted("sip:a@h;pn-prid=TOK%45N1"), want, "the hash is of the unescaped token");

    is_int(parse("sip:a@h;pn-provider=fcm;pn-param=p;pn-prid=TOKEN1;pn-prid=TOKEN2", &p),
           PN_INVALID, "pn-prid twice: not a usable push binding");
    is_str(p.error, "pn-prid given more than once", "and why");
    pn_free(&p);
    is_int(parse("sip:a@h;pn-provider=fcm;pn-param=p;pn-prid=TOKEN1;PN%2dPRID=TOKEN2", &p),
           PN_INVALID, "also when the second is written another way");
    pn_free(&p);
    is_int(parse("sip:a@h;pn-provider=fcm;pn-provider=apns;pn-prid=T", &p), PN_INVALID,
           "pn-provider twice");
    pn_free(&p);
    /* fuzz_pn: app-id is a push param only in the legacy form, beside pn-type; in any other
     * Contact it is an ordinary URI param, which sip_msg_uri_without_pn leaves in place */
    is_int(parse("sip:a@h;app-id=x;app-id=y", &p), PN_NONE,
           "app-id twice without pn-type: an ordinary binding, not an invalid push one");
    pn_free(&p);
    is_int(parse("sip:a@h;pn-provider=fcm;pn-param=p;pn-prid=T;app-id=x;app-id=y", &p), PN_PUSH,
           "app-id twice beside RFC 8599 params: the push binding stands");
    pn_free(&p);
    is_int(parse("sip:a@h;pn-type=firebase;pn-tok=T;app-id=x;app-id=y", &p), PN_INVALID,
           "app-id twice in the legacy form: which project is meant is not guessed");
    is_str(p.error, "app-id given more than once", "and why");
    pn_free(&p);
    is_int(parse("sip:a@h;app-id=x;app-id=y;pn-provider=fcm;pn-prid=A;pn-prid=B", &p), PN_INVALID,
           "a push param twice after app-id twice is still found");
    is_str(p.error, "pn-prid given more than once", "and named");
    pn_free(&p);
    char h2[17];
    pn_token_hash("TOKEN2", h2);
    snprintf(want, sizeof want, "sip:a@h;pn-prid=" PN_REDACTED "%s;pn-prid=" PN_REDACTED "%s", hash,
             h2);
    is_str(redacted("sip:a@h;pn-prid=TOKEN1;pn-prid=TOKEN2"), want, "every copy is redacted");
    is_str(stripped("sip:a@h;pn-prid=TOKEN1;pn-prid=TOKEN2", 0), "sip:a@h",
           "every copy is stripped");

    is_int(parse("sip:bob;pn-prid=USERPART@h;pn-provider=fcm;pn-param=p", &p), PN_QUERY,
           ";pn-prid= in the user part is part of the user, not a param");
    pn_free(&p);
    is_str(stripped("sip:bob;pn-prid=USERPART@h;pn-provider=fcm", 0), "sip:bob;pn-prid=USERPART@h",
           "the user part is kept whole when stripping");
    is_str(redacted("sip:bob;pn-prid=USERPART@h;x=1"), "sip:bob;pn-prid=USERPART@h;x=1",
           "and shown as the user it is");
    is_int(parse("sip:[2001:db8::1;x]:5060;pn-provider=fcm;pn-param=p;pn-prid=T", &p), PN_PUSH,
           "an IPv6 host");
    pn_free(&p);
    is_str(redacted(NULL), "", "NULL redacts to \"\"");
    is_int(parse("sip:a@h;pn-provider=fcm;pn-param=p;pn-prid=%2525", &p), PN_PUSH,
           "escaped percent");
    is_str(p.prid, "%25", "unescaped once, not twice");
    pn_free(&p);

    /* a Request-URI made of a contact (RFC 3261 §19.1.1 table 1) */
    is_str(stripped("sip:user@example.com?Route=%3Csip:sip.example.com%3E", 1),
           "sip:user@example.com", "headers dropped from a Request-URI");
    is_str(stripped("sip:u@h:5;method=INVITE;transport=tcp;pn-prid=T?Subject=x", 1),
           "sip:u@h:5;transport=tcp", "method and pn-* dropped, other params kept");
    is_str(stripped("sip:u@h;pn-prid=T?Subject=x", 0), "sip:u@h?Subject=x",
           "a Contact for the upstream keeps its headers");
    is_str(stripped("sip:u?x@h", 1), "sip:u?x@h", "'?' in the user part is not headers");

    struct pn_info s;
    is_int(pn_parse("sip:a@h:5;transport=tcp;pn-provider=apns;pn-param=T.org.app.voip%26remote;"
                    "pn-prid=AA:voip&BB:remote;pn-silent=1",
                    &s),
           PN_PUSH, "scan of a stored contact finds the push params");
    is_str(s.prid, "AA:voip&BB:remote", "scanned prid");
    is_str(s.param, "T.org.app.voip&remote", "scanned param, unescaped");
    pn_free(&s);
    is_int(pn_parse("sip:a@h;pn-providerx=1;x=pn-provider", &s), PN_NONE,
           "scan matches whole param names only");
    pn_free(&s);
    is_int(pn_parse("sip:a@h;pn-provider=fcm;pn-param=p", &s), PN_QUERY, "scan of a query binding");
    pn_free(&s);
    is_int(pn_from_strings("apns", "T.org.app.voip", "AA", &s), PN_PUSH,
           "stored values classify again");
    pn_free(&s);
    return done_testing();
}
