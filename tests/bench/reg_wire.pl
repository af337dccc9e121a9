#!/usr/bin/perl
# reg_wire.pl — the time a registrar takes to answer a REGISTER, read off a capture on lo
# (tcpdump, kernel timestamps in ns as each packet crosses loopback; Wire.pm reads it), below
# SIPp's clock tick: the REGISTER arriving at the registrar (SIPp's port -> the registrar's)
# -> the registrar's 200 to it (the registrar's port -> SIPp's), matched by Call-ID and CSeq
# ("n REGISTER"); the first copy of each (a retransmission is ignored). A REGISTER in the
# capture's last --tail ms is left out (its 200 may have been cut off by the capture's end);
# one before it that got no answer within the capture counts as lost; one answered with
# another final response (a 503 when shedding, a 401) is neither timed nor lost.
#
#   tcpdump -r CAP -n -tt --time-stamp-precision=nano -A | reg_wire.pl --port P --uac-port C [--tail 200]
# prints one line, in µs:   wire N LOST p50 p99 p999
use strict;
use warnings;
use Getopt::Long;
use FindBin;
use lib $FindBin::Bin;
use Wire;

my %o = (tail => 200);
GetOptions(\%o, 'port=i', 'uac-port=i', 'tail=i') or die "reg_wire: bad options\n";
$o{port} && $o{'uac-port'} or die "reg_wire: --port and --uac-port\n";
my ($P, $C) = ($o{port}, $o{'uac-port'});

my @pk = Wire::read_packets(\*STDIN, 1);
my $end = @pk ? $pk[-1][0] - $o{tail} * 1_000_000 : 0;
my %reg;        # "Call-ID CSeq" -> [in_ns, out_ns]
my %refused;    # "Call-ID CSeq" of those answered with a final response other than 200
for my $p (@pk) {
    my ($t, $sp, $dp, $proto, $len, $start, $cid, $cseq) = @$p;
    next unless $proto eq 'udp' && $cid ne '' && $cseq =~ / REGISTER$/;
    my $k = "$cid $cseq";
    if ($start eq 'REGISTER sip:' && $sp == $C && $dp == $P) { $reg{$k}[0] //= $t }
    elsif ($start eq 'SIP/2.0 200' && $sp == $P && $dp == $C) { $reg{$k}[1] //= $t }
    elsif ($start =~ m{^SIP/2\.0 [3-6]} && $sp == $P && $dp == $C) { $refused{$k} = 1 }
}
# answered, but not 200 (a 503 of the shedding, a 401 challenge): neither timed nor lost
delete @reg{grep { !defined $reg{$_}[1] } keys %refused};
my ($d, $lost) = Wire::delays(\%reg, $end);
printf "wire %d %d %s %s %s\n", scalar @$d, $lost, map { Wire::pct($_, @$d) } 0.5, 0.99, 0.999;
