#!/usr/bin/perl
# Policy generations: a call keeps the policy it started under. Calls to sleeping push phones
# start under policy P1; a SIGHUP loads P2, whose hooks decide differently (on_timeout answers
# another code, on_push_result no longer gives up, a push hook P1 does not have).
# The calls already in flight still finish under P1 (its on_timeout answer, its
# on_push_result for a push answered after the reload, also for a push whose call was
# cancelled before), a new call is decided by P2, and generation 1 is closed only once its
# last call and push have ended; the server then stops cleanly with no leak (ASan,
# detect_leaks=1).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time);
use Sipwake;

my $dir = tempdir('policy-gen-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir, 'apns') or BAIL_OUT('openssl failed');
# DDDD0003's push is answered (200) only after 4 s, long after the reload; EEEE0005's after
# 12 s, after every call started under P1 has ended
open my $sf, '>', "$dir/script.json" or die;
print $sf '{"DDDD0003": {"delay_ms": 4000}, "EEEE0005": {"delay_ms": 12000}}';
close $sf;
my (undef, $aport) = Sipwake::start_apns_emulator($dir, '--script', "$dir/script.json",
    '--log', "$dir/apns.log", '--lifetime', '120');
ok($aport, 'APNs emulator listening');

# P1: on_timeout answers 486 "P1"; on_push_result gives up at once on a delivered push to
# the slow phone (so its caller hears on_timeout's answer before the bucket timer)
my $p1 = <<'LUA';
return {
  route = function(req, ctx)
    if #ctx.bindings == 0 then return { reply = { code = 404, reason = "Not Found" } } end
    return { relay = "bindings", push = true }
  end,
  on_push_result = function(result, ctx)
    log.info("P1 on_push_result " .. result.outcome .. " for " .. result.aor)
    if result.aor == "slow@example.com" then return { action = "give_up" } end
    return nil
  end,
  on_timeout = function(req, ctx)
    return { reply = { code = 486, reason = "P1" } }
  end,
}
LUA
# P2: another shape. A push hook of its own, with state of its own (it counts the pushes it
# shaped: P1's calls must never reach it); on_push_result never gives up; on_timeout answers
# 603 "P2"
my $p2 = <<'LUA';
local seen = { count = 0 }
return {
  route = function(req, ctx)
    if #ctx.bindings == 0 then return { reply = { code = 404, reason = "Not Found" } } end
    return { relay = "bindings", push = true }
  end,
  push = function(req, binding, ctx)
    seen.count = seen.count + 1
    log.info("P2 push " .. seen.count .. " for " .. binding.aor)
    return nil
  end,
  on_push_result = function(result, ctx)
    log.info("P2 on_push_result " .. result.outcome .. " for " .. result.aor)
    return nil
  end,
  on_timeout = function(req, ctx)
    return { reply = { code = 603, reason = "P2" } }
  end,
}
LUA

my $sw = Sipwake->new(
    policy => $p1,
    config => {
        push => { apns_key_file => "$dir/apns.p8", apns_key_id => 'KEY1234567',
                  apns_team_id => 'TEAM123456', apns_host => '127.0.0.1', apns_port => $aport,
                  ca => "$dir/cert.pem", bucket_timeout => 8, timeout => 30 },
    });
$sw->start;
ok($sw->wait_log(qr/policy\.lua generation 1\)/), 'started with P1 as generation 1');
my $caller = $sw->ua(user => 'carl');
my $cp = $caller->local_port;
sub sleeping {
    my ($user, $prid) = @_;
    my $ua = $sw->ua(user => $user, transport => 'tcp');
    my $r = $ua->register(contact => "sip:$user\@127.0.0.1:" . $ua->local_port
        . ";transport=tcp;pn-provider=apns;pn-param=TEAM123456.org.example.app;pn-prid=$prid",
        expires => 3600);
    close $ua->sock;
    return $r->{code};
}
sub invite {
    my ($to, $callid, $method, $tohdr) = @_;
    $method //= 'INVITE';
    $tohdr //= "To: <sip:$to>";
    $caller->send_raw("$method sip:$to SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bK$callid\r\n"
        . "Max-Forwards: 70\r\nFrom: \"Carl\" <sip:carl\@example.com>;tag=c-$callid\r\n$tohdr\r\n"
        . "Call-ID: $callid\r\nCSeq: 1 $method\r\nContact: <sip:carl\@127.0.0.1:$cp>\r\nContent-Length: 0\r\n\r\n");
}
# The responses for each call, as they come (the caller's socket is shared by the calls).
my %got;
sub response {
    my ($callid, $re, $wait) = @_;
    my $deadline = time + $wait;
    for (;;) {
        for my $i (0 .. $#{ $got{$callid} || [] }) {
            return Sipwake::UA::parse_response(splice @{ $got{$callid} }, $i, 1)
                if $got{$callid}[$i] =~ $re;
        }
        my $left = $deadline - time;
        return undef if $left <= 0;
        my $m = $caller->recv_raw($left) // next;
        my ($id) = $m =~ /\r\nCall-ID: *([^\r]+)\r/i;
        push @{ $got{$id // ''} }, $m;
    }
}
sub final_for { response($_[0], qr/^SIP\/2\.0 [2-6]\d\d /, $_[1]) }

is(sleeping('alice', 'AAAA0001'), 200, 'a sleeping phone registered');
is(sleeping('slow', 'DDDD0003'), 200, 'a sleeping phone behind a slow APNs answer registered');
is(sleeping('late', 'EEEE0005'), 200, 'a sleeping phone behind a very slow APNs answer registered');
is(sleeping('bob', 'BBBB0002'), 200, 'another sleeping phone registered');

# under P1: a call to alice (pushed, waits for its bucket timer) and a call to slow, whose
# push is still on its way when P2 is loaded
my $t0 = time;
invite('alice@example.com', 'gen-call-1');
ok(response('gen-call-1', qr/^SIP\/2\.0 100 /, 3), 'call 1 (P1): pushed and parked (100 Trying)');
invite('slow@example.com', 'gen-call-3');
ok(response('gen-call-3', qr/^SIP\/2\.0 100 /, 3), 'call 3 (P1): its push is on its way (100 Trying)');
invite('late@example.com', 'gen-call-4');
ok(response('gen-call-4', qr/^SIP\/2\.0 100 /, 3), 'call 4 (P1): its push is on its way (100 Trying)');

$sw->write_policy($p2);
$sw->signal('HUP');
ok($sw->wait_log(qr/policy: .*policy\.lua loaded as generation 2/), 'SIGHUP loads P2 as generation 2');
unlike($sw->log, qr/P\d on_push_result \S+ for (slow|late)/, 'before the pushes of calls 3 and 4 were answered');
like($sw->log, qr/loaded as generation 2 \(1 older still open, [\d.]+ MiB in all\)/,
     'the reload says that generation 1 is still held');
$sw->signal('USR1');
ok($sw->wait_log(qr/metrics: sipwake_policy_generations 2\b/),
   'policy:generations counts both open generations (the old one is visible while held)');
ok($sw->wait_log(qr/metrics: sipwake_policy_memory_bytes [1-9]\d{5,}\b/),
   'policy:memory_bytes shows what they hold');

# a new call is P2's from the start
invite('bob@example.com', 'gen-call-2');
ok(response('gen-call-2', qr/^SIP\/2\.0 100 /, 3), 'call 2 (P2): pushed and parked');
ok($sw->wait_log(qr/: P2 push 1 for bob\@example\.com/), 'call 2\'s push was shaped by P2\'s push hook');
unlike($sw->log, qr/P2 push \d+ for (alice|slow|late)/, 'P2\'s push hook never saw the calls of P1');

# call 4 ends now (its caller cancels), while its push is still on its way
invite('late@example.com', 'gen-call-4', 'CANCEL');
ok(response('gen-call-4', qr/^SIP\/2\.0 200 .*CSeq: 1 CANCEL/s, 3), 'call 4 cancelled: 200 for the CANCEL');
my $r = response('gen-call-4', qr/^SIP\/2\.0 487 /, 3);
ok($r, 'and 487 for the INVITE: the call has ended');
my ($tohdr) = ($r && $r->{raw} // '') =~ /^(To: [^\r]*)\r$/m;
invite('late@example.com', 'gen-call-4', 'ACK', $tohdr) if $tohdr; # ends its transaction

# call 3: its push was sent under P1, so P1's on_push_result decides its answer (give up,
# and P1's on_timeout at once) though P2 is current when the answer comes
$r = final_for('gen-call-3', 10);
is($r && $r->{code}, 486, 'call 3 finishes under P1: on_timeout\'s 486');
is($r && $r->{reason}, 'P1', 'with P1\'s reason');
ok(time - $t0 < 7.5, 'P1\'s on_push_result gave up on it (not P2\'s bucket timer wait)');
like($sw->log, qr/: P1 on_push_result delivered for slow\@example\.com/, 'P1\'s on_push_result saw its push');
unlike($sw->log, qr/P2 on_push_result \S+ for (slow|alice)/, 'P2\'s never saw P1\'s pushes');
unlike($sw->log, qr/policy: generation 1 closed/, 'generation 1 is still open: call 1 runs under it');

# call 1: its bucket timer fires under P2, but its on_timeout is P1's
$r = final_for('gen-call-1', 12);
is($r && $r->{code}, 486, 'call 1 finishes under P1: on_timeout\'s 486');
is($r && $r->{reason}, 'P1', 'with P1\'s reason');
unlike($sw->log, qr/on_push_result \S+ for late/, 'call 4\'s push is still on its way');
unlike($sw->log, qr/policy: generation 1 closed/, 'so generation 1 stays open: that push job holds it');

# call 4's push is answered: P1's on_push_result sees it, though its call ended long ago and
# P2 is current; then nothing holds generation 1 any more
ok($sw->wait_log(qr/: P1 on_push_result delivered for late\@example\.com/, 10),
   'P1\'s on_push_result saw the push of call 4, ended under P2');
unlike($sw->log, qr/P2 on_push_result \S+ for late/, 'P2\'s did not');
ok($sw->wait_log(qr/policy: generation 1 closed/), 'generation 1 is closed once its last push ended');
$sw->signal('USR1');
ok($sw->wait_log(qr/metrics: sipwake_policy_generations 1\b/), 'policy:generations is back to 1');
my $log = $sw->log;
my $answered = $log =~ /proxy: INVITE alice from \S+ answered 486 P1/ ? $+[0] : -1;
my $pushed = $log =~ /: P1 on_push_result delivered for late/ ? $+[0] : -1;
my $closed = $log =~ /policy: generation 1 closed/ ? $-[0] : -1;
ok($answered >= 0 && $pushed >= 0 && $closed > $answered && $closed > $pushed,
   'and not before call 1 was answered and call 4\'s push ended');
is(() = $log =~ /policy: generation \d+ closed/g, 1, 'closed once; generation 2, current, stays open');

# call 2 is P2's to the end
$r = final_for('gen-call-2', 12);
is($r && $r->{code}, 603, 'call 2 finishes under P2: on_timeout\'s 603');
is($r && $r->{reason}, 'P2', 'with P2\'s reason');

ok($sw->alive, 'sipwake still running');
ok($sw->stop, 'clean shutdown, no sanitizer report (a VM left open is a leak)');
unlike($sw->log, qr/ERROR|AddressSanitizer|LeakSanitizer|runtime error/, 'no errors or sanitizer reports');
done_testing;
