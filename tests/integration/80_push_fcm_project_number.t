#!/usr/bin/perl
# Issue 13 review: Linphone Android puts the Firebase sender ID — the numeric project number
# (gcm_defaultSenderId) — in pn-param, not the project ID RFC 8599 §11 names; the legacy
# pn-type=google;app-id= form converts to the same. FCM v1 takes either in its URL
# ("projects/{project_number}" is supported too). So:
# - with the project number declared ([push] fcm_project_number, or a tenant credential's
#   project_number), a pn-param that is the number or the ID (in any case) is that account's
#   project: 200 +sip.pns, and the push goes to projects/<number> and is delivered by an FCM
#   emulator that knows its project's number; a number nobody declared gets 555;
# - with none declared, a numeric pn-param is never guessed to be a project's, not even with
#   one FCM account only (issue 13 attack b02: a wrong guess pushed to projects/<number>, FCM
#   answered 403 and the operator's credential alarm went off for a credential that is fine):
#   555 with a Warning, and a warn line, once per number, naming what to set;
# - a tenant's credential serves only its tenant's domains (attack b07: a phone of a domain
#   without a tenant registering the number of tenant acme's credential was told +sip.pns,
#   and its pushes, which use [push] only, were never sent).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Sipwake;
use SipwakeAdmin;

my $PROJECT = 'linphone-android-8a563';
my $NUMBER = '929724111839';
my $dir = tempdir('fcm-number-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir) or BAIL_OUT('openssl failed');
Sipwake::make_service_account($dir, 'sa.json', $PROJECT);
Sipwake::make_service_account($dir, 'sa2.json', 'other-project');
# a token the app got for another project (sender): FCM answers SENDER_ID_MISMATCH
open my $sc, '>', "$dir/script.json" or die;
print $sc '{"dGVzdA:APA91bForeignToken1": {"sender": "111111111111"}}';
close $sc;
my (undef, $fport) = Sipwake::start_emulator('fcm', '--cert', "$dir/cert.pem", '--key', "$dir/key.pem",
    '--service-account', "$dir/sa.json", '--project-number', $NUMBER, '--script', "$dir/script.json", '--log', "$dir/fcm.log",
    '--lifetime', '120');
ok($fport, 'FCM emulator listening, knowing its project number');
sub slurp { open my $f, '<', $_[0] or return ''; local $/; <$f> // '' }

sub server {
    my (%push) = @_;
    return Sipwake->new(config => {
        registrar => { push_providers => 'fcm' },
        push => { fcm_service_account => "$dir/sa.json", fcm_host => '127.0.0.1', fcm_port => $fport,
                  fcm_token_uri => "https://127.0.0.1:$fport/token", ca => "$dir/cert.pem",
                  bucket_timeout_other => 2, %push } });
}
my $n = 0;
sub register {
    my ($sw, $user, $params, $domain) = @_;
    my $ua = $sw->ua(user => $user, $domain ? (domain => $domain) : ());
    my $r = $ua->register(contact => "sip:$user\@127.0.0.1:" . $ua->local_port . ";$params", expires => 3600);
    my ($warning) = (Sipwake::UA::header($r, 'warning') // '') =~ /"([^"]*)"/;
    return ($r->{code}, scalar grep({ /\+sip\.pns="fcm"/ } Sipwake::UA::header($r, 'feature-caps')), $warning // '');
}
sub message_to {
    my ($sw, $user) = @_;
    my $caller = $sw->ua(user => 'carl');
    my $cp = $caller->local_port;
    $n++;
    $caller->send_raw("MESSAGE sip:$user\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bKfn$n\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:carl\@example.com>;tag=a$n\r\nTo: <sip:$user\@example.com>\r\n"
        . "Call-ID: fcm-number-$n\r\nCSeq: 1 MESSAGE\r\nContent-Length: 2\r\n\r\nhi");
    return $sw->sql_wait("SELECT outcome || '|' || COALESCE(reason, '') || '|' || status FROM sipwake_push_log "
        . "WHERE aor = '$user\@example.com'", qr/\|/, 10);
}

# ---- the number declared: [push] fcm_project_number
my ($rc, $out) = server(fcm_project_number => 'proj-9')->run_bin('--check');
ok($rc == 1 && $out =~ /\[push\] fcm_project_number: a project number is 1\.\.20 digits/,
   '--check refuses a project number that is not digits') or diag $out;
my $sw = server(fcm_project_number => $NUMBER);
$sw->start;
my @r = register($sw, 'droid', "pn-provider=fcm;pn-param=$NUMBER;pn-prid=dGVzdA:APA91bDroidToken1");
is_deeply([ @r[0, 1] ], [200, 1], 'Linphone Android (pn-param = the sender ID): 200 +sip.pns="fcm"');
@r = register($sw, 'legacy', "pn-type=google;app-id=$NUMBER;pn-tok=dGVzdA:APA91bLegacyToken1");
is_deeply([ @r[0, 1] ], [200, 1], 'the legacy pn-type=google;app-id=<sender ID> form: 200 +sip.pns');
@r = register($sw, 'caps', 'pn-provider=fcm;pn-param=Linphone-Android-8A563;pn-prid=dGVzdA:APA91bCapsToken1');
is_deeply([ @r[0, 1] ], [200, 1], 'the project ID in another case: 200 +sip.pns');
@r = register($sw, 'stranger', 'pn-provider=fcm;pn-param=555555555555;pn-prid=dGVzdA:APA91bStrangerTok');
is_deeply(\@r, [555, 0, 'No FCM service account for project number 555555555555'],
          'a number no credential declares: 555, saying so');

is(message_to($sw, 'droid'), 'delivered||200', 'the push to the sender-ID binding is delivered');
like(slurp("$dir/fcm.log"), qr{"path": "/v1/projects/$NUMBER/messages:send", "body": "[^\n]*APA91bDroidToken1},
     'to projects/<number>, the project the phone named');
is(message_to($sw, 'caps'), 'delivered||200', 'the push to the project-ID binding is delivered');
like(slurp("$dir/fcm.log"), qr{"path": "/v1/projects/$PROJECT/messages:send", "body": "[^\n]*APA91bCapsToken1},
     'to projects/<project ID>');
@r = register($sw, 'foreign', "pn-provider=fcm;pn-param=$NUMBER;pn-prid=dGVzdA:APA91bForeignToken1");
is($r[0], 200, 'a token of another sender, registered with our number: 200 (sipwake cannot tell)');
is(message_to($sw, 'foreign'), 'dead_token|SENDER_ID_MISMATCH|403',
   'FCM (the emulator as strict) refuses a token of another project: SENDER_ID_MISMATCH');
ok($sw->stop, 'clean shutdown');

# ---- nothing declared, one FCM account: a number is not guessed
$sw = server();
$sw->start;
@r = register($sw, 'droid', "pn-provider=fcm;pn-param=$NUMBER;pn-prid=dGVzdA:APA91bDroidToken2");
is_deeply(\@r, [555, 0, "No FCM service account for project number $NUMBER"],
          'no number declared, one FCM account: the sender ID is not guessed, 555');
ok($sw->wait_log(qr/warn  push: FCM pn-param $NUMBER is a project number no FCM credential declares, so REGISTERs naming it get 555: if it is the number of project $PROJECT \(\[push\] fcm_service_account\), set \[push\] fcm_project_number = $NUMBER; if it is a tenant credential's project, give it that number/),
   'logged, naming the key and the value to set');
@r = register($sw, 'droid', "pn-provider=fcm;pn-param=$NUMBER;pn-prid=dGVzdA:APA91bDroidToken2");
is($r[0], 555, 'again: 555');
@r = register($sw, 'guess', 'pn-provider=fcm;pn-param=123456789;pn-prid=dGVzdA:APA91bGuessToken22');
is($r[0], 555, 'another number: 555 too');
ok($sw->wait_log(qr/FCM pn-param 123456789 is a project number no FCM credential declares/), 'logged for that number');
is(scalar(() = $sw->log =~ /FCM pn-param $NUMBER is a project number/g), 1, 'once per number');
is($sw->sql("SELECT count(*) FROM location WHERE username IN ('droid', 'guess')"), '0', 'nothing registered');
unlike($sw->log, qr/APA91b/, 'the tokens are not logged');
ok($sw->stop, 'clean shutdown');

# ---- several FCM accounts: no guess; a tenant credential declares its own number
my $hport = Sipwake::free_port();
$sw = server();
$sw->{config}{admin} = { enabled => 'yes', listen => "127.0.0.1:$hport" };
$sw->write_config;
($rc, $out) = $sw->run_bin('admin', 'token', 'add', 'ops');
my ($token) = $out =~ /^(swk_\S+)$/m;
($rc, $out) = $sw->run_bin('tenant', 'add', 'acme', 'acme.example');
is($rc, 0, 'tenant added') or diag $out;
($rc, $out) = $sw->run_bin('tenant', 'fcm', 'acme', "$dir/sa2.json", 'other-9');
ok($rc != 0 && $out =~ /a project number is 1\.\.20 digits/, 'a tenant FCM credential with a bad project number is refused')
    or diag $out;
($rc, $out) = $sw->run_bin('tenant', 'fcm', 'acme', "$dir/sa2.json", '4242');
is($rc, 0, 'a tenant FCM credential with its project number') or diag $out;
($rc, $out) = $sw->run_bin('tenant', 'list');
like($out, qr/acme\/default fcm project=other-project project_number=4242/, 'tenant list shows the number');
$sw->start;
@r = register($sw, 'tenantphone', 'pn-provider=fcm;pn-param=4242;pn-prid=dGVzdA:APA91bTenantToken1', 'acme.example');
is_deeply([ @r[0, 1] ], [200, 1], "the tenant credential's declared number, in the tenant's domain: 200");
@r = register($sw, 'bob', 'pn-provider=fcm;pn-param=4242;pn-prid=dGVzdA:APA91bBobToken0001');
is_deeply(\@r, [555, 0, 'No FCM service account for project number 4242'],
          "the tenant's number in a domain without the tenant: 555 (its pushes use [push] only)");
@r = register($sw, 'droid', "pn-provider=fcm;pn-param=$NUMBER;pn-prid=dGVzdA:APA91bDroidToken3");
is_deeply(\@r, [555, 0, "No FCM service account for project number $NUMBER"],
          'a number nobody declared, with two FCM accounts: not guessed, 555');

# the admin API takes and shows the number too
my $api = SipwakeAdmin->new(port => $hport, token => $token);
my $sa2 = slurp("$dir/sa2.json");
my $res = $api->put('/api/tenants/acme/credentials/web/fcm', { service_account => $sa2, project_number => '12ab' });
ok($res->{status} == 422 && $res->{json}{error} =~ /a project number is 1\.\.20 digits/,
   'admin API: a project number that is not digits: 422') or diag explain $res->{json};
$res = $api->put('/api/tenants/acme/credentials/web/fcm', { service_account => $sa2, project_number => '5150' });
is($res->{status}, 200, 'admin API: an FCM credential with its project number');
my ($web) = grep { $_->{name} eq 'web' } @{ $api->get('/api/tenants')->{json}[0]{credential_sets} || [] };
is_deeply([ map { @$_{qw(kind project_id project_number)} } @{ $web->{credentials} || [] } ],
          ['fcm', 'other-project', '5150'], 'listed with its project ID and number');
@r = register($sw, 'webphone', 'pn-provider=fcm;pn-param=5150;pn-prid=dGVzdA:APA91bWebToken0001', 'acme.example');
is_deeply([ @r[0, 1] ], [200, 1], 'a REGISTER with that number: 200, at once');
ok($sw->stop, 'clean shutdown');
done_testing;
