#!/usr/bin/perl
# Graceful overload (issue 15) needs a deep UDP receive queue: a new request is refused once
# it waited overload_queue_ms, and a queue that overflows first makes the kernel drop
# datagrams blindly instead. The kernel cuts SO_RCVBUF to net.core.rmem_max (212,992 bytes
# on a stock Debian), so sipwake asks with SO_RCVBUFFORCE when it may (CAP_NET_ADMIN), and
# says at start, with the sysctl to raise, when it got less than [sip] udp_queue_kb. Asked
# for twice rmem_max: with CAP_NET_ADMIN the queue is that deep; without (setpriv drops the
# capability), it is rmem_max and the log says so.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Sipwake;

plan skip_all => 'needs root and setpriv' unless $> == 0 && -x '/usr/bin/setpriv';

my $rmem_max = do { open my $f, '<', '/proc/sys/net/core/rmem_max' or die; my $v = <$f>; chomp $v; $v };
my $ask_kb = int(2 * $rmem_max / 1024);

# the receive buffer the kernel gave sipwake's UDP listener (ss: skmem rb, twice the queue)
sub rb_of {
    my ($port) = @_;
    my $out = `ss -uamnH 'sport = :$port' 2>/dev/null`;
    return $out =~ /\brb(\d+)/ ? $1 : undef;
}

my $sw = Sipwake->new(config => { sip => { udp_queue_kb => $ask_kb } });
$sw->start;
is(rb_of($sw->port), 2 * $ask_kb * 1024, "with CAP_NET_ADMIN: the $ask_kb KB asked, past rmem_max ($rmem_max)");
unlike($sw->log, qr/receive queue of/, 'no warning');
ok($sw->stop, 'clean shutdown');

my $cut = Sipwake->new(config => { sip => { udp_queue_kb => $ask_kb } },
    shell => 'exec setpriv --inh-caps=-net_admin --bounding-set=-net_admin "$@"');
$cut->start;
is(rb_of($cut->port), 2 * $rmem_max, 'without it: cut to rmem_max');
my $kb = int($rmem_max / 1024);
like($cut->log, qr/ warn +udp: the receive queue of udp:127\.0\.0\.1:\d+ is $kb KB, not the $ask_kb KB asked \(\[sip\] udp_queue_kb\).*net\.core\.rmem_max/,
     'a warning at start says so, and what to raise');
ok($cut->stop, 'clean shutdown');
done_testing;
