#!/usr/bin/perl
# soak_phones.pl — the push phones and the MESSAGE sender of tests/bench/soak.sh, in one
# process, over UDP on loopback, with the integration tests' SIP user agent (tests/lib/Sipwake.pm).
#
#   call phones (pc0000...): registered with RFC 8599 push parameters and a +sip.instance,
#     then asleep (no socket). When the APNs emulator's log (--emu-log) shows a push accepted
#     for a phone's token, the phone wakes at once: it registers again from a new port and
#     answers what comes there (the parked INVITE: 200, then the BYE: 200), then sleeps.
#     The callers are SIPp (tests/bench/uac_call.xml), started by soak.sh.
#   message phones (pm0000...): the same, but a push (an alert for a stored MESSAGE) wakes
#     the phone only --wake-delay seconds later, so MESSAGEs wait in the store; woken, it
#     answers every MESSAGE delivered to it 200 and sleeps when none came for 3 s.
#   the sender: --msg-rate MESSAGEs a second to random message phones, each retransmitted
#     (RFC 3261 timer E, up to 32 s) until a final answer.
# For --duration seconds; then every message phone wakes once more and takes what is left
# (bounded: --drain seconds), and the process exits with a summary line on stdout.
#
# Its log (--out FILE, flushed per line; T is the epoch time it was seen):
#   T reg USER PORT EXPIRES   a REGISTER of USER's contact at PORT answered 200
#   T ack CALL-ID CODE        a MESSAGE answered 2xx (202: stored for later)
#   T got CALL-ID USER        a MESSAGE delivered to a phone (answered 200)
#   T call USER               an INVITE answered 200 by a woken phone
# which soak_lost.pl reads for its count of acknowledged bindings and messages lost.
# Push tokens are never written anywhere.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Getopt::Long;
use IO::Select;
use IO::Handle;
use Time::HiRes qw(time sleep);
use Sipwake;

my %o = (port => 5070, 'call-phones' => 100, 'msg-phones' => 100, 'msg-rate' => 5,
    'wake-delay' => 10, duration => 600, drain => 60, seed => 1);
GetOptions(\%o, 'port=i', 'emu-log=s', 'call-phones=i', 'msg-phones=i', 'msg-rate=f',
    'wake-delay=f', 'duration=f', 'drain=f', 'out=s', 'seed=i', 'users-csv=s') or die "bad options\n";
srand($o{seed});
my $srv = bless { port => $o{port} }, 'Sipwake';    # what Sipwake::UA needs of a server
open my $LOG, '>>', $o{out} or die "$o{out}: $!\n";
$LOG->autoflush(1);
sub event { printf $LOG "%.3f %s\n", time, join(' ', @_) }

my $TEAM = 'TEAM123456';
my (@phones, %by_token, %by_port);
for my $kind (qw(call msg)) {
    my $n = $o{ $kind eq 'call' ? 'call-phones' : 'msg-phones' };
    for my $i (0 .. $n - 1) {
        my $user = sprintf('%s%04d', $kind eq 'call' ? 'pc' : 'pm', $i);
        my $token = sprintf('%08x%08x%08x%08x', $kind eq 'call' ? 1 : 2, $i, $$, 0x5eed0000 + $i);
        my $ph = { user => $user, kind => $kind, token => $token, cseq => 0,
            call_id => "soak-$user-$$", state => 'asleep', uuid => sprintf('00000000-0000-4000-8000-%012x', ($kind eq 'call' ? 0 : 1 << 40) + $i) };
        push @phones, $ph;
        $by_token{$token} = $ph;
    }
}
if ($o{'users-csv'}) {  # the callees of the SIPp callers
    open my $f, '>', $o{'users-csv'} or die;
    print $f "SEQUENTIAL\n";
    print $f "$_->{user};\n" for grep { $_->{kind} eq 'call' } @phones;
    close $f;
}
my %st = map { $_ => 0 } qw(sent acked stored refused timeout delivered dup wakes calls reg_fail);
my %seen_got;

# ---- phones
sub contact {
    my ($ph) = @_;
    my $param = $ph->{kind} eq 'call' ? "$TEAM.org.example.app.voip" : "$TEAM.org.example.app";
    return "sip:$ph->{user}\@127.0.0.1:" . $ph->{ua}->local_port
        . ";pn-provider=apns;pn-param=$param;pn-prid=$ph->{token}";
}
sub wake {
    my ($ph) = @_;
    close_phone($ph);
    $ph->{ua} = Sipwake::UA->new(server => $srv, user => $ph->{user}, transport => 'udp');
    $by_port{ $ph->{ua}->local_port } = $ph;
    $ph->{state} = 'registering';
    $ph->{reg} = $ph->{ua}->register_msg(contact => contact($ph), expires => 3600, cseq => ++$ph->{cseq},
        call_id => $ph->{call_id}, contact_params => qq(;+sip.instance="<urn:uuid:$ph->{uuid}>"));
    $ph->{ua}->send_raw($ph->{reg});
    $ph->{retx} = 0.5;
    $ph->{next} = time + 0.5;
    $ph->{give_up} = time + 32;
    $st{wakes}++;
}
sub close_phone {
    my ($ph) = @_;
    return unless $ph->{ua};
    delete $by_port{ $ph->{ua}->local_port };
    close $ph->{ua}->sock;
    delete $ph->{ua};
    $ph->{state} = 'asleep';
    delete $ph->{wake_at};
}
sub phone_input {
    my ($ph, $m) = @_;
    if ($m =~ m{^SIP/2\.0 (\d{3})}) {
        my $code = $1;
        return unless $ph->{state} eq 'registering' && $m =~ /^CSeq:\s*(\d+) REGISTER/mi && $1 == $ph->{cseq};
        return if $code < 200;
        if ($code == 200) {
            event('reg', $ph->{user}, $ph->{ua}->local_port, 3600);
            $ph->{state} = 'awake';
            $ph->{idle_until} = time + ($ph->{kind} eq 'call' ? 10 : 3);
        } else {
            $st{reg_fail}++;
            close_phone($ph);
        }
        return;
    }
    my ($method) = $m =~ /^(\w+) / or return;
    my ($cid) = $m =~ /^(?:Call-ID|i)\s*:\s*(\S+)/mi;
    return if $method eq 'ACK';
    my $tag = 'p' . substr(Digest::MD5::md5_hex($cid // ''), 0, 10);
    $ph->{ua}->answer($m, 200, reason => 'OK', tag => $tag,
        contact => "sip:$ph->{user}\@127.0.0.1:" . $ph->{ua}->local_port);
    if ($method eq 'MESSAGE') {
        if ($seen_got{$cid}++) { $st{dup}++ } else { $st{delivered}++; event('got', $cid, $ph->{user}) }
        $ph->{idle_until} = time + 3;
    } elsif ($method eq 'INVITE') {
        unless ($ph->{answered}{$cid}++) { $st{calls}++; event('call', $ph->{user}) }
        $ph->{idle_until} = time + 10;
    } elsif ($method eq 'BYE') {
        $ph->{idle_until} = time + 0.5;
    }
}

# ---- the sender
my $sender = Sipwake::UA->new(server => $srv, user => 'sender', transport => 'udp');
my $sp = $sender->local_port;
my %pending;    # Call-ID -> { msg, next, retx, give_up }
my $n_msg = 0;
my $msg_phones = [grep { $_->{kind} eq 'msg' } @phones];
sub send_message {
    my $ph = $msg_phones->[int(rand(@$msg_phones))];
    my $i = ++$n_msg;
    my $cid = "soak-msg-$$-$i";
    my $body = "soak message $i for $ph->{user}";
    my $m = "MESSAGE sip:$ph->{user}\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$sp;rport;branch=z9hG4bKsoak$$" . "m$i\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:sender\@example.com>;tag=s$i\r\nTo: <sip:$ph->{user}\@example.com>\r\n"
        . "Call-ID: $cid\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
    $sender->send_raw($m);
    $pending{$cid} = { msg => $m, next => time + 0.5, retx => 0.5, give_up => time + 32 };
    $st{sent}++;
}
sub sender_input {
    my ($m) = @_;
    my ($code) = $m =~ m{^SIP/2\.0 (\d{3})} or return;
    my ($cid) = $m =~ /^(?:Call-ID|i)\s*:\s*(\S+)/mi;
    return if $code < 200 || !$cid || !$pending{$cid};
    delete $pending{$cid};
    if ($code < 300) {
        $st{acked}++;
        $st{stored}++ if $code == 202;
        event('ack', $cid, $code);
    } else {
        $st{refused}++;
    }
}

# ---- the emulator's log: who was pushed
my ($EMU, $emu_buf) = (undef, '');
sub read_pushes {
    open $EMU, '<', $o{'emu-log'} or return unless $EMU;
    while (1) {
        my $n = sysread($EMU, my $chunk, 65536);
        last unless $n;
        $emu_buf .= $chunk;
    }
    while ($emu_buf =~ s/^([^\n]*)\n//) {
        my $l = $1;
        my ($token) = $l =~ m{"path": "/3/device/([0-9a-fA-F]+)"} or next;
        next unless $l =~ /"status": 200\b/;
        my $ph = $by_token{$token} or next;
        if ($ph->{kind} eq 'call') {
            wake($ph) if $ph->{state} ne 'registering';
        } elsif ($ph->{state} eq 'asleep' && !$ph->{wake_at}) {
            $ph->{wake_at} = time + $o{'wake-delay'};
        }
    }
}

# ---- the loop
sub pump {
    my ($until) = @_;
    while ((my $left = $until - time) > 0) {
        my $sel = IO::Select->new($sender->sock, map { $_->{ua}->sock } grep { $_->{ua} } @phones);
        for my $s ($sel->can_read($left < 0.02 ? $left : 0.02)) {
            my $data;
            $s->recv($data, 70000);
            next unless defined $data && length $data;
            if ($s == $sender->sock) { sender_input($data) }
            elsif (my $ph = $by_port{ $s->sockport }) { phone_input($ph, $data) }
        }
        my $now = time;
        read_pushes() if $o{'emu-log'};
        for my $cid (keys %pending) {
            my $p = $pending{$cid};
            if ($now >= $p->{give_up}) { delete $pending{$cid}; $st{timeout}++; next }
            next if $now < $p->{next};
            $sender->send_raw($p->{msg});
            $p->{retx} = $p->{retx} * 2 > 4 ? 4 : $p->{retx} * 2;
            $p->{next} = $now + $p->{retx};
        }
        for my $ph (@phones) {
            if ($ph->{state} eq 'registering') {
                if ($now >= $ph->{give_up}) { $st{reg_fail}++; close_phone($ph) }
                elsif ($now >= $ph->{next}) {
                    $ph->{ua}->send_raw($ph->{reg});
                    $ph->{retx} = $ph->{retx} * 2 > 4 ? 4 : $ph->{retx} * 2;
                    $ph->{next} = $now + $ph->{retx};
                }
            } elsif ($ph->{state} eq 'awake' && $now >= $ph->{idle_until}) {
                close_phone($ph);
            } elsif ($ph->{state} eq 'asleep' && $ph->{wake_at} && $now >= $ph->{wake_at}) {
                wake($ph);
            }
        }
    }
}

# register everyone (50 at a time), then go to sleep
my @todo = @phones;
while (@todo) {
    wake($_) for splice(@todo, 0, 50);
    pump(time + 0.2);
}
my $deadline = time + 40;
pump(time + 0.1) while time < $deadline && grep { $_->{state} eq 'registering' } @phones;
close_phone($_) for @phones;
print "phones ready\n";
STDOUT->flush;

my $start = time;
my $next_msg = $start;
while (time < $start + $o{duration}) {
    while ($o{'msg-rate'} > 0 && time >= $next_msg) {
        send_message();
        $next_msg += 1 / $o{'msg-rate'};
    }
    pump(time + 0.05);
}
# drain: every message phone comes back once more and takes what is left
$_->{state} eq 'asleep' && wake($_) for @$msg_phones;
my $end = time + $o{drain};
my $last = $st{delivered};
my $quiet = time + 5;
while (time < $end && (%pending || time < $quiet)) {
    pump(time + 0.2);
    for (@$msg_phones) {    # a phone that slept again comes back once more
        $_->{state} eq 'asleep' && !$_->{drained}++ && wake($_);
    }
    if ($st{delivered} != $last) { $last = $st{delivered}; $quiet = time + 5 }
    $_->{idle_until} = time + 3 for grep { $_->{state} eq 'awake' } @$msg_phones;
}
printf "messages sent %d acked %d stored %d refused %d timeout %d delivered %d duplicates %d "
    . "wakes %d calls %d reg_failures %d\n", @st{qw(sent acked stored refused timeout delivered dup wakes calls reg_fail)};
