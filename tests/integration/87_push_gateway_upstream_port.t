#!/usr/bin/perl
# Gateway mode with a UDP upstream (Kamailio on 127.0.0.2): only the upstream's own socket
# is the upstream. A request to a phone's masqueraded key from the upstream's address but
# another port (anyone on that host, or a forged UDP source address) is not the
# authenticated upstream: its SUBSCRIBE is not pushed and the key does not lead to the
# phone (it goes up to the PBX like any request from outside). The same SUBSCRIBE relayed by
# Kamailio itself is the upstream's, and wakes the phone.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Sipwake;
use Kamailio;

plan skip_all => 'kamailio is not installed' unless -x '/usr/sbin/kamailio';

my $dir = tempdir('push-gw-port-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir, 'apns') or BAIL_OUT('openssl failed');
my (undef, $aport) = Sipwake::start_apns_emulator($dir, '--log', "$dir/apns.log", '--lifetime', '120');
ok($aport, 'APNs emulator listening');
sub apns_log { open my $f, '<', "$dir/apns.log" or return ''; local $/; <$f> // '' }

my $kam = Kamailio->new(defines => ['MAX_EXPIRES=600']);
$kam->start;
my $kp = $kam->port;
my $sw = Sipwake->new(config => {
    upstream => { address => "udp:127.0.0.2:$kp" },
    push => { apns_key_file => "$dir/apns.p8", apns_key_id => 'KEY1234567', apns_team_id => 'TEAM123456',
              apns_host => '127.0.0.1', apns_port => $aport, ca => "$dir/cert.pem", bucket_timeout => 8,
              bucket_timeout_other => 8 },
});
$sw->start;
my $port = $sw->port;

my $phone = $sw->ua(user => 'alice', transport => 'tcp');
my $r = $phone->register(contact => "sip:alice\@127.0.0.1:" . $phone->local_port
    . ";transport=tcp;pn-provider=apns;pn-param=TEAM123456.org.example.app;pn-prid=BBBB02", expires => 3600);
is($r->{code}, 200, 'the phone registered through sipwake');
ok($sw->disconnect($phone), 'asleep: sipwake saw its connection close');
my ($key) = $kam->ul_dump =~ m{sip:([0-9a-f]{24})\@127\.0\.0\.1:$port\b};
ok($key, 'Kamailio holds its masqueraded contact');

sub subscribe {
    my ($ua, $ruri, $callid) = @_;
    my $p = $ua->local_port;
    my $host = $ua->{local_addr} // '127.0.0.1';
    $ua->send_raw("SUBSCRIBE $ruri SIP/2.0\r\nVia: SIP/2.0/UDP $host:$p;rport;branch=z9hG4bK$callid\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:x\@example.com>;tag=$callid\r\nTo: <sip:alice\@example.com>\r\n"
        . "Call-ID: $callid\r\nCSeq: 1 SUBSCRIBE\r\nEvent: presence\r\nExpires: 600\r\n"
        . "Contact: <sip:x\@$host:$p>\r\nContent-Length: 0\r\n\r\n");
}

# 1. from the upstream's address, another port: not the upstream
my $mallory = $sw->ua(user => 'mallory', local_addr => '127.0.0.2');
isnt($mallory->local_port, $kp, 'a sender on the upstream\'s host, another port');
subscribe($mallory, "sip:$key\@127.0.0.1:$port", 'spoof-1');
my $fin = $mallory->expect(qr/^SIP\/2\.0 [2-6]\d\d .*Call-ID: spoof-1\r/s, 4);
like($fin // '', qr/^SIP\/2\.0 404 /, 'its SUBSCRIBE to the key goes up to the PBX, which knows no such user (404)');
unlike(apns_log(), qr/spoof-1/, 'and nobody is pushed');
like($sw->log, qr/gateway: a request from the upstream's address 127\.0\.0\.2 over UDP from port \d+, not \d+: treated as any other sender/,
     'and the operator is told why (a PBX sending from another socket)');

# 2. the same SUBSCRIBE relayed by Kamailio from its own socket: the upstream's
my $carol = $sw->ua(user => 'carol', peer => '127.0.0.2', peer_port => $kp);
subscribe($carol, 'sip:alice@example.com', 'real-1');
my $log = '';
for (1 .. 100) { $log = apns_log(); last if $log =~ /real-1/; sleep 0.05 }
like($log, qr{/3/device/BBBB02[^\n]*real-1}, 'the upstream\'s SUBSCRIBE wakes the phone (an authenticated sender)');

ok($sw->alive, 'sipwake still running');
$sw->stop;
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error/, 'no errors or sanitizer reports');
$kam->stop;
done_testing;
