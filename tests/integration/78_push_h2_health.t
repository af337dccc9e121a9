#!/usr/bin/perl
# HTTP/2 connection health against the APNs emulator (issue 13, "Push that works in the
# field"):
# - a burst of pushes at a fresh connection, which APNs allows one stream until it saw a
#   valid provider token: all delivered, none failed, and the emulator never had to refuse
#   a stream over its advertised SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 §5.1.2);
# - the connection has TCP keepalive on;
# - APNs stops reading (and so answering PINGs) with a push in flight: the connection is
#   replaced within ping_timeout, the push is delivered on a new connection well before its
#   own deadline, and so is the next one;
# - several pushes in flight all answered ExpiredProviderToken: one new provider token, all
#   retried with it and delivered (no 429 TooManyProviderTokenUpdates).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use JSON::PP qw(decode_json);
use Time::HiRes qw(time sleep);
use Sipwake;

my $N = 8;
my $dir = tempdir('push-h2-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir, 'apns') or BAIL_OUT('openssl failed');
my (undef, $aport, $cport) = Sipwake::start_emulator('apns', '--cert', "$dir/cert.pem",
    '--key', "$dir/key.pem", '--auth-key', "KEY1234567:TEAM123456:$dir/apns-pub.pem",
    '--log', "$dir/apns.log", '--lifetime', '120');
ok($aport && $cport, 'APNs emulator listening, with its control port');
sub ctl { Sipwake::emulator_control($cport, $_[0]) // {} }
sub events {
    open my $f, '<', "$dir/apns.log" or return ();
    # complete lines only: the emulator may be writing the last one as it is read
    return map { decode_json($_) } grep { /\S/ && /\n\z/ } <$f>;
}
# pushes to token the emulator answered status (200 unless given)
sub answered {
    my ($token, $status) = @_;
    $status //= 200;
    return scalar grep {
        $_->{event} eq 'push' && $_->{path} eq "/3/device/$token" && ($_->{status} // 0) == $status
    } events();
}
sub wait_for {
    my ($cond, $timeout) = @_;
    my $deadline = time + $timeout;
    while (time < $deadline) {
        return 1 if $cond->();
        sleep 0.05;
    }
    return $cond->();
}

my $sw = Sipwake->new(config => {
    push => { apns_key_file => "$dir/apns.p8", apns_key_id => 'KEY1234567',
              apns_team_id => 'TEAM123456', apns_host => '127.0.0.1', apns_port => $aport,
              ca => "$dir/cert.pem", connections => 1, timeout => 15, ping_interval => 1,
              ping_timeout => 2, bucket_timeout_other => 25 },
});
$sw->start;
sub metric {
    my ($name) = @_;
    my $dumps = () = $sw->log =~ /metrics: sipwake_store_pending/g;
    kill 'USR1', $sw->{pid};
    wait_for(sub { (() = $sw->log =~ /metrics: sipwake_store_pending/g) > $dumps }, 3);
    my @v = $sw->log =~ /metrics: sipwake_\Q$name\E (\d+)$/mg;
    return @v ? $v[-1] : undef;
}

my @tokens = map { sprintf('AAAA%04d', $_) } 1 .. $N;
my @phones;
for my $i (1 .. $N) {
    my $ua = $sw->ua(user => "p$i", transport => 'tcp');
    $ua->register(contact => "sip:p$i\@127.0.0.1:" . $ua->local_port
        . ";transport=tcp;pn-provider=apns;pn-param=TEAM123456.org.example.app;pn-prid=$tokens[$i - 1]",
        expires => 3600);
    push @phones, $ua;
}
ok($sw->disconnect(@phones), "$N phones asleep: sipwake saw their connections close");
is($sw->sql_wait('SELECT count(*) FROM location', $N), $N, "$N phones registered and asleep");
my $caller = $sw->ua(user => 'carl');
my $cp = $caller->local_port;
my $seq = 0;
sub message {
    my ($to) = @_;
    my $callid = 'h2-' . ++$seq;
    return "MESSAGE sip:$to\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bK$callid\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:carl\@example.com>;tag=$callid\r\nTo: <sip:$to\@example.com>\r\n"
        . "Call-ID: $callid\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi";
}

# 1. A burst at a fresh connection (one stream until a valid token).
$caller->send_raw(message("p$_")) for 1 .. $N;
ok(wait_for(sub { (grep { answered($_) == 1 } @tokens) == $N }, 10), "all $N pushes of the burst were delivered");
my $st = ctl('stats');
is($st->{refused_streams}, 0, 'the emulator never had to refuse a stream over its advertised limit')
    or diag explain $st;
is($st->{connections}, 1, 'on one connection');
is((grep { $_->{event} eq 'push' && ($_->{status} // 0) != 200 } events()), 0, 'no push was refused');
is(metric('push_failed'), 0, 'push:failed 0');
is(metric('push_streams_refused'), 0, 'push:streams_refused 0');

# 2. TCP keepalive on sipwake's connection to APNs.
my $ss = `ss -tnoH state established '( dport = :$aport )' 2>&1`;
like($ss, qr/timer:\(keepalive,/, 'the connection to APNs has TCP keepalive on') or diag $ss;

# 3. APNs stops reading with a push in flight.
my $froze = ctl('freeze');
is($froze->{frozen}, 1, 'the emulator stopped reading its connection');
my $t0 = time;
$caller->send_raw(message('p1'));
ok(wait_for(sub { answered($tokens[0]) == 2 }, 12), 'the push in flight on the dead connection was delivered');
my $took = time - $t0;
ok($took < 10, sprintf('within %.1f s: ping_interval (1 s) + ping_timeout (2 s), not its 15 s deadline', $took));
like($sw->log, qr/h2: 127\.0\.0\.1:$aport stopped answering \(no answer to a PING within 2 s\): replacing the connection, 1 requests in flight go again/,
     'sipwake says why it replaced the connection');
is(ctl('stats')->{connections}, 2, 'on a new connection');
my @reqs = grep { $_->{event} eq 'request' && $_->{headers}{':path'} eq "/3/device/$tokens[0]" } events();
is($reqs[-1]{conn}, 2, 'the emulator saw it on connection 2 (the frozen one never read it)');
is(metric('push_connections_replaced'), 1, 'push:connections_replaced 1');
$caller->send_raw(message('p2'));
ok(wait_for(sub { answered($tokens[1]) == 2 }, 5), 'the next push is delivered');
@reqs = grep { $_->{event} eq 'request' && $_->{headers}{':path'} eq "/3/device/$tokens[1]" } events();
is($reqs[-1]{conn}, 2, 'on the new connection');

# 4. Five pushes in flight, all answered ExpiredProviderToken.
my $before = ctl('stats');
is($before->{tokens}, 1, 'one provider token so far');
my $exp = ctl('expire-tokens 5');
is($exp->{hold}, 5, 'the emulator expired it and holds the answers until 5 pushes wait');
my @five = @tokens[2 .. 6];
$caller->send_raw(message("p$_")) for 3 .. 7;
ok(wait_for(sub { (grep { answered($_, 403) == 1 } @five) == 5 }, 10), 'all 5 were answered ExpiredProviderToken together');
ok(wait_for(sub { (grep { answered($_) == 2 } @five) == 5 }, 10), 'and all 5 were delivered on the retry');
my $after = ctl('stats');
is($after->{tokens}, 2, 'with exactly one new provider token');
is(scalar(() = $sw->log =~ /ExpiredProviderToken: new provider token/g), 1, 'one renewal logged');
is((grep { $_->{event} eq 'push' && ($_->{status} // 0) == 429 } events()), 0, 'no 429 TooManyProviderTokenUpdates');

ok($sw->stop, 'sipwake stops cleanly');
done_testing();
