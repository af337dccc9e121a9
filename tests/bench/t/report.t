#!/usr/bin/perl
# tests/bench/report.pl and tests/bench/runs.sh, on results made up here (no benchmark runs):
# the table is the median of the runs with [min–max], the best clean step is the highest rate
# that passed (a refinement step included, an overload step not), the ratio is taken in each
# run (its median differs from the ratio of the medians), a figure some run lacks says of how
# many runs it is, the overload bar is counted per run, and `report.pl --readme` puts the
# latest table.md into the README's block byte for byte. runs.sh runs a script RUNS times
# into run<N>/ and records the date and the commit.
use strict;
use warnings;
use utf8;
use Test::More;
use File::Temp qw(tempdir);
use FindBin;

binmode Test::More->builder->$_, ':encoding(UTF-8)' for qw(output failure_output todo_output);
my $root = "$FindBin::Bin/../../..";
my $report = "$root/tests/bench/report.pl";
my $tmp = tempdir(CLEANUP => 1);

sub spew { my ($f, $s) = @_; open my $h, '>:encoding(UTF-8)', $f or die "$f: $!"; print $h $s; close $h }
sub slurp { my ($f) = @_; open my $h, '<:encoding(UTF-8)', $f or die "$f: $!"; local $/; <$h> }
sub run_report { my $o = `perl $report @_ 2>&1`; utf8::decode($o); return ($o, $? >> 8) }

# one made-up step line
sub step {
    my (%a) = @_;
    my %d = (phase => 'ramp', offered => $a{rate} * 10, ok => $a{rate} * 10, refused => 0, failed => 0, retrans => 0,
        elapsed => '10.00', cpu => 50, med_ms => 0, p99_ms => 4, verdict => 'PASS', wire_n => 100, wire_lost => 0,
        wire_drop => 0, inv_us => '10/20/30', ok_us => '10/20/30', sum_us => '20/40/60', %a);
    return 'step ' . join(' ', map { "$_=$d{$_}" } sort keys %d) . "\n";
}

# --- calls: three runs --------------------------------------------------------------------
my $base = "$tmp/20261206-080000-calls";
mkdir $base;
spew("$base/meta", "name=calls\ndate=2026-12-06 08:00 UTC\ncommit=abc1234+dirty\nruns=3\nhost=2 CPUs\nscript=tests/bench/calls.sh\n");
# best clean calls/s: kamailio-mem 1000, 2000, 4000; sipwake 1500, 3600, 4000: ratios 1.5, 1.8,
# 1.0 -> median 1.50 (the ratio of the medians would be 3600 / 2000 = 1.80)
my @runs = (
    # run 1: kamailio's best is a refinement step (1500) between 1000 (pass) and 2000 (fail)
    step(target => 'kamailio-mem', rate => 1000, achieved => 990, p99_ms => 2, sum_us => '30/100/200')
      . step(target => 'kamailio-mem', rate => 2000, achieved => 1500, verdict => 'FAIL', failed => 7)
      . step(target => 'kamailio-mem', rate => 1500, phase => 'refine', achieved => 1000, p99_ms => 3, sum_us => '30/110/210')
      . step(target => 'kamailio-mem', rate => 1900, phase => 'overload', achieved => 900, verdict => 'FAIL', offered => 19000, ok => 9000, failed => 10000)
      . "overload target=kamailio-mem rate=1900 clean_rate=1500 clean_achieved=1000 served_pct=47.4 bar=NOT-MET\n"
      . step(target => 'sipwake', rate => 1000, achieved => 1000, p99_ms => 1, sum_us => '20/50/90')
      . step(target => 'sipwake', rate => 1500, achieved => 1500, p99_ms => 2, sum_us => '20/60/95')
      . step(target => 'sipwake', rate => 2000, achieved => 1700, verdict => 'RETRANS')
      . step(target => 'sipwake', rate => 1900, phase => 'overload', achieved => 1600, verdict => 'REFUSED', offered => 19000, ok => 16000, refused => 2900, rcv_drops => 37)
      . "overload target=sipwake rate=1900 clean_rate=1500 clean_achieved=1500 window_ok=17000 window_s=10.00 window_rate=1700 served_pct=99.5 bar=MET\n",
    step(target => 'kamailio-mem', rate => 2000, achieved => 2000, p99_ms => 5)
      . step(target => 'kamailio-mem', rate => 3000, achieved => 2000, verdict => 'SLOW')
      . step(target => 'sipwake', rate => 2000, achieved => 2000, p99_ms => 3)
      . step(target => 'sipwake', rate => 3000, achieved => 3600, p99_ms => 9)
      . step(target => 'sipwake', rate => 4000, achieved => 3000, verdict => 'FAIL'),
    "error target=kamailio-lost what=callees_registered ok=0 of=1000\n"
      . step(target => 'kamailio-mem', rate => 4000, achieved => 4000, p99_ms => 4)
      . step(target => 'sipwake', rate => 4000, achieved => 4000, p99_ms => 4, sum_us => 'NA/NA/NA', wire_n => 0),
);
for my $i (0 .. $#runs) { mkdir "$base/run" . ($i + 1); spew("$base/run" . ($i + 1) . "/results.tsv", $runs[$i]) }
my ($t, $rc) = run_report($base);
is($rc, 0, 'report.pl reads three runs of calls');
like($t, qr/^Calls through the proxy: 3 runs of `tests\/bench\/calls.sh`, 2026-12-06 08:00 UTC, commit abc1234\+dirty, 2 CPUs\./, 'the header: runs, script, date, commit');
like($t, qr/^\| figure \| kamailio-mem \| sipwake \|\n\|---\|---\|---\|$/m, 'a Markdown table, one column a target');
like($t, qr/^\| best clean calls\/s \| 2,000 \[1,000–4,000\] \| 3,600 \[1,500–4,000\] \|$/m,
    'best clean calls/s: the median and spread of each run\'s highest passing step, a refinement step included, the overload step not');
like($t, qr/^\| sipwake \/ kamailio-mem, per run \|  \| \*\*1\.50×\*\* \[1\.00–1\.80×\] \|$/m, 'the ratio is taken per run: median 1.50, not 3,600 / 2,000');
like($t, qr/^\| its step \(target rate\) \| 2,000 \[1,500–4,000\] \| 3,000 \[1,500–4,000\] \|$/m, 'the target rate of the best step');
like($t, qr/^\| on the wire, the proxy's INVITE \+ 200 time, p99\.9, µs, at that step \| 60 \[60–210\] \| 78 \[60–95\] \(2 of 3 runs\) \|$/m,
    'a figure only some runs have says of how many runs it is (sipwake\'s run 3 had no capture)');
like($t, qr/^\| highest step both passed \(target rate\) \| 2,000 \[1,500–4,000\] \| 2,000 \[1,500–4,000\] \|$/m, 'the highest step both targets passed, per run');
like($t, qr/^\| — completed \+ 503, % of offered \| 47\.4 % \[47\.4–47\.4 %\] \(1 of 3 runs\) \| 99\.5 % \[99\.5–99\.5 %\] \(1 of 3 runs\) \|$/m,
    'overload: completed + 503 over offered');
like($t, qr/^\| — refused at once with 503 \| 0 \[0–0\] \(1 of 3 runs\) \| 2,900 \[2,900–2,900\] \(1 of 3 runs\) \|$/m, 'overload: the 503s');
like($t, qr/^\| — completed calls\/s while the calls were offered \| 900 \[900–900\] \(1 of 3 runs\) \| 1,700 \[1,700–1,700\] \(1 of 3 runs\) \|$/m,
    'overload: the window rate when recorded (sipwake), else completed / elapsed (kamailio-mem: an older run)');
like($t, qr/^\| — that \/ best clean calls\/s, per run \| 0\.90× \[0\.90–0\.90×\] \(1 of 3 runs\) \| 1\.13× \[1\.13–1\.13×\] \(1 of 3 runs\) \|$/m,
    'overload: the window rate over the clean step, per run');
like($t, qr/^\| — datagrams the kernel dropped at the proxy's port \(queue full\) \| NA \| 37 \[37–37\] \(1 of 3 runs\) \|$/m,
    'overload: the kernel\'s receive drops, where a run counted them');
like($t, qr/^\| — bar: .* \| met in 0 of 3 runs \| met in 1 of 3 runs \|$/m, 'the overload bar counted per run');
like($t, qr/^\| 2,000 \| 1 of 3 \| 5 \[5–5\] \| 3 \[3–3\] \| 40 \[40–40\] \| 40 \[40–40\] \|$/m, 'per step: only the runs where every target passed it (not run 1: FAIL, RETRANS)');
like($t, qr/^\| 1,500 \| 1 of 3 \| 3 \[3–3\] \| 2 \[2–2\] \| 110 \[110–110\] \| 60 \[60–60\] \|$/m, 'per step: SIPp and wire p99 side by side');
unlike($t, qr/^\| 1,900 \|/m, 'the overload step is not a ramp step');
like($t, qr/^Not measured: kamailio-lost in run 3 \(callees_registered: 0 of 1000\)\.$/m, 'a target a run could not measure is named');

# --- register: two runs, a median of two is their mean ------------------------------------
my $reg = "$tmp/20261206-070000-register";
mkdir $reg;
spew("$reg/meta", "name=register\ndate=2026-12-06 07:00 UTC\ncommit=abc1234\nruns=2\nscript=tests/bench/register.sh\n");
for my $i (1, 2) {
    mkdir "$reg/run$i";
    spew("$reg/run$i/results.tsv", step(target => 'kamailio-mem', rate => 10000, achieved => 10000 * $i, sum_us => "100/${i}000/5000")
          . step(target => 'sipwake', rate => 10000, achieved => 15000 * $i, sum_us => "50/${i}500/3000")
          . "memory target=sipwake idle_kb=1 loaded_kb=2 regs=100000 per_binding_b=" . (700 + 100 * $i) . " failed=0 restart_s=0.5$i\n");
}
($t, $rc) = run_report($reg);
is($rc, 0, 'report.pl reads two runs of register');
like($t, qr/^\| best clean REGISTER\/s \| 15,000 \[10,000–20,000\] \| 22,500 \[15,000–30,000\] \|$/m, 'a median of two runs is their mean');
like($t, qr/^\| memory per binding, B \| NA \| 850 \[800–900\] \|$/m, 'memory per binding; NA where no run has it');
like($t, qr/^\| restart with the bindings stored, s \| NA \| 0\.52 \[0\.51–0\.52\] \|$/m, 'restart time');
like($t, qr/^\| on the wire, the registrar's REGISTER → 200 time, p99, µs, at that step \| 1,500 \[1,000–2,000\] \| 2,000 \[1,500–2,500\] \|$/m,
    'register: the wire p99 at the best step');
like($t, qr/^\| on the wire, REGISTER → 200, p99, µs, at that step \| 1,500 \[1,000–2,000\] \| 2,000 \[1,500–2,500\] \|$/m,
    'and at the highest step both passed');
like($t, qr/^\| 10,000 \| 2 of 2 \| \S+ \[\S+\] \| \S+ \[\S+\] \| 1,500 \[1,000–2,000\] \| 2,000 \[1,500–2,500\] \|$/m,
    'register: the per-step table has the wire p99 of both');

# --- push: one run of three rounds ---------------------------------------------------------
my $push = "$tmp/20261206-060000-push";
mkdir $push;
mkdir "$push/run1";
spew("$push/meta", "name=push\ndate=2026-12-06 06:00 UTC\ncommit=abc1234\nruns=1\nscript=tests/bench/push.sh\n");
spew("$push/run1/results.tsv", join '', map {
    my ($r, $h, $s) = @$_;
    "round target=sink round=$r tool=h2load rate=$h ok=1 cpu_us=5.0 target_pct=30\n"
      . "round target=sink round=$r tool=sipwake rate=$s ok=1 cpu_us=10.0 target_pct=30\n"
} [1, 100, 50], [2, 200, 180], [3, 300, 210]);
($t, $rc) = run_report($push);
is($rc, 0, 'report.pl reads a push run');
like($t, qr/^\| sink \| ratio \| \*\*0\.70×\*\* \[0\.50–0\.90×\] sipwake\/h2load, per round \|  \|$/m, 'push: the ratio per round (0.5, 0.9, 0.7)');
like($t, qr/^\| sink \| h2load \| 200 \[100–300\] \| 5\.0 \[5\.0–5\.0\] \|$/m, 'push: median of the rounds');
like($t, qr/^Push throughput: 1 run \(3 rounds of both tools against each target\)/, 'push: the rounds counted');

# --- --readme: the latest table.md, byte for byte -------------------------------------------
my $older = "$tmp/20261206-050000-calls";
mkdir $older;
spew("$older/table.md", "old table\n");
spew("$base/table.md", $t = (run_report($base))[0]);
my $readme = "$tmp/README.md";
my $before = "# x\n\ntext before\n<!-- bench-calls:begin -->\nfigures from one run\n<!-- bench-calls:end -->\ntext after\n";
spew($readme, $before);
local $ENV{BENCH_RESULTS} = $tmp;
my ($out) = run_report('--readme', $readme);
my $after = slurp($readme);
my $table = slurp("$base/table.md");
$table =~ s/\n*\z//;
is($after, "# x\n\ntext before\n<!-- bench-calls:begin -->\n$table\n<!-- bench-calls:end -->\ntext after\n",
    '--readme: the block is the latest table.md, the rest of the file untouched');
like($out, qr/bench-results: no \*-register\/table\.md: block left as it is/, '--readme says which block it left as it is');
($out) = run_report('--latest');
like($out, qr/\Q$table\E/, '--latest prints the latest tables');

# --- runs.sh: RUNS runs of a script, then the table -----------------------------------------
my $script = "$tmp/fake.sh";
spew($script, "#!/bin/sh\nmkdir -p \"\$OUT\"\nprintf 'step target=a phase=ramp rate=100 achieved=%s verdict=PASS\\nstep target=b phase=ramp rate=100 achieved=50 verdict=PASS\\n' \"\$((\$(basename \$OUT | tr -dc 0-9) * 10))\" > \"\$OUT/results.tsv\"\n");
chmod 0755, $script;
my $rb = "$tmp/runs";
$out = `RUNS=3 BASE=$rb $root/tests/bench/runs.sh calls $script 2>&1`;
utf8::decode($out);
is($? >> 8, 0, 'runs.sh runs');
ok(-f "$rb/run$_/results.tsv", "runs.sh: run$_/") for 1 .. 3;
my $commit = `git -C $root rev-parse --short HEAD`;
chomp $commit;
like(slurp("$rb/meta"), qr/^commit=\Q$commit\E(\+dirty)?$/m, 'runs.sh records the commit');
like(slurp("$rb/meta"), qr/^date=\d{4}-\d\d-\d\d \d\d:\d\d UTC$/m, 'runs.sh records the date (UTC)');
like($out, qr/^\| best clean calls\/s \| 20 \[10–30\] \| 50 \[50–50\] \|$/m, 'runs.sh ends with the table of its runs');
is(slurp("$rb/table.md"), (run_report($rb))[0], 'table.md is what report.pl prints');

done_testing;
