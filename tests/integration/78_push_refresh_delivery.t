#!/usr/bin/perl
# Refresh pushes that arrive before the binding expires (RFC 8599 §5.5, issue 13), on the
# emulators' wire: the first goes [push] refresh_lead before the last one, which goes
# push_refresh_margin before expiry, so a throttled first push leaves time for another;
# APNs gets background pushes at priority 5 (the only priority Apple allows for them), FCM
# high priority (normal waits for Doze's maintenance window); the push hook sees
# ctx.kind = "refresh" and may change the priority; a UA that refreshes by itself
# (+sip.pnsreg) is pushed only at the margin; a VoIP-only iPhone, which PushKit lets
# receive call pushes only, gets no refresh push and is told +sip.pnsreg in its 2xx; nor
# does a browser (Web Push), which shows a notification for every push it gets
# (userVisibleOnly): it is told +sip.pnsreg too (RFC 8599 §4.1.4, §5.4).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Sipwake;

my $dir = tempdir('push-refresh-delivery-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir, 'apns') or BAIL_OUT('openssl failed');
Sipwake::make_service_account($dir, 'sa.json', 'proj-1');
open my $subs, '>', "$dir/subs.json" or die;
print $subs '{}';
close $subs;

my (undef, $aport) = Sipwake::start_apns_emulator($dir, '--strict', '--log', "$dir/apns.log", '--lifetime', '120');
my (undef, $fport) = Sipwake::start_emulator('fcm', '--cert', "$dir/cert.pem", '--key', "$dir/key.pem",
    '--service-account', "$dir/sa.json", '--log', "$dir/fcm.log", '--lifetime', '120');
my (undef, $wport) = Sipwake::start_emulator('webpush', '--cert', "$dir/cert.pem", '--key', "$dir/key.pem",
    '--subscriptions', "$dir/subs.json", '--log', "$dir/webpush.log", '--lifetime', '120');
ok($aport && $fport && $wport, 'APNs, FCM and Web Push emulators listening');
sub slurp { open my $f, '<', $_[0] or return ''; local $/; <$f> // '' }
# the emulator's verdict lines for a token, with the time they were first seen
my %seen;
sub pushes {
    my ($log, $needle) = @_;
    my @l = grep { index($_, $needle) >= 0 && /"status": \d/ } split /\n/, slurp("$dir/$log.log");
    $seen{"$log $needle $_"} //= time for 0 .. $#l;
    return map { { line => $l[$_], at => $seen{"$log $needle $_"} } } 0 .. $#l;
}

my $sw = Sipwake->new(config => {
    registrar => { push_providers => 'apns, fcm, webpush', min_expires => 1, push_min_expires => 6,
                   push_refresh_margin => 2 },
    push => { apns_key_file => "$dir/apns.p8", apns_key_id => 'KEY1234567', apns_team_id => 'TEAM123456',
              apns_host => '127.0.0.1', apns_port => $aport,
              fcm_service_account => "$dir/sa.json", fcm_host => '127.0.0.1', fcm_port => $fport,
              fcm_token_uri => "https://127.0.0.1:$fport/token",
              ca => "$dir/cert.pem", refresh_lead => 4 },
});
$sw->write_policy(<<'LUA');
return {
  push = function(req, binding, ctx)
    if ctx.kind == "refresh" and binding.aor == "calm@example.com" then
      return { priority = "normal" }
    end
    return nil
  end,
}
LUA
$sw->write_config;
$sw->start;

# the browser's subscription with sipwake's VAPID key (from +sip.vapid)
my $q = $sw->ua(user => 'wq');
my $r = $q->register(contact => "sip:wq\@127.0.0.1:" . $q->local_port . ";pn-provider=webpush", expires => 3600);
my ($vapid) = (Sipwake::UA::header($r, 'feature-caps'))[0] =~ /\+sip\.vapid="([^"]+)"/;
ok($vapid, 'the VAPID key from the capability query');
open $subs, '>', "$dir/subs.json" or die;
print $subs qq({"sub-web-1": {"key": "$vapid"}});
close $subs;

my %fc;
sub reg {
    my ($user, $pn, $params) = @_;
    my $ua = $sw->ua(user => $user, transport => 'tcp');
    my $res = $ua->register(contact => "sip:$user\@127.0.0.1:" . $ua->local_port . ";transport=tcp;$pn",
        contact_params => $params // '', expires => 12);
    $fc{$user} = join ' | ', Sipwake::UA::header($res, 'feature-caps');
    # asleep: sipwake has seen the connection close
    return $sw->disconnect($ua) ? $res->{code} : 'still connected';
}
my $t0 = time;
is(reg('ios', 'pn-provider=apns;pn-param=TEAM123456.org.example.app.voip%26remote;pn-prid=AAAA0001:voip%26BBBB0002:remote'),
   200, 'an iPhone registered for 12 s (voip and remote tokens)');
is(reg('droid', 'pn-provider=fcm;pn-param=proj-1;pn-prid=fcm-token-droid'), 200, 'an Android phone');
is(reg('web', "pn-provider=webpush;pn-prid=https://127.0.0.1:$wport/push/sub-web-1"), 200, 'a browser');
is(reg('calm', 'pn-provider=fcm;pn-param=proj-1;pn-prid=fcm-token-calm'), 200, 'an Android phone whose refreshes the policy shapes');
is(reg('selfish', 'pn-provider=fcm;pn-param=proj-1;pn-prid=fcm-token-selfish', ';+sip.pnsreg'), 200,
   'an Android phone that refreshes by itself (+sip.pnsreg)');
is(reg('voiponly', 'pn-provider=apns;pn-param=TEAM123456.org.example.app.voip;pn-prid=EEEE0005'), 200,
   'an iPhone app that gave only its VoIP token');
is($fc{voiponly}, '*;+sip.pns="apns";+sip.pnsreg="130"', 'the VoIP-only iPhone is told to refresh by itself (+sip.pnsreg)');
is($fc{ios}, '*;+sip.pns="apns"', 'the other iPhone is not: it gets refresh pushes');
like($fc{web}, qr/^\*;\+sip\.pns="webpush";\+sip\.pnsreg="130";\+sip\.vapid=/,
     'the browser is told to refresh by itself (+sip.pnsreg): a refresh push would be a visible notification');

# expiry at t0 + 12: first pushes at 12 - 2 - 4 = 6 s, the last ones at 12 - 2 = 10 s
my @p;
for (1 .. 300) {
    # every log read on every turn, so each push is timed when it is first there
    my @n = (scalar(pushes('apns', '/3/device/BBBB0002')), scalar(pushes('fcm', 'fcm-token-droid')),
             scalar(pushes('fcm', 'fcm-token-selfish')), scalar(pushes('fcm', 'fcm-token-calm')));
    last if $n[0] >= 2 && $n[1] >= 2 && $n[2] >= 1 && $n[3] >= 1;
    sleep 0.05;
}
@p = pushes('apns', '/3/device/BBBB0002');
is(scalar @p, 2, 'the iPhone got two refresh pushes before its binding expired');
my $first = ($p[0]{at} // 99) - $t0;
ok($first >= 4 && $first < 8.5, sprintf('the first one refresh_lead + margin (6 s) before expiry, not at the margin (at %.1f s)', $first));
my $gap = ($p[1]{at} // 0) - ($p[0]{at} // 0);
ok($gap >= 2.5, sprintf('the second one at the margin, leaving time after a lost first one (%.1f s later)', $gap));
ok(($p[1]{at} // 99) - $t0 < 12, 'still before expiry');
like($p[$_]{line} // '', qr/"topic": "org.example.app", "push_type": "background", "priority": "5"[^\n]*content-available/,
     "APNs refresh push $_: background, priority 5, to the remote token") for 0, 1;
@p = pushes('fcm', 'fcm-token-droid');
like($p[$_]{line} // '', qr/\\"priority\\": ?\\"high\\"/i, "FCM refresh push $_: high priority") for 0, 1;
like($p[0]{line} // '', qr/\\"type\\": ?\\"refresh\\"/, 'of type refresh');
@p = pushes('fcm', 'fcm-token-calm');
like($p[0]{line} // '', qr/\\"priority\\": ?\\"normal\\"/i, "the policy's refresh (ctx.kind = \"refresh\") at normal priority");
@p = pushes('fcm', 'fcm-token-selfish');
ok(@p && $p[0]{at} - $t0 >= 8.5, sprintf('the UA that refreshes by itself is pushed only at the margin (%.1f s)', ($p[0]{at} // 0) - $t0));
is(scalar(pushes('apns', 'EEEE0005')), 0, 'the VoIP-only iPhone got no refresh push');
is(scalar(pushes('webpush', '/push/sub-web-1')), 0, 'nor did the browser');

ok($sw->alive, 'sipwake still running');
$sw->stop;
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error/, 'no errors or sanitizer reports');
done_testing;
