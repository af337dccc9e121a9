#!/usr/bin/perl
# A UDP push binding heard from lately is rung at its address and pushed; the push fails for
# good (APNs 410). A phone that is awake after all but slow to answer (a radio waking from
# idle, a lost datagram and Timer A's retransmission) must not lose the request:
# - an INVITE branch has a grace of several seconds (Timer A's 0.5, 1.5, 3.5 s) to show a
#   provisional, not 1 s;
# - a non-INVITE branch (no automatic 100: RFC 3261 §17.2.2, RFC 4320) is not ended by the
#   failed push at all: its own answer, or its Timer F, decides;
# - a 2xx from an INVITE branch ended for its silence, while the caller has no final answer
#   yet (another phone is ringing), goes to the caller (RFC 3261 §16.7 step 5), not an ACK
#   and a BYE.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Sipwake;

my $dir = tempdir('push-udp-slow-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir, 'apns') or BAIL_OUT('openssl failed');
open my $sf, '>', "$dir/script.json" or die;
print $sf '{"DD0001": {"status": 410, "reason": "Unregistered"}, "DD0002": {"status": 410, "reason": "Unregistered"},'
    . ' "DD0003": {"status": 410, "reason": "Unregistered"}}';
close $sf;
my (undef, $aport) = Sipwake::start_apns_emulator($dir, '--script', "$dir/script.json",
    '--log', "$dir/apns.log", '--lifetime', '120');
ok($aport, 'APNs emulator listening');

my $sw = Sipwake->new(config => {
    push => { apns_key_file => "$dir/apns.p8", apns_key_id => 'KEY1234567', apns_team_id => 'TEAM123456',
              apns_host => '127.0.0.1', apns_port => $aport, ca => "$dir/cert.pem",
              bucket_timeout => 20, bucket_timeout_other => 20 } });
$sw->start;

my $caller = $sw->ua(user => 'carl');
my $cp = $caller->local_port;
sub send_req {
    my ($m, $to, $callid) = @_;
    my $body = $m eq 'MESSAGE' ? "hi" : '';
    $caller->send_raw("$m sip:$to\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bK$callid\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:carl\@example.com>;tag=c-$callid\r\nTo: <sip:$to\@example.com>\r\n"
        . "Call-ID: $callid\r\nCSeq: 1 $m\r\nContact: <sip:carl\@127.0.0.1:$cp>\r\n"
        . ($body ? "Content-Type: text/plain\r\n" : '') . "Content-Length: " . length($body) . "\r\n\r\n$body");
}
sub phone {
    my ($user, $prid) = @_;
    my $ua = $sw->ua(user => $user);
    my $r = $ua->register(contact => "sip:$user\@127.0.0.1:" . $ua->local_port
        . ($prid ? ";pn-provider=apns;pn-param=TEAM123456.org.example.app;pn-prid=$prid" : ''), expires => 3600);
    return ($ua, $r ? $r->{code} : 0);
}

# 1. INVITE answered 180 then 200 at 1.5 s (after the failed push, within Timer A's range)
my ($p1, $c1) = phone('one', 'DD0001');
is($c1, 200, 'a phone registers over UDP with push parameters');
my $t0 = time;
send_req('INVITE', 'one', 'slow-1');
my $inv = $p1->expect(qr/^INVITE .*Call-ID: slow-1\r/s, 3);
ok($inv, 'it is rung at its address');
ok($sw->wait_log(qr/apns token of one\@example\.com is dead/, 5), 'its push fails for good (410)');
sleep(1.5 - (time - $t0)) if time - $t0 < 1.5; # a phone slow to answer: the condition under test
$p1->answer($inv, 180, reason => 'Ringing', tag => 's1');
$p1->answer($inv, 200, reason => 'OK', tag => 's1');
like($caller->expect(qr/^SIP\/2\.0 [2-6]\d\d .*Call-ID: slow-1\r/s, 5) // '', qr/^SIP\/2\.0 200 /,
     'the caller gets the phone\'s 200, not 480');
ok(!defined $p1->expect(qr/^(CANCEL|BYE) .*Call-ID: slow-1\r/s, 1), 'the phone is neither cancelled nor hung up on');

# 2. MESSAGE answered 200 at 5 s: the failed push does not end a non-INVITE branch
my ($p2, $c2) = phone('two', 'DD0002');
is($c2, 200, 'a second phone registers over UDP');
$t0 = time;
send_req('MESSAGE', 'two', 'slow-2');
my $msg = $p2->expect(qr/^MESSAGE .*Call-ID: slow-2\r/s, 3);
ok($msg, 'the MESSAGE goes to its address');
ok($sw->wait_log(qr/apns token of two\@example\.com is dead/, 5), 'its push fails for good (410)');
ok(!defined $caller->expect(qr/^SIP\/2\.0 [2-6]\d\d .*Call-ID: slow-2\r/s, 5 - (time - $t0)),
   'the sender is not answered while the phone may still answer');
$p2->answer($msg, 200, reason => 'OK', tag => 's2');
like($caller->expect(qr/^SIP\/2\.0 [2-6]\d\d .*Call-ID: slow-2\r/s, 5) // '', qr/^SIP\/2\.0 200 /,
     'the sender gets the phone\'s 200 (no false 480, no duplicate resend)');

# 3. a 2xx from an INVITE branch ended for its silence while another phone still rings
my ($p3, $c3) = phone('three', 'DD0003');
my ($desk, $c3b) = phone('three', undef);
is("$c3 $c3b", '200 200', 'a push phone and a desk phone register for the same user');
send_req('INVITE', 'three', 'slow-3');
my $inv3 = $p3->expect(qr/^INVITE .*Call-ID: slow-3\r/s, 3);
my $dinv = $desk->expect(qr/^INVITE .*Call-ID: slow-3\r/s, 3);
ok($inv3 && $dinv, 'both are rung');
$desk->answer($dinv, 180, reason => 'Ringing', tag => 'd3');
ok($caller->expect(qr/^SIP\/2\.0 180 .*Call-ID: slow-3\r/s, 3), 'the desk phone rings');
ok($sw->wait_log(qr/INVITE slow-3: the branch to the push binding's old address never answered; ended/, 15),
   'the silent push phone\'s branch is ended after its grace');
$p3->answer($inv3, 200, reason => 'OK', tag => 'p3');
like($caller->expect(qr/^SIP\/2\.0 [2-6]\d\d .*Call-ID: slow-3\r/s, 5) // '', qr/^SIP\/2\.0 200 .*tag=p3/s,
     'its late 200 goes to the caller, who had no final answer yet (RFC 3261 §16.7 step 5)');
ok(!defined $p3->expect(qr/^BYE .*Call-ID: slow-3\r/s, 1), 'and that phone\'s call is not hung up');
ok($desk->expect(qr/^CANCEL .*Call-ID: slow-3\r/s, 3), 'the desk phone is cancelled (§16.7 step 10)');

ok($sw->alive, 'sipwake still running');
$sw->stop;
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error/, 'no errors or sanitizer reports');
done_testing;
