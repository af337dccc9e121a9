#!/usr/bin/perl
# Gateway mode (DESIGN §1) with Kamailio from Debian as the upstream registrar/PBX, on
# loopback: Kamailio on 127.0.0.2 holds the phones' Digest credentials and challenges every
# REGISTER. A phone registers through sipwake with push params: the challenge comes back
# from Kamailio, the credentials go up, and only Kamailio's 2xx stores the phone's binding
# here. Kamailio's location holds sipwake's masqueraded address (no pn-* params), sipwake's
# holds the phone's. A call placed through Kamailio to the phone's AOR reaches the phone
# via sipwake (Perl UAs, then sipp on both ends); the phone's own requests go to Kamailio,
# without its push params. Last, the same over a TCP upstream.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Sipwake;
use Kamailio;

plan skip_all => 'kamailio is not installed' unless -x '/usr/sbin/kamailio';

my $kam = Kamailio->new(tcp => 1, defines => ['WITH_AUTH', 'WITH_RELAY', 'MAX_EXPIRES=600']);
$kam->start;
my $kp = $kam->port;
my $sw = Sipwake->new(config => { upstream => { address => "udp:127.0.0.2:$kp" } });
$sw->start;
my $port = $sw->port;
like($sw->log, qr/gateway mode: upstream udp:127\.0\.0\.2:$kp/, 'sipwake runs in gateway mode');

# The values of every header line called name in message m.
sub hdrs { my ($m, $name) = @_; my ($h) = split /\r\n\r\n/, $m // '', 2; return ($h =~ /^$name:\s*([^\r]*)/mgi) }

# ---- registration through sipwake, challenged by Kamailio
my $alice = $sw->ua(user => 'alice');
my $ap = $alice->local_port;
my $contact = "sip:alice\@127.0.0.1:$ap;pn-provider=fcm;pn-param=proj;pn-prid=tok-alice";
my $inst = ';+sip.instance="<urn:uuid:00000000-0000-0000-0000-00000000a11c>"';
my $r = $alice->register(contact => $contact, contact_params => $inst, expires => 3600);
is($r->{code}, 401, 'the REGISTER is challenged');
my ($ch) = Sipwake::UA::header($r, 'www-authenticate');
like($ch // '', qr/realm="example\.com"/, 'by the upstream (its realm)');
isnt(Sipwake::UA::header($r, 'server') // '', 'sipwake', 'the challenge is Kamailio\'s, relayed');
is($sw->sql("SELECT count(*) FROM location"), '0', 'nothing stored on a challenge');

$r = $alice->register(contact => $contact, contact_params => $inst, expires => 3600,
    password => 'wrong');
is($r->{code}, 401, 'wrong credentials: the upstream challenges again');
is($sw->sql("SELECT count(*) FROM location"), '0', 'nothing stored');

$r = $alice->register(contact => $contact, contact_params => $inst, expires => 3600,
    password => 'secret');
is($r->{code}, 200, 'right credentials: 200');
my @c = Sipwake::UA::header($r, 'contact');
is(scalar @c, 1, 'one Contact in the 200');
like($c[0] // '', qr/pn-prid=tok-alice/, 'the phone sees its own Contact, push params included');
like($c[0] // '', qr/;expires=600\b/, 'with the lifetime the upstream granted (600 of 3600)');

my $dump = $kam->ul_dump;
my ($key) = $dump =~ m{sip:([0-9a-f]{24})\@127\.0\.0\.1:$port\b};
ok($key, "Kamailio's location holds sipwake's address with a key") or diag $dump;
unlike($dump, qr/pn-|tok-alice/, 'and no push parameter');
is($sw->sql_wait("SELECT count(*) FROM location WHERE username='alice' AND contact LIKE '%pn-prid=tok-alice%'", '1'),
    '1', 'sipwake stored the phone\'s real binding');

# A re-REGISTER keeps the same key: Kamailio has one contact for alice.
$r = $alice->register(contact => $contact, contact_params => $inst, expires => 3600,
    password => 'secret');
is($r->{code}, 200, 're-REGISTER: 200');
$dump = $kam->ul_dump;
my @keys = $dump =~ m{sip:([0-9a-f]{24})\@127\.0\.0\.1:$port\b}g;
is_deeply([sort { $a cmp $b } keys %{{ map { $_ => 1 } @keys }}], [$key], 'the same masqueraded contact upstream');

# ---- a call placed through Kamailio reaches the phone via sipwake
my $carol = $sw->ua(user => 'carol', peer => '127.0.0.2', peer_port => $kp);
my $cp = $carol->local_port;
$carol->send_raw("INVITE sip:alice\@example.com SIP/2.0\r\n"
    . "Via: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bKgw1\r\nMax-Forwards: 70\r\n"
    . "From: <sip:carol\@example.com>;tag=ca1\r\nTo: <sip:alice\@example.com>\r\n"
    . "Call-ID: gwcall1\r\nCSeq: 1 INVITE\r\nContact: <sip:carol\@127.0.0.1:$cp>\r\n"
    . "Content-Length: 0\r\n\r\n");
my $inv = $alice->expect(qr/^INVITE /, 5);
ok($inv, 'the phone got the INVITE') or diag $kam->log;
like($inv // '', qr{^INVITE sip:alice\@127\.0\.0\.1:$ap SIP/2\.0\r\n}, 'at its own Contact, push params stripped');
my @via = hdrs($inv, 'Via');
is(scalar @via, 3, 'through Kamailio and sipwake (three Vias)');
$alice->answer($inv, 180, reason => 'Ringing', tag => 'al1', contact => "sip:alice\@127.0.0.1:$ap;pn-provider=fcm;pn-param=proj;pn-prid=tok-alice");
my $ring = $carol->expect(qr/^SIP\/2\.0 180/, 5);
ok($ring, 'the caller heard it ring');
my ($rc180) = hdrs($ring, 'Contact');
like($rc180 // '', qr/^<sip:alice\@127\.0\.0\.1:$ap>$/, 'the phone\'s Contact in the 180, push params taken out');
$alice->answer($inv, 200, reason => 'OK', tag => 'al1', contact => "sip:alice\@127.0.0.1:$ap");
my $ok = $carol->expect(qr/^SIP\/2\.0 200/, 5);
ok($ok, 'the caller got the 200');
my @rr = hdrs($ok, 'Record-Route');
ok(scalar(@rr) >= 2, 'Record-Routed by Kamailio and sipwake') or diag "@rr";
# ACK and BYE along the route set: Kamailio first (carol's socket talks to it), then sipwake.
my $routes = join('', map { "Route: $_\r\n" } @rr);
my $to = "<sip:alice\@example.com>;tag=al1";
$carol->send_raw("ACK sip:alice\@127.0.0.1:$ap SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bKgw1a\r\n"
    . $routes . "Max-Forwards: 70\r\nFrom: <sip:carol\@example.com>;tag=ca1\r\nTo: $to\r\n"
    . "Call-ID: gwcall1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n");
ok($alice->expect(qr/^ACK /, 5), 'the ACK reached the phone');
$carol->send_raw("BYE sip:alice\@127.0.0.1:$ap SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bKgw1b\r\n"
    . $routes . "Max-Forwards: 70\r\nFrom: <sip:carol\@example.com>;tag=ca1\r\nTo: $to\r\n"
    . "Call-ID: gwcall1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n");
my $bye = $alice->expect(qr/^BYE /, 5);
ok($bye, 'the BYE reached the phone');
$alice->answer($bye, 200, reason => 'OK');
ok($carol->expect(qr/^SIP\/2\.0 200/, 5), 'the caller got the BYE\'s 200');

# ---- the phone's own requests go to Kamailio, without its push params
my $bob = $sw->ua(user => 'bob', peer => '127.0.0.2', peer_port => $kp);
$r = $bob->register(password => 'secret', expires => 600);
is($r->{code}, 200, 'bob (a desk phone) registered with Kamailio directly');
$alice->send_raw("INVITE sip:bob\@example.com SIP/2.0\r\n"
    . "Via: SIP/2.0/UDP 127.0.0.1:$ap;rport;branch=z9hG4bKgw2\r\nMax-Forwards: 70\r\n"
    . "Route: <sip:127.0.0.1:$port;lr>\r\n"
    . "From: <sip:alice\@example.com>;tag=al2\r\nTo: <sip:bob\@example.com>\r\n"
    . "Call-ID: gwcall2\r\nCSeq: 1 INVITE\r\nContact: <$contact>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-00000000a11c>\"\r\n"
    . "Content-Length: 0\r\n\r\n");
my $binv = $bob->expect(qr/^INVITE /, 5);
ok($binv, 'the phone\'s call reached bob through Kamailio') or diag $sw->log;
my ($bc) = hdrs($binv, 'Contact');
unlike($bc // '', qr/pn-/, 'the Contact the PBX saw has no push params');
like($bc // '', qr/^<sip:alice\@127\.0\.0\.1:$ap>;\+sip\.instance=/, 'the rest of it is kept');
$bob->answer($binv, 486, reason => 'Busy Here');
my $busy = $alice->expect(qr/^SIP\/2\.0 486/, 5);
ok($busy, 'bob\'s 486 came back to the phone');

# ---- a request from the upstream for a key sipwake does not know: 480 (sent by Kamailio,
# WITH_RELAY, from its own socket: only that one is the upstream)
my $pbx = $sw->ua(user => 'pbx', peer => '127.0.0.2', peer_port => $kp);
my $pp = $pbx->local_port;
$pbx->send_raw("MESSAGE sip:0123456789abcdef01234567\@127.0.0.1:$port SIP/2.0\r\n"
    . "Via: SIP/2.0/UDP 127.0.0.1:$pp;rport;branch=z9hG4bKgw3\r\nMax-Forwards: 70\r\n"
    . "From: <sip:carol\@example.com>;tag=ca3\r\nTo: <sip:alice\@example.com>\r\n"
    . "Call-ID: gwmsg3\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n");
like($pbx->recv_raw(3) // '', qr/^SIP\/2\.0 480 /, 'unknown key from the upstream: 480');

# ---- unregistering goes upstream too
$r = $alice->register(contact => $contact, contact_params => $inst, expires => 0, password => 'secret');
is($r->{code}, 200, 'unregister: 200');
unlike($kam->ul_dump, qr/$key/, 'Kamailio dropped the masqueraded contact');
is($sw->sql_wait("SELECT count(*) FROM location WHERE username='alice'", '0'), '0', 'sipwake dropped the binding');

# ---- sipp: a call placed through Kamailio to a sipp phone registered through sipwake
my $phone_port = Sipwake::free_port();
{
    my $reg = $sw->ua(user => 'ivy', local_port => $phone_port);
    $r = $reg->register(contact => "sip:ivy\@127.0.0.1:$phone_port;pn-provider=fcm;pn-param=proj;pn-prid=tok-ivy",
        expires => 600, password => 'secret');
    is($r->{code}, 200, 'sipp phone: registered through sipwake (credentials held by Kamailio)');
    close $reg->sock;
}
my $uas = $sw->sipp_bg('uas_call', port => $phone_port, server_side => 1);
ok(Sipwake::wait_listening($phone_port, 'udp'), 'the sipp phone listens');
my ($src, $smsgs, $serr) = $sw->sipp('uac_call', set => { callee => 'ivy' }, target => "127.0.0.2:$kp");
is($src, 0, 'sipp caller: call through Kamailio answered, ACKed and hung up') or diag $serr;
my ($urc, $umsgs, $uerr) = $sw->sipp_wait($uas);
is($urc, 0, 'sipp phone rang, answered, got the ACK and the BYE') or diag $uerr;
like($umsgs, qr/^INVITE sip:ivy\@127\.0\.0\.1:$phone_port SIP\/2\.0/m, 'the phone saw its own Contact, no push params');
like($umsgs, qr/^Record-Route: <sip:[0-9a-f]+\@127\.0\.0\.1:$port;lr;ftag=/m, 'sipwake Record-Routed the call');

ok($sw->alive, 'sipwake still running');
$sw->stop;
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error/, 'no errors or sanitizer reports');

# ---- the upstream over TCP: sipwake opens the connection
my $swt = Sipwake->new(config => { upstream => { address => "tcp:127.0.0.2:$kp" } });
$swt->start;
my $tport = $swt->port;
my $gina = $swt->ua(user => 'gina');
my $gp = $gina->local_port;
$r = $gina->register(contact => "sip:gina\@127.0.0.1:$gp;pn-provider=fcm;pn-param=proj;pn-prid=tok-g",
    expires => 600, password => 'secret');
is($r->{code}, 200, 'TCP upstream: the phone registered (challenge and 200 over sipwake\'s connection)');
like($kam->ul_dump, qr{sip:[0-9a-f]{24}\@127\.0\.0\.1:$tport;transport=tcp}, 'Kamailio holds a TCP contact of sipwake\'s');
my $hank = $swt->ua(user => 'hank', peer => '127.0.0.2', peer_port => $kp);
my $hp = $hank->local_port;
$hank->send_raw("MESSAGE sip:gina\@example.com SIP/2.0\r\n"
    . "Via: SIP/2.0/UDP 127.0.0.1:$hp;rport;branch=z9hG4bKgw9\r\nMax-Forwards: 70\r\n"
    . "From: <sip:hank\@example.com>;tag=h1\r\nTo: <sip:gina\@example.com>\r\n"
    . "Call-ID: gwmsg9\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi");
my $gm = $gina->expect(qr/^MESSAGE /, 5);
ok($gm, 'a MESSAGE from the upstream over TCP reached the phone') or diag $swt->log;
$gina->answer($gm, 200, reason => 'OK') if $gm;
like($hank->expect(qr/^SIP\/2\.0 /, 5) // '', qr/^SIP\/2\.0 200/, 'and its 200 went back');
ok($swt->alive, 'sipwake (TCP upstream) still running');
$swt->stop;
unlike($swt->log, qr/ERROR|AddressSanitizer|runtime error/, 'no errors or sanitizer reports');
done_testing;
