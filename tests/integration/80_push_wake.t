#!/usr/bin/perl
# RFC 8599 park and wake (§5.2, §5.3, §5.6.2) with the APNs emulator on loopback: an iPhone
# registered over TCP with Linphone's dual tokens goes to sleep (its connection closes). A
# call for it is answered 100 Trying, pushed as VoIP (with its Call-ID) and parked; a
# REGISTER challenged 401 wakes nothing; the authenticated re-REGISTER from a new
# connection takes the INVITE out of the bucket and it rings there. A MESSAGE nobody comes
# back for gets 480 when the bucket timer fires; a dead token (410) gets 480 at once and its
# binding is gone; a busy APNs (503, Retry-After) is tried again after the delay; a CANCEL
# while parked gets 487.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);
use Sipwake;

my $dir = tempdir('push-wake-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir, 'apns') or BAIL_OUT('openssl failed');
open my $sf, '>', "$dir/script.json" or die;
print $sf '{"DEAD0001": {"status": 410, "reason": "Unregistered"}, '
    . '"BBBB0003": {"status": 503, "reason": "ServiceUnavailable", "retry_after": 1}}';
close $sf;

my (undef, $aport) = Sipwake::start_emulator('apns', '--cert', "$dir/cert.pem",
    '--key', "$dir/key.pem", '--auth-key', "KEY1234567:TEAM123456:$dir/apns-pub.pem",
    '--script', "$dir/script.json", '--log', "$dir/apns.log", '--lifetime', '120');
ok($aport, 'APNs emulator listening');
sub apns_log { open my $f, '<', "$dir/apns.log" or return ''; local $/; <$f> // '' }

my $sw = Sipwake->new(config => {
    auth => { enabled => 'yes', algorithms => 'MD5' },
    push => { apns_key_file => "$dir/apns.p8", apns_key_id => 'KEY1234567',
              apns_team_id => 'TEAM123456', apns_host => '127.0.0.1', apns_port => $aport,
              apns_sandbox_host => '127.0.0.1', apns_sandbox_port => $aport,
              ca => "$dir/cert.pem", bucket_timeout => 5, bucket_timeout_other => 2 },
});
is(($sw->run_bin('user', 'add', 'ios@example.com', 'pw'))[0], 0, 'user ios added');
is(($sw->run_bin('user', 'add', 'gone@example.com', 'pw'))[0], 0, 'user gone added');
$sw->start;
my $port = $sw->port;
my $PN = 'pn-provider=apns;pn-param=TEAM123456.org.example.app.voip%26remote;pn-prid=AAAA01:voip%26BBBB02:remote';
my $INST = ';+sip.instance="<urn:uuid:00000000-0000-0000-0000-0000000a11ce>"';

# The iPhone registers over TCP, then sleeps.
my $phone = $sw->ua(user => 'ios', transport => 'tcp');
my $r = $phone->register(contact => "sip:ios\@127.0.0.1:" . $phone->local_port . ";transport=tcp;$PN",
    contact_params => $INST, expires => 3600, password => 'pw');
is($r->{code}, 200, 'the iPhone registered with its push tokens');
ok($sw->disconnect($phone), 'asleep: sipwake saw its connection close');

my $caller = $sw->ua(user => 'carl');
my $cp = $caller->local_port;
sub invite {
    my ($callid, $method) = @_;
    $method //= 'INVITE';
    return "$method sip:ios\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bK$callid\r\n"
        . "Max-Forwards: 70\r\nFrom: \"Carl\" <sip:carl\@example.com>;tag=c-$callid\r\nTo: <sip:ios\@example.com>\r\n"
        . "Call-ID: $callid\r\nCSeq: 1 $method\r\nContact: <sip:carl\@127.0.0.1:$cp>\r\n"
        . ($method eq 'MESSAGE' ? "Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi" : "Content-Length: 0\r\n\r\n");
}
my $t0 = time;
$caller->send_raw(invite('wake-1'));
like($caller->expect(qr/^SIP\/2\.0 100/, 3) // '', qr/^SIP\/2\.0 100 /, 'the caller gets 100 Trying');
my $pushed = '';
for (1 .. 200) { $pushed = apns_log(); last if $pushed =~ /wake-1/; sleep 0.05 }
like($pushed, qr{"path": "/3/device/AAAA01", "kid": "KEY1234567", "topic": "org.example.app.voip", "push_type": "voip"},
     'a VoIP push went to the voip token');
like($pushed, qr/\\"call-id\\":\\"wake-1\\"/, 'carrying the Call-ID');
like($pushed, qr/"push_type": "voip".*"status": 200/, 'and APNs accepted it');

# The phone wakes up: a new connection, first without credentials.
my $woken = $sw->ua(user => 'ios', transport => 'tcp');
my $wp = $woken->local_port;
my $contact = "sip:ios\@127.0.0.1:$wp;transport=tcp;$PN";
$r = $woken->register(contact => $contact, contact_params => $INST, expires => 3600);
is($r->{code}, 401, 'its first REGISTER is challenged');
ok(!defined $woken->expect(qr/^INVITE /, 0.5), 'and wakes nothing (OpenSIPS #2858)');
my $auth = $woken->authorization($r, password => 'pw');
$r = $woken->request($woken->register_msg(contact => $contact, contact_params => $INST, expires => 3600,
    authorization => $auth));
is($r->{code}, 200, 'the authenticated REGISTER: 200');
my $inv = $woken->expect(qr/^INVITE /, 3);
ok($inv, 'the parked INVITE came down the new connection');
like($inv // '', qr{^INVITE sip:ios\@127\.0\.0\.1:$wp;transport=tcp SIP/2\.0}, 'to the new contact, push params stripped');
ok(time - $t0 < 5, 'before the bucket timer');
$woken->answer($inv, 180, reason => 'Ringing', tag => 'i1', contact => "sip:ios\@127.0.0.1:$wp;transport=tcp");
ok($caller->expect(qr/^SIP\/2\.0 180/, 3), 'the caller hears it ring');
$woken->answer($inv, 200, reason => 'OK', tag => 'i1', contact => "sip:ios\@127.0.0.1:$wp;transport=tcp");
ok($caller->expect(qr/^SIP\/2\.0 200/, 3), 'and gets the 200');

# Asleep again: a MESSAGE nobody comes back for.
ok($sw->disconnect($woken), 'asleep again');
$t0 = time;
$r = $caller->request(invite('msg-1', 'MESSAGE'), 5);
is($r->{code}, 480, 'a MESSAGE for a phone that does not come back: 480');
ok(time - $t0 >= 1.8 && time - $t0 < 4, 'when the bucket timer (2 s) fires');
like(apns_log(), qr{"path": "/3/device/BBBB02", "kid": "KEY1234567", "topic": "org.example.app", "push_type": "alert"},
     'the message was pushed as an alert to the remote token');

# A CANCEL while parked.
$caller->send_raw(invite('cancel-1'));
$caller->expect(qr/^SIP\/2\.0 100/, 3);
(my $cancel = invite('cancel-1')) =~ s/^INVITE /CANCEL /;
$cancel =~ s/CSeq: 1 INVITE/CSeq: 1 CANCEL/;
$caller->send_raw($cancel);
my @got;
for (1 .. 2) { push @got, $caller->expect(qr/^SIP\/2\.0 (200|487)/, 3) // '' }
ok((grep { /^SIP\/2\.0 200 .*CSeq: 1 CANCEL/s } @got), 'the CANCEL is answered 200');
ok((grep { /^SIP\/2\.0 487 .*CSeq: 1 INVITE/s } @got), 'the parked INVITE 487');

# A dead token: 480 at once, binding gone.
my $gone = $sw->ua(user => 'gone', transport => 'tcp');
$r = $gone->register(contact => "sip:gone\@127.0.0.1:" . $gone->local_port
    . ";transport=tcp;pn-provider=apns;pn-param=TEAM123456.org.example.app;pn-prid=DEAD0001",
    expires => 3600, password => 'pw');
is($r->{code}, 200, 'a phone whose app was deleted registered');
ok($sw->disconnect($gone), 'and asleep');
(my $m2 = invite('msg-2', 'MESSAGE')) =~ s/ios\@example\.com/gone\@example.com/g;
$t0 = time;
$caller->send_raw($m2);
$r = Sipwake::UA::parse_response($caller->expect(qr/^SIP\/2\.0 \d+ .*Call-ID: msg-2/s, 5));
is($r->{code}, 480, 'its token is dead (410): 480');
ok(time - $t0 < 1.5, 'at once, not after the bucket timer');
is($sw->sql_wait("SELECT count(*) FROM location WHERE username='gone'", '0'), '0', 'and its binding is removed');
(my $m2b = $m2) =~ s/msg-2/msg-2b/g;
my $before = () = apns_log() =~ /DEAD0001/g;
$caller->send_raw($m2b);
$r = Sipwake::UA::parse_response($caller->expect(qr/^SIP\/2\.0 \d+ .*Call-ID: msg-2b/s, 5));
is($r->{code}, 480, 'the next MESSAGE: 480 (a known user with no device now; 404 is for unknown users)');
is(scalar(() = apns_log() =~ /DEAD0001/g), $before, 'and the dead token is not pushed again');
(my $m2c = $m2) =~ s/msg-2/msg-2c/g;
$m2c =~ s/gone\@example\.com/nobody\@example.com/g;
$caller->send_raw($m2c);
$r = Sipwake::UA::parse_response($caller->expect(qr/^SIP\/2\.0 \d+ .*Call-ID: msg-2c/s, 5));
is($r->{code}, 404, 'a user who does not exist: 404');

# APNs busy (503, Retry-After: 1): pushed again after a second, then 480 when the bucket
# timer leaves no room for another try.
my $busy = $sw->ua(user => 'gone', transport => 'tcp');
$r = $busy->register(contact => "sip:gone\@127.0.0.1:" . $busy->local_port
    . ";transport=tcp;pn-provider=apns;pn-param=TEAM123456.org.example.app;pn-prid=BBBB0003",
    expires => 3600, password => 'pw');
is($r->{code}, 200, 'a phone behind a busy APNs registered');
ok($sw->disconnect($busy), 'and asleep');
(my $m3 = invite('msg-3', 'MESSAGE')) =~ s/ios\@example\.com/gone\@example.com/g;
$t0 = time;
$caller->send_raw($m3);
$r = Sipwake::UA::parse_response($caller->expect(qr/^SIP\/2\.0 \d+ .*Call-ID: msg-3/s, 5));
my $took = time - $t0;
is($r->{code}, 480, 'APNs busy: 480 in the end');
ok($took >= 0.9, sprintf('after waiting out Retry-After (%.1f s)', $took));
my @tries = apns_log() =~ m{"event": "push", "path": "/3/device/BBBB0003"}g;
is(scalar @tries, 2, 'pushed twice');

# the push command with the [push] credentials of the config
my ($rc, $out) = $sw->run_bin('push', '--provider', 'apns', '--param', 'TEAM123456.org.example.app',
    '--prid', 'CAFE0001', '--type', 'message');
ok($rc == 0 && $out =~ /^apns via \[push\]: delivered, HTTP 200, id /m, 'sipwake push without --tenant uses [push]') or diag $out;
($rc, $out) = $sw->run_bin('push', '--provider', 'fcm', '--param', 'p', '--prid', 'tok');
ok($rc == 1 && $out =~ /push not sent: no FCM credentials in \[push\]/, 'a provider without credentials: says so') or diag $out;

ok($sw->alive, 'sipwake still running');
$sw->stop;
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error/, 'no errors or sanitizer reports');
done_testing;
