package Sipwake;

# Test harness for integration tests: starts the real sipwake binary on loopback with a
# temporary config and database, speaks SIP to it over UDP, TCP and TLS, runs sipp, reads
# the store with sqlite3, and checks that the server shut down without a sanitizer report.
# Every wait is bounded; a test never depends on timing beyond "within N seconds".
#
# Push tokens never reach sipwake's log (issue 12). The harness remembers every pn-prid (and
# legacy pn-tok) value a test sends, through a UA or sipp, and when a server stops (or, if
# the test never stops it, at the end of the test) it scans that server's whole log for
# those tokens and for any pn-prid value that is not "redacted-<hash>"; either fails the
# test ("no push token in sipwake's log").

use strict;
use warnings;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use IO::Socket::SSL;
use JSON::PP ();
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);
use Digest::MD5 qw(md5_hex);
use Digest::SHA qw(sha256_hex);

our $ROOT = abs_path(dirname(__FILE__) . '/../..');
our $BIN = $ENV{SIPWAKE_BIN} || "$ROOT/server/sipwake";

# ---- push tokens must not reach the log
use Scalar::Util qw(weaken);
require Test::Builder; # loaded first, its END block runs after ours: our failures count

our %TOKENS;  # every push token a test sent (values of 6 characters or more)
my @servers;  # weak references to every server started, for the check at the end

sub _unescape { my ($v) = @_; $v =~ s/%([0-9A-Fa-f]{2})/chr(hex $1)/ge; return $v }

# Remember the pn-prid / pn-tok values in bytes a test sends (a ";pn-prid=" inside a user
# part, followed by '@', is the user's name, not a token).
sub note_tokens {
    my ($bytes) = @_;
    return unless defined $bytes;
    while ($bytes =~ /;pn(?:-|%2d)(?:prid|tok)=([^;>?\s@,"']++)(?!@)/gi) {
        my $v = _unescape($1);
        next if $v =~ /^redacted-/ || $v =~ /\[/; # a sipp template, before substitution
        for my $t ($v, map { (split /:/)[0] } split /&/, $v) {
            $TOKENS{$t} = 1 if defined $t && length($t) >= 6;
        }
    }
}

# Lines of text that leak a push token: a remembered token, or a pn-prid value that is not
# the redaction marker.
sub token_leaks {
    my ($text) = @_;
    my @tokens = sort { length($b) <=> length($a) } keys %TOKENS;
    my @bad;
    for my $line (split /\n/, $text) {
        my $leak = $line =~ /;pn(?:-|%2d)(?:prid|tok)=(?!redacted-[0-9a-f]{16})[^;>?\s@,"']++(?!@)/i;
        $leak ||= grep { index($line, $_) >= 0 } @tokens;
        next unless $leak;
        my $shown = $line;
        $shown =~ s/\Q$_\E/<token>/g for @tokens;
        $shown =~ s/(;pn(?:-|%2d)(?:prid|tok)=)(?!redacted-)[^;>?\s@,"']+/$1<token>/gi;
        push @bad, $shown;
    }
    return @bad;
}

# Scan this server's log from where the last scan ended; a leak fails the test.
sub check_tokens {
    my ($self) = @_;
    open my $fh, '<', "$self->{dir}/sipwake.log" or return 1;
    local $/;
    my $all = <$fh> // '';
    close $fh;
    my $text = substr($all, $self->{token_scan} || 0);
    $self->{token_scan} = length $all;
    my @bad = token_leaks($text);
    return 1 unless @bad;
    my $tb = Test::Builder->new;
    $tb->ok(0, "no push token in sipwake's log");
    $tb->diag("a push token in sipwake's log ($self->{dir}/sipwake.log):\n"
        . join("\n", map { "  $_" } @bad[0 .. ($#bad < 9 ? $#bad : 9)]));
    return 0;
}

my $main_pid = $$;
END {
    local $?; # stop's waitpid must not change the test's exit status
    if ($$ == $main_pid) {
        for my $s (grep { defined } @servers) {
            $s->stop if $s->{pid};
        }
    }
}

# A port P such that P and P+1 are free over UDP and TCP on 127.0.0.1, for a server's SIP and
# TLS listeners. Picked below the kernel's ephemeral range (/proc/sys/net/ipv4/ip_local_port_range),
# so no outgoing connection of another test can take it between this check and the bind; and
# reserved by a file under /tmp naming this process, so two tests running at once (prove -j)
# never pick the same pair. A reservation whose process is gone is taken over.
my %reserved;      # port => reservation file, released at exit
my $port_dir = "/tmp/sipwake-test-ports-$<";
sub port_range {
    my ($lo) = do {
        open my $fh, '<', '/proc/sys/net/ipv4/ip_local_port_range';
        my $r = $fh ? <$fh> : '';
        $r =~ /^\s*(\d+)/;
    };
    $lo ||= 32768;
    $lo = 32768 if $lo < 12000;
    return (10000, $lo - 2);
}
sub reserve_port {
    my ($p) = @_;
    my $f = "$port_dir/$p";
    for (1 .. 2) {
        if (sysopen(my $fh, $f, POSIX::O_WRONLY() | POSIX::O_CREAT() | POSIX::O_EXCL(), 0600)) {
            print $fh "$$\n";
            close $fh;
            $reserved{$p} = $f;
            return 1;
        }
        open my $fh, '<', $f or next;
        my $pid = <$fh> // '';
        close $fh;
        chomp $pid;
        return 0 if $pid =~ /^\d+$/ && ($pid == $$ || kill(0, $pid));
        unlink $f;    # its test is gone
    }
    return 0;
}
sub free_port {
    mkdir $port_dir, 0700;
    my ($lo, $hi) = port_range();
    for (1 .. 500) {
        my $p = $lo + int(rand($hi - $lo));
        next unless reserve_port($p);
        my $ok = 1;
        for my $q ($p, $p + 1) {
            for my $proto ('tcp', 'udp') {
                my $t = IO::Socket::INET->new(Proto => $proto, LocalAddr => '127.0.0.1', LocalPort => $q,
                                              ReuseAddr => 1, $proto eq 'tcp' ? (Listen => 1) : ());
                $ok = 0 unless $t;
                close $t if $t;
            }
        }
        return $p if $ok;
        unlink delete $reserved{$p};
    }
    die "no free port pair\n";
}
END { unlink values %reserved if $$ == $main_pid; }

# new(config => { section => { key => value } }, policy => "lua source")
sub new {
    my ($class, %o) = @_;
    my $dir = tempdir('sipwake-test-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{KEEP_TEST_DIRS});
    my $self = bless { dir => $dir, port => free_port(), %o }, $class;
    $self->{tls_port} = $self->{port} + 1;
    if (defined $o{policy}) {
        $self->write_policy($o{policy});
    }
    $self->write_config;
    return $self;
}

sub dir { $_[0]{dir} }
sub port { $_[0]{port} }
sub tls_port { $_[0]{tls_port} }
sub db { "$_[0]{dir}/sipwake.db" }
sub policy_path { "$_[0]{dir}/policy.lua" }
sub config_path { "$_[0]{dir}/sipwake.conf" }

sub write_policy {
    my ($self, $src) = @_;
    open my $fh, '>', $self->policy_path or die $!;
    print $fh $src;
    close $fh;
    $self->{own_policy} = 1;
}

# The [push] keys that give sipwake a credential; a test that sets one of them gets no
# default_push credentials.
our @CRED_KEYS = qw(apns_key_file apns_key_id apns_team_id apns_certificate
    apns_certificate_password apns_environment fcm_service_account);

# The test credentials of default_push: an APNs .p8 key (key id KEY1234567, team TEAM123456,
# both environments) and a service account of FCM project "proj", made with openssl once per
# test process, with every push endpoint on a loopback port that refuses connections (a TCP
# socket this process keeps bound without listening): a push to a default binding fails at
# once ("connection refused"), never reaches Apple or Google. Tests of pushes give their own
# credentials and emulators.
our $DEFAULT_PROJECT = 'proj';

# A service account of FCM project $project written to $dir/$file (with a new RSA key made
# with openssl, kept as $dir/$file.pem), as Google issues them; its token_uri (default an
# address nothing answers) is where sipwake fetches its access tokens. Dies on failure.
sub make_service_account {
    my ($dir, $file, $project, $token_uri) = @_;
    system("cd $dir && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out $file.pem 2>/dev/null") == 0
        or die "openssl: cannot make a service account key\n";
    open my $in, '<', "$dir/$file.pem" or die "$dir/$file.pem: $!";
    my $pem = do { local $/; <$in> };
    close $in;
    open my $out, '>', "$dir/$file" or die "$dir/$file: $!";
    print $out JSON::PP->new->canonical->encode({
        type => 'service_account', project_id => $project, private_key_id => 'k1',
        private_key => $pem, client_email => "push\@$project.iam.gserviceaccount.com",
        token_uri => $token_uri // 'https://oauth2.example/token' });
    close $out;
}
my (%default_push, $closed_sock);
sub default_push {
    return %default_push if %default_push;
    my $dir = tempdir('sipwake-creds-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    system("cd $dir && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out apns.p8 2>/dev/null") == 0
        or die "openssl: cannot make the default push credentials\n";
    $closed_sock = IO::Socket::INET->new(Proto => 'tcp', LocalAddr => '127.0.0.1', LocalPort => 0)
        or die "a closed loopback port: $!\n";
    my $closed = $closed_sock->sockport;
    make_service_account($dir, 'sa.json', $DEFAULT_PROJECT, "https://127.0.0.1:$closed/token");
    %default_push = (
        apns_key_file => "$dir/apns.p8", apns_key_id => 'KEY1234567', apns_team_id => 'TEAM123456',
        apns_environment => 'both', fcm_service_account => "$dir/sa.json",
        apns_host => '127.0.0.1', apns_port => $closed,
        apns_sandbox_host => '127.0.0.1', apns_sandbox_port => $closed,
        fcm_host => '127.0.0.1', fcm_port => $closed,
        fcm_token_uri => "https://127.0.0.1:$closed/token",
    );
    return %default_push;
}

sub write_config {
    my ($self) = @_;
    my $p = $self->{port};
    my %c = (
        general => { data_dir => $self->{dir} },
        log => { level => 'info' },
        sip => {
            listen => "udp:127.0.0.1:$p, tcp:127.0.0.1:$p, tls:127.0.0.1:" . ($p + 1),
            # overload shedding is on by default in sipwake; on a loaded test machine a test's
            # burst (400 REGISTERs at once, an ASan build) can stand in the queue long enough
            # to be shed, which is not what those tests test: off here, and the 96_overload*
            # tests set its keys themselves
            overload_queue_ms => 0,
        },
        auth => { enabled => 'no' },
        # offline MESSAGE storage is on by default in sipwake; tests of other things keep
        # MESSAGE on its RFC 8599 path (push, bucket, 480) and turn it on when they test it
        offline => { enabled => 'no' },
        # the web admin listens on 127.0.0.1:8080 by default; tests of it give it a free port
        admin => { enabled => 'no', root => "$ROOT/webadmin" },
        # a store far behind turns REGISTERs away ([store] max_wait_ms, 3 s by default); on a
        # loaded test machine an ASan build's burst can fall that far behind, which is not what
        # those tests test: off here, and 34_store_behind.t sets it itself
        store => { path => $self->db, max_wait_ms => 0 },
        # a VAPID subject is required once webpush is enabled, and must be a real contact
        # (RFC 8292 §2.1; Apple's Web Push refuses localhost); undef leaves it out
        # Web Push emulators listen on 127.0.0.1, which sipwake refuses as a subscription host
        # by default (SSRF): the tests that push to one (14, 78, 79_*, 85, 92 and the pushes
        # of 10 and 12) need it allowed; 76_webpush_private.t sets it back to no
        push => { vapid_subject => 'mailto:ops@example.com', webpush_allow_private => 'yes' },
        policy => {
            file => $self->{own_policy} ? $self->policy_path : "$ROOT/policies/default.lua",
            lua_path => "$ROOT/lua, $ROOT/policies",
        },
    );
    my $over = $self->{config} || {};
    # sipwake answers 555 to an APNs or FCM push REGISTER when it holds no credential for
    # the provider (issue 13), so every test server gets test credentials whose pushes can
    # never leave the machine (default_push), unless the test sets a credential key itself
    # (an undef value sets none: `apns_key_file => undef` keeps a server without credentials)
    unless (grep { exists $over->{push}{$_} } @CRED_KEYS) {
        my %d = default_push();
        $c{push}{$_} = $d{$_} for keys %d;
    }
    for my $s (keys %$over) {
        for my $k (keys %{ $over->{$s} }) {
            $c{$s}{$k} = $over->{$s}{$k};
        }
    }
    open my $fh, '>', $self->config_path or die $!;
    for my $s (sort keys %c) {
        print $fh "[$s]\n";
        for my $k (sort keys %{ $c{$s} }) {
            next unless defined $c{$s}{$k};
            print $fh "$k = $c{$s}{$k}\n";
        }
    }
    close $fh;
}

sub start {
    my ($self) = @_;
    my $log = "$self->{dir}/sipwake.log";
    $self->{log_offset} = -s $log || 0;
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>>', $log or die;
        open STDERR, '>>', $log or die;
        $ENV{ASAN_OPTIONS} ||= 'detect_leaks=1';
        # shell => 'ulimit -Sn 256': run through sh with that command first (the same pid)
        my @cmd = ($BIN, '--config', $self->config_path);
        @cmd = ('/bin/sh', '-c', "$self->{shell}; exec \"\$@\"", 'sh', @cmd) if $self->{shell};
        exec @cmd or die "exec $cmd[0]: $!";
    }
    $self->{pid} = $pid;
    unless ($self->{registered}++) {
        push @servers, $self;
        weaken($servers[-1]);
    }
    my $deadline = time + 15;
    while (time < $deadline) {
        return 1 if $self->log =~ /sipwake ready/;
        if (waitpid($pid, WNOHANG) == $pid) {
            delete $self->{pid};
            diag_log($self);
            die "sipwake exited during start-up\n";
        }
        sleep 0.05;
    }
    diag_log($self);
    die "sipwake did not become ready\n";
}

sub diag_log {
    my ($self) = @_;
    my $l = $self->log;
    $l =~ s/^/# /mg;
    print STDERR $l;
}

# The log of the current run (since the last start).
sub log {
    my ($self) = @_;
    open my $fh, '<', "$self->{dir}/sipwake.log" or return '';
    local $/;
    my $all = <$fh>;
    close $fh;
    return substr($all, $self->{log_offset} || 0);
}

sub wait_log {
    my ($self, $re, $timeout) = @_;
    my $deadline = time + ($timeout || 5);
    while (time < $deadline) {
        return 1 if $self->log =~ $re;
        sleep 0.05;
    }
    return 0;
}

sub signal {
    my ($self, $sig) = @_;
    kill $sig, $self->{pid};
}

sub alive {
    my ($self) = @_;
    return $self->{pid} && waitpid($self->{pid}, WNOHANG) == 0;
}

# Stop with SIGTERM (or the given signal); true if it exited cleanly and no sanitizer spoke.
sub stop {
    my ($self, $sig) = @_;
    my $pid = delete $self->{pid} or return 0;
    kill($sig || 'TERM', $pid);
    my $deadline = time + 15;
    my $status;
    while (time < $deadline) {
        if (waitpid($pid, WNOHANG) == $pid) { $status = $?; last }
        sleep 0.05;
    }
    unless (defined $status) {
        kill 'KILL', $pid;
        waitpid($pid, 0);
        print STDERR "# sipwake did not stop in time\n";
        $self->check_tokens;
        return 0;
    }
    my $log = $self->log;
    my $clean = $self->check_tokens;
    if ($log =~ /(AddressSanitizer|LeakSanitizer|runtime error:)/) {
        diag_log($self);
        return 0;
    }
    return 0 unless $clean;
    return 1 if ($sig || 'TERM') eq 'KILL';
    return $status == 0;
}

sub DESTROY {
    my ($self) = @_;
    if ($self->{pid}) {
        kill 'KILL', $self->{pid};
        waitpid($self->{pid}, 0);
    }
}

sub sql {
    my ($self, $q) = @_;
    open my $fh, '-|', 'sqlite3', '-separator', '|', $self->db, $q or die "sqlite3: $!";
    local $/;
    my $out = <$fh> // '';
    close $fh;
    $out =~ s/\n\z//;
    return $out;
}

# Wait until the store reflects what the loop has queued.
sub sql_wait {
    my ($self, $q, $want, $timeout) = @_;
    my $deadline = time + ($timeout || 5);
    my $got;
    while (time < $deadline) {
        $got = $self->sql($q);
        return $got if (ref $want ? $got =~ $want : $got eq $want);
        sleep 0.05;
    }
    return $got;
}

# ---- bounded waits (issue 14: no fixed sleep as synchronisation)

# Poll cond every step seconds (0.05) until it returns a true value, for at most timeout
# seconds (5); returns that value, or the last false one on timeout (cond runs once more at
# the deadline, so a slow machine that overslept still gets its answer).
sub wait_until {
    my ($cond, $timeout, $step) = @_;
    my $deadline = time + ($timeout // 5);
    while (time < $deadline) {
        my $v = $cond->();
        return $v if $v;
        sleep($step // 0.05);
    }
    return $cond->();
}

# The server's metrics, as the SIGUSR1 dump in its log gives them: a hash of "name" (with its
# {labels}, if any) => value, from a new dump; undef if none came within timeout (5 s).
sub metrics {
    my ($self, $timeout) = @_;
    my $from = length $self->log;
    $self->signal('USR1');
    my $new = wait_until(sub {
        my $l = substr($self->log, $from);
        return $l =~ /metrics: sipwake_store_pending \d+/ ? $l : '';
    }, $timeout);
    return undef unless $new;
    my %m;
    $m{$1} = $2 while $new =~ /metrics: (\S+(?:\{[^}]*\})?) (\S+)$/mg;
    return \%m;
}

sub metric {
    my ($self, $name) = @_;
    my $m = $self->metrics or return undef;
    return $m->{$name};
}

# Close UAs' TCP or TLS connections (phones going to sleep) and wait until sipwake has seen
# every close: its open connections (net:tcp_connections) drop by as many. True once they
# have; false after timeout (5 s, a number after the UAs).
sub disconnect {
    my ($self, @uas) = @_;
    my $timeout = @uas && !ref $uas[-1] ? pop @uas : 5;
    my $before = $self->metric('sipwake_net_tcp_connections') // 0;
    close $_->sock for @uas;
    return $self->wait_tcp_connections($before - @uas, $timeout);
}

# Wait until sipwake has at most n TCP and TLS connections open (net:tcp_connections): after
# a test closed many, say. True once it has; false after timeout (5 s).
sub wait_tcp_connections {
    my ($self, $n, $timeout) = @_;
    return wait_until(sub { my $v = $self->metric('sipwake_net_tcp_connections'); defined $v && $v <= $n },
        $timeout, 0.1) ? 1 : 0;
}

# Wait until something listens on 127.0.0.1:port (udp: a bound socket; tcp: a listening one),
# as /proc/net/{udp,tcp} shows it: a sipp UAS started in the background, before a request is
# sent its way (on 127.0.0.1 or 0.0.0.0). Nothing is bound here meanwhile, so the port stays
# free for it.
sub wait_listening {
    my ($port, $proto, $timeout) = @_;
    $proto ||= 'udp';
    my $hex = sprintf ':%04X', $port;
    return wait_until(sub {
        open my $fh, '<', "/proc/net/$proto" or return 0;
        while (my $l = <$fh>) {
            my @f = split ' ', $l; # 127.0.0.1 or 0.0.0.0
            next unless ($f[1] // '') eq "0100007F$hex" || ($f[1] // '') eq "00000000$hex";
            return 1 if $proto eq 'udp' || $f[3] eq '0A'; # TCP_LISTEN
        }
        return 0;
    }, $timeout) ? 1 : 0;
}

# Start tests/emulators/NAME.py with args; it prints "listening PORT" (and "control CPORT"
# when it has h2server's control interface). Returns (pid, port, cport).
# It is killed when the test exits, and stops by itself at its --lifetime.
my @emulators;
sub start_emulator {
    my ($name, @args) = @_;
    pipe(my $rd, my $wr) or die;
    my $pid = fork() // die;
    if ($pid == 0) {
        close $rd;
        open STDOUT, '>&', $wr or die;
        exec '/usr/bin/python3', "$ROOT/tests/emulators/$name.py", @args;
        die "exec: $!";
    }
    close $wr;
    push @emulators, $pid;
    my ($port, $cport) = (scalar(<$rd>) // '') =~ /listening (\d+)(?: control (\d+))?/;
    return ($pid, $port, $cport);
}
END { kill 'TERM', @emulators if @emulators; }

# The APNs emulator as most push tests run it: the TLS certificate and the token-auth key
# make_keys($dir, 'apns') wrote (key KEY1234567 of team TEAM123456, the harness's default
# [push] credentials), then the test's own options. Returns what start_emulator returns.
sub start_apns_emulator {
    my ($dir, @args) = @_;
    return start_emulator('apns', '--cert', "$dir/cert.pem", '--key', "$dir/key.pem",
                          '--auth-key', "KEY1234567:TEAM123456:$dir/apns-pub.pem", @args);
}

# One command to an emulator's control port (h2server.py: stats, freeze, ...); its JSON
# answer decoded, or undef.
sub emulator_control {
    my ($cport, $cmd) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $cport, Timeout => 5)
        or return undef;
    print $s "$cmd\n";
    my $line = <$s>;
    close $s;
    return defined $line ? JSON::PP::decode_json($line) : undef;
}

# Test keys and certificates made with openssl in dir: a P-256 server certificate for
# 127.0.0.1 (cert.pem, key.pem) and, for each name given, an APNs .p8 key NAME.p8 with its
# public key NAME-pub.pem.
sub make_keys {
    my ($dir, @p8) = @_;
    my $cmd = "cd $dir && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
        . "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 -keyout key.pem -out cert.pem 2>/dev/null";
    $cmd .= " && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $_.p8"
        . " && openssl pkey -in $_.p8 -pubout -out $_-pub.pem" for @p8;
    return system($cmd) == 0;
}

sub run_bin {
    my ($self, @args) = @_;
    my $out = `$BIN --config @{[$self->config_path]} @args 2>&1`;
    return ($? >> 8, $out);
}

# Run one sipp call of tests/sipp/<scenario>.xml against the server. Options: transport
# (u1|t1), port (local), set => {var => value}, args => [...], target ("ip:port" instead of
# sipwake's). Returns (exit code, the messages sipp saw, sipp's error log).
sub sipp {
    my ($self, $scenario, %o) = @_;
    return $self->sipp_wait($self->sipp_bg($scenario, timeout => '10s', recv_timeout => 5000, %o));
}

# Start sipp in the background (same options as sipp, and server_side => 1 for a UAS that
# only listens; timeout, recv_timeout: sipp's, 15 s and 10 s by default); returns a handle for
# sipp_wait.
sub sipp_bg {
    my ($self, $scenario, %o) = @_;
    my $tag = $scenario . '-' . ++$self->{sipp_runs};
    my $msgf = "$self->{dir}/$tag-msg.log";
    my $errf = "$self->{dir}/$tag-err.log";
    my @cmd = ('sipp', '-sf', "$ROOT/tests/sipp/$scenario.xml", '-m', 1, '-nostdin',
        '-t', $o{transport} || 'u1', '-i', '127.0.0.1', '-p', $o{port} || Sipwake::free_port(),
        '-timeout', $o{timeout} || '15s', '-recv_timeout', $o{recv_timeout} || 10000,
        '-trace_msg', '-message_file', $msgf, '-trace_err', '-error_file', $errf,
        @{ $o{args} || [] });
    for my $k (sort keys %{ $o{set} || {} }) {
        push @cmd, '-set', $k, $o{set}{$k};
    }
    push @cmd, $o{target} // "127.0.0.1:$self->{port}" unless $o{server_side};
    my $pid = fork() // die;
    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        exec @cmd or exit 127;
    }
    return { pid => $pid, msg => $msgf, err => $errf };
}

# Wait for a background sipp; returns (exit code, messages, errors).
sub sipp_wait {
    my ($self, $h) = @_;
    waitpid($h->{pid}, 0);
    my $rc = $? >> 8;
    my $slurp = sub { open my $fh, '<', $_[0] or return ''; local $/; <$fh> // '' };
    my $msgs = $slurp->($h->{msg});
    note_tokens($msgs); # what sipp sent, its variables filled in
    return ($rc, $msgs, $slurp->($h->{err}));
}

# A SIP user agent over one transport.
sub ua {
    my ($self, %o) = @_;
    return Sipwake::UA->new(server => $self, %o);
}

package Sipwake::UA;

use strict;
use warnings;
use IO::Socket::INET;
use IO::Socket::SSL;
use JSON::PP ();
use IO::Select;
use Time::HiRes qw(time);
use Digest::MD5 qw(md5_hex);
use Digest::SHA qw(sha256_hex);

my $seq = 0;

sub new {
    my ($class, %o) = @_;
    my $self = bless { transport => 'udp', user => 'alice', domain => 'example.com', %o },
        $class;
    my $srv = $self->{server};
    my $t = $self->{transport};
    if ($t eq 'udp') {
        # peer/peer_port: talk to another server than sipwake (the upstream in gateway tests);
        # local_addr: send from another loopback address
        $self->{sock} = IO::Socket::INET->new(Proto => 'udp',
            LocalAddr => $self->{local_addr} || '127.0.0.1', LocalPort => $self->{local_port} || 0,
            PeerAddr => $self->{peer} || '127.0.0.1', PeerPort => $self->{peer_port} || $srv->port)
            or die "udp socket: $!";
    } elsif ($t eq 'tcp') {
        $self->{sock} = IO::Socket::INET->new(Proto => 'tcp', PeerAddr => '127.0.0.1',
            PeerPort => $srv->port, LocalAddr => $self->{local_addr} || '127.0.0.1')
            or die "tcp connect: $!";
    } else {
        $self->{sock} = IO::Socket::SSL->new(PeerAddr => '127.0.0.1', PeerPort => $srv->tls_port,
            SSL_verify_mode => SSL_VERIFY_NONE, %{ $o{ssl} || {} })
            or die "tls connect: $SSL_ERROR";
    }
    $self->{local_port} = $self->{sock}->sockport;
    $self->{call_id} = "c$$-" . ++$seq . '-' . int(rand(1e9));
    $self->{cseq} = 0;
    $self->{buf} = '';
    return $self;
}

sub local_port { $_[0]{local_port} }
sub sock { $_[0]{sock} }

sub send_raw {
    my ($self, $bytes) = @_;
    Sipwake::note_tokens($bytes);
    if ($self->{transport} eq 'udp') {
        $self->{sock}->send($bytes);
    } else {
        $self->{sock}->syswrite($bytes);
    }
}

# Read raw bytes; for streams, one message framed by Content-Length. undef on timeout.
sub recv_raw {
    my ($self, $timeout) = @_;
    $timeout //= 3;
    my $deadline = time + $timeout;
    my $sock = $self->{sock};
    if ($self->{transport} eq 'udp') {
        my $sel = IO::Select->new($sock);
        return undef unless $sel->can_read($timeout);
        my $data;
        $sock->recv($data, 70000);
        return $data;
    }
    while (1) {
        if ($self->{buf} =~ /^(\r\n)+(?=SIP)/) { $self->{buf} =~ s/^(\r\n)+// }
        if ($self->{buf} =~ /\r\n\r\n/) {
            my $hdr_end = index($self->{buf}, "\r\n\r\n") + 4;
            my ($cl) = substr($self->{buf}, 0, $hdr_end) =~ /^(?:Content-Length|l)\s*:\s*(\d+)/mi;
            $cl //= 0;
            if (length($self->{buf}) >= $hdr_end + $cl) {
                my $m = substr($self->{buf}, 0, $hdr_end + $cl);
                substr($self->{buf}, 0, $hdr_end + $cl) = '';
                return $m;
            }
        }
        if ($self->{buf} eq "\r\n" && $self->{want_pong}) {
            $self->{buf} = '';
            return "\r\n";
        }
        my $left = $deadline - time;
        return undef if $left <= 0;
        if (!($sock->can('pending') && $sock->pending)) {
            my $sel = IO::Select->new($sock);
            return undef unless $sel->can_read($left);
        }
        my $n = $sock->sysread(my $chunk, 65536);
        return undef unless $n;
        $self->{buf} .= $chunk;
    }
}

sub parse_response {
    my ($raw) = @_;
    return undef unless defined $raw;
    my ($head) = split /\r\n\r\n/, $raw, 2;
    my @lines = split /\r\n/, $head;
    my $status = shift @lines;
    my ($code, $reason) = $status =~ m{^SIP/2\.0 (\d{3}) ?(.*)$} or return { raw => $raw };
    my @h;
    for (@lines) {
        my ($n, $v) = /^([^:]+?)\s*:\s*(.*)$/ or next;
        push @h, [lc $n, $v];
    }
    return { code => $code, reason => $reason, headers => \@h, raw => $raw };
}

sub header {
    my ($r, $name) = @_;
    my @v = map { $_->[1] } grep { $_->[0] eq lc $name } @{ $r->{headers} || [] };
    return wantarray ? @v : $v[0];
}

# Wait for a message matching re, skipping others (retransmissions, provisional responses).
# undef on timeout.
sub expect {
    my ($self, $re, $timeout) = @_;
    my $end = time + ($timeout // 3);
    while ((my $left = $end - time) > 0) {
        my $m = $self->recv_raw($left) // return undef;
        return $m if $m =~ $re;
    }
    return undef;
}

# Answer a request this UA received, as a callee: Via, Record-Route, From, Call-ID and CSeq
# copied, To with a tag (o{tag}, 'b1') unless it has one, a Contact for 1xx/2xx (o{contact},
# default this UA's address). Returns the response sent.
sub answer {
    my ($self, $req, $code, %o) = @_;
    my ($head) = split /\r\n\r\n/, $req, 2;
    my @lines = split /\r\n/, $head;
    shift @lines;
    my $resp = "SIP/2.0 $code " . ($o{reason} // 'Answer') . "\r\n";
    for (@lines) {
        $resp .= "$_\r\n" if /^(Via|Record-Route|From|Call-ID|CSeq)\s*:/i;
        $resp .= "$_" . (/;tag=/ ? '' : ';tag=' . ($o{tag} // 'b1')) . "\r\n" if /^To\s*:/i;
    }
    $resp .= "Contact: <" . ($o{contact} // "sip:callee\@127.0.0.1:$self->{local_port}") . ">\r\n"
        if $code < 300 && $code > 100;
    $resp .= "Content-Length: 0\r\n\r\n";
    $self->send_raw($resp);
    return $resp;
}

sub request {
    my ($self, $msg, $timeout) = @_;
    $self->send_raw($msg);
    return parse_response($self->recv_raw($timeout));
}

sub branch { 'z9hG4bK' . int(rand(1e12)) . ++$seq }

# An OPTIONS to sipwake itself, and its answer awaited (skipping whatever else comes first):
# once it is back, sipwake has handled everything this UA sent before it (one socket, read in
# order), and what sipwake sent this UA before it has been read. True once answered 200;
# false after timeout (10 s).
sub sync {
    my ($self, $timeout) = @_;
    my $id = 'sync-' . ++$seq . '-' . int(rand(1e9));
    my $port = $self->{local_port};
    $self->send_raw("OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/" . $self->via_proto
        . " 127.0.0.1:$port;rport;branch=" . branch() . "\r\nMax-Forwards: 70\r\n"
        . "From: <sip:sync\@example.com>;tag=s$seq\r\nTo: <sip:127.0.0.1>\r\nCall-ID: $id\r\n"
        . "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
    return defined $self->expect(qr/^SIP\/2\.0 200 .*Call-ID: \Q$id\E\r/s, $timeout // 10) ? 1 : 0;
}

sub via_proto { uc($_[0]{transport}) }

# Build a REGISTER. Options: contact (URI without <>), contacts (array of full header values),
# contact_params, expires (header), cseq, call_id, extra (header lines), authorization.
sub register_msg {
    my ($self, %o) = @_;
    my $u = $o{user} // $self->{user};
    my $d = $o{domain} // $self->{domain};
    my $port = $self->{local_port};
    my $cseq = $o{cseq} // ++$self->{cseq};
    my $callid = $o{call_id} // $self->{call_id};
    my $branch = $o{branch} // branch();
    my $tr = $self->{transport};
    my @contacts;
    if ($o{contacts}) {
        @contacts = @{ $o{contacts} };
    } elsif (!$o{no_contact}) {
        my $uri = $o{contact} // "sip:$u\@127.0.0.1:$port" . ($tr eq 'udp' ? '' : ";transport=$tr");
        push @contacts, "<$uri>" . ($o{contact_params} // '');
    }
    my $m = "REGISTER sip:$d SIP/2.0\r\n"
        . "Via: SIP/2.0/" . $self->via_proto . " 127.0.0.1:$port;rport;branch=$branch\r\n"
        . "Max-Forwards: 70\r\n"
        . "From: <sip:$u\@$d>;tag=f" . int(rand(1e9)) . "\r\n"
        . "To: <sip:$u\@$d>\r\n"
        . "Call-ID: $callid\r\n"
        . "CSeq: $cseq REGISTER\r\n";
    $m .= "Contact: $_\r\n" for @contacts;
    $m .= "Expires: $o{expires}\r\n" if defined $o{expires};
    $m .= "Authorization: $o{authorization}\r\n" if $o{authorization};
    $m .= $o{extra} if $o{extra};
    $m .= "User-Agent: " . ($o{user_agent} // 'sipwake-test') . "\r\nContent-Length: 0\r\n\r\n";
    return $m;
}

sub register {
    my ($self, %o) = @_;
    my $r = $self->request($self->register_msg(%o), $o{timeout});
    if ($r && $r->{code} && $r->{code} == 401 && defined $o{password}) {
        my $auth = $self->authorization($r, %o);
        $r = $self->request($self->register_msg(%o, cseq => undef, authorization => $auth),
            $o{timeout});
    }
    return $r;
}

# Compute an Authorization header answering the challenge in response $r.
sub authorization {
    my ($self, $r, %o) = @_;
    my $want = $o{algorithm} || 'MD5';
    # a challenge without algorithm means MD5 (RFC 3261 §22.4)
    my ($ch) = grep { /algorithm=\Q$want\E\b/i || ($want eq 'MD5' && !/algorithm=/i) }
        header($r, 'www-authenticate');
    die "no $want challenge\n" unless $ch;
    my %p;
    while ($ch =~ /(\w+)=(?:"([^"]*)"|([^\s,]+))/g) { $p{lc $1} = defined $2 ? $2 : $3 }
    my $u = $o{auth_user} // $o{user} // $self->{user};
    my $d = $o{domain} // $self->{domain};
    my $h = $want eq 'SHA-256' ? \&sha256_hex : \&md5_hex;
    my $ha1 = $h->("$u:$p{realm}:$o{password}");
    my $uri = $o{uri} // "sip:$d"; # uri: another digest-uri than the Request-URI
    my $nc = $o{nc} // '00000001';
    my $cnonce = 'cn' . int(rand(1e9));
    my $ha2 = $h->("REGISTER:$uri");
    if ($o{no_qop}) { # the RFC 2069 form: no qop, cnonce or nc
        my $r2069 = $h->("$ha1:$p{nonce}:$ha2");
        return qq{Digest username="$u", realm="$p{realm}", nonce="$p{nonce}", uri="$uri", }
            . qq{response="$r2069", algorithm=$want};
    }
    my $resp = $h->("$ha1:$p{nonce}:$nc:$cnonce:auth:$ha2");
    return qq{Digest username="$u", realm="$p{realm}", nonce="$p{nonce}", uri="$uri", }
        . qq{response="$resp", algorithm=$want, cnonce="$cnonce", qop=auth, nc=$nc};
}

1;
