#!/usr/bin/python3
"""fcm.py: an FCM HTTP v1 emulator, OAuth2 token endpoint included (tests only; never point
sipwake at Google in tests). HTTP/2 over TLS on one port:

POST /token  the OAuth2 jwt-bearer grant (../shared/research/push-protocols.md §3.5): the
  assertion must be RS256-signed by the service account's key, iss = client_email,
  aud = https://<this host:port>/token, scope containing firebase.messaging,
  exp - iat <= 3600, iat within 5 minutes of now; else 400 invalid_grant. Success:
  {"access_token", "expires_in": --token-lifetime, "token_type": "Bearer"}.
POST /v1/projects/<project>/messages:send (§3.1-3.4): Bearer token issued here and not
  expired (401 UNAUTHENTICATED), the service account's project named by its ID or, with
  --project-number, by its number (the projects.messages.send reference: "projects/
  {project_id}", and "the numeric project number with no padding is also supported in the
  format of projects/{project_number}"); any other project is one the account has no right
  to (403 PERMISSION_DENIED),
  then the body checked as the v1 API does, answering 400 INVALID_ARGUMENT in the shape
  FCM gives each fault (see send(), one source per rule): fields the Message and
  AndroidConfig resources do not have; a registration token that is not one (only an
  FcmError detail, "The registration token is not a valid FCM registration token", no
  field violation, as FCM answers today); data values that are not strings; data keys FCM
  reserves ("from", "notification", "message_type", "google.*", "gcm.*"); more than 4096
  bytes of data; android.priority other than NORMAL or HIGH (either case, as Flexisip's
  lowercase works); android.ttl not a Duration string ("3.5s") or over 2419200s.
  Per-token script (--script FILE, JSON, re-read per request): {"<token>": {"errorCode":
  "UNREGISTERED"|"SENDER_ID_MISMATCH"|"QUOTA_EXCEEDED"|"UNAVAILABLE"|"INTERNAL"|
  "INVALID_ARGUMENT"|..., "message": "...", "violations": [{"field", "description"}],
  "retry_after": N} | {"invalid_token": true} | {"hang": true} | {"sender": "<project number>"}}:
  sender says the token was issued to that project (the app's sender ID); a token of another
  project than the service account's answers 403 SENDER_ID_MISMATCH (ErrorCode reference:
  "The authenticated sender ID is different from the sender ID for the registration
  token"). Success: 200
  {"name": "projects/<project>/messages/0:<n>"}.
Every request is logged as a JSON line (--log). Prints "listening <port> control <cport>".
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


# projects.messages.send, the v1 REST reference: the fields of Message and AndroidConfig
MESSAGE_FIELDS = ('name', 'data', 'notification', 'android', 'webpush', 'apns', 'fcm_options',
                  'token', 'topic', 'condition')
ANDROID_FIELDS = ('collapse_key', 'priority', 'ttl', 'restricted_package_name', 'data',
                  'notification', 'fcm_options', 'direct_boot_ok', 'bandwidth_constrained_ok',
                  'restricted_satellite_ok')


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

    def invalid_token(self):
        # what FCM answers today to a malformed or foreign registration token: 400
        # INVALID_ARGUMENT with only the FcmError detail, no field violation (Firebase
        # error-codes page, example 2; firebase-admin-java issue 1064)
        return self.fcm_error('INVALID_ARGUMENT', 'The registration token is not a valid FCM '
                              'registration token', 'INVALID_ARGUMENT')

    def bad_field(self, field, value, type_name):
        # the JSON mapping's refusal of a value: "Invalid value at '<field>' (<type>), <value>"
        # with a google.rpc.BadRequest field violation and no FcmError (error-codes page)
        text = "Invalid value at '%s' (%s), %s" % (field, type_name, json.dumps(value))
        return self.fcm_error('INVALID_ARGUMENT', text,
                              violations=[{'field': field, 'description': text}])

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
        ours = (self.sa['project_id'], self.args.project_number)
        if project not in ours:
            return self.fcm_error('PERMISSION_DENIED', 'Permission denied on project')
        try:
            msg = json.loads(body)['message']
        except (ValueError, KeyError, TypeError):
            return self.fcm_error('INVALID_ARGUMENT', 'Invalid JSON payload received.')
        # the v1 reference's Message and AndroidConfig fields; anything else is refused
        # ("Invalid JSON payload received. Unknown name ... Cannot find field.", a field
        # violation on the object; Firebase error-codes page and the quoted answers)
        unknown = [k for k in msg if k not in MESSAGE_FIELDS] if isinstance(msg, dict) else ['message']
        android = msg.get('android', {}) if isinstance(msg, dict) else {}
        if not isinstance(android, dict):
            return self.bad_field('message.android', android,
                                  'type.googleapis.com/google.firebase.fcm.v1.AndroidConfig')
        if not unknown:
            unknown = ['android.' + k for k in android if k not in ANDROID_FIELDS]
        if unknown:
            text = 'Invalid JSON payload received. Unknown name "%s" at \'message\': Cannot find field.' \
                % unknown[0].split('.')[-1]
            return self.fcm_error('INVALID_ARGUMENT', text,
                                  violations=[{'field': 'message', 'description': text}])
        token = msg.get('token')
        if not isinstance(token, str) or not re.fullmatch(r'[A-Za-z0-9_:\-]{8,4096}', token):
            return self.invalid_token()
        # Message.data is map<string, string>: a number is refused with a field violation
        # on that value (Firebase error-codes page, example 1)
        data = msg.get('data', {})
        if not isinstance(data, dict):
            return self.bad_field('message.data', data, 'TYPE_MAP')
        for i, (k, v) in enumerate(data.items()):
            if not isinstance(v, str):
                return self.bad_field('message.data[%d].value' % i, v, 'TYPE_STRING')
        # reserved keys (v1 reference, Message.data: "must not contain reserved words";
        # ErrorCode INVALID_ARGUMENT, "Invalid data key ... such as from, or gcm, or any value
        # prefixed by google"; the legacy reference adds notification and message_type). FCM
        # does not publish the wording: the field violation names the key.
        for i, k in enumerate(data):
            if k in ('from', 'notification', 'message_type') or k.startswith(('google.', 'gcm.')):
                return self.fcm_error('INVALID_ARGUMENT', 'Invalid data payload key: %s' % k,
                                      'INVALID_ARGUMENT',
                                      [{'field': 'message.data[%d].key' % i,
                                        'description': 'Invalid data payload key: %s' % k}])
        # ErrorCode INVALID_ARGUMENT, "Message too big": 4096 bytes of keys and values; FCM
        # answers with no detail at all (bloomberg/pushiko docs/fcm_responses.md)
        if sum(len(k.encode()) + len(v.encode()) for k, v in data.items()) > 4096:
            return self.json_reply(400, {'error': {'code': 400, 'status': 'INVALID_ARGUMENT',
                                                   'message': 'Request contains an invalid argument.'}})
        # AndroidConfig.priority is the AndroidMessagePriority enum NORMAL | HIGH
        priority = android.get('priority', 'NORMAL')
        if not isinstance(priority, str) or priority.upper() not in ('NORMAL', 'HIGH'):
            return self.bad_field('message.android.priority', priority,
                                  'type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority')
        # AndroidConfig.ttl is a google.protobuf.Duration: seconds with up to nine fractional
        # digits and an "s" ("3.5s"); at most 4 weeks (ErrorCode INVALID_ARGUMENT, "Invalid
        # TTL": 0 to 2,419,200 seconds)
        ttl = android.get('ttl')
        if ttl is not None and (not isinstance(ttl, str) or not re.fullmatch(r'\d+(\.\d{1,9})?s', ttl)
                                or float(ttl[:-1]) > 2419200):
            return self.bad_field('message.android.ttl', ttl, 'type.googleapis.com/google.protobuf.Duration')
        sc = {}
        if self.args.script and os.path.exists(self.args.script):
            with open(self.args.script) as f:
                sc = json.load(f).get(token, {})
        if sc.get('hang'):
            return None
        if sc.get('invalid_token'):
            return self.invalid_token()
        if 'sender' in sc and sc['sender'] not in ours:
            return self.fcm_error('SENDER_ID_MISMATCH', 'SenderId mismatch', 'SENDER_ID_MISMATCH')
        if 'errorCode' in sc:
            return self.fcm_error(sc['errorCode'], sc.get('message', 'scripted'), sc['errorCode'],
                                  sc.get('violations'), retry_after=sc.get('retry_after'))
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
    ap.add_argument('--project-number', default=None,
                    help="the number of the service account's project (its sender ID)")
    ap.add_argument('--token-lifetime', type=int, default=3599)
    ap.add_argument('--script')
    ap.add_argument('--log')
    ap.add_argument('--lifetime', type=float, default=300)
    a = ap.parse_args()
    threading.Timer(a.lifetime, lambda: os._exit(0)).start()
    fcm = Fcm(a)
    srv = h2server.Server(a.host, a.port, a.cert, a.key, fcm.handle, max_streams=100,
                          log_path=a.log)
    print(srv.banner(), flush=True)
    srv.serve_forever()


if __name__ == '__main__':
    sys.exit(main())
