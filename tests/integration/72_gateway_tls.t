#!/usr/bin/perl
# Gateway mode over a TLS upstream: sipwake opens the TLS connection itself and checks the
# upstream's certificate against [tls] ca and the upstream's address. A stand-in upstream
# (IO::Socket::SSL on 127.0.0.2, certificate for IP 127.0.0.2) answers the relayed REGISTER
# 200. Against a CA that did not sign that certificate, the handshake fails and is logged,
# and the phone gets 408 at once; so does one behind an upstream that refuses connections.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use IO::Socket::SSL;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use Sipwake;

my $dir = File::Temp::tempdir('tls-upstream-XXXXXX', TMPDIR => 1, CLEANUP => 1);
open(my $stderr, '>&', \*STDERR) or die;
open(STDERR, '>', '/dev/null') or die; # openssl's progress dots
for my $name ('good', 'other') {
    my $ip = $name eq 'good' ? '127.0.0.2' : '127.0.0.9';
    system('openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
        '-nodes', '-days', '2', '-subj', "/CN=upstream-$name", '-addext', "subjectAltName=IP:$ip",
        '-keyout', "$dir/$name.key", '-out', "$dir/$name.pem") == 0
        or BAIL_OUT('openssl could not make a certificate');
}
open(STDERR, '>&', $stderr) or die;

# The stand-in upstream: answers every request 200 (Contacts echoed), for 15 s at most;
# what it received goes to $dir/received.
my $port = Sipwake::free_port();
my $srv = IO::Socket::SSL->new(LocalAddr => '127.0.0.2', LocalPort => $port, Listen => 5,
    ReuseAddr => 1, SSL_cert_file => "$dir/good.pem", SSL_key_file => "$dir/good.key")
    or die "tls listen: $SSL_ERROR";
my $child = fork() // die;
if ($child == 0) {
    open my $log, '>', "$dir/received" or die;
    $log->autoflush(1);
    my $end = time + 15;
    while (time < $end) {
        my $c = $srv->accept or next;
        my $buf = '';
        while (time < $end) {
            my $n = sysread($c, my $chunk, 65535);
            last unless $n;
            $buf .= $chunk;
            while ($buf =~ /\r\n\r\n/) {
                my $he = index($buf, "\r\n\r\n") + 4;
                my ($cl) = substr($buf, 0, $he) =~ /^Content-Length:\s*(\d+)/mi;
                last if length($buf) < $he + ($cl // 0);
                my $m = substr($buf, 0, $he + ($cl // 0), '');
                print $log $m;
                my $resp = "SIP/2.0 200 OK\r\n";
                for (split /\r\n/, substr($m, 0, $he)) {
                    $resp .= "$_\r\n" if /^(Via|From|Call-ID|CSeq|Contact)\s*:/i;
                    $resp .= "$_;tag=up\r\n" if /^To\s*:/i;
                }
                syswrite($c, $resp . "Content-Length: 0\r\n\r\n");
            }
        }
    }
    exit 0;
}
close $srv;

my $sw = Sipwake->new(config => {
    upstream => { address => "tls:127.0.0.2:$port" },
    tls => { ca => "$dir/good.pem" },
});
$sw->start;
my $ua = $sw->ua(user => 'tina');
my $up = $ua->local_port;
my $r = $ua->register(contact => "sip:tina\@127.0.0.1:$up;pn-provider=fcm;pn-param=proj;pn-prid=tok-t",
    expires => 600, timeout => 5);
is($r->{code}, 200, 'registered through a TLS upstream') or diag $sw->log;
like(Sipwake::UA::header($r, 'contact') // '', qr/pn-prid=tok-t/, 'the phone sees its own Contact');
my $got = do { local $/; open my $fh, '<', "$dir/received" or die; <$fh> };
like($got, qr{^Via: SIP/2\.0/TLS 127\.0\.0\.1:\d+;branch=z9hG4bKswg}m, 'the upstream got it over TLS, with sipwake\'s Via');
like($got, qr{^Contact: <sip:[0-9a-f]{24}\@127\.0\.0\.1:\d+;transport=tls>;expires=600\r$}m, 'and a masqueraded TLS Contact');
ok($sw->alive, 'sipwake still running');
$sw->stop;
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error/, 'no errors or sanitizer reports');

# A CA that did not sign the upstream's certificate: no connection.
my $sw2 = Sipwake->new(config => {
    upstream => { address => "tls:127.0.0.2:$port" },
    tls => { ca => "$dir/other.pem" },
});
$sw2->start;
my $ua2 = $sw2->ua(user => 'tom');
$ua2->send_raw($ua2->register_msg(expires => 600));
ok($sw2->wait_log(qr/tls: handshake with 127\.0\.0\.2:$port: .*certificate verify failed/),
    'an upstream certificate the CA did not sign: handshake refused, logged');
like($ua2->recv_raw(5) // '', qr{^SIP/2\.0 408 }, 'the phone gets 408 at once, not after Timer F');
ok($sw2->alive, 'sipwake still running');
$sw2->stop;
unlike($sw2->log, qr/AddressSanitizer|runtime error/, 'no sanitizer reports');

# Nobody listening upstream (TCP): the connect fails, the phone gets 408 at once.
my $dead = Sipwake::free_port();
my $sw3 = Sipwake->new(config => { upstream => { address => "tcp:127.0.0.2:$dead" } });
$sw3->start;
my $ua3 = $sw3->ua(user => 'ted');
my $t0 = time;
my $r3 = $ua3->register(expires => 600, timeout => 5);
is($r3->{code}, 408, 'upstream refusing connections: 408');
ok(time - $t0 < 4, 'promptly (the transaction ends with its connection)');
ok($sw3->wait_log(qr/tcp: cannot connect to 127\.0\.0\.2:$dead/), 'logged');
$sw3->stop;
unlike($sw3->log, qr/AddressSanitizer|runtime error/, 'no sanitizer reports');

# An upstream sipwake could not be reached back on: refused at start, with the reason.
my $sw4 = Sipwake->new(config => { sip => { listen => "udp:127.0.0.1:" . Sipwake::free_port() },
    upstream => { address => "tcp:127.0.0.2:$dead" } });
ok(!eval { $sw4->start; 1 }, 'an upstream over TCP without a TCP listener: sipwake does not start');
like($sw4->log, qr/\[upstream\] address: no tcp listener for 127\.0\.0\.2 \(IPv4\)/, 'and says why');

kill 'TERM', $child;
waitpid($child, 0);
done_testing;
