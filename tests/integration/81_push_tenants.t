#!/usr/bin/perl
# Tenants and their credential sets, managed with `sipwake tenant`, chosen per push by the
# policy's credentials hook (or by the binding's domain), each push signed with its own
# tenant's key; `sipwake push` sends one push and prints APNs' answer; the push log records
# outcomes without tokens; secrets are never printed and bad credential files are refused
# with the reason; a tenant added while sipwake runs is used after SIGHUP.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Sipwake;

my $dir = tempdir('push-tenants-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir, 'acme', 'zeta', 'late') or BAIL_OUT('openssl failed');
open my $sf, '>', "$dir/script.json" or die;
print $sf '{"DEAD0009": {"status": 410, "reason": "Unregistered"}}';
close $sf;
my (undef, $aport) = Sipwake::start_emulator('apns', '--cert', "$dir/cert.pem", '--key', "$dir/key.pem",
    '--auth-key', "KEYACME001:TEAMAAAAAA:$dir/acme-pub.pem",
    '--auth-key', "KEYZETA001:TEAMBBBBBB:$dir/zeta-pub.pem",
    '--auth-key', "KEYLATE001:TEAMCCCCCC:$dir/late-pub.pem",
    '--script', "$dir/script.json", '--log', "$dir/apns.log", '--lifetime', '120');
ok($aport, 'APNs emulator listening, knowing three teams\' keys');
sub apns_log { open my $f, '<', "$dir/apns.log" or return ''; local $/; <$f> // '' }

my $sw = Sipwake->new(
    config => {
        push => { apns_host => '127.0.0.1', apns_port => $aport, ca => "$dir/cert.pem",
                  bucket_timeout => 3, bucket_timeout_other => 2 },
    },
    policy => <<'LUA');
-- the app's team id picks the tenant; anything else: sipwake's default (by domain)
return {
  credentials = function(binding, ctx)
    if binding.param and binding.param:find("^TEAMAAAAAA%.") then return "acme" end
    if binding.param and binding.param:find("^TEAMBBBBBB%.org%.zeta") then return "zeta/ios" end
    return nil
  end,
}
LUA

# ---- the CLI
my ($rc, $out) = $sw->run_bin('tenant', 'add', 'acme', 'acme.example');
is($rc, 0, 'tenant acme added with its domain');
($rc, $out) = $sw->run_bin('tenant', 'add', 'zeta', 'zeta.example', 'ZETA2.example');
is($rc, 0, 'tenant zeta with two domains');
($rc, $out) = $sw->run_bin('tenant', 'add', 'acme');
ok($rc == 1 && $out =~ /exists already/, 'adding it twice: refused, saying why');
($rc, $out) = $sw->run_bin('tenant', 'add', "'<b>x</b>'");
is($rc, 2, 'a tenant name with markup is refused');
($rc, $out) = $sw->run_bin('tenant', 'apns-key', 'acme', 'KEYACME001', 'TEAMAAAAAA', "$dir/acme.p8");
ok($rc == 0 && $out =~ m{acme/default: apns_key stored}, 'acme\'s .p8 key stored') or diag $out;
($rc, $out) = $sw->run_bin('tenant', 'apns-key', 'zeta/ios', 'KEYZETA001', 'TEAMBBBBBB', "$dir/zeta.p8");
ok($rc == 0 && $out =~ m{zeta/ios: apns_key stored}, 'zeta\'s key in its set "ios"') or diag $out;
($rc, $out) = $sw->run_bin('tenant', 'apns-key', 'acme/bad', 'KEYACME001', 'TEAMAAAAAA', "$dir/cert.pem");
ok($rc == 1 && $out =~ /cert\.pem: /, 'a certificate given as a .p8 key: refused with the reason') or diag $out;
($rc, $out) = $sw->run_bin('tenant', 'apns-key', 'acme/bad', 'KEYACME001', 'TEAMAAAAAA', "$dir/missing.p8");
ok($rc == 1 && $out =~ /missing\.p8/, 'a missing file: refused, naming it');
($rc, $out) = $sw->run_bin('tenant', 'apns-key', 'nobody', 'KEYACME001', 'TEAMAAAAAA', "$dir/acme.p8");
ok($rc == 1 && $out =~ /no tenant nobody/, 'a key for an unknown tenant: refused');
open my $fj, '>', "$dir/sa.json" or die;
print $fj '{"type": "service_account", "project_id": "p", "client_email": "x@p.iam.gserviceaccount.com"}';
close $fj;
($rc, $out) = $sw->run_bin('tenant', 'fcm', 'acme', "$dir/sa.json");
ok($rc == 1 && $out =~ /private_key/, 'a service account without its private key: refused') or diag $out;
($rc, $out) = $sw->run_bin('tenant', 'list');
is($rc, 0, 'tenant list');
like($out, qr{^acme\n  domains: acme\.example\n  acme/default apns_key key_id=KEYACME001 team_id=TEAMAAAAAA added=}m,
     'lists tenants, domains and credentials');
like($out, qr{^zeta\n  domains: zeta\.example zeta2\.example\n}m, 'domains in lower case');
unlike($out, qr/BEGIN|PRIVATE/, 'and never a secret');
my $p8 = do { open my $f, '<', "$dir/acme.p8" or die; local $/; <$f> };
my ($b64) = $p8 =~ /\n(\S{20})/;
unlike($sw->run_bin('tenant', 'list'), qr/\Q$b64\E/, 'not even a line of the key');
ok(((stat $sw->db)[2] & 0777) == 0600, 'the database is mode 0600');

# ---- pushes through the server
$sw->start;
my $caller = $sw->ua(user => 'carl');
my $cp = $caller->local_port;
sub register_sleeping {
    my ($user, $domain, $param, $prid) = @_;
    my $ua = $sw->ua(user => $user, domain => $domain, transport => 'tcp');
    my $r = $ua->register(contact => "sip:$user\@127.0.0.1:" . $ua->local_port
        . ";transport=tcp;pn-provider=apns;pn-param=$param;pn-prid=$prid", expires => 3600);
    # asleep: sipwake has seen the connection close
    return $sw->disconnect($ua) ? $r->{code} : 'still connected';
}
sub message {
    my ($to, $callid) = @_;
    return "MESSAGE sip:$to SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bK$callid\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:carl\@example.com>;tag=c-$callid\r\nTo: <sip:$to>\r\n"
        . "Call-ID: $callid\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi";
}
is(register_sleeping('alice', 'example.com', 'TEAMAAAAAA.org.acme.app', 'AAAA0001'), 200, 'an acme app registered');
is(register_sleeping('bob', 'example.com', 'TEAMBBBBBB.org.zeta.app', 'BBBB0002'), 200, 'a zeta app registered');
is(register_sleeping('cy', 'zeta.example', 'TEAMBBBBBB.org.other.app', 'CCCC0003'), 200,
   'a phone in a zeta domain registered (the policy does not name its set)');
for my $m (['alice@example.com', 'm-alice'], ['bob@example.com', 'm-bob'], ['cy@zeta.example', 'm-cy']) {
    $caller->send_raw(message(@$m));
}
my $log = '';
for (1 .. 200) { $log = apns_log(); last if $log =~ /CCCC0003/ && $log =~ /BBBB0002/ && $log =~ /AAAA0001/; sleep 0.05 }
like($log, qr{"path": "/3/device/AAAA0001", "kid": "KEYACME001".*"status": 200}, 'acme\'s push signed with acme\'s key, accepted');
like($log, qr{"path": "/3/device/BBBB0002", "kid": "KEYZETA001".*"status": 200}, 'zeta\'s push signed with zeta\'s key, accepted');
like($log, qr{"path": "/3/device/CCCC0003", "kid": "KEYZETA001".*"status": 200},
     'the zeta domain\'s phone: its tenant\'s set, chosen by domain');
for (1 .. 3) { $caller->expect(qr/^SIP\/2\.0 480/, 4) }

# ---- the push command
($rc, $out) = $sw->run_bin('push', '--tenant', 'acme', '--provider', 'apns', '--param',
    'TEAMAAAAAA.org.acme.app', '--prid', 'AAAA0005', '--type', 'message');
ok($rc == 0 && $out =~ m{^apns via acme/default: delivered, HTTP 200, id [0-9a-fA-F-]{36}$}m,
   'sipwake push prints APNs\' answer') or diag $out;
like(apns_log(), qr{"path": "/3/device/AAAA0005", "kid": "KEYACME001", "topic": "org.acme.app", "push_type": "alert"},
     'and the push went out as asked');
($rc, $out) = $sw->run_bin('push', '--tenant', 'acme', '--provider', 'apns', '--param',
    'TEAMAAAAAA.org.acme.app', '--prid', 'DEAD0009');
ok($rc == 1 && $out =~ /dead_token, HTTP 410, Unregistered/, 'a dead token: the reason, exit 1') or diag $out;
($rc, $out) = $sw->run_bin('push', '--tenant', 'zeta', '--provider', 'apns', '--param',
    'TEAMBBBBBB.org.zeta.app', '--prid', 'BBBB0006');
ok($rc == 1 && $out =~ m{no credential set zeta}, 'a tenant without a default set: not sent, saying why') or diag $out;

# ---- the push log
($rc, $out) = $sw->run_bin('push-log', '--tenant', 'acme');
like($out, qr/ apns call dead_token status=410 reason=Unregistered .*aor=\(push command\) token=[0-9a-f]{16} tenant=acme via=acme\/default/,
     'the push log has the dead token, by tenant') or diag $out;
like($out, qr/ apns message delivered status=200 .*aor=alice\@example\.com .*via=acme\/default call-id=m-alice/,
     'and the delivered push of the MESSAGE') or diag $out;
unlike($out, qr/AAAA0001|DEAD0009/, 'tokens are never in the log, only their hash');
is($sw->sql("SELECT count(*) FROM sipwake_push_log WHERE tenant='zeta' AND outcome='delivered'"), '2',
   'zeta\'s two pushes are in the table');

# ---- a tenant added while running: used after SIGHUP
($rc, $out) = $sw->run_bin('tenant', 'add', 'late', 'late.example');
($rc, $out) = $sw->run_bin('tenant', 'apns-key', 'late', 'KEYLATE001', 'TEAMCCCCCC', "$dir/late.p8");
is($rc, 0, 'a new tenant and key while sipwake runs');
is(register_sleeping('dee', 'late.example', 'TEAMCCCCCC.org.late.app', 'DDDD0007'), 200, 'its phone registered');
kill 'HUP', $sw->{pid};
ok($sw->wait_log(qr/tenants: 3 tenants, 4 domains, 3 credential sets loaded/, 5), 'SIGHUP reloads the tenants');
$caller->send_raw(message('dee@late.example', 'm-dee'));
for (1 .. 200) { last if apns_log() =~ m{"path": "/3/device/DDDD0007"}; sleep 0.05 }
like(apns_log(), qr{"path": "/3/device/DDDD0007", "kid": "KEYLATE001".*"status": 200}, 'the next push uses the new key');

# ---- certificate auth from a stored PKCS#12
system("cd $dir && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=ca "
    . "-keyout ca.key -out ca.pem 2>/dev/null && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
    . "-subj '/UID=org.cert.app/CN=Apple Push Services: org.cert.app' -keyout client.key -out client.csr 2>/dev/null "
    . "&& openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -out client.pem 2>/dev/null "
    . "&& openssl pkcs12 -export -in client.pem -inkey client.key -passout pass:s3cret -out client.p12 "
    . "&& printf 's3cret\\n' > p12.pass && printf 'wrong\\n' > bad.pass") == 0 or BAIL_OUT('openssl failed');
my (undef, $cport) = Sipwake::start_emulator('apns', '--cert', "$dir/cert.pem", '--key', "$dir/key.pem",
    '--client-ca', "$dir/ca.pem", '--log', "$dir/apns-cert.log", '--lifetime', '120');
($rc, $out) = $sw->run_bin('tenant', 'apns-cert', 'acme/legacy', "$dir/client.p12", "$dir/bad.pass");
ok($rc == 1 && $out =~ /wrong password/, 'a PKCS#12 with the wrong password: refused') or diag $out;
($rc, $out) = $sw->run_bin('tenant', 'apns-cert', 'acme/legacy', "$dir/client.p12", "$dir/p12.pass");
ok($rc == 0 && $out =~ m{acme/legacy: apns_certificate stored}, 'the PKCS#12 certificate stored') or diag $out;
($rc, $out) = $sw->run_bin('tenant', 'list');
like($out, qr{acme/legacy apns_certificate subject=Apple Push Services: org\.cert\.app uid=org\.cert\.app expires=\d{4}-\d\d-\d\d \(renew: less than 60 days left\)},
     'listed with its subject, bundle id and expiry, flagged for renewal');
unlike($out, qr/BEGIN|PRIVATE/, 'and no secret');
my $cert_cfg = Sipwake->new(config => { push => { apns_host => '127.0.0.1', apns_port => $cport, ca => "$dir/cert.pem" },
                                        store => { path => $sw->db } });
($rc, $out) = $cert_cfg->run_bin('push', '--tenant', 'acme/legacy', '--provider', 'apns', '--param',
    'TEAMAAAAAA.org.cert.app', '--prid', 'EEEE0008', '--type', 'message');
ok($rc == 0 && $out =~ m{^apns via acme/legacy: delivered, HTTP 200}m, 'a push with the stored certificate is accepted') or diag $out;
open my $cl, '<', "$dir/apns-cert.log" or die;
my $clog = do { local $/; <$cl> };
like($clog, qr{"path": "/3/device/EEEE0008", "kid": null, "topic": "org.cert.app".*"status": 200}, 'by an APNs that checks client certificates');

# the [push] certificate of the config may be a PKCS#12 too
my $p12_cfg = Sipwake->new(config => { push => { apns_host => '127.0.0.1', apns_port => $cport, ca => "$dir/cert.pem",
    apns_certificate => "$dir/client.p12", apns_certificate_password => "$dir/p12.pass" } });
($rc, $out) = $p12_cfg->run_bin('push', '--provider', 'apns', '--param', 'TEAMAAAAAA.org.cert.app', '--prid', 'EEEE0009',
    '--type', 'message');
ok($rc == 0 && $out =~ m{^apns via \[push\]: delivered, HTTP 200}m, '[push] apns_certificate as PKCS#12: accepted') or diag $out;
my $bad_cfg = Sipwake->new(config => { push => { apns_certificate => "$dir/client.p12", apns_certificate_password => "$dir/bad.pass" } });
($rc, $out) = $bad_cfg->run_bin('push', '--provider', 'apns', '--param', 'TEAMAAAAAA.org.cert.app', '--prid', 'EEEE0009');
ok($rc == 1 && $out =~ /\[push\] apns_certificate: PKCS#12: wrong password/, 'with the wrong password: refused, saying why') or diag $out;

ok($sw->alive, 'sipwake still running');
$sw->stop;
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error/, 'no errors or sanitizer reports');
done_testing;
