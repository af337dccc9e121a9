#!/usr/bin/perl
# A burst of pushes over the HTTP/2 pool while APNs sends GOAWAY every few pushes: every
# push still reaches APNs once, none lost (the refused streams go again on a new
# connection). A push answered 503 once is sent again after Retry-After and the phone still
# gets its MESSAGE.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Sipwake;

my $N = 30;
my $dir = tempdir('push-burst-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir, 'apns') or BAIL_OUT('openssl failed');
open my $sf, '>', "$dir/script.json" or die;
print $sf '{"BBBB0999": {"status": 503, "reason": "ServiceUnavailable", "retry_after": 1, "times": 1}}';
close $sf;
my (undef, $aport) = Sipwake::start_apns_emulator($dir, '--script', "$dir/script.json",
    '--goaway-after', 7, '--log', "$dir/apns.log", '--lifetime', '120');
ok($aport, 'APNs emulator listening, sending GOAWAY after every 7 requests on a connection');
sub apns_log { open my $f, '<', "$dir/apns.log" or return ''; local $/; <$f> // '' }

my $sw = Sipwake->new(config => {
    push => { apns_key_file => "$dir/apns.p8", apns_key_id => 'KEY1234567', apns_team_id => 'TEAM123456',
              apns_host => '127.0.0.1', apns_port => $aport, ca => "$dir/cert.pem", bucket_timeout_other => 4 },
});
$sw->start;
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
sub message {
    my ($to, $callid) = @_;
    return "MESSAGE sip:$to\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bK$callid\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:carl\@example.com>;tag=$callid\r\nTo: <sip:$to\@example.com>\r\n"
        . "Call-ID: $callid\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi";
}
$caller->send_raw(message("p$_", "burst-$_")) for 1 .. $N;
my %ok;
for (1 .. 100) {
    %ok = ();
    for (split /\n/, apns_log()) {
        $ok{$1}++ if /"event": "push", "path": "\/3\/device\/(AAAA\d+)".*"status": 200/;
    }
    last if keys %ok == $N;
    sleep 0.05;
}
is(scalar(keys %ok), $N, "all $N pushes were accepted");
is(scalar(grep { $_ != 1 } values %ok), 0, 'each exactly once');
my $gone_again = () = $sw->log =~ /did not process stream \d+ \(GOAWAY\): it goes again/g;
my $goaways = () = $sw->log =~ /sent GOAWAY/g;
ok($goaways >= 2 && $gone_again >= 1,
   "$goaways GOAWAYs mid-burst; $gone_again streams APNs had not processed went again on a new connection");

# 503 once, then 200
my $ua = $sw->ua(user => 'busy', transport => 'tcp');
my $PN = 'pn-provider=apns;pn-param=TEAM123456.org.example.app;pn-prid=BBBB0999';
$ua->register(contact => "sip:busy\@127.0.0.1:" . $ua->local_port . ";transport=tcp;$PN", expires => 3600);
ok($sw->disconnect($ua), 'asleep: sipwake saw its connection close');
my $t0 = time;
$caller->send_raw(message('busy', 'busy-1'));
my $log = '';
for (1 .. 200) { $log = apns_log(); last if $log =~ m{"path": "/3/device/BBBB0999".*"status": 200}; sleep 0.05 }
like($log, qr{"path": "/3/device/BBBB0999"[^\n]*"status": 503}, 'APNs answered 503 first');
like($log, qr{"path": "/3/device/BBBB0999"[^\n]*"status": 200}, 'the push went again and was accepted');
ok(time - $t0 >= 1, 'after Retry-After (1 s)');
my $back = $sw->ua(user => 'busy', transport => 'tcp');
$back->register(contact => "sip:busy\@127.0.0.1:" . $back->local_port . ";transport=tcp;$PN", expires => 3600);
my $m = $back->expect(qr/^MESSAGE /, 3);
ok($m, 'the phone came back and got the MESSAGE');
$back->answer($m, 200, reason => 'OK') if $m;
like($caller->expect(qr/^SIP\/2\.0 200 .*Call-ID: busy-1/s, 3) // '', qr/200/, 'the sender got the 200');

ok($sw->alive, 'sipwake still running');
$sw->stop;
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error/, 'no errors or sanitizer reports');
done_testing;
