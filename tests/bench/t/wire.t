#!/usr/bin/perl
# tests/bench/reg_wire.pl, calls_wire.pl and Wire.pm on tcpdump text made up here (no capture
# runs): the REGISTER -> 200 time in µs, a REGISTER answered 503 or 401 neither timed nor lost,
# one with no answer lost, and the form tcpdump gives a datagram to or from port 5060 ("SIP:
# ...", no "UDP, length") read like any other; an INVITE refused with 503 neither timed nor
# lost.
use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use FindBin;

my $root = "$FindBin::Bin/../../..";
my $tmp = tempdir(CLEANUP => 1);

# one datagram as `tcpdump -n -tt --time-stamp-precision=nano -A` prints it
sub pkt {
    my ($t, $sp, $dp, $start, $cid, $cseq, $sip) = @_;
    my $head = $sip ? "SIP: $start" : 'UDP, length 400';
    return "$t IP 127.0.0.1.$sp > 127.0.0.1.$dp: $head\n"
        . "E..........\@.\@..........$start\nVia: SIP/2.0/UDP 127.0.0.1:$sp\nCall-ID: $cid\nCSeq: $cseq\n\n";
}

sub reg_wire {
    my ($port, $uac, @pk) = @_;
    open my $f, '>', "$tmp/cap.txt" or die $!;
    print $f @pk;
    close $f;
    my $o = `perl $root/tests/bench/reg_wire.pl --port $port --uac-port $uac --tail 0 < $tmp/cap.txt`;
    chomp $o;
    return $o;
}

for my $case ([5070, 0], [5060, 1]) {
    my ($P, $sip) = @$case;
    my $C = 5061;
    my @pk = (
        pkt('100.000000000', $C, $P, 'REGISTER sip:example.com SIP/2.0', 'a', '1 REGISTER', $sip),
        pkt('100.000300000', $P, $C, 'SIP/2.0 200 OK', 'a', '1 REGISTER', $sip),
        pkt('100.001000000', $C, $P, 'REGISTER sip:example.com SIP/2.0', 'b', '1 REGISTER', $sip),
        pkt('100.001100000', $P, $C, 'SIP/2.0 503 Service Unavailable', 'b', '1 REGISTER', $sip),
        pkt('100.002000000', $C, $P, 'REGISTER sip:example.com SIP/2.0', 'c', '1 REGISTER', $sip),
        pkt('100.002050000', $P, $C, 'SIP/2.0 401 Unauthorized', 'c', '1 REGISTER', $sip),
        pkt('100.003000000', $C, $P, 'REGISTER sip:example.com SIP/2.0', 'd', '1 REGISTER', $sip),
        pkt('100.003500000', $P, $C, 'SIP/2.0 200 OK', 'd', '1 REGISTER', $sip),
        pkt('100.004000000', $C, $P, 'REGISTER sip:example.com SIP/2.0', 'e', '1 REGISTER', $sip),
        pkt('100.009000000', $C, $P, 'REGISTER sip:example.com SIP/2.0', 'f', '1 REGISTER', $sip),
        pkt('100.009100000', $P, $C, 'SIP/2.0 200 OK', 'f', '1 REGISTER', $sip),
    );
    my @f = split ' ', reg_wire($P, $C, @pk);
    my $how = $sip ? 'port 5060 (tcpdump prints "SIP:")' : "port $P";
    is($f[1], 3, "$how: three REGISTERs timed to their 200");
    is($f[2], 1, "$how: the one without an answer is lost; the 503 and the 401 are not");
    is($f[3], '300.0', "$how: median 300 µs") or diag "@f";
}

# calls_wire.pl: an INVITE the proxy refused with 503 is neither timed nor lost; one that
# went nowhere is lost
{
    my ($P, $C, $S) = (5070, 5062, 5080);
    my @pk = (
        pkt('100.000000000', $C, $P, 'INVITE sip:b@example.com SIP/2.0', 'a', '1 INVITE', 0),
        pkt('100.000200000', $P, $S, 'INVITE sip:b@127.0.0.1 SIP/2.0', 'a', '1 INVITE', 0),
        pkt('100.001000000', $S, $P, 'SIP/2.0 200 OK', 'a', '1 INVITE', 0),
        pkt('100.001100000', $P, $C, 'SIP/2.0 200 OK', 'a', '1 INVITE', 0),
        pkt('100.002000000', $C, $P, 'INVITE sip:b@example.com SIP/2.0', 'b', '1 INVITE', 0),
        pkt('100.002010000', $P, $C, 'SIP/2.0 503 Service Unavailable', 'b', '1 INVITE', 0),
        pkt('100.003000000', $C, $P, 'INVITE sip:b@example.com SIP/2.0', 'c', '1 INVITE', 0),
    );
    open my $f, '>', "$tmp/calls.txt" or die $!;
    print $f @pk;
    close $f;
    my @f = split ' ', `perl $root/tests/bench/calls_wire.pl --port $P --uac-port $C --uas-port $S --tail 0 < $tmp/calls.txt`;
    is($f[1], 1, 'calls: one INVITE timed to its relay');
    is($f[2], 1, 'calls: the one that went nowhere is lost; the one refused with 503 is not');
    is($f[3], '200.0', 'calls: 200 µs') or diag "@f";
}

done_testing;
