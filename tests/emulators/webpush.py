#!/usr/bin/python3
"""webpush.py: a Web Push service emulator (RFC 8030 with RFC 8292 VAPID) for tests.

POST /push/<id> is a push to subscription <id>, checked as push services do
(../shared/research/push-protocols.md §4): TTL present, a whole number (400); Urgency one of
very-low, low, normal, high (400); Topic at most 32 base64url characters (400); a body of at
most 4096 bytes (413). Subscriptions come from --subscriptions FILE (JSON, re-read per
request): {"<id>": {"key": "<base64url public key>"} (restricted to that VAPID key),
{} (unrestricted), {"gone": true} (410), {"status": 429, "retry_after": N}}; an id not in
the file is 404. For a restricted subscription, "Authorization: vapid t=<JWT>, k=<key>" is
required (401 without), with k the subscription's key and t an ES256 JWT by that key whose
aud is this origin and whose exp lies within the next 24 h (403 otherwise).
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
        ttl = headers.get('ttl')
        if ttl is None or not re.fullmatch(r'\d+', ttl):
            return 400, plain, 'TTL required'
        urgency = headers.get('urgency')
        if urgency is not None and urgency not in ('very-low', 'low', 'normal', 'high'):
            return 400, plain, 'bad Urgency'
        topic = headers.get('topic')
        if topic is not None and not re.fullmatch(r'[A-Za-z0-9_\-]{1,32}', topic):
            return 400, plain, 'bad Topic'
        if len(body.encode()) > 4096:
            return 413, plain, 'too big'
        if sub.get('key'):
            why = self.check_vapid(headers, sub['key'])
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

    def check_vapid(self, headers, key):
        auth = headers.get('authorization', '')
        m = re.fullmatch(r'vapid t=([^,\s]+),\s*k=([A-Za-z0-9_\-]+)', auth)
        if not m:
            return 401, [('content-type', 'text/plain')], 'VAPID required'
        t, k = m.groups()
        if k != key:
            return 403, [('content-type', 'text/plain')], 'VAPID key mismatch'
        try:
            pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(k))
            h, c, s = t.split('.')
            sig = b64url_decode(s)
            der = encode_dss_signature(int.from_bytes(sig[:32], 'big'),
                                       int.from_bytes(sig[32:], 'big'))
            pub.verify(der, (h + '.' + c).encode(), ec.ECDSA(hashes.SHA256()))
            header, claims = json.loads(b64url_decode(h)), json.loads(b64url_decode(c))
        except (ValueError, InvalidSignature):
            return 403, [('content-type', 'text/plain')], 'VAPID signature'
        now = time.time()
        if header.get('alg') != 'ES256' or claims.get('aud') != 'https://' + headers.get(':authority', '') \
                or not (now < claims.get('exp', 0) <= now + 86400):
            return 403, [('content-type', 'text/plain')], 'VAPID claims'
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, default=0)
    ap.add_argument('--cert', required=True)
    ap.add_argument('--key', required=True)
    ap.add_argument('--subscriptions', required=True)
    ap.add_argument('--log')
    ap.add_argument('--lifetime', type=float, default=300)
    a = ap.parse_args()
    threading.Timer(a.lifetime, lambda: os._exit(0)).start()
    wp = WebPush(a)
    srv = h2server.Server(a.host, a.port, a.cert, a.key, wp.handle, max_streams=100,
                          log_path=a.log)
    print('listening %d' % srv.port, flush=True)
    srv.serve_forever()


if __name__ == '__main__':
    sys.exit(main())
