#!/usr/bin/perl
# Graceful overload (issue 15): once the wait of the UDP datagrams taken up stands over
# [sip] overload_queue_ms past the burst allowance, [sip] overload_interval_ms, a share of
# the new INVITEs and REGISTERs that grows as long as it stands (PIE, RFC 8033) is answered
# at once with a stateless 503 Service Unavailable and Retry-After (RFC 3261 §21.5.4; its To
# tag, Via, Call-ID and CSeq as §8.2.6.2 asks) without being parsed further, while what
# sipwake admitted still completes: the retransmission of an INVITE and of a REGISTER whose
# transaction exists gets that transaction's answer (never 503), and a dialog's responses,
# ACK and BYE still go through. The queue is made deep for sure: a policy whose hooks spin
# 5 ms per INVITE and REGISTER, and bursts of requests sent at once from one socket. The
# counters, the queue-age histogram, the shedding state's metrics and log lines at most once
# a second report it. With
# overload_queue_ms = 0 the same burst gets no 503.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Socket qw(SO_RCVBUF);
use Time::HiRes qw(time);
use Sipwake;

my $policy = <<'LUA';
-- every INVITE and REGISTER costs 5 ms of CPU: a burst of them fills the receive queue
local function spin(ms)
    local stop = os.clock() + ms / 1000
    while os.clock() < stop do end
end
return {
    route = function(req, ctx)
        spin(5)
        if req.user == "bob" then return { relay = "bindings" } end
        return { reply = { code = 480, reason = "Nobody Here" } }
    end,
    on_register = function(req, ctx)
        spin(5)
        return nil
    end,
}
LUA

my $QUEUE_MS = 100;
my $sw = Sipwake->new(policy => $policy, config => {
    sip => { overload_queue_ms => $QUEUE_MS, overload_interval_ms => 100, overload_retry_after => 7 },
    policy => { time_budget_ms => 100 },
});
$sw->start;

# The flood's socket takes every answer of a burst, which sipwake sends at once.
sub flood_ua {
    my ($server) = @_;
    my $ua = $server->ua(user => 'flood');
    $ua->sock->sockopt(SO_RCVBUF, 4 * 1024 * 1024) or die "SO_RCVBUF: $!";
    return $ua;
}
my $flood = flood_ua($sw);
my $fp = $flood->local_port;
my $n = 0;

# A new request from the flood socket: an INVITE for a user nobody registered (480 when
# admitted) or a REGISTER; returns its Call-ID, its branch kept in %branch.
my (%branch, %method);
sub new_request {
    my ($method) = @_;
    my $id = "ovl-" . ++$n . "-$$";
    my $b = Sipwake::UA::branch();
    $branch{$id} = $b;
    $method{$id} = $method;
    my $ruri = $method eq 'INVITE' ? "sip:nobody$n\@example.com" : 'sip:example.com';
    my $to = $method eq 'INVITE' ? "<sip:nobody$n\@example.com>" : "<sip:reg$n\@example.com>";
    # a phone's headers besides those a 503 copies: without them a request is smaller than
    # its 503, and is dropped unanswered (no amplification)
    my $contact = ($method eq 'REGISTER' ? "Contact: <sip:reg$n\@127.0.0.1:$fp>\r\nExpires: 600\r\n"
                                         : "Contact: <sip:flood\@127.0.0.1:$fp>\r\n")
        . "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE\r\nUser-Agent: softphone/1.0\r\n";
    $flood->send_raw("$method $ruri SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$fp;rport;branch=$b\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:flood\@example.com>;tag=f$n\r\nTo: $to\r\n"
        . "Call-ID: $id\r\nCSeq: 3 $method\r\n$contact" . "Content-Length: 0\r\n\r\n");
    return $id;
}

# The final answers to the flood's requests, read until every Call-ID in ids has one (or
# timeout): Call-ID => [raw responses].
sub finals {
    my ($ids, $timeout) = @_;
    my %want = map { $_ => 1 } @$ids;
    my %got;
    my $deadline = time + $timeout;
    while (grep { !$got{$_} } keys %want) {
        my $left = $deadline - time;
        last if $left <= 0;
        my $m = $flood->recv_raw($left) // last;
        my ($code) = $m =~ /^SIP\/2\.0 (\d{3})/;
        my ($id) = $m =~ /^(?:Call-ID|i)\s*:\s*(\S+)\r$/mi;
        next unless $code && $code >= 200 && $id;
        push @{ $got{$id} }, $m;
    }
    return \%got;
}

sub code { ($_[0] // '') =~ /^SIP\/2\.0 (\d{3})/ ? $1 : 0 }

# ---- set-up, not overloaded: bob registers, alice calls him, he has not answered yet
my $bob = $sw->ua(user => 'bob');
my $bob_reg = $bob->register_msg(contact => "sip:bob\@127.0.0.1:" . $bob->local_port, expires => 600);
my $r = $bob->request($bob_reg);
is($r->{code}, 200, 'bob registered (not overloaded: admitted)');
my $alice = $sw->ua(user => 'alice');
my $al = $alice->local_port;
my $invite = "INVITE sip:bob\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$al;rport;branch=z9hG4bKovlcall1\r\n"
    . "Max-Forwards: 70\r\nFrom: <sip:alice\@example.com>;tag=al1\r\nTo: <sip:bob\@example.com>\r\n"
    . "Call-ID: ovl-call-$$\r\nCSeq: 1 INVITE\r\nContact: <sip:alice\@127.0.0.1:$al>\r\nContent-Length: 0\r\n\r\n";
$alice->send_raw($invite);
ok($alice->expect(qr/^SIP\/2\.0 100 /), 'alice got 100 Trying');
my $inv = $bob->expect(qr/^INVITE /);
ok($inv, 'bob got the INVITE');

# ---- burst 1: 120 new INVITEs, then (queued behind them) alice's INVITE again, bob's
# REGISTER again, bob's 180 and 200; then 40 INVITEs and 20 REGISTERs more
my (@before, @after);
push @before, new_request('INVITE') for 1 .. 120;
$alice->send_raw($invite);
$bob->send_raw($bob_reg);
$bob->answer($inv, 180, tag => 'bb1', reason => 'Ringing');
my $ok = $bob->answer($inv, 200, tag => 'bb1', reason => 'OK');
push @after, new_request('INVITE') for 1 .. 40;
push @after, new_request('REGISTER') for 1 .. 20;
my $t0 = time;
my $got = finals([@before, @after], 30);

is(scalar(grep { $got->{$_} } @before, @after), 180, 'every request of the burst got a final answer');
# (an unACKed 480 comes again by Timer G: the same answer)
is(scalar(grep { my $c = code($got->{$_}[0]); grep { code($_) != $c } @{ $got->{$_} } } @before, @after), 0,
   'none got two different answers');
my @shed = grep { code($got->{$_}[0]) == 503 } @before, @after;
my @served = grep { code($got->{$_}[0]) != 503 } @before, @after;
ok(@shed >= 20, scalar(@shed) . ' requests of the burst refused 503');
ok(@served >= 1, scalar(@served) . ' admitted');
is(scalar(grep { $method{$_} eq 'INVITE' && code($got->{$_}[0]) != 480 } @served), 0,
   'every admitted INVITE completed (480 from the policy)');
is(scalar(grep { $method{$_} eq 'REGISTER' && code($got->{$_}[0]) != 200 } @served), 0,
   'every admitted REGISTER completed (200)');
ok(code($got->{ $before[0] }[0]) != 503, 'the first of the burst was admitted');
# the retransmissions were queued amid the shedding: around them, most new INVITEs were refused
my $near = grep { code($got->{$_}[0]) == 503 } @before[-10 .. -1], @after[0 .. 9];
ok($near >= 10, "$near of the 20 INVITEs around the retransmissions (10 before, 10 after) were refused: overloaded then");
ok(scalar(grep { $method{$_} eq 'REGISTER' } @shed) >= 1, 'new REGISTERs were refused too');

# every 503: Retry-After, a To tag, the request's Via (branch, received/rport), Call-ID, CSeq
my $bad = 0;
for my $id (@shed) {
    my $m = $got->{$id}[0];
    my $b = $branch{$id};
    my $meth = $method{$id};
    my $good = $m =~ /^SIP\/2\.0 503 Service Unavailable\r\n/
        && $m =~ /^Retry-After: 7\r$/m
        && $m =~ /^To: <sip:[^>]+>;tag=\S+\r$/m
        && $m =~ /^From: <sip:flood\@example\.com>;tag=f\d+\r$/m
        && $m =~ /^Via: SIP\/2\.0\/UDP 127\.0\.0\.1:$fp;rport=$fp;branch=$b;received=127\.0\.0\.1\r$/m
        && $m =~ /^CSeq: 3 $meth\r$/m
        && $m =~ /^Call-ID: \Q$id\E\r$/m
        && $m =~ /\r\nContent-Length: 0\r\n\r\n\z/;
    unless ($good) {
        diag("bad 503:\n$m") unless $bad++;
    }
}
is($bad, 0, 'every 503 has Retry-After, a To tag, and the Via, From, Call-ID and CSeq of its request');

# what was admitted before the burst went on while overloaded
my @alice_msgs;
while (my $m = $alice->recv_raw(@alice_msgs && $alice_msgs[-1] =~ /^SIP\/2\.0 200/ ? 0.3 : 10)) {
    push @alice_msgs, $m;
}
my @codes = map { code($_) } @alice_msgs;
is(scalar(grep { $_ == 503 } @codes), 0, "alice's retransmitted INVITE was not refused");
ok(scalar(grep { $_ == 100 } @codes) >= 1, 'it got its transaction\'s 100 Trying again (' . join(' ', @codes) . ')');
ok(scalar(grep { $_ == 180 } @codes) && scalar(grep { $_ == 200 } @codes), "bob's 180 and 200 reached alice");
my $reg_again = $bob->expect(qr/^SIP\/2\.0 \d+ /);
is(code($reg_again), 200, "bob's retransmitted REGISTER got its transaction's 200, not 503");

# ---- burst 2: 120 new INVITEs, then alice's ACK and BYE by bob's Record-Route, then 20 more
my ($ok_rcvd) = grep { code($_) == 200 } @alice_msgs;
my @rr = ($ok_rcvd // '') =~ /^Record-Route:\s*([^\r]*)\r$/mg;
sub indialog {
    my ($method, $cseq, $branch) = @_;
    return "$method sip:bob\@127.0.0.1:" . $bob->local_port . " SIP/2.0\r\n"
        . "Via: SIP/2.0/UDP 127.0.0.1:$al;rport;branch=$branch\r\n"
        . join('', map { "Route: $_\r\n" } @rr)
        . "Max-Forwards: 70\r\nFrom: <sip:alice\@example.com>;tag=al1\r\nTo: <sip:bob\@example.com>;tag=bb1\r\n"
        . "Call-ID: ovl-call-$$\r\nCSeq: $cseq $method\r\nContent-Length: 0\r\n\r\n";
}
my $tcp = $sw->ua(user => 'carol', transport => 'tcp');
my $tp = $tcp->local_port;
my (@before2, @after2);
push @before2, new_request('INVITE') for 1 .. 120;
$alice->send_raw(indialog('ACK', 1, 'z9hG4bKovlack1'));
$alice->send_raw(indialog('BYE', 2, 'z9hG4bKovlbye1'));
push @after2, new_request('INVITE') for 1 .. 20;
# a new INVITE over TCP meanwhile: streams are never refused
$tcp->send_raw("INVITE sip:nobody-tcp\@example.com SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:$tp;branch=z9hG4bKovltcp1\r\n"
    . "Max-Forwards: 70\r\nFrom: <sip:carol\@example.com>;tag=c1\r\nTo: <sip:nobody-tcp\@example.com>\r\n"
    . "Call-ID: ovl-tcp-$$\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n");
my $ack = $bob->expect(qr/^ACK /, 15);
ok($ack, 'the ACK for the 2xx reached bob while overloaded');
my $bye = $bob->expect(qr/^BYE /, 15);
ok($bye, 'and the BYE');
$bob->answer($bye, 200, tag => 'bb1', reason => 'OK') if $bye;
my $bye_ok = $alice->expect(qr/^SIP\/2\.0 200[^\r]*\r\n(?:[^\r]*\r\n)*CSeq: 2 BYE/, 10);
ok($bye_ok, "bob's 200 for the BYE reached alice");
my $got2 = finals([@before2, @after2], 30);
is(scalar(grep { $got2->{$_} } @before2, @after2), 140, 'every INVITE of the second burst got a final answer');
my $near2 = grep { code($got2->{$_}[0]) == 503 } @before2[-10 .. -1], @after2[0 .. 9];
ok($near2 >= 10, "$near2 of the 20 INVITEs around the ACK and BYE (10 before, 10 after) were refused: overloaded then");
my @shed2 = grep { code($got2->{$_}[0]) == 503 } @before2, @after2;
is(code($tcp->expect(qr/^SIP\/2\.0 [2-6]\d\d /, 15)), 480, 'a new INVITE over TCP sent amid the burst was served (480), not refused');

# ---- what the operator sees
my $rej_inv = grep { $method{$_} eq 'INVITE' } @shed, @shed2;
my $rej_reg = grep { $method{$_} eq 'REGISTER' } @shed;
my $m = $sw->metrics;
is($m->{sipwake_overload_rejected_invite}, $rej_inv, "sipwake_overload_rejected_invite counts the INVITEs refused ($rej_inv)");
is($m->{sipwake_overload_rejected_register}, $rej_reg, "sipwake_overload_rejected_register the REGISTERs ($rej_reg)");
my $le = sprintf('%g', $QUEUE_MS / 1000);
my $over = ($m->{sipwake_overload_udp_queue_age_seconds_count} // 0)
    - ($m->{"sipwake_overload_udp_queue_age_seconds_bucket{le=\"$le\"}"} // 1e9);
ok($over >= $rej_inv + $rej_reg,
   "the queue-age histogram has at least as many datagrams over ${QUEUE_MS} ms ($over) as were refused");
ok(defined $m->{sipwake_overload_queue_age_ms} && defined $m->{sipwake_overload_loop_lag_ms}
   && defined $m->{sipwake_overload_udp_backlog_bytes} && defined $m->{sipwake_overload_udp_drops},
   'the queue age, loop lag, backlog and kernel drop gauges are there');
# the warnings: the first refusal at once, the rest summed up a second later at most
my $sum = sub {
    my ($inv, $reg) = (0, 0);
    my $log = $sw->log;
    while ($log =~ /overload: (\d+) new INVITE\(s\) and (\d+) REGISTER\(s\) answered 503/g) {
        $inv += $1;
        $reg += $2;
    }
    return [$inv, $reg];
};
ok(Sipwake::wait_until(sub { my $s = $sum->(); $s->[0] == $rej_inv && $s->[1] == $rej_reg }, 5),
   'the warnings add up to the refusals: ' . join('/', @{ $sum->() }));
my $elapsed = time - $t0;
my @warn = $sw->log =~ /^.*overload: .*answered 503 since.*$/mg;
like($warn[0] // '', qr/ warn +overload: \d+ new INVITE\(s\) and \d+ REGISTER\(s\) answered 503 .*overload_queue_ms 100\)$/,
     'logged at warn: ' . ($warn[0] // 'none'));
ok(@warn >= 2 && @warn <= int($elapsed) + 2,
   scalar(@warn) . " overload warnings in ${\ sprintf('%.1f', $elapsed)} s for " . ($rej_inv + $rej_reg) . ' refusals: at most one a second');
# the shedding state: entered (a standing queue), logged, and left once the queue drained
ok(($m->{sipwake_overload_shedding_entries} // 0) >= 1,
   'sipwake_overload_shedding_entries: entered (' . ($m->{sipwake_overload_shedding_entries} // 'none') . ')');
like($sw->log, qr/ warn +overload: shedding: the wait of UDP datagrams stood over 100 ms \(\[sip\] overload_queue_ms\) past the burst allowance \(100 ms, overload_interval_ms\): new INVITEs and REGISTERs are answered 503, now [\d.]+ % of them/,
     'entering the shedding state is logged at warn, with the share refused');
ok(defined $m->{sipwake_overload_refuse_permille}, 'the share refused is a gauge: sipwake_overload_refuse_permille');
ok(Sipwake::wait_until(sub { ($sw->metrics->{sipwake_overload_shedding} // -1) == 0 }, 5),
   'sipwake_overload_shedding is back to 0 once the queue drained');
is($sw->metrics->{sipwake_overload_refuse_permille}, 0, 'and so is sipwake_overload_refuse_permille');
ok(Sipwake::wait_until(sub { $sw->log =~ / warn +overload: shedding ended: / }, 5), 'and leaving it is logged');
my @state = $sw->log =~ /^.*overload: shedding.*$/mg;
ok(@state <= int(time - $t0) + 2, scalar(@state) . ' shedding state lines: at most one a second');
ok($sw->stop, 'clean shutdown, no sanitizer report');

# ---- shedding off: the same burst is served whole, however late
my $off = Sipwake->new(policy => $policy, config => {
    sip => { overload_queue_ms => 0 },
    policy => { time_budget_ms => 100 },
});
$off->start;
$flood = flood_ua($off);
$fp = $flood->local_port;
my @all;
push @all, new_request('INVITE') for 1 .. 120;
my $got3 = finals(\@all, 60);
is(scalar(grep { $got3->{$_} } @all), 120, 'overload_queue_ms = 0: every INVITE answered');
is(scalar(grep { code($got3->{$_}[0]) == 503 } @all), 0, 'none with 503');
is(scalar(grep { code($got3->{$_}[0]) == 480 } @all), 120, 'all by the policy (480)');
my $m3 = $off->metrics;
is($m3->{sipwake_overload_rejected_invite}, 0, 'nothing counted as refused');
ok($off->stop, 'clean shutdown');
done_testing;
