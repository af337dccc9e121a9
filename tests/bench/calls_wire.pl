#!/usr/bin/perl
# calls_wire.pl — the time a proxy adds to a call, read off a capture on lo (tcpdump, kernel
# timestamps in ns as each packet crosses loopback; Wire.pm reads it), below SIPp's 1 ms:
#
#   inv   the caller's INVITE arriving at the proxy (UAC port -> proxy port) -> the proxy's
#         INVITE to the callee (proxy port -> UAS port)
#   ok    the callee's 200 to that INVITE arriving at the proxy (UAS port -> proxy port) ->
#         the proxy's 200 to the caller (proxy port -> UAC port)
#   sum   inv + ok of the same call: the proxy's share of INVITE -> 200
#
# matched by Call-ID and CSeq ("n INVITE") and the direction (ports); the first copy of each
# (a retransmission is ignored). A transaction whose first packet falls in the capture's last
# --tail ms is left out (its second packet may have been cut off by the capture's end); one
# outside it whose second packet never came counts as lost. An INVITE the proxy answered with
# a final response of its own (a 503 of the overload control) went nowhere on purpose: it is
# neither timed nor lost.
#
#   tcpdump -r CAP -n -tt --time-stamp-precision=nano -A | \
#     calls_wire.pl --port P --uac-port C --uas-port S [--tail 200]
# prints one line, in µs:
#   wire INV_N INV_LOST p50 p99 p999 OK_N OK_LOST p50 p99 p999 SUM_N p50 p99 p999
use strict;
use warnings;
use Getopt::Long;
use FindBin;
use lib $FindBin::Bin;
use Wire;

my %o = (tail => 200);
GetOptions(\%o, 'port=i', 'uac-port=i', 'uas-port=i', 'tail=i') or die "calls_wire: bad options\n";
$o{port} && $o{'uac-port'} && $o{'uas-port'} or die "calls_wire: --port, --uac-port and --uas-port\n";
my ($P, $C, $S) = ($o{port}, $o{'uac-port'}, $o{'uas-port'});

my @pk = Wire::read_packets(\*STDIN, 1);
my $end = @pk ? $pk[-1][0] - $o{tail} * 1_000_000 : 0;
# key "Call-ID CSeq" -> [in_ns, out_ns] for each measure
my (%inv, %ok, %refused);
for my $p (@pk) {
    my ($t, $sp, $dp, $proto, $len, $start, $cid, $cseq) = @$p;
    next unless $proto eq 'udp' && $cid ne '' && $cseq =~ / INVITE$/;
    my $k = "$cid $cseq";
    if ($start eq 'INVITE sip:') {
        if ($sp == $C && $dp == $P) { $inv{$k}[0] //= $t }
        elsif ($sp == $P && $dp == $S) { $inv{$k}[1] //= $t }
    } elsif ($start eq 'SIP/2.0 200') {
        if ($sp == $S && $dp == $P) { $ok{$k}[0] //= $t }
        elsif ($sp == $P && $dp == $C) { $ok{$k}[1] //= $t }
    } elsif ($start =~ m{^SIP/2\.0 [3-6]} && $sp == $P && $dp == $C) {
        $refused{$k} = 1; # the proxy's own final answer (or one relayed: then it went out)
    }
}
# refused by the proxy: the INVITE never left for the callee
delete @inv{grep { defined $inv{$_} && !defined $inv{$_}[1] } keys %refused};
my ($di, $li, $bi) = Wire::delays(\%inv, $end);
my ($do, $lo, $bo) = Wire::delays(\%ok, $end);
my @sum = sort { $a <=> $b } map { $bi->{$_} + $bo->{$_} } grep { exists $bo->{$_} } keys %$bi;
printf "wire %d %d %s %s %s %d %d %s %s %s %d %s %s %s\n",
    scalar @$di, $li, (map { Wire::pct($_, @$di) } 0.5, 0.99, 0.999),
    scalar @$do, $lo, (map { Wire::pct($_, @$do) } 0.5, 0.99, 0.999),
    scalar @sum, map { Wire::pct($_, @sum) } 0.5, 0.99, 0.999;
