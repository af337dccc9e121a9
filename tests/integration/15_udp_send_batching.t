#!/usr/bin/perl
# UDP sends are batched per loop iteration: the 200s that one store commit releases for a
# burst of REGISTERs (sipwake answers a REGISTER once its binding is committed, from the
# store's completion, outside the socket's read burst) leave in sendmmsg calls, not in one
# sendto each. Watched with strace on the running server: no sendto at all while 20
# REGISTERs sent at once are answered.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Time::HiRes qw(sleep time);
use Sipwake;

my $STRACE = '/usr/bin/strace';
plan skip_all => "no $STRACE (make deps-test)" unless -x $STRACE;

my $sw = Sipwake->new;
$sw->start;
my $N = 20;
my @uas = map { $sw->ua(user => "u$_") } 1 .. $N;
# a first REGISTER each, unwatched: every user exists and the store is warm
is(scalar(grep { ($_->register(contact => "sip:" . $_->{user} . "\@127.0.0.1:" . $_->local_port,
    expires => 600)->{code} // 0) == 200 } @uas), $N, "$N users registered");

my $trace = $sw->dir . '/strace.out';
my $err = $sw->dir . '/strace.err';
my $spid = fork() // die "fork: $!";
if ($spid == 0) {
    open STDERR, '>', $err or die;
    exec $STRACE, '-f', '-e', 'trace=sendto,sendmmsg', '-o', $trace, '-p', $sw->{pid}
        or die "exec strace: $!";
}
my $attached = Sipwake::wait_until(sub {
    open my $fh, '<', $err or return 0;
    local $/;
    my $e = <$fh> // '';
    return $e =~ /attached/ ? 1 : ($e =~ /Operation not permitted|ptrace/ ? -1 : 0);
}, 10);
if (!$attached || $attached < 0) {
    kill 'TERM', $spid;
    waitpid $spid, 0;
    $sw->stop;
    plan skip_all => 'strace cannot attach here (ptrace not permitted)';
}
sleep 0.2; # the other threads of the server are being attached too: not a synchronisation

# all at once, then every answer
$_->send_raw($_->register_msg(contact => "sip:" . $_->{user} . "\@127.0.0.1:" . $_->local_port,
    expires => 600)) for @uas;
my $ok = 0;
for my $ua (@uas) {
    my $deadline = time + 10;
    while (time < $deadline) {
        my $m = $ua->recv_raw($deadline - time) // last;
        if ($m =~ m{^SIP/2\.0 200 }) { $ok++; last }
    }
}
is($ok, $N, "the $N REGISTERs sent at once are all answered 200");
kill 'INT', $spid;
waitpid $spid, 0;

open my $fh, '<', $trace or die "strace output: $!";
my @lines = <$fh>;
close $fh;
my $sendto = grep { /\bsendto\(/ } @lines;
my $sendmmsg = grep { /\bsendmmsg\(/ } @lines;
is($sendto, 0, 'no 200 went out by a lone sendto') or diag join '', grep { /sendto\(/ } @lines[0 .. ($#lines < 20 ? $#lines : 20)];
cmp_ok($sendmmsg, '>=', 1, 'they left in sendmmsg batches');
cmp_ok($sendmmsg, '<', $N, "fewer sendmmsg calls than the $N answers ($sendmmsg)");
is($sw->sql_wait('select count(*) from location where cseq = 2', $N), $N,
   'every binding was stored from the second REGISTER (its CSeq)');
$sw->stop;
done_testing();
