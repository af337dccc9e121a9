#!/usr/bin/perl
# Ordinary traffic must not wedge the store (issue 12): two MESSAGEs stored for a sleeping
# phone and one of them retransmitted (same Call-ID and CSeq), then a write from another
# connection (`sipwake user add` while the server runs). Afterwards the server's store still
# commits: a new REGISTER is in the location table, the user added from the CLI registers,
# `user del` and `admin token del` take effect at once, nothing logs "database is locked",
# and SIGTERM stops the process.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Sipwake;
use SipwakeAdmin;

my $hport = Sipwake::free_port();
my $sw = Sipwake->new(config => {
    auth => { enabled => 'yes' },
    offline => { enabled => 'yes' },
    admin => { enabled => 'yes', listen => "127.0.0.1:$hport" },
});
for (['alice@example.com', 'pw-alice'], ['bob@example.com', 'pw-bob'], ['sam@example.com', 'pw-sam']) {
    my ($rc, $out) = $sw->run_bin('user', 'add', @$_);
    is($rc, 0, "user add $_->[0] before the start") or diag $out;
}
my ($rc, $out) = $sw->run_bin('admin', 'token', 'add', 'ci');
my ($token) = $out =~ /^(swk_\S+)$/m;
ok($rc == 0 && $token, 'an API token made before the start');
$sw->start;
ok($sw->wait_log(qr{admin: listening on http://127\.0\.0\.1:$hport}, 5), 'the admin API listens');
my $api = SipwakeAdmin->new(port => $hport, token => $token);
$api->{http}->timeout(5); # a wedged store never answers: fail fast instead
is($api->get('/api/stats')->{status}, 200, 'the API token works');

# ---- alice registers with push parameters, then sleeps
my $PN = 'pn-provider=apns;pn-param=TEAM123456.org.example.app;pn-prid=AAAA0001';
my $phone = $sw->ua(user => 'alice', transport => 'tcp');
is($phone->register(contact => "sip:alice\@127.0.0.1:" . $phone->local_port . ";transport=tcp;$PN",
    expires => 3600, password => 'pw-alice')->{code}, 200, 'alice registered with push params');
ok($sw->disconnect($phone), 'asleep: sipwake saw her connection close');
is($sw->sql_wait("SELECT count(*) FROM location WHERE username='alice'", '1'), '1', 'her binding is stored');

# ---- two MESSAGEs stored for her, and the second retransmitted (same Call-ID and CSeq)
my $sender = $sw->ua(user => 'sam', transport => 'tcp');
my $sp = $sender->local_port;
my $n = 0;
sub message {
    my ($callid, $body) = @_;
    ++$n;
    return "MESSAGE sip:alice\@example.com SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:$sp;rport;branch=z9hG4bKw$n\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:sam\@example.com>;tag=w$n\r\nTo: <sip:alice\@example.com>\r\n"
        . "Call-ID: $callid\r\nCSeq: 7 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: "
        . length($body) . "\r\n\r\n$body";
}
is($sender->request(message('wedge-1', 'one'), 5)->{code}, 202, 'first MESSAGE stored: 202');
is($sender->request(message('wedge-2', 'two'), 5)->{code}, 202, 'second MESSAGE stored: 202');
is($sender->request(message('wedge-2', 'two'), 5)->{code}, 202, 'the second again (a duplicate): 202');
is($sw->sql("SELECT count(*) FROM sipwake_messages WHERE aor='alice\@example.com'"), '2', 'two stored');

# ---- a write from another connection while the server runs
($rc, $out) = $sw->run_bin('user', 'add', 'carol@example.com', 'pw-carol');
is($rc, 0, 'sipwake user add carol while the server runs') or diag $out;

# ---- the server's store still commits, and sees what the CLI wrote
my $bob = $sw->ua(user => 'bob');
my $r = $bob->register(expires => 600, password => 'pw-bob', timeout => 5);
is($r && $r->{code}, 200, 'a new REGISTER (bob) is answered 200');
is($sw->sql_wait("SELECT count(*) FROM location WHERE username='bob'", '1', 5), '1',
   'and committed to the location table');
my $carol = $sw->ua(user => 'carol');
$r = $carol->register(expires => 600, password => 'pw-carol', timeout => 5);
is($r && $r->{code}, 200, 'carol, added from the CLI while the server ran, registers');
is($sw->sql_wait("SELECT count(*) FROM location WHERE username='carol'", '1', 5), '1',
   'her binding committed too');

($rc, $out) = $sw->run_bin('user', 'del', 'bob@example.com');
is($rc, 0, 'sipwake user del bob') or diag $out;
$r = $bob->register(expires => 600, password => 'pw-bob', timeout => 5);
ok($r && ($r->{code} == 401 || $r->{code} == 403), 'the deleted user is refused (' . ($r ? $r->{code} : 'no answer') . ')');

($rc, $out) = $sw->run_bin('admin', 'token', 'del', 'ci');
is($rc, 0, 'sipwake admin token del ci') or diag $out;
is($api->get('/api/stats')->{status}, 401, 'the deleted API token no longer works');

unlike($sw->log, qr/database is locked/, 'the store never reported "database is locked"');
unlike($sw->log, qr/left busy/, 'no statement was found left busy after a batch');
my $t0 = time;
ok($sw->stop, 'SIGTERM stops the process cleanly');
ok(time - $t0 < 10, sprintf('within bound (%.1f s)', time - $t0));
done_testing();
