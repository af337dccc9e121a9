#!/usr/bin/perl
# A tenant's APNs key is replaced through the admin API while a push through the old key waits
# for APNs's answer: the answer still comes back and is recorded against the old set, the old
# set is freed after it (no sanitizer report: its pool was freed inside its own stream
# callback before), sipwake keeps running, and the next push is signed with the new key.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Sipwake;
use SipwakeAdmin;

my $dir = tempdir('push-reload-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir, 'old', 'new') or BAIL_OUT('openssl failed');
open my $sf, '>', "$dir/script.json" or die $!;
print $sf '{"ABCD0001": {"delay_ms": 4000}}';
close $sf;
my (undef, $aport) = Sipwake::start_emulator('apns', '--cert', "$dir/cert.pem", '--key', "$dir/key.pem",
    '--auth-key', "KEYOLD0001:TEAMAAAAAA:$dir/old-pub.pem", '--auth-key', "KEYNEW0001:TEAMAAAAAA:$dir/new-pub.pem",
    '--script', "$dir/script.json", '--log', "$dir/apns.log", '--lifetime', '120');
ok($aport, 'APNs emulator listening, knowing the old and the new key');
sub apns_log { open my $f, '<', "$dir/apns.log" or return ''; local $/; <$f> // '' }
sub p8 { my ($n) = @_; open my $f, '<', "$dir/$n.p8" or die; local $/; <$f> }

my $hport = Sipwake::free_port();
my $sw = Sipwake->new(config => {
    admin => { enabled => 'yes', listen => "127.0.0.1:$hport" },
    push => { apns_host => '127.0.0.1', apns_port => $aport, ca => "$dir/cert.pem", timeout => 30,
              bucket_timeout_other => 30 },
});
my ($rc, $out) = $sw->run_bin('admin', 'token', 'add', 'ci');
my ($token) = $out =~ /^(swk_\S+)$/m;
ok($token, 'an API token');
$sw->start;
ok($sw->wait_log(qr{admin: listening}, 5), 'the admin listens');
my $api = SipwakeAdmin->new(port => $hport, token => $token);
sub loads { scalar(() = $sw->log =~ /tenants: \d+ tenants, \d+ domains, \d+ credential sets loaded/g) }
my $n = loads();
is($api->post('/api/tenants', { name => 'acme', domains => ['acme.example'] })->{status}, 201, 'tenant acme');
is($api->put('/api/tenants/acme/credentials/default/apns_key',
              { key_id => 'KEYOLD0001', team_id => 'TEAMAAAAAA', key => p8('old') })->{status}, 200, 'with its key');
my $deadline = time + 10;
sleep 0.05 while loads() < $n + 2 && time < $deadline;
ok(loads() >= $n + 2, 'the tenants reloaded with it');

my $ua = $sw->ua(user => 'alice', domain => 'acme.example', transport => 'tcp');
is($ua->register(contact => "sip:alice\@127.0.0.1:" . $ua->local_port
    . ";transport=tcp;pn-provider=apns;pn-param=TEAMAAAAAA.org.acme.app;pn-prid=ABCD0001", expires => 3600)->{code},
   200, 'an acme phone registered');
ok($sw->disconnect($ua), 'then asleep');

my $caller = $sw->ua(user => 'carl');
my $cp = $caller->local_port;
sub message {
    my ($callid) = @_;
    return "MESSAGE sip:alice\@acme.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bK$callid\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:carl\@example.com>;tag=c-$callid\r\nTo: <sip:alice\@acme.example>\r\n"
        . "Call-ID: $callid\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi";
}
sub logged { my ($callid) = @_; $sw->sql("SELECT outcome || ' ' || credentials FROM sipwake_push_log WHERE call_id = '$callid'") // '' }
$caller->send_raw(message('rl-1'));
$deadline = time + 10;
sleep 0.05 while apns_log() !~ m{"path": "/3/device/ABCD0001", "kid": "KEYOLD0001"} && time < $deadline;
like(apns_log(), qr{"path": "/3/device/ABCD0001", "kid": "KEYOLD0001"}, 'its push reached APNs with the old key');

$n = loads();
is($api->put('/api/tenants/acme/credentials/default/apns_key',
              { key_id => 'KEYNEW0001', team_id => 'TEAMAAAAAA', key => p8('new') })->{status}, 200,
   'the key replaced through the admin API');
$deadline = time + 10;
sleep 0.05 while loads() < $n + 1 && time < $deadline;
ok(loads() >= $n + 1, 'the tenants reloaded');
is(logged('rl-1'), '', 'while the push through the old key still waited for its answer');

$deadline = time + 20;
sleep 0.1 while logged('rl-1') eq '' && time < $deadline && $sw->alive;
is(logged('rl-1'), 'delivered acme/default', 'the answer came and is in the push log');
ok($sw->alive, 'sipwake still running');

$caller->send_raw(message('rl-2'));
$deadline = time + 20;
sleep 0.05 while logged('rl-2') eq '' && time < $deadline && $sw->alive;
is(logged('rl-2'), 'delivered acme/default', 'the next push is delivered');
like(apns_log(), qr{"path": "/3/device/ABCD0001", "kid": "KEYNEW0001"}, 'signed with the new key');
ok($sw->stop, 'sipwake stops cleanly');
unlike($sw->log, qr/AddressSanitizer|runtime error/, 'no sanitizer report');
done_testing;
