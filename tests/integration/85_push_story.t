#!/usr/bin/perl
# The whole story on the wire, for APNs, FCM and Web Push, each against its emulator: a
# phone registers with its push parameters and goes silent; a call (or a MESSAGE) comes;
# the push reaches the service with the right headers and payload; the phone registers
# again from a new port (or a new TLS connection); the request reaches it there; the call is
# set up and torn down. sipp plays the phones and callers over UDP (Debian's sipp has no
# TLS); the Perl UA does TLS.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Sipwake;

my $dir = tempdir('push-story-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir, 'apns') or BAIL_OUT('openssl failed');
Sipwake::make_service_account($dir, 'sa.json', 'proj-1');
open my $subs, '>', "$dir/subs.json" or die;
print $subs '{}';
close $subs;

my (undef, $aport) = Sipwake::start_apns_emulator($dir, '--log', "$dir/apns.log", '--lifetime', '150');
my (undef, $fport) = Sipwake::start_emulator('fcm', '--cert', "$dir/cert.pem", '--key', "$dir/key.pem",
    '--service-account', "$dir/sa.json", '--log', "$dir/fcm.log", '--lifetime', '150');
my (undef, $wport) = Sipwake::start_emulator('webpush', '--cert', "$dir/cert.pem", '--key', "$dir/key.pem",
    '--subscriptions', "$dir/subs.json", '--log', "$dir/webpush.log", '--lifetime', '150');
ok($aport && $fport && $wport, 'APNs, FCM and Web Push emulators listening');
sub slurp { open my $f, '<', $_[0] or return ''; local $/; <$f> // '' }

my $sw = Sipwake->new(config => {
    registrar => { push_providers => 'apns, fcm, webpush' },
    push => { apns_key_file => "$dir/apns.p8", apns_key_id => 'KEY1234567', apns_team_id => 'TEAM123456',
              apns_host => '127.0.0.1', apns_port => $aport,
              fcm_service_account => "$dir/sa.json", fcm_host => '127.0.0.1', fcm_port => $fport,
              fcm_token_uri => "https://127.0.0.1:$fport/token",
              ca => "$dir/cert.pem", bucket_timeout => 8, bucket_timeout_other => 8 },
});
$sw->start;

# the browser subscribes with sipwake's VAPID key (from +sip.vapid)
my $q = $sw->ua(user => 'wq');
my $r = $q->register(contact => "sip:wq\@127.0.0.1:" . $q->local_port . ";pn-provider=webpush", expires => 3600);
my ($vapid) = (Sipwake::UA::header($r, 'feature-caps'))[0] =~ /\+sip\.vapid="([^"]+)"/;
ok($vapid, 'the VAPID key from the capability query');
open $subs, '>', "$dir/subs.json" or die;
print $subs '{' . join(', ', map { qq("sub-web-$_": {"key": "$vapid"}) } 1 .. 20) . '}';
close $subs;

my %provider = (
    apns => { provider => 'apns', param => 'TEAM123456.org.example.app.voip%26remote', log => "$dir/apns.log" },
    fcm => { provider => 'fcm', param => 'proj-1', log => "$dir/fcm.log" },
    webpush => { provider => 'webpush', param => '', log => "$dir/webpush.log" },
);
my $n = 0;
sub prid_for {
    my ($p, $i) = @_;
    return $p eq 'apns' ? sprintf('AAAA%04d:voip%%26BBBB%04d:remote', $i, $i)
         : $p eq 'fcm'  ? "fcm-token-$i"
                        : "https://127.0.0.1:$wport/push/sub-web-$i";
}
# the emulator's verdict line for needle (its request line comes first)
sub wait_push {
    my ($p, $needle) = @_;
    for (1 .. 200) {
        my $l = slurp($provider{$p}{log});
        return $l if grep { index($_, $needle) >= 0 && /"status": \d/ } split /\n/, $l;
        sleep 0.05;
    }
    return slurp($provider{$p}{log});
}
sub check_push {
    my ($p, $prid, $call) = @_;
    my ($voip, $remote) = $prid =~ /^(\w+):voip%26(\w+):remote$/;
    my $needle = $p eq 'apns' ? '/3/device/' . ($call ? $voip : $remote) : $p eq 'fcm' ? $prid : ($prid =~ m{(/push/[^"]+)$})[0];
    my $log = wait_push($p, $needle);
    my ($line) = grep { index($_, $needle) >= 0 && /"status": 20[01]/ } split /\n/, $log;
    ok($line, "$p: the push reached the service and was accepted");
    if ($p eq 'apns') {
        like($line // '', $call ? qr/"push_type": "voip", "priority": "10"/ : qr/"push_type": "alert"/,
             $call ? 'apns: a VoIP push at priority 10' : 'apns: an alert for the message');
    } elsif ($p eq 'fcm') {
        like($line // '', qr/\\"priority\\": ?\\"(HIGH|high)\\"/, 'fcm: a high-priority data message');
        like($line // '', $call ? qr/\\"type\\": ?\\"call\\"/ : qr/\\"type\\": ?\\"message\\"/, 'fcm: of the right type');
    } else {
        like($line // '', $call ? qr/"urgency": "high"/ : qr/"urgency": "normal"/, 'webpush: urgency by kind');
        like($line // '', qr/"authorization": "vapid t=[^,]+, k=\Q$vapid\E"/, 'webpush: signed with the VAPID key');
    }
}

# ---- over UDP with sipp
for my $p (qw(apns fcm webpush)) {
    for my $kind (qw(call message)) {
        my $i = ++$n;
        my $user = "$p-$kind";
        my %vars = (user => $user, provider => $provider{$p}{provider}, param => $provider{$p}{param},
                    prid => prid_for($p, $i), expires => 3600);
        delete $vars{param} unless length $vars{param};
        my ($rc, $msgs, $err) = $sw->sipp('register_push', set => { %vars, param => $vars{param} // 'none' });
        is($rc, 0, "$p/$kind: the phone registered with sipp (UDP), then went silent") or diag $err;
        my $caller = $sw->sipp_bg($kind eq 'call' ? 'uac_call' : 'uac_message', set => { callee => $user });
        check_push($p, $vars{prid}, $kind eq 'call');
        # woken: it registers from a new port, then answers there (sipwake repeats the
        # request over UDP until the answering sipp listens)
        my $new_port = Sipwake::free_port();
        ($rc, $msgs, $err) = $sw->sipp('register_push', port => $new_port, set => { %vars, param => $vars{param} // 'none' });
        is($rc, 0, "$p/$kind: woken, the phone registered again from a new port") or diag $err;
        my ($prc, $pmsgs, $perr) = $sw->sipp_wait($sw->sipp_bg($kind eq 'call' ? 'uas_call' : 'uas_message',
            port => $new_port, server_side => 1));
        is($prc, 0, "$p/$kind: and got the " . ($kind eq 'call' ? 'call there' : 'MESSAGE there')) or diag $perr;
        my ($crc, $cmsgs, $cerr) = $sw->sipp_wait($caller);
        is($crc, 0, "$p/$kind: the caller's " . ($kind eq 'call' ? 'call was set up and torn down' : 'MESSAGE got its 200'))
            or diag $cerr;
    }
}

# ---- over TLS with the Perl UA
for my $p (qw(apns fcm webpush)) {
    my $i = ++$n;
    my $user = "$p-tls";
    my $prid = prid_for($p, $i);
    (my $prid_uri = $prid) =~ s/([^A-Za-z0-9._~:\/%-])/sprintf('%%%02X', ord $1)/ge;
    my $pn = "pn-provider=$provider{$p}{provider}" . ($provider{$p}{param} ? ";pn-param=$provider{$p}{param}" : '')
        . ";pn-prid=$prid_uri";
    my $phone = $sw->ua(user => $user, transport => 'tls');
    is($phone->register(contact => "sip:$user\@127.0.0.1:" . $phone->local_port . ";transport=tls;$pn",
        expires => 3600)->{code}, 200, "$p/tls: the phone registered over TLS");
    ok($sw->disconnect($phone), "$p/tls: asleep, sipwake saw its connection close");
    my $caller = $sw->ua(user => 'carl');
    my $cp = $caller->local_port;
    $caller->send_raw("INVITE sip:$user\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bKtls$i\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:carl\@example.com>;tag=t$i\r\nTo: <sip:$user\@example.com>\r\n"
        . "Call-ID: tls-call-$i\r\nCSeq: 1 INVITE\r\nContact: <sip:carl\@127.0.0.1:$cp>\r\nContent-Length: 0\r\n\r\n");
    check_push($p, $prid, 1);
    my $woken = $sw->ua(user => $user, transport => 'tls');
    my $wp = $woken->local_port;
    is($woken->register(contact => "sip:$user\@127.0.0.1:$wp;transport=tls;$pn", expires => 3600)->{code}, 200,
       "$p/tls: woken, it registered on a new TLS connection");
    my $inv = $woken->expect(qr/^INVITE /, 3);
    like($inv // '', qr{^INVITE sip:\Q$user\E\@127\.0\.0\.1:$wp;transport=tls SIP/2\.0}, "$p/tls: the call came down it");
    $woken->answer($inv, 200, reason => 'OK', tag => "w$i", contact => "sip:$user\@127.0.0.1:$wp;transport=tls") if $inv;
    my $ok = $caller->expect(qr/^SIP\/2\.0 200/, 3);
    ok($ok, "$p/tls: the caller got the 200");
}

ok($sw->alive, 'sipwake still running');
$sw->stop;
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error/, 'no errors or sanitizer reports');
done_testing;
