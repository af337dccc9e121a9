#!/usr/bin/perl
# The admin's connections: a burst of idle connections over the limit, all closed at once,
# leaves the admin answering (libmicrohttpd re-arms its listening socket only during a run,
# which sipwake must make happen); one address cannot hold more than
# [admin] max_connections_per_address connections; clients trickling their request's headers a
# byte at a time (slowloris) are closed after [admin] request_timeout, and the admin answers
# others meanwhile.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use IO::Socket::INET;
use Socket qw(SOL_SOCKET SO_LINGER);
use IO::Select;
use Time::HiRes qw(time sleep);
use Sipwake;
use SipwakeAdmin;

my $hport = Sipwake::free_port();
my $sw = Sipwake->new(config => {
    admin => { enabled => 'yes', listen => "127.0.0.1:$hport", max_connections_per_address => 16 },
});
$sw->start;
ok($sw->wait_log(qr{admin: listening on http://127\.0\.0\.1:$hport}, 5), 'the admin listens');
# clients that close their connection after each answer, so the server's sockets can be counted
sub client {
    my ($src) = @_;
    my $c = SipwakeAdmin->new(port => $hport);
    $c->{http} = HTTP::Tiny->new(timeout => 20, keep_alive => 0, $src ? (local_address => $src) : ());
    return $c;
}
is(client()->get('/')->{status}, 200, 'it answers');

# Sockets the server process holds (its accepted connections among them).
sub server_sockets {
    opendir my $d, "/proc/$sw->{pid}/fd" or return -1;
    my $n = grep { (readlink("/proc/$sw->{pid}/fd/$_") // '') =~ /^socket:/ } readdir $d;
    closedir $d;
    return $n;
}
sub wait_until {
    my ($cond, $timeout) = @_;
    my $deadline = time + $timeout;
    while (time < $deadline) {
        return 1 if $cond->();
        sleep 0.05;
    }
    return $cond->();
}
sub connect_from {
    my ($src) = @_;
    return IO::Socket::INET->new(LocalAddr => $src, PeerAddr => '127.0.0.1', PeerPort => $hport,
                                 Proto => 'tcp', Timeout => 5);
}
# 1 when the server closed s (EOF or reset) within timeout seconds.
sub closed_by_server {
    my ($s, $timeout) = @_;
    return 0 unless IO::Select->new($s)->can_read($timeout);
    my $n = sysread($s, my $buf, 1);
    return !$n;
}

# ---- one address holds at most max_connections_per_address connections
my $base = server_sockets();
ok($base > 0, "the server's sockets can be counted ($base)");
my @one = grep { defined } map { connect_from('127.0.0.1') } 1 .. 20;
is(scalar @one, 20, '20 connections made from 127.0.0.1');
my $refused = grep { closed_by_server($_, 5) } @one[16 .. 19];
is($refused, 4, 'the 4 over [admin] max_connections_per_address (16) are closed by the server');
my $kept = grep { !IO::Select->new($_)->can_read(0) } @one[0 .. 15];
is($kept, 16, 'the first 16 stay open');
is(client('127.0.0.2')->get('/')->{status}, 200, 'another address is still served meanwhile');
close $_ for @one;
ok(wait_until(sub { server_sockets() <= $base }, 10), 'they are released once closed');

# ---- 140 connections (over the limit of 128) that started a request and wait, all closed at
# once; then again, closed with a reset
for my $how ('closed', 'reset') {
    my @idle;
    for my $i (0 .. 139) {
        my $s = connect_from('127.0.0.' . (10 + int($i / 14)));
        next unless $s;
        print $s "GET / HTTP/1.1\r\n";
        push @idle, $s;
    }
    is(scalar @idle, 140, "$how: 140 connections made (from 10 addresses, 14 each), each with half a request");
    ok(wait_until(sub { server_sockets() >= $base + 128 }, 20), "$how: the server holds 128 of them (its limit)")
        or diag 'sockets: ' . server_sockets() . ", base $base";
    if ($how eq 'reset') {
        setsockopt($_, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0)) for @idle;
    }
    close $_ for @idle;
    my $r = client()->get('/');
    is($r->{status}, 200, "$how all at once: the admin still answers") or diag "$r->{status} $r->{content}";
    is(client()->get('/metrics')->{status}, 401, "$how: /metrics too (401 without a token)");
    # (the few the server accepted from its backlog after their client had gone may wait for
    # [admin] request_timeout, 10 s: they are not waited for)
}

ok($sw->alive, 'sipwake still running');
ok($sw->stop, 'stops cleanly');
unlike($sw->log, qr/AddressSanitizer|runtime error|LeakSanitizer/, 'no sanitizer reports');

# ---- slowloris: 8 addresses x 16 connections (the admin's 128) trickling their headers a byte
# every half second, which MHD's inactivity timeout never ends; with [admin] request_timeout = 2
# the server closes each about 2 s after it opened, and a 9th address gets its answer.
$SIG{PIPE} = 'IGNORE';
my $deadline_s = 2;
$hport = Sipwake::free_port();
$sw = Sipwake->new(config => {
    admin => { enabled => 'yes', listen => "127.0.0.1:$hport", max_connections_per_address => 16,
               request_timeout => $deadline_s },
});
$sw->start;
ok($sw->wait_log(qr{admin: listening on http://127\.0\.0\.1:$hport}, 5), 'slowloris: the admin listens');
$base = server_sockets();
my (@slow, %opened, %closed_after);
for my $i (0 .. 127) {
    my $s = connect_from('127.0.0.' . (20 + int($i / 16)));
    next unless $s;
    $s->blocking(0);
    syswrite($s, "GET /api/session HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a");
    $opened{$s} = time;
    push @slow, $s;
}
is(scalar @slow, 128, 'slowloris: 128 connections made (8 addresses, 16 each), each with half a request');
my $probe = connect_from('127.0.0.30');
ok($probe, 'a client from a 9th address connects');
print $probe "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
$probe->blocking(0);
my ($answer, $answered_at) = ('', undef);
my $start = time;
my $next_byte = time + 0.5;
while (time < $start + 20 && (!defined $answered_at || keys %closed_after < @slow)) {
    my @ready = IO::Select->new(grep { !exists $closed_after{$_} } @slow)->can_read(0.1);
    for my $s (@ready) {
        my $n = sysread($s, my $buf, 4096);
        $closed_after{$s} = time - $opened{$s} if defined $n && $n == 0 || !defined $n && !$!{EAGAIN};
    }
    if (time >= $next_byte) { # one more byte of the never-ending header
        for my $s (grep { !exists $closed_after{$_} } @slow) {
            $closed_after{$s} = time - $opened{$s} if !defined syswrite($s, 'a') && !$!{EAGAIN};
        }
        $next_byte = time + 0.5;
    }
    if (!defined $answered_at) {
        my $n = sysread($probe, my $buf, 4096);
        $answer .= $buf if $n;
        $answered_at = time - $start if $answer =~ m{^HTTP/1\.1 \d+};
    }
}
ok(defined $answered_at, 'slowloris: the 9th address gets its answer meanwhile'
   . (defined $answered_at ? sprintf(' (after %.1f s)', $answered_at) : ''));
like($answer, qr{^HTTP/1\.1 200}, 'and it is the page');
is(scalar(keys %closed_after), 128, 'slowloris: the server closed all 128 trickling connections');
my @early = grep { $_ < $deadline_s - 0.5 } values %closed_after;
is(scalar @early, 0, 'none before [admin] request_timeout');
ok($sw->wait_log(qr/admin: closed \d+ connections? \(127\.0\.0\.2\d[^)]*\) that sent no complete request within \[admin\] request_timeout \(2 s\)/, 5),
   'the closing is logged');
close $_ for @slow, $probe;

# ---- keep-alive still works: two requests on one connection, then the idle connection is
# closed after request_timeout
sub read_answer {
    my ($s, $timeout) = @_;
    my ($buf, $end) = ('', time + $timeout);
    while (time < $end) {
        last unless IO::Select->new($s)->can_read($end - time);
        my $n = sysread($s, $buf, 65536, length $buf);
        last unless $n;
        if ($buf =~ /\r\n\r\n/ && $buf =~ /^Content-Length:\s*(\d+)/mi) {
            my $len = $1;
            return $buf if length($buf) - (index($buf, "\r\n\r\n") + 4) >= $len;
        }
    }
    return $buf;
}
my $ka = connect_from('127.0.0.31');
print $ka "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
like(read_answer($ka, 10), qr{^HTTP/1\.1 200}, 'keep-alive: a first answer');
print $ka "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
like(read_answer($ka, 10), qr{^HTTP/1\.1 200}, 'keep-alive: a second one on the same connection');
my $idle_from = time;
ok(closed_by_server($ka, 15), 'the idle keep-alive connection is closed by the server afterwards');
ok(time - $idle_from >= $deadline_s - 0.5, 'after request_timeout');
is(client('127.0.0.31')->get('/')->{status}, 200, 'and the client is served on a new one');

ok($sw->alive, 'sipwake still running');
ok($sw->stop, 'stops cleanly');
unlike($sw->log, qr/AddressSanitizer|runtime error|LeakSanitizer/, 'no sanitizer reports');

# ---- clients that send half a request and close at once, 400 of them in a burst from 7
# addresses: each can never complete its request, so it is closed when its end arrives, not
# at request_timeout (30 s here): a client right after the burst is answered within seconds
$hport = Sipwake::free_port();
$sw = Sipwake->new(config => {
    admin => { enabled => 'yes', listen => "127.0.0.1:$hport", max_connections_per_address => 128,
               request_timeout => 30 },
});
$sw->start;
ok($sw->wait_log(qr{admin: listening on http://127\.0\.0\.1:$hport}, 5), 'burst: the admin listens');
my $made = 0;
for my $i (0 .. 399) {
    my $s = connect_from('127.0.' . (40 + $i % 7) . '.' . (2 + int($i / 7)));
    next unless $s;
    syswrite($s, "GET / HTTP/1.1\r\nHo");
    close $s;
    $made++;
}
is($made, 400, 'burst: 400 connections sent half a request and closed');
my $t0 = time;
my $status = 0;
while (time < $t0 + 20) {
    my $c = SipwakeAdmin->new(port => $hport);
    $c->{http} = HTTP::Tiny->new(timeout => 1, keep_alive => 0);
    $status = $c->get('/')->{status};
    last if $status == 200;
}
my $took = time - $t0;
is($status, 200, 'burst: then a client is answered');
ok($took < 10, sprintf('within seconds, not request_timeout (%.1f s)', $took));
ok($sw->stop, 'burst: stops cleanly');
done_testing;
