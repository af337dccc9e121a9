#!/usr/bin/perl
# sipwake stops while pushes wait for an APNs that never answers: a call to a sleeping phone
# (parked, its push in flight) and a cancelled call kept for CallKit (its VoIP push in
# flight). The parked caller gets 480, each push in flight is answered "shut down" and
# written to the push log, and nothing is touched after it is freed (no sanitizer report).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Sipwake;

my $dir = tempdir('push-shutdown-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir, 'apns') or BAIL_OUT('openssl failed');
open my $sf, '>', "$dir/script.json" or die $!;
print $sf '{"FEED01": {"hang": true}, "FEED02": {"hang": true}}';
close $sf;
my (undef, $aport) = Sipwake::start_apns_emulator($dir, '--log', "$dir/apns.log", '--lifetime', '120',
    '--script', "$dir/script.json");
ok($aport, 'APNs emulator listening');
sub apns_log { open my $f, '<', "$dir/apns.log" or return ''; local $/; <$f> // '' }
sub pushed { my ($tok) = @_; scalar grep { /"event": "push", "path": "\/3\/device\/$tok"/ } split /\n/, apns_log() }

my $sw = Sipwake->new(config => {
    push => { apns_key_file => "$dir/apns.p8", apns_key_id => 'KEY1234567', apns_team_id => 'TEAM123456',
              apns_host => '127.0.0.1', apns_port => $aport, ca => "$dir/cert.pem", bucket_timeout => 60,
              timeout => 60 },
});
$sw->start;
my $PARAM = 'pn-provider=apns;pn-param=TEAM123456.org.example.app';
for ([ 'sleepy', "$PARAM;pn-prid=FEED01" ], [ 'iphone', "$PARAM.voip;pn-prid=FEED02:voip" ]) {
    my ($user, $pn) = @$_;
    my $ua = $sw->ua(user => $user, transport => 'tcp');
    my $c = "sip:$user\@127.0.0.1:" . $ua->local_port . ";transport=tcp;$pn";
    is($ua->register(contact => $c, expires => 3600)->{code}, 200, "$user registered, then asleep");
    close $ua->sock;
}

my $caller = $sw->ua(user => 'carl');
my $cp = $caller->local_port;
sub request {
    my ($to, $callid, $method) = @_;
    return "$method sip:$to\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bK$callid\r\n"
        . "Max-Forwards: 70\r\nFrom: \"Carl\" <sip:carl\@example.com>;tag=c-$callid\r\nTo: <sip:$to\@example.com>\r\n"
        . "Call-ID: $callid\r\nCSeq: 1 $method\r\nContact: <sip:carl\@127.0.0.1:$cp>\r\nContent-Length: 0\r\n\r\n";
}

# a call parked while its push waits for an answer
$caller->send_raw(request('sleepy', 'sd-1', 'INVITE'));
ok($caller->expect(qr/^SIP\/2\.0 100/, 3), 'a call to the sleeping phone: 100 Trying');
my $deadline = time + 10;
sleep 0.05 while !pushed('FEED01') && time < $deadline;
ok(pushed('FEED01'), 'its push reached APNs, which does not answer');

# a call cancelled while its VoIP push is on its way: kept for CallKit
$caller->send_raw(request('iphone', 'sd-2', 'INVITE'));
ok($caller->expect(qr/^SIP\/2\.0 100.*Call-ID: sd-2/s, 3), 'a call to the iPhone: 100 Trying');
$deadline = time + 10;
sleep 0.05 while !pushed('FEED02') && time < $deadline;
ok(pushed('FEED02'), 'its VoIP push reached APNs, which does not answer');
$caller->send_raw(request('iphone', 'sd-2', 'CANCEL'));
ok($caller->expect(qr/^SIP\/2\.0 487.*CSeq: 1 INVITE/s, 3), 'the caller cancels: 487');

ok($sw->stop, 'sipwake stops cleanly with both pushes in flight (no sanitizer report)');
like($sw->log, qr/push: apns to sleepy\@\S+ \(.*\): failed, shut down/, 'the parked call\'s push is answered: shut down');
like($sw->log, qr/push: apns to iphone\@\S+ \(.*\): failed, shut down/, 'and the cancelled call\'s VoIP push');
my $rows = $sw->sql("SELECT call_id || ' ' || outcome || ' ' || reason FROM sipwake_push_log "
    . "WHERE call_id IN ('sd-1', 'sd-2') ORDER BY call_id") // '';
is($rows, "sd-1 failed shut down\nsd-2 failed shut down", 'both in the push log, written before the store closed');
ok($caller->expect(qr/^SIP\/2\.0 480.*Call-ID: sd-1/s, 3), 'the parked caller got 480 at shutdown');
done_testing;
