#!/usr/bin/python3
"""apns.py: an APNs provider API emulator for tests (never point sipwake at Apple in tests).

HTTP/2 over TLS (ALPN h2) as Apple serves it, checking requests in the order Apple's own
mock servers do and answering with Apple's status codes and reasons
(../shared/research/push-protocols.md §2):

  1. apns-id, when present, a canonical UUID (BadMessageId); method POST (MethodNotAllowed)
  2. apns-topic present (MissingTopic); apns-collapse-id at most 64 bytes (BadCollapseId);
     apns-priority 1, 5 or 10 (BadPriority); apns-push-type known (InvalidPushType);
     background at priority 10 refused with --strict (BadPriority)
  3. path /3/device/<hex token>: none (MissingDeviceToken), not hex (BadDeviceToken),
     another path (BadPath)
  4. token auth: "bearer" JWT (MissingProviderToken), ES256 over a known kid
     (InvalidProviderToken), iat not older than --token-lifetime s (ExpiredProviderToken),
     one team per connection, the topic's team; a connection changing its token more often
     than --token-update-window s gets 429 TooManyProviderTokenUpdates.
     Certificate auth (--client-ca): the client certificate must be signed by that CA.
  5. body not empty (PayloadEmpty), at most 4096 bytes, 5120 for voip (PayloadTooLarge)
  6. per-token script (--script FILE, JSON, re-read per request):
     {"<token>": {"status": 410, "reason": "Unregistered"} | {"delay_ms": N} | {"hang": true}
                 | {"goaway": "Shutdown"}}
     with "times": N, only the first N pushes to that token get it.
     a 410 carries "timestamp" (ms): now, or the script's "timestamp_ms".
A connection allows one stream until its first push with a valid token, then --max-streams
(1000).
Every request is logged as a JSON line (--log) with the verdict and the kid of its token.

  apns.py --port 0 --cert C --key K --auth-key KID:TEAM:PUBLIC.pem [...] [--log F]
prints "listening <port>".
"""
import argparse
import base64
import json
import os
import re
import sys
import threading
import time
import uuid

import h2.settings
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import h2server  # noqa: E402

PUSH_TYPES = {'alert', 'background', 'voip', 'location', 'complication', 'fileprovider', 'mdm',
              'liveactivity', 'pushtotalk', 'controls', 'widgets'}
UUID_RE = re.compile(r'^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + '=' * (-len(s) % 4))


class Apns:
    def __init__(self, args):
        self.args = args
        self.keys = {}  # kid -> (team, public key)
        self.seen = {}  # token -> scripted pushes so far
        self.lock = threading.Lock()
        for spec in args.auth_key or []:
            kid, team, path = spec.split(':', 2)
            with open(path, 'rb') as f:
                self.keys[kid] = (team, serialization.load_pem_public_key(f.read()))

    def script(self, token):
        if not self.args.script or not os.path.exists(self.args.script):
            return {}
        with open(self.args.script) as f:
            sc = json.load(f).get(token, {})
        if 'times' in sc:  # only the first N pushes to this token
            with self.lock:
                self.seen[token] = self.seen.get(token, 0) + 1
                if self.seen[token] > sc['times']:
                    return {}
        return sc

    def error(self, status, reason, extra=None):
        body = {'reason': reason}
        body.update(extra or {})
        return status, [('content-type', 'application/json')], json.dumps(body)

    def check_jwt(self, conn, auth, topic):
        if not auth or not auth.startswith('bearer '):
            return 'MissingProviderToken'
        token = auth[7:]
        parts = token.split('.')
        if len(parts) != 3:
            return 'InvalidProviderToken'
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            sig = b64url_decode(parts[2])
        except Exception:
            return 'InvalidProviderToken'
        if header.get('alg') != 'ES256' or header.get('kid') not in self.keys or len(sig) != 64:
            return 'InvalidProviderToken'
        team, pub = self.keys[header['kid']]
        try:
            der = encode_dss_signature(int.from_bytes(sig[:32], 'big'),
                                       int.from_bytes(sig[32:], 'big'))
            pub.verify(der, (parts[0] + '.' + parts[1]).encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return 'InvalidProviderToken'
        if claims.get('iss') != team or not isinstance(claims.get('iat'), int):
            return 'InvalidProviderToken'
        now = time.time()
        if claims['iat'] < now - self.args.token_lifetime:
            return 'ExpiredProviderToken'
        if not hasattr(conn, 'apns_state'):  # per connection (an id() could be reused)
            conn.apns_state = {}
        st = conn.apns_state
        if st.get('team') and st['team'] != team:
            return 'InvalidProviderToken'  # one team per connection
        if st.get('token') and st['token'] != token and \
                now - st['token_at'] < self.args.token_update_window:
            return 'TooManyProviderTokenUpdates'
        if st.get('token') != token:
            st['token'] = token
            st['token_at'] = now
        st['team'] = team
        return None

    def handle(self, conn, sid, headers, body):
        verdict = self.verdict(conn, sid, headers, body)
        if verdict is not None:
            status = verdict[0]
            reason = json.loads(verdict[2]).get('reason') if verdict[2] else None
        else:
            status, reason = None, None
        kid = None
        auth = headers.get('authorization') or ''
        if auth.startswith('bearer '):
            try:
                kid = json.loads(b64url_decode(auth[7:].split('.')[0])).get('kid')
            except Exception:
                pass
        conn.server.record({'event': 'push', 'path': headers.get(':path'), 'kid': kid,
                            'topic': headers.get('apns-topic'),
                            'push_type': headers.get('apns-push-type'),
                            'priority': headers.get('apns-priority'),
                            'expiration': headers.get('apns-expiration'),
                            'collapse_id': headers.get('apns-collapse-id'),
                            'body': body, 'status': status, 'reason': reason})
        return verdict

    def verdict(self, conn, sid, headers, body):
        apns_id = headers.get('apns-id')
        reply_id = apns_id or str(uuid.uuid4())
        if apns_id is not None and not UUID_RE.match(apns_id):
            return self.error(400, 'BadMessageId')
        if headers.get(':method') != 'POST':
            return self.error(405, 'MethodNotAllowed')
        topic = headers.get('apns-topic')
        if not topic:
            return self.error(400, 'MissingTopic')
        if len(headers.get('apns-collapse-id', '').encode()) > 64:
            return self.error(400, 'BadCollapseId')
        prio = headers.get('apns-priority')
        if prio is not None and prio not in ('1', '5', '10'):
            return self.error(400, 'BadPriority')
        ptype = headers.get('apns-push-type')
        if ptype is not None and ptype not in PUSH_TYPES:
            return self.error(400, 'InvalidPushType')
        if self.args.strict and ptype == 'background' and prio in (None, '10'):
            return self.error(400, 'BadPriority')
        path = headers.get(':path', '')
        if not path.startswith('/3/device/'):
            return self.error(404, 'BadPath')
        token = path[len('/3/device/'):]
        if not token:
            return self.error(400, 'MissingDeviceToken')
        if not re.fullmatch(r'[0-9a-fA-F]+', token):
            return self.error(400, 'BadDeviceToken')
        if not self.args.client_ca:
            why = self.check_jwt(conn, headers.get('authorization'), topic)
            if why:
                return self.error(429 if why == 'TooManyProviderTokenUpdates' else 403, why)
        elif not conn.peer_cert:
            return self.error(403, 'BadCertificate')
        if not getattr(conn, 'opened', False):  # a valid push opens the connection up
            conn.opened = True
            conn.h2.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.args.max_streams})
        if not body:
            return self.error(400, 'PayloadEmpty')
        limit = 5120 if ptype == 'voip' else 4096
        if len(body.encode()) > limit:
            return self.error(413, 'PayloadTooLarge')
        sc = self.script(token)
        if sc.get('hang'):
            return None
        if sc.get('goaway'):
            conn.h2.close_connection(last_stream_id=sid - 2 if sid > 2 else 0,
                                     additional_data=json.dumps({'reason': sc['goaway']}).encode())
            conn.closed = True
            return None
        if 'status' in sc:
            extra = {'timestamp': sc.get('timestamp_ms', int(time.time() * 1000))} \
                if sc['status'] == 410 else None
            st, hs, b = self.error(sc['status'], sc.get('reason', 'InternalServerError'), extra)
            if 'retry_after' in sc:
                hs = hs + [('retry-after', str(sc['retry_after']))]
            return st, hs + [('apns-id', reply_id)], b
        if 'delay_ms' in sc:
            conn.respond_later(sid, sc['delay_ms'] / 1000.0, 200, [('apns-id', reply_id)], b'')
            return None
        return 200, [('apns-id', reply_id)], b''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, default=0)
    ap.add_argument('--cert', required=True)
    ap.add_argument('--key', required=True)
    ap.add_argument('--auth-key', action='append', help='KID:TEAM:public-key.pem')
    ap.add_argument('--client-ca', help='certificate auth: CA of the provider certificates')
    ap.add_argument('--script')
    ap.add_argument('--log')
    ap.add_argument('--strict', action='store_true')
    ap.add_argument('--token-lifetime', type=float, default=3600)
    ap.add_argument('--token-update-window', type=float, default=1200)
    ap.add_argument('--lifetime', type=float, default=300)
    ap.add_argument('--max-streams', type=int, default=1000,
                    help='concurrent streams a connection allows once its first push was valid')
    ap.add_argument('--goaway-after', type=int, default=0,
                    help='GOAWAY after N requests on a connection; later streams are refused')
    a = ap.parse_args()
    threading.Timer(a.lifetime, lambda: os._exit(0)).start()
    apns = Apns(a)
    srv = h2server.Server(a.host, a.port, a.cert, a.key, apns.handle, max_streams=1,
                          goaway_after=a.goaway_after, log_path=a.log, ca=a.client_ca)
    print('listening %d' % srv.port, flush=True)
    srv.serve_forever()


if __name__ == '__main__':
    sys.exit(main())
