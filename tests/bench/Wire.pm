# Wire.pm — reading a loopback capture for the benchmarks that measure on the wire
# (push_latency_wire.pl, calls_wire.pl, reg_wire.pl). The capture is tcpdump's text:
#   tcpdump -r CAP -n -tt --time-stamp-precision=nano -A
# in which each packet is a line "<s>.<ns> IP a.b.c.d.PORT > e.f.g.h.PORT: UDP, length N" (or
# "Flags [...]" for TCP, or "SIP: <start line>" for UDP on port 5060) followed by its bytes,
# one line per line of the payload (a SIP message's header fields each on their own line; the
# IP/UDP header shows as dots before the start line).
package Wire;
use strict;
use warnings;

# "<s>.<fraction>" -> ns (a µs capture gives whole µs)
sub ns { my ($s, $f) = split /\./, $_[0]; return $s * 1_000_000_000 + substr($f . '000000000', 0, 9) }

# read_packets(FH, HEADERS) -> list of packets [time_ns, src_port, dst_port, proto, length,
# start, call_id, cseq], in time order. start is the SIP start line's kind ("INVITE sip:",
# "SIP/2.0 200", ... as push_latency_wire.pl matches them) of a UDP packet, '' otherwise;
# call_id and cseq ("1 INVITE") are read only when HEADERS is true ('' when absent or cut off
# by the snap length).
sub read_packets {
    my ($fh, $headers) = @_;
    my (@pk, $cur);
    while (my $l = <$fh>) {
        if ($l =~ /^(\d+\.\d+) IP [\d.]+?\.(\d+) > [\d.]+?\.(\d+): (UDP|Flags)\S*.*length (\d+)/) {
            $cur = [ns($1), $2, $3, $4 eq 'UDP' ? 'udp' : 'tcp', $5, '', '', ''];
            push @pk, $cur;
            next;
        }
        # tcpdump decodes a UDP datagram to or from port 5060 as SIP: "...: SIP: <start line>",
        # no "UDP, length" (its length is not printed; 0 here); the start line is read from the
        # payload's first line below, as for any datagram
        if ($l =~ /^(\d+\.\d+) IP [\d.]+?\.(\d+) > [\d.]+?\.(\d+): SIP/) {
            $cur = [ns($1), $2, $3, 'udp', 0, '', '', ''];
            push @pk, $cur;
            next;
        }
        next unless $cur && $cur->[3] eq 'udp';
        if ($cur->[5] eq '') {
            $cur->[5] = $1 if $l =~ m{((?:INVITE|REGISTER|ACK|BYE|CANCEL) sip:|SIP/2\.0 \d{3})};
            next;
        }
        next unless $headers;
        if ($cur->[6] eq '' && $l =~ /^(?:Call-ID|i)[ \t]*:[ \t]*(\S+)/i) {
            $cur->[6] = $1;
        } elsif ($cur->[7] eq '' && $l =~ /^CSeq[ \t]*:[ \t]*(\d+[ \t]+[A-Za-z]+)/i) {
            ($cur->[7] = $1) =~ s/[ \t]+/ /;
        }
    }
    return sort { $a->[0] <=> $b->[0] } @pk;
}

# delays(\%h, END) over h: key -> [in_ns, out_ns] -> (sorted delays in ns, lost, key -> delay).
# A key whose in_ns is after END (the capture's last moments: its out packet may have been cut
# off) or unknown (only its out half seen) is left out; one without out_ns counts as lost.
sub delays {
    my ($h, $end) = @_;
    my (@d, %by);
    my $lost = 0;
    for my $k (keys %$h) {
        my ($a, $b) = @{ $h->{$k} };
        next unless defined $a && $a <= $end;
        if (!defined $b) { $lost++; next }
        push @d, $b - $a;
        $by{$k} = $b - $a;
    }
    return ([sort { $a <=> $b } @d], $lost, \%by);
}

# pct(P, sorted values in ns) -> the P-quantile (nearest rank) in µs with one decimal, 'NA' if none
sub pct {
    my ($p, @v) = @_;
    return 'NA' unless @v;
    my $k = int($p * @v + 0.999999) - 1;
    return sprintf('%.1f', $v[$k < 0 ? 0 : $k] / 1000);
}

1;
