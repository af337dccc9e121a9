#!/usr/bin/python3
"""fcm.py: an FCM HTTP v1 emulator, OAuth2 token endpoint included (tests only; never point
sipwake at Google in tests). HTTP/2 over TLS on one port:

POST /token  the OAuth2 jwt-bearer grant (../shared/research/push-protocols.md §3.5): the
  assertion must be RS256-signed by the service account's key, iss = client_email,
  aud = https://<this host:port>/token, scope containing firebase.messaging,
  exp - iat <= 3600, iat within 5 minutes of now; else 400 invalid_grant. Success:
  {"access_token", "expires_in": --token-lifetime, "token_type": "Bearer"}.
POST /v1/projects/<project>/messages:send (§3.1-3.4): Bearer token issued here and not
  expired (401 UNAUTHENTICATED), the service account's project (403 PERMISSION_DENIED),
  a JSON body with message.token (a plausible registration token, else 400
  INVALID_ARGUMENT with a fieldViolation on message.token), data values all strings, data
  at most 4096 bytes, android.priority normal|high, android.ttl "<n>[.frac]s" at most
  2419200s (400 INVALID_ARGUMENT). Per-token script (--script FILE, JSON, re-read per
  request): {"<token>": {"errorCode": "UNREGISTERED"|"SENDER_ID_MISMATCH"|"QUOTA_EXCEEDED"|
  "UNAVAILABLE"|"INTERNAL", "retry_after": N} | {"hang": true}}. Success: 200
  {"name": "projects/<project>/messages/0:<n>"}.
Every request is logged as a JSON line (--log). Prints "listening <port>".
"""
import argparse
import base64
import json
import os
import re
import secrets
import sys
import threading
import time
import urllib.parse

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import h2server  # noqa: E402

CODES = {'UNREGISTERED': (404, 'NOT_FOUND'), 'SENDER_ID_MISMATCH': (403, 'PERMISSION_DENIED'),
         'QUOTA_EXCEEDED': (429, 'RESOURCE_EXHAUSTED'), 'UNAVAILABLE': (503, 'UNAVAILABLE'),
         'INTERNAL': (500, 'INTERNAL'), 'INVALID_ARGUMENT': (400, 'INVALID_ARGUMENT'),
         'THIRD_PARTY_AUTH_ERROR': (401, 'UNAUTHENTICATED'),
         'UNAUTHENTICATED': (401, 'UNAUTHENTICATED'),
         'PERMISSION_DENIED': (403, 'PERMISSION_DENIED')}


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + '=' * (-len(s) % 4))


class Fcm:
    def __init__(self, args):
        self.args = args
        with open(args.service_account) as f:
            sa = json.load(f)
        self.sa = sa
        key = serialization.load_pem_private_key(sa['private_key'].encode(), None)
        self.pub = key.public_key()
        self.tokens = {}  # access token -> expiry
        self.sent = 0
        self.lock = threading.Lock()

    def json_reply(self, status, obj, extra=()):
        return status, [('content-type', 'application/json')] + list(extra), json.dumps(obj)

    def fcm_error(self, code, message, error_code=None, violations=None, retry_after=None):
        http, status = CODES.get(code, (400, code))
        details = []
        if error_code:
            details.append({'@type': 'type.googleapis.com/google.firebase.fcm.v1.FcmError',
                            'errorCode': error_code})
        if violations:
            details.append({'@type': 'type.googleapis.com/google.rpc.BadRequest',
                            'fieldViolations': violations})
        extra = [('retry-after', str(retry_after))] if retry_after else []
        return self.json_reply(http, {'error': {'code': http, 'message': message,
                                                'status': status, 'details': details}}, extra)

    def handle(self, conn, sid, headers, body):
        path = headers.get(':path', '')
        if path == '/token':
            answer = self.token(headers, body)
        elif re.fullmatch(r'/v1/projects/[^/]+/messages:send', path):
            answer = self.send(conn, sid, headers, body)
        else:
            answer = self.json_reply(404, {'error': {'code': 404, 'status': 'NOT_FOUND'}})
        conn.server.record({'event': 'fcm', 'path': path, 'body': body,
                            'status': answer[0] if answer else None,
                            'answer': answer[2] if answer else None})
        return answer

    def token(self, headers, body):
        bad = lambda why: self.json_reply(400, {'error': 'invalid_grant', 'error_description': why})
        if headers.get('content-type') != 'application/x-www-form-urlencoded':
            return bad('Bad content type')
        form = dict(urllib.parse.parse_qsl(body))
        if form.get('grant_type') != 'urn:ietf:params:oauth:grant-type:jwt-bearer':
            return self.json_reply(400, {'error': 'unsupported_grant_type'})
        parts = form.get('assertion', '').split('.')
        if len(parts) != 3:
            return bad('Invalid JWT.')
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            self.pub.verify(b64url_decode(parts[2]), (parts[0] + '.' + parts[1]).encode(),
                            padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            return bad('Invalid JWT Signature.')
        if header.get('alg') != 'RS256':
            return bad('Invalid JWT Signature.')
        now = time.time()
        aud = 'https://%s/token' % headers.get(':authority')
        if claims.get('iss') != self.sa['client_email'] or claims.get('aud') != aud:
            return bad('Invalid JWT: iss or aud')
        if 'firebase.messaging' not in claims.get('scope', ''):
            return self.json_reply(400, {'error': 'invalid_scope'})
        iat, exp = claims.get('iat', 0), claims.get('exp', 0)
        if exp - iat > 3600 or abs(iat - now) > 300 or exp < now:
            return bad('Invalid JWT: Token must be a short-lived token (60 minutes) and in a '
                       'reasonable timeframe. Check your iat and exp values')
        tok = 'ya29.' + secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[tok] = now + self.args.token_lifetime
        return self.json_reply(200, {'access_token': tok, 'expires_in': self.args.token_lifetime,
                                     'token_type': 'Bearer'})

    def send(self, conn, sid, headers, body):
        auth = headers.get('authorization', '')
        with self.lock:
            exp = self.tokens.get(auth[7:]) if auth.startswith('Bearer ') else None
        if not exp or exp < time.time():
            return self.fcm_error('UNAUTHENTICATED', 'Request had invalid authentication '
                                  'credentials. Expected OAuth 2 access token')
        project = headers[':path'].split('/')[3]
        if project != self.sa['project_id']:
            return self.fcm_error('PERMISSION_DENIED', 'Permission denied on project')
        try:
            msg = json.loads(body)['message']
        except (ValueError, KeyError, TypeError):
            return self.fcm_error('INVALID_ARGUMENT', 'Invalid JSON payload received.')
        token = msg.get('token')
        if not isinstance(token, str) or not re.fullmatch(r'[A-Za-z0-9_:\-]{8,4096}', token):
            return self.fcm_error('INVALID_ARGUMENT', 'The registration token is not a valid FCM '
                                  'registration token', 'INVALID_ARGUMENT',
                                  [{'field': 'message.token', 'description': 'Invalid registration token'}])
        data = msg.get('data', {})
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            return self.fcm_error('INVALID_ARGUMENT', 'data values must be strings',
                                  'INVALID_ARGUMENT')
        if len(json.dumps(data)) > 4096:
            return self.fcm_error('INVALID_ARGUMENT', 'Message is too big', 'INVALID_ARGUMENT')
        android = msg.get('android', {})
        if str(android.get('priority', 'normal')).lower() not in ('normal', 'high'):
            return self.fcm_error('INVALID_ARGUMENT', 'Invalid android priority',
                                  'INVALID_ARGUMENT')
        ttl = android.get('ttl')
        if ttl is not None and (not re.fullmatch(r'\d+(\.\d{1,9})?s', ttl) or
                                float(ttl[:-1]) > 2419200):
            return self.fcm_error('INVALID_ARGUMENT', 'Invalid ttl', 'INVALID_ARGUMENT')
        sc = {}
        if self.args.script and os.path.exists(self.args.script):
            with open(self.args.script) as f:
                sc = json.load(f).get(token, {})
        if sc.get('hang'):
            return None
        if 'errorCode' in sc:
            return self.fcm_error(sc['errorCode'], 'scripted', sc['errorCode'],
                                  retry_after=sc.get('retry_after'))
        with self.lock:
            self.sent += 1
            n = self.sent
        return self.json_reply(200, {'name': 'projects/%s/messages/0:%d' % (project, n)})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, default=0)
    ap.add_argument('--cert', required=True)
    ap.add_argument('--key', required=True)
    ap.add_argument('--service-account', required=True)
    ap.add_argument('--token-lifetime', type=int, default=3599)
    ap.add_argument('--script')
    ap.add_argument('--log')
    ap.add_argument('--lifetime', type=float, default=300)
    a = ap.parse_args()
    threading.Timer(a.lifetime, lambda: os._exit(0)).start()
    fcm = Fcm(a)
    srv = h2server.Server(a.host, a.port, a.cert, a.key, fcm.handle, max_streams=100,
                          log_path=a.log)
    print('listening %d' % srv.port, flush=True)
    srv.serve_forever()


if __name__ == '__main__':
    sys.exit(main())
