#!/usr/bin/perl
# sipp through the proxy: a phone (sipp) registers with push params, then a caller (sipp)
# sends it a MESSAGE through sipwake; the phone answers 200, the caller gets it, and the
# MESSAGE the phone saw carried no pn-* params in its Request-URI. Then calls: one answered
# (ringing, 200, the ACK and BYE along sipwake's Record-Route), one to a busy phone (486,
# which sipwake ACKs to the phone itself).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Sipwake;

# pat is a UDP push binding heard lately: a call rings it directly and pushes it (the
# harness's push credentials reach no push service: the push fails and is retried).
my $sw = Sipwake->new;
$sw->start;
my $phone_port = Sipwake::free_port();

my ($rc, $msgs, $err) = $sw->sipp('register_push', port => $phone_port,
    set => { user => 'pat', provider => 'fcm', param => 'proj', prid => 'pattoken',
             expires => 3600 });
is($rc, 0, 'sipp phone registered with push params') or diag $err;

my $uas = $sw->sipp_bg('uas_message', port => $phone_port, server_side => 1);
ok(Sipwake::wait_listening($phone_port, 'udp'), 'the sipp phone listens');
($rc, $msgs, $err) = $sw->sipp('uac_message', set => { callee => 'pat' });
is($rc, 0, 'sipp caller: MESSAGE relayed, 200 back') or diag $err;
my ($urc, $umsgs, $uerr) = $sw->sipp_wait($uas);
is($urc, 0, 'sipp phone received the MESSAGE and answered') or diag $uerr;
like($umsgs, qr/^MESSAGE sip:pat\@127\.0\.0\.1:$phone_port;transport=udp SIP\/2\.0/mi,
     'the phone saw its contact as Request-URI');
unlike($umsgs, qr/^MESSAGE [^\r\n]*pn-/m, 'without pn-* params');
like($umsgs, qr/^Via: SIP\/2\.0\/UDP 127\.0\.0\.1:\d+;branch=z9hG4bKsw/m, "sipwake's Via on top");

($rc, $msgs, $err) = $sw->sipp('uac_message', set => { callee => 'nobody' },
    args => ['-default_behaviors', 'all']);
like($msgs, qr{^SIP/2\.0 404 Not Found}m, 'unregistered callee: 404 from the default policy');
# A call: sipp caller -> sipwake -> sipp phone, and back along the Record-Route.
$uas = $sw->sipp_bg('uas_call', port => $phone_port, server_side => 1);
ok(Sipwake::wait_listening($phone_port, 'udp'), 'the sipp phone listens');
($rc, $msgs, $err) = $sw->sipp('uac_call', set => { callee => 'pat' });
is($rc, 0, 'sipp caller: call set up, ACKed and hung up through sipwake') or diag $err;
($urc, $umsgs, $uerr) = $sw->sipp_wait($uas);
is($urc, 0, 'sipp phone rang, answered, got the ACK and the BYE') or diag $uerr;
like($umsgs, qr/^Record-Route: <sip:[0-9a-f]+\@127\.0\.0\.1:\d+;lr;ftag=/m, 'the INVITE carried our Record-Route');
like($umsgs, qr/^BYE sip:phone\@127\.0\.0\.1:$phone_port SIP\/2\.0/m, 'the BYE reached the phone at its Contact');
like($msgs, qr/^Route: <sip:[0-9a-f]+\@/m, 'the caller routed its ACK and BYE by the Record-Route');

# A busy phone: its 486 reaches the caller at once (the phone answered where it was rung, so
# nothing waits for it to register again), sipwake ACKs it to the phone.
$uas = $sw->sipp_bg('uas_busy', port => $phone_port, server_side => 1);
ok(Sipwake::wait_listening($phone_port, 'udp'), 'the sipp phone listens');
($rc, $msgs, $err) = $sw->sipp('uac_call_busy', set => { callee => 'pat' });
is($rc, 0, 'sipp caller got the 486') or diag $err;
($urc, $umsgs, $uerr) = $sw->sipp_wait($uas);
is($urc, 0, 'the phone got an ACK for its 486 from sipwake') or diag $uerr;

ok($sw->stop, 'clean shutdown');
done_testing;
