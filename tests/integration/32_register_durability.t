#!/usr/bin/perl
# A 200 to a REGISTER means the binding is stored (issue 12): sipwake is killed with SIGKILL
# in the middle of a REGISTER burst, and every binding that was answered 200 — including
# the 200s that reached the socket just before the process died — is in the location table.
# A few rounds, each killed at a different point of its burst.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX qw(:sys_wait_h);
use Sipwake;

my $sw = Sipwake->new;
my $round = 0;
for my $kill_at (150, 220, 290) {
    $round++;
    $sw->start;
    my $ua = $sw->ua(user => 'x');
    my $port = $ua->local_port;
    my $N = 400;
    # one REGISTER per AOR, all sent at once (UDP); the server answers them as it goes
    for my $i (1 .. $N) {
        my $u = "r$round-u$i";
        $ua->send_raw("REGISTER sip:example.com SIP/2.0\r\n"
            . "Via: SIP/2.0/UDP 127.0.0.1:$port;rport;branch=z9hG4bKd$round-$i\r\n"
            . "Max-Forwards: 70\r\nFrom: <sip:$u\@example.com>;tag=d$i\r\nTo: <sip:$u\@example.com>\r\n"
            . "Call-ID: dur-$round-$i\r\nCSeq: 1 REGISTER\r\nContact: <sip:$u\@127.0.0.1:$port>\r\n"
            . "Expires: 3600\r\nContent-Length: 0\r\n\r\n");
        sleep 0.001 if $i % 50 == 0; # let the server drain its socket buffer
    }
    my %acked;
    my $deadline = time + 20;
    while (keys %acked < $kill_at && time < $deadline) {
        my $m = $ua->recv_raw(1) // next;
        $acked{$1} = 1 if $m =~ /^SIP\/2\.0 200 .*\r\nTo: <sip:(r$round-u\d+)\@/s;
    }
    # the kill follows the 200 that made the count at once: that binding's write is the
    # youngest, still in flight if it was acknowledged before it was committed
    kill 'KILL', $sw->{pid};
    waitpid($sw->{pid}, 0);
    delete $sw->{pid};
    while (defined(my $m = $ua->recv_raw(0.2))) { # what reached the socket before it died
        $acked{$1} = 1 if $m =~ /^SIP\/2\.0 200 .*\r\nTo: <sip:(r$round-u\d+)\@/s;
    }
    ok(keys %acked >= $kill_at, "round $round: SIGKILL after " . scalar(keys %acked) . " of $N REGISTERs answered 200");
    my %stored = map { $_ => 1 } split /\n/, $sw->sql("SELECT username FROM location WHERE username LIKE 'r$round-%'");
    my @lost = sort grep { !$stored{$_} } keys %acked;
    is(scalar(@lost), 0, "round $round: every binding answered 200 is in the store")
        or diag(scalar(@lost) . ' answered 200 but not stored, e.g. ' . join(' ', @lost[0 .. ($#lost < 4 ? $#lost : 4)]));
}

# a retransmission that arrives while the 200 waits for the commit is absorbed by the
# transaction, not processed again (which would answer 400: CSeq not higher)
$sw->start;
my $ua = $sw->ua(user => 'rtx');
my $msg = $ua->register_msg(expires => 600);
$ua->send_raw($msg);
$ua->send_raw($msg);
my @codes;
while (defined(my $m = $ua->recv_raw(0.5))) {
    push @codes, Sipwake::UA::parse_response($m)->{code};
}
ok(@codes >= 1 && !grep({ $_ != 200 } @codes), 'a REGISTER sent twice at once: answered 200 only (' . "@codes" . ')');
is($sw->sql_wait("SELECT count(*) FROM location WHERE username='rtx'", '1'), '1', 'and stored once');
ok($sw->stop, 'stopped cleanly');
done_testing();
