#!/usr/bin/perl
# What a push service's refusal is about (issue 13, review of its work):
# - APNs 403 is "an error with the certificate or with the provider's authentication token"
#   (Apple, "Handling notification responses from APNs"): a key restricted to the sandbox
#   used on production (403 BadEnvironmentKeyInToken) is bad_credentials — counted, in the
#   push log, listed in /api/stats for the dashboard, an error line — and the binding stays;
# - a dead token is dead where the answer says: APNs DeviceTokenNotForTopic is about the
#   topic, so another account registering the same token under another app's topic loses
#   its own binding and nothing else (the victim's binding is still pushed);
# - an APNs 410 "timestamp" in the future is taken as now: the phone registering the token
#   again revives it;
# - Web Push 401/403: a subscription made for another VAPID key (FCM's 403 text, autopush's
#   401 errno 109 "VAPID public key mismatch") is a dead subscription (binding removed, the
#   service's reason); a JWT refused as such (FCM "invalid JWT provided", autopush errno 109
#   "Invalid Authorization Header", Apple BadJwtToken) is bad_credentials, binding kept.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Sipwake;
use SipwakeAdmin;

my $dir = tempdir('push-scope-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir, 'apns') or BAIL_OUT('openssl failed');
sub slurp { open my $f, '<', $_[0] or return ''; local $/; <$f> // '' }

# ---- APNs: a key for the other environment
my (undef, $eport) = Sipwake::start_apns_emulator($dir, '--key-environment', 'KEY1234567=sandbox',
    '--environment', 'production', '--log', "$dir/apns-env.log", '--lifetime', '120');
ok($eport, 'an APNs production emulator that knows our key as a sandbox key');
my $hport = Sipwake::free_port();
my $sw = Sipwake->new(config => {
    admin => { enabled => 'yes', listen => "127.0.0.1:$hport" },
    push => { apns_key_file => "$dir/apns.p8", apns_key_id => 'KEY1234567', apns_team_id => 'TEAM123456',
              apns_host => '127.0.0.1', apns_port => $eport, ca => "$dir/cert.pem", bucket_timeout => 1 } });
$sw->write_config;
my ($rc, $out) = $sw->run_bin('admin', 'token', 'add', 'ops');
my ($token) = $out =~ /^(swk_\S+)$/m;
$sw->start;
my $api = SipwakeAdmin->new(port => $hport, token => $token);

my ($caller, $n);
sub reg {
    my ($s, $user, $pn) = @_;
    my $ua = $s->ua(user => $user, transport => 'tcp');
    my $r = $ua->register(contact => "sip:$user\@127.0.0.1:" . $ua->local_port . ";transport=tcp;$pn",
        expires => 3600);
    # asleep: sipwake has seen the connection close
    return $s->disconnect($ua) ? $r->{code} : 'still connected';
}
# A MESSAGE to user; its final answer's code.
sub message_to {
    my ($s, $user) = @_;
    my $cp = $caller->local_port;
    $n++;
    $caller->send_raw("MESSAGE sip:$user\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bKsc$n\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:carl\@example.com>;tag=s$n\r\nTo: <sip:$user\@example.com>\r\n"
        . "Call-ID: scope-$n\r\nCSeq: 1 MESSAGE\r\nContent-Length: 2\r\n\r\nhi");
    my $r = Sipwake::UA::parse_response($caller->expect(qr/^SIP\/2\.0 [3-6]\d\d .*Call-ID: scope-$n\r/s, 10));
    return $r ? $r->{code} : 'none';
}
# The push log rows of user's pushes, "outcome|reason|status", once there are at least $min.
sub logged {
    my ($s, $user, $min) = @_;
    my @rows;
    for (1 .. 200) {
        @rows = split /\n/, $s->sql("SELECT outcome || '|' || COALESCE(reason, '') || '|' || status "
            . "FROM sipwake_push_log WHERE aor = '$user\@example.com' ORDER BY rowid");
        last if @rows >= ($min // 1);
        sleep 0.05;
    }
    return @rows;
}
sub bindings { $_[0]->sql("SELECT count(*) FROM location WHERE username = '$_[1]'") }

$caller = $sw->ua(user => 'carl');
is(reg($sw, 'env', 'pn-provider=apns;pn-param=TEAM123456.org.example.app;pn-prid=E0E0E001'), 200, 'env registered');
message_to($sw, 'env');
is((logged($sw, 'env'))[0], 'bad_credentials|BadEnvironmentKeyInToken|403',
   'APNs 403 BadEnvironmentKeyInToken: bad_credentials in the push log (not rejected)');
my $metrics = $api->get('/metrics')->{content};
like($metrics, qr/^sipwake_push_bad_credentials 1$/m, 'counted as push:bad_credentials');
like($metrics, qr/^sipwake_push_rejected 0$/m, 'not as a rejected push');
my ($problem) = grep { $_->{provider} eq 'apns' } @{ $api->get('/api/stats')->{json}{credential_problems} || [] };
ok($problem && $problem->{status} == 403 && $problem->{reason} eq 'BadEnvironmentKeyInToken',
   '/api/stats lists the credential problem for the dashboard') or diag explain $problem;
ok($sw->wait_log(qr/error push: the apns service refused the credentials \[push\] \(403 BadEnvironmentKeyInToken\): check the APNs key/),
   'an error line tells the operator what to check');
is(bindings($sw, 'env'), '1', 'the binding stays');
ok($sw->stop, 'clean shutdown');

# ---- APNs: dead where the answer says; a 410 from the future
open my $tf, '>', "$dir/tokens.json" or die;
print $tf '{"ABCDEF0123456789": {"topic": "org.example.app", "environment": "production"}}';
close $tf;
open my $sf, '>', "$dir/script.json" or die;
print $sf '{"FA000001": {"status": 410, "reason": "Unregistered", "timestamp_ms": 4102444800000, "times": 1}}';
close $sf;
my (undef, $aport) = Sipwake::start_apns_emulator($dir, '--tokens', "$dir/tokens.json",
    '--script', "$dir/script.json", '--log', "$dir/apns.log", '--lifetime', '120');
ok($aport, 'an APNs emulator with a device token of org.example.app');
# ---- and Web Push services in their own shapes
my $other = 'BA1Hxzyi1RUM1b5wjxsn7nGxAszw2u61m164i3MrAIxHF6YK5h4SDYic-dRuU_RCPCfA5aq9ojSwk5Y2EmClBPs';
open my $subs, '>', "$dir/subs.json" or die;
print $subs qq({"fcm-mismatch": {"key": "$other", "service": "fcm"}, )
    . qq("moz-mismatch": {"key": "$other", "service": "autopush"}, )
    . qq("apple-mismatch": {"key": "$other", "service": "apple"}, )
    . qq("fcm-jwt": {"refuse_jwt": true, "service": "fcm"}, )
    . qq("moz-jwt": {"refuse_jwt": true, "service": "autopush"}});
close $subs;
my (undef, $wport) = Sipwake::start_emulator('webpush', '--cert', "$dir/cert.pem", '--key', "$dir/key.pem",
    '--subscriptions', "$dir/subs.json", '--log', "$dir/webpush.log", '--lifetime', '120');
ok($wport, 'a Web Push emulator');

$sw = Sipwake->new(config => {
    registrar => { push_providers => 'apns, webpush' },
    push => { apns_key_file => "$dir/apns.p8", apns_key_id => 'KEY1234567', apns_team_id => 'TEAM123456',
              apns_host => '127.0.0.1', apns_port => $aport, ca => "$dir/cert.pem", bucket_timeout => 1,
              bucket_timeout_other => 1 } });
$sw->start;
$caller = $sw->ua(user => 'carl');
sub apns_pushes {
    my ($topic, $status) = @_;
    return scalar grep { /"event": "push"/ && /"topic": "\Q$topic\E"/ && /"status": $status\b/ }
        split /\n/, slurp("$dir/apns.log");
}

is(reg($sw, 'victim', 'pn-provider=apns;pn-param=TEAM123456.org.example.app;pn-prid=ABCDEF0123456789'), 200,
   'victim registers its token under its app');
is(reg($sw, 'mallory', 'pn-provider=apns;pn-param=TEAM123456.org.evil.app;pn-prid=ABCDEF0123456789'), 200,
   'mallory registers the same token under another app');
message_to($sw, 'mallory');
is((logged($sw, 'mallory'))[0], 'dead_token|DeviceTokenNotForTopic|400', 'mallory\'s push: DeviceTokenNotForTopic, a dead token');
is($sw->sql_wait("SELECT count(*) FROM location WHERE username = 'mallory'", '0'), '0', 'mallory\'s binding is removed');
message_to($sw, 'victim');
is((logged($sw, 'victim'))[0], 'delivered||200', 'the victim\'s push still goes out, delivered');
is(apns_pushes('org.example.app', 200), 1, 'APNs saw it, to the victim\'s topic');
unlike($sw->log, qr/token known dead/, 'no push refused as "token known dead"');
is(bindings($sw, 'victim'), '1', 'the victim\'s binding stays');

is(reg($sw, 'future', 'pn-provider=apns;pn-param=TEAM123456.org.example.app;pn-prid=FA000001'), 200,
   'future registered');
message_to($sw, 'future');
is((logged($sw, 'future'))[0], 'dead_token|Unregistered|410', '410 Unregistered with a timestamp in 2100: dead');
is($sw->sql_wait("SELECT count(*) FROM location WHERE username = 'future'", '0'), '0', 'the binding is removed');
# the registration below must come at a later millisecond than the answer: the clock's
# granularity, not a wait for an event
sleep 0.02;
is(reg($sw, 'future', 'pn-provider=apns;pn-param=TEAM123456.org.example.app;pn-prid=FA000001'), 200,
   'the phone registers the same token again');
message_to($sw, 'future');
is((logged($sw, 'future', 2))[1], 'delivered||200', 'and is pushed again: the 410 counts as of its answer, not 2100');
unlike($sw->log, qr/token known dead/, 'not refused as "token known dead"');

# ---- Web Push
my %want = (
    'fcm-mismatch' => ['dead_token|VAPID credentials do not correspond to the subscription|403', 0,
                       'FCM 403 "do not correspond to the credentials used to create the subscriptions"'],
    'moz-mismatch' => ['dead_token|VAPID public key mismatch|401', 0, 'autopush 401 errno 109 "VAPID public key mismatch"'],
    'apple-mismatch' => ['bad_credentials|BadJwtToken|403', 1, 'Apple 403 BadJwtToken (it names no key mismatch)'],
    'fcm-jwt' => ['bad_credentials|403|403', 1, 'FCM 403 "invalid JWT provided"'],
    'moz-jwt' => ['bad_credentials|401|401', 1, 'autopush 401 errno 109 "Invalid Authorization Header"'],
);
for my $sub (sort keys %want) {
    (my $user = $sub) =~ s/-//;
    is(reg($sw, $user, "pn-provider=webpush;pn-prid=https://127.0.0.1:$wport/push/$sub"), 200, "$user registered");
    message_to($sw, $user);
    my ($row, $left, $what) = @{ $want{$sub} };
    is((logged($sw, $user))[0], $row, "$what: " . ($left ? 'bad_credentials' : 'a dead subscription'));
    is($sw->sql_wait("SELECT count(*) FROM location WHERE username = '$user'", "$left"), "$left",
       $left ? 'the binding stays' : 'its binding is removed');
}
like(slurp("$dir/webpush.log"), qr/"status": 401/, 'the service did answer 401 where it should');

ok($sw->alive, 'sipwake still running');
ok($sw->stop, 'clean shutdown');
done_testing;
