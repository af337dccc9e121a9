#!/usr/bin/perl
# VAPID key pairs per tenant, made on request in the admin (or imported, checked): the private
# key is never returned; a REGISTER in the tenant's domain gets the tenant's public key in
# +sip.vapid (others get sipwake's); Web Push pushes for the tenant's phones are signed with it.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Sipwake;
use SipwakeAdmin;

my $dir = tempdir('admin-vapid-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir) or BAIL_OUT('openssl failed');
open my $subs, '>', "$dir/subs.json" or die;
print $subs '{}';
close $subs;
my (undef, $wport) = Sipwake::start_emulator('webpush', '--cert', "$dir/cert.pem", '--key', "$dir/key.pem",
    '--subscriptions', "$dir/subs.json", '--log', "$dir/webpush.log", '--lifetime', '120');
ok($wport, 'Web Push emulator listening');

my $hport = Sipwake::free_port();
my $sw = Sipwake->new(config => {
    admin => { enabled => 'yes', listen => "127.0.0.1:$hport" },
    registrar => { push_providers => 'apns, fcm, webpush' },
    push => { ca => "$dir/cert.pem", bucket_timeout_other => 2 },
});
$sw->write_config;
my ($rc, $out) = $sw->run_bin('admin', 'token', 'add', 'ops');
my ($token) = $out =~ /^(swk_\S+)$/m;
$sw->start;
my $api = SipwakeAdmin->new(port => $hport, token => $token);

is($api->post('/api/tenants', { name => 'webco', domains => ['web.example'] })->{status}, 201, 'a tenant');
my $r = $api->put('/api/tenants/webco/credentials/default/vapid', {});
is($r->{status}, 200, 'a VAPID key pair made on request');
my $tkey = $r->{json}{public_key} // '';
like($tkey, qr/^B[A-Za-z0-9_-]{86}$/, 'its public key is returned (65 bytes, base64url)');
is($api->get('/api/tenants')->{json}[0]{credential_sets}[0]{credentials}[0]{public_key}, $tkey, 'and listed');
unlike($api->seen, qr/PRIVATE KEY/, 'the private key never is');
like($sw->sql("SELECT secret FROM sipwake_credentials WHERE kind='vapid'"), qr/BEGIN PRIVATE KEY/, 'it is stored');

$r = $api->put('/api/tenants/webco/credentials/other/vapid', { private_key => "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n" });
is($r->{status}, 422, 'importing a key that does not parse: 422');
system("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $dir/v.pem 2>/dev/null") == 0 or die;
my $pem = do { open my $f, '<', "$dir/v.pem" or die; local $/; <$f> };
$r = $api->put('/api/tenants/webco/credentials/imported/vapid', { private_key => $pem });
is($r->{status}, 200, 'importing a P-256 key');
like($r->{json}{public_key}, qr/^B[A-Za-z0-9_-]{86}$/, 'its public key derived');
system("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out $dir/rsa.pem 2>/dev/null") == 0 or die;
$pem = do { open my $f, '<', "$dir/rsa.pem" or die; local $/; <$f> };
is($api->put('/api/tenants/webco/credentials/rsa/vapid', { private_key => $pem })->{status}, 422, 'an RSA key: 422');

# the tenant's key in +sip.vapid; sipwake's elsewhere
my $ua = $sw->ua(user => 'wendy', domain => 'web.example');
$r = $ua->register(contact => 'sip:wendy@127.0.0.1:' . $ua->local_port . ';pn-provider=webpush', expires => 3600);
my ($fc) = Sipwake::UA::header($r, 'feature-caps');
is($fc, qq{*;+sip.pns="webpush";+sip.vapid="$tkey"}, 'a capability query in web.example: the tenant\'s key');
my $other = $sw->ua(user => 'olga');
$r = $other->register(contact => 'sip:olga@127.0.0.1:' . $other->local_port . ';pn-provider=webpush', expires => 3600);
my ($ofc) = Sipwake::UA::header($r, 'feature-caps');
my ($okey) = ($ofc // '') =~ /\+sip\.vapid="([^"]+)"/;
ok($okey && $okey ne $tkey, 'in another domain: sipwake\'s own key');

# a push for the tenant's phone is signed with the tenant's key
open $subs, '>', "$dir/subs.json" or die;
print $subs qq({"sub-wendy": {"key": "$tkey"}});
close $subs;
$r = $ua->register(contact => 'sip:wendy@127.0.0.1:' . $ua->local_port
    . ";pn-provider=webpush;pn-prid=https://127.0.0.1:$wport/push/sub-wendy", expires => 3600);
is($r->{code}, 200, 'the browser subscribed with that key and registered its subscription');
my $caller = $sw->ua(user => 'carl');
my $cp = $caller->local_port;
$caller->send_raw("MESSAGE sip:wendy\@web.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bKv1\r\n"
    . "Max-Forwards: 70\r\nFrom: <sip:carl\@example.com>;tag=v1\r\nTo: <sip:wendy\@web.example>\r\n"
    . "Call-ID: vapid-m1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 2\r\n\r\nhi");
my $log = '';
for (1 .. 200) { open my $f, '<', "$dir/webpush.log"; $log = $f ? do { local $/; <$f> } : ''; last if $log =~ /sub-wendy/ && $log =~ /"status"/; sleep 0.05 }
like($log, qr{"authorization": "vapid t=[^,]+, k=\Q$tkey\E"}, 'the push is signed with the tenant\'s key');
like($log, qr{"status": 201}, 'and the push service accepts it');
$caller->expect(qr/^SIP\/2\.0 \d+/, 4);

ok($sw->alive, 'sipwake still running');
$sw->stop;
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error|LeakSanitizer/, 'no errors or sanitizer reports');
done_testing;
