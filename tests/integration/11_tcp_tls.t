#!/usr/bin/perl
# TCP and TLS: REGISTER, CRLF keep-alive (RFC 5626 §3.5.1), idle and stall timeouts, a new
# connection taking over a push binding, and TLS client-certificate checking.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Time::HiRes qw(sleep time);
use IO::Socket::SSL;
use Sipwake;

my $sw = Sipwake->new(config => { sip => { tcp_idle_timeout => 2, tcp_message_timeout => 1 } });
$sw->start;
my $PUSH = 'pn-provider=fcm;pn-param=proj;pn-prid=tok-tcp';

for my $tr (qw(tcp tls)) {
    my $ua = $sw->ua(transport => $tr, user => "u$tr");
    my $r = $ua->register(contact => "sip:u$tr\@127.0.0.1:1;transport=$tr;$PUSH-$tr", expires => 3600);
    is($r->{code}, 200, "$tr: push REGISTER answered 200");
    is(scalar Sipwake::UA::header($r, 'feature-caps'), '*;+sip.pns="fcm"', "$tr: Feature-Caps");
    like($sw->sql_wait("select received from location where username='u$tr'", qr/transport/),
         qr/^sip:127\.0\.0\.1:\d+;transport=$tr$/, "$tr: flow recorded");
    $ua->{want_pong} = 1;
    $ua->send_raw("\r\n\r\n");
    is($ua->recv_raw(2), "\r\n", "$tr: CRLFCRLF ping answered with CRLF pong");
    $r = $ua->register(contact => "sip:u$tr\@127.0.0.1:1;transport=$tr;$PUSH-$tr", expires => 3600);
    is($r->{code}, 200, "$tr: connection still serves after the keep-alive");
}

# a new connection with the same push params takes the binding over
my $a = $sw->ua(transport => 'tcp', user => 'mover');
$a->register(contact => "sip:mover\@127.0.0.1:1;transport=tcp;$PUSH-m", expires => 3600);
my $b = $sw->ua(transport => 'tls', user => 'mover');
my $r = $b->register(contact => "sip:mover\@127.0.0.1:2;transport=tls;$PUSH-m", expires => 3600);
is(scalar(() = Sipwake::UA::header($r, 'contact')), 1, 'TLS re-REGISTER replaced the TCP binding');
like($sw->sql_wait("select received from location where username='mover'", qr/tls/), qr/transport=tls/,
     'binding flow is now the TLS connection');

# idle and stall timeouts
my $idle = $sw->ua(transport => 'tcp');
my $t0 = time;
my $eof = $idle->recv_raw(5);
ok(!defined $eof && time - $t0 < 4.5, 'idle TCP connection closed after tcp_idle_timeout');
my $stall = $sw->ua(transport => 'tcp');
$stall->send_raw("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKs\r\n");
$t0 = time;
my $n = $stall->sock->sysread(my $x, 10);
ok(!$n && time - $t0 < 2.5, 'half a message then silence: closed after tcp_message_timeout');
ok($sw->wait_log(qr/incomplete message timed out/), 'stall logged');
my $tls_stall = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $sw->tls_port, Proto => 'tcp');
$t0 = time;
$n = $tls_stall->sysread($x, 10);
ok(!$n && time - $t0 < 2.5, 'TLS connection that never handshakes is closed');
my $ua = $sw->ua(transport => 'tls', user => 'after');
is($ua->register(contact => 'sip:after@127.0.0.1:3;transport=tls', expires => 600)->{code}, 200,
   'TLS still serves');
ok($sw->stop, 'clean shutdown');

# client certificates required
my $dir = $sw->dir;
system("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=testca "
    . "-keyout $dir/ca.key -out $dir/ca.pem >/dev/null 2>&1") == 0 or die 'openssl';
system("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=phone "
    . "-keyout $dir/c.key -out $dir/c.csr >/dev/null 2>&1 && openssl x509 -req -in $dir/c.csr "
    . "-CA $dir/ca.pem -CAkey $dir/ca.key -CAcreateserial -days 2 -out $dir/c.pem >/dev/null 2>&1") == 0
    or die 'openssl client cert';
my $mt = Sipwake->new(config => { tls => { verify_client => 'required', ca => "$dir/ca.pem" } });
$mt->start;
my $ok = eval { $mt->ua(transport => 'tls', user => 'cert',
    ssl => { SSL_cert_file => "$dir/c.pem", SSL_key_file => "$dir/c.key" }) };
ok($ok && $ok->register(contact => 'sip:cert@127.0.0.1:1;transport=tls', expires => 600)->{code} == 200,
   'client with a certificate from the CA registers');
my $no = eval {
    my $u = $mt->ua(transport => 'tls', user => 'nocert');
    $u->register(contact => 'sip:nocert@127.0.0.1:1;transport=tls', expires => 600);
};
ok(!$no || !$no->{code}, 'client without a certificate is refused');
ok($mt->wait_log(qr/TLS handshake failed|handshake with/), 'refusal logged');
ok($mt->stop, 'clean shutdown');
done_testing;
