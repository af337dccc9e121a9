#!/usr/bin/perl
# Admin logins under load: an attempt counts against the limiter when it starts, so
# concurrent wrong logins past the limit get 429 at once instead of all being checked;
# passwords are checked (scrypt) on a thread of their own, so a REGISTER that needs the store
# is answered while many logins hash; too many logins at once get 503 at once.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time sleep);
use JSON::PP;
use Sipwake;
use SipwakeAdmin;

my $hport = Sipwake::free_port();
my $sw = Sipwake->new(config => {
    auth => { enabled => 'yes', realm => 'example.com' },
    admin => { enabled => 'yes', listen => "127.0.0.1:$hport", max_connections_per_address => 64 },
});
$sw->write_config;
my $cfg = $sw->config_path;
is(system("printf 'the right password\\n' | $Sipwake::BIN --config $cfg admin add alice >/dev/null 2>&1"), 0,
   'an admin account');
is(system("printf 'bob password ok\\n' | $Sipwake::BIN --config $cfg admin add bob >/dev/null 2>&1"), 0,
   'another');
my ($rc, $out) = $sw->run_bin('user', 'add', 'carol@example.com', 'pw-carol');
is($rc, 0, 'a SIP subscriber') or diag $out;
$sw->start;
ok($sw->wait_log(qr{admin: listening on http://127\.0\.0\.1:$hport}, 5), 'the admin listens');

# Send a login for each [source address, user] at once; returns the sockets (answers read
# later with answers()).
sub send_logins {
    my @socks;
    for my $l (@_) {
        my ($src, $user) = @$l;
        my $s = IO::Socket::INET->new(LocalAddr => $src, PeerAddr => '127.0.0.1', PeerPort => $hport,
                                      Proto => 'tcp', Timeout => 5) or die "connect: $!";
        my $body = encode_json({ user => $user, password => 'not the password' });
        print $s "POST /api/login HTTP/1.1\r\nHost: 127.0.0.1:$hport\r\nContent-Type: application/json\r\n"
            . "Content-Length: " . length($body) . "\r\nConnection: close\r\n\r\n$body";
        push @socks, { sock => $s, buf => '' };
    }
    return \@socks;
}
# Read until every socket has its status line; each gets {status, at} (the time it came).
# on_answer(n) runs after each, with the number answered so far.
sub answers {
    my ($socks, $timeout, $on_answer) = @_;
    my $sel = IO::Select->new(map { $_->{sock} } @$socks);
    my %of = map { ($_->{sock} => $_) } @$socks;
    my $deadline = time + $timeout;
    my $n = 0;
    while ($sel->count && time < $deadline) {
        for my $s ($sel->can_read($deadline - time)) {
            my $c = $of{$s};
            my $got = sysread($s, my $chunk, 4096);
            $c->{buf} .= $chunk if $got;
            if ($c->{buf} =~ m{^HTTP/1\.\d (\d+)} && !$c->{status}) {
                $c->{status} = $1;
                $c->{at} = time;
                $n++;
                $on_answer->($n) if $on_answer;
            }
            if (!$got || $c->{status}) {
                $sel->remove($s);
                close $s;
            }
        }
    }
    return $socks;
}
sub count_status { my ($socks, $st) = @_; scalar grep { ($_->{status} // 0) == $st } @$socks }

# ---- 40 concurrent wrong logins for one account (from 4 addresses, under their own limit)
my $s = answers(send_logins(map { ['127.0.0.' . (2 + $_ % 4), 'alice'] } 0 .. 39), 60);
is(count_status($s, 401), 5, '40 at once for one account: 5 are checked (401)')
    or diag join ' ', map { $_->{status} // '-' } @$s;
is(count_status($s, 429), 35, 'the 35 past the limit get 429');
my ($last_429) = sort { $b <=> $a } map { $_->{at} } grep { $_->{status} == 429 } @$s;
my ($last_401) = sort { $b <=> $a } map { $_->{at} } grep { $_->{status} == 401 } @$s;
ok($last_429 && $last_401 && $last_429 < $last_401, 'the 429s came before the checks ended (no hash waited for)');

# ---- 21 concurrent wrong logins from one address (distinct accounts)
$s = answers(send_logins(map { ['127.0.0.10', "user$_"] } 1 .. 21), 60);
is(count_status($s, 401), 20, '21 at once from one address: 20 are checked (401)')
    or diag join ' ', map { $_->{status} // '-' } @$s;
is(count_status($s, 429), 1, 'the 21st gets 429');

# ---- a REGISTER needing the store is answered while 20 logins hash
my $ua = $sw->ua(user => 'carol');
my $ch = $ua->register(expires => 600);
is($ch->{code}, 401, 'a REGISTER is challenged');
my $auth = $ua->authorization($ch, password => 'pw-carol', algorithm => 'SHA-256');
my $logins = send_logins(map { ['127.0.0.11', "other$_"] } 1 .. 20);
# Read the logins' answers and the REGISTER's in the order they come; the REGISTER goes once
# the first login is answered, when the others wait to be checked (before this fix, in the
# store's queue, ahead of its lookup).
my (@order, $reg_code);
{
    my $sel = IO::Select->new($ua->sock, map { $_->{sock} } @$logins);
    my %of = map { ($_->{sock} => $_) } @$logins;
    my $deadline = time + 120;
    while ((grep { !$_->{status} } @$logins) || !$reg_code) {
        last if time > $deadline;
        for my $fh ($sel->can_read($deadline - time)) {
            if ($fh == $ua->sock) {
                $fh->recv(my $m, 70000);
                next unless $m =~ m{^SIP/2\.0 (\d+)};
                $reg_code = $1;
                push @order, 'R';
                next;
            }
            my $c = $of{$fh};
            my $got = sysread($fh, my $chunk, 4096);
            $c->{buf} .= $chunk if $got;
            if (!$c->{status} && $c->{buf} =~ m{^HTTP/1\.\d (\d+)}) {
                $c->{status} = $1;
                push @order, 'L';
                $ua->send_raw($ua->register_msg(expires => 600, authorization => $auth))
                    if @order == 1;
            }
            if (!$got || $c->{status}) {
                $sel->remove($fh);
                close $fh;
            }
        }
    }
}
is(count_status($logins, 401), 20, '20 logins checked (401)');
is($reg_code, 200, 'the REGISTER sent after the first login was answered: 200');
my $later = grep { $_ eq 'L' } @order[(grep { $order[$_] eq 'R' } 0 .. $#order)[0] // $#order .. $#order];
ok($later >= 10, "it was answered before most of the other logins ($later of 19 came after it)")
    or diag "order: @order";

# ---- too many at once: 503 without waiting
$s = answers(send_logins(map { ['127.0.0.' . (20 + $_ % 3), "many$_"] } 0 .. 44), 120);
my $busy = count_status($s, 503);
ok($busy >= 1, "45 at once from 3 addresses: those past the 32 being checked get 503 ($busy)")
    or diag join ' ', map { $_->{status} // '-' } @$s;
is(count_status($s, 401) + $busy, 45, 'the others are checked (401)');

# ---- the right password still works, and a success is not counted against the address
my $web = SipwakeAdmin->new(port => $hport);
$web->{http} = HTTP::Tiny->new(timeout => 30, local_address => '127.0.0.30');
is($web->login('alice', 'the right password')->{status}, 429, 'alice, locked by the 40 failures: 429');
for (1 .. 19) { $web->login("y$_", 'not the password') }
is($web->login('bob', 'bob password ok')->{status}, 200, 'after 19 failures from an address, the right password: 200');
is($web->login('bob', 'bob password ok')->{status}, 200, 'and again: a success does not count against the address');
ok($sw->alive, 'sipwake still running');
ok($sw->stop, 'stops cleanly');
unlike($sw->log, qr/AddressSanitizer|runtime error|LeakSanitizer/, 'no sanitizer reports');
done_testing;
