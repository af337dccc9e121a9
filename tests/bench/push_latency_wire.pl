#!/usr/bin/perl
# push_latency_wire.pl — the same two latencies as push_latency.pl, read off a capture on lo
# (tcpdump, pcap timestamps in ns taken by the kernel as each packet crosses loopback), so they
# leave out the driver's and the Python emulator's costs: sipwake's own time, wire to wire.
#
#   INVITE -> push         the caller's INVITE on the wire (UDP to sipwake) -> the first TCP
#                          segment with data from sipwake to the emulator after it (the push:
#                          TLS hides the content, but the wake cycles run one at a time, so
#                          the first segment after the INVITE and before the emulator read it
#                          is its push)
#   re-REGISTER -> INVITE  the phone's re-REGISTER on the wire -> the INVITE on the wire to
#                          the phone's new port
#
#   tcpdump -r CAP -n -tt --time-stamp-precision=nano -A | \
#     push_latency_wire.pl --csv wakes.csv --port P --emu-port E
# reads the wake cycles push_latency.pl wrote (--csv) and prints
#   wire N invite_push p50 A p99 B p999 C max D reregister_invite p50 E p99 F p999 G max H
# in µs, over the cycles it could match (N). Meaningful only with --concurrency 1. --debug
# prints each cycle's packet times and both measures (driver, wire) on stderr: the wire figure
# of a cycle is normally inside the driver's (in a check of 300 cycles, 2 were 5 and 51 µs
# longer: the kernel stamps a loopback packet when it reaches the capture, not at send(2)).
use strict;
use warnings;
use Getopt::Long;
use FindBin;
use lib $FindBin::Bin;
use Wire;

my %o;
GetOptions(\%o, 'csv=s', 'port=i', 'emu-port=i', 'debug') or die "push_latency_wire: bad options\n";
$o{csv} && $o{port} && $o{'emu-port'} or die "push_latency_wire: --csv, --port and --emu-port\n";

# packets: [time_ns, src_port, dst_port, proto, length, start line] (Wire.pm)
my @pk = Wire::read_packets(\*STDIN, 0);

open my $f, '<', $o{csv} or die "push_latency_wire: $o{csv}: $!\n";
<$f>;
my @cyc = sort { $a->[1] <=> $b->[1] } map { chomp; [split /;/] } <$f>;
my (@a, @b);
my $i = 0;
for my $c (@cyc) {
    my ($id, $t0, $t1, $t2, $t3, $cport, $pport) = @$c;
    $i++ while $i < @pk && $pk[$i][0] < $t0 - 1_000_000;    # 1 ms of slack, never more
    my ($inv, $push, $reg, $inv2);
    for (my $j = $i; $j < @pk && $pk[$j][0] <= $t3 + 1_000_000; $j++) {
        my $p = $pk[$j];
        if (!$inv) {
            $inv = $p if $p->[3] eq 'udp' && $p->[1] == $cport && $p->[2] == $o{port} && $p->[5] eq 'INVITE sip:';
        } elsif (!$push) {
            $push = $p if $p->[3] eq 'tcp' && $p->[2] == $o{'emu-port'} && $p->[4] > 0 && $p->[0] <= $t1;
        }
        if (!$reg) {
            $reg = $p if $p->[3] eq 'udp' && $p->[1] == $pport && $p->[2] == $o{port} && $p->[5] eq 'REGISTER sip:';
        } elsif (!$inv2) {
            $inv2 = $p if $p->[3] eq 'udp' && $p->[2] == $pport && $p->[5] eq 'INVITE sip:';
        }
        last if $push && $inv2;
    }
    printf STDERR "%s inv %s push %s reg %s inv2 %s | driver %d %d wire %s %s\n", $id,
        map({ $_ ? $_->[0] : '-' } $inv, $push, $reg, $inv2), $t1 - $t0, $t3 - $t2,
        $inv && $push ? $push->[0] - $inv->[0] : '-', $reg && $inv2 ? $inv2->[0] - $reg->[0] : '-' if $o{debug};
    push @a, $push->[0] - $inv->[0] if $inv && $push;
    push @b, $inv2->[0] - $reg->[0] if $reg && $inv2;
}
@a = sort { $a <=> $b } @a;
@b = sort { $a <=> $b } @b;
printf "wire %d %d invite_push p50 %s p99 %s p999 %s max %s reregister_invite p50 %s p99 %s p999 %s max %s\n",
    scalar @a, scalar @b, (map { Wire::pct($_, @a) } 0.5, 0.99, 0.999, 1), (map { Wire::pct($_, @b) } 0.5, 0.99, 0.999, 1);
