#!/usr/bin/python3
"""h2server: the HTTP/2-over-TLS server the push emulators are built on (tests only).

One thread per connection, TLS with ALPN h2 (a client that does not offer h2 is refused, as
APNs and FCM do), a handler called per complete request. The handler, called as
handler(conn, stream_id, headers, body), returns (status, headers, body), or None to answer
later (conn.respond_later) or never (a hang). Connection-level
behaviour the tests need is on the Server object: max_concurrent_streams, GOAWAY after N
requests, a log of every request as JSON lines (each with recv_ns, the time.time_ns() at which
the bytes carrying its HEADERS frame were read: CLOCK_REALTIME, comparable across processes,
for tests/bench/push_latency.pl).

Run alone it is an echo server: `h2server.py --port P --cert C --key K [--goaway-after N]
[--max-streams N] [--log FILE] [--lifetime S]` answers every request 200 with a JSON body naming the
method, path, headers and body it got; a path starting /delay/<ms>/ waits that long, and
/status/<code>/ answers with that code. It prints "listening <port>" once ready.
"""
import argparse
import json
import os
import socket
import ssl
import sys
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.settings


class Server:
    def __init__(self, host, port, cert, key, handler, max_streams=100, goaway_after=0,
                 log_path=None, ca=None):
        self.handler = handler
        self.max_streams = max_streams
        self.goaway_after = goaway_after
        self.requests = 0
        self.lock = threading.Lock()
        self.log = open(log_path, 'a', buffering=1) if log_path else None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert, key)
        ctx.set_alpn_protocols(['h2'])
        if ca:  # client certificates (APNs certificate auth)
            ctx.load_verify_locations(ca)
            ctx.verify_mode = ssl.CERT_OPTIONAL
        self.ctx = ctx
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]

    def record(self, entry):
        if self.log:
            with self.lock:
                self.log.write(json.dumps(entry) + '\n')

    def serve_forever(self):
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self.serve_conn, args=(conn,), daemon=True).start()

    def serve_conn(self, raw):
        try:
            tls = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.record({'event': 'tls-refused', 'error': str(e)})
            raw.close()
            return
        if tls.selected_alpn_protocol() != 'h2':
            self.record({'event': 'no-h2'})
            tls.close()
            return
        Connection(self, tls).run()


class Connection:
    def __init__(self, server, tls):
        self.server = server
        self.tls = tls
        self.wlock = threading.Lock()
        self.h2 = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=False, header_encoding='utf-8'))
        self.streams = {}
        self.handled = 0
        self.closed = False
        self.peer_cert = tls.getpeercert()

    def send(self):
        data = self.h2.data_to_send()
        if data:
            try:
                self.tls.sendall(data)
            except OSError:
                self.closed = True

    def run(self):
        with self.wlock:
            self.h2.initiate_connection()
            self.h2.update_settings(
                {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.server.max_streams})
            self.send()
        while not self.closed:
            try:
                data = self.tls.recv(65536)
            except OSError:
                break
            if not data:
                break
            self.recv_ns = time.time_ns()  # CLOCK_REALTIME, comparable across processes
            with self.wlock:
                try:
                    events = self.h2.receive_data(data)
                except Exception as e:  # a protocol error: GOAWAY and close, as servers do
                    self.server.record({'event': 'protocol-error', 'error': str(e)})
                    self.send()
                    break
                for ev in events:
                    if self.closed:
                        break
                    self.on_event(ev)
                self.send()
        try:
            self.tls.close()
        except OSError:
            pass

    def on_event(self, ev):
        if isinstance(ev, h2.events.RequestReceived):
            self.streams[ev.stream_id] = {'headers': dict(ev.headers), 'body': b'',
                                          'recv_ns': self.recv_ns}
            if ev.stream_ended:
                self.complete(ev.stream_id)
        elif isinstance(ev, h2.events.DataReceived):
            st = self.streams.get(ev.stream_id)
            if st is not None:
                st['body'] += ev.data
            self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            self.complete(ev.stream_id)
        elif isinstance(ev, h2.events.PingReceived):
            self.server.record({'event': 'ping'})
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.closed = True

    def complete(self, sid):
        st = self.streams.pop(sid, None)
        if st is None or self.closed:
            return
        srv = self.server
        with srv.lock:
            srv.requests += 1
        self.handled += 1
        st['body'] = st['body'].decode('utf-8', 'replace')
        srv.record({'event': 'request', 'stream': sid, 'headers': st['headers'],
                    'body': st['body'], 'recv_ns': st['recv_ns']})
        answer = srv.handler(self, sid, st['headers'], st['body'])
        if answer is not None:
            status, headers, body = answer
            self.respond(sid, status, headers, body)
        if srv.goaway_after and self.handled >= srv.goaway_after:
            self.h2.close_connection(last_stream_id=sid,
                                     additional_data=json.dumps({'reason': 'Shutdown'}).encode())
            self.send()
            self.closed = True

    def respond(self, sid, status, headers, body):
        data = body.encode() if isinstance(body, str) else (body or b'')
        hs = [(':status', str(status))] + list(headers)
        if data:
            hs.append(('content-length', str(len(data))))
        self.h2.send_headers(sid, hs, end_stream=not data)
        if data:
            self.h2.send_data(sid, data, end_stream=True)

    def respond_later(self, sid, delay, status, headers, body):
        def later():
            time.sleep(delay)
            with self.wlock:
                if self.closed:
                    return
                try:
                    self.respond(sid, status, headers, body)
                except Exception:
                    return
                self.send()
        threading.Thread(target=later, daemon=True).start()


def echo_handler(conn, sid, headers, body):
    path = headers.get(':path', '')
    parts = path.split('/')
    answer = json.dumps({'method': headers.get(':method'), 'path': path, 'body': body,
                         'headers': headers})
    json_type = [('content-type', 'application/json')]
    if len(parts) > 3 and parts[1] == 'status':
        return int(parts[2]), json_type, answer
    if len(parts) > 3 and parts[1] == 'delay':
        conn.respond_later(sid, int(parts[2]) / 1000.0, 200, json_type, answer)
        return None
    return 200, json_type, answer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, default=0)
    ap.add_argument('--cert', required=True)
    ap.add_argument('--key', required=True)
    ap.add_argument('--max-streams', type=int, default=100)
    ap.add_argument('--goaway-after', type=int, default=0)
    ap.add_argument('--log')
    ap.add_argument('--lifetime', type=float, default=300,
                    help='exit after this many seconds, whatever happens (tests stop by themselves)')
    a = ap.parse_args()
    threading.Timer(a.lifetime, lambda: os._exit(0)).start()
    srv = Server(a.host, a.port, a.cert, a.key, echo_handler, a.max_streams, a.goaway_after,
                 a.log)
    print('listening %d' % srv.port, flush=True)
    srv.serve_forever()


if __name__ == '__main__':
    sys.exit(main())
