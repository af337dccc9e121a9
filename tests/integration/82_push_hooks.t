#!/usr/bin/perl
# The policy's push hooks on the wire, with the APNs emulator: push() shapes the push (type,
# priority, TTL, collapse id, alert text, extra fields, hidden caller) or skips it;
# on_push_result() gives up on a busy service at once, or retries on its own schedule;
# on_timeout() sends a call nobody came back for to voicemail and answers a MESSAGE with
# its own code.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Sipwake;

my $dir = tempdir('push-hooks-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir, 'apns') or BAIL_OUT('openssl failed');
open my $sf, '>', "$dir/script.json" or die;
print $sf '{"BBBB0002": {"status": 503, "reason": "ServiceUnavailable", "retry_after": 5}, '
    . '"CCCC0003": {"status": 429, "reason": "TooManyRequests"}}';
close $sf;
my (undef, $aport) = Sipwake::start_apns_emulator($dir, '--script', "$dir/script.json",
    '--log', "$dir/apns.log", '--lifetime', '120');
ok($aport, 'APNs emulator listening');
sub apns_log { open my $f, '<', "$dir/apns.log" or return ''; local $/; <$f> // '' }

my $sw = Sipwake->new(
    config => {
        push => { apns_key_file => "$dir/apns.p8", apns_key_id => 'KEY1234567',
                  apns_team_id => 'TEAM123456', apns_host => '127.0.0.1', apns_port => $aport,
                  ca => "$dir/cert.pem", bucket_timeout => 2, bucket_timeout_other => 2 },
    });
my $vm = $sw->ua(user => 'vm');
my $vport = $vm->local_port;
$sw->write_policy(<<LUA);
return {
  route = function(req, ctx)
    if #ctx.bindings == 0 then return { reply = { code = 404, reason = "Not Found" } } end
    return { relay = "bindings", push = true, fork_live = req.user ~= "waitlive" }
  end,
  push = function(req, binding, ctx)
    if binding.aor == "skip\@example.com" then return { skip = true } end
    if binding.aor == "shaped\@example.com" then
      return { type = "alert", priority = "normal", ttl = 60, collapse_id = "call-" .. ctx.attempt,
               hide_caller = true, alert = { title = "Incoming call", body = "Tap to answer" },
               data = { tenant = ctx.tenant or "none", room = 42 } }
    end
    return nil
  end,
  on_push_result = function(result, ctx)
    if result.status == 503 then return { action = "give_up" } end
    if result.status == 429 then return { action = "retry", after_ms = 300 } end
    return nil
  end,
  on_timeout = function(req, ctx)
    if req.method == "INVITE" then return { relay = "uri", uri = "sip:vm\@127.0.0.1:$vport" } end
    return { reply = { code = 486, reason = "Busy Here", headers = { ["Retry-After"] = 60 } } }
  end,
}
LUA
$sw->write_config;
$sw->start;
my $port = $sw->port;
my $caller = $sw->ua(user => 'carl');
my $cp = $caller->local_port;
sub sleeping {
    my ($user, $prid) = @_;
    my $ua = $sw->ua(user => $user, transport => 'tcp');
    my $r = $ua->register(contact => "sip:$user\@127.0.0.1:" . $ua->local_port
        . ";transport=tcp;pn-provider=apns;pn-param=TEAM123456.org.example.app;pn-prid=$prid",
        expires => 3600);
    # asleep: sipwake has seen the connection close
    return $sw->disconnect($ua) ? $r->{code} : 'still connected';
}
sub request {
    my ($method, $to, $callid) = @_;
    return "$method sip:$to SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bK$callid\r\n"
        . "Max-Forwards: 70\r\nFrom: \"Carl\" <sip:carl\@example.com>;tag=c-$callid\r\nTo: <sip:$to>\r\n"
        . "Call-ID: $callid\r\nCSeq: 1 $method\r\nContact: <sip:carl\@127.0.0.1:$cp>\r\n"
        . ($method eq 'MESSAGE' ? "Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi" : "Content-Length: 0\r\n\r\n");
}
sub final_for {
    my ($callid, $wait) = @_;
    return Sipwake::UA::parse_response($caller->expect(qr/^SIP\/2\.0 [2-6]\d\d .*Call-ID: \Q$callid\E\r/s, $wait));
}

is(sleeping('shaped', 'AAAA0001'), 200, 'a phone registered');
is(sleeping('skip', 'DDDD0004'), 200, 'a phone the policy never pushes registered');
is(sleeping('busy', 'BBBB0002'), 200, 'a phone behind a busy APNs registered');
is(sleeping('limited', 'CCCC0003'), 200, 'a phone behind a rate-limited APNs registered');

# push(): the shape of the push
my $t0 = time;
$caller->send_raw(request('INVITE', 'shaped@example.com', 'call-1'));
my $log = '';
for (1 .. 200) { $log = apns_log(); last if $log =~ m{"event": "push", "path": "/3/device/AAAA0001"}; sleep 0.05 }
my ($entry) = $log =~ m{^(\{"event": "push", "path": "/3/device/AAAA0001".*)$}m;
ok($entry, 'the call was pushed');
like($entry // '', qr/"push_type": "alert", "priority": "5"/, 'as an alert at normal priority');
like($entry // '', qr/"collapse_id": "call-1"/, 'with the collapse id the policy made');
my ($exp) = ($entry // '') =~ /"expiration": "(\d+)"/;
ok($exp && $exp - $t0 > 50 && $exp - $t0 < 70, 'expiring in the TTL the policy gave (60 s)');
like($entry // '', qr/\\"title\\":\\"Incoming call\\",\\"body\\":\\"Tap to answer\\"/, 'with the alert text');
like($entry // '', qr/\\"room\\":\\"42\\"/, 'and the extra fields');
unlike($entry // '', qr/carl|Carl/, 'the caller hidden');
like($entry // '', qr/"status": 200/, 'APNs accepted it');

# on_timeout(): nobody came back, so voicemail takes the call
my $inv = $vm->expect(qr/^INVITE /, 4);
ok($inv, 'after the bucket timer the call went to voicemail');
like($inv // '', qr{^INVITE sip:vm\@127\.0\.0\.1:$vport SIP/2\.0}, 'to the URI on_timeout named');
ok(time - $t0 >= 1.8, 'not before the bucket timer (2 s)');
$vm->answer($inv, 200, reason => 'OK', tag => 'vm1', contact => "sip:vm\@127.0.0.1:$vport");
my $r = final_for('call-1', 3);
is($r->{code}, 200, 'the caller is connected to voicemail');

# skip: nobody to wait for
$t0 = time;
$caller->send_raw(request('MESSAGE', 'skip@example.com', 'msg-skip'));
$r = final_for('msg-skip', 3);
is($r->{code}, 480, 'a phone the policy skips: 480');
ok(time - $t0 < 1, 'at once');
unlike(apns_log(), qr/DDDD0004/, 'and no push went out');

# on_push_result(): give up on 503 at once (sipwake alone would wait out Retry-After)
$t0 = time;
$caller->send_raw(request('MESSAGE', 'busy@example.com', 'msg-busy'));
$r = final_for('msg-busy', 4);
is($r->{code}, 486, 'APNs busy, the policy gives up: on_timeout\'s reply (486)');
like($r->{raw} // '', qr/\r\nRetry-After: 60\r\n/, 'with its headers');
ok(time - $t0 < 1, 'at once, not after the bucket timer');
my @tries = apns_log() =~ m{"event": "push", "path": "/3/device/BBBB0002"}g;
is(scalar @tries, 1, 'pushed once');

# on_push_result(): retry after 300 ms on 429, for as long as the bucket allows
$t0 = time;
$caller->send_raw(request('MESSAGE', 'limited@example.com', 'msg-limited'));
$r = final_for('msg-limited', 4);
is($r->{code}, 486, 'rate-limited until the bucket timer: on_timeout\'s reply');
@tries = apns_log() =~ m{"event": "push", "path": "/3/device/CCCC0003"}g;
ok(@tries >= 4 && @tries <= 8, scalar(@tries) . ' pushes in 2 s: every 300 ms, as the policy said');

# route(): fork_live = false pushes a phone that still has a connection, and waits for its
# re-REGISTER instead of ringing the old connection
my %live;
for my $u (qw(waitlive ringlive)) {
    my $ua = $live{$u} = $sw->ua(user => $u, transport => 'tcp');
    my $contact = "sip:$u\@127.0.0.1:" . $ua->local_port
        . ";transport=tcp;pn-provider=apns;pn-param=TEAM123456.org.example.app;pn-prid=" . ($u eq 'waitlive' ? 'EEEE0005' : 'FFFF0006');
    $live{"$u-contact"} = $contact;
    is($ua->register(contact => $contact, expires => 3600)->{code}, 200, "$u registered, its connection kept open");
}
$caller->send_raw(request('INVITE', 'ringlive@example.com', 'call-ring'));
my $rung = $live{ringlive}->expect(qr/^INVITE /, 2);
ok($rung, 'default: the live connection rings at once');
for (1 .. 200) { last if apns_log() =~ m{"path": "/3/device/FFFF0006"}; sleep 0.05 }
like(apns_log(), qr{"path": "/3/device/FFFF0006"}, 'and the phone is pushed as well');
$live{ringlive}->answer($rung, 486, reason => 'Busy Here', tag => 'r1') if $rung;
$caller->send_raw(request('INVITE', 'waitlive@example.com', 'call-wait'));
for (1 .. 200) { last if apns_log() =~ m{"path": "/3/device/EEEE0005"}; sleep 0.05 }
like(apns_log(), qr{"path": "/3/device/EEEE0005"}, 'fork_live = false: pushed');
ok(!defined $live{waitlive}->expect(qr/^INVITE /, 0.5), 'and its old connection does not ring');
is($live{waitlive}->register(contact => $live{'waitlive-contact'}, expires => 3600)->{code}, 200,
   'it registers again');
my $woke = $live{waitlive}->expect(qr/^INVITE /, 2);
ok($woke, 'and the call comes after its re-REGISTER');
$live{waitlive}->answer($woke, 486, reason => 'Busy Here', tag => 'w1') if $woke;

ok($sw->alive, 'sipwake still running');
$sw->stop;
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error/, 'no errors or sanitizer reports');
done_testing;
