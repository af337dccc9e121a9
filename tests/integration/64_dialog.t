#!/usr/bin/perl
# Dialogs through sipwake (RFC 3261 §16.6 step 4, §16.4, §16.11; RFC 5626 §5.2; RFC 5658):
# the INVITE gets sipwake's Record-Route with a flow token; the ACK for the 2xx, a BYE from
# the callee and a re-INVITE from the caller come back by that Route and go down the other
# side's flow — to a callee whose Contact names an address it cannot be reached at (NAT);
# a caller on UDP and a callee on TCP get a double Record-Route; a forged token is not
# taken for ours; a request for a closed TCP flow gets 430; a UDP caller to a TLS callee and
# a TLS caller to a UDP callee (double Record-Route, in-dialog BYE both ways); a malformed
# Route is answered, not forwarded.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Sipwake;

my $sw = Sipwake->new;
$sw->start;
my $port = $sw->port;

# bob is "behind NAT": his Contact names 192.0.2.1, he is really at 127.0.0.1:<port>.
my $bob = $sw->ua(user => 'bob');
my $r = $bob->register(contact => 'sip:bob@192.0.2.1:5060;pn-provider=fcm;pn-param=proj;pn-prid=bobdev', expires => 3600);
is($r->{code}, 200, 'bob registered');
my $alice = $sw->ua(user => 'alice');
my $al = $alice->local_port;

# The values of every header line called name in message m.
sub hdrs { my ($m, $name) = @_; my ($h) = split /\r\n\r\n/, $m // '', 2; return ($h =~ /^$name:\s*([^\r]*)/mgi) }

# An in-dialog request: route set and remote target given.
sub indialog {
    my ($method, $target, $routes, $via_port, $from, $to, $callid, $cseq, $branch, $proto) = @_;
    $proto //= 'UDP';
    return "$method $target SIP/2.0\r\nVia: SIP/2.0/$proto 127.0.0.1:$via_port;rport;branch=$branch\r\n"
        . join('', map { "Route: $_\r\n" } @$routes)
        . "Max-Forwards: 70\r\nFrom: $from\r\nTo: $to\r\nCall-ID: $callid\r\nCSeq: $cseq $method\r\n"
        . "Content-Length: 0\r\n\r\n";
}

$alice->send_raw("INVITE sip:bob\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$al;rport;branch=z9hG4bKd1\r\n"
    . "Max-Forwards: 70\r\nFrom: <sip:alice\@example.com>;tag=al1\r\nTo: <sip:bob\@example.com>\r\n"
    . "Call-ID: dlg1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice\@127.0.0.1:$al>\r\nContent-Length: 0\r\n\r\n");
my $inv = $bob->expect(qr/^INVITE /);
ok($inv, 'bob got the INVITE at his real address');
my @rr = hdrs($inv, 'Record-Route');
is(scalar @rr, 1, 'one Record-Route (same transport both sides)');
like($rr[0] // '', qr{^<sip:[0-9a-f]{136}\@127\.0\.0\.1:$port;lr;ftag=al1>$}, 'sipwake\'s, with a flow token and the caller\'s tag');
$bob->answer($inv, 200, tag => 'bb1', contact => 'sip:bob@192.0.2.1:5060');
my $ok = $alice->expect(qr/^SIP\/2\.0 200/);
ok($ok, 'alice got the 200');
my @rr_a = hdrs($ok, 'Record-Route');
is_deeply(\@rr_a, \@rr, 'with the Record-Route');

# The caller's ACK and re-INVITE follow the route set to bob's real address.
my ($from_a, $to_a) = ('<sip:alice@example.com>;tag=al1', '<sip:bob@example.com>;tag=bb1');
$alice->send_raw(indialog('ACK', 'sip:bob@192.0.2.1:5060', \@rr_a, $al, $from_a, $to_a, 'dlg1', 1, 'z9hG4bKd1a'));
my $ack = $bob->expect(qr/^ACK /);
ok($ack, 'the ACK for the 2xx reached bob behind his NAT');
like($ack // '', qr{\AACK sip:bob\@192\.0\.2\.1:5060 SIP/2\.0\r\nVia: SIP/2\.0/UDP 127\.0\.0\.1:$port;branch=z9hG4bKsw}, 'Request-URI kept, our Via on top');
is(scalar(() = hdrs($ack, 'Route')), 0, 'our Route entry removed');
like($ack // '', qr/^Max-Forwards: 69\r$/m, 'Max-Forwards decremented');

$alice->send_raw(indialog('INVITE', 'sip:bob@192.0.2.1:5060', \@rr_a, $al, $from_a, $to_a, 'dlg1', 2, 'z9hG4bKd1r'));
my $re = $bob->expect(qr/^INVITE /);
ok($re, 're-INVITE reached bob');
is(scalar(() = hdrs($re, 'Record-Route')), 0, 'no new Record-Route in the dialog');
ok($alice->expect(qr/^SIP\/2\.0 100/), 'the caller got 100 Trying');
$bob->answer($re, 200, tag => 'bb1');
ok($alice->expect(qr/^SIP\/2\.0 200[^\r]*\r\n(?:[^\r]*\r\n)*CSeq: 2 INVITE/), 'and the 200 of the re-INVITE');

# The callee's BYE goes back down the caller's flow, whatever her Contact.
$bob->send_raw(indialog('BYE', 'sip:alice@192.0.2.99:5999', [reverse @rr], $bob->local_port,
    $to_a, $from_a, 'dlg1', 1, 'z9hG4bKd1b'));
my $bye = $alice->expect(qr/^BYE /);
ok($bye, "bob's BYE reached alice at the address her INVITE came from");
like($bye // '', qr/^Via: SIP\/2\.0\/UDP 127\.0\.0\.1:$port;branch=z9hG4bKsw/m, 'through sipwake');
$alice->answer($bye, 200, tag => 'al1');
my $bye_ok = $bob->expect(qr/^SIP\/2\.0 200/);
ok($bye_ok, 'the 200 for the BYE came back to bob');
like($bye_ok // '', qr/CSeq: 1 BYE/, 'for the BYE');

# A token that does not verify is not ours: the request is routed as any other (404).
(my $forged = $rr[0]) =~ s/sip:([0-9a-f])/'sip:' . ($1 eq '0' ? '1' : '0')/e;
$alice->send_raw(indialog('BYE', 'sip:bob@192.0.2.1:5060', [$forged], $al, $from_a, $to_a, 'dlg1', 3, 'z9hG4bKd1f'));
is($bob->expect(qr/^BYE /, 1), undef, 'a forged Route sends nothing to bob');
like($alice->expect(qr/^SIP\/2\.0 /) // '', qr/^SIP\/2\.0 404/, 'the forged request gets 404');

# A callee on TCP, a caller on UDP: two Record-Route entries (RFC 5658).
my $carol = $sw->ua(user => 'carol', transport => 'tcp');
$r = $carol->register(contact => 'sip:carol@192.0.2.2:5060;transport=tcp', expires => 3600);
is($r->{code}, 200, 'carol registered over TCP');
$alice->send_raw("INVITE sip:carol\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$al;rport;branch=z9hG4bKd2\r\n"
    . "Max-Forwards: 70\r\nFrom: <sip:alice\@example.com>;tag=al2\r\nTo: <sip:carol\@example.com>\r\n"
    . "Call-ID: dlg2\r\nCSeq: 1 INVITE\r\nContact: <sip:alice\@127.0.0.1:$al>\r\nContent-Length: 0\r\n\r\n");
$inv = $carol->expect(qr/^INVITE /);
@rr = hdrs($inv, 'Record-Route');
is(scalar @rr, 2, 'double Record-Route on a transport change');
like($rr[0] // '', qr/;transport=tcp;lr/, 'the TCP side on top (toward carol)');
unlike($rr[1] // '', qr/transport=/, 'the UDP side below (toward alice)');
$carol->answer($inv, 200, tag => 'cc1', contact => 'sip:carol@192.0.2.2:5060;transport=tcp');
ok($alice->expect(qr/^SIP\/2\.0 200/), 'alice got carol\'s 200');
my ($from_c, $to_c) = ('<sip:alice@example.com>;tag=al2', '<sip:carol@example.com>;tag=cc1');
$alice->send_raw(indialog('ACK', 'sip:carol@192.0.2.2:5060;transport=tcp', [reverse @rr], $al, $from_c, $to_c, 'dlg2', 1, 'z9hG4bKd2a'));
ok($carol->expect(qr/^ACK /), 'the ACK went down carol\'s TCP connection');
$carol->{sock}->close;
# The close and the BYE travel on different sockets: ask until sipwake has seen the close.
my $answer = '';
for my $try (1 .. 20) {
    $alice->send_raw(indialog('BYE', 'sip:carol@192.0.2.2:5060;transport=tcp', [reverse @rr], $al, $from_c, $to_c, 'dlg2', 1 + $try, "z9hG4bKd2b$try"));
    $answer = $alice->expect(qr/^SIP\/2\.0 [2-6]/, 2) // '';
    last if $answer =~ /^SIP\/2\.0 430 /;
    select(undef, undef, undef, 0.1);
}
like($answer, qr/^SIP\/2\.0 430 /, 'her connection closed: 430 Flow Failed');

# UDP caller to a TLS-registered callee, and the reverse.
my $dave = $sw->ua(user => 'dave', transport => 'tls');
$r = $dave->register(contact => 'sip:dave@192.0.2.3:5061;transport=tls;pn-provider=apns;pn-param=T.x.voip;pn-prid=da7ede70', expires => 3600);
is($r->{code}, 200, 'dave registered over TLS');
$alice->send_raw("INVITE sip:dave\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$al;rport;branch=z9hG4bKd3\r\n"
    . "Max-Forwards: 70\r\nFrom: <sip:alice\@example.com>;tag=al3\r\nTo: <sip:dave\@example.com>\r\n"
    . "Call-ID: dlg3\r\nCSeq: 1 INVITE\r\nContact: <sip:alice\@127.0.0.1:$al>\r\nContent-Length: 0\r\n\r\n");
$inv = $dave->expect(qr/^INVITE /);
like($inv // '', qr{\AINVITE sip:dave\@192\.0\.2\.3:5061;transport=tls SIP/2\.0\r\nVia: SIP/2\.0/TLS }, 'UDP caller: the INVITE went down dave\'s TLS connection');
@rr = hdrs($inv, 'Record-Route');
ok(@rr == 2 && $rr[0] =~ /;transport=tls;lr/ && $rr[1] !~ /transport=/, 'double Record-Route, the TLS side on top');
$dave->answer($inv, 200, tag => 'dd1', contact => 'sip:dave@192.0.2.3:5061;transport=tls');
ok($alice->expect(qr/^SIP\/2\.0 200/), "alice got dave's 200");
my ($from_d, $to_d) = ('<sip:alice@example.com>;tag=al3', '<sip:dave@example.com>;tag=dd1');
$alice->send_raw(indialog('BYE', 'sip:dave@192.0.2.3:5061;transport=tls', [reverse @rr], $al, $from_d, $to_d, 'dlg3', 2, 'z9hG4bKd3b'));
$bye = $dave->expect(qr/^BYE /);
ok($bye, 'her BYE reached dave over TLS');
$dave->answer($bye, 200, tag => 'dd1');
ok($alice->expect(qr/^SIP\/2\.0 200[^\r]*\r\n(?:[^\r]*\r\n)*CSeq: 2 BYE/), 'and his 200 came back over UDP');

my $dl = $dave->local_port;
$dave->send_raw("INVITE sip:bob\@example.com SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:$dl;rport;branch=z9hG4bKd4\r\n"
    . "Max-Forwards: 70\r\nFrom: <sip:dave\@example.com>;tag=dv4\r\nTo: <sip:bob\@example.com>\r\n"
    . "Call-ID: dlg4\r\nCSeq: 1 INVITE\r\nContact: <sip:dave\@192.0.2.3:5061;transport=tls>\r\nContent-Length: 0\r\n\r\n");
$inv = $bob->expect(qr/^INVITE /);
ok($inv, 'TLS caller: bob got the INVITE over UDP');
@rr = hdrs($inv, 'Record-Route');
ok(@rr == 2 && $rr[0] !~ /transport=/ && $rr[1] =~ /;transport=tls;lr/, 'double Record-Route, the UDP side on top');
$bob->answer($inv, 200, tag => 'bb4', contact => 'sip:bob@192.0.2.1:5060');
ok($dave->expect(qr/^SIP\/2\.0 200/), "dave got bob's 200 over TLS");
$bob->send_raw(indialog('BYE', 'sip:dave@192.0.2.3:5061;transport=tls', \@rr, $bob->local_port,
    '<sip:bob@example.com>;tag=bb4', '<sip:dave@example.com>;tag=dv4', 'dlg4', 1, 'z9hG4bKd4b'));
$bye = $dave->expect(qr/^BYE /);
ok($bye, "bob's BYE reached dave down his TLS connection");

# A malformed Route: answered, logged, the server keeps going.
$alice->send_raw(indialog('BYE', 'sip:bob@192.0.2.1:5060', ['<sip:%zz@@;lr', '<<>>'], $al, $from_a, $to_a, 'dlg1', 9, 'z9hG4bKd1m'));
like($alice->expect(qr/^SIP\/2\.0 /) // '', qr/^SIP\/2\.0 [45]\d\d /, 'a request with a malformed Route is answered with an error');
is($bob->expect(qr/^BYE /, 0.5), undef, 'and not forwarded');
ok($sw->alive, 'server alive');

ok($sw->stop, 'clean shutdown, no sanitizer report');
done_testing;
