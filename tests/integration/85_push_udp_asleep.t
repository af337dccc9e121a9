#!/usr/bin/perl
# RFC 8599 over UDP with a phone that sleeps: it registered with push parameters from a UDP
# socket that then never answers. Within [push] udp_awake_window of its last packet it is
# rung there as well as pushed; that branch must never hold the caller: the bucket timer's
# 480 comes on time, the woken phone's 486 (from a new socket) is forwarded at once, the
# caller's CANCEL is answered 487 at once — not at the stale branch's Timer B (32 s). A late
# 180 there gets a CANCEL, a late 200 an ACK and a BYE from sipwake. Once its window has
# passed the phone is only pushed, until it sends something (a CRLF keep-alive).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Sipwake;

my $dir = tempdir('push-udp-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir, 'apns') or BAIL_OUT('openssl failed');
my (undef, $aport) = Sipwake::start_apns_emulator($dir, '--log', "$dir/apns.log", '--lifetime', '180');
ok($aport, 'APNs emulator listening');
sub apns_log { open my $f, '<', "$dir/apns.log" or return ''; local $/; <$f> // '' }
sub pushed {
    my ($callid) = @_;
    for (1 .. 200) { return 1 if apns_log() =~ /\Q$callid\E.*"status": 200/; sleep 0.05 }
    return 0;
}
my %push = (apns_key_file => "$dir/apns.p8", apns_key_id => 'KEY1234567', apns_team_id => 'TEAM123456',
            apns_host => '127.0.0.1', apns_port => $aport, ca => "$dir/cert.pem", bucket_timeout => 2,
            bucket_timeout_other => 2);

my $sw = Sipwake->new(config => { push => {%push} }); # udp_awake_window: the default
# an unauthenticated SUBSCRIBE wakes nothing unless the policy says so
$sw->write_policy(<<'LUA');
return {
  push = function(req, binding, ctx)
    if ctx.method == "SUBSCRIBE" then return { skip = false } end
    return nil
  end,
}
LUA
$sw->write_config;
$sw->start;

# A phone on UDP with an alert-only token (no CallKit: nothing keeps a cancelled call).
sub phone {
    my ($sw, $user, $n, %o) = @_;
    my $ua = $sw->ua(user => $user, $o{port} ? (local_port => $o{port}) : ());
    my $r = $ua->register(contact => "sip:$user\@127.0.0.1:" . $ua->local_port
        . ";pn-provider=apns;pn-param=TEAM123456.org.example.app;pn-prid=DD000$n",
        contact_params => ";+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-00000000000$n>\"", expires => 3600);
    return ($ua, $r ? $r->{code} : 0);
}
my $caller = $sw->ua(user => 'carl');
my $cp = $caller->local_port;
sub msg {
    my ($to, $callid, $method, $tohdr) = @_;
    return "$method sip:$to\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bK$callid\r\n"
        . "Max-Forwards: 70\r\nFrom: \"Carl\" <sip:carl\@example.com>;tag=c-$callid\r\n"
        . ($tohdr // "To: <sip:$to\@example.com>") . "\r\n"
        . "Call-ID: $callid\r\nCSeq: 1 $method\r\nContact: <sip:carl\@127.0.0.1:$cp>\r\nContent-Length: 0\r\n\r\n";
}
# The caller's final response, and its ACK (§17.1.1.3).
sub final {
    my ($to, $callid, $timeout) = @_;
    my $r = $caller->expect(qr/^SIP\/2\.0 [2-6]\d\d .*CSeq: 1 INVITE/s, $timeout) // return '';
    my ($tohdr) = $r =~ /^(To: .*)\r$/m;
    $caller->send_raw(msg($to, $callid, 'ACK', $tohdr)) if $r !~ /^SIP\/2\.0 2/;
    return $r;
}
sub invite_at {
    my ($ua, $callid) = @_;
    return $ua->expect(qr/^INVITE .*Call-ID: \Q$callid\E\r/s, 3);
}

# 1. Nobody comes back: 480 when the bucket timer (2 s) fires.
my ($p1, $c1) = phone($sw, 'one', 1);
is($c1, 200, 'a phone registers over UDP with push parameters');
my $t0 = time;
$caller->send_raw(msg('one', 'b-1', 'INVITE'));
my $stale = invite_at($p1, 'b-1');
ok($stale, 'heard from just now: it is rung at its address as well as pushed');
ok(pushed('b-1'), 'and pushed');
my $r = final('one', 'b-1', 40);
my $el = time - $t0;
like($r, qr/^SIP\/2\.0 480 /, 'the caller gets 480 though the phone never answered there');
ok($el >= 1.8 && $el < 4.5, 'when the bucket timer fires (2 s), not at the branch\'s Timer B (32 s)')
    or diag "after $el s";
# a late 180 at the old address gets the CANCEL §9.1 held back; its 487 gets an ACK
if ($stale) {
    $p1->answer($stale, 180, reason => 'Ringing', tag => 'l1');
    my $cancel = $p1->expect(qr/^CANCEL /, 3);
    ok($cancel && $cancel =~ /Call-ID: b-1\r/, 'a late 180 there is CANCELled');
    if ($cancel) {
        $p1->answer($cancel, 200, reason => 'OK', tag => 'l1');
        $p1->answer($stale, 487, reason => 'Request Terminated', tag => 'l1');
        ok($p1->expect(qr/^ACK /, 3), 'and its 487 ACKed');
    }
}

# ... and a SUBSCRIBE (a non-INVITE: no CANCEL at all; pushed as a silent wake, by the
# policy's skip = false — an OPTIONS is not pushed) gets its 480 on time too
$t0 = time;
$caller->send_raw(msg('one', 'o-1', 'SUBSCRIBE'));
ok($p1->expect(qr/^SUBSCRIBE .*Call-ID: o-1\r/s, 3), 'a SUBSCRIBE rings it there too');
$r = $caller->expect(qr/^SIP\/2\.0 [2-6]\d\d .*CSeq: 1 SUBSCRIBE/s, 40) // '';
$el = time - $t0;
like($r, qr/^SIP\/2\.0 480 /, 'and gets 480');
ok($el >= 1.8 && $el < 4.5, 'when its bucket timer fires (2 s), not at the branch\'s Timer F') or diag "after $el s";

# 2. The phone wakes and answers 486 from a new socket: forwarded at once.
my ($p2, $c2) = phone($sw, 'two', 2);
is($c2, 200, 'a second phone registers over UDP');
$caller->send_raw(msg('two', 'b-2', 'INVITE'));
ok(invite_at($p2, 'b-2'), 'rung at its (silent) address');
ok(pushed('b-2'), 'and pushed');
my ($w2, $wc) = phone($sw, 'two', 2);
is($wc, 200, 'it registers again from a new socket');
my $inv = invite_at($w2, 'b-2');
ok($inv, 'the INVITE comes down the new socket');
$t0 = time;
$w2->answer($inv, 486, reason => 'Busy Here', tag => 'w2') if $inv;
$r = final('two', 'b-2', 40);
$el = time - $t0;
like($r, qr/^SIP\/2\.0 486 /, 'its 486 reaches the caller');
ok($el < 1.5, 'at once, not when the stale branch times out') or diag "after $el s";
ok($w2->expect(qr/^ACK /, 3), 'the 486 is ACKed');

# 3. The caller CANCELs while the phone is pushed: 200 and 487 at once.
my ($p3, $c3) = phone($sw, 'three', 3);
is($c3, 200, 'a third phone registers over UDP');
$caller->send_raw(msg('three', 'b-3', 'INVITE'));
my $stale3 = invite_at($p3, 'b-3');
ok($stale3, 'rung at its (silent) address');
ok(pushed('b-3'), 'and pushed');
$t0 = time;
$caller->send_raw(msg('three', 'b-3', 'CANCEL'));
ok($caller->expect(qr/^SIP\/2\.0 200 .*CSeq: 1 CANCEL/s, 3), 'the CANCEL is answered 200');
$r = final('three', 'b-3', 40);
$el = time - $t0;
like($r, qr/^SIP\/2\.0 487 /, 'the INVITE 487');
ok($el < 1.5, 'at once, not at the stale branch\'s Timer B') or diag "after $el s";
# the phone was awake after all and answers the old INVITE: sipwake ends that call itself
if ($stale3) {
    $p3->answer($stale3, 200, reason => 'OK', tag => 'l3', contact => "sip:three\@127.0.0.1:" . $p3->local_port);
    my $ack = $p3->expect(qr/^ACK /, 3);
    like($ack // '', qr/^ACK sip:three\@127\.0\.0\.1:\d+ SIP.*To: <sip:three\@example\.com>;tag=l3\r/s,
         'a late 200 there is ACKed (to its Contact, in its dialog)');
    my $bye = $p3->expect(qr/^BYE /, 3);
    like($bye // '', qr/^BYE .*CSeq: 2 BYE\r/s, 'and ended with a BYE');
    $p3->answer($bye, 200, reason => 'OK') if $bye;
}
my $more = $caller->expect(qr/^SIP\/2\.0 /, 1);
ok(!defined $more, 'the caller hears nothing more') or diag $more;

ok($sw->alive, 'sipwake still running');
$sw->stop;
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error/, 'no errors or sanitizer reports');

# 4. The awake window: a phone not heard from for udp_awake_window is only pushed, until it
# sends something.
my $sw2 = Sipwake->new(config => { push => { %push, udp_awake_window => 1, bucket_timeout => 6 } });
$sw2->start;
$caller = $sw2->ua(user => 'carl');
$cp = $caller->local_port;
my ($p4, $c4) = phone($sw2, 'four', 4);
is($c4, 200, 'a phone registers over UDP (udp_awake_window = 1)');
sleep 1.5; # the window passes: the condition under test, not a synchronisation
$caller->send_raw(msg('four', 'w-1', 'INVITE'));
ok(pushed('w-1'), 'silent for longer than the window: pushed');
ok(!defined $p4->expect(qr/^INVITE /, 0.5), 'and not rung at its old address');
like(final('four', 'w-1', 10), qr/^SIP\/2\.0 480 /, '480 when the bucket timer fires');
$p4->send_raw("\r\n\r\n"); # a keep-alive
$caller->send_raw(msg('four', 'w-2', 'INVITE'));
my $inv4 = invite_at($p4, 'w-2');
ok($inv4, 'after a CRLF keep-alive from it, it is rung there again');
$p4->answer($inv4, 603, reason => 'Decline', tag => 'd4') if $inv4;
like(final('four', 'w-2', 5), qr/^SIP\/2\.0 603 /, 'and its answer is the caller\'s');
# an awake phone that answers busy where it was rung: it answered, so its push wait ends and
# the caller hears busy now, not when the bucket timer (6 s) fires
$p4->send_raw("\r\n\r\n");
$caller->send_raw(msg('four', 'w-3', 'INVITE'));
my $inv5 = invite_at($p4, 'w-3');
ok($inv5, 'rung again after another keep-alive');
my $t5 = time;
$p4->answer($inv5, 486, reason => 'Busy Here', tag => 'd5') if $inv5;
like(final('four', 'w-3', 10), qr/^SIP\/2\.0 486 /, 'its 486 is the caller\'s');
ok(time - $t5 < 3, 'at once, not at the bucket timer') or diag 'after ' . (time - $t5) . ' s';
ok($sw2->alive, 'sipwake still running');
$sw2->stop;
unlike($sw2->log, qr/ERROR|AddressSanitizer|runtime error/, 'no errors or sanitizer reports');
done_testing;
