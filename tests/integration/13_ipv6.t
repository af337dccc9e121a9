#!/usr/bin/perl
# IPv6 listeners ([::1]): a REGISTER over UDP and TCP is answered, and the binding records
# the IPv6 source in RFC 3261 form ("sip:[::1]:port").
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use IO::Socket::IP;
use IO::Select;
use Sipwake;

my $probe = IO::Socket::IP->new(Proto => 'udp', LocalHost => '::1', LocalPort => 0);
plan skip_all => 'no IPv6 loopback on this machine' unless $probe;
close $probe;

my $sw = Sipwake->new;
my $p = $sw->port;
$sw->{config} = { sip => { listen => "udp:[::1]:$p, tcp:[::1]:$p" } };
$sw->write_config;
$sw->start;
like($sw->log, qr/listening on udp:\[::1\]:$p/, 'listening on [::1] over UDP');

sub register {
    my ($sock, $tr, $user) = @_;
    my $lp = $sock->sockport;
    my $msg = "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/$tr [::1]:$lp;rport;branch=z9hG4bK6$user\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:$user\@example.com>;tag=1\r\nTo: <sip:$user\@example.com>\r\n"
        . "Call-ID: v6-$user\r\nCSeq: 1 REGISTER\r\n"
        . "Contact: <sip:$user\@[::1]:$lp" . ($tr eq 'TCP' ? ';transport=tcp' : '')
        . ";pn-provider=fcm;pn-param=proj;pn-prid=t-$user>\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n";
    $sock->syswrite($msg);
    return '' unless IO::Select->new($sock)->can_read(3);
    $sock->sysread(my $r, 65536);
    return $r;
}

my $u = IO::Socket::IP->new(Proto => 'udp', PeerHost => '::1', PeerPort => $p) or die $!;
my $r = register($u, 'UDP', 'six');
like($r, qr{^SIP/2\.0 200 OK}, 'UDP over IPv6: 200');
like($r, qr/received=::1|received=\[::1\]/, 'received names the IPv6 source');
like($r, qr/^Feature-Caps: \*;\+sip\.pns="fcm"\r$/m, 'push binding over IPv6');
like($sw->sql_wait("select received from location where username='six'", qr/sip/),
     qr/^sip:\[::1\]:\d+$/, 'stored source in brackets');
my $t = IO::Socket::IP->new(Proto => 'tcp', PeerHost => '::1', PeerPort => $p) or die $!;
$r = register($t, 'TCP', 'sixt');
like($r, qr{^SIP/2\.0 200 OK}, 'TCP over IPv6: 200');
like($sw->sql_wait("select received from location where username='sixt'", qr/sip/),
     qr/^sip:\[::1\]:\d+;transport=tcp$/, 'stored TCP flow source');
ok($sw->stop, 'clean shutdown');
done_testing;
