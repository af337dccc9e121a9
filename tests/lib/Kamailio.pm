package Kamailio;
# Kamailio from Debian as the upstream PBX of gateway-mode tests: started on a loopback
# address with tests/integration/kamailio-upstream.cfg, stopped when the object goes.
use strict;
use warnings;
use File::Temp qw(tempdir);
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

my $ROOT = $Sipwake::ROOT;

# new(addr => '127.0.0.2', port => N, tcp => 1 (also listen on TCP),
#     defines => ['WITH_AUTH', 'MAX_EXPIRES=600'])
sub new {
    my ($class, %o) = @_;
    my $dir = tempdir('kamailio-test-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{KEEP_TEST_DIRS});
    my $self = bless { addr => '127.0.0.2', dir => $dir, %o }, $class;
    $self->{port} //= Sipwake::free_port();
    return $self;
}

sub port { $_[0]{port} }
sub addr { $_[0]{addr} }
sub ctl { "unix:$_[0]{dir}/kamailio.ctl" }

sub start {
    my ($self) = @_;
    my @defs = ("LISTEN=udp:$self->{addr}:$self->{port}", "CTL=\"" . $self->ctl . "\"",
        ($self->{tcp} ? ("LISTEN_TCP=tcp:$self->{addr}:$self->{port}") : ()),
        'MAX_EXPIRES=7200', @{ $self->{defines} || [] });
    my %seen;
    @defs = reverse grep { my ($k) = /^(\w+)/; !$seen{$k}++ } reverse @defs; # later wins
    my $log = "$self->{dir}/kamailio.log";
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>>', $log or die;
        open STDERR, '>>', $log or die;
        exec 'kamailio', '-f', "$ROOT/tests/integration/kamailio-upstream.cfg", '-DD', '-E',
            '-m', '64', '-M', '8', '-Y', $self->{dir}, '-w', $self->{dir},
            map { ('-A', $_) } @defs;
        die "exec kamailio: $!";
    }
    $self->{pid} = $pid;
    my $deadline = time + 15;
    while (time < $deadline) {
        if (waitpid($pid, WNOHANG) == $pid) {
            delete $self->{pid};
            die "kamailio exited during start-up:\n" . $self->log;
        }
        my ($rc) = $self->kamcmd('core.version');
        return 1 if $rc == 0;
        sleep 0.1;
    }
    die "kamailio did not start:\n" . $self->log;
}

sub log {
    my ($self) = @_;
    open my $fh, '<', "$self->{dir}/kamailio.log" or return '';
    local $/;
    return <$fh> // '';
}

sub kamcmd {
    my ($self, @args) = @_;
    my $out = `kamcmd -s @{[$self->ctl]} @args 2>&1`;
    return ($? >> 8, $out);
}

# What its location table holds, as kamcmd prints it.
sub ul_dump {
    my ($self) = @_;
    my ($rc, $out) = $self->kamcmd('ul.dump');
    return $out;
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    kill 'TERM', -$pid, $pid;
    my $deadline = time + 5;
    while (time < $deadline) {
        return if waitpid($pid, WNOHANG) == $pid;
        sleep 0.05;
    }
    kill 'KILL', $pid;
    waitpid($pid, 0);
}

sub DESTROY { $_[0]->stop }

1;
