#!/usr/bin/perl
# No open relay (RFC 3261 §16.4, issue 12): an unauthenticated MESSAGE for a user with three
# devices, carrying a Route to an "attacker" address past sipwake, is delivered to the three
# devices by its Request-URI; the attacker's socket receives nothing (no packet, so none of
# the devices' addresses), and the foreign Route entry is not passed on. The same with a To
# tag (a forged in-dialog request) and with sipwake's own Route entry in front. Whether a
# policy may let a trusted sender name the next hop (follow_route) is in 66_route_decisions.t.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use IO::Socket::INET;
use IO::Select;
use Sipwake;

my $attacker = IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.5', LocalPort => 0)
    or plan skip_all => "no 127.0.0.5: $!";
my $ap = $attacker->sockport;

my $sw = Sipwake->new;
$sw->start;
my $port = $sw->port;

my @dev = map { $sw->ua(user => 'carol') } 1 .. 3;
for my $i (0 .. 2) {
    my $d = $dev[$i];
    my $c = "sip:carol\@127.0.0.1:" . $d->local_port
        . ($i == 0 ? ";pn-provider=fcm;pn-param=proj;pn-prid=carol-relay-token-0001" : '');
    is($d->register(contact => $c, expires => 3600)->{code}, 200, "carol's device $i registered");
}

my $mallory = $sw->ua(user => 'mallory');
my $mp = $mallory->local_port;
my $n = 0;
sub message {
    my (%o) = @_;
    $n++;
    return "MESSAGE sip:carol\@example.com SIP/2.0\r\n"
        . "Via: SIP/2.0/UDP 127.0.0.1:$mp;rport;branch=z9hG4bKrelay$n$$\r\n"
        . "Max-Forwards: 70\r\n" . $o{routes}
        . "From: <sip:mallory\@example.net>;tag=m$n\r\n"
        . "To: <sip:carol\@example.com>" . ($o{to_tag} ? ";tag=$o{to_tag}" : '') . "\r\n"
        . "Call-ID: relay-$n-$$\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\n"
        . "Content-Length: 5\r\n\r\nhello";
}

sub attempt {
    my ($what, %o) = @_;
    $mallory->send_raw(message(%o));
    for my $i (0 .. 2) {
        my $got = $dev[$i]->expect(qr/^MESSAGE /, 3);
        ok($got, "$what: device $i got the MESSAGE");
        unlike($got // '', qr/^Route:/mi, "$what: device $i: no Route header passed on");
        like($got // '', qr{^MESSAGE sip:carol\@127\.0\.0\.1:\d+ SIP/2\.0\r\n},
            "$what: device $i: the Request-URI is its own binding");
        $dev[$i]->answer($got, 200, reason => 'OK') if $got;
    }
    like($mallory->expect(qr/^SIP\/2\.0 [2-6]\d\d /, 3) // '', qr/^SIP\/2\.0 200 /,
        "$what: the sender got the devices' 200");
    # the devices got theirs: a packet to the attacker would have been sent by now
    my $leak;
    $attacker->recv($leak, 70000) if IO::Select->new($attacker)->can_read(0.5);
    is($leak, undef, "$what: the attacker's address received nothing");
}

attempt('a foreign Route', routes => "Route: <sip:127.0.0.5:$ap;lr>\r\n");
attempt("sipwake's Route, then a foreign one",
    routes => "Route: <sip:127.0.0.1:$port;lr>\r\nRoute: <sip:127.0.0.5:$ap;lr>\r\n");
attempt('a foreign Route with a To tag', routes => "Route: <sip:127.0.0.5:$ap;lr>\r\n",
    to_tag => 'forged');
ok($sw->wait_log(qr/Route past sipwake \(sip:127\.0\.0\.5:$ap;lr\) ignored/), 'each is logged');

ok($sw->stop, 'clean shutdown');
done_testing;
