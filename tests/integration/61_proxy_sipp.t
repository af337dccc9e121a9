#!/usr/bin/perl
# sipp through the proxy: a phone (sipp) registers with push params, then a caller (sipp)
# sends it a MESSAGE through sipwake; the phone answers 200, the caller gets it, and the
# MESSAGE the phone saw carried no pn-* params in its Request-URI.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Sipwake;

my $sw = Sipwake->new;
$sw->start;
my $phone_port = Sipwake::free_port();

my ($rc, $msgs, $err) = $sw->sipp('register_push', port => $phone_port,
    set => { user => 'pat', provider => 'fcm', param => 'proj-9', prid => 'pattoken',
             expires => 3600 });
is($rc, 0, 'sipp phone registered with push params') or diag $err;

my $uas = $sw->sipp_bg('uas_message', port => $phone_port, server_side => 1);
select(undef, undef, undef, 0.3);
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
ok($sw->stop, 'clean shutdown');
done_testing;
