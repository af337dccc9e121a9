#!/usr/bin/perl
# Replays the fuzzing seed corpus (tests/fuzz/corpus) and the RFC 4475/5118 torture corpus
# once through the libFuzzer target, built with ASan/UBSan: every input must be handled
# without a crash, a leak or undefined behaviour. `make fuzz` does the actual fuzzing.
use strict;
use warnings;
use FindBin;
use Test::More;

my $root = "$FindBin::Bin/../..";
my $bin = "$root/tests/fuzz/build/fuzz_sip_input";
plan skip_all => "$bin not built (make fuzz-build)" unless -x $bin;
my @dirs = map { "$root/$_" } qw(tests/fuzz/corpus tests/torture/rfc4475 tests/torture/rfc5118);
my $inputs = 0;
$inputs += () = glob("$_/*") for @dirs;
ok($inputs >= 60, "$inputs seed inputs");
my $out = `$bin -runs=0 @dirs 2>&1`;
my $rc = $? >> 8;
is($rc, 0, 'every seed input handled without a sanitizer report') or diag $out;
like($out, qr/INITED exec\/s|Done \d+ runs/, 'libFuzzer ran the corpus');
unlike($out, qr/ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:/, 'no sanitizer output');
done_testing;
