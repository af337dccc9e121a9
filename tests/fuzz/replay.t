#!/usr/bin/perl
# Replays the fuzzing seed corpora once through the libFuzzer targets, built with ASan/UBSan:
# tests/fuzz/corpus and the RFC 4475/5118 torture corpus through the SIP input target,
# tests/fuzz/corpus-mi through the MI target. Every input must be handled without a crash, a
# leak or undefined behaviour. `make fuzz` does the actual fuzzing.
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

my $mi = "$root/tests/fuzz/build/fuzz_admin_mi";
my @mi_inputs = glob("$root/tests/fuzz/corpus-mi/*");
ok(@mi_inputs >= 10, scalar(@mi_inputs) . ' MI seed inputs');
$out = `cd $root && $mi -runs=0 $root/tests/fuzz/corpus-mi 2>&1`;
is($? >> 8, 0, 'every MI seed handled: one JSON-RPC answer each, no sanitizer report') or diag $out;
unlike($out, qr/ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:/, 'no sanitizer output');
done_testing;
