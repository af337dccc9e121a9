#!/usr/bin/python3
"""webpush.py: a Web Push service emulator (RFC 8030 with RFC 8292 VAPID) for tests.

POST /push/<id> is a push to subscription <id>, checked as push services do
(../shared/research/push-protocols.md §4), each rule with its source where it is enforced
(verdict, check_vapid): TTL present, a whole number (400); Urgency one of very-low, low,
normal, high (400); Topic at most 32 base64url characters (400); a body of at most 4096
bytes (413), and a body only with Content-Encoding: aes128gcm (400). Subscriptions come from
--subscriptions FILE (JSON, re-read per request): {"<id>": {"key": "<base64url public key>"}
(restricted to that VAPID key), {} (unrestricted), {"gone": true} (410), {"status": 429,
"retry_after": N}, {"refuse_jwt": true} (the service's answer to a JWT it will not take)};
an id not in the file is 404. For a restricted subscription,
"Authorization: vapid t=<JWT>, k=<key>" is required (401 without); whenever one is sent it
is checked as Apple's web.push.apple.com does, answering 403 {"reason": "BadJwtToken"}: k the
subscription's key, t an ES256 JWT by that key, aud the origin of this push resource
(https://host, with :port only when not 443), exp within the next 24 h, sub a mailto: or
https: contact at a real domain (not localhost, .local, .invalid, or a bare host name).
A subscription's "service" (else --service) picks whose answers these are (ANSWERS):
"apple" (the above), "fcm" (fcm.googleapis.com: 403 text/plain, a key other than the
subscription's told apart from a bad JWT) or "autopush" (Mozilla: 401 JSON, errno 109).
Success: 201 with Location and TTL. Requests are logged as JSON lines (--log).
"""
import argparse
import base64
import json
import os
import re
import sys
import threading
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import h2server  # noqa: E402


# What each service answers (status, content type, body) to a VAPID key other than the one
# the subscription was made with ('mismatch') and to a JWT it does not accept ('jwt'):
# - apple: developer.apple.com, "Sending web push notifications in web apps and browsers":
#   403 BadJwtToken for a JWT "signed with the wrong private key" as for a bad sub, aud or
#   exp; it tells a key mismatch from nothing else (web-push issue 947, web-push-php 406)
# - fcm: 403 text/plain "the VAPID credentials in the authorization header do not correspond
#   to the credentials used to create the subscriptions." (webpush-java issues 206 and 212,
#   web-push issue 941, with its headers); a JWT it cannot verify: 403 "invalid JWT provided"
#   (web-push issue 679)
# - autopush: 401 {"code": 401, "errno": 109, "error": "Unauthorized", "message": "VAPID
#   public key mismatch", "more_info": ...} (web-push-php issue 429, web-push-php-example issue
#   38); a JWT it cannot verify: the same errno 109 with "Request did not validate Invalid
#   Authorization Header" (web-push-libs/vapid issue 66); autopush-rs "Error Codes" page
AUTOPUSH_MORE = 'http://autopush.readthedocs.io/en/latest/http.html#error-codes'
FCM_TEXT = [('content-type', 'text/plain; charset=utf-8')]
ANSWERS = {
    'apple': {'mismatch': (403, [('content-type', 'application/json')],
                           json.dumps({'reason': 'BadJwtToken'})),
              'jwt': (403, [('content-type', 'application/json')],
                      json.dumps({'reason': 'BadJwtToken'}))},
    'fcm': {'mismatch': (403, FCM_TEXT, 'the VAPID credentials in the authorization header do '
                         'not correspond to the credentials used to create the subscriptions.\n'),
            'jwt': (403, FCM_TEXT, 'invalid JWT provided\n')},
    'autopush': {'mismatch': (401, [('content-type', 'application/json')],
                              json.dumps({'code': 401, 'errno': 109, 'error': 'Unauthorized',
                                          'message': 'VAPID public key mismatch',
                                          'more_info': AUTOPUSH_MORE})),
                 'jwt': (401, [('content-type', 'application/json')],
                         json.dumps({'code': 401, 'errno': 109, 'error': 'Unauthorized',
                                     'message': 'Request did not validate Invalid Authorization '
                                                'Header', 'more_info': AUTOPUSH_MORE}))},
}


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + '=' * (-len(s) % 4))


class WebPush:
    def __init__(self, args):
        self.args = args
        self.n = 0
        self.lock = threading.Lock()

    def handle(self, conn, sid, headers, body):
        answer = self.verdict(headers, body)
        conn.server.record({'event': 'webpush', 'path': headers.get(':path'),
                            'ttl': headers.get('ttl'), 'urgency': headers.get('urgency'),
                            'topic': headers.get('topic'),
                            'authorization': headers.get('authorization'),
                            'status': answer[0], 'body_len': len(body)})
        return answer

    def verdict(self, headers, body):
        plain = [('content-type', 'text/plain')]
        path = headers.get(':path', '')
        m = re.fullmatch(r'/push/([A-Za-z0-9_\-]+)', path)
        if headers.get(':method') != 'POST' or not m:
            return 404, plain, 'not a push resource'
        subs = {}
        if os.path.exists(self.args.subscriptions):
            with open(self.args.subscriptions) as f:
                subs = json.load(f)
        sub = subs.get(m.group(1))
        if sub is None:
            return 404, plain, 'no such subscription'
        # RFC 8030 §5.2: "A push service MUST return a 400 (Bad Request) status code in
        # response to requests that omit the TTL header field"; delta-seconds is 1*DIGIT
        ttl = headers.get('ttl')
        if ttl is None or not re.fullmatch(r'\d+', ttl):
            return 400, plain, 'TTL required'
        # RFC 8030 §5.3: Urgency is one of very-low, low, normal, high
        urgency = headers.get('urgency')
        if urgency is not None and urgency not in ('very-low', 'low', 'normal', 'high'):
            return 400, plain, 'bad Urgency'
        # RFC 8030 §5.4: a Topic is at most 32 characters of the base64url alphabet
        topic = headers.get('topic')
        if topic is not None and not re.fullmatch(r'[A-Za-z0-9_\-]{1,32}', topic):
            return 400, plain, 'bad Topic'
        # RFC 8030 §7.2: a service must take 4096 bytes of payload and may refuse more (413)
        raw = body.encode() if isinstance(body, str) else body
        if len(raw) > 4096:
            return 413, plain, 'too big'
        # RFC 8291 §4: a payload is encrypted with the aes128gcm content coding (RFC 8188),
        # announced by Content-Encoding; services refuse a body without it (autopush: 400)
        if raw and headers.get('content-encoding') != 'aes128gcm':
            return 400, plain, 'a payload needs Content-Encoding: aes128gcm'
        answers = ANSWERS[sub.get('service', self.args.service)]
        if sub.get('refuse_jwt'):
            return answers['jwt']  # scripted: the service's answer to a JWT it will not take
        if sub.get('key') or headers.get('authorization'):
            why = self.check_vapid(headers, sub.get('key'), answers)
            if why:
                return why
        if sub.get('gone'):
            return 410, plain, 'subscription expired'
        if 'status' in sub:
            extra = [('retry-after', str(sub['retry_after']))] if 'retry_after' in sub else []
            return sub['status'], plain + extra, 'scripted'
        with self.lock:
            self.n += 1
            n = self.n
        return 201, [('location', '/msg/%d' % n), ('ttl', ttl)], ''

    def check_vapid(self, headers, key, answers):
        auth = headers.get('authorization', '')
        m = re.fullmatch(r'vapid t=([^,\s]+),\s*k=([A-Za-z0-9_\-]+)', auth)
        if not m:
            # RFC 8292 §4.2: a restricted subscription refuses a push without vapid auth
            return 401, [('content-type', 'text/plain')], 'VAPID required'
        # the service's answer to every fault below (ANSWERS; Apple's doc lists them all for
        # BadJwtToken: the JWT is missing, signed with the wrong key, its sub is not a URL or
        # mailto:, its aud not the push service's origin, its exp more than a day ahead;
        # web-push-libs/web-push issue 947 for localhost)
        bad = answers['jwt']
        t, k = m.groups()
        if key is not None and k != key:
            # RFC 8292 §4.2: k must be the key the subscription is restricted to
            return answers['mismatch']
        try:
            pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(k))
            h, c, s = t.split('.')
            sig = b64url_decode(s)
            if len(sig) != 64:
                return bad
            der = encode_dss_signature(int.from_bytes(sig[:32], 'big'),
                                       int.from_bytes(sig[32:], 'big'))
            pub.verify(der, (h + '.' + c).encode(), ec.ECDSA(hashes.SHA256()))
            header, claims = json.loads(b64url_decode(h)), json.loads(b64url_decode(c))
        except (ValueError, InvalidSignature):
            return bad
        if not isinstance(header, dict) or not isinstance(claims, dict):
            return bad
        now = time.time()
        exp = claims.get('exp')
        # RFC 8292 §2: ES256; aud the origin of the push resource; exp no more than 24 h ahead
        if header.get('alg') != 'ES256' or claims.get('aud') != origin_of(headers.get(':authority', '')) \
                or not isinstance(exp, (int, float)) or not (now < exp <= now + 86400):
            return bad
        # RFC 8292 §2.1: sub a mailto: or https: contact (Apple requires one, at a real domain)
        if not subject_ok(claims.get('sub')):
            return bad
        return None


def origin_of(authority):
    """RFC 8292 §2 with RFC 6454 §6.2: https://host, the port only when it is not 443."""
    host = authority.lower()
    if host.endswith(':443'):
        host = host[:-4]
    return 'https://' + host


def subject_ok(sub):
    """A mailto: or https: contact at a domain that exists on the internet: Apple refuses
    localhost (web-push-libs/web-push issue 947 and PR 988), .local and .invalid (the same
    403 BadJwtToken in reports quoted there), and bare host names."""
    if not isinstance(sub, str):
        return False
    if sub.startswith('mailto:'):
        host = sub[7:].rpartition('@')[2] if '@' in sub[7:] else ''
    elif sub.startswith('https://'):
        host = re.split(r'[:/?#]', sub[8:].rpartition('@')[2])[0]
    else:
        return False
    host = host.lower().rstrip('.')
    if not host or '.' not in host or host == 'localhost':
        return False
    return not any(host.endswith(t) for t in ('.localhost', '.local', '.invalid'))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, default=0)
    ap.add_argument('--cert', required=True)
    ap.add_argument('--key', required=True)
    ap.add_argument('--subscriptions', required=True)
    ap.add_argument('--service', choices=sorted(ANSWERS), default='apple',
                    help="whose answers a subscription without its own \"service\" gets")
    ap.add_argument('--log')
    ap.add_argument('--lifetime', type=float, default=300)
    a = ap.parse_args()
    threading.Timer(a.lifetime, lambda: os._exit(0)).start()
    wp = WebPush(a)
    srv = h2server.Server(a.host, a.port, a.cert, a.key, wp.handle, max_streams=100,
                          log_path=a.log)
    print(srv.banner(), flush=True)
    srv.serve_forever()


if __name__ == '__main__':
    sys.exit(main())
