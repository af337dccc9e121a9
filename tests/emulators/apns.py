#!/usr/bin/python3
"""apns.py: an APNs provider API emulator for tests (never point sipwake at Apple in tests).

HTTP/2 over TLS (ALPN h2) as Apple serves it, checking requests in the order Apple's own
mock servers do and answering with Apple's status codes and reasons
(../shared/research/push-protocols.md §2):

  1. apns-id, when present, a canonical UUID (BadMessageId); method POST (MethodNotAllowed)
  2. apns-topic present (MissingTopic), a bundle id (BadTopic), ending in .voip for a voip
     push (BadTopic); apns-collapse-id at most 64 bytes (BadCollapseId); apns-priority 1, 5
     or 10 (BadPriority); apns-push-type known (InvalidPushType); apns-expiration a UNIX
     time (BadExpirationDate); a background push (apns-push-type background, or an aps with
     content-available only) at priority 10 (BadPriority)
  3. path /3/device/<hex token>: none (MissingDeviceToken), not hex (BadDeviceToken),
     another path (BadPath)
  4. token auth: "bearer" JWT (MissingProviderToken), ES256 over a known kid
     (InvalidProviderToken), iat not in the future (InvalidProviderToken) nor older than
     --token-lifetime s (ExpiredProviderToken), a key restricted to the other environment
     (--key-environment KID=sandbox|production: BadEnvironmentKeyInToken), one team per
     connection, a topic of the key's team when --team-topics names them (TopicDisallowed);
     a connection changing its token more often than --token-update-window s gets 429
     TooManyProviderTokenUpdates.
     Certificate auth (--client-ca): the client certificate must be signed by that CA.
  5. device tokens the registry knows (--tokens FILE, JSON, re-read per request:
     {"<token>": {"topic": "org.example.app.voip", "environment": "sandbox"}}): a token of
     the other environment (BadDeviceToken), of another topic (DeviceTokenNotForTopic).
     This server is the --environment it is told (production, sandbox, or both: one port
     for both hosts, no environment checks). Tokens not in the registry pass.
  6. body not empty (PayloadEmpty), at most 4096 bytes, 5120 for voip (PayloadTooLarge);
     with --token-burst N, more than N pushes to one device token within
     --token-burst-window s (1) get 429 TooManyRequests
  7. per-token script (--script FILE, JSON, re-read per request):
     {"<token>": {"status": 410, "reason": "Unregistered"} | {"delay_ms": N} | {"hang": true}
                 | {"goaway": "Shutdown"} | {"status": 429, "reason": "TooManyRequests"}}
     with "times": N, only the first N pushes to that token get it.
     a 410 carries "timestamp" (ms): now, or the script's "timestamp_ms".
A connection allows one stream until its first push with a valid token, then --max-streams
(1000); a stream over the advertised limit is refused (RST_STREAM REFUSED_STREAM, h2server).
Every request is logged as a JSON line (--log) with the verdict and the kid of its token.

Control (h2server's control port, besides stats and freeze):
  expire-tokens [N]  every provider token seen so far is expired from now on (as if an hour
                     had passed); the first N ExpiredProviderToken answers are held until N
                     pushes wait for one, then all go out at once (N pushes in flight
                     together). stats adds "tokens": distinct valid provider tokens seen,
                     and "expired_answers".

  apns.py --port 0 --cert C --key K --auth-key KID:TEAM:PUBLIC.pem [...] [--log F]
prints "listening <port> control <cport>".
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

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import h2server  # noqa: E402

PUSH_TYPES = {'alert', 'background', 'voip', 'location', 'complication', 'fileprovider', 'mdm',
              'liveactivity', 'pushtotalk', 'controls', 'widgets'}
# A bundle id: reverse-DNS labels of letters, digits and hyphens (Apple's "App ID" rule)
TOPIC_RE = re.compile(r'^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$')
UUID_RE = re.compile(r'^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')


def bundle_of(topic):
    """The app's bundle id of a topic: without the suffix of a push type's topic."""
    for suffix in ('.voip-ptt', '.voip', '.complication', '.pushkit.fileprovider',
                   '.location-query'):
        if topic.endswith(suffix):
            return topic[:-len(suffix)]
    return topic


def background_only(body):
    """1 if the payload is a background notification: an aps with content-available and no
    alert, badge or sound (Apple, "Pushing background updates to your App")."""
    try:
        aps = json.loads(body).get('aps')
    except Exception:
        return False
    return isinstance(aps, dict) and aps.get('content-available') == 1 and \
        not any(k in aps for k in ('alert', 'badge', 'sound'))


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + '=' * (-len(s) % 4))


class Apns:
    def __init__(self, args):
        self.args = args
        self.keys = {}  # kid -> (team, public key)
        self.key_env = dict(s.split('=', 1) for s in args.key_environment or [])
        # team -> the bundle ids its keys may push to (only for the teams named)
        self.team_topics = {}
        for spec in args.team_topics or []:
            team, topics = spec.split('=', 1)
            self.team_topics[team] = set(t for t in topics.split(',') if t)
        self.seen = {}  # token -> scripted pushes so far
        self.recent = {}  # token -> times of its pushes in the --token-burst-window
        self.tokens = set()  # provider tokens with a valid signature
        self.expired = set()  # provider tokens expired by the control command
        self.hold, self.held, self.expired_answers = 0, [], 0
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

    def registry(self, token):
        if not self.args.tokens or not os.path.exists(self.args.tokens):
            return None
        with open(self.args.tokens) as f:
            return json.load(f).get(token)

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
        # Apple, "Establishing a token-based connection to APNs": iat is the time the token
        # was issued; a token from the future is not one APNs accepts (InvalidProviderToken)
        if claims['iat'] > now + self.args.clock_skew:
            return 'InvalidProviderToken'
        with self.lock:
            self.tokens.add(token)
            expired = token in self.expired
        # Apple, "Establishing a token-based connection to APNs": a token older than one hour
        # is refused; "Handling notification responses from APNs": 403 ExpiredProviderToken
        if expired or claims['iat'] < now - self.args.token_lifetime:
            return 'ExpiredProviderToken'
        # Apple, "Establishing a token-based connection to APNs": a key may be restricted to
        # the sandbox or to production; "Handling notification responses from APNs" lists 403
        # BadEnvironmentKeyInToken ("the provider token was signed with a key for the wrong
        # environment"; APNSwift PR 229, "an authentication key or token used with the wrong
        # APNs environment", pigeon PR 312), not InvalidProviderToken
        kenv = self.key_env.get(header['kid'])
        if kenv and self.args.environment != 'both' and kenv != self.args.environment:
            return 'BadEnvironmentKeyInToken'
        # "Handling notification responses from APNs": 400 TopicDisallowed, "pushing to this
        # topic is not allowed" (a bundle id that is not the key's team's)
        if team in self.team_topics and bundle_of(topic) not in self.team_topics[team]:
            return 'TopicDisallowed'
        if not hasattr(conn, 'apns_state'):  # per connection (an id() could be reused)
            conn.apns_state = {}
        st = conn.apns_state
        if st.get('team') and st['team'] != team:
            return 'InvalidProviderToken'  # one team per connection
        # Apple, "Establishing a token-based connection to APNs": refresh the token no more
        # than once every 20 minutes; "Handling notification responses from APNs": 429
        # TooManyProviderTokenUpdates. Replacing a token that had expired is the refresh
        # Apple asks for, not an update too many (a real token expires after an hour, so
        # its connection has had it for more than 20 minutes).
        prev_expired = st.get('token') in self.expired or \
            st.get('token_iat', now) < now - self.args.token_lifetime
        if st.get('token') and st['token'] != token and not prev_expired and \
                now - st['token_at'] < self.args.token_update_window:
            return 'TooManyProviderTokenUpdates'
        if st.get('token') != token:
            st['token'] = token
            st['token_at'] = now
            st['token_iat'] = claims['iat']
        st['team'] = team
        return None

    def expire_tokens(self, args):
        """Control: the tokens seen so far are expired; hold the next N such answers."""
        with self.lock:
            self.expired |= self.tokens
            self.hold = int(args[0]) if args else 0
            self.held = []
            return {'expired': len(self.expired), 'hold': self.hold}

    def stats(self):
        with self.lock:
            return {'tokens': len(self.tokens), 'expired_answers': self.expired_answers}

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
        if reason == 'ExpiredProviderToken':
            release = []
            with self.lock:
                self.expired_answers += 1
                if self.hold:  # held until N wait, then answered together
                    self.held.append((conn, sid, verdict))
                    if len(self.held) >= self.hold:
                        release, self.held, self.hold = self.held, [], 0
                    verdict = None
                for c, s, (st, hs, b) in release:
                    c.respond_later(s, 0, st, hs, b)
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
        # "Handling notification responses from APNs": 400 BadTopic, "the apns-topic was
        # invalid"; the topic is a bundle id ("Sending notification requests to APNs")
        if not TOPIC_RE.match(topic):
            return self.error(400, 'BadTopic')
        if len(headers.get('apns-collapse-id', '').encode()) > 64:
            return self.error(400, 'BadCollapseId')
        prio = headers.get('apns-priority')
        if prio is not None and prio not in ('1', '5', '10'):
            return self.error(400, 'BadPriority')
        ptype = headers.get('apns-push-type')
        if ptype is not None and ptype not in PUSH_TYPES:
            return self.error(400, 'InvalidPushType')
        # "Sending notification requests to APNs", apns-push-type voip: "the apns-topic header
        # field must use your app's bundle ID with .voip appended to the end"; Apple names no
        # reason for it, BadTopic ("the apns-topic was invalid") is the one that fits
        if ptype == 'voip' and not topic.endswith('.voip'):
            return self.error(400, 'BadTopic')
        # "Sending notification requests to APNs", apns-expiration: "a UNIX epoch expressed in
        # seconds (UTC)", or 0; anything else is 400 BadExpirationDate ("Handling notification
        # responses from APNs")
        exp = headers.get('apns-expiration')
        if exp is not None and not re.fullmatch(r'[0-9]{1,10}', exp):
            return self.error(400, 'BadExpirationDate')
        # "Sending notification requests to APNs", apns-priority: background notifications
        # (push type background, or an aps holding content-available alone: "Pushing background
        # updates to your App") must be sent at 5, "specifying 10 is an error" -> BadPriority
        if prio in (None, '10') and (ptype == 'background' or background_only(body)):
            return self.error(400, 'BadPriority')
        path = headers.get(':path', '')
        if not path.startswith('/3/device/'):
            return self.error(404, 'BadPath')
        token = path[len('/3/device/'):]
        if not token:
            return self.error(400, 'MissingDeviceToken')
        if not re.fullmatch(r'[0-9a-fA-F]+', token):
            return self.error(400, 'BadDeviceToken')
        known = self.registry(token)
        if known:
            # "Handling notification responses from APNs": 400 BadDeviceToken, "the specified
            # device token is invalid ... verify that the request contains a valid token and that
            # the token matches the environment" (a sandbox token sent to production)
            tenv = known.get('environment', 'production')
            if self.args.environment != 'both' and tenv != self.args.environment:
                return self.error(400, 'BadDeviceToken')
            # ... 400 DeviceTokenNotForTopic, "the device token doesn't match the specified
            # topic" (a PushKit token belongs to <bundle>.voip, a remote one to <bundle>)
            if known.get('topic') and known['topic'] != topic:
                return self.error(400, 'DeviceTokenNotForTopic')
        if not self.args.client_ca:
            why = self.check_jwt(conn, headers.get('authorization'), topic)
            if why:
                return self.error(429 if why == 'TooManyProviderTokenUpdates'
                                  else 400 if why == 'TopicDisallowed' else 403, why)
        elif not conn.peer_cert:
            return self.error(403, 'BadCertificate')
        if not getattr(conn, 'opened', False):  # a valid push opens the connection up
            # Apple, "Sending notification requests to APNs" (push-protocols.md §2.1): with
            # token auth the connection allows one stream until a request with a valid
            # provider token, then the server's usual SETTINGS_MAX_CONCURRENT_STREAMS
            conn.opened = True
            conn.advertise_streams(self.args.max_streams)
        if not body:
            return self.error(400, 'PayloadEmpty')
        limit = 5120 if ptype == 'voip' else 4096
        if len(body.encode()) > limit:
            return self.error(413, 'PayloadTooLarge')
        # "Handling notification responses from APNs": 429 TooManyRequests, "too many
        # requests were made consecutively to the same device token" (Apple names no rate)
        if self.args.token_burst:
            now = time.monotonic()
            with self.lock:
                recent = [t for t in self.recent.get(token, [])
                          if t > now - self.args.token_burst_window]
                recent.append(now)
                self.recent[token] = recent
            if len(recent) > self.args.token_burst:
                return self.error(429, 'TooManyRequests')
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
    ap.add_argument('--token-burst', type=int, default=0,
                    help='pushes to one device token a window takes before 429 TooManyRequests')
    ap.add_argument('--token-burst-window', type=float, default=1.0)
    ap.add_argument('--log')
    ap.add_argument('--strict', action='store_true',
                    help='kept for old callers: background at priority 10 is always refused now')
    ap.add_argument('--environment', choices=('production', 'sandbox', 'both'), default='both',
                    help='the APNs host this server is (both: one port for both, no checks)')
    ap.add_argument('--key-environment', action='append',
                    help='KID=production|sandbox: a key restricted to one environment')
    ap.add_argument('--team-topics', action='append',
                    help='TEAM=bundle1,bundle2: the bundle ids the keys of TEAM may push to')
    ap.add_argument('--tokens', help='registry of device tokens (JSON, re-read per request)')
    ap.add_argument('--clock-skew', type=float, default=0,
                    help='seconds an iat may be ahead of this clock')
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
    # one stream until a valid token (see verdict); certificate auth opens up the same way
    srv = h2server.Server(a.host, a.port, a.cert, a.key, apns.handle, max_streams=1,
                          goaway_after=a.goaway_after, log_path=a.log, ca=a.client_ca)
    srv.commands['expire-tokens'] = apns.expire_tokens
    srv.stats_extra = apns.stats
    print(srv.banner(), flush=True)
    srv.serve_forever()


if __name__ == '__main__':
    sys.exit(main())
