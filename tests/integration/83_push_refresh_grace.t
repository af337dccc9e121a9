#!/usr/bin/perl
# RFC 8599 §5.5 refresh pushes with the APNs emulator: a push binding not refreshed
# push_refresh_margin before expiry gets a background push, then more with back-off while
# it lives, and none once the phone has registered again; a binding just registered is not
# pushed at once (the OpenSIPS bug). With refresh_lead = 0 the first push is the one at the
# margin (78_push_refresh_delivery.t tests the earlier first push). Grace (Flexisip issue #215): a binding that expired
# within [push] grace is still pushed for a call, which reaches the phone when it comes back;
# an unregistered one is not.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use JSON::PP ();
use Sipwake;

my $dir = tempdir('push-refresh-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir, 'apns') or BAIL_OUT('openssl failed');
my (undef, $aport) = Sipwake::start_apns_emulator($dir, '--strict', '--log', "$dir/apns.log",
    '--lifetime', '120');
ok($aport, 'APNs emulator listening');
sub apns_log { open my $f, '<', "$dir/apns.log" or return ''; local $/; <$f> // '' }
# when the emulator received each push to tok (its request lines' recv_ns, CLOCK_REALTIME
# as Perl's time), in seconds
sub push_times {
    my ($tok) = @_;
    return map { $_->{recv_ns} / 1e9 }
        grep { $_->{event} eq 'request' && ($_->{headers}{':path'} // '') eq "/3/device/$tok" }
        map { JSON::PP::decode_json($_) } grep { /^\{/ } split /\n/, apns_log();
}
sub pushes_to { my ($tok) = @_; my @l = grep { /"event": "push", "path": "\/3\/device\/$tok"/ } split /\n/, apns_log(); @l }

my $sw = Sipwake->new(config => {
    registrar => { min_expires => 1, push_min_expires => 6, push_refresh_margin => 5 },
    push => { apns_key_file => "$dir/apns.p8", apns_key_id => 'KEY1234567', apns_team_id => 'TEAM123456',
              apns_host => '127.0.0.1', apns_port => $aport, ca => "$dir/cert.pem",
              refresh_retry => 1, refresh_lead => 0, grace => 30, bucket_timeout => 5 },
});
$sw->start;
my $PN = 'pn-provider=apns;pn-param=TEAM123456.org.example.app.voip%26remote';
sub reg {
    my ($ua, $user, $tokens, $expires) = @_;
    return $ua->register(contact => "sip:$user\@127.0.0.1:" . $ua->local_port
        . ";transport=tcp;$PN;pn-prid=$tokens", expires => $expires)->{code};
}

# refresh pushes
my $t0 = time;
my $ua = $sw->ua(user => 'dozy', transport => 'tcp');
is(reg($ua, 'dozy', 'AAAA01:voip%26BBBB02:remote', 8), 200, 'a phone registered for 8 s');
my $long = $sw->ua(user => 'fresh', transport => 'tcp');
is(reg($long, 'fresh', 'CCCC03:voip%26DDDD04:remote', 600), 200, 'another for 600 s');
for (1 .. 150) { last if pushes_to('BBBB02') >= 3; sleep 0.1 }
my @p = pushes_to('BBBB02');
# when the emulator got the first push, not when this loop saw it: no fixed wait needed to
# show that nothing was pushed right after the REGISTER
my $first = ((push_times('BBBB02'))[0] // 0) - $t0;
ok($first >= 2.5, sprintf('no push right after the REGISTER (OpenSIPS pushes a second later): the first at %.1f s', $first));
ok(@p >= 3, scalar(@p) . ' refresh pushes before it expired: the phone did not come back');
like($p[0] // '', qr/"push_type": "background", "priority": "5"/, 'background pushes at priority 5, to the remote token');
like($p[0] // '', qr/content-available/, 'with content-available');
unlike($p[0] // '', qr/call-id|from-uri/, 'and nothing about a call');
ok($first >= 2.5 && $first < 6, sprintf('the first push_refresh_margin (5 s) before expiry (%.1f s)', $first));
is(scalar(pushes_to('DDDD04')), 0, 'the 600 s binding is not pushed');

# the phone comes back: no more refresh pushes
is(reg($ua, 'dozy', 'AAAA01:voip%26BBBB02:remote', 3600), 200, 'the phone registers again for an hour');
my $came_back = time; # checked below, once the grace binding's expiry shows seconds have passed

# grace
my $lapse = $sw->ua(user => 'lapse', transport => 'tcp');
is(reg($lapse, 'lapse', 'EEEE05:voip%26FFFF06:remote', 6), 200, 'a phone registered for 6 s');
ok($sw->disconnect($lapse), 'asleep: sipwake saw its connection close');
my $gone = $sw->ua(user => 'gone', transport => 'tcp');
is(reg($gone, 'gone', '999907:voip%26999908:remote', 60), 200, 'another registered');
is(reg($gone, 'gone', '999907:voip%26999908:remote', 0), 200, 'and unregistered');
ok($sw->wait_log(qr/binding sip:lapse\@.* expired/, 8), 'the first binding expired');
# refresh pushes go every refresh_retry (1 s): none received from a second after the phone
# came back until now (a push already on its way as it registered may land just after)
my $quiet = time - $came_back;
my @after = grep { $_ > $came_back + 1 } push_times('BBBB02');
ok($quiet >= 4 && !@after, sprintf('and the refresh pushes stop once the phone is back (none in %.1f s)', $quiet - 1))
    or diag 'pushes at ' . join(', ', map { sprintf '%.1f s', $_ - $came_back } @after);
is($sw->sql("SELECT count(*) FROM location WHERE username='lapse'"), '0', 'and left the store');

my $caller = $sw->ua(user => 'carl');
my $cp = $caller->local_port;
my $inv = "INVITE sip:lapse\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bKgr1\r\n"
    . "Max-Forwards: 70\r\nFrom: <sip:carl\@example.com>;tag=g1\r\nTo: <sip:lapse\@example.com>\r\n"
    . "Call-ID: grace-1\r\nCSeq: 1 INVITE\r\nContact: <sip:carl\@127.0.0.1:$cp>\r\nContent-Length: 0\r\n\r\n";
$caller->send_raw($inv);
like($caller->expect(qr/^SIP\/2\.0 100/, 3) // '', qr/^SIP\/2\.0 100/, 'a call for it: 100 Trying, not 404');
for (1 .. 200) { last if apns_log() =~ /"event": "push"[^\n]*grace-1/; sleep 0.05 }
like(apns_log(), qr{"path": "/3/device/EEEE05", "kid": "KEY1234567", "topic": "org.example.app.voip", "push_type": "voip"[^\n]*grace-1[^\n]*"status": 200},
     'the expired binding is pushed (VoIP, within grace)')
    or diag join("\n", grep { /grace|lapse|push/ } split /\n/, $sw->log);
my $back = $sw->ua(user => 'lapse', transport => 'tcp');
is(reg($back, 'lapse', 'EEEE05:voip%26FFFF06:remote', 3600), 200, 'the phone comes back');
my $got = $back->expect(qr/^INVITE /, 3);
ok($got, 'and the call reaches it');
$back->answer($got, 486, reason => 'Busy Here', tag => 'b1') if $got;
like($caller->expect(qr/^SIP\/2\.0 486/, 3) // '', qr/486/, 'its answer reaches the caller');

(my $inv2 = $inv) =~ s/lapse\@/gone\@/g;
$inv2 =~ s/grace-1/grace-2/g;
$inv2 =~ s/gr1/gr2/;
$caller->send_raw($inv2);
like($caller->expect(qr/^SIP\/2\.0 [4-6]\d\d.*grace-2/s, 3) // '', qr/^SIP\/2\.0 404/, 'an unregistered phone: 404');
unlike(apns_log(), qr/999907|999908/, 'and never pushed');

ok($sw->alive, 'sipwake still running');
$sw->stop;
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error/, 'no errors or sanitizer reports');
done_testing;
