#!/usr/bin/perl
# Bad input never stops the server: garbage datagrams, a truncated message, a 64 KiB header
# over UDP and TCP, a Content-Length beyond the body, a stalled TCP client, and every RFC 4475
# and RFC 5118 torture message. Each is answered 400 or dropped, logged and counted, and
# REGISTERs are served afterwards.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Time::HiRes qw(sleep);
use Sipwake;

my $sw = Sipwake->new(config => { sip => { tcp_message_timeout => 1 } });
$sw->start;
my $port = 0;

sub still_serves {
    my ($what) = @_;
    my $ua = $sw->ua(user => 'check' . ++$port);
    my $r = $ua->register(contact => "sip:check$port\@127.0.0.1:1", expires => 600);
    is($r && $r->{code}, 200, "REGISTER still served after $what");
}

my $ua = $sw->ua;
srand(4475);
for my $i (1 .. 50) {
    $ua->send_raw(join '', map { chr(int(rand(256))) } 1 .. 1 + int(rand(1400)));
}
is($ua->recv_raw(0.5), undef, 'garbage datagrams get no answer');
ok($sw->wait_log(qr/unreadable message from udp 127\.0\.0\.1:\d+ dropped/), 'drops are logged');
still_serves('50 garbage datagrams');

my $full = $ua->register_msg(contact => 'sip:t@127.0.0.1:1', expires => 600);
my $r = $ua->request(substr($full, 0, 120));
ok(!$r || ($r->{code} // 0) == 400, 'truncated REGISTER: dropped or 400');
still_serves('a truncated message');

my $cut = $full;
$cut =~ s/Content-Length: 0/Content-Length: 200/;
$r = $ua->request($cut . "short body");
is($r->{code}, 400, 'Content-Length larger than the datagram: 400 (RFC 3261 §18.3)');
like($r->{reason}, qr/Content-Length/, 'reason names Content-Length');

my $big = $full;
my $filler = 'X-Filler: ' . ('a' x (64 * 1024)) . "\r\n";
$big =~ s/\r\n\r\n$/\r\n$filler\r\n/;
$ua->send_raw($big);
ok(!defined $ua->recv_raw(0.5), 'a 64 KiB header does not fit a datagram: nothing comes back');
my $near = $full;
$filler = 'X-Filler: ' . ('a' x (60 * 1024)) . "\r\n";
$near =~ s/\r\n\r\n$/\r\n$filler\r\n/;
$r = $ua->request($near);
ok($r && $r->{code}, 'a 60 KiB header in one datagram is parsed and answered: ' . ($r->{code} // 'none'));
still_serves('huge UDP headers');

my $tcp = $sw->ua(transport => 'tcp');
$filler = 'X-Filler: ' . ('b' x (64 * 1024)) . "\r\n";
my $tbig = $tcp->register_msg(contact => 'sip:t@127.0.0.1:1;transport=tcp', expires => 600);
$tbig =~ s/\r\n\r\n$/\r\n$filler\r\n/;
$tcp->send_raw($tbig);
ok(!defined $tcp->recv_raw(2), 'TCP message over max_message_size: connection closed');
ok($sw->wait_log(qr/oversized message from 127\.0\.0\.1/), 'logged');
my $stall = $sw->ua(transport => 'tcp');
$stall->send_raw(substr($full, 0, 100));
ok(!defined $stall->recv_raw(3), 'TCP client that sends half a message and stalls is closed');
still_serves('TCP abuse');

my $cmp = "REGISTER sip:example.com SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1:" . $ua->local_port
    . ";rport;branch=z9hG4bKcompact\r\nf: <sip:cf\@example.com>;tag=1\r\nt: <sip:cf\@example.com>\r\n"
    . "i: compact-1\r\nCSeq: 1 REGISTER\r\nm: <sip:cf\@127.0.0.1:5>\r\nl: 0\r\n\r\n";
is($ua->request($cmp)->{code}, 200, 'compact header forms accepted');
$r = $ua->request("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:" . $ua->local_port
    . ";rport;branch=z9hG4bKmism\r\nFrom: <sip:m\@example.com>;tag=1\r\nTo: <sip:m\@example.com>\r\n"
    . "Call-ID: mism\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n");
is($r->{code}, 400, 'CSeq method that does not match the request: 400');

# every torture message, over UDP and TCP
my @files = (glob("$Sipwake::ROOT/tests/torture/rfc4475/*.dat"),
             glob("$Sipwake::ROOT/tests/torture/rfc5118/*.dat"));
ok(@files >= 61, 'torture corpus found (' . scalar(@files) . ' messages)');
for my $f (@files) {
    open my $fh, '<:raw', $f or die;
    local $/;
    my $msg = <$fh>;
    $ua->send_raw($msg);
    my $t = $sw->ua(transport => 'tcp');
    $t->send_raw($msg);
    $t->recv_raw(0.05);
}
# this side closed every torture connection: once sipwake has closed them all it has read
# what each sent; the datagrams were read before still_serves' REGISTER, on the same socket
ok($sw->wait_tcp_connections(0, 10), 'sipwake read and closed every torture connection');
still_serves('the torture corpus');
ok($sw->alive, 'alive after the torture corpus');
$sw->signal('USR1');
ok($sw->wait_log(qr/sipwake_core_parse_errors [1-9]\d*/), 'parse errors counted');
ok($sw->wait_log(qr/sipwake_core_drop_requests [1-9]\d*/), 'drops counted');
ok($sw->stop, 'clean shutdown, no sanitizer report');
done_testing;
