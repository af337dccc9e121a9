#!/usr/bin/perl
# report.pl — the table `make bench` ends with, from several runs of one benchmark script
# (tests/bench/runs.sh makes them): BASE/meta (name, date, commit, runs) and
# BASE/run<N>/results.tsv (the lines calls.sh, register.sh and push.sh write with lib.sh res:
# "KIND key=value ...").
#
#   report.pl BASE            prints BASE's table (Markdown), as the README shows it
#   report.pl --latest        prints the latest table of each (below), as `make bench` ends
#   report.pl --readme FILE   replaces, in FILE, the block between <!-- bench-X:begin --> and
#                             <!-- bench-X:end --> with the table.md of the latest
#                             var/bench/*-NAME directory, for X/NAME = calls/calls,
#                             results/register, push/push, messages/messages (a block or
#                             its results missing: left as is)
#
# Every figure is the median of the runs with the spread [min–max]; a ratio (sipwake over
# kamailio-mem, or over h2load for push) is computed in each run, from that run's two
# measurements, and then summarised the same way — never the ratio of two medians. A figure a
# run did not produce (no step passed, no capture) is left out of its median, and the cell
# says of how many runs it is. A median of an even number of values is the mean of the two
# middle ones.
use strict;
use warnings;
use utf8;
use File::Basename qw(dirname);
use File::Spec;

binmode STDOUT, ':encoding(UTF-8)';

# --- numbers -------------------------------------------------------------------------------

sub num { my ($v) = @_; defined $v && $v =~ /^-?\d+(?:\.\d+)?$/ ? $v : undef }

sub median {
    my @v = sort { $a <=> $b } grep { defined num($_) } @_;
    return undef unless @v;
    my $n = @v;
    return $n % 2 ? $v[($n - 1) / 2] : ($v[$n / 2 - 1] + $v[$n / 2]) / 2;
}

# 12345.6 -> "12,346" (dec 0), with dec decimals otherwise
sub fmt {
    my ($v, $dec) = @_;
    return 'NA' unless defined $v;
    my $s = sprintf "%.*f", $dec // 0, $v;
    1 while $s =~ s/^(-?\d+)(\d{3})/$1,$2/;
    return $s;
}

# "median [min–max]" of the defined values, "(n of N runs)" when some run gave none
sub spread {
    my ($vals, $nruns, %o) = @_;
    my @v = grep { defined num($_) } @$vals;
    return 'NA' unless @v;
    my ($dec, $unit) = ($o{dec} // 0, $o{unit} // '');
    my @s = sort { $a <=> $b } @v;
    my $m = fmt(median(@v), $dec) . $unit;
    $m = "**$m**" if $o{bold};
    my $s = "$m [" . fmt($s[0], $dec) . '–' . fmt($s[-1], $dec) . "$unit]";
    $s .= " (" . scalar(@v) . " of $nruns runs)" if @v < $nruns;
    return $s;
}

# --- input ---------------------------------------------------------------------------------

sub read_kv {
    my ($line) = @_;
    my ($kind, @f) = split ' ', $line;
    my %h = map { /^([^=]+)=(.*)$/ ? ($1, $2) : () } @f;
    return ($kind, \%h);
}

sub read_meta {
    my ($base) = @_;
    my %m;
    open my $f, '<', "$base/meta" or die "report.pl: $base/meta: $!\n";
    while (<$f>) { chomp; $m{$1} = $2 if /^([a-z_]+)=(.*)$/ }
    return \%m;
}

# -> list of runs, each { steps => [..], overload => {target => {..}}, memory => {..},
#    direct => {..}, rounds => [..] }
sub read_runs {
    my ($base) = @_;
    opendir my $d, $base or die "report.pl: $base: $!\n";
    my @dirs = sort { ($a =~ /(\d+)/)[0] <=> ($b =~ /(\d+)/)[0] } grep { /^run\d+$/ && -d "$base/$_" } readdir $d;
    my @runs;
    for my $r (@dirs) {
        my %run = (steps => [], overload => {}, memory => {}, rounds => [], errors => [], name => $r);
        if (open my $f, '<', "$base/$r/results.tsv") {
            while (<$f>) {
                chomp;
                next if /^\s*(#|$)/;
                my ($kind, $h) = read_kv($_);
                if ($kind eq 'step') { push @{ $run{steps} }, $h }
                elsif ($kind eq 'overload') { $run{overload}{ $h->{target} } = $h }
                elsif ($kind eq 'memory' || $kind eq 'messages') { $run{memory}{ $h->{target} } = $h }
                elsif ($kind eq 'direct') { $run{direct} = $h }
                elsif ($kind eq 'round') { push @{ $run{rounds} }, $h }
                elsif ($kind eq 'error') { push @{ $run{errors} }, $h }
            }
        }
        push @runs, \%run;
    }
    die "report.pl: no run*/ directory in $base\n" unless @runs;
    return @runs;
}

sub targets {
    my (@runs) = @_;
    my (@t, %seen);
    for my $r (@runs) { for my $s (@{ $r->{steps} }) { push @t, $s->{target} unless $seen{ $s->{target} }++ } }
    return @t;
}

# the clean steps of a target in a run: verdict PASS, ramp or refinement (not overload)
sub clean { my ($run, $t) = @_; grep { $_->{target} eq $t && $_->{verdict} eq 'PASS' && $_->{phase} ne 'overload' } @{ $run->{steps} } }

# the best clean step (highest rate that passed) of a target in a run, or undef
sub best {
    my ($run, $t) = @_;
    my ($b) = sort { $b->{rate} <=> $a->{rate} } clean($run, $t);
    return $b;
}

sub step_at { my ($run, $t, $rate) = @_; (grep { $_->{rate} == $rate } clean($run, $t))[0] }

# the highest rate every target passed in a run, or undef
sub both_passed {
    my ($run, @t) = @_;
    my %n;
    for my $t (@t) { $n{ $_->{rate} }++ for clean($run, $t) }
    my ($r) = sort { $b <=> $a } grep { $n{$_} == @t } keys %n;
    return $r;
}

sub wire { my ($s, $field, $i) = @_; return undef unless $s && defined $s->{$field}; num((split m{/}, $s->{$field})[$i]) }

# "WHAT: N runs of `SCRIPT`, DATE, commit C, HOST. Median [min–max] of the UNIT; ..."
sub header {
    my ($m, $what, $count, $unit) = @_;
    my $commit = $m->{commit} // 'unknown';
    $commit .= " (at the end: $m->{commit_end})" if defined $m->{commit_end} && $m->{commit_end} ne $m->{commit};
    return "$what: $count of `" . ($m->{script} // '?') . "`, " . ($m->{date} // '?') . ", commit $commit"
        . ($m->{host} ? ", $m->{host}" : '') . ". Median [min–max] of the $unit; a ratio is taken in each " . ($unit =~ s{s$}{}r) . ".\n\n";
}
sub nruns { my ($n) = @_; "$n run" . ($n == 1 ? '' : 's') }

sub row { return '| ' . join(' | ', @_) . " |\n" }
sub rule { my ($n) = @_; return '|' . join('|', ('---') x $n) . "|\n" }

# --- calls and register --------------------------------------------------------------------

sub sip_table {
    my ($m, $kind, @runs) = @_;
    my $n = @runs;
    my @t = targets(@runs);
    my ($base, @others) = @t;
    my %what = (calls => ['calls/s', 'INVITE→200', 'Calls through the proxy'], register => ['REGISTER/s', 'REGISTER→200', 'REGISTER'],
        messages => ['MESSAGEs stored/s', '', 'Offline MESSAGEs']);
    my ($unit, $rtd, $title) = @{ $what{$kind} };
    my $o = header($m, $title, nruns($n), 'runs');
    $o .= row('figure', @t) . rule(1 + @t);
    my $line = sub {
        my ($label, $f, %opt) = @_;
        $o .= row($label, map { my $t = $_; spread([map { $f->($_, $t) } @runs], $n, %opt) } @t);
    };
    $line->("best clean $unit", sub { my $b = best(@_); $b ? $b->{achieved} : undef });
    for my $t (@others) {
        my @r = map {
            my ($bb, $bt) = (best($_, $base), best($_, $t));
            $bb && $bt && $bb->{achieved} > 0 ? $bt->{achieved} / $bb->{achieved} : undef
        } @runs;
        $o .= row("$t / $base, per run", map { $_ eq $t ? spread(\@r, $n, dec => 2, unit => '×', bold => 1) : '' } @t);
    }
    $line->('its step (target rate)', sub { my $b = best(@_); $b ? $b->{rate} : undef });
    if ($kind eq 'messages') {
        my $mm = sub { my ($k) = @_; sub { $_[0]{memory}{ $_[1] } ? $_[0]{memory}{ $_[1] }{$k} : undef } };
        $line->('lost (202 without a stored row)', $mm->('lost'));
        $line->('drained/s', $mm->('drained_per_s'));
        return $o;
    }
    $line->("$rtd median, ms (SIPp), at that step", sub { my $b = best(@_); $b ? $b->{med_ms} : undef });
    $line->("$rtd p99, ms (SIPp), at that step", sub { my $b = best(@_); $b ? $b->{p99_ms} : undef });
    # on the wire (sum_us): calls.sh the proxy's INVITE + 200 time, register.sh the REGISTER ->
    # 200 time; runs from before register.sh captured have none (their lines are left out)
    my @w = (['median', 0], ['p99', 1], ['p99.9', 2]);
    my $wired = grep { defined $_->{sum_us} } map { @{ $_->{steps} } } @runs;
    my ($wlong, $wshort) = $kind eq 'calls' ? ("the proxy's INVITE + 200 time", 'INVITE + 200') : ("the registrar's REGISTER → 200 time", 'REGISTER → 200');
    if ($wired) {
        for my $w (@w) {
            my $i = $w->[1];
            $line->("on the wire, $wlong, $w->[0], µs, at that step", sub { wire(best(@_), 'sum_us', $i) });
        }
    }
    my $both = sub {
        $o .= row('highest step both passed (target rate)', map { spread([map { both_passed($_, @t) } @runs], $n) } @t);
        $line->("$rtd p99, ms (SIPp), at that step", sub { my ($r, $t) = @_; my $b = both_passed($r, @t); $b ? step_at($r, $t, $b)->{p99_ms} : undef });
        return unless $wired;
        for my $w (@w) {
            my $i = $w->[1];
            $line->("on the wire, $wshort, $w->[0], µs, at that step", sub {
                my ($r, $t) = @_; my $b = both_passed($r, @t); $b ? wire(step_at($r, $t, $b), 'sum_us', $i) : undef });
        }
    };
    if ($kind eq 'calls') {
        $both->();
        my $ov = sub { my ($f) = @_; sub { my ($r, $t) = @_; my $s = (grep { $_->{target} eq $t && $_->{phase} eq 'overload' } @{ $r->{steps} })[0]; $s ? $f->($s, $r->{overload}{$t}) : undef } };
        my ($factor) = map { $_->{factor} // () } map { values %{ $_->{overload} } } @runs;
        $line->('overload step (target rate, ' . ($factor ? "$factor×" : 'OVERLOAD ×') . ' the best clean step)', $ov->(sub { $_[0]{rate} }));
        $line->('— offered calls', $ov->(sub { $_[0]{offered} }));
        $line->('— completed', $ov->(sub { $_[0]{ok} }));
        $line->('— refused at once with 503', $ov->(sub { $_[0]{refused} }));
        $line->('— failed or timed out', $ov->(sub { $_[0]{failed} }));
        $line->('— retransmissions', $ov->(sub { $_[0]{retrans} }));
        # (runs from before calls.sh counted them have none: no row)
        $line->("— datagrams the kernel dropped at the proxy's port (queue full)", $ov->(sub { $_[0]{rcv_drops} }))
            if grep { defined $_->{rcv_drops} } map { @{ $_->{steps} } } @runs;
        $line->('— completed + 503, % of offered', $ov->(sub { $_[0]{offered} ? 100 * ($_[0]{ok} + $_[0]{refused}) / $_[0]{offered} : undef }), dec => 1, unit => ' %');
        # the completed rate while the calls were offered (calls.sh window_rate); a run from
        # before it was recorded falls back on completed / SIPp's whole elapsed time
        my $orate = sub { my ($s, $o) = @_; $o && defined $o->{window_rate} ? $o->{window_rate} : $s->{achieved} };
        $line->('— completed calls/s while the calls were offered', $ov->($orate));
        $line->('— that / best clean calls/s, per run', $ov->(sub { $_[1] && $_[1]{clean_achieved} ? $orate->(@_) / $_[1]{clean_achieved} : undef }), dec => 2, unit => '×');
        $o .= row('— bar: completed + 503 ≥ 99 % of offered and completed calls/s ≥ clean', map {
            my $t = $_;
            my @b = map { $_->{overload}{$t} ? $_->{overload}{$t}{bar} : () } @runs;
            @b ? sprintf('met in %d of %d runs', scalar(grep { $_ eq 'MET' } @b), $n) : 'NA'
        } @t);
    } else {
        $line->('memory per binding, B', sub { $_[0]{memory}{ $_[1] } ? $_[0]{memory}{ $_[1] }{per_binding_b} : undef });
        $line->('restart with the bindings stored, s', sub { $_[0]{memory}{ $_[1] } ? $_[0]{memory}{ $_[1] }{restart_s} : undef }, dec => 2);
        $both->();
    }
    # what a run could not measure (calls.sh: a target whose callees did not all register)
    my @err = map { my $i = $_; map { "$_->{target} in run " . ($i + 1) . " ($_->{what}: " . ($_->{ok} // '?') . ' of ' . ($_->{of} // '?') . ')' } @{ $runs[$i]{errors} } } 0 .. $#runs;
    $o .= "\nNot measured: " . join('; ', @err) . ".\n" if @err;
    # every step both targets passed, side by side
    my %rates;
    for my $r (@runs) { for my $s (@{ $r->{steps} }) { $rates{ $s->{rate} } = 1 if $s->{phase} ne 'overload' } }
    my @cols = ('step, target rate', 'runs all passed', map({ "$rtd p99 ms, $_" } @t));
    push @cols, map { "wire p99 µs, $_" } @t if $wired;
    my $steps = '';
    for my $rate (sort { $a <=> $b } keys %rates) {
        my @in = grep { my $r = $_; !grep { !step_at($r, $_, $rate) } @t } @runs;
        next unless @in;
        my @c = (fmt($rate), scalar(@in) . " of $n");
        push @c, map { my $t = $_; spread([map { step_at($_, $t, $rate)->{p99_ms} } @in], scalar @in) } @t;
        push @c, map { my $t = $_; spread([map { wire(step_at($_, $t, $rate), 'sum_us', 1) } @in], scalar @in) } @t if $wired;
        $steps .= row(@c);
    }
    if ($steps) {
        $o .= "\nEvery step all targets passed in the same run, p99 side by side (median [min–max] over those runs):\n\n";
        $o .= row(@cols) . rule(scalar @cols) . $steps;
    }
    return $o;
}

# --- push ----------------------------------------------------------------------------------

sub push_table {
    my ($m, @runs) = @_;
    my @rounds = map { @{ $_->{rounds} } } @runs;
    my (%by, @targets, %seen);
    for my $r (@rounds) {
        push @targets, $r->{target} unless $seen{ $r->{target} }++;
        $by{"$r->{target} $r->{round_id}"}{ $r->{tool} } = $r;
    }
    my %ids = map { $_->{round_id} => 1 } @rounds;
    my $o = header($m, 'Push throughput', nruns(scalar @runs) . ' (' . scalar(keys %ids) . ' rounds of both tools against each target)', 'rounds');
    $o .= row('target', 'tool', 'pushes/s', 'CPU µs/push') . rule(4);
    for my $t (@targets) {
        my @keys = grep { /^\Q$t\E / } sort keys %by;
        my $n = @keys;
        for my $tool (qw(h2load sipwake)) {
            $o .= row($t, $tool, spread([map { $by{$_}{$tool} ? $by{$_}{$tool}{rate} : undef } @keys], $n),
                spread([map { $by{$_}{$tool} ? $by{$_}{$tool}{cpu_us} : undef } @keys], $n, dec => 1));
        }
        my @r = map { my $h = $by{$_}; $h->{h2load} && $h->{sipwake} && $h->{h2load}{rate} > 0 ? $h->{sipwake}{rate} / $h->{h2load}{rate} : undef } @keys;
        $o .= row($t, 'ratio', spread(\@r, $n, dec => 2, unit => '×', bold => 1) . ' sipwake/h2load, per round', '');
    }
    return $o;
}

sub table {
    my ($base) = @_;
    my $m = read_meta($base);
    my @runs = read_runs($base);
    # a push run's rounds are its repetitions; each round gets an id unique over the runs
    for my $i (0 .. $#runs) { $_->{round_id} = ($i + 1) . ".$_->{round}" for @{ $runs[$i]{rounds} } }
    my $name = $m->{name} // '';
    return push_table($m, @runs) if $name eq 'push';
    return sip_table($m, $name =~ /^(register|messages)$/ ? $name : 'calls', @runs);
}

# --- README --------------------------------------------------------------------------------

my $ROOT = dirname(dirname(dirname(File::Spec->rel2abs(__FILE__))));
my %BLOCKS = (results => 'register', calls => 'calls', push => 'push', messages => 'messages');
my @ORDER = qw(results calls push messages);

# the latest var/bench/<time>-NAME directory (named by runs.sh: a date first) with a table.md, or undef
# (BENCH_RESULTS: another directory than var/bench, for tests/bench/t/report.t)
sub latest { my ($name) = @_; my $d = $ENV{BENCH_RESULTS} // "$ROOT/var/bench"; (reverse sort grep { -f "$_/table.md" } glob "$d/[0-9]*-$name")[0] }

sub print_latest {
    for my $x (@ORDER) {
        my $d = latest($BLOCKS{$x}) or next;
        open my $f, '<:encoding(UTF-8)', "$d/table.md" or die "report.pl: $d/table.md: $!\n";
        print "\n## $BLOCKS{$x} ($d/table.md; README block bench-$x)\n\n", <$f>;
    }
}

sub readme {
    my ($file) = @_;
    my $text = do { local $/; open my $f, '<:encoding(UTF-8)', $file or die "report.pl: $file: $!\n"; <$f> };
    for my $x (@ORDER) {
        my $latest = latest($BLOCKS{$x});
        unless ($latest) { print STDERR "report.pl: bench-$x: no *-$BLOCKS{$x}/table.md: block left as it is\n"; next }
        my $t = do { local $/; open my $f, '<:encoding(UTF-8)', "$latest/table.md" or die; <$f> };
        $t =~ s/\n*\z//;
        if ($text =~ s/(<!-- bench-\Q$x\E:begin -->\n).*?(\n<!-- bench-\Q$x\E:end -->)/$1$t$2/s) {
            print STDERR "report.pl: bench-$x block of $file from $latest/table.md\n";
        } else {
            print STDERR "report.pl: no bench-$x block in $file\n";
        }
    }
    open my $f, '>:encoding(UTF-8)', $file or die "report.pl: $file: $!\n";
    print $f $text;
}

if (@ARGV == 2 && $ARGV[0] eq '--readme') { readme($ARGV[1]); exit 0 }
if (@ARGV == 1 && $ARGV[0] eq '--latest') { print_latest(); exit 0 }
@ARGV == 1 or die "usage: report.pl BASE | report.pl --latest | report.pl --readme README.md\n";
print table($ARGV[0]);
