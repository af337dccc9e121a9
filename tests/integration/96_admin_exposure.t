#!/usr/bin/perl
# What the admin exposes: outside loopback without HTTPS it does not start unless
# [admin] allow_insecure says so (and --check says it); a request whose Host is not a name of
# the admin gets 421 before anything else (DNS rebinding); the secrets sipwake writes or
# finds in data_dir are the owner's only, whatever the umask.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use IO::Socket::SSL;
use Sipwake;
use SipwakeAdmin;

my $dir = tempdir('admin-exposure-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir) or BAIL_OUT('openssl failed');

# ---- outside loopback without a certificate
my $port = Sipwake::free_port();
my $open = Sipwake->new(config => { admin => { enabled => 'yes', listen => "0.0.0.0:$port" } });
my ($rc, $out) = $open->run_bin('--check');
ok($rc == 1 && $out =~ /\[admin\] listen: 0\.0\.0\.0 is not a loopback address and \[admin\] certificate is not set/,
   '--check: 0.0.0.0 without a certificate is refused, naming the key') or diag $out;
like($out, qr/allow_insecure = yes/, 'and saying how to allow it');
ok(!eval { $open->start; 1 }, 'sipwake does not start with it');
like($open->log, qr/\[admin\] listen: 0\.0\.0\.0 is not a loopback address/, 'the log says why');
is(IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 2), undef, 'nothing listens');

my $v6 = Sipwake->new(config => { admin => { enabled => 'yes', listen => "[::]:$port" } });
($rc, $out) = $v6->run_bin('--check');
is($rc, 1, '[::] without a certificate: refused too') or diag $out;
my $lo = Sipwake->new(config => { admin => { enabled => 'yes', listen => "127.0.0.2:$port" } });
($rc, $out) = $lo->run_bin('--check');
ok($rc == 0 && $out !~ /warning/, 'any 127.0.0.0/8 address is loopback: accepted without a word') or diag $out;
my $tls = Sipwake->new(config => { admin => { enabled => 'yes', listen => "0.0.0.0:$port",
                                              certificate => "$dir/cert.pem", private_key => "$dir/key.pem" } });
($rc, $out) = $tls->run_bin('--check');
ok($rc == 0 && $out !~ /warning/, 'with a certificate: accepted') or diag $out;

my $hport = Sipwake::free_port();
my $allowed = Sipwake->new(config => { admin => { enabled => 'yes', listen => "0.0.0.0:$hport", allow_insecure => 'yes',
                                                  hostnames => 'admin.example.net, *.ops.example.net' } });
($rc, $out) = $allowed->run_bin('--check');
ok($rc == 0 && $out =~ /warning: \[admin\] listen 0\.0\.0\.0:$hport is not loopback.*clear text/, 'allow_insecure = yes: --check passes with a warning') or diag $out;
$allowed->start;
ok($allowed->wait_log(qr/warn\s+admin: 0\.0\.0\.0:$hport is not loopback and the admin has no certificate/, 5),
   'and it starts, with a warning in the log');

# ---- Host
my $use_tls = 0;
sub status_with_host {
    my ($p, $host, $method, $path, $body) = @_;
    my $s = $use_tls
        ? IO::Socket::SSL->new(PeerAddr => '127.0.0.1', PeerPort => $p, Timeout => 5, SSL_verify_mode => 0)
        : IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $p, Timeout => 5);
    return 0 unless $s;
    $body //= '';
    print $s "$method $path HTTP/1.1\r\n" . (defined $host ? "Host: $host\r\n" : '')
        . "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\nConnection: close\r\n\r\n$body";
    my $first = <$s> // '';
    close $s;
    return $first =~ m{^HTTP/1\.\d (\d+)} ? $1 : 0;
}
my $login = '{"user":"nobody","password":"whatever1234"}';
is(status_with_host($hport, "evil.example.com:$hport", 'GET', '/'), 421, 'a foreign Host: 421, even for a page');
is(status_with_host($hport, "evil.example.com:$hport", 'POST', '/api/login', $login), 421, 'and before any login');
is(status_with_host($hport, "evil.example.com", 'GET', '/metrics'), 421, 'and /metrics');
like($allowed->log, qr/refused: Host 'evil\.example\.com:\d+' is not a name of this admin/, 'it is logged');
is(status_with_host($hport, "127.0.0.1:$hport", 'GET', '/'), 200, 'an IP address: served');
is(status_with_host($hport, "[::1]:$hport", 'GET', '/'), 200, 'an IPv6 address: served');
is(status_with_host($hport, "localhost:$hport", 'GET', '/'), 200, 'localhost: served');
is(status_with_host($hport, "Admin.Example.NET", 'GET', '/'), 200, 'a name of [admin] hostnames (any case): served');
is(status_with_host($hport, "a.ops.example.net:$hport", 'GET', '/'), 200, 'one label under a wildcard: served');
is(status_with_host($hport, "a.b.ops.example.net", 'GET', '/'), 421, 'two labels under it: 421');
is(status_with_host($hport, "localhost.evil.example.com", 'GET', '/'), 421, 'a name ending like another: 421');
is(status_with_host($hport, "127.0.0.1.evil.example.com", 'GET', '/'), 421, 'a name starting like an address: 421');
is(status_with_host($hport, "127.0.0.1:$hport", 'POST', '/api/login', $login), 401, 'the login itself still works by address');
# the Host header lines as sent, raw
sub status_with_lines {
    my ($p, $lines) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $p, Timeout => 5) or return 0;
    print $s "GET / HTTP/1.1\r\n$lines\r\nConnection: close\r\n\r\n";
    my $first = <$s> // '';
    close $s;
    return $first =~ m{^HTTP/1\.\d (\d+)} ? $1 : 0;
}
is(status_with_lines($hport, "Host: 127.0.0.1\r\nHost: evil.example.com"), 400,
   'two Host headers, the first one good: 400 (RFC 7230 section 5.4)');
is(status_with_lines($hport, "Host: 127.0.0.1\r\nHost: 127.0.0.1"), 400, 'two Host headers, both the same: 400');
like($allowed->log, qr/refused: more than one Host header/, 'it is logged');
is(status_with_lines($hport, "Host:\t127.0.0.1\t"), 200, 'a Host wrapped in tabs (optional whitespace): served');
is(status_with_lines($hport, "Host: \t localhost \t "), 200, 'and in spaces and tabs');
is(status_with_lines($hport, "Host:\tevil.example.com\t"), 421, 'a foreign Host wrapped in tabs: still 421');
ok($allowed->stop, 'stops cleanly');

# the certificate's names count too
my $sport = Sipwake::free_port();
system("cd $dir && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=admin "
    . "-addext subjectAltName=DNS:admin.example.org,IP:127.0.0.1 -keyout akey.pem -out acert.pem 2>/dev/null") == 0
    or BAIL_OUT('openssl failed');
my $https = Sipwake->new(config => { admin => { enabled => 'yes', listen => "127.0.0.1:$sport",
                                                certificate => "$dir/acert.pem", private_key => "$dir/akey.pem" } });
$https->start;
$use_tls = 1;
is(status_with_host($sport, 'admin.example.org', 'GET', '/'), 200, "HTTPS: the certificate's DNS name is served");
is(status_with_host($sport, 'other.example.org', 'GET', '/'), 421, 'another name: 421');
is(status_with_host($sport, "127.0.0.1:$sport", 'GET', '/'), 200, 'the address: served');
ok($https->stop, 'stops cleanly');

# ---- files, under umask 000
my $fs = Sipwake->new;
my $old = umask 0;
$fs->start;
umask $old;
my $d = $fs->dir;
sub mode { my @st = stat $_[0]; return @st ? sprintf('%04o', $st[2] & 07777) : 'missing' }
is(mode("$d/flow-token.key"), '0600', 'umask 000: flow-token.key is made 0600');
is(mode("$d/tls/key.pem"), '0600', 'the generated TLS key 0600');
is(mode("$d/tls/cert.pem"), '0644', 'the generated certificate 0644 (not writable by others)');
is(mode("$d/sipwake.db"), '0600', 'the database 0600');
ok($fs->stop, 'stops cleanly');

chmod 0644, "$d/flow-token.key";
open my $k, '<:raw', "$d/flow-token.key" or die;
my $key_before = do { local $/; <$k> };
close $k;
$fs->start;
is(mode("$d/flow-token.key"), '0600', 'a flow-token.key others could read is made 0600 at start');
like($fs->log, qr/warn\s+flow-token key: \S+flow-token\.key was mode 0644 \(readable by others\); it is now 0600/,
     'with a warning');
open $k, '<:raw', "$d/flow-token.key" or die;
is(do { local $/; <$k> }, $key_before, 'and the same key is used');
close $k;
ok($fs->stop, 'stops cleanly');
unlike($fs->log . $https->log, qr/AddressSanitizer|runtime error|LeakSanitizer/, 'no sanitizer reports');
done_testing;
