#!/usr/bin/perl
# TCP/TLS resource limits: tcp_message_timeout for partial headers and short bodies (with an
# idle timeout far away), the per-source connection cap, the open-file limit at start, and
# accept() backing off when the process is out of descriptors (EMFILE) instead of spinning.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Time::HiRes qw(sleep time);
use IO::Socket::INET;
use IO::Socket::SSL;
use IO::Select;
use POSIX qw(sysconf);
use Sipwake;

# Wait up to $timeout for the peer to close: true on EOF (or reset), false if still open.
sub closed_within {
    my ($sock, $timeout) = @_;
    my $end = time + $timeout;
    while ((my $left = $end - time) > 0) {
        next unless IO::Select->new($sock)->can_read($left);
        my $n = $sock->sysread(my $x, 4096);
        return 1 if !$n;
    }
    return 0;
}

# CRLFCRLF ping (RFC 5626 §3.5.1): true if the server answers with a CRLF pong.
sub pong {
    my ($sock) = @_;
    $sock->syswrite("\r\n\r\n") or return 0;
    return 0 unless IO::Select->new($sock)->can_read(3);
    my $n = $sock->sysread(my $x, 16);
    return $n && $x eq "\r\n";
}

sub tcp_from {
    my ($sw, $addr) = @_;
    return IO::Socket::INET->new(Proto => 'tcp', PeerAddr => '127.0.0.1', PeerPort => $sw->port,
        LocalAddr => $addr);
}

my $sw = Sipwake->new(config => { sip => { tcp_idle_timeout => 60, tcp_message_timeout => 1,
    tcp_max_connections_per_source => 3 } });
$sw->start;

# --- tcp_message_timeout: the idle timeout (60 s) is not what closes these
my $half = tcp_from($sw, '127.0.0.1');
$half->syswrite("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;bran");
my $t0 = time;
ok(closed_within($half, 8), 'half a header, then silence: the server closes the connection');
cmp_ok(time - $t0, '<', 6, '... after about tcp_message_timeout, not tcp_idle_timeout');

my $short = tcp_from($sw, '127.0.0.1');
$short->syswrite("MESSAGE sip:bob\@example.com SIP/2.0\r\n"
    . "Via: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKshort\r\nMax-Forwards: 70\r\n"
    . "From: <sip:a\@example.com>;tag=1\r\nTo: <sip:bob\@example.com>\r\nCall-ID: short-1\r\n"
    . "CSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nonly ten b");
ok(closed_within($short, 8), 'complete headers, 10 of 100 body bytes: closed');

my $tls = IO::Socket::SSL->new(PeerAddr => '127.0.0.1', PeerPort => $sw->tls_port,
    SSL_verify_mode => SSL_VERIFY_NONE) or die "tls: $SSL_ERROR";
$tls->syswrite("OPTIONS sip:example.com SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:1");
ok(closed_within($tls, 8), 'TLS: half a header after the handshake: closed');

# trickling bytes do not extend the deadline of the message
my $drip = tcp_from($sw, '127.0.0.1');
my $closed = 0;
$t0 = time;
for my $ch (split //, "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1\r\n") {
    last if time - $t0 > 8;
    $drip->syswrite($ch);
    if (closed_within($drip, 0.3)) { $closed = 1; last }
}
ok($closed && time - $t0 < 6, 'one byte every 0.3 s: still closed after tcp_message_timeout');
my @stalls = $sw->log =~ /incomplete message timed out/g;
ok(@stalls >= 4, 'each stall logged') or diag $sw->log;

# a connection that completes its messages is not affected
my $ua = $sw->ua(transport => 'tcp', user => 'steady');
is($ua->register(contact => 'sip:steady@127.0.0.1:1;transport=tcp', expires => 600)->{code}, 200,
   'complete messages still served');
undef $ua;

# --- per-source cap (3)
my @mine;
for my $i (1 .. 3) {
    my $s = tcp_from($sw, '127.0.0.1') or die "connect: $!";
    ok(pong($s), "connection $i from 127.0.0.1 served");
    push @mine, $s;
}
my $fourth = tcp_from($sw, '127.0.0.1');
ok(!$fourth || closed_within($fourth, 3), 'a fourth connection from 127.0.0.1 is closed at once');
ok($sw->wait_log(qr/connection from 127\.0\.0\.1 refused: tcp_max_connections_per_source/),
   'refusal logged');
my $other = tcp_from($sw, '127.0.0.2') or die "connect from 127.0.0.2: $!";
ok(pong($other), 'another source (127.0.0.2) still connects');
close shift @mine;
my $again;
for (1 .. 200) { # the server sees the close in its own time
    my $s = tcp_from($sw, '127.0.0.1');
    if ($s && pong($s)) { $again = $s; last }
    sleep 0.05;
}
ok($again, 'a closed connection frees its place for that source');
close $_ for @mine, $other, $again ? $again : ();
ok($sw->stop, 'clean shutdown');

# --- the open-file limit at start
sub nofile { # (soft, hard)
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/limits" or return;
    while (<$fh>) { return ($1, $2) if /^Max open files\s+(\d+)\s+(\d+)/ }
    return;
}
sub soft_nofile { (nofile($_[0]))[0] }
my $low = Sipwake->new(shell => 'ulimit -Sn 256');
$low->start;
cmp_ok(soft_nofile($low->{pid}), '>=', 4096 + 64,
       'soft limit 256 raised at start to fit tcp_max_connections (4096)');
like($low->log, qr/open-file limit raised from 256 to \d+/, 'raise logged');
ok($low->stop, 'clean shutdown');

my $hard = Sipwake->new(shell => 'ulimit -n 256');
ok(!eval { $hard->start; 1 }, 'hard limit 256 with tcp_max_connections 4096: refuses to start');
like($hard->log, qr/open-file limit is too low .*tcp_max_connections = 4096.*at most \d+/,
     'with an error naming the key and what fits');
my $fits = Sipwake->new(shell => 'ulimit -n 256', config => { sip => { tcp_max_connections => 16 } });
ok(eval { $fits->start; 1 }, 'the same hard limit with tcp_max_connections 16: starts');
ok($fits->stop, 'clean shutdown');

# --- out of descriptors while running: accept backs off
my $em = Sipwake->new;
$em->start;
my $pid = $em->{pid};
opendir my $dh, "/proc/$pid/fd" or die;
my $open = grep { /^\d+$/ } readdir $dh;
closedir $dh;
my ($soft, $hardlim) = nofile($pid);
# only the soft limit is lowered (and later restored): no privilege needed
system('prlimit', "--pid=$pid", '--nofile=' . ($open + 3) . ":$hardlim") == 0 or die 'prlimit';
my @held;
for (1 .. 20) { # the kernel completes the handshakes; the server accepts what it can
    my $s = tcp_from($em, '127.0.0.1') or last;
    push @held, $s;
}
ok($em->wait_log(qr/accept on .* failed: Too many open files/), 'EMFILE logged');
my $tck = sysconf(POSIX::_SC_CLK_TCK()) || 100;
sub cpu {
    open my $fh, '<', "/proc/$_[0]/stat" or return 0;
    my @f = split ' ', (split /\) /, scalar <$fh>)[1];
    return ($f[11] + $f[12]) / $tck;
}
my ($c0, $w0) = (cpu($pid), time);
sleep 2; # a measuring window, not a synchronisation
my ($c1, $w1) = (cpu($pid), time);
cmp_ok(($c1 - $c0) / ($w1 - $w0), '<', 0.25, 'no busy loop while the backlog cannot be accepted');
my @lines = $em->log =~ /accept.*failed/g;
cmp_ok(scalar @lines, '<=', 12, 'about one log line per back-off period (' . scalar(@lines) . ')');
my $u = $em->ua(user => 'udp-while-emfile');
my $r = $u->request($u->register_msg(no_contact => 1));
is($r && $r->{code}, 200, 'UDP still answered');
system('prlimit', "--pid=$pid", "--nofile=$soft:$hardlim") == 0 or die 'prlimit';
ok($em->wait_log(qr/accepting again after \d+ failed accepts/, 5), 'accepting resumes');
ok(pong($held[-1]), 'a connection that waited in the backlog is served');
close $_ for @held;
ok($em->stop, 'clean shutdown');
done_testing;
