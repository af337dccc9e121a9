#!/usr/bin/perl
# Requests that are neither calls nor messages put nothing on the user's screen (issue 13):
# an OPTIONS to a sleeping push phone wakes nothing by default; a SUBSCRIBE or REFER the
# policy lets through (an unauthenticated one wakes nothing by default: 77_push_wake_budget.t)
# is a silent wake (APNs background at priority 5 to the remote token, FCM a normal-priority
# data message of type "wake"), never an alert; the policy may push an OPTIONS
# (skip = false) but cannot make an unauthenticated one visible, while it may still shape a
# SUBSCRIBE as an alert. Checked on the wire in the emulators' logs.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Sipwake;

my $dir = tempdir('push-quiet-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir, 'apns') or BAIL_OUT('openssl failed');
Sipwake::make_service_account($dir, 'sa.json', 'proj-1');

my (undef, $aport) = Sipwake::start_apns_emulator($dir, '--strict', '--log', "$dir/apns.log", '--lifetime', '120');
my (undef, $fport) = Sipwake::start_emulator('fcm', '--cert', "$dir/cert.pem", '--key', "$dir/key.pem",
    '--service-account', "$dir/sa.json", '--log', "$dir/fcm.log", '--lifetime', '120');
ok($aport && $fport, 'APNs and FCM emulators listening');
sub slurp { open my $f, '<', $_[0] or return ''; local $/; <$f> // '' }
sub pushed {
    my ($log, $callid) = @_;
    for (1 .. 200) {
        my ($l) = grep { /"event": "(push|fcm)"/ && /\Q$callid\E/ } split /\n/, slurp("$dir/$log.log");
        return $l if $l;
        sleep 0.05;
    }
    return '';
}

my $sw = Sipwake->new(config => {
    registrar => { push_providers => 'apns, fcm' },
    push => { apns_key_file => "$dir/apns.p8", apns_key_id => 'KEY1234567', apns_team_id => 'TEAM123456',
              apns_host => '127.0.0.1', apns_port => $aport,
              fcm_service_account => "$dir/sa.json", fcm_host => '127.0.0.1', fcm_port => $fport,
              fcm_token_uri => "https://127.0.0.1:$fport/token",
              ca => "$dir/cert.pem", bucket_timeout => 1, bucket_timeout_other => 1,
              wake_interval => 0 },
});
$sw->write_policy(<<'LUA');
return {
  push = function(req, binding, ctx)
    if binding.aor == "loud@example.com" then
      return { skip = false, type = "alert", alert = { title = "Wake up", body = "Something for you" } }
    end
    if ctx.method == "SUBSCRIBE" or ctx.method == "REFER" then
      return { skip = false } -- sipwake's shape for a wake
    end
    return nil
  end,
}
LUA
$sw->write_config;
$sw->start;

my $IOS = 'pn-provider=apns;pn-param=TEAM123456.org.example.app.voip%26remote';
sub reg {
    my ($user, $pn) = @_;
    my $ua = $sw->ua(user => $user, transport => 'tcp');
    my $r = $ua->register(contact => "sip:$user\@127.0.0.1:" . $ua->local_port . ";transport=tcp;$pn",
        expires => 3600);
    # asleep: sipwake has seen the connection close
    return $sw->disconnect($ua) ? $r->{code} : 'still connected';
}
is(reg('ios', "$IOS;pn-prid=AAAA0001:voip%26BBBB0002:remote"), 200, 'an iPhone registered (voip and remote tokens)');
is(reg('droid', 'pn-provider=fcm;pn-param=proj-1;pn-prid=fcm-token-1'), 200, 'an Android phone registered');
is(reg('loud', "$IOS;pn-prid=CCCC0003:voip%26DDDD0004:remote"), 200, 'an iPhone whose pushes the policy shapes as alerts');

my $caller = $sw->ua(user => 'carl');
my $cp = $caller->local_port;
sub request {
    my ($method, $user, $callid) = @_;
    my $extra = $method eq 'SUBSCRIBE' ? "Event: presence\r\nExpires: 600\r\n"
              : $method eq 'REFER'     ? "Refer-To: <sip:dave\@example.com>\r\n" : '';
    $caller->send_raw("$method sip:$user\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bK$callid\r\n"
        . "Max-Forwards: 70\r\nFrom: \"Mallory\" <sip:mallory\@example.com>;tag=c-$callid\r\nTo: <sip:$user\@example.com>\r\n"
        . "Call-ID: $callid\r\nCSeq: 1 $method\r\nContact: <sip:carl\@127.0.0.1:$cp>\r\n$extra"
        . "Content-Length: 0\r\n\r\n");
    my $r = Sipwake::UA::parse_response($caller->expect(qr/^SIP\/2\.0 [2-6]\d\d .*Call-ID: $callid\r/s, 5));
    return $r ? $r->{code} : 0;
}

# OPTIONS: no push by default
is(request('OPTIONS', 'ios', 'opt-1'), 480, 'an OPTIONS to the sleeping iPhone: 480');
is(request('OPTIONS', 'droid', 'opt-2'), 480, 'and to the Android phone');
unlike(slurp("$dir/apns.log") . slurp("$dir/fcm.log"), qr/opt-[12]/, 'neither phone was pushed for it');
ok($sw->wait_log(qr/an OPTIONS wakes no phone/, 10), 'sipwake says why');

# SUBSCRIBE and REFER (pushed by the policy): silent wakes
request('SUBSCRIBE', 'ios', 'sub-1');
my $l = pushed('apns', 'sub-1');
like($l, qr{"path": "/3/device/BBBB0002", "kid": "KEY1234567", "topic": "org.example.app", "push_type": "background", "priority": "5"},
     'a SUBSCRIBE: an APNs background push at priority 5 to the remote token');
like($l, qr/content-available/, 'with content-available');
unlike($l, qr/\\"alert\\"|IM_MSG|IC_MSG|sound/, 'and no alert, no sound');
like($l, qr/"status": 200/, 'APNs takes it');
request('REFER', 'ios', 'ref-1');
like(pushed('apns', 'ref-1'), qr{"push_type": "background", "priority": "5"}, 'a REFER: a background push too');
unlike(pushed('apns', 'ref-1'), qr/\\"alert\\"/, 'no alert');
request('SUBSCRIBE', 'droid', 'sub-2');
$l = pushed('fcm', 'sub-2');
like($l, qr/\\"type\\": ?\\"wake\\"/, 'FCM: a data message of type wake');
like($l, qr/\\"priority\\": ?\\"normal\\"/i, 'at normal priority (FCM deprioritises high ones that show nothing)');
unlike($l, qr/\\"notification\\"/, 'with no notification');

# the policy asks for alerts: granted for a SUBSCRIBE, not for an unauthenticated OPTIONS
request('SUBSCRIBE', 'loud', 'sub-3');
like(pushed('apns', 'sub-3'), qr{"push_type": "alert"[^\n]*Wake up}, "the policy's alert for a SUBSCRIBE is sent");
request('OPTIONS', 'loud', 'opt-3');
$l = pushed('apns', 'opt-3');
like($l, qr{"path": "/3/device/DDDD0004"[^\n]*"push_type": "background", "priority": "5"},
     'the policy pushes the OPTIONS (skip = false), but silently');
unlike($l, qr/Wake up|Something for you|\\"alert\\"/, 'its alert text is not sent');
ok($sw->wait_log(qr/a visible alert for an unauthenticated OPTIONS to loud\@example\.com refused/, 10), 'and sipwake says so');

ok($sw->alive, 'sipwake still running');
$sw->stop;
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error/, 'no errors or sanitizer reports');
done_testing;
