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

Stream limit: each connection advertises SETTINGS_MAX_CONCURRENT_STREAMS in its first
SETTINGS frame (conn.advertise_streams changes it later), and a stream opened beyond the
advertised limit is answered RST_STREAM REFUSED_STREAM, as RFC 9113 §5.1.2 allows ("An
endpoint that receives a HEADERS frame that causes its advertised concurrent stream limit to
be exceeded MUST treat this as a stream error of type PROTOCOL_ERROR or REFUSED_STREAM";
§8.7: REFUSED_STREAM tells the client the request was not processed and may be retried).
nghttp2, Apple and Google refuse the stream rather than close the connection; the h2
library's own check (TooManyStreamsError, a connection error) is turned off for that.

Control interface: a plain TCP port on the same host (printed after the HTTP/2 port:
"listening <port> control <cport>") takes one command per line and answers one JSON line:
  stats          {"connections": accepted h2 connections, "open": still open,
                  "refused_streams": streams refused over the limit, "pings": PINGs received,
                  "requests": N, ...the handler's own (Server.stats_extra)}
  freeze         every open connection stops reading: it answers nothing more, PINGs
                 included, as a server that hung or a path that died would (new connections
                 are served); {"frozen": N}
  <other>        Server.commands[name](args) when the emulator defines it

Run alone it is an echo server: `h2server.py --port P --cert C --key K [--goaway-after N]
[--max-streams N] [--refuse-first N] [--log FILE] [--lifetime S]` answers every request 200 with a JSON body naming the
method, path, headers and body it got; a path starting /delay/<ms>/ waits that long, and
/status/<code>/ answers with that code. It prints "listening <port> control <cport>" once
ready.
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
import h2.errors
import h2.events
import h2.settings


class _H2Connection(h2.connection.H2Connection):
    """h2's own stream limit check raises TooManyStreamsError, a connection error (GOAWAY):
    it is turned off here (the only caller of open_inbound_streams) so that Connection can
    refuse the one stream instead, against the limit it advertised."""

    @property
    def open_inbound_streams(self):
        h2.connection.H2Connection.open_inbound_streams.fget(self)  # prunes closed streams
        return 0


class Server:
    def __init__(self, host, port, cert, key, handler, max_streams=100, goaway_after=0,
                 log_path=None, ca=None, refuse_first=0):
        self.handler = handler
        self.refuse_first = refuse_first  # streams refused on each connection, whatever the limit
        self.max_streams = max_streams
        self.goaway_after = goaway_after
        self.requests = 0
        self.connections = 0
        self.refused_streams = 0
        self.pings = 0
        self.live = set()  # open Connections
        self.commands = {'stats': self.stats, 'freeze': self.freeze}
        self.stats_extra = None  # a function returning more stats
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
        self.csock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.csock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.csock.bind((host, 0))
        self.csock.listen(8)
        self.control_port = self.csock.getsockname()[1]
        threading.Thread(target=self.serve_control, daemon=True).start()

    def banner(self):
        return 'listening %d control %d' % (self.port, self.control_port)

    # ---- the control interface

    def serve_control(self):
        while True:
            c, _ = self.csock.accept()
            threading.Thread(target=self.control_conn, args=(c,), daemon=True).start()

    def control_conn(self, c):
        with c, c.makefile('rw') as f:
            for line in f:
                words = line.split()
                if not words:
                    continue
                fn = self.commands.get(words[0])
                try:
                    answer = fn(words[1:]) if fn else {'error': 'unknown command ' + words[0]}
                except Exception as e:  # a bad argument: say so, keep serving
                    answer = {'error': str(e)}
                f.write(json.dumps(answer) + '\n')
                f.flush()

    def stats(self, args):
        with self.lock:
            st = {'connections': self.connections, 'open': len(self.live),
                  'refused_streams': self.refused_streams, 'pings': self.pings,
                  'requests': self.requests}
        if self.stats_extra:
            st.update(self.stats_extra())
        return st

    def freeze(self, args):
        with self.lock:
            conns = list(self.live)
        for conn in conns:
            conn.frozen = True
        self.record({'event': 'freeze', 'connections': len(conns)})
        return {'frozen': len(conns)}

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
        conn = Connection(self, tls)
        with self.lock:
            self.connections += 1
            conn.number = self.connections
            self.live.add(conn)
        self.record({'event': 'connection', 'conn': conn.number})
        try:
            conn.run()
        finally:
            with self.lock:
                self.live.discard(conn)


class Connection:
    def __init__(self, server, tls):
        self.server = server
        self.tls = tls
        self.wlock = threading.Lock()
        self.h2 = _H2Connection(
            config=h2.config.H2Configuration(client_side=False, header_encoding='utf-8'))
        self.streams = {}
        self.active = set()  # streams counted against the limit: opened, not yet answered
        self.refused = 0
        self.max_streams = server.max_streams  # as advertised
        self.handled = 0
        self.closed = False
        self.frozen = False
        self.number = 0
        self.peer_cert = tls.getpeercert()

    def advertise_streams(self, n):
        """Advertise a new SETTINGS_MAX_CONCURRENT_STREAMS (under wlock, as handlers are)."""
        self.h2.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: n})
        self.max_streams = n

    def send(self):
        data = self.h2.data_to_send()
        if data:
            try:
                self.tls.sendall(data)
            except OSError:
                self.closed = True

    def run(self):
        with self.wlock:
            # the limit goes in the connection's first SETTINGS frame, as servers send it
            self.h2.local_settings = h2.settings.Settings(
                client=False,
                initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams,
                                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65536})
            self.h2.initiate_connection()
            self.send()
        while not self.closed:
            try:
                data = self.tls.recv(65536)
            except OSError:
                break
            if not data:
                break
            if self.frozen:  # stop reading and answering, for good (the client gives up)
                threading.Event().wait()
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
            if len(self.active) >= self.max_streams or self.refused < self.server.refuse_first:
                # RFC 9113 §5.1.2: over the advertised limit, a stream error REFUSED_STREAM
                self.h2.reset_stream(ev.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                self.refused += 1
                with self.server.lock:
                    self.server.refused_streams += 1
                self.server.record({'event': 'refused-stream', 'conn': self.number,
                                    'stream': ev.stream_id, 'limit': self.max_streams})
                return
            self.active.add(ev.stream_id)
            self.streams[ev.stream_id] = {'headers': dict(ev.headers), 'body': b'',
                                          'recv_ns': self.recv_ns}
            if ev.stream_ended:
                self.complete(ev.stream_id)
        elif isinstance(ev, h2.events.DataReceived):
            st = self.streams.get(ev.stream_id)
            if st is not None:
                st['body'] += ev.data
            if ev.stream_id in self.h2.streams:  # not a stream refused above
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            self.complete(ev.stream_id)
        elif isinstance(ev, h2.events.StreamReset):
            self.active.discard(ev.stream_id)
            self.streams.pop(ev.stream_id, None)
        elif isinstance(ev, h2.events.PingReceived):
            with self.server.lock:
                self.server.pings += 1
            self.server.record({'event': 'ping', 'conn': self.number})
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
        srv.record({'event': 'request', 'conn': self.number, 'stream': sid,
                    'headers': st['headers'], 'body': st['body'], 'recv_ns': st['recv_ns']})
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
        self.active.discard(sid)  # answered in full: it no longer counts against the limit

    def respond_later(self, sid, delay, status, headers, body):
        def later():
            time.sleep(delay)
            with self.wlock:
                if self.closed or self.frozen:
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
    ap.add_argument('--refuse-first', type=int, default=0,
                    help='refuse the first N streams of each connection (REFUSED_STREAM)')
    ap.add_argument('--log')
    ap.add_argument('--lifetime', type=float, default=300,
                    help='exit after this many seconds, whatever happens (tests stop by themselves)')
    a = ap.parse_args()
    threading.Timer(a.lifetime, lambda: os._exit(0)).start()
    srv = Server(a.host, a.port, a.cert, a.key, echo_handler, a.max_streams, a.goaway_after,
                 a.log, refuse_first=a.refuse_first)
    print(srv.banner(), flush=True)
    srv.serve_forever()


if __name__ == '__main__':
    sys.exit(main())
