#!/usr/bin/perl
# liblinphone wraps its IMDN delivery/read reports and is-composing notices in message/cpim
# (RFC 3862; RFC 5438 §7.1). sipwake looks at the wrapped Content-Type (after the CPIM
# message headers and the blank line): such a MESSAGE wakes no phone (no visible "new
# message" alert) and is not stored offline, like the bare ones; a chat message in CPIM is
# pushed and stored as before.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Sipwake;

my $dir = tempdir('push-cpim-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir, 'apns') or BAIL_OUT('openssl failed');
my (undef, $aport) = Sipwake::start_apns_emulator($dir, '--log', "$dir/apns.log", '--lifetime', '120');
ok($aport, 'APNs emulator listening');
sub apns_log { open my $f, '<', "$dir/apns.log" or return ''; local $/; <$f> // '' }

my $sw = Sipwake->new(config => { offline => { enabled => 'yes' },
    push => { apns_key_file => "$dir/apns.p8", apns_key_id => 'KEY1234567', apns_team_id => 'TEAM123456',
              apns_host => '127.0.0.1', apns_port => $aport, ca => "$dir/cert.pem", bucket_timeout_other => 1 } });
$sw->start;
my $ua = $sw->ua(user => 'ios', transport => 'tcp');
my $r = $ua->register(contact => "sip:ios\@127.0.0.1:" . $ua->local_port
    . ";transport=tcp;pn-provider=apns;pn-param=TEAM123456.org.example.app;pn-prid=BBBB0002", expires => 3600);
is($r->{code}, 200, 'an iPhone registers with push parameters');
ok($sw->disconnect($ua), 'asleep: sipwake saw its connection close');

my $c = $sw->ua(user => 'bob');
my $p = $c->local_port;
my $imdn = '<?xml version="1.0" encoding="UTF-8"?><imdn xmlns="urn:ietf:params:xml:ns:imdn"><message-id>x</message-id>'
    . '<datetime>2026-12-06T00:00:00Z</datetime><delivery-notification><status><delivered/></status></delivery-notification></imdn>';
my $isc = '<?xml version="1.0" encoding="UTF-8"?><isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing"><state>active</state></isComposing>';
sub cpim {
    my ($t, $b) = @_;
    "From: <sip:bob\@example.com>\r\nTo: <sip:ios\@example.com>\r\nDateTime: 2026-12-06T00:00:00Z\r\n"
        . "NS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: m1\r\n\r\nContent-Type: $t\r\n"
        . "Content-Length: " . length($b) . "\r\n\r\n$b";
}
sub message {
    my ($callid, $body) = @_;
    $c->send_raw("MESSAGE sip:ios\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$p;rport;branch=z9hG4bK$callid\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:bob\@example.com>;tag=$callid\r\nTo: <sip:ios\@example.com>\r\n"
        . "Call-ID: $callid\r\nCSeq: 1 MESSAGE\r\nContent-Type: Message/CPIM\r\nContent-Length: " . length($body)
        . "\r\n\r\n$body");
    my $fin = $c->expect(qr/^SIP\/2\.0 [2-6]\d\d .*Call-ID: $callid\r/s, 6) // '';
    return $fin =~ /^SIP\/2\.0 (\d+)/ ? $1 : 0;
}

for my $case (['cpim-imdn', 'message/imdn+xml', $imdn, 'an IMDN delivery report'],
              ['cpim-isc', 'application/im-iscomposing+xml; charset=utf-8', $isc, 'an is-composing notice']) {
    my ($id, $type, $body, $what) = @$case;
    my $code = message($id, cpim($type, $body));
    isnt($code, 202, "$what in CPIM is not stored offline (answer $code)");
    ok($sw->wait_log(qr/MESSAGE $id: no push to ios\@example\.com: a typing notice or delivery report wakes no phone/, 10),
       "$what in CPIM wakes no phone");
    unlike(apns_log(), qr/$id/, "$what in CPIM: nothing sent to APNs");
}

is(message('cpim-chat', cpim('text/plain;charset=UTF-8', 'hello')), 202, 'a chat message in CPIM is stored (202)');
my $log = '';
for (1 .. 200) { $log = apns_log(); last if $log =~ /cpim-chat/; sleep 0.05 }
like($log, qr/"apns-push-type": "alert"[^\n]*cpim-chat/, 'and pushed as an alert');

ok($sw->alive, 'sipwake still running');
$sw->stop;
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error/, 'no errors or sanitizer reports');
done_testing;
