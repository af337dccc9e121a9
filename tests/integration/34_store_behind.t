#!/usr/bin/perl
# A store that falls behind (here: another process holds SQLite's write lock, as a slow disk or
# an unreachable MongoDB would hold the commits) must not take the REGISTER path down with it:
# once its oldest unfinished write has waited [store] max_wait_ms, a new REGISTER is answered
# 503 with Retry-After at once, instead of waiting behind the backlog until the phone gives
# up; the ones already queued are answered when the store catches up, and once it has, new
# REGISTERs get 200 again.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Handle;
use Sipwake;

my $sw = Sipwake->new(config => { store => { max_wait_ms => 300 } });
$sw->start;
my $alice = $sw->ua(user => 'alice');
is($alice->register(expires => 600)->{code}, 200, 'alice registers while the store keeps up');

# another process takes the database's write lock and keeps it
open(my $lock, '|-', 'sqlite3 ' . $sw->db . ' > /dev/null') or die "sqlite3: $!";
$lock->autoflush(1);
print $lock "PRAGMA busy_timeout = 0;\nBEGIN IMMEDIATE;\n";
my $held = Sipwake::wait_until(sub {
    `sqlite3 -cmd 'PRAGMA busy_timeout = 0' @{[$sw->db]} 'BEGIN IMMEDIATE; ROLLBACK;' 2>&1` =~ /locked/;
}, 5);
ok($held, 'another process holds the write lock');

# REGISTERs keep coming, one every 100 ms from a phone of its own each, until one is refused
my $ua = $sw->ua(user => 'probe');
my (%sent, $refused, $delay, $n);
my $end = time + 8;
while (!$refused && time < $end) {
    $n++;
    my $cid = "behind-$n";
    $ua->send_raw($ua->register_msg(user => "p$n", call_id => $cid, cseq => 1, expires => 600));
    $sent{$cid} = time;
    while (my $m = $ua->recv_raw(0.1)) {
        my ($c) = $m =~ /^Call-ID: (\S+)/mi;
        next unless $m =~ m{^SIP/2\.0 503 } && $m =~ /The store is behind/ && $c && $sent{$c};
        $refused = $m;
        $delay = time - $sent{$c};
        last;
    }
}
ok($refused, "a REGISTER is refused while the store is behind (after $n sent)");
like($refused // '', qr/^Retry-After: 5\r$/m, 'with Retry-After');
ok(defined $delay && $delay < 1, sprintf('at once (%.3f s after it was sent)', $delay // -1));
ok($sw->wait_log(qr/answered 503: the store is \d+ ms behind \(\[store\] max_wait_ms 300\)/, 5),
   'and logged with how far behind');

# the lock goes: the store catches up, and REGISTERs get 200 again
print $lock "ROLLBACK;\n";
close $lock;
my $ok = Sipwake::wait_until(sub {
    my $r = $sw->ua(user => 'after')->register(expires => 600, timeout => 2);
    $r && $r->{code} == 200;
}, 20);
ok($ok, 'once the store has caught up, a REGISTER gets 200 again');
ok($sw->metric('sipwake_store_registers_refused_behind') >= 1, 'counted in store:registers_refused_behind');
ok($sw->alive, 'sipwake kept running');
ok($sw->stop, 'and stops with SIGTERM');
done_testing();
