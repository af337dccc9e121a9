#!/usr/bin/perl
# Graceful overload (issue 15): a datagram's wait is counted up to when sipwake looks at it,
# not up to when its batch left the kernel, and the refusal law (PIE, RFC 8033) is updated on
# the clock read for each datagram. A burst read in one recvmmsg batch is served one datagram
# after the other; with a policy that spends 30 ms per INVITE, the tenth of a batch is
# looked at some 270 ms after it arrived, however fresh the batch was when read. sipwake is
# stopped (SIGSTOP) while the burst is sent, so the thirty INVITEs wait in the kernel's queue
# together and come out in one batch (up to 32), a few ms old; then it goes on (SIGCONT).
# The first ones are served (480 from the policy); as their wait grows past
# overload_queue_ms and the burst allowance (100 ms) is spent, p rises, and once it is 10 %
# every later one, having waited half of T1 or more, is refused 503 (refusals are cheap, so
# the last ten are looked at some 300 ms after they arrived); at least four of them must be.
# On the loop's time (ev_now), which stands still through the batch, the law would never
# update within it and none would be refused.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Sipwake;

my $policy = <<'LUA';
local function spin(ms)
    local stop = os.clock() + ms / 1000
    while os.clock() < stop do end
end
return {
    route = function(req, ctx)
        spin(30)
        return { reply = { code = 480, reason = "Nobody Here" } }
    end,
}
LUA

my $sw = Sipwake->new(policy => $policy, config => {
    sip => { overload_queue_ms => 100 },
    policy => { time_budget_ms => 200 },
});
$sw->start;
my $ua = $sw->ua(user => 'burst');
my $p = $ua->local_port;
my $N = 30;

sub invite {
    my ($i) = @_;
    return "INVITE sip:nobody$i\@example.com SIP/2.0\r\n"
        . "Via: SIP/2.0/UDP 127.0.0.1:$p;rport;branch=z9hG4bKbatch$i\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:burst\@example.com>;tag=b$i\r\n"
        . "To: <sip:nobody$i\@example.com>\r\nCall-ID: batch-$i-$$\r\nCSeq: 1 INVITE\r\n"
        . "Contact: <sip:burst\@127.0.0.1:$p>\r\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE\r\n"
        . "User-Agent: softphone/1.0\r\nContent-Length: 0\r\n\r\n";
}

sub state_of {
    open my $f, '<', "/proc/$_[0]/stat" or return '';
    my ($s) = <$f> =~ /\) (\S)/;
    return $s // '';
}

my $pid = $sw->{pid};
kill 'STOP', $pid;
ok(Sipwake::wait_until(sub { state_of($pid) eq 'T' }, 5), 'sipwake stopped');
$ua->send_raw(invite($_)) for 1 .. $N;
kill 'CONT', $pid;

my %code;
my $deadline = time + 30;
while (keys %code < $N && time < $deadline) {
    my $m = $ua->recv_raw($deadline - time) // last;
    my ($c) = $m =~ /^SIP\/2\.0 (\d{3})/;
    my ($i) = $m =~ /^Call-ID: batch-(\d+)-/m;
    $code{$i} //= $c if $c && $c >= 200 && $i;
}
is(scalar(keys %code), $N, 'every INVITE got a final answer');
my @codes = map { $code{$_} // 0 } 1 .. $N;
is(scalar(grep { $_ == 480 } @codes[0 .. 4]), 5, 'the first five of the batch were served (480 from the policy)');
is(scalar(grep { $_ != 480 && $_ != 503 } @codes), 0, 'each got 480 or 503');
my $late = grep { $_ == 503 } @codes[$N - 10 .. $N - 1];
ok($late >= 4, "$late of the last ten, each looked at 250 ms or more after it arrived, were refused 503 ("
   . join(' ', @codes) . ')');
my $m = $sw->metrics;
is($m->{sipwake_overload_rejected_invite}, scalar(grep { $_ == 503 } @codes), 'the refusals are counted');
ok($sw->stop, 'clean shutdown, no sanitizer report');
done_testing;
