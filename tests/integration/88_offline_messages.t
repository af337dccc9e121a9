#!/usr/bin/perl
# Offline MESSAGE storage: MESSAGEs for a phone that sleeps are committed to the store before
# the sender's 202, the phone is pushed, and when it registers again it gets them one at a
# time, in order, each carrying the original From, To, Content-Type and body and a Date.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Sipwake;

my $dir = tempdir('offline-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir, 'apns') or BAIL_OUT('openssl failed');
my (undef, $aport) = Sipwake::start_apns_emulator($dir, '--log', "$dir/apns.log", '--lifetime', '150');
ok($aport, 'APNs emulator listening');
sub apns_log { open my $f, '<', "$dir/apns.log" or return ''; local $/; <$f> // '' }

my $sw = Sipwake->new(config => {
    push => { apns_key_file => "$dir/apns.p8", apns_key_id => 'KEY1234567', apns_team_id => 'TEAM123456',
              apns_host => '127.0.0.1', apns_port => $aport, ca => "$dir/cert.pem", bucket_timeout_other => 2 },
    offline => { enabled => 'yes', max_per_aor => 60, max_size => 200 },
});
$sw->start;
my $PN = 'pn-provider=apns;pn-param=TEAM123456.org.example.app;pn-prid';
my $sender = $sw->ua(user => 'sam', transport => 'tcp');
my $sp = $sender->local_port;
my $n = 0;
sub message {
    my ($to, %o) = @_;
    my $callid = $o{call_id} // 'off-' . ++$n;
    my $body = $o{body} // "message $n";
    my $ct = $o{type} // 'text/plain';
    return "MESSAGE sip:$to SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:$sp;rport;branch=z9hG4bK$callid-" . ++$n . "\r\n"
        . "Max-Forwards: 70\r\nFrom: \"Sam\" <sip:sam\@example.com>;tag=s$callid\r\nTo: <sip:$to>\r\n"
        . "Call-ID: $callid\r\nCSeq: 7 MESSAGE\r\nContent-Type: $ct\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
}
sub send_message { my $r = $sender->request(message(@_), 5); return $r }

# ---- 50 MESSAGEs for a phone asleep (sipp), delivered in order after it registers again
my $skipped0 = $sw->metric('sipwake_offline_reads_skipped') // 0;
my ($rc, $msgs, $err) = $sw->sipp('register_push', set => { user => 'ivy', provider => 'apns',
    param => 'TEAM123456.org.example.app', prid => 'AAAA0001', expires => 3600 });
is($rc, 0, 'a sipp phone registered with push params (UDP), then slept') or diag $err;
is($sw->metric('sipwake_offline_reads_skipped'), $skipped0 + 1,
   'nothing stored anywhere: its REGISTER did not look into the store (offline:reads_skipped)');
my @codes;
for my $i (1 .. 50) {
    my $r = send_message('ivy@example.com', call_id => "ivy-$i", body => "hello $i");
    push @codes, $r->{code} // 0;
}
is(scalar(grep { $_ == 202 } @codes), 50, 'all 50 answered 202 Accepted') or diag "@codes";
is($sw->sql("SELECT count(*) FROM sipwake_messages WHERE aor='ivy\@example.com'"), '50',
   'committed to the store before the 202s');
my @pushes = apns_log() =~ m{"event": "push", "path": "/3/device/AAAA0001"[^\n]*"collapse_id": "im:sip:sam\@example.com"}g;
ok(@pushes >= 1, scalar(@pushes) . ' alert pushes, collapsed per sender');
my $port = Sipwake::free_port();
($rc, $msgs, $err) = $sw->sipp('register_push', port => $port, set => { user => 'ivy', provider => 'apns',
    param => 'TEAM123456.org.example.app', prid => 'AAAA0001', expires => 3600 });
is($rc, 0, 'the phone registered again from a new port');
my ($urc, $umsgs, $uerr) = $sw->sipp_wait($sw->sipp_bg('uas_message', port => $port, server_side => 1,
    args => ['-m', 50]));
is($urc, 0, 'and answered 50 MESSAGEs there') or diag $uerr;
my @bodies = $umsgs =~ /^(hello \d+)$/mg;
my @unique; my %seen; for (@bodies) { push @unique, $_ unless $seen{$_}++ }
is_deeply(\@unique, [map { "hello $_" } 1 .. 50], 'in the order they were sent');
like($umsgs, qr/^Date: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\r?$/m, 'with a Date');
like($umsgs, qr/^From: "Sam" <sip:sam\@example\.com>;tag=sivy-1\r?$/m, 'the original From');
like($umsgs, qr/^Content-Type: text\/plain\r?$/m, 'and Content-Type');
is($sw->sql_wait("SELECT count(*) FROM sipwake_messages WHERE aor='ivy\@example.com'", '0'), '0',
   'delivered: gone from the store');
is($sw->metric('sipwake_offline_reads_skipped'), $skipped0 + 1, 'the REGISTER with messages stored read them');

# ---- two devices: one online, one asleep; each gets every message once
my $online = $sw->ua(user => 'duo', transport => 'tcp');
is($online->register(contact => "sip:duo\@127.0.0.1:" . $online->local_port . ";transport=tcp",
    contact_params => ';+sip.instance="<urn:uuid:00000000-0000-0000-0000-00000000000a>"', expires => 3600)->{code},
   200, 'device A online (TCP)');
my $sleepy = $sw->ua(user => 'duo', transport => 'tcp');
my $B = ';+sip.instance="<urn:uuid:00000000-0000-0000-0000-00000000000b>"';
is($sleepy->register(contact => "sip:duo\@127.0.0.1:" . $sleepy->local_port . ";transport=tcp;$PN=BBBB0002",
    contact_params => $B, expires => 3600)->{code}, 200, 'device B with push, then asleep');
ok($sw->disconnect($sleepy), 'device B asleep: sipwake saw its connection close');
my @got_a;
for my $i (1 .. 5) {
    $sender->send_raw(message('duo@example.com', call_id => "duo-$i", body => "duo $i"));
    my $m = $online->expect(qr/^MESSAGE /, 3);
    push @got_a, ($m // '') =~ /(duo \d)$/;
    $online->answer($m, 200, reason => 'OK') if $m;
    my $r = Sipwake::UA::parse_response($sender->expect(qr/^SIP\/2\.0 \d+ .*Call-ID: duo-$i\r/s, 3));
    is($r->{code}, 202, "message $i: 202 (stored for B)");
}
is_deeply(\@got_a, [map { "duo $_" } 1 .. 5], 'A got all five at once');
my $b2 = $sw->ua(user => 'duo', transport => 'tcp');
$b2->register(contact => "sip:duo\@127.0.0.1:" . $b2->local_port . ";transport=tcp;$PN=BBBB0002",
    contact_params => $B, expires => 3600);
my @got_b;
for (1 .. 5) {
    my $m = $b2->expect(qr/^MESSAGE /, 3) or last;
    push @got_b, $m =~ /(duo \d)$/;
    $b2->answer($m, 200, reason => 'OK');
}
is_deeply(\@got_b, [map { "duo $_" } 1 .. 5], 'B got all five, in order, when it came back');
ok(!defined $b2->expect(qr/^MESSAGE /, 0.5), 'B no more');
ok(!defined $online->expect(qr/^MESSAGE /, 0.3), 'A nothing twice');
is($sw->sql_wait("SELECT count(*) FROM sipwake_messages WHERE aor='duo\@example.com'", '0'), '0',
   'every device has them: gone from the store');

# ---- a new device gets what is still stored; a failed delivery is tried again
my $old = $sw->ua(user => 'neo', transport => 'tcp');
$old->register(contact => "sip:neo\@127.0.0.1:" . $old->local_port . ";transport=tcp;$PN=DDDD0004",
    contact_params => ';+sip.instance="<urn:uuid:00000000-0000-0000-0000-0000000000d1>"', expires => 3600);
ok($sw->disconnect($old), 'asleep');
is(send_message('neo@example.com', call_id => 'neo-1', body => 'for every device')->{code}, 202,
   'a MESSAGE stored for the only device, asleep');
my $fresh = $sw->ua(user => 'neo', transport => 'tcp');
$fresh->register(contact => "sip:neo\@127.0.0.1:" . $fresh->local_port . ";transport=tcp",
    contact_params => ';+sip.instance="<urn:uuid:00000000-0000-0000-0000-0000000000d2>"', expires => 3600);
my $m = $fresh->expect(qr/^MESSAGE /, 3);
like($m // '', qr/for every device$/, 'a device registering for the first time gets it too');
my $t0 = time;
$fresh->answer($m, 500, reason => 'Server Internal Error') if $m;
$m = $fresh->expect(qr/^MESSAGE /, 4);
ok($m && time - $t0 >= 0.9, sprintf('answered 500, it comes again after a back-off (%.1f s)', time - $t0));
$fresh->answer($m, 200, reason => 'OK') if $m;
ok(!defined $fresh->expect(qr/^MESSAGE /, 1.5), 'answered 200: not again');
is($sw->sql("SELECT count(*) FROM sipwake_messages WHERE aor='neo\@example.com'"), '1',
   'still stored for the device it was meant for');

# ---- duplicates, quota, size, typing notices
my $z = $sw->ua(user => 'zed', transport => 'tcp');
$z->register(contact => "sip:zed\@127.0.0.1:" . $z->local_port . ";transport=tcp;$PN=CCCC0003", expires => 3600);
ok($sw->disconnect($z), 'asleep');
is(send_message('zed@example.com', call_id => 'dup-1', body => 'once')->{code}, 202, 'stored');
is(send_message('zed@example.com', call_id => 'dup-1', body => 'once')->{code}, 202, 'the same one again: 202');
is($sw->sql("SELECT count(*) FROM sipwake_messages WHERE call_id='dup-1'"), '1', 'stored once');
my $r = send_message('zed@example.com', call_id => 'big-1', body => 'x' x 300);
is($r->{code}, 513, 'over max_size: 513 Message Too Large');
is($sw->sql("SELECT count(*) FROM sipwake_messages WHERE call_id='big-1'"), '0', 'nothing stored');
$r = send_message('zed@example.com', call_id => 'typing-1', type => 'application/im-iscomposing+xml', body => '<x/>');
is($r->{code}, 480, 'a typing notice is not stored: 480 after the bucket timer');
is($sw->sql("SELECT count(*) FROM sipwake_messages WHERE call_id='typing-1'"), '0', 'not in the store');
for my $i (2 .. 60) { send_message('zed@example.com', call_id => "q-$i", body => "q $i") }
$r = send_message('zed@example.com', call_id => 'q-over', body => 'one too many');
is($r->{code}, 486, 'past max_per_aor (60): 486 Busy Here');
like($r->{raw} // '', qr/Warning: 399 sipwake/, 'saying why');

# the queue is visible: per AOR and device, and as metrics
my ($crc, $cout) = $sw->run_bin('messages', 'zed@example.com');
like($cout, qr/^zed\@example\.com contact:\d+ pending=60 oldest=\d+s$/m, 'sipwake messages: pending per device, oldest age')
    or diag $cout;
like($cout, qr/^60 pending deliveries$/m, 'and the total');
kill 'USR1', $sw->{pid};
ok($sw->wait_log(qr/metrics: sipwake_offline_pending_messages 61$/m, 10), 'offline:pending_messages gauge (zed 60, neo 1)');
ok($sw->wait_log(qr/metrics: sipwake_offline_stored 1\d\d$/m, 10), 'offline:stored counter');

ok($sw->alive, 'sipwake still running');
$sw->stop;
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error/, 'no errors or sanitizer reports');
done_testing;
