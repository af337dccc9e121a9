#!/usr/bin/perl
# push_latency.pl — the wake cycles of tests/bench/push_latency.sh: a caller and N sleeping
# push phones, over UDP on loopback, timing sipwake's two push latencies with CLOCK_REALTIME
# timestamps taken on both sides of it (every process on the machine reads the same clock):
#
#   t0  the caller sends the INVITE (just before send(2))
#   t1  the APNs emulator reads the bytes carrying the push request's HEADERS frame
#       (recv_ns in its log, tests/emulators/h2server.py), matched to the call by the
#       Call-ID in the push payload (server/push/push_content.c)
#   t2  the woken phone sends its re-REGISTER from a new port (a new flow; just before send)
#   t3  the phone reads the INVITE that arrives on that port (just after select/recv)
#
#   INVITE -> push        = t1 - t0: sipwake's parsing, routing, policy, push payload, JWT,
#                           HTTP/2 + TLS framing, plus the loopback UDP and TCP hops and the
#                           emulator's TLS decryption and wake-up (Python), which are not
#                           subtracted: they cannot be measured apart here.
#   re-REGISTER -> INVITE = t3 - t2: the REGISTER's processing (and anything it waits for,
#                           such as a store commit) up to the INVITE leaving on the new flow,
#                           plus two loopback UDP hops and this script's select wake-up.
#
# The phone learns of its push by reading the emulator's log (as a real phone learns of it
# from APNs); how long that takes is outside both figures. One cycle: INVITE, push, new port,
# re-REGISTER (same Call-ID, higher CSeq, same +sip.instance and push parameters), the parked
# INVITE arrives and is answered 200, the caller ACKs and hangs up (BYE, through the proxy's
# Record-Route), then the phone closes its port and sleeps. At most --concurrency cycles at a time, each with a phone of its own.
#
#   push_latency.pl --port P --emu-log FILE [--phones 100] [--wakes 2000] [--warmup 20]
#                   [--concurrency 1] [--timeout 10] [--csv FILE]
# prints one line of figures (µs) on stdout:
#   wakes N ok K failed F invite_push p50 A p99 B p999 C max D reregister_invite p50 ... max H
# and writes one row per measured cycle to --csv: call_id;t0_ns;t1_ns;t2_ns;t3_ns;caller_port;
# phone_port.
# Exits 0 when it ran (the figures say the rest), 2 when the harness broke.
# Push tokens are made up and never written anywhere.
use strict;
use warnings;
use Getopt::Long;
use IO::Socket::INET;
use Socket;
use IO::Select;
use Time::HiRes qw(clock_gettime CLOCK_REALTIME);

my %o = (phones => 100, wakes => 2000, warmup => 20, concurrency => 1, timeout => 10);
GetOptions(\%o, 'port=i', 'emu-log=s', 'phones=i', 'wakes=i', 'warmup=i', 'concurrency=i',
    'timeout=f', 'csv=s', 'debug') or die "push_latency: bad options\n";
($o{port} && $o{'emu-log'}) or die "push_latency: --port and --emu-log are needed\n";
my $SIPWAKE;    # sipwake's address, set below
sub now_ns { return int(clock_gettime(CLOCK_REALTIME) * 1e9) }

$SIPWAKE = Socket::pack_sockaddr_in($o{port}, Socket::inet_aton('127.0.0.1'));
my $TEAM = 'TEAM123456';
my @phones = map {
    { user => sprintf('lat%04d', $_), token => sprintf('%08x%08x%08x%08x', 0x1a7, $_, $$, 0xface0000 + $_),
      call_id => "latreg-$$-$_", cseq => 0, uuid => sprintf('00000000-0000-4000-8000-%012x', 0x1a7000 + $_) }
} 0 .. $o{phones} - 1;

sub udp {
    # not connected: sipwake may answer from another of its sockets than the one it was sent to
    my $s = IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.1', LocalPort => 0)
        or die "push_latency: udp socket: $!\n";
    return $s;
}
sub register_msg {
    my ($ph, $sock) = @_;
    my $lp = $sock->sockport;
    my $cseq = ++$ph->{cseq};
    return "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$lp;rport;branch=z9hG4bKlr$$-$ph->{user}-$cseq\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:$ph->{user}\@example.com>;tag=r$cseq\r\nTo: <sip:$ph->{user}\@example.com>\r\n"
        . "Call-ID: $ph->{call_id}\r\nCSeq: $cseq REGISTER\r\n"
        . "Contact: <sip:$ph->{user}\@127.0.0.1:$lp;pn-provider=apns;pn-param=$TEAM.org.example.app.voip;pn-prid=$ph->{token}>"
        . ";+sip.instance=\"<urn:uuid:$ph->{uuid}>\"\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n";
}
sub status_of { my ($m) = @_; return $m =~ m{^SIP/2\.0 (\d{3})} ? $1 : 0 }
sub header_of { my ($m, $h) = @_; return $m =~ /^(?:$h)\s*:\s*([^\r\n]*)/mi ? $1 : undef }

# ---- every phone registers once, then sleeps (its port closed)
for my $ph (@phones) {
    my $s = udp();
    my $ok = 0;
    for my $try (1 .. 5) {
        $s->send(register_msg($ph, $s), 0, $SIPWAKE);
        my $sel = IO::Select->new($s);
        while ($sel->can_read(1)) {
            $s->recv(my $m, 65535);
            if (status_of($m) == 200 && header_of($m, 'CSeq') =~ /^$ph->{cseq} /) { $ok = 1; last }
        }
        last if $ok;
    }
    $ok or die "push_latency: $ph->{user} could not register\n";
    close $s;
}

# ---- the wake cycles
my $caller = udp();
my $cp = $caller->sockport;
my $sel = IO::Select->new($caller);
open my $emu, '<', $o{'emu-log'} or die "push_latency: $o{'emu-log'}: $!\n";
seek $emu, 0, 2;    # only pushes from now on
my $emu_buf = '';
my (%cyc, %by_sock, @idle, @rows);
@idle = (0 .. $#phones);
my ($started, $done, $failed) = (0, 0, 0);
my $total = $o{wakes} + $o{warmup};

sub invite_msg {
    my ($c) = @_;
    return "INVITE sip:$c->{ph}{user}\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bKli$c->{id}\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:caller\@example.com>;tag=lc$c->{id}\r\nTo: <sip:$c->{ph}{user}\@example.com>\r\n"
        . "Call-ID: $c->{id}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller\@127.0.0.1:$cp>\r\nContent-Length: 0\r\n\r\n";
}
sub start_cycle {
    my $ph = $phones[shift @idle];
    my $c = { id => sprintf('lat-%d-%d', $$, ++$started), ph => $ph, n => $started };
    $c->{deadline} = time + $o{timeout};
    my $m = invite_msg($c);
    $c->{t0} = now_ns();
    $caller->send($m, 0, $SIPWAKE);
    $cyc{ $c->{id} } = $c;
}
sub end_cycle {
    my ($c, $ok) = @_;
    delete $cyc{ $c->{id} };
    if ($c->{sock}) { $sel->remove($c->{sock}); delete $by_sock{ $c->{sock}->sockport }; close $c->{sock} }
    push @idle, (grep { $phones[$_] == $c->{ph} } 0 .. $#phones);
    if (!$ok) { $failed++; return }
    $done++;
    push @rows, [$c->{id}, $c->{t0}, $c->{t1}, $c->{t2}, $c->{t3}, $cp, $c->{pport}] if $c->{n} > $o{warmup};
}
sub wake {
    my ($c, $t1) = @_;
    return if $c->{t1};
    $c->{t1} = $t1;
    my $s = udp();
    $c->{sock} = $s;
    $by_sock{ $s->sockport } = $c;
    $c->{pport} = $s->sockport;
    $sel->add($s);
    my $m = register_msg($c->{ph}, $s);
    $c->{t2} = now_ns();
    $s->send($m, 0, $SIPWAKE);
}
sub check_done { my ($c) = @_; end_cycle($c, 1) if $c->{final} && $c->{t3} }
sub read_emu {
    my $n = sysread($emu, my $chunk, 1 << 20);
    return unless $n;
    $emu_buf .= $chunk;
    while ($emu_buf =~ s/^([^\n]*)\n//) {
        my $l = $1;
        next unless $l =~ /"event": "request"/;
        my ($cid) = $l =~ /call-id\\":\\"([^"\\]+)/ or next;
        my ($t1) = $l =~ /"recv_ns": (\d+)/ or next;
        my $c = $cyc{$cid} or next;
        wake($c, $t1);
    }
}
sub caller_input {
    my ($m) = @_;
    my $code = status_of($m) or return;
    my $c = $cyc{ header_of($m, 'Call-ID|i') // '' } or return;
    return if $code < 200;
    if (header_of($m, 'CSeq') =~ /BYE/) {    # the call is over
        $c->{final} = 1;
        return check_done($c);
    }
    return if $c->{answered}++;
    if ($code >= 300) {    # not expected: counted as a failed cycle
        $caller->send("ACK sip:$c->{ph}{user}\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bKli$c->{id}\r\n"
            . "Max-Forwards: 70\r\nFrom: <sip:caller\@example.com>;tag=lc$c->{id}\r\nTo: " . header_of($m, 'To|t') . "\r\n"
            . "Call-ID: $c->{id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n", 0, $SIPWAKE);
        return end_cycle($c, 0);
    }
    # 200: ACK and BYE to the phone's Contact through the proxy (its Record-Route)
    my $to = header_of($m, 'To|t');
    my ($target) = (header_of($m, 'Contact|m') // '') =~ /<([^>]+)>/;
    my $route = join(', ', reverse(header_of($m, 'Record-Route') // ()));
    for my $req (['ACK', 1, 'a'], ['BYE', 2, 'b']) {
        $caller->send("$req->[0] $target SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bKl$req->[2]$c->{id}\r\n"
            . ($route ? "Route: $route\r\n" : '')
            . "Max-Forwards: 70\r\nFrom: <sip:caller\@example.com>;tag=lc$c->{id}\r\nTo: $to\r\n"
            . "Call-ID: $c->{id}\r\nCSeq: $req->[1] $req->[0]\r\nContent-Length: 0\r\n\r\n", 0, $SIPWAKE);
    }
}
sub phone_input {
    my ($c, $m, $t, $from) = @_;
    my ($method) = $m =~ /^([A-Z]+) / or return;
    return if $method eq 'ACK';
    $c->{t3} //= $t if $method eq 'INVITE';
    my ($head) = split /\r\n\r\n/, $m, 2;
    my $resp = "SIP/2.0 200 OK\r\n";
    for (split /\r\n/, $head) {
        $resp .= "$_\r\n" if /^(Via|v|Record-Route|From|f|Call-ID|i|CSeq)\s*:/i;
        $resp .= "$_" . (/;tag=/ ? '' : ';tag=p1') . "\r\n" if /^(To|t)\s*:/i;
    }
    $resp .= "Contact: <sip:$c->{ph}{user}\@127.0.0.1:" . $c->{sock}->sockport . ">\r\n" if $method eq 'INVITE';
    # answered where it came from (sipwake's Via names that address)
    $c->{sock}->send("${resp}Content-Length: 0\r\n\r\n", 0, $from);
}

while ($done + $failed < $total) {
    start_cycle() while $started < $total && keys(%cyc) < $o{concurrency} && @idle;
    # the emulator's log is polled only while a push is awaited, every millisecond (a phone's
    # reaction to its push is outside both figures); otherwise select sleeps until a packet,
    # so the driver does not take CPU from sipwake on a two-core machine
    my @r = $sel->can_read((grep { !$_->{t1} } values %cyc) ? 0.001 : 0.05);
    my $t = now_ns();
    for my $s (@r) {
        while (defined(my $from = $s->recv(my $m, 65535, 0x40))) {    # MSG_DONTWAIT
            last if $m eq '';
            print STDERR "<<< ", ($s == $caller ? 'caller' : 'phone'), "\n$m\n" if $o{debug};
            if ($s == $caller) { caller_input($m) }
            elsif (my $c = $by_sock{ $s->sockport }) { phone_input($c, $m, $t, $from) }
        }
    }
    read_emu();
    my $tnow = time;
    for my $c (grep { $tnow > $_->{deadline} } values %cyc) {
        printf STDERR "push_latency: %s timed out (%s)\n", $c->{id},
            !$c->{t1} ? 'no push' : !$c->{t3} ? 'no INVITE on the new flow' : 'no final answer';
        end_cycle($c, 0);
    }
}

if ($o{csv}) {
    open my $f, '>', $o{csv} or die "push_latency: $o{csv}: $!\n";
    print $f "call_id;t0_ns;t1_ns;t2_ns;t3_ns;caller_port;phone_port\n";
    print $f join(';', @$_), "\n" for @rows;
    close $f or die "push_latency: $o{csv}: $!\n";
}
sub pct {    # nearest rank, in µs with one decimal
    my ($p, @v) = @_;
    return 'NA' unless @v;
    my $i = int($p * @v + 0.999999) - 1;
    $i = 0 if $i < 0;
    return sprintf('%.1f', $v[$i] / 1000);
}
my @a = sort { $a <=> $b } map { $_->[2] - $_->[1] } @rows;
my @b = sort { $a <=> $b } map { $_->[4] - $_->[3] } @rows;
printf "wakes %d ok %d failed %d invite_push p50 %s p99 %s p999 %s max %s reregister_invite p50 %s p99 %s p999 %s max %s\n",
    scalar @rows, $done, $failed, (map { pct($_, @a) } 0.5, 0.99, 0.999, 1), (map { pct($_, @b) } 0.5, 0.99, 0.999, 1);
exit 0;
