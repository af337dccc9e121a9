#!/usr/bin/perl
# The admin over HTTPS when [admin] certificate is set (Secure cookie, HSTS, no plain HTTP);
# certificates uploaded through the API (PEM and PKCS#12) with their expiry, and the 60-day
# warning on the dashboard's data; credentials deleted; [admin] settings checked at start.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use MIME::Base64 qw(encode_base64);
use Sipwake;
use SipwakeAdmin;

my $dir = tempdir('admin-https-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir) or BAIL_OUT('openssl failed');
system("cd $dir && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=ca "
    . "-keyout ca.key -out ca.pem 2>/dev/null && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
    . "-subj '/UID=org.cert.app/CN=Apple Push Services: org.cert.app' -keyout client.key -out client.csr 2>/dev/null "
    . "&& openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -out client.pem 2>/dev/null "
    . "&& openssl pkcs12 -export -in client.pem -inkey client.key -passout pass:s3cret -out client.p12 "
    . "&& openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 400 -out long.pem 2>/dev/null "
    . "&& cat long.pem client.key > long-bundle.pem") == 0 or BAIL_OUT('openssl failed');

# ---- settings checked at start
my $bad = Sipwake->new(config => { admin => { enabled => 'yes', listen => 'localhost:8080' } });
my ($rc, $out) = $bad->run_bin('--check');
ok($rc == 1 && $out =~ /\[admin\] listen: 'localhost' is not a numeric IPv4 or IPv6 address/, 'a listen address that is a name: refused') or diag $out;
$bad = Sipwake->new(config => { admin => { enabled => 'yes', listen => '127.0.0.1' } });
($rc, $out) = $bad->run_bin('--check');
ok($rc == 1 && $out =~ /\[admin\] listen: expected address:port/, 'without a port: refused') or diag $out;
$bad = Sipwake->new(config => { admin => { enabled => 'yes', certificate => "$dir/cert.pem" } });
($rc, $out) = $bad->run_bin('--check');
ok($rc == 1 && $out =~ /\[admin\] private_key: certificate and private_key go together/, 'a certificate without its key: refused') or diag $out;
my $port = Sipwake::free_port();
$bad = Sipwake->new(config => { admin => { enabled => 'yes', listen => "127.0.0.1:$port",
                                           certificate => "$dir/missing.pem", private_key => "$dir/key.pem" } });
ok(!eval { $bad->start; 1 }, 'an unreadable certificate: sipwake does not start');
like($bad->log, qr/\[admin\] certificate: \S*missing\.pem/, 'naming the key and the file');

# ---- HTTPS
my $hport = Sipwake::free_port();
my $sw = Sipwake->new(config => { admin => { enabled => 'yes', listen => "127.0.0.1:$hport",
                                             certificate => "$dir/cert.pem", private_key => "$dir/key.pem" } });
$sw->write_config;
my $cfg = $sw->config_path;
is(system("printf 'https only please\\n' | $Sipwake::BIN --config $cfg admin add root >/dev/null 2>&1"), 0, 'an account');
$sw->start;
ok($sw->wait_log(qr{admin: listening on https://127\.0\.0\.1:$hport}, 10), 'the admin speaks HTTPS');
my $web = SipwakeAdmin->new(base => "https://127.0.0.1:$hport");
$web->{http} = HTTP::Tiny->new(timeout => 10, verify_SSL => 1, SSL_options => { SSL_ca_file => "$dir/cert.pem" });
my $r = $web->login('root', 'https only please');
is($r->{status}, 200, 'log in over HTTPS (the certificate checked)');
like($web->set_cookie_header, qr/; Secure$/, 'the cookie is Secure');
like($r->{headers}{'strict-transport-security'}, qr/max-age=\d+/, 'with HSTS');
is(SipwakeAdmin->new(port => $hport)->get('/')->{status}, 599, 'plain HTTP gets nothing');

# ---- certificates through the API
is($web->post('/api/tenants', { name => 'acme' })->{status}, 201, 'a tenant');
my $p12 = do { open my $f, '<:raw', "$dir/client.p12" or die; local $/; <$f> };
$r = $web->put('/api/tenants/acme/credentials/legacy/apns_certificate', { pkcs12 => encode_base64($p12, ''), password => 'wrong' });
ok($r->{status} == 422 && $r->{json}{error} =~ /wrong password/, 'a .p12 with the wrong password: 422') or diag explain $r->{json};
$r = $web->put('/api/tenants/acme/credentials/legacy/apns_certificate', { pkcs12 => 'not base64!', password => 's3cret' });
is($r->{status}, 422, 'a .p12 that is not base64: 422');
$r = $web->put('/api/tenants/acme/credentials/legacy/apns_certificate', { pkcs12 => encode_base64($p12, ''), password => 's3cret' });
is($r->{status}, 200, 'the .p12 with its password: stored');
my $long = do { open my $f, '<', "$dir/long-bundle.pem" or die; local $/; <$f> };
is($web->put('/api/tenants/acme/credentials/main/apns_certificate', { certificate => $long })->{status}, 200,
   'a PEM certificate with its key: stored');
my $t = $web->get('/api/tenants')->{json}[0];
my %sets = map { $_->{name} => $_->{credentials}[0] } @{ $t->{credential_sets} };
is($sets{legacy}{uid}, 'org.cert.app', 'listed with its topic');
like($sets{legacy}{subject}, qr/Apple Push Services: org\.cert\.app/, 'its subject');
ok($sets{legacy}{days_left} >= 28 && $sets{legacy}{days_left} <= 30, 'and its expiry in days') or diag explain $sets{legacy};
my $w = $web->get('/api/stats')->{json}{expiry_warnings};
is(scalar @$w, 1, 'the dashboard warns of one certificate (60 days ahead)');
is($w->[0]{set}, 'acme/legacy', 'the one with 30 days left, not the one with 400');
unlike($web->seen, qr/BEGIN|PRIVATE/, 'no answer held a secret');

# ---- deleting credentials
is($web->del('/api/tenants/acme/credentials/legacy/fcm')->{status}, 404, 'deleting a kind the set does not have: 404');
is($web->del('/api/tenants/acme/credentials/legacy/apns_certificate')->{status}, 200, 'one credential deleted');
is($web->del('/api/tenants/acme/credentials/main')->{status}, 200, 'a whole set deleted');
is(scalar @{ $web->get('/api/tenants')->{json}[0]{credential_sets} }, 0, 'none left');
is($sw->sql("SELECT count(*) FROM sipwake_credentials"), '0', 'in the store either');
is(scalar @{ $web->get('/api/stats')->{json}{expiry_warnings} }, 0, 'and no warning');

ok($sw->alive, 'sipwake still running');
$sw->stop;
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error|LeakSanitizer/, 'no errors or sanitizer reports');

# ---- [admin] enabled = no: nothing listens
my $off = Sipwake->new(config => { admin => { enabled => 'no', listen => "127.0.0.1:$hport" } });
$off->start;
is(SipwakeAdmin->new(port => $hport)->get('/')->{status}, 599, '[admin] enabled = no: no admin');
$off->stop;
done_testing;
