#!/usr/bin/perl
# A caller who hangs up while the phone is being woken (default policy: missed_call and
# deliver_cancelled): the caller gets 487 at once; an iPhone that got a VoIP push — and so
# shows the call in CallKit — and comes back gets the INVITE and then its CANCEL, so CallKit
# ends the call instead of ringing a ghost; a phone that got an alert push gets a "missed
# call" alert. The caller hears nothing more.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Sipwake;

my $dir = tempdir('push-cancel-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir, 'apns') or BAIL_OUT('openssl failed');
# DDDD04's push is answered 1.5 s late: the caller cancels while it is on its way
open my $sf, '>', "$dir/script.json" or die $!;
print $sf '{"DDDD04": {"delay_ms": 1500}}';
close $sf;
my (undef, $aport) = Sipwake::start_apns_emulator($dir, '--log', "$dir/apns.log", '--lifetime', '120',
    '--script', "$dir/script.json");
ok($aport, 'APNs emulator listening');
sub apns_log { open my $f, '<', "$dir/apns.log" or return ''; local $/; <$f> // '' }
sub pushes { my ($tok) = @_; grep { /"event": "push", "path": "\/3\/device\/$tok"/ } split /\n/, apns_log() }

my $sw = Sipwake->new(config => {
    push => { apns_key_file => "$dir/apns.p8", apns_key_id => 'KEY1234567', apns_team_id => 'TEAM123456',
              apns_host => '127.0.0.1', apns_port => $aport, ca => "$dir/cert.pem", bucket_timeout => 30 },
});
$sw->start;
my $PARAM = 'pn-provider=apns;pn-param=TEAM123456.org.example.app';
sub sleeping {
    my ($user, $pn) = @_;
    my $ua = $sw->ua(user => $user, transport => 'tcp');
    my $c = "sip:$user\@127.0.0.1:" . $ua->local_port . ";transport=tcp;$pn";
    my $code = $ua->register(contact => $c, expires => 3600)->{code};
    # asleep: sipwake has seen the connection close
    return $sw->disconnect($ua) ? $code : 'still connected';
}
is(sleeping('iphone', "$PARAM.voip%26remote;pn-prid=AAAA01:voip%26BBBB02:remote"), 200, 'an iPhone with VoIP and remote tokens');
is(sleeping('alerted', "$PARAM;pn-prid=CCCC03"), 200, 'an app with a remote token only');
is(sleeping('slowpoke', "$PARAM.voip%26remote;pn-prid=DDDD04:voip%26EEEE05:remote"), 200, 'an iPhone whose push is answered late');

my $caller = $sw->ua(user => 'carl');
my $cp = $caller->local_port;
sub invite {
    my ($to, $callid, $method) = @_;
    $method //= 'INVITE';
    return "$method sip:$to\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bK$callid\r\n"
        . "Max-Forwards: 70\r\nFrom: \"Carl\" <sip:carl\@example.com>;tag=c-$callid\r\nTo: <sip:$to\@example.com>\r\n"
        . "Call-ID: $callid\r\nCSeq: 1 $method\r\nContact: <sip:carl\@127.0.0.1:$cp>\r\nContent-Length: 0\r\n\r\n";
}
sub cancel_and_487 {
    my ($to, $callid) = @_;
    $caller->send_raw(invite($to, $callid, 'CANCEL'));
    my @got;
    for (1 .. 2) { push @got, $caller->expect(qr/^SIP\/2\.0 (200|487)/, 10) // '' }
    my ($r487) = grep { /^SIP\/2\.0 487/ } @got;
    my ($tohdr) = ($r487 // '') =~ /^(To: .*)\r$/m;
    if ($tohdr) { # the ACK ends the INVITE transaction (§17.1.1.3)
        (my $ack = invite($to, $callid, 'ACK')) =~ s/^To: .*\r$/$tohdr\r/m;
        $caller->send_raw($ack);
    }
    return (scalar(grep { /^SIP\/2\.0 200 .*CSeq: 1 CANCEL/s } @got), scalar(grep { /^SIP\/2\.0 487 .*CSeq: 1 INVITE/s } @got));
}

# the iPhone: VoIP push, CANCEL, then it comes back
$caller->send_raw(invite('iphone', 'ck-1'));
$caller->expect(qr/^SIP\/2\.0 100/, 10);
for (1 .. 200) { last if pushes('AAAA01'); sleep 0.05 }
like((pushes('AAAA01'))[0] // '', qr/"push_type": "voip".*ck-1.*"status": 200/, 'the iPhone got a VoIP push');
my ($c200, $c487) = cancel_and_487('iphone', 'ck-1');
ok($c200 && $c487, 'the caller cancels: 200 for the CANCEL, 487 for the INVITE, at once');
my $woken = $sw->ua(user => 'iphone', transport => 'tcp');
my $wp = $woken->local_port;
is($woken->register(contact => "sip:iphone\@127.0.0.1:$wp;transport=tcp;$PARAM.voip%26remote;pn-prid=AAAA01:voip%26BBBB02:remote",
    expires => 3600)->{code}, 200, 'the iPhone registers again (CallKit woke the app)');
my $inv = $woken->expect(qr/^INVITE /, 10);
ok($inv && $inv =~ /Call-ID: ck-1\r/, 'it still gets the INVITE of the cancelled call');
$woken->answer($inv, 180, reason => 'Ringing', tag => 'i1', contact => "sip:iphone\@127.0.0.1:$wp;transport=tcp") if $inv;
my $cancel = $woken->expect(qr/^CANCEL /, 10);
ok($cancel && $cancel =~ /Call-ID: ck-1\r/, 'and then its CANCEL, so CallKit ends it');
if ($cancel) {
    $woken->answer($cancel, 200, reason => 'OK', tag => 'i1');
    $woken->answer($inv, 487, reason => 'Request Terminated', tag => 'i1');
    ok($woken->expect(qr/^ACK /, 10), 'its 487 is acknowledged');
}
my $more = $caller->expect(qr/^SIP\/2\.0 /, 1);
ok(!defined $more, 'the caller hears nothing more') or diag $more;

# the caller cancels while the VoIP push is still on its way: once it is answered, the
# iPhone (CallKit shows the call) still gets the INVITE and its CANCEL when it comes back
$caller->send_raw(invite('slowpoke', 'ck-2'));
$caller->expect(qr/^SIP\/2\.0 100/, 10);
for (1 .. 200) { last if pushes('DDDD04'); sleep 0.05 }
ok(scalar(pushes('DDDD04')), 'the late iPhone\'s VoIP push is on its way');
($c200, $c487) = cancel_and_487('slowpoke', 'ck-2');
ok($c200 && $c487, 'the caller cancels before it is answered: 200 and 487 at once');
like($sw->sql_wait("SELECT outcome FROM sipwake_push_log WHERE call_id='ck-2'", qr/delivered/, 10) // '',
     qr/delivered/, 'then the push is answered');
my $late = $sw->ua(user => 'slowpoke', transport => 'tcp');
my $lp = $late->local_port;
is($late->register(contact => "sip:slowpoke\@127.0.0.1:$lp;transport=tcp;$PARAM.voip%26remote;pn-prid=DDDD04:voip%26EEEE05:remote",
    expires => 3600)->{code}, 200, 'the iPhone registers again');
my $inv2 = $late->expect(qr/^INVITE /, 10);
ok($inv2 && $inv2 =~ /Call-ID: ck-2\r/, 'it gets the INVITE of the call cancelled while it was pushed');
$late->answer($inv2, 180, reason => 'Ringing', tag => 's1', contact => "sip:slowpoke\@127.0.0.1:$lp;transport=tcp") if $inv2;
my $cancel2 = $late->expect(qr/^CANCEL /, 10);
ok($cancel2 && $cancel2 =~ /Call-ID: ck-2\r/, 'and its CANCEL');
if ($cancel2) {
    $late->answer($cancel2, 200, reason => 'OK', tag => 's1');
    $late->answer($inv2, 487, reason => 'Request Terminated', tag => 's1');
    ok($late->expect(qr/^ACK /, 10), 'its 487 is acknowledged');
}
ok(!defined $caller->expect(qr/^SIP\/2\.0 /, 1), 'the caller hears nothing more');

# the alert-only app: a missed-call alert
$caller->send_raw(invite('alerted', 'mc-1'));
$caller->expect(qr/^SIP\/2\.0 100/, 10);
for (1 .. 200) { last if pushes('CCCC03'); sleep 0.05 }
like((pushes('CCCC03'))[0] // '', qr/"push_type": "alert".*IC_MSG.*mc-1/, 'the call was pushed as an alert');
($c200, $c487) = cancel_and_487('alerted', 'mc-1');
ok($c200 && $c487, 'the caller cancels: 200 and 487');
for (1 .. 200) { last if pushes('CCCC03') >= 2; sleep 0.05 }
my @p = pushes('CCCC03');
like($p[1] // '', qr/"push_type": "alert".*\\"loc-key\\":\\"IC_MISSED\\",\\"loc-args\\":\[\\"Carl\\"\].*mc-1.*"status": 200/,
     'then a missed-call alert (IC_MISSED, the caller\'s name, the Call-ID)');
like($sw->sql_wait("SELECT kind FROM sipwake_push_log WHERE call_id='mc-1' ORDER BY id", qr/missed_call/),
     qr/^call\nmissed_call$/, 'both in the push log');
# checked now that a later call's missed-call alert has come out: one for ck-1, cancelled
# long before, would have come out first
is(scalar(pushes('BBBB02')), 0, 'no missed-call alert for the VoIP-pushed iPhone (CallKit has it)');
is($sw->sql("SELECT count(*) FROM sipwake_push_log WHERE call_id='ck-1' AND kind='missed_call'"), '0',
   'none in the push log either');

ok($sw->alive, 'sipwake still running');
$sw->stop;
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error/, 'no errors or sanitizer reports');
done_testing;
