#!/usr/bin/perl
# The web admin's JSON API from the outside: nothing without a login or an API token; login
# with a rate limit on failures; sessions in HttpOnly SameSite cookies; CSRF and foreign
# origins refused; tenants, domains and credentials managed, validated on upload and never
# returned; a key uploaded here signs the next push; registrations listed without device
# tokens and removed; pending messages listed and purged; the push log filtered; statistics;
# policy status and reload; the audit log; static files without path traversal; oversized
# bodies refused; logout.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Sipwake;
use SipwakeAdmin;

my $dir = tempdir('admin-api-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir, 'acme') or BAIL_OUT('openssl failed');
my (undef, $apns) = Sipwake::start_emulator('apns', '--cert', "$dir/cert.pem", '--key', "$dir/key.pem",
    '--auth-key', "KEYACME001:TEAMAAAAAA:$dir/acme-pub.pem", '--log', "$dir/apns.log", '--lifetime', '120');
ok($apns, 'APNs emulator listening');
sub apns_log { open my $f, '<', "$dir/apns.log" or return ''; local $/; <$f> // '' }

my $hport = Sipwake::free_port();
my $sw = Sipwake->new(config => {
    admin => { enabled => 'yes', listen => "127.0.0.1:$hport", max_body => 65536 },
    offline => { enabled => 'yes' },
    push => { apns_host => '127.0.0.1', apns_port => $apns, ca => "$dir/cert.pem", bucket_timeout_other => 2 },
});
$sw->write_config;
my $bin = $Sipwake::BIN;
my $cfg = $sw->config_path;
is(system("printf 'correct horse battery\\n' | $bin --config $cfg admin add alice >/dev/null 2>&1"), 0,
   'sipwake admin add: the first account, password from stdin');
is(system("printf 'short\\n' | $bin --config $cfg admin add bob >/dev/null 2>&1") >> 8, 1,
   'a password under 10 characters is refused');
like($sw->sql("SELECT password_hash FROM sipwake_admins WHERE name='alice'"), qr/^\$scrypt\$ln=15,r=8,p=1\$\S+\$\S+$/,
     'stored as a salted scrypt hash');
my ($rc, $out) = $sw->run_bin('admin', 'token', 'add', 'ci');
my ($token) = $out =~ /^(swk_\S+)$/m;
ok($rc == 0 && $token && $token =~ /^swk_[A-Za-z0-9_-]{43}$/, 'sipwake admin token add prints a token once');
is($sw->sql("SELECT count(*) FROM sipwake_admin_tokens WHERE token_sha256 = '" . Digest::SHA::sha256_hex($token) . "'"), '1',
   'only its SHA-256 is stored');
$sw->start;
ok($sw->wait_log(qr{admin: listening on http://127\.0\.0\.1:$hport}, 5), 'the admin listens where configured');

my $anon = SipwakeAdmin->new(port => $hport);
my $web = SipwakeAdmin->new(port => $hport);
my $api = SipwakeAdmin->new(port => $hport, token => $token);

# ---- nothing without a login or a token
for my $p ('/api/tenants', '/api/registrations', '/api/messages', '/api/push-log', '/api/stats', '/api/policy',
           '/api/audit', '/api/session', '/metrics') {
    is($anon->get($p)->{status}, 401, "GET $p without a login: 401");
}
is($anon->post('/api/tenants', { name => 'x' })->{status}, 401, 'POST /api/tenants without a login: 401');
is($anon->post('/api/policy/reload')->{status}, 401, 'a policy reload without a login: 401');
is($anon->post('/mi', { jsonrpc => '2.0', id => 1, method => 'uptime' })->{status}, 401, 'POST /mi without a token: 401');
is($anon->get('/api/tenants', token => 'swk_' . ('A' x 43))->{status}, 401, 'an unknown token: 401');
ok($sw->wait_log(qr/unknown API token from 127\.0\.0\.1/, 10), 'and it is logged');

# ---- static pages
my $r = $anon->get('/');
is($r->{status}, 200, 'the page itself is public (it shows the login form)');
like($r->{headers}{'content-security-policy'}, qr/default-src 'self'.*frame-ancestors 'none'/, 'with a strict CSP');
is($r->{headers}{'x-content-type-options'}, 'nosniff', 'and nosniff');
is($anon->raw_status('GET /../../../etc/passwd'), 403, 'path traversal: refused');
is($anon->raw_status('GET /%2e%2e/%2e%2e/etc/passwd'), 403, 'escaped path traversal: refused');
is($anon->raw_status('GET /..%2f..%2fsipwake.conf'), 403, 'escaped slashes: refused');
is($anon->raw_status('GET /.git/config'), 404, 'hidden files: not served');
is($anon->raw_status('GET /nope.html'), 404, 'a missing page: 404');
is($anon->post('/index.html', {})->{status}, 405, 'the pages are read-only');

# ---- login
$r = $web->login('alice', 'wrong password!');
is($r->{status}, 401, 'a wrong password: 401');
is($r->{json}{error}, 'wrong user name or password', 'saying only that');
is($web->login('nobody', 'whatever123')->{status}, 401, 'an unknown account: the same 401');
ok($sw->wait_log(qr/failed login for 'alice' from 127\.0\.0\.1/, 10), 'failed logins are logged');
$r = $web->login('alice', 'correct horse battery');
is($r->{status}, 200, 'the right password: logged in');
like($web->set_cookie_header, qr/^sipwake_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=\d+$/,
     'the session cookie is HttpOnly and SameSite=Strict');
like($r->{json}{csrf}, qr/^[A-Za-z0-9_-]{43}$/, 'the answer carries the CSRF token');
is($web->get('/api/session')->{json}{user}, 'alice', 'GET /api/session: who is logged in');
is($api->get('/api/session')->{json}{user}, 'token:ci', 'and for a token, its name');

my $bob = SipwakeAdmin->new(port => $hport);
for (1 .. 5) { $bob->login('bob', 'not the password') }
$r = $bob->login('bob', 'not the password');
is($r->{status}, 429, 'five failures for one account: the sixth try is refused');
ok($r->{headers}{'retry-after'} > 0, 'with Retry-After');
is(SipwakeAdmin->new(port => $hport)->login('alice', 'correct horse battery')->{status}, 200,
   'another account from the same address still logs in');

# ---- CSRF and origin
is($web->post('/api/tenants', { name => 'acme' }, csrf => 0)->{status}, 403, 'a change without X-CSRF-Token: 403');
is($web->post('/api/tenants', { name => 'acme' }, csrf_value => 'x' x 43)->{status}, 403, 'with a wrong one: 403');
is($web->post('/api/tenants', { name => 'acme' }, headers => { Origin => 'http://evil.example' })->{status}, 403,
   'from a foreign Origin: 403');
is($sw->sql("SELECT count(*) FROM sipwake_tenants"), '0', 'and none of them changed anything');

# ---- tenants and domains
$r = $web->post('/api/tenants', { name => 'acme', domains => ['ACME.example'] },
                headers => { Origin => "http://127.0.0.1:$hport" });
is($r->{status}, 201, 'a tenant created from the browser (same origin, CSRF token)');
is($api->post('/api/tenants', { name => 'acme' })->{status}, 409, 'twice: 409');
is($api->post('/api/tenants', { name => '<script>alert(1)</script>' })->{status}, 400, 'a name with markup: 400');
is($api->post('/api/tenants', 'not json')->{status}, 400, 'a body that is not JSON: 400');
is($api->post('/api/tenants', { name => 'zeta', domains => ['acme.example'] })->{status}, 409,
   'a tenant with a domain that is taken: 409');
is($sw->sql("SELECT count(*) FROM sipwake_tenants WHERE name='zeta'"), '0', '... and it is not half made');
is($api->post('/api/tenants', { name => 'zeta' })->{status}, 201, 'a second tenant, by API token (no CSRF needed)');
is($api->post('/api/tenants/zeta/domains', { domain => 'Zeta.example' })->{status}, 201, 'a domain added');
is($api->patch('/api/tenants/zeta', { name => 'zed' })->{status}, 200, 'renamed');
$r = $api->get('/api/tenants');
is_deeply([map { [$_->{name}, $_->{domains}] } @{ $r->{json} }], [['acme', ['acme.example']], ['zed', ['zeta.example']]],
          'listed with their domains, in lower case');
is($api->del('/api/tenants/zed/domains/other.example')->{status}, 404, 'removing a domain it does not have: 404');
is($api->del('/api/tenants/zed/domains/zeta.example')->{status}, 200, 'a domain removed');
is($api->del('/api/tenants/zed')->{status}, 200, 'a tenant deleted');
is($api->del('/api/tenants/zed')->{status}, 404, 'twice: 404');

# ---- credentials
my $p8 = do { open my $f, '<', "$dir/acme.p8" or die; local $/; <$f> };
my @key_lines = $p8 =~ /^([A-Za-z0-9+\/=]{20,})$/mg;
$r = $api->put('/api/tenants/acme/credentials/default/apns_key', { key_id => 'KEYACME001', team_id => 'TEAMAAAAAA', key => 'not a key' });
is($r->{status}, 422, 'a .p8 that is not a key: 422');
like($r->{json}{error}, qr/key/i, 'with the reason');
my $cert = do { open my $f, '<', "$dir/cert.pem" or die; local $/; <$f> };
$r = $api->put('/api/tenants/acme/credentials/default/apns_certificate', { certificate => "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n" });
is($r->{status}, 422, 'a certificate that does not parse: 422');
$r = $api->put('/api/tenants/acme/credentials/default/apns_certificate', { certificate => $cert });
ok($r->{status} == 422 && $r->{json}{error} =~ /key/i, 'a certificate without its private key: 422, saying so') or diag explain $r->{json};
$r = $api->put('/api/tenants/acme/credentials/default/fcm',
               { service_account => { type => 'service_account', project_id => 'p', client_email => 'x@p.iam.gserviceaccount.com' } });
ok($r->{status} == 422 && $r->{json}{error} =~ /private_key/, 'a service account without a private key: 422') or diag explain $r->{json};
$r = $api->put('/api/tenants/nobody/credentials/default/apns_key', { key_id => 'K', team_id => 'T', key => $p8 });
is($r->{status}, 404, 'a credential for an unknown tenant: 404');
$r = $api->put('/api/tenants/acme/credentials/default/apns_key', { key_id => 'KEYACME001', team_id => 'TEAMAAAAAA', key => $p8 . ('#' x 70000) });
is($r->{status}, 413, 'an upload over [admin] max_body: 413');
is($api->put('/api/tenants/acme/credentials/default/telepathy', {})->{status}, 404, 'an unknown kind: 404');
$r = $api->put('/api/tenants/acme/credentials/default/apns_key', { key_id => 'KEYACME001', team_id => 'TEAMAAAAAA', key => $p8,
    environment => 'staging' });
ok($r->{status} == 422 && $r->{json}{error} =~ /production, sandbox or both/, 'an unknown APNs environment: 422, naming the three');
$r = $api->put('/api/tenants/acme/credentials/default/fcm', { service_account => 'x', environment => 'sandbox' });
ok($r->{status} == 422 && $r->{json}{error} =~ /only an APNs credential/, 'an environment for FCM: 422');
# a field of the wrong type or an unknown one is refused by name, not dropped (issue 13)
my %dp = Sipwake::default_push();
my $sa = do { open my $f, '<', $dp{fcm_service_account} or die; local $/; JSON::PP::decode_json(<$f>) };
$r = $api->put('/api/tenants/acme/credentials/obj/fcm', { service_account => $sa, project_number => 929724111839 });
is($r->{status}, 200, 'an FCM project_number given as a JSON integer is taken') or diag explain $r->{json};
my ($obj) = grep { $_->{name} eq 'obj' } @{ $api->get('/api/tenants')->{json}[0]{credential_sets} };
is(($obj ? $obj->{credentials}[0]{project_number} : undef) // '', '929724111839', 'and listed with it');
$r = $api->put('/api/tenants/acme/credentials/obj/fcm', { service_account => $sa, project_number => [1] });
ok($r->{status} == 422 && $r->{json}{error} =~ /"project_number" must be a string of digits/, 'a project_number that is neither: 422 naming it') or diag explain $r;
$r = $api->put('/api/tenants/acme/credentials/obj/apns_key', { key_id => 'KEYACME001', team_id => 'TEAMAAAAAA', key => $p8, environmnet => 'sandbox' });
ok($r->{status} == 422 && $r->{json}{error} =~ /unknown field "environmnet" for apns_key/, 'a misspelled field: 422 naming it') or diag explain $r;
$r = $api->put('/api/tenants/acme/credentials/obj/apns_key', { key_id => 'KEYACME001', team_id => 'TEAMAAAAAA', key => $p8, environment => 1 });
ok($r->{status} == 422 && $r->{json}{error} =~ /"environment" must be a string/, 'an environment that is not a string: 422 naming it') or diag explain $r;
$r = $api->put('/api/tenants/acme/credentials/obj/fcm', { service_account => $sa, key_id => 'KEYACME001' });
ok($r->{status} == 422 && $r->{json}{error} =~ /unknown field "key_id" for fcm/, 'a field of another kind: 422 naming it') or diag explain $r;
is($api->del('/api/tenants/acme/credentials/obj')->{status}, 200, 'the set removed again');
$r = $web->put('/api/tenants/acme/credentials/default/apns_key', { key_id => 'KEYACME001', team_id => 'TEAMAAAAAA', key => $p8 });
is($r->{status}, 200, 'a good .p8 key uploaded from the browser');
$r = $api->get('/api/tenants');
my ($cred) = @{ $r->{json}[0]{credential_sets}[0]{credentials} };
is_deeply([@$cred{qw(kind key_id team_id environment)}], ['apns_key', 'KEYACME001', 'TEAMAAAAAA', 'both'],
          'listed: kind, key id, team id, environment (both by default)');
ok(!grep({ $web->seen =~ /\Q$_\E/ || $api->seen =~ /\Q$_\E/ } @key_lines) && $api->seen !~ /PRIVATE KEY/,
   'no answer ever held a line of the key');
is(((stat $sw->db)[2] & 0777), 0600, 'the store is mode 0600');

# ---- the next push uses it, and shows in the push log
my $ua = $sw->ua(user => 'pat', domain => 'acme.example', transport => 'tcp');
my $reg = $ua->register(contact => 'sip:pat@127.0.0.1:' . $ua->local_port
    . ';transport=tcp;pn-provider=apns;pn-param=TEAMAAAAAA.org.acme.app;pn-prid=ABCD1234EF567890', expires => 3600,
    user_agent => 'PhoneApp/1.0');
is($reg->{code}, 200, 'a phone of acme.example registered with push params');
ok($sw->disconnect($ua), 'the phone is asleep: sipwake saw its connection close');
my $caller = $sw->ua(user => 'carl');
my $cp = $caller->local_port;
$caller->send_raw("MESSAGE sip:pat\@acme.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bKm1\r\n"
    . "Max-Forwards: 70\r\nFrom: <sip:carl\@example.com>;tag=c1\r\nTo: <sip:pat\@acme.example>\r\n"
    . "Call-ID: admin-m1\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello");
ok($caller->expect(qr/^SIP\/2\.0 202/, 5), "a MESSAGE for it is stored (202)");
for (1 .. 200) { last if apns_log() =~ m{"path": "/3/device/ABCD1234EF567890"}; sleep 0.05 }
like(apns_log(), qr{"path": "/3/device/ABCD1234EF567890", "kid": "KEYACME001".*"status": 200},
     'the push is signed with the key uploaded in the admin, without a restart');
my $log;
for (1 .. 100) { $log = $api->get('/api/push-log?tenant=acme'); last if @{ $log->{json} || [] }; sleep 0.1 }
is($log->{json}[0]{outcome}, 'delivered', 'the push log shows it, by tenant');
is($log->{json}[0]{credentials}, 'acme/default', 'with the set used');
like($log->{json}[0]{token_hash}, qr/^[0-9a-f]{16}$/, 'and the token\'s hash');
is(scalar @{ $api->get('/api/push-log?provider=fcm')->{json} }, 0, 'filtered by provider');
is(scalar @{ $api->get('/api/push-log?reason=delivered&provider=apns')->{json} }, 1, 'by outcome or reason');
is(scalar @{ $api->get('/api/push-log?tenant=zed')->{json} }, 0, 'by tenant');

# ---- registrations
$r = $api->get('/api/registrations?aor=pat');
is($r->{json}{matched}, 1, 'registrations found by a part of the AOR');
my $b = $r->{json}{aors}[0]{bindings}[0];
is($r->{json}{aors}[0]{aor}, 'pat@acme.example', 'the AOR');
is($b->{provider}, 'apns', 'its binding\'s provider');
ok($b->{last_refresh} && $b->{expires_in} > 3000, 'last refresh and expiry');
is($b->{user_agent}, 'PhoneApp/1.0', 'the user agent');
is($b->{transport}, 'tcp', 'the transport');
unlike($api->seen, qr/ABCD1234EF567890/, 'the device token is never in an answer');
like($b->{contact}, qr/pn-prid=redacted-[0-9a-f]{16}/, 'the contact shows its hash instead');

# ---- pending messages
$r = $api->get('/api/messages');
is($r->{json}[0]{aor}, 'pat@acme.example', 'pending messages per AOR');
is($r->{json}[0]{count}, 1, 'one waiting');
is($api->del('/api/messages/pat@acme.example')->{json}{purged}, 1, 'purged');
is($sw->sql("SELECT count(*) FROM sipwake_messages"), '0', 'gone from the store');
is(scalar @{ $api->get('/api/messages')->{json} }, 0, 'and from the list');

is($api->del("/api/registrations/pat\@acme.example/$b->{contact_id}")->{json}{removed}, 1, 'a binding removed');
is($sw->sql_wait("SELECT count(*) FROM location WHERE username='pat'", '0'), '0', 'gone from the store too');
is($api->del('/api/registrations/pat@acme.example')->{status}, 404, 'removing it again: 404');

# ---- statistics, metrics
$r = $api->get('/api/stats');
ok($r->{json}{counters}{'registrar:accepted_regs'} >= 1, 'statistics: counters by OpenSIPS-style name');
ok(@{ $r->{json}{series} } >= 1 && exists $r->{json}{series}[-1]{push}{apns}{delivered}, 'and samples for the charts');
is($r->{json}{series}[-1]{push}{apns}{delivered}, 1, 'counting the push');
$r = $api->get('/metrics');
like($r->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4}, '/metrics in Prometheus text format');
like($r->{content}, qr/^# TYPE sipwake_usrloc_location_contacts gauge$/m, 'usrloc contacts, named as OpenSIPS names them');
like($r->{content}, qr/^sipwake_push_results_total\{provider="apns",outcome="delivered",reason="none"\} 1$/m,
     'push attempts by provider and reason');
like($r->{content}, qr/^sipwake_bucket_depth 0$/m, 'bucket depth');
like($r->{content}, qr/^sipwake_wake_latency_seconds_bucket\{le="\+Inf"\} \d+$/m, 'wake latency histogram');
like($r->{content}, qr/^sipwake_offline_pending_messages 0$/m, 'pending messages');
like($r->{content}, qr/^# TYPE sipwake_store_queue_depth gauge\nsipwake_store_queue_depth \d+$/m, 'store queue depth, a gauge');

# ---- policy
$r = $api->get('/api/policy');
is($r->{json}{generation}, 1, 'policy status: generation');
like($r->{json}{file}, qr/default\.lua$/, 'its file');
# restart with a policy file the test can break
my $broken = "$dir/broken.lua";
$sw->stop;
{ open my $f, '>', $broken or die; print $f "return {}\n"; close $f; }
$sw->{config}{policy} = { file => $broken };
$sw->write_config;
$sw->start;
$web = SipwakeAdmin->new(port => $hport);
is($web->get('/api/tenants')->{status}, 401, 'after a restart the old session is gone');
$web->login('alice', 'correct horse battery');
open my $bf, '>', $broken or die; print $bf "return { route = function( }\n"; close $bf;
$r = $web->post('/api/policy/reload');
is($r->{status}, 422, 'reloading a broken policy: 422');
like($r->{json}{error}, qr/broken\.lua/, 'with the error');
is($r->{json}{generation}, 1, 'the running generation stays');
like($web->get('/api/policy')->{json}{last_error}, qr/broken\.lua/, 'the last error is kept for the page');
open $bf, '>', $broken or die; print $bf "return {}\n"; close $bf;
$r = $web->post('/api/policy/reload');
is($r->{status}, 200, 'a good policy reloads');
is($r->{json}{generation}, 2, 'as generation 2');
is($r->{json}{last_error}, undef, 'and the error is cleared');

# ---- the audit log
$r = $api->get('/api/audit?limit=100');
my %actions = map { ("$_->{who} $_->{action} " . ($_->{object} // '')) => 1 } @{ $r->{json} };
ok($actions{'alice tenant.add acme'}, 'audit: alice added acme');
ok($actions{'token:ci tenant.rename zeta'}, 'the token renamed zeta');
ok($actions{'alice credential.put acme/default'}, 'alice uploaded the key');
ok($actions{'token:ci messages.purge pat@acme.example'}, 'the purge');
ok($actions{'token:ci registration.remove pat@acme.example'}, 'the removal');
ok($actions{'alice policy.reload ' . $broken}, 'the reloads');
ok(!grep({ ($_->{detail} // '') =~ /BEGIN|PRIVATE/ } @{ $r->{json} }), 'never a secret in it');

# ---- logout
$r = $web->post('/api/logout', {}, csrf => 0);
is($r->{status}, 403, 'logout needs the CSRF token too');
$r = $web->post('/api/logout');
is($r->{status}, 200, 'logged out');
like($r->{headers}{'set-cookie'}, qr/sipwake_session=; .*Max-Age=0/, 'the cookie is cleared');
is($web->get('/api/tenants')->{status}, 401, 'the old session no longer works');

# ---- the OpenAPI document and the server agree: every path and method it lists is served
open my $oa, '<', "$Sipwake::ROOT/schemas/admin-api.yaml" or die;
my ($path, @ops);
while (<$oa>) {
    $path = $1 if /^  (\/api\S*):$/;
    push @ops, [uc $1, $path] if $path && /^    (get|post|put|patch|delete):/;
}
ok(@ops >= 20, scalar(@ops) . ' operations documented');
my %sample = (tenant => 'nosuch', set => 'default', kind => 'fcm', domain => 'x.example', aor => 'nobody@x.example',
              contact_id => '1');
for my $op (@ops) {
    my ($m, $p) = @$op;
    (my $url = $p) =~ s/\{(\w+)\}/$sample{$1}/g;
    next if $url eq '/api/logout' || $url eq '/api/login' || $url eq '/api/policy/reload';
    my $res = $api->req($m, $url, $m eq 'GET' || $m eq 'DELETE' ? undef : {});
    my $error = ref $res->{json} eq 'HASH' ? $res->{json}{error} // '' : '';
    ok($res->{status} != 405 && $error !~ /no such API/, "$m $p is served") or diag "$res->{status} $error";
}

# ---- accounts and tokens from the command line, while sipwake runs
my $web2 = SipwakeAdmin->new(port => $hport);
is($web2->login('alice', 'correct horse battery')->{status}, 200, 'alice logged in again');
($rc, $out) = $sw->run_bin('admin', 'list');
like($out, qr/^alice \(since \d{4}-\d\d-\d\d\)$/m, 'sipwake admin list');
like(($sw->run_bin('admin', 'token', 'list'))[1], qr/^ci \(since /m, 'sipwake admin token list (names only)');
($rc, $out) = $sw->run_bin('admin', 'token', 'del', 'ci');
is($rc, 0, 'sipwake admin token del');
is($api->get('/api/tenants')->{status}, 401, 'the token no longer works, at once');
is(system("printf 'another good password\n' | $bin --config $cfg admin passwd alice >/dev/null 2>&1"), 0,
   'sipwake admin passwd');
is(SipwakeAdmin->new(port => $hport)->login('alice', 'correct horse battery')->{status}, 401, 'the old password fails');
is($web2->get('/api/tenants')->{status}, 401, 'and the session made with it has ended');
is(SipwakeAdmin->new(port => $hport)->login('alice', 'another good password')->{status}, 200, 'the new one works');
($rc, $out) = $sw->run_bin('admin', 'del', 'alice');
is($rc, 0, 'sipwake admin del');
is(SipwakeAdmin->new(port => $hport)->login('alice', 'another good password')->{status}, 401, 'a removed account cannot log in');
($rc, $out) = $sw->run_bin('admin', 'del', 'alice');
ok($rc == 1 && $out =~ /no admin alice/, 'removing it twice: refused, saying why');

# ---- every address has its limit too
my $mallory = SipwakeAdmin->new(port => $hport);
for my $i (1 .. 20) { $mallory->login("user$i", 'guess guess') }
is($mallory->login('alice', 'correct horse battery')->{status}, 429,
   'twenty failures from one address: even the right password waits');

ok($sw->alive, 'sipwake still running');
$sw->stop;
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error|LeakSanitizer/, 'no errors or sanitizer reports');
done_testing;
