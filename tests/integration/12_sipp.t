#!/usr/bin/perl
# sipp against the real binary: push REGISTERs over UDP and TCP, a re-REGISTER from a new
# port with the same push params, and Digest authentication with good and bad passwords.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Sipwake;

my $open = Sipwake->new;
$open->start;
my %push = (user => 'bob', provider => 'apns', param => 'TEAM1.com.example.app.voip',
    prid => 'c0ffee' x 10, expires => 3600);

my ($rc, $msgs, $err) = $open->sipp('register_push', set => \%push);
is($rc, 0, 'sipp push REGISTER over UDP gets 200 with Feature-Caps') or diag $err;
like($msgs, qr/^Feature-Caps: \*;\+sip\.pns="apns";\+sip\.pnsreg="130"\r?$/m,
     'exact Feature-Caps on the wire (a VoIP-only app refreshes itself: +sip.pnsreg)');
like($open->sql_wait("select received from location where username='bob'", qr/^sip:/),
     qr{^sip:127\.0\.0\.1:\d+$}, 'binding stored with the UDP source');
my $first = $open->sql("select received from location where username='bob'");

($rc, $msgs, $err) = $open->sipp('register_push', set => \%push);
is($rc, 0, 'same push params from another sipp (new port)') or diag $err;
is($open->sql_wait("select count(*) from location where username='bob'", '1'), '1',
   'still one binding');
isnt($open->sql_wait("select received from location where username='bob'", qr/^(?!\Q$first\E$)/),
     $first, 'the binding moved to the new port');

($rc, $msgs, $err) = $open->sipp('register_push', transport => 't1',
    set => { %push, user => 'tina', provider => 'fcm', param => 'proj', prid => 'tok:APA91' });
is($rc, 0, 'sipp push REGISTER over TCP') or diag $err;
like($msgs, qr/^Feature-Caps: \*;\+sip\.pns="fcm"\r?$/m, 'fcm Feature-Caps over TCP');
like($open->sql_wait("select received from location where username='tina'", qr/tcp/),
     qr/;transport=tcp$/, 'received records the TCP flow');
($rc, $msgs, $err) = $open->sipp('register_query', set => { user => 'quinn' });
is($rc, 0, 'sipp capability query: 200 with a Feature-Caps per provider') or diag $err;
like($msgs, qr/Feature-Caps: \*;\+sip\.pns="apns"\r?\nFeature-Caps: \*;\+sip\.pns="fcm"/,
     'apns and fcm advertised');
($rc, $msgs, $err) = $open->sipp('register_reject',
    set => { user => 'wendy', provider => 'webpush', prid => 'https://push.example/s1', expires => 3600 });
is($rc, 0, 'sipp push REGISTER for a service not enabled is refused') or diag $err;
like($msgs, qr{^SIP/2\.0 555 Push Notification Service Not Supported\r?$}m, 'with 555');
unlike($msgs, qr/^Feature-Caps:/m, 'and no Feature-Caps');
($rc, $msgs, $err) = $open->sipp('register_reject',
    set => { user => 'wendy', provider => 'apns', prid => 'ab' x 32, expires => 300 });
is($rc, 0, 'sipp push REGISTER too short to push before expiry is refused') or diag $err;
like($msgs, qr{^SIP/2\.0 423 Interval Too Brief\r?\n(?:.*\n)*?Min-Expires: 600\r?$}m, 'with 423 and Min-Expires');
is($open->sql("select count(*) from location where username='wendy'"), '0', 'nothing stored');
($rc, $msgs, $err) = $open->sipp('register_unregister', set => { user => 'ursula' });
is($rc, 0, 'sipp register then unregister: the last 200 lists no contact') or diag $err;
is($open->sql_wait("select count(*) from location where username='ursula'", '0'), '0',
   'binding removed from the store');
ok($open->stop, 'clean shutdown');

# Digest: sipp takes the first challenge and knows MD5 only, so offer MD5 first here. Its
# digest uri is the server's address unless -auth_uri names the Request-URI, which sipwake
# requires (RFC 7616 §3.4.6).
my @AUTH_URI = ('-auth_uri', 'example.com');
my $auth = Sipwake->new(config => { auth => { enabled => 'yes', algorithms => 'MD5, SHA-256' } });
my ($urc, $out) = $auth->run_bin('user', 'add', 'alice@example.com', 'secret');
is($urc, 0, 'user add') or diag $out;
$auth->start;
($rc, $msgs, $err) = $auth->sipp('register_auth', set => { user => 'alice' },
    args => ['-au', 'alice', '-ap', 'secret', @AUTH_URI]);
is($rc, 0, '401 challenge, then 200 with the right password') or diag $err;
is($auth->sql_wait("select count(*) from location where username='alice'", '1'), '1',
   'binding stored after authentication');
($rc, $msgs, $err) = $auth->sipp('register_auth_wrong', set => { user => 'alice' },
    args => ['-au', 'alice', '-ap', 'wrong', @AUTH_URI]);
is($rc, 0, 'wrong password: 401 again') or diag $err;
($rc, $msgs, $err) = $auth->sipp('register_auth_wrong', set => { user => 'nobody' },
    args => ['-au', 'nobody', '-ap', 'x', @AUTH_URI]);
is($rc, 0, 'unknown user: 401 again') or diag $err;
is($auth->sql("select count(*) from location where username in ('nobody')"), '0',
   'no binding from a failed authentication');
like($auth->log, qr/wrong credentials for 'alice'/, 'failure logged');
ok($auth->stop, 'clean shutdown');
done_testing;
