#!/usr/bin/perl
# A UDP push binding heard from lately is rung at its old address as well as pushed. When the
# push fails for good — the service says the token is dead (APNs 410), or it cannot be sent
# at all (the policy names a credential set that does not exist) — the caller gets its
# answer soon (RFC 8599 §5.6.2): once the silent INVITE branch's grace is over (4 s, for a
# phone that is awake but slow to answer: 85_push_udp_slow_answer.t), not when the branch to
# the old address reaches its Timer B (32 s) or the bucket timer (here 20 s) fires.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Sipwake;

my $dir = tempdir('push-udp-failed-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir, 'apns') or BAIL_OUT('openssl failed');
open my $sf, '>', "$dir/script.json" or die;
print $sf '{"DD0001": {"status": 410, "reason": "Unregistered"}}';
close $sf;
my (undef, $aport) = Sipwake::start_apns_emulator($dir, '--script', "$dir/script.json",
    '--log', "$dir/apns.log", '--lifetime', '120');
ok($aport, 'APNs emulator listening');
sub apns_log { open my $f, '<', "$dir/apns.log" or return ''; local $/; <$f> // '' }

my $sw = Sipwake->new(config => {
    push => { apns_key_file => "$dir/apns.p8", apns_key_id => 'KEY1234567', apns_team_id => 'TEAM123456',
              apns_host => '127.0.0.1', apns_port => $aport, ca => "$dir/cert.pem", bucket_timeout => 20 } });
$sw->write_policy(<<'LUA');
return {
  credentials = function(binding, ctx)
    if binding.aor ~= "one@example.com" then return "nosuch/set" end
    return nil
  end,
}
LUA
$sw->write_config;
$sw->start;

my $caller = $sw->ua(user => 'carl');
my $cp = $caller->local_port;
sub call {
    my ($to, $callid) = @_;
    $caller->send_raw("INVITE sip:$to\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bK$callid\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:carl\@example.com>;tag=c-$callid\r\nTo: <sip:$to\@example.com>\r\n"
        . "Call-ID: $callid\r\nCSeq: 1 INVITE\r\nContact: <sip:carl\@127.0.0.1:$cp>\r\nContent-Length: 0\r\n\r\n");
}
sub phone {
    my ($user, $prid) = @_;
    my $ua = $sw->ua(user => $user);
    my $r = $ua->register(contact => "sip:$user\@127.0.0.1:" . $ua->local_port
        . ";pn-provider=apns;pn-param=TEAM123456.org.example.app;pn-prid=$prid", expires => 3600);
    return ($ua, $r ? $r->{code} : 0);
}

# 1. the push comes back 410 Unregistered
my ($p1, $c1) = phone('one', 'DD0001');
is($c1, 200, 'a phone registers over UDP with push parameters (heard from just now)');
my $t0 = time;
call('one', 'pf-1');
ok($p1->expect(qr/^INVITE .*Call-ID: pf-1\r/s, 3), 'it is rung at its old address (it never answers there)');
my $fin = $caller->expect(qr/^SIP\/2\.0 [3-6]\d\d .*CSeq: 1 INVITE/s, 40) // '';
my $el = time - $t0;
like(apns_log(), qr/DD0001[^\n]*"status": 410/, 'the push got 410');
like($fin, qr/^SIP\/2\.0 (480|404) /, 'the caller gets 480 (RFC 8599 §5.6.2)');
ok($el < 12, 'after the grace (4 s), not at the stale branch\'s Timer B (32 s) or the bucket timer (20 s)') or diag "after $el s";

# 2. the push cannot be sent at all
my ($p2, $c2) = phone('two', 'DD0002');
is($c2, 200, 'a second phone registers over UDP');
$t0 = time;
call('two', 'pf-2');
ok($p2->expect(qr/^INVITE .*Call-ID: pf-2\r/s, 3), 'it is rung at its old address (it may be awake; it is not)');
$fin = $caller->expect(qr/^SIP\/2\.0 [3-6]\d\d .*CSeq: 1 INVITE/s, 40) // '';
$el = time - $t0;
ok($sw->wait_log(qr/INVITE pf-2: no push to two\@example\.com: no credential set/, 10), 'its push is not sent (no such credential set)');
like($fin, qr/^SIP\/2\.0 480 /, 'the caller gets 480 (not a 408 of the silent branch)');
ok($el < 12, 'soon (4 s for the phone to show it is awake), not at Timer B or the bucket timer') or diag "after $el s";

# 3. a phone rung at its old address that is awake after all: its push fails, it still rings
my ($p3, $c3) = phone('three', 'DD0003');
is($c3, 200, 'a third phone (the policy names no credential set for it either)');
call('three', 'pf-3');
my $inv = $p3->expect(qr/^INVITE .*Call-ID: pf-3\r/s, 3);
ok($inv, 'it is rung at its address');
$p3->answer($inv, 180, reason => 'Ringing', tag => 'r3') if $inv;
ok($caller->expect(qr/^SIP\/2\.0 180 .*Call-ID: pf-3\r/s, 3), 'its 180 reaches the caller');
ok(!defined $caller->expect(qr/^SIP\/2\.0 [3-6]\d\d .*Call-ID: pf-3\r/s, 2), 'and its failed push does not end the call (2 s)');
$p3->answer($inv, 486, reason => 'Busy Here', tag => 'r3') if $inv;
like($caller->expect(qr/^SIP\/2\.0 [3-6]\d\d .*Call-ID: pf-3\r/s, 3) // '', qr/^SIP\/2\.0 486 /, 'its own answer is the caller\'s');

ok($sw->alive, 'sipwake still running');
$sw->stop;
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error/, 'no errors or sanitizer reports');
done_testing;
