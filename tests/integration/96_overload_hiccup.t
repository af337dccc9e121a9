#!/usr/bin/perl
# Graceful overload (issue 15): a hiccup is not overload. sipwake is stopped (SIGSTOP) for
# 400 ms, far longer than [sip] overload_queue_ms (the default, 50 ms), while a burst of
# new INVITEs (1.5 ms of policy each) arrives and waits in
# the kernel's queue; then it goes on (SIGCONT). Every datagram of the burst has waited
# over the target when it is taken up, but sipwake drains them (1.5 ms each, 45 ms or more)
# in less than the burst allowance, overload_interval_ms (100 ms, RFC 8033 §4.4), and the
# stop itself spends none of it: nothing is shed, every INVITE is served by the policy, and
# the shedding state was never entered. Before 2026-12-06 every INVITE of
# the burst older than the threshold was answered 503.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Sipwake;

# each INVITE costs 1.5 ms: the burst takes some 45 ms or more to drain, several updates of
# the law (every 15 ms) with the wait over the target, not one
my $policy = <<'LUA';
local function spin(ms)
    local stop = os.clock() + ms / 1000
    while os.clock() < stop do end
end
return {
    route = function(req, ctx)
        spin(1.5)
        return { reply = { code = 480, reason = "Nobody Here" } }
    end,
}
LUA

my $N = 30;
# the defaults, set as such: the harness turns shedding off for other tests
my $sw = Sipwake->new(policy => $policy, config => { sip => { overload_queue_ms => 50, overload_interval_ms => 100 } });
$sw->start;
my $ua = $sw->ua(user => 'hiccup');
my $p = $ua->local_port;

sub invite {
    my ($i) = @_;
    return "INVITE sip:nobody$i\@example.com SIP/2.0\r\n"
        . "Via: SIP/2.0/UDP 127.0.0.1:$p;rport;branch=z9hG4bKhiccup$i\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:hiccup\@example.com>;tag=h$i\r\n"
        . "To: <sip:nobody$i\@example.com>\r\nCall-ID: hiccup-$i-$$\r\nCSeq: 1 INVITE\r\n"
        . "Contact: <sip:hiccup\@127.0.0.1:$p>\r\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE\r\n"
        . "User-Agent: softphone/1.0\r\nContent-Length: 0\r\n\r\n";
}

sub state_of {
    open my $f, '<', "/proc/$_[0]/stat" or return '';
    my ($s) = <$f> =~ /\) (\S)/;
    return $s // '';
}

# one request before the hiccup: sipwake is up and serving
$ua->send_raw(invite(0));
my $first = $ua->expect(qr/^SIP\/2\.0 [2-6]\d\d /, 15);
ok($first && $first =~ /^SIP\/2\.0 480 /, 'served before the hiccup (480 from the policy)');
my $m0 = $sw->metrics;
my $le = '0.05'; # the default overload_queue_ms, as the histogram's bucket bound
my $over0 = ($m0->{sipwake_overload_udp_queue_age_seconds_count} // 0)
    - ($m0->{"sipwake_overload_udp_queue_age_seconds_bucket{le=\"$le\"}"} // 0);

my $pid = $sw->{pid};
kill 'STOP', $pid;
ok(Sipwake::wait_until(sub { state_of($pid) eq 'T' }, 5), 'sipwake stopped');
my $stopped = time;
$ua->send_raw(invite($_)) for 1 .. $N;
# the hiccup itself (the stimulus, not a synchronisation): the burst waits 400 ms, eight
# times the target
sleep(0.4 - (time - $stopped)) if time - $stopped < 0.4;
kill 'CONT', $pid;

my %code;
my $deadline = time + 30;
while (keys %code < $N && time < $deadline) {
    my $m = $ua->recv_raw($deadline - time) // last;
    my ($c) = $m =~ /^SIP\/2\.0 (\d{3})/;
    my ($i) = $m =~ /^Call-ID: hiccup-(\d+)-/m;
    $code{$i} //= $c if $c && $c >= 200 && $i;
}
is(scalar(keys %code), $N, 'every INVITE of the burst got a final answer');
my @codes = map { $code{$_} // 0 } 1 .. $N;
is(scalar(grep { $_ == 503 } @codes), 0, 'none was refused 503 (' . join(' ', @codes) . ')');
is(scalar(grep { $_ == 480 } @codes), $N, 'all were served by the policy (480)');

my $m = $sw->metrics;
my $over = ($m->{sipwake_overload_udp_queue_age_seconds_count} // 0)
    - ($m->{"sipwake_overload_udp_queue_age_seconds_bucket{le=\"$le\"}"} // 0) - $over0;
ok($over >= $N, "the burst did wait: $over datagrams waited over 50 ms (the histogram)");
is($m->{sipwake_overload_rejected_invite} // 0, 0, 'sipwake_overload_rejected_invite: 0');
is($m->{sipwake_overload_shedding_entries}, 0, 'sipwake_overload_shedding_entries: never entered the shedding state');
is($m->{sipwake_overload_shedding}, 0, 'sipwake_overload_shedding: 0');
unlike($sw->log, qr/overload: .*answered 503/, 'no refusal logged');
ok($sw->stop, 'clean shutdown, no sanitizer report');
done_testing;
