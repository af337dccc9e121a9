#!/usr/bin/perl
# Digest authentication (RFC 7616): both algorithms, nonce replay and staleness, credentials
# for another AOR, per-source lockout, and that nothing is stored without authentication.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Time::HiRes qw(sleep);
use Sipwake;

my $sw = Sipwake->new(config => {
    auth => { enabled => 'yes', nonce_lifetime => 5, max_failures => 3, failure_window => 60,
              lockout => 3 },
});
for my $u (qw(alice bob)) {
    my ($rc, $out) = $sw->run_bin('user', 'add', "$u\@example.com", "pw-$u");
    is($rc, 0, "user add $u") or diag $out;
}
$sw->start;
my $H = \&Sipwake::UA::header;

my $ua = $sw->ua(user => 'alice');
my $r = $ua->register(expires => 600);
is($r->{code}, 401, 'REGISTER without credentials: 401');
my @ch = $H->($r, 'www-authenticate');
is(scalar @ch, 2, 'one challenge per algorithm');
like($ch[0], qr/^Digest realm="example\.com", nonce="[0-9a-f]{48}", algorithm=SHA-256, qop="auth"$/,
     'SHA-256 offered first (RFC 8760)');
like($ch[1], qr/algorithm=MD5/, 'then MD5');
is($sw->sql("select count(*) from location"), '0', 'nothing stored for a challenged REGISTER');

$r = $ua->register(expires => 600, password => 'pw-alice', algorithm => 'SHA-256');
is($r->{code}, 200, 'SHA-256 credentials accepted');
my $ub = $sw->ua(user => 'bob');
$r = $ub->register(expires => 600, password => 'pw-bob', algorithm => 'MD5');
is($r->{code}, 200, 'MD5 credentials accepted');

# replay: the same Authorization (same nonce and nc) with a new transaction
my $c = $ua->register(expires => 600);
my $auth = $ua->authorization($c, password => 'pw-alice', algorithm => 'MD5');
$r = $ua->request($ua->register_msg(expires => 600, authorization => $auth));
is($r->{code}, 200, 'first use of the nonce');
$r = $ua->request($ua->register_msg(expires => 600, authorization => $auth));
is($r->{code}, 401, 'replayed nonce-count refused with a new challenge');
like($sw->log, qr/replayed nonce-count/, 'replay logged');
my $auth2 = $ua->authorization($c, password => 'pw-alice', algorithm => 'MD5', nc => '00000002');
$r = $ua->request($ua->register_msg(expires => 600, authorization => $auth2));
is($r->{code}, 200, 'next nonce-count on the same nonce accepted');

# credentials of bob for alice's AOR
my $m = $sw->ua(user => 'alice');
$c = $m->register(expires => 600);
$auth = $m->authorization($c, password => 'pw-bob', auth_user => 'bob');
$r = $m->request($m->register_msg(expires => 600, authorization => $auth));
is($r->{code}, 403, "bob's valid credentials cannot register alice");

# stale nonce: correct credentials on an expired nonce get stale=true
$c = $ua->register(expires => 600);
sleep 6.2; # the nonce_lifetime (5 s) passes: the condition under test, not a synchronisation
$auth = $ua->authorization($c, password => 'pw-alice');
$r = $ua->request($ua->register_msg(expires => 600, authorization => $auth));
is($r->{code}, 401, 'expired nonce: 401');
like(scalar $H->($r, 'www-authenticate'), qr/stale=true/, 'with stale=true');

# the digest-uri must be the Request-URI (RFC 7616 §3.4.6), compared as RFC 3261 §19.1.4 does
$c = $ua->register(expires => 600);
$auth = $ua->authorization($c, password => 'pw-alice', uri => 'sip:elsewhere.example.com');
$r = $ua->request($ua->register_msg(expires => 600, authorization => $auth));
is($r->{code}, 400, 'right password, digest uri of another resource: 400');
like(scalar $H->($r, 'warning'), qr/does not match the Request-URI/, 'with a Warning saying why');
$c = $ua->register(expires => 600);
$auth = $ua->authorization($c, password => 'pw-alice', uri => 'sip:EXAMPLE.com;x-foo=bar');
$r = $ua->request($ua->register_msg(expires => 600, authorization => $auth));
is($r->{code}, 200, 'an equivalent digest uri (host case, an extra parameter) is accepted');
$c = $ua->register(expires => 600);
$auth = $ua->authorization($c, password => 'pw-alice', uri => 'sip:example.com:5060');
$r = $ua->request($ua->register_msg(expires => 600, authorization => $auth));
is($r->{code}, 400, 'an explicit port is not the same URI (RFC 3261 §19.1.4)');

# we always offer qop="auth"; an answer without qop (RFC 2069) is refused (RFC 3261 §22.4)
$c = $ua->register(expires => 600);
$auth = $ua->authorization($c, password => 'pw-alice', no_qop => 1);
$r = $ua->request($ua->register_msg(expires => 600, authorization => $auth));
is($r->{code}, 403, 'right password without qop: 403');
like(scalar $H->($r, 'warning'), qr/without qop/, 'with a Warning saying why');

# nonce-count: 8 hex digits, not 0 (RFC 7616 §3.4)
for my $nc ('1', '00000000', '0000000x') {
    $c = $ua->register(expires => 600);
    $auth = $ua->authorization($c, password => 'pw-alice', nc => $nc);
    $r = $ua->request($ua->register_msg(expires => 600, authorization => $auth));
    is($r->{code}, 400, "nc=$nc: 400");
}

# Forged source addresses: a spoofer (here 127.0.0.2) can obtain nonces for its own address,
# then send wrong credentials with a forged source (the victim's 127.0.0.1; over UDP it never
# sees the answers). Nonces are bound to the address they were sent to, so these are not
# failures of 127.0.0.1 and the victim is not locked out.
my $spoofer = $sw->ua(user => 'bob', local_addr => '127.0.0.2');
my $forged = $sw->ua(user => 'bob');
for my $i (1 .. 4) {
    my $ch2 = $spoofer->register(expires => 600);
    is($ch2->{code}, 401, "spoofer $i: challenged at its own address");
    $auth = $forged->authorization($ch2, password => 'guess');
    $r = $forged->request($forged->register_msg(expires => 600, authorization => $auth));
    is($r->{code}, 401, "forged failure $i: only a fresh challenge");
}
my $victim = $sw->ua(user => 'alice');
$r = $victim->register(expires => 600, password => 'pw-alice');
is($r->{code}, 200, 'the victim address is not locked out');
unlike($sw->log, qr/locked out/, 'nobody was locked out');

# wrong passwords: counted per source, then locked out
my $bad = $sw->ua(user => 'bob');
for my $i (1 .. 2) {
    $r = $bad->register(expires => 600, password => 'nope', contact => "sip:bob\@127.0.0.1:7$i");
    is($r->{code}, 401, "wrong password $i: 401");
}
$r = $bad->register(expires => 600, password => 'nope', contact => 'sip:bob@127.0.0.1:73');
is($r->{code}, 403, 'third failure locks the source out');
$r = $bad->register(expires => 600, password => 'pw-bob', contact => 'sip:bob@127.0.0.1:74');
is($r->{code}, 403, 'even good credentials are refused while locked out');
unlike($sw->sql("select group_concat(contact) from location"), qr/:7[1-4]\b/,
       'no binding from any refused REGISTER');
sleep 3.2; # the lockout (3 s) passes: the condition under test, not a synchronisation
$r = $bad->register(expires => 600, password => 'pw-bob', contact => 'sip:bob@127.0.0.1:75');
is($r->{code}, 200, 'after the lockout, good credentials work again');

# a malformed Authorization
$r = $ua->request($ua->register_msg(expires => 600,
    authorization => 'Digest username="alice", realm="example.com", algorithm=MD5-sess'));
is($r->{code}, 400, 'unsupported algorithm: 400');

ok($sw->stop, 'clean shutdown');
done_testing;
