#!/usr/bin/perl
# Proxying INVITE (RFC 3261 §16, §17.1.1, §9): 100 Trying at once, ringing passed up, a
# final non-2xx ACKed hop by hop (and again for its retransmission), the best response
# upstream; a fork where the first 2xx wins and the other branch is CANCELled, later 2xx
# copies forwarded to the caller the Accepted transaction holds (RFC 6026 §7.1), and a
# forged one dropped; a CANCEL from the caller (§16.10), also one that arrives before the
# callee sent anything (the CANCEL waits for its provisional, §9.1); callers and callees on
# TCP.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Sipwake;

my $sw = Sipwake->new;
$sw->start;
my $port = $sw->port;

sub phone {
    my ($user, %o) = @_;
    my $ua = $sw->ua(user => $user, %o);
    my $tp = ($o{transport} // 'udp') eq 'tcp' ? ';transport=tcp' : '';
    my $r = $ua->register(contact => "sip:$user\@127.0.0.1:" . $ua->local_port . "$tp;pn-provider=apns;pn-param=T.x.voip;pn-prid=" . unpack("H*", $user) . $ua->local_port, expires => 3600);
    is($r->{code}, 200, "$user registered");
    return $ua;
}

my $bob = phone('bob');
my ($dave1, $dave2) = (phone('dave'), phone('dave'));
my $alice = $sw->ua(user => 'alice');
my $al = $alice->local_port;
my $n = 0;

sub invite {
    my ($to, $branch) = @_;
    $n++;
    my $sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    return "INVITE sip:$to SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$al;rport;branch=$branch\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:alice\@example.com>;tag=a$n\r\nTo: <sip:$to>\r\n"
        . "Call-ID: call-$n-$$\r\nCSeq: 1 INVITE\r\nContact: <sip:alice\@127.0.0.1:$al>\r\n"
        . "Content-Type: application/sdp\r\nContent-Length: " . length($sdp) . "\r\n\r\n$sdp";
}

# The caller's CANCEL or ACK for an INVITE it sent (same branch, §9.1, §17.1.1.3).
sub hop {
    my ($inv, $method, $to_tag) = @_;
    my ($head) = split /\r\n\r\n/, $inv, 2;
    my @l = split /\r\n/, $head;
    my ($uri) = $l[0] =~ /^INVITE (\S+)/;
    my $m = "$method $uri SIP/2.0\r\n";
    for (@l[1 .. $#l]) {
        $m .= "$_\r\n" if /^(Via|From|Call-ID|Max-Forwards):/;
        $m .= "$_" . ($to_tag ? ";tag=$to_tag" : '') . "\r\n" if /^To:/;
        $m .= "CSeq: 1 $method\r\n" if /^CSeq:/;
    }
    return "${m}Content-Length: 0\r\n\r\n";
}

# 1. Ringing, then busy: 100 at once, 180 passed up, 486 ACKed by sipwake and passed up.
my $inv = invite('bob@example.com', 'z9hG4bKc1');
$alice->send_raw($inv);
my $r = Sipwake::UA::parse_response($alice->expect(qr/^SIP\/2\.0 1/));
is($r->{code}, 100, 'the caller gets 100 Trying at once');
unlike($r->{raw}, qr/^To:[^\r]*tag=/m, 'without a To tag');
my $got = $bob->expect(qr/^INVITE /);
ok($got, 'bob got the INVITE');
like($got // '', qr{\AINVITE sip:bob\@127\.0\.0\.1:\d+ SIP/2\.0\r\nVia: SIP/2\.0/UDP 127\.0\.0\.1:$port;branch=z9hG4bKsw}, 'to his contact, pn-* gone, our Via on top');
like($got // '', qr/\r\n\r\nv=0\r\n/, 'the SDP body goes along');
$bob->answer($got, 180, reason => 'Ringing', tag => 'b1');
$r = Sipwake::UA::parse_response($alice->expect(qr/^SIP\/2\.0 180/));
ok($r, 'the 180 reached the caller');
is(scalar(() = ($r->{raw} // '') =~ /^Via:/mg), 1, 'with only her own Via');
my $busy = $bob->answer($got, 486, reason => 'Busy Here', tag => 'b1');
my $ack = $bob->expect(qr/^ACK /);
ok($ack, 'sipwake ACKed the 486 itself (§17.1.1.3)');
my ($ibranch) = $got =~ /branch=(z9hG4bKsw[^;\r]+)/;
like($ack // '', qr/^Via: SIP\/2\.0\/UDP [^\r]*branch=\Q$ibranch\E/m, 'the ACK has the INVITE branch');
like($ack // '', qr/^To: [^\r]*tag=b1/m, "and the 486's To tag");
like($ack // '', qr/^CSeq: 1 ACK\r$/m, 'CSeq 1 ACK');
$r = Sipwake::UA::parse_response($alice->expect(qr/^SIP\/2\.0 486/));
is($r->{code}, 486, 'the caller got the 486');
$bob->send_raw($busy);
ok($bob->expect(qr/^ACK /, 2), 'a retransmitted 486 is ACKed again');
$alice->send_raw(hop($inv, 'ACK', 'b1'));
# retransmissions sent before sipwake had the ACK (a slow machine) are read and skipped here
ok($alice->sync, 'sipwake has the ACK: an OPTIONS sent after it is answered');
is($alice->expect(qr/^SIP\/2\.0 486/, 1.5), undef, "the caller's ACK stops the 486 retransmissions");

# 2. Fork to two devices: the first 2xx wins, the other branch gets CANCEL, its 487 is ACKed
#    and not passed up; a retransmitted 200 still reaches the caller (the Accepted transaction).
$inv = invite('dave@example.com', 'z9hG4bKc2');
$alice->send_raw($inv);
my $g1 = $dave1->expect(qr/^INVITE /);
my $g2 = $dave2->expect(qr/^INVITE /);
ok($g1 && $g2, 'both of dave\'s devices ring');
$dave1->answer($g1, 180, reason => 'Ringing', tag => 'd1');
$dave2->answer($g2, 180, reason => 'Ringing', tag => 'd2');
my $ok = $dave1->answer($g1, 200, reason => 'OK', tag => 'd1');
$r = Sipwake::UA::parse_response($alice->expect(qr/^SIP\/2\.0 200/));
is($r->{code}, 200, 'the caller got the 200 of the device that answered');
like($r->{raw} // '', qr/^To: [^\r]*tag=d1/m, 'from dave1');
my $cancel = $dave2->expect(qr/^CANCEL /);
ok($cancel, 'the other device got a CANCEL (§16.7 step 10)');
my ($b2) = $g2 =~ /branch=(z9hG4bKsw[^;\r]+)/;
like($cancel // '', qr/branch=\Q$b2\E/, 'with its INVITE branch');
like($cancel // '', qr/^CSeq: 1 CANCEL\r$/m, 'CSeq 1 CANCEL');
unlike($cancel // '', qr/^To: [^\r]*tag=/m, 'To without a tag (§9.1)');
$dave2->answer($cancel, 200, reason => 'OK', tag => 'd2');
$dave2->answer($g2, 487, reason => 'Request Terminated', tag => 'd2');
ok($dave2->expect(qr/^ACK /), 'its 487 is ACKed');
is($alice->expect(qr/^SIP\/2\.0 487/, 1), undef, 'and not passed to the caller');
$dave1->send_raw($ok);
$r = Sipwake::UA::parse_response($alice->expect(qr/^SIP\/2\.0 200/));
is($r->{code}, 200, 'a retransmitted 200 is forwarded through the Accepted transaction (RFC 6026)');
is(scalar(() = ($r->{raw} // '') =~ /^Via:/mg), 1, 'without our Via');
# RFC 6026 §7.1: the caller's INVITE, retransmitted as the 200 was on its way, finds the
# transaction Accepted: absorbed, not forwarded again as a new request, not answered.
$alice->send_raw($inv);
is($dave1->expect(qr/^INVITE /, 1), undef, 'an INVITE retransmitted after the 200 is not forwarded again');
is($dave2->expect(qr/^INVITE /, 0.2), undef, 'to neither device');
is($alice->expect(qr/^SIP\/2\.0 /, 0.2), undef, 'and gets no response of its own');
# RFC 3261 §9.2, §16.10: a CANCEL that crossed the 200 finds the transaction: 200, no effect
$alice->send_raw(hop($inv, 'CANCEL'));
$r = Sipwake::UA::parse_response($alice->expect(qr/^SIP\/2\.0 \d+ [^\r]*\r\n(?:[^\r]*\r\n)*CSeq: 1 CANCEL/));
is($r->{code}, 200, 'a CANCEL after the 200 is answered 200 (it was 481 when the transaction ended at the 2xx)');
is($dave1->expect(qr/^CANCEL /, 0.5), undef, 'and goes to no device');

# 3. The caller cancels while bob rings.
$inv = invite('bob@example.com', 'z9hG4bKc3');
$alice->send_raw($inv);
$got = $bob->expect(qr/^INVITE /);
$bob->answer($got, 180, reason => 'Ringing', tag => 'b3');
ok($alice->expect(qr/^SIP\/2\.0 180/), 'ringing');
$alice->send_raw(hop($inv, 'CANCEL'));
$r = Sipwake::UA::parse_response($alice->expect(qr/^SIP\/2\.0 200 [^\r]*\r\n(?:[^\r]*\r\n)*CSeq: 1 CANCEL/));
is($r->{code}, 200, 'the CANCEL is answered 200 by sipwake (§16.10)');
$cancel = $bob->expect(qr/^CANCEL /);
ok($cancel, 'and passed to bob');
$bob->answer($cancel, 200, reason => 'OK', tag => 'b3');
$bob->answer($got, 487, reason => 'Request Terminated', tag => 'b3');
$r = Sipwake::UA::parse_response($alice->expect(qr/^SIP\/2\.0 487/));
is($r->{code}, 487, 'the caller gets the 487');
ok($bob->expect(qr/^ACK /), 'which sipwake ACKed to bob');
$alice->send_raw(hop($inv, 'ACK', 'b3'));

# 4. CANCEL before bob answered anything: it waits for his first provisional (§9.1).
$inv = invite('bob@example.com', 'z9hG4bKc4');
$alice->send_raw($inv);
$got = $bob->expect(qr/^INVITE /);
$alice->send_raw(hop($inv, 'CANCEL'));
ok($alice->expect(qr/^SIP\/2\.0 200 [^\r]*\r\n(?:[^\r]*\r\n)*CSeq: 1 CANCEL/), 'CANCEL answered 200');
is($bob->expect(qr/^CANCEL /, 0.8), undef, 'no CANCEL to bob before he sent a provisional');
$bob->answer($got, 180, reason => 'Ringing', tag => 'b4');
$cancel = $bob->expect(qr/^CANCEL /);
ok($cancel, 'his 180 releases the CANCEL');
$bob->answer($cancel, 200, reason => 'OK', tag => 'b4');
$bob->answer($got, 487, reason => 'Request Terminated', tag => 'b4');
is(Sipwake::UA::parse_response($alice->expect(qr/^SIP\/2\.0 487/))->{code}, 487, 'caller gets 487');
$alice->send_raw(hop($inv, 'ACK', 'b4'));

# 5. A callee on TCP answers a caller on UDP.
my $carol = phone('carol', transport => 'tcp');
$inv = invite('carol@example.com', 'z9hG4bKc5');
$alice->send_raw($inv);
$got = $carol->expect(qr/^INVITE /);
like($got // '', qr{\AINVITE sip:carol\@127\.0\.0\.1:\d+;transport=tcp SIP/2\.0\r\nVia: SIP/2\.0/TCP }, 'the INVITE went down carol\'s TCP connection');
$carol->answer($got, 200, reason => 'OK', tag => 'c5') if $got;
is(Sipwake::UA::parse_response($alice->expect(qr/^SIP\/2\.0 200/))->{code}, 200, 'her 200 reached the caller');

# 6. A caller on TCP: the callee's retransmitted 200 (it has no ACK yet) reaches it down its
#    connection, found through the Accepted transaction (RFC 6026 §7.1; it was dropped).
my $erin = $sw->ua(user => 'erin', transport => 'tcp');
my $el = $erin->local_port;
my $sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
$inv = "INVITE sip:bob\@example.com SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:$el;branch=z9hG4bKc6\r\n"
    . "Max-Forwards: 70\r\nFrom: <sip:erin\@example.com>;tag=e6\r\nTo: <sip:bob\@example.com>\r\n"
    . "Call-ID: call-tcp-$$\r\nCSeq: 1 INVITE\r\nContact: <sip:erin\@127.0.0.1:$el;transport=tcp>\r\n"
    . "Content-Type: application/sdp\r\nContent-Length: " . length($sdp) . "\r\n\r\n$sdp";
$erin->send_raw($inv);
$got = $bob->expect(qr/^INVITE [^\r]*\r\n(?:[^\r]*\r\n)*Call-ID: call-tcp-/);
ok($got, 'a caller on TCP rings bob (UDP)');
$ok = $bob->answer($got, 200, reason => 'OK', tag => 'b6') if $got;
is(Sipwake::UA::parse_response($erin->expect(qr/^SIP\/2\.0 200/))->{code}, 200, 'his 200 reached the TCP caller');
$bob->send_raw($ok) if $ok;
$r = Sipwake::UA::parse_response($erin->expect(qr/^SIP\/2\.0 200/, 3));
is($r->{code}, 200, 'and his retransmitted 200 too, down the same connection');
is(scalar(() = ($r->{raw} // '') =~ /^Via:/mg), 1, 'without our Via');
unlike($sw->log, qr/stray 200 response for a TCP caller dropped/, 'none was dropped');

# 7. A forged 2xx: sipwake's branch prefix in the top Via (it is public), a victim's address in
#    the second, matching no INVITE sipwake proxied. It used to go to the victim, with our
#    Via taken off (a reflector, RFC 3261 §26.1.5); now only a live Accepted transaction's
#    caller gets a stray 2xx, at the address the transaction holds.
my $victim = $sw->ua(user => 'victim');
my $vp = $victim->local_port;
my $forged = "SIP/2.0 200 OK
Via: SIP/2.0/UDP 127.0.0.1:$port;branch=z9hG4bKswdeadbeefdeadbeef.1
"
    . "Via: SIP/2.0/UDP 127.0.0.1:$vp;branch=z9hG4bKvictim1;received=127.0.0.1;rport=$vp
"
    . "From: <sip:x\@example.com>;tag=f7
To: <sip:y\@example.com>;tag=t7
"
    . "Call-ID: forged-$$
CSeq: 1 INVITE
Contact: <sip:y\@127.0.0.1:$vp>
Content-Length: 0

";
$bob->send_raw($forged);
ok(Sipwake::wait_until(sub { $sw->log =~ /stray 200 response for a UDP caller dropped: its transaction is gone/ }, 5),
   'a forged 2xx matching no transaction is dropped, and logged');
is($victim->expect(qr/^SIP\/2\.0 /, 0.5), undef, 'the address in its second Via got nothing');

ok($sw->stop, 'clean shutdown, no sanitizer report');
done_testing;
