#!/usr/bin/perl
# Push in gateway mode, with Kamailio from Debian as the PBX (on 127.0.0.2, holding the
# credentials) and the APNs emulator: an iPhone registers through sipwake over TCP and goes
# to sleep; a call placed through Kamailio reaches sipwake's masqueraded contact, is pushed
# and parked; the phone's re-REGISTER goes up to Kamailio (challenged, then 200) and its 2xx
# wakes the call, which rings the phone on its new connection and is answered.
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

my $dir = tempdir('push-gw-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir, 'apns') or BAIL_OUT('openssl failed');
my (undef, $aport) = Sipwake::start_apns_emulator($dir, '--log', "$dir/apns.log", '--lifetime', '120');
ok($aport, 'APNs emulator listening');
sub apns_log { open my $f, '<', "$dir/apns.log" or return ''; local $/; <$f> // '' }

my $kam = Kamailio->new(defines => ['WITH_AUTH', 'MAX_EXPIRES=600']);
$kam->start;
my $kp = $kam->port;
my $sw = Sipwake->new(config => {
    upstream => { address => "udp:127.0.0.2:$kp" },
    offline => { enabled => 'yes' },
    push => { apns_key_file => "$dir/apns.p8", apns_key_id => 'KEY1234567', apns_team_id => 'TEAM123456',
              apns_host => '127.0.0.1', apns_port => $aport, ca => "$dir/cert.pem", bucket_timeout => 8 },
});
$sw->start;
my $PN = 'pn-provider=apns;pn-param=TEAM123456.org.example.app.voip%26remote;pn-prid=AAAA01:voip%26BBBB02:remote';
my $INST = ';+sip.instance="<urn:uuid:00000000-0000-0000-0000-0000000a11ce>"';

my $phone = $sw->ua(user => 'alice', transport => 'tcp');
my $r = $phone->register(contact => "sip:alice\@127.0.0.1:" . $phone->local_port . ";transport=tcp;$PN",
    contact_params => $INST, expires => 3600, password => 'secret');
is($r->{code}, 200, 'the iPhone registered through sipwake (Kamailio challenged, then 200)');
ok($sw->disconnect($phone), 'asleep: sipwake saw its connection close');

my $carol = $sw->ua(user => 'carol', peer => '127.0.0.2', peer_port => $kp);
my $cp = $carol->local_port;
my $t0 = time;
$carol->send_raw("INVITE sip:alice\@example.com SIP/2.0\r\n"
    . "Via: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bKpg1\r\nMax-Forwards: 70\r\n"
    . "From: \"Carol\" <sip:carol\@example.com>;tag=ca1\r\nTo: <sip:alice\@example.com>\r\n"
    . "Call-ID: gwpush1\r\nCSeq: 1 INVITE\r\nContact: <sip:carol\@127.0.0.1:$cp>\r\n"
    . "Content-Length: 0\r\n\r\n");
my $log = '';
for (1 .. 200) { $log = apns_log(); last if $log =~ /"event": "push".*gwpush1/; sleep 0.05 }
like($log, qr{"path": "/3/device/AAAA01", "kid": "KEY1234567", "topic": "org.example.app.voip", "push_type": "voip"[^\n]*gwpush1[^\n]*"status": 200},
     'the PBX\'s call was pushed to the sleeping iPhone (VoIP, with its Call-ID)');
like($log, qr/\\"from-uri\\":\\"sip:carol\@example\.com\\",\\"display-name\\":\\"Carol\\"/, 'naming the caller');

my $woken = $sw->ua(user => 'alice', transport => 'tcp');
my $wp = $woken->local_port;
my $contact = "sip:alice\@127.0.0.1:$wp;transport=tcp;$PN";
$r = $woken->register(contact => $contact, contact_params => $INST, expires => 3600);
is($r->{code}, 401, 'woken, its REGISTER goes to Kamailio and is challenged');
ok(!defined $woken->expect(qr/^INVITE /, 0.3), 'which wakes nothing');
$r = $woken->request($woken->register_msg(contact => $contact, contact_params => $INST, expires => 3600,
    authorization => $woken->authorization($r, password => 'secret')));
is($r->{code}, 200, 'Kamailio accepts its credentials');
my $inv = $woken->expect(qr/^INVITE /, 3);
ok($inv, 'the parked call came down the new connection');
like($inv // '', qr/Call-ID: gwpush1\r/, 'the PBX\'s call');
ok(time - $t0 < 8, 'before the bucket timer');
$woken->answer($inv, 180, reason => 'Ringing', tag => 'a1', contact => "sip:alice\@127.0.0.1:$wp;transport=tcp") if $inv;
ok($carol->expect(qr/^SIP\/2\.0 180/, 5), 'the caller hears it ring, through Kamailio');
$woken->answer($inv, 200, reason => 'OK', tag => 'a1', contact => "sip:alice\@127.0.0.1:$wp;transport=tcp") if $inv;
ok($carol->expect(qr/^SIP\/2\.0 200/, 5), 'and gets the 200');

# a MESSAGE from the PBX while the phone sleeps: stored, 202, delivered when it is back
ok($sw->disconnect($woken), 'asleep again');
$carol->send_raw("MESSAGE sip:alice\@example.com SIP/2.0\r\n"
    . "Via: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bKpgm1\r\nMax-Forwards: 70\r\n"
    . "From: <sip:carol\@example.com>;tag=cm1\r\nTo: <sip:alice\@example.com>\r\n"
    . "Call-ID: gwmsg1\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nfrom carol");
like($carol->expect(qr/^SIP\/2\.0 [2-6]\d\d .*Call-ID: gwmsg1\r/s, 5) // '', qr/^SIP\/2\.0 202 /,
     'a MESSAGE from the PBX for the sleeping phone: stored, 202 through Kamailio');
my $again = $sw->ua(user => 'alice', transport => 'tcp');
my $ap2 = $again->local_port;
my $c2 = "sip:alice\@127.0.0.1:$ap2;transport=tcp;$PN";
$r = $again->register(contact => $c2, contact_params => $INST, expires => 3600);
$r = $again->request($again->register_msg(contact => $c2, contact_params => $INST, expires => 3600,
    authorization => $again->authorization($r, password => 'secret')));
is($r->{code}, 200, 'the phone registers again through Kamailio');
my $msg = $again->expect(qr/^MESSAGE /, 3);
like($msg // '', qr/Call-ID: gwmsg1\r.*from carol$/s, 'and gets the stored MESSAGE');
$again->answer($msg, 200, reason => 'OK') if $msg;

# a SUBSCRIBE from the PBX (the upstream: an authenticated sender) wakes the sleeping phone
# silently by default; an unauthenticated one would wake nothing (77_push_wake_budget.t)
ok($sw->disconnect($again), 'asleep once more');
$carol->send_raw("SUBSCRIBE sip:alice\@example.com SIP/2.0
"
    . "Via: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bKpgs1
Max-Forwards: 70
"
    . "From: <sip:carol\@example.com>;tag=cs1
To: <sip:alice\@example.com>
"
    . "Call-ID: gwsub1
CSeq: 1 SUBSCRIBE
Event: presence
Expires: 600
"
    . "Contact: <sip:carol\@127.0.0.1:$cp>
Content-Length: 0

");
for (1 .. 200) { $log = apns_log(); last if $log =~ /gwsub1[^
]*"status"/; sleep 0.05 }
like($log, qr{"path": "/3/device/BBBB02"[^
]*"push_type": "background", "priority": "5"[^
]*gwsub1},
     'a SUBSCRIBE from the PBX: a silent wake (background push) to the remote token');

ok($sw->alive, 'sipwake still running');
$sw->stop;
$kam->stop;
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error/, 'no errors or sanitizer reports');
done_testing;
