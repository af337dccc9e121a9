#!/usr/bin/perl
# Which credential pushes a binding (issue 13), against APNs emulators that know which
# environment they are, which tokens are sandbox tokens and which key serves which
# environment:
# - a Linphone REGISTER with liblinphone's placeholder team ABCD1234 in pn-param is woken by
#   a push signed with the configured key's team (the emulator checks iss); the mismatch is
#   counted (push:apns_team_mismatch) and logged once, and the push hook sees it
#   (binding.team_mismatch) and may refuse;
# - a key for production only: an apns.dev REGISTER gets 555 and no +sip.pns (RFC 8599
#   §5.6.1.1); once a tenant's sandbox key is loaded, apns.dev bindings of its domain are
#   registered and pushed to the sandbox with that key;
# - legacy pn-type=apple registrations (converted with the placeholder team) are pushed too;
# - an FCM binding naming a project no service account serves gets 555; its own project 200;
#   a binding whose project's account went is never pushed through another project;
# - a sipwake holding no APNs or FCM credential at all (nothing in [push], no tenant set)
#   answers 555 to an apns and an fcm push REGISTER, stores nothing, tells no +sip.pns: its
#   pushes could never be sent (RFC 8599 §5.6.1.1); a tenant's APNs key loaded later
#   (SIGHUP) makes the same apns REGISTER a 200 with +sip.pns.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Sipwake;

sub slurp { open my $f, '<', $_[0] or return ''; local $/; <$f> // '' }
my $dir = tempdir('push-credentials-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir, 'prod', 'sand') or BAIL_OUT('openssl failed');
Sipwake::make_service_account($dir, 'sa.json', 'proj-1', 'https://127.0.0.1:9/token');
(my $sa2 = slurp("$dir/sa.json")) =~ s/proj-1/proj-2/g;
open my $sa, '>', "$dir/sa2.json" or die;
print $sa $sa2;
close $sa;

# device tokens as Apple issued them: Linphone's PushKit and remote tokens (production), and
# a phone running a development build (sandbox)
my ($VOIP, $REMOTE, $STRICT, $DEV) = ('a0a0a0a0a0a0a001', 'b0b0b0b0b0b0b002', 'c0c0c0c0c0c0c003', 'd0d0d0d0d0d0d004');
open my $tf, '>', "$dir/tokens.json" or die;
print $tf qq({"$VOIP": {"topic": "org.linphone.phone.voip", "environment": "production"},
 "$REMOTE": {"topic": "org.linphone.phone", "environment": "production"},
 "$STRICT": {"topic": "org.linphone.phone.voip", "environment": "production"},
 "$DEV": {"topic": "org.linphone.phone.voip", "environment": "sandbox"}});
close $tf;
my @keys = ('--auth-key', "KEYPROD001:TEAM123456:$dir/prod-pub.pem", '--auth-key', "KEYSAND001:TEAM123456:$dir/sand-pub.pem",
    '--key-environment', 'KEYPROD001=production', '--key-environment', 'KEYSAND001=sandbox',
    '--team-topics', 'TEAM123456=org.linphone.phone', '--tokens', "$dir/tokens.json");
my (undef, $pport) = Sipwake::start_emulator('apns', '--cert', "$dir/cert.pem", '--key', "$dir/key.pem",
    @keys, '--environment', 'production', '--log', "$dir/prod.log", '--lifetime', '120');
my (undef, $sport) = Sipwake::start_emulator('apns', '--cert', "$dir/cert.pem", '--key', "$dir/key.pem",
    @keys, '--environment', 'sandbox', '--log', "$dir/sand.log", '--lifetime', '120');
ok($pport && $sport, 'APNs production and sandbox emulators listening');
sub wait_for {
    my ($file, $re) = @_;
    for (1 .. 100) { my $l = slurp($file); return $l if $l =~ $re; sleep 0.05 }
    return slurp($file);
}

my $sw = Sipwake->new(
    config => {
        registrar => { push_providers => 'apns, fcm' },
        push => { apns_key_file => "$dir/prod.p8", apns_key_id => 'KEYPROD001', apns_team_id => 'TEAM123456',
                  apns_environment => 'production',
                  apns_host => '127.0.0.1', apns_port => $pport,
                  apns_sandbox_host => '127.0.0.1', apns_sandbox_port => $sport,
                  fcm_service_account => "$dir/sa.json", fcm_host => '127.0.0.1', fcm_port => 9,
                  ca => "$dir/cert.pem", bucket_timeout => 8, bucket_timeout_other => 3 },
    },
    policy => <<'LUA');
-- strict@ refuses pushes whose pn-param team is not the key's
return {
  push = function(req, binding, ctx)
    if binding.team_mismatch and binding.aor:find("^strict@") then return { skip = true } end
    return nil
  end,
}
LUA
$sw->start;

my $LINPHONE = 'pn-provider=apns;pn-param=ABCD1234.org.linphone.phone.voip%26remote;'
    . "pn-prid=$VOIP:voip%26$REMOTE:remote";
sub register_phone {
    my ($user, $domain, $pn) = @_;
    my $ua = $sw->ua(user => $user, domain => $domain, transport => 'tcp');
    my $r = $ua->register(contact => "sip:$user\@127.0.0.1:" . $ua->local_port . ";transport=tcp;$pn",
        contact_params => ';+sip.instance="<urn:uuid:00000000-0000-0000-0000-' . sprintf('%012d', length $user) . '>"',
        expires => 3600);
    return ($ua, $r);
}
sub feature_caps { join ' ', Sipwake::UA::header($_[0], 'feature-caps') }

# ---- Linphone's placeholder team, woken end to end
my ($phone, $r) = register_phone('linus', 'example.com', $LINPHONE);
is($r->{code}, 200, 'a Linphone REGISTER with team ABCD1234: 200');
like(feature_caps($r), qr/\+sip\.pns="apns"/, 'told +sip.pns="apns"');
ok($sw->disconnect($phone), 'asleep: sipwake saw its connection close');

my $caller = $sw->ua(user => 'carl');
my $cp = $caller->local_port;
sub invite {
    my ($to, $callid) = @_;
    return "INVITE sip:$to SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bK$callid\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:carl\@example.com>;tag=c-$callid\r\nTo: <sip:$to>\r\n"
        . "Call-ID: $callid\r\nCSeq: 1 INVITE\r\nContact: <sip:carl\@127.0.0.1:$cp>\r\nContent-Length: 0\r\n\r\n";
}
$caller->send_raw(invite('linus@example.com', 'team-1'));
my $log = wait_for("$dir/prod.log", qr{"path": "/3/device/$VOIP".*"status": \d});
like($log, qr{"path": "/3/device/$VOIP", "kid": "KEYPROD001", "topic": "org.linphone.phone.voip", "push_type": "voip".*"status": 200},
     'the VoIP push went to production, signed with the key (iss TEAM123456), and APNs accepted it');
my ($woken, $r2) = register_phone('linus', 'example.com', $LINPHONE);
is($r2->{code}, 200, 'the woken phone registers again');
my $inv = $woken->expect(qr/^INVITE /, 5);
like($inv // '', qr/Call-ID: team-1/, 'and gets the call');
$woken->answer($inv, 486, reason => 'Busy Here', tag => 'l1') if $inv;
ok($sw->wait_log(qr/pn-param team ABCD1234 of linus\@example\.com is not the team TEAM123456 of the key of \[push\]/, 10),
   'the mismatch is logged, with the key\'s team');

# a second call: counted again, not logged again
ok($sw->disconnect($woken), 'asleep again');
$caller->send_raw(invite('linus@example.com', 'team-2'));
wait_for("$dir/prod.log", qr{team-2.*\n.*"status": 200});
like(slurp("$dir/prod.log"), qr{team-2}, 'the second call is pushed too');
kill 'USR1', $sw->{pid};
ok($sw->wait_log(qr/metrics: sipwake_push_apns_team_mismatch 2$/m, 10), 'both pushes counted (push:apns_team_mismatch)');
is(scalar(() = $sw->log =~ /pn-param team ABCD1234/g), 1, 'and logged once');
unlike($sw->log, qr/$VOIP|$REMOTE/, 'no token in the log');

# ---- a legacy registration, converted with the same placeholder team
my ($old) = register_phone('oldie', 'example.com', 'pn-type=apple;pn-tok=e0e0e0e0e0e0e005;app-id=org.linphone.phone.prod');
ok($sw->disconnect($old), 'the legacy phone asleep');
$caller->send_raw("MESSAGE sip:oldie\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bKo1\r\n"
    . "Max-Forwards: 70\r\nFrom: <sip:carl\@example.com>;tag=o1\r\nTo: <sip:oldie\@example.com>\r\nCall-ID: legacy-m1\r\n"
    . "CSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi");
$log = wait_for("$dir/prod.log", qr{"path": "/3/device/e0e0e0e0e0e0e005".*"status": \d});
like($log, qr{"path": "/3/device/e0e0e0e0e0e0e005", "kid": "KEYPROD001", "topic": "org.linphone.phone", "push_type": "alert".*"status": 200},
     'a legacy pn-type=apple phone (team ABCD1234 after conversion) is pushed too');
is(scalar(() = $sw->log =~ /pn-param team ABCD1234/g), 1, 'still logged once');

# ---- the policy sees the mismatch and refuses
my ($strict) = register_phone('strict', 'example.com',
    "pn-provider=apns;pn-param=ABCD1234.org.linphone.phone.voip;pn-prid=$STRICT:voip");
ok($sw->disconnect($strict), 'the strict phone asleep');
my $t0 = time;
$caller->send_raw(invite('strict@example.com', 'strict-1'));
$r = Sipwake::UA::parse_response($caller->expect(qr/^SIP\/2\.0 [2-6]\d\d .*Call-ID: strict-1/s, 6));
is($r->{code}, 480, 'the push hook skips it (binding.team_mismatch): 480');
ok(time - $t0 < 2.5, 'at once, nothing to wait for');
unlike(slurp("$dir/prod.log"), qr/$STRICT/, 'and nothing was pushed');
# push:apns_team_mismatch counts pushes sent with a mismatched team: linus's two calls and
# oldie's message, not strict's skipped one
my $dumps = () = $sw->log =~ /metrics: sipwake_push_apns_team_mismatch /g;
kill 'USR1', $sw->{pid};
my @tm;
for (1 .. 200) { @tm = $sw->log =~ /metrics: sipwake_push_apns_team_mismatch (\d+)$/mg; last if @tm > $dumps; sleep 0.05 }
is($tm[-1], 3, 'push:apns_team_mismatch counts only pushes sent (the skipped one is not)');

# ---- environments: the only key is production's
(undef, $r) = register_phone('dev', 'example.com', "pn-provider=apns.dev;pn-param=TEAM123456.org.linphone.phone.voip;pn-prid=$DEV:voip");
is($r->{code}, 555, 'apns.dev without a sandbox credential: 555');
like(join(' ', Sipwake::UA::header($r, 'warning')), qr/No APNs credential for the sandbox/, 'saying why');
is(feature_caps($r), '', 'and no +sip.pns');
is($sw->sql("SELECT count(*) FROM location WHERE username='dev'"), '0', 'no binding stored');

# a tenant's sandbox key: its domain's development phones are registered and pushed
my ($rc, $out) = $sw->run_bin('tenant', 'add', 'acme', 'acme.example');
($rc, $out) = $sw->run_bin('tenant', 'apns-key', 'acme/dev', 'KEYSAND001', 'TEAM123456', "$dir/sand.p8", 'sandbox');
ok($rc == 0 && $out =~ m{acme/dev: apns_key for APNs sandbox stored}, 'a sandbox-only key stored') or diag $out;
($rc, $out) = $sw->run_bin('tenant', 'fcm', 'acme/dev', "$dir/sa2.json");
is($rc, 0, 'and a service account of FCM project proj-2') or diag $out;
($rc, $out) = $sw->run_bin('tenant', 'list');
like($out, qr{acme/dev apns_key key_id=KEYSAND001 team_id=TEAM123456 environment=sandbox}, 'listed with its environment');
($rc, $out) = $sw->run_bin('tenant', 'apns-key', 'acme/x', 'KEYSAND001', 'TEAM123456', "$dir/sand.p8", 'staging');
isnt($rc, 0, 'an unknown environment is refused');
kill 'HUP', $sw->{pid};
ok($sw->wait_log(qr/tenants: 1 tenants, 1 domains, 1 credential sets loaded/, 5), 'SIGHUP loads it');
my $dev;
($dev, $r) = register_phone('dev', 'acme.example', "pn-provider=apns.dev;pn-param=TEAM123456.org.linphone.phone.voip;pn-prid=$DEV:voip");
is($r->{code}, 200, 'apns.dev now: 200');
like(feature_caps($r), qr/\+sip\.pns="apns\.dev"/, 'with +sip.pns="apns.dev"');
ok($sw->disconnect($dev), 'the development phone asleep');
$caller->send_raw(invite('dev@acme.example', 'dev-1'));
$log = wait_for("$dir/sand.log", qr{"path": "/3/device/$DEV".*"status": \d});
like($log, qr{"path": "/3/device/$DEV", "kid": "KEYSAND001".*"status": 200},
     'pushed to the sandbox with the sandbox key, accepted');
unlike(slurp("$dir/prod.log"), qr/$DEV/, 'never to production');

# ---- FCM: pn-param is the project (RFC 8599 §11)
my $f = $sw->ua(user => 'andy');
$r = $f->register(contact => "sip:andy\@127.0.0.1:" . $f->local_port . ";pn-provider=fcm;pn-param=other-proj;pn-prid=fcm-tok-1",
    expires => 3600);
is($r->{code}, 555, 'an FCM project no service account serves: 555');
like(join(' ', Sipwake::UA::header($r, 'warning')), qr/No FCM service account for project other-proj/, 'saying why');
is(feature_caps($r), '', 'and no +sip.pns');
$r = $f->register(contact => "sip:andy\@127.0.0.1:" . $f->local_port . ";pn-provider=fcm;pn-param=x%22%0D%0AEvil:%201;pn-prid=fcm-tok-1",
    expires => 3600);
is($r->{code}, 555, 'a project with a quote and CRLF in it: 555');
ok(!defined Sipwake::UA::header($r, 'evil') && join(' ', Sipwake::UA::header($r, 'warning')) =~ /project x\?\?\?Evil\?\?1"/,
   'its Warning quotes it harmlessly');
$r = $f->register(contact => "sip:andy\@127.0.0.1:" . $f->local_port . ";pn-provider=fcm;pn-param=proj-1;pn-prid=fcm-tok-1",
    expires => 3600);
is($r->{code}, 200, 'its own project: 200');
like(feature_caps($r), qr/\+sip\.pns="fcm"/, 'with +sip.pns="fcm"');
my $ann;
($ann, $r) = register_phone('ann', 'acme.example', 'pn-provider=fcm;pn-param=proj-2;pn-prid=fcm-tok-3');
is($r->{code}, 200, 'proj-2 for acme\'s domain: 200');
ok($sw->disconnect($ann), 'asleep: sipwake saw its connection close');
# the account goes; the binding stays, and is never pushed through another project
($rc, $out) = $sw->run_bin('tenant', 'cred-del', 'acme/dev', 'fcm');
is($rc, 0, 'acme\'s proj-2 account deleted');
kill 'HUP', $sw->{pid};
ok($sw->wait_log(qr/tenants: 1 tenants, 1 domains, 1 credential sets loaded(?s:.*)tenants: 1 tenants, 1 domains, 1 credential sets loaded/, 5), 'SIGHUP');
my $mc = $caller->local_port;
$caller->send_raw("MESSAGE sip:ann\@acme.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$mc;rport;branch=z9hG4bKm1\r\n"
    . "Max-Forwards: 70\r\nFrom: <sip:carl\@example.com>;tag=m1\r\nTo: <sip:ann\@acme.example>\r\nCall-ID: fcm-m1\r\n"
    . "CSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi");
$r = Sipwake::UA::parse_response($caller->expect(qr/^SIP\/2\.0 [2-6]\d\d .*Call-ID: fcm-m1/s, 5));
is($r->{code}, 480, 'a MESSAGE for it: 480 at once');
ok($sw->wait_log(qr/no push to ann\@acme\.example: FCM project proj-2 is not the project proj-1 of \[push\]/, 10),
   'not pushed through [push]\'s proj-1, saying why');

ok($sw->alive, 'sipwake still running');
ok($sw->stop, 'stopped cleanly, no token in its log, no sanitizer report');
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error/, 'no errors');

# ---- no APNs or FCM credential at all (as `make run` starts): 555, nothing stored
my $none = Sipwake->new(config => {
    registrar => { push_providers => 'apns, fcm' },
    # undef: none of the harness's default credentials
    push => { apns_key_file => undef, apns_host => '127.0.0.1', apns_port => $pport, ca => "$dir/cert.pem" },
});
$none->start;
sub register_none {
    my ($user, $domain, $pn) = @_;
    my $ua = $none->ua(user => $user, domain => $domain, transport => 'tcp');
    return $ua->register(contact => "sip:$user\@127.0.0.1:" . $ua->local_port . ";transport=tcp;$pn",
        expires => 3600);
}
my $IOS = "pn-provider=apns;pn-param=TEAM123456.org.linphone.phone.voip;pn-prid=$VOIP";
$r = register_none('nina', 'acme.example', $IOS);
is($r->{code}, 555, 'no credential at all: an apns push REGISTER gets 555');
is($r->{reason}, 'Push Notification Service Not Supported', 'with its reason phrase');
like(join(' ', Sipwake::UA::header($r, 'warning')), qr/^399 \S+ "No APNs credential is configured"$/, 'its Warning says why');
is(feature_caps($r), '', 'no Feature-Caps: the phone is not told +sip.pns');
$r = register_none('otto', 'example.com', 'pn-provider=fcm;pn-param=proj-1;pn-prid=fcm-tok-9');
is($r->{code}, 555, 'an fcm push REGISTER gets 555 too');
like(join(' ', Sipwake::UA::header($r, 'warning')), qr/^399 \S+ "No FCM credential is configured"$/, 'its Warning says why');
is(feature_caps($r), '', 'no Feature-Caps');
# RFC 8599 capability queries offer only what can be pushed
$r = register_none('quinn', 'example.com', 'pn-provider');
is($r->{code}, 555, 'a bare pn-provider query with nothing to push with: 555');
is(feature_caps($r), '', 'offering nothing');
$r = register_none('quinn', 'example.com', 'pn-provider=apns');
is($r->{code}, 555, 'a query for apns: 555');
like(join(' ', Sipwake::UA::header($r, 'warning')), qr/^399 \S+ "No APNs credential is configured"$/, 'saying why');
is($none->sql("SELECT count(*) FROM location"), '0', 'nothing stored');
# a tenant's APNs key, added while sipwake runs, is used from then on
($rc, $out) = $none->run_bin('tenant', 'add', 'acme', 'acme.example');
is($rc, 0, 'a tenant added') or diag $out;
($rc, $out) = $none->run_bin('tenant', 'apns-key', 'acme/ios', 'KEYPROD001', 'TEAM123456', "$dir/prod.p8");
ok($rc == 0 && $out =~ m{acme/ios: apns_key}, 'with an APNs key') or diag $out;
kill 'HUP', $none->{pid};
ok($none->wait_log(qr/tenants: 1 tenants, 1 domains, 1 credential sets loaded/, 5), 'SIGHUP loads it');
$r = register_none('nina', 'acme.example', $IOS);
is($r->{code}, 200, 'the same apns REGISTER now: 200');
like(feature_caps($r), qr/\+sip\.pns="apns"/, 'with +sip.pns="apns"');
is($none->sql_wait("SELECT count(*) FROM location WHERE username='nina'", '1'), '1', 'its binding stored');
is($none->sql("SELECT count(*) FROM location"), '1', 'and only it: the 555s stored nothing');
$r = register_none('otto', 'example.com', 'pn-provider=fcm;pn-param=proj-1;pn-prid=fcm-tok-9');
is($r->{code}, 555, 'FCM still has no credential: 555');
like(join(' ', Sipwake::UA::header($r, 'warning')), qr/No FCM credential is configured/, 'saying so');
ok($none->stop, 'stopped cleanly, no token in its log, no sanitizer report');
done_testing();
