#!/usr/bin/perl
# soak_lost.pl — what a SIGKILL of sipwake lost, for tests/bench/soak.sh: run after the kill and
# before the restart, on the database as the dead process left it.
#
#   soak_lost.pl DB KILL_TIME PHONES_LOG SIPP_LOG...
#
# Acknowledged bindings: the last REGISTER of each user answered 200 before the kill (the SIPp
# registrations' logs, "<date> <time> <epoch> ack USER EXPIRES", and soak_phones.pl's
# "T reg USER PORT EXPIRES"). One whose expiry is more than MARGIN (2) s after the kill must be
# in the location table with at least that expiry (MARGIN s of rounding allowed) and, for a
# phone, its contact at that port. Lost: "missing" (no row for the user), "stale" (a row from
# an earlier REGISTER: the acknowledged refresh or new contact was not kept). One answered 200
# to Expires: 0 must be gone; "back" counts those still there (reported, not lost).
# Acknowledged MESSAGEs: soak_phones.pl's "T ack CALL-ID CODE"; lost: neither delivered to its
# phone ("T got CALL-ID USER") nor in sipwake_messages.
# Prints one line: "bindings N lost L missing A stale B back C messages M lost X".
use strict;
use warnings;

my ($db, $kill, $phones, @sipp) = @ARGV;
die "usage: soak_lost.pl DB KILL_TIME PHONES_LOG SIPP_LOG...\n" unless $db && $kill && $phones;
my $MARGIN = 2;
my (%last, %acked, %got);    # user -> [t, expires, port]
for my $f (@sipp) {
    open my $fh, '<', $f or next;
    while (<$fh>) {
        my ($t, $u, $e) = /^\S+\t\S+\t(\d+\.\d+) ack (\S+) (\d+)/ or next;
        $last{$u} = [$t, $e, undef] if !$last{$u} || $t >= $last{$u}[0];
    }
}
open my $ph, '<', $phones or die "$phones: $!\n";
while (<$ph>) {
    if (my ($t, $u, $port, $e) = /^(\S+) reg (\S+) (\d+) (\d+)$/) {
        $last{$u} = [$t, $e, $port] if !$last{$u} || $t >= $last{$u}[0];
    } elsif (/^\S+ ack (\S+) \d+$/) {
        $acked{$1} = 1;
    } elsif (/^\S+ got (\S+) /) {
        $got{$1} = 1;
    }
}
close $ph;

sub sql {
    my ($q) = @_;
    open my $fh, '-|', 'sqlite3', '-separator', '|', $db, $q or die "sqlite3: $!\n";
    my @rows = map { chomp; [split /\|/, $_, -1] } <$fh>;
    close $fh or die "sqlite3 failed on $db\n";
    return @rows;
}
my %rows;    # user -> [[contact, expires]...]
push @{ $rows{ $_->[0] } }, [$_->[1], $_->[2]] for sql('SELECT username, contact, expires FROM location');
my %stored = map { $_->[0] => 1 } sql('SELECT call_id FROM sipwake_messages');

my ($n, $missing, $stale, $back) = (0, 0, 0, 0);
for my $u (keys %last) {
    my ($t, $e, $port) = @{ $last{$u} };
    if ($e == 0) {
        $back++ if $rows{$u};
        next;
    }
    my $want = int($t) + $e;
    next if $want <= $kill + $MARGIN;    # expired by the kill: nothing to keep
    $n++;
    if (!$rows{$u}) { $missing++; next }
    my $ok = grep { $_->[1] >= $want - $MARGIN && (!defined $port || $_->[0] =~ /:\Q$port\E(?:[;>]|$)/) } @{ $rows{$u} };
    $stale++ unless $ok;
}
my $lost_msgs = grep { !$got{$_} && !$stored{$_} } keys %acked;
printf "bindings %d lost %d missing %d stale %d back %d messages %d lost %d\n", $n, $missing + $stale,
    $missing, $stale, $back, scalar(keys %acked), $lost_msgs;
