#!/usr/bin/perl
# Graceful overload (issue 15) in gateway mode: the upstream's requests are never refused.
# A PBX's INVITE is a call it already accepted for one of the phones; a 503 with Retry-After
# from a proxy tells it not to send sipwake anything for that long (RFC 3261 §21.5.4), so a
# PBX with failover (Kamailio's dispatcher, Asterisk's qualify) would take sipwake out for
# every phone because of the phones' own load. The upstream is a Perl socket on 127.0.0.2;
# its INVITEs are queued behind a burst of new INVITEs from the phones' side, long enough for
# those to be refused 503: the PBX's are served (480: their key leads to no binding), while
# the same INVITE from another port of the PBX's host (not the upstream) is refused.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Socket qw(SO_RCVBUF);
use Time::HiRes qw(time);
use Sipwake;

my $policy = <<'LUA';
-- every INVITE costs 5 ms of CPU: a burst of them fills the receive queue
local function spin(ms)
    local stop = os.clock() + ms / 1000
    while os.clock() < stop do end
end
return {
    route = function(req, ctx)
        spin(5)
        if ctx.from_upstream then return { relay = "bindings" } end
        return { reply = { code = 480, reason = "Nobody Here" } }
    end,
}
LUA

my $pbx_port = Sipwake::free_port();
my $sw = Sipwake->new(policy => $policy, config => {
    sip => { overload_queue_ms => 100 },
    policy => { time_budget_ms => 100 },
    upstream => { address => "udp:127.0.0.2:$pbx_port" },
});
$sw->start;
my $port = $sw->port;

my $flood = $sw->ua(user => 'flood');
$flood->sock->sockopt(SO_RCVBUF, 4 * 1024 * 1024) or die "SO_RCVBUF: $!";
my $pbx = $sw->ua(user => 'pbx', local_addr => '127.0.0.2', local_port => $pbx_port);
my $other = $sw->ua(user => 'other', local_addr => '127.0.0.2');

sub invite {
    my ($ua, $ruri, $id) = @_;
    my $host = $ua->{local_addr} // '127.0.0.1';
    my $p = $ua->local_port;
    $ua->send_raw("INVITE $ruri SIP/2.0\r\nVia: SIP/2.0/UDP $host:$p;rport;branch=z9hG4bK$id\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:x\@example.com>;tag=$id\r\nTo: <$ruri>\r\n"
        . "Call-ID: $id\r\nCSeq: 1 INVITE\r\nContact: <sip:x\@$host:$p>\r\n"
        . "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE\r\nUser-Agent: softphone/1.0\r\n"
        . "Content-Length: 0\r\n\r\n");
}

# the final answers a socket gets for the Call-IDs ids: Call-ID => code
sub finals {
    my ($ua, $ids, $timeout) = @_;
    my %want = map { $_ => 1 } @$ids;
    my %got;
    my $deadline = time + $timeout;
    while (grep { !$got{$_} } keys %want) {
        my $left = $deadline - time;
        last if $left <= 0;
        my $m = $ua->recv_raw($left) // last;
        my ($code) = $m =~ /^SIP\/2\.0 (\d{3})/;
        my ($id) = $m =~ /^(?:Call-ID|i)\s*:\s*(\S+)\r$/mi;
        $got{$id} //= $code if $code && $code >= 200 && $id && $want{$id};
    }
    return \%got;
}

my $key = '0' x 24; # a masqueraded contact whose binding is gone
my (@flood, @pbx, @other);
for my $i (1 .. 150) {
    push @flood, "ovl-up-f$i-$$";
    invite($flood, "sip:nobody$i\@example.com", $flood[-1]);
}
for my $i (1 .. 5) {
    push @pbx, "ovl-up-pbx$i-$$";
    invite($pbx, "sip:$key\@127.0.0.1:$port", $pbx[-1]);
    push @other, "ovl-up-other$i-$$";
    invite($other, "sip:$key\@127.0.0.1:$port", $other[-1]);
}
my $fg = finals($flood, \@flood, 30);
my $pg = finals($pbx, \@pbx, 30);
my $og = finals($other, \@other, 30);
ok(scalar(grep { ($fg->{$_} // 0) == 503 } @flood) >= 20, 'the burst overloaded sipwake: new INVITEs refused 503');
is(scalar(grep { $pg->{$_} } @pbx), 5, "every INVITE of the upstream got a final answer");
is(scalar(grep { ($pg->{$_} // 0) == 480 } @pbx), 5,
   "none of the upstream's INVITEs was refused: each was served, 480 (" . join(' ', map { $pg->{$_} // '-' } @pbx) . ')');
is(scalar(grep { ($og->{$_} // 0) == 503 } @other), 5,
   "the same INVITEs from another port of its host were (" . join(' ', map { $og->{$_} // '-' } @other) . ')');
ok($sw->stop, 'clean shutdown, no sanitizer report');
done_testing;
