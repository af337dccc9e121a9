#!/usr/bin/perl
# What FCM and Web Push accept and answer, against emulators as strict as the services
# (issue 13): with webpush enabled sipwake needs a real VAPID subject (no default; Apple
# answers 403 BadJwtToken to one at localhost or .invalid), and --check says which key; a 403
# from a Web Push service is a credential problem — counted (push:bad_credentials), written to
# the push log as bad_credentials, listed in the admin's /api/stats for the dashboard until a
# push through the same credentials is delivered — and the binding stays; an FCM 400
# INVALID_ARGUMENT that says the registration token is not valid (FcmError only, as FCM
# answers today) removes the binding as a dead token, while an INVALID_ARGUMENT about the
# payload does not; data keys FCM reserves never reach it.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Sipwake;
use SipwakeAdmin;

# ---- the VAPID subject, checked before anything starts
my $webpush = { push_providers => 'apns, fcm, webpush' };
my $none = Sipwake->new(config => { registrar => $webpush, push => { vapid_subject => undef } });
my ($rc, $out) = $none->run_bin('--check');
is($rc, 1, 'webpush enabled without a vapid_subject: --check fails');
like($out, qr/\[push\] vapid_subject: required with webpush: a mailto: or https: contact/,
     'naming the key and what it needs');
ok(!eval { $none->start; 1 }, 'and sipwake does not start');
like($none->log, qr/\[push\] vapid_subject: required with webpush/, 'saying why');
for my $sub ('mailto:postmaster@localhost', 'https://pbx.invalid/contact', 'mailto:ops@pbx.local') {
    ($rc, $out) = Sipwake->new(config => { registrar => $webpush, push => { vapid_subject => $sub } })
        ->run_bin('--check');
    ok($rc == 1 && $out =~ /\[push\] vapid_subject: '\Q$sub\E' is not a contact on the internet: Apple's Web Push answers 403 BadJwtToken/,
       "--check refuses the subject $sub") or diag $out;
}
($rc, $out) = Sipwake->new(config => { push => { vapid_subject => undef } })->run_bin('--check');
is($rc, 0, 'without webpush no subject is needed') or diag $out;

# ---- the services
my $dir = tempdir('push-answers-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir) or BAIL_OUT('openssl failed');
Sipwake::make_service_account($dir, 'sa.json', 'proj-1');
# a bad payload, as FCM answers one (Firebase "FCM error codes", example 1)
open my $sc, '>', "$dir/script.json" or die;
print $sc q({"fcm-payload-token-1": {"errorCode": "INVALID_ARGUMENT", )
    . q("message": "Invalid value at 'message.data[0].value' (TYPE_STRING), 12", )
    . q("violations": [{"field": "message.data[0].value", "description": "Invalid value at 'message.data[0].value' (TYPE_STRING), 12"}]}});
close $sc;
# sub-other is restricted to a key that is not sipwake's: the service refuses its VAPID
# token (403 BadJwtToken); sub-open takes any correctly signed push
open my $subs, '>', "$dir/subs.json" or die;
print $subs '{"sub-other": {"key": "BA1Hxzyi1RUM1b5wjxsn7nGxAszw2u61m164i3MrAIxHF6YK5h4SDYic-dRuU_RCPCfA5aq9ojSwk5Y2EmClBPs"}, "sub-open": {}}';
close $subs;
my (undef, $fport) = Sipwake::start_emulator('fcm', '--cert', "$dir/cert.pem", '--key', "$dir/key.pem",
    '--service-account', "$dir/sa.json", '--script', "$dir/script.json", '--log', "$dir/fcm.log",
    '--lifetime', '120');
my (undef, $wport) = Sipwake::start_emulator('webpush', '--cert', "$dir/cert.pem", '--key', "$dir/key.pem",
    '--subscriptions', "$dir/subs.json", '--log', "$dir/webpush.log", '--lifetime', '120');
ok($fport && $wport, 'FCM and Web Push emulators listening');
sub slurp { open my $f, '<', $_[0] or return ''; local $/; <$f> // '' }

my $hport = Sipwake::free_port();
my $sw = Sipwake->new(
    config => {
        admin => { enabled => 'yes', listen => "127.0.0.1:$hport" },
        registrar => $webpush,
        push => { fcm_service_account => "$dir/sa.json", fcm_host => '127.0.0.1', fcm_port => $fport,
                  fcm_token_uri => "https://127.0.0.1:$fport/token", ca => "$dir/cert.pem",
                  bucket_timeout_other => 2 },
    },
    policy => <<'LUA');
-- extra FCM data for one phone, with keys FCM reserves for itself
return {
  push = function(req, binding, ctx)
    if binding.aor:find("^fdata@") then
      return { data = { from = "x", ["google.c"] = "y", note = "kept" } }
    end
    return nil
  end,
}
LUA
$sw->write_config;
($rc, $out) = $sw->run_bin('admin', 'token', 'add', 'ops');
my ($token) = $out =~ /^(swk_\S+)$/m;
$sw->start;
my $api = SipwakeAdmin->new(port => $hport, token => $token);

my %prid = (
    fdead => 'fcm~not~a~token',           # the service says it is not a registration token
    fpayload => 'fcm-payload-token-1',    # the service refuses the payload
    fdata => 'fcm-data-token-1',
    wbad => "https://127.0.0.1:$wport/push/sub-other",
    wok => "https://127.0.0.1:$wport/push/sub-open",
);
my %ua;
for my $user (sort keys %prid) {
    my $p = $user =~ /^f/ ? 'fcm;pn-param=proj-1' : 'webpush';
    $ua{$user} = $sw->ua(user => $user);
    my $r = $ua{$user}->register(contact => "sip:$user\@127.0.0.1:" . $ua{$user}->local_port
        . ";pn-provider=$p;pn-prid=$prid{$user}", expires => 3600);
    is($r->{code}, 200, "$user registered its push binding");
}
is($sw->sql_wait("SELECT count(*) FROM location", '5'), '5', 'five bindings stored');

my $caller = $sw->ua(user => 'carl');
my $n = 0;
sub message_to {
    my ($user) = @_;
    my $cp = $caller->local_port;
    $n++;
    $caller->send_raw("MESSAGE sip:$user\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bKans$n\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:carl\@example.com>;tag=a$n\r\nTo: <sip:$user\@example.com>\r\n"
        . "Call-ID: answers-$n\r\nCSeq: 1 MESSAGE\r\nContent-Length: 2\r\n\r\nhi");
}
# the push log row of user's push, once it is written: "outcome|reason|status"
sub logged {
    my ($user) = @_;
    return $sw->sql_wait("SELECT outcome || '|' || COALESCE(reason, '') || '|' || status FROM sipwake_push_log WHERE aor = '$user\@example.com'",
        qr/\|/, 10);
}

# ---- Web Push: a refused VAPID token is the credentials' problem
message_to('wbad');
is(logged('wbad'), 'bad_credentials|BadJwtToken|403',
   'a 403 BadJwtToken from the push service: bad_credentials in the push log, with its reason');
like(slurp("$dir/webpush.log"), qr/"status": 403/, 'the service did answer 403');
my $metrics = $api->get('/metrics')->{content};
like($metrics, qr/^sipwake_push_bad_credentials 1$/m, 'counted as push:bad_credentials');
like($metrics, qr/^sipwake_push_results_total\{provider="webpush",outcome="bad_credentials",reason="BadJwtToken"\} 1$/m,
     'and by provider, outcome and reason');
like($metrics, qr/^sipwake_push_rejected 0$/m, 'not as a rejected push');
my $stats = $api->get('/api/stats')->{json};
my ($problem) = grep { $_->{provider} eq 'webpush' } @{ $stats->{credential_problems} || [] };
ok($problem, '/api/stats lists the credential problem for the dashboard');
is_deeply([ map { $problem->{$_} } qw(credentials status reason count) ], ['[push]', 403, 'BadJwtToken', 1],
          'naming the credentials, the status, the reason and the count');
ok($problem && $problem->{count} && !defined $problem->{resolved}, 'unresolved');
ok($sw->wait_log(qr/error push: the webpush service at https:\/\/127\.0\.0\.1:\d+ refused the credentials \[push\] \(403 BadJwtToken\): check the VAPID key and \[push\] vapid_subject/),
   'an error line tells the operator what to check');
is($sw->sql("SELECT count(*) FROM location WHERE username = 'wbad'"), '1', 'the binding stays');

# a push through the same credentials that is delivered resolves it; the stricter service
# checks that push's VAPID token too (aud, exp, sub)
message_to('wok');
is(logged('wok'), 'delivered|201|201', 'a correctly signed push to another subscription: delivered');
($problem) = grep { $_->{provider} eq 'webpush' } @{ $api->get('/api/stats')->{json}{credential_problems} || [] };
ok($problem && defined $problem->{resolved}, 'the problem is shown resolved since then');

# ---- FCM: an invalid registration token is dead; a bad payload is not
message_to('fdead');
is(logged('fdead'), 'dead_token|invalid_registration_token|400',
   'INVALID_ARGUMENT "The registration token is not a valid FCM registration token": a dead token');
like(slurp("$dir/fcm.log"), qr/not a valid FCM registration token/, 'as the service said');
is($sw->sql_wait("SELECT count(*) FROM location WHERE username = 'fdead'", '0'), '0', 'its binding is removed');
message_to('fpayload');
is(logged('fpayload'), 'rejected|INVALID_ARGUMENT|400', 'INVALID_ARGUMENT about a data value: rejected');
is($sw->sql("SELECT count(*) FROM location WHERE username = 'fpayload'"), '1', 'and the binding stays');

message_to('fdata');
is(logged('fdata'), 'delivered||200', 'extra data with keys FCM reserves: delivered all the same');
my ($sent) = grep { /fcm-data-token-1/ && /messages:send/ } split /\n/, slurp("$dir/fcm.log");
like($sent // '', qr/\\"note\\": ?\\"kept\\"/, 'with the policy\'s other keys');
unlike($sent // '', qr/\\"from\\"|google\.c/, 'without "from" and "google.c"');
ok($sw->wait_log(qr/fcm: data key '(from|google\.c)' left out: FCM reserves it/), 'a warning names the key left out');

ok($sw->alive, 'sipwake still running');
ok($sw->stop, 'clean shutdown');
done_testing;
