#!/usr/bin/perl
# Gateway mode with a trusted upstream (Flexisip issue #26: the PBX's registration lapsed
# while the phone slept, and pushes stopped). Kamailio accepts sipwake's REGISTERs without a
# challenge and grants at most 10 s; sipwake authenticates the phones itself. A push phone
# registered for an hour stays registered upstream: sipwake refreshes the masqueraded
# contact on its own before each 10 s run out. A plain phone registered for 3 s is removed
# upstream by sipwake once its binding expires. Also: Path mode (RFC 3327), where Kamailio
# keeps the phone's Contact (without pn-* params) behind a Path to sipwake.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Time::HiRes qw(sleep time);
use Sipwake;
use Kamailio;

plan skip_all => 'kamailio is not installed' unless -x '/usr/sbin/kamailio';

my $kam = Kamailio->new(defines => ['WITH_RELAY', 'MAX_EXPIRES=10']);
$kam->start;
my $kp = $kam->port;
my $sw = Sipwake->new(config => {
    upstream => { address => "udp:127.0.0.2:$kp", trusted => 'yes' },
    auth => { enabled => 'yes', algorithms => 'MD5' },
    registrar => { min_expires => 1 },
});
my ($rc, $out) = $sw->run_bin('user', 'add', 'alice@example.com', 'pw-alice');
is($rc, 0, 'user add alice') or diag $out;
($rc, $out) = $sw->run_bin('user', 'add', 'dave@example.com', 'pw-dave');
is($rc, 0, 'user add dave') or diag $out;
$sw->start;
my $port = $sw->port;

my $alice = $sw->ua(user => 'alice');
my $ap = $alice->local_port;
my $contact = "sip:alice\@127.0.0.1:$ap;pn-provider=apns;pn-param=TEAM1.org.example.voip;pn-prid=70ca";
my $r = $alice->register(contact => $contact, expires => 3600);
is($r->{code}, 401, 'sipwake challenges the phone itself');
like(Sipwake::UA::header($r, 'server') // '', qr/sipwake/, 'its own challenge');
is($kam->ul_dump =~ /alice/ ? 1 : 0, 0, 'nothing relayed before authentication');
$r = $alice->register(contact => $contact, expires => 3600, password => 'pw-alice');
is($r->{code}, 200, 'authenticated: relayed, 200');
my ($c) = Sipwake::UA::header($r, 'contact');
like($c // '', qr/;expires=(359\d|3600)\b/, 'the phone keeps its hour, though the upstream gave 10 s');
my $t0 = time;
my $dump = $kam->ul_dump;
my ($key) = $dump =~ m{sip:([0-9a-f]{24})\@127\.0\.0\.1:$port\b};
ok($key, 'Kamailio holds the masqueraded contact') or diag $dump;

# a plain phone for 3 s: its binding ends here, and sipwake removes it upstream
my $dave = $sw->ua(user => 'dave');
$r = $dave->register(expires => 3, password => 'pw-dave');
is($r->{code}, 200, 'dave registered for 3 s');
like($kam->ul_dump, qr/AoR: dave/, 'Kamailio has dave');

# dave's binding ends at 3 s: sipwake removes it upstream
ok($sw->wait_log(qr/no binding for key [0-9a-f]{24} any more, removing it upstream/, 10), 'the removal is logged');
ok(Sipwake::wait_until(sub { $kam->ul_dump !~ /AoR: dave/ }, 5), 'dave\'s expired binding was removed upstream');
# Past the upstream's 10 s, the push phone is still registered there, by sipwake's refresh
# (time passing is the condition under test, not a synchronisation).
sleep(13 - (time - $t0)) if time - $t0 < 13;
$dump = $kam->ul_dump;
like($dump, qr/$key/, '13 s later Kamailio still has the push phone\'s contact') or diag $dump;
like($dump, qr/Call-ID: sw[0-9a-f]{12}-/, 'refreshed by sipwake\'s own REGISTER') or diag $dump;

# The upstream's requests for the key reach the phone (sent through Kamailio, WITH_RELAY:
# only its own socket is the upstream).
my $pbx = $sw->ua(user => 'pbx', peer => '127.0.0.2', peer_port => $kp);
my $pp = $pbx->local_port;
$pbx->send_raw("OPTIONS sip:$key\@127.0.0.1:$port SIP/2.0\r\n"
    . "Via: SIP/2.0/UDP 127.0.0.1:$pp;rport;branch=z9hG4bKgt1\r\nMax-Forwards: 70\r\n"
    . "From: <sip:pbx\@example.com>;tag=p1\r\nTo: <sip:alice\@example.com>\r\n"
    . "Call-ID: gtopt1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
my $opt = $alice->expect(qr/^OPTIONS /, 3);
like($opt // '', qr{^OPTIONS sip:alice\@127\.0\.0\.1:$ap SIP/2\.0}, 'a request for the key reaches the phone');
$alice->answer($opt, 200, reason => 'OK') if $opt;
like($pbx->recv_raw(3) // '', qr/^SIP\/2\.0 200/, 'its answer goes back');

# A restart keeps the keys: the same request still reaches the phone.
$sw->stop;
$sw->start;
like($sw->log, qr/gateway: 1 stored bindings mapped to upstream keys/, 'after a restart the binding is mapped again');
# a UDP push binding is rung directly only when heard from lately ([push] udp_awake_window):
# the restarted sipwake has not heard alice yet, so she sends a keep-alive first
$alice->send_raw("\r\n\r\n");
$pbx->send_raw("OPTIONS sip:$key\@127.0.0.1:$port SIP/2.0\r\n"
    . "Via: SIP/2.0/UDP 127.0.0.1:$pp;rport;branch=z9hG4bKgt2\r\nMax-Forwards: 70\r\n"
    . "From: <sip:pbx\@example.com>;tag=p1\r\nTo: <sip:alice\@example.com>\r\n"
    . "Call-ID: gtopt2\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
$opt = $alice->expect(qr/^OPTIONS /, 3);
ok($opt, 'the key still leads to the phone after the restart');
$alice->answer($opt, 200, reason => 'OK') if $opt;
ok($sw->alive, 'sipwake still running');
$sw->stop;
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error/, 'no errors or sanitizer reports');
$kam->stop;

# ---- Path mode
my $kam2 = Kamailio->new(defines => ['WITH_AUTH', 'WITH_PATH']);
$kam2->start;
my $kp2 = $kam2->port;
my $sw2 = Sipwake->new(config => { upstream => { address => "udp:127.0.0.2:$kp2", path => 'yes' } });
$sw2->start;
my $port2 = $sw2->port;
my $erin = $sw2->ua(user => 'erin');
my $ep = $erin->local_port;
my $econtact = "sip:erin\@127.0.0.1:$ep;pn-provider=fcm;pn-param=proj;pn-prid=tok-e";
$r = $erin->register(contact => $econtact, expires => 600, password => 'secret');
is($r->{code}, 200, 'Path mode: registered through sipwake with Kamailio\'s credentials');
$dump = $kam2->ul_dump;
like($dump, qr{Address: sip:erin\@127\.0\.0\.1:$ep\b}, 'Kamailio holds the phone\'s own Contact') or diag $dump;
unlike($dump, qr/pn-|tok-e/, 'without push params');
like($dump, qr{Path: <sip:[0-9a-f]{24}\@127\.0\.0\.1:$port2;lr>}, 'behind a Path to sipwake') or diag $dump;
my $frank = $sw2->ua(user => 'frank', peer => '127.0.0.2', peer_port => $kp2);
my $fp = $frank->local_port;
$frank->send_raw("MESSAGE sip:erin\@example.com SIP/2.0\r\n"
    . "Via: SIP/2.0/UDP 127.0.0.1:$fp;rport;branch=z9hG4bKgp1\r\nMax-Forwards: 70\r\n"
    . "From: <sip:frank\@example.com>;tag=f1\r\nTo: <sip:erin\@example.com>\r\n"
    . "Call-ID: gpmsg1\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi");
my $msg = $erin->expect(qr/^MESSAGE /, 5);
like($msg // '', qr{^MESSAGE sip:erin\@127\.0\.0\.1:$ep SIP/2\.0}, 'a MESSAGE through Kamailio reaches the phone by the Path') or diag $kam2->log;
unlike($msg // '', qr/^Route:/mi, 'sipwake took its Path entry off');
$erin->answer($msg, 200, reason => 'OK') if $msg;
like($frank->expect(qr/^SIP\/2\.0 /, 5) // '', qr/^SIP\/2\.0 200/, 'the sender got the 200');
ok($sw2->alive, 'sipwake (Path) still running');
$sw2->stop;
unlike($sw2->log, qr/ERROR|AddressSanitizer|runtime error/, 'no errors or sanitizer reports');
done_testing;
