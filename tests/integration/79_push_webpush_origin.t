#!/usr/bin/perl
# Issue 13 attack b03: a Web Push subscription URL is the user's choice, so a user's own
# endpoint answering 403 must not pass for the operator's VAPID credential problem at the
# real push services. Credential problems of Web Push are kept per origin of the push service
# (https://host[:port]): /api/stats credential_problems and the error line name the origin,
# and only a push delivered to that same origin resolves it — a delivery elsewhere does not
# clear it, and it does not mask the state of the other origins.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Sipwake;
use SipwakeAdmin;

my $dir = tempdir('webpush-origin-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir) or BAIL_OUT('openssl failed');
open my $s, '>', "$dir/subs.json" or die;
print $s '{"evil": {"status": 403}, "good": {}}';
close $s;
# two push services: two origins (https://127.0.0.1:<port>)
my (undef, $eport) = Sipwake::start_emulator('webpush', '--cert', "$dir/cert.pem", '--key', "$dir/key.pem",
    '--subscriptions', "$dir/subs.json", '--log', "$dir/evil.log", '--lifetime', '120');
my (undef, $gport) = Sipwake::start_emulator('webpush', '--cert', "$dir/cert.pem", '--key', "$dir/key.pem",
    '--subscriptions', "$dir/subs.json", '--log', "$dir/good.log", '--lifetime', '120');
ok($eport && $gport, 'two Web Push emulators listening');
my $hport = Sipwake::free_port();
my $sw = Sipwake->new(config => {
    admin => { enabled => 'yes', listen => "127.0.0.1:$hport" },
    registrar => { push_providers => 'webpush' },
    push => { ca => "$dir/cert.pem", bucket_timeout_other => 1 } });
$sw->write_config;
my ($rc, $out) = $sw->run_bin('admin', 'token', 'add', 'ops');
my ($token) = $out =~ /^(swk_\S+)$/m;
$sw->start;
my $api = SipwakeAdmin->new(port => $hport, token => $token);

sub reg {
    my ($u, $port, $sub) = @_;
    my $ua = $sw->ua(user => $u);
    return $ua->register(contact => "sip:$u\@127.0.0.1:" . $ua->local_port
        . ";pn-provider=webpush;pn-prid=https://127.0.0.1:$port/push/$sub", expires => 3600)->{code};
}
my $n = 0;
sub msg {
    my ($u) = @_;
    $n++;
    my $c = $sw->ua(user => 'carl');
    my $p = $c->local_port;
    $c->send_raw("MESSAGE sip:$u\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$p;rport;branch=z9hG4bKwo$n\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:carl\@example.com>;tag=wo$n\r\nTo: <sip:$u\@example.com>\r\n"
        . "Call-ID: wo-$n\r\nCSeq: 1 MESSAGE\r\nContent-Length: 2\r\n\r\nhi");
    my $want = $n;
    $sw->sql_wait("SELECT count(*) FROM sipwake_push_log", qr/^$want$/, 10);
    return [ map { join ' ', $_->{origin} // '-', $_->{status}, $_->{count}, defined $_->{resolved} ? 'resolved' : 'open' }
             @{ $api->get('/api/stats')->{json}{credential_problems} || [] } ];
}
my $evil = "https://127.0.0.1:$eport";
my $good = "https://127.0.0.1:$gport";
is(reg('mallory', $eport, 'evil'), 200, "mallory's endpoint registered");
is(reg('alice', $gport, 'good'), 200, "alice's endpoint registered");
is(reg('carol', $eport, 'good'), 200, "carol's, at mallory's origin");

is_deeply(msg('mallory'), ["$evil 403 1 open"], 'a 403 from an endpoint: a problem of that origin, named');
ok($sw->wait_log(qr/error push: the webpush service at \Q$evil\E refused the credentials \[push\] \(403 [^)]*\): check the VAPID key/),
   'the error line names the origin');
is_deeply(msg('alice'), ["$evil 403 1 open"], 'a delivery to another origin does not resolve it');
is_deeply(msg('mallory'), ["$evil 403 2 open"], 'counted again, still that origin only');
is_deeply(msg('carol'), ["$evil 403 2 resolved"], 'a delivery to the same origin resolves it');
ok($sw->stop, 'clean shutdown');
done_testing;
