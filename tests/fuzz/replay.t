#!/usr/bin/perl
# Replays the fuzzing seed corpora once through every libFuzzer target, built with ASan/UBSan
# (`make fuzz-build`): each target gets its own corpus, and the SIP input target also the RFC
# 4475/5118 torture corpus (tests/torture/, the byte-exact copy of /work/shared/torture). Every
# input must be handled without a crash, a leak, undefined behaviour or a broken promise the
# target checks (fuzz_pn aborts when a token survives redaction). `make fuzz` does the fuzzing.
use strict;
use warnings;
use FindBin;
use Test::More;

my $root = "$FindBin::Bin/../..";
my %targets = (
    sip_input => { dirs => [qw(tests/fuzz/corpus tests/torture/rfc4475 tests/torture/rfc5118)], min => 70 },
    register  => { dirs => [qw(tests/fuzz/corpus-register)], min => 30 },
    pn        => { dirs => [qw(tests/fuzz/corpus-pn)],       min => 30 },
    config    => { dirs => [qw(tests/fuzz/corpus-config)],   min => 25 },
    admin_mi  => { dirs => [qw(tests/fuzz/corpus-mi)],       min => 10 },
);
for my $t (sort keys %targets) {
    my $bin = "$root/tests/fuzz/build/fuzz_$t";
  SKIP: {
        skip "$bin not built (make fuzz-build)", 4 unless -x $bin;
        my @dirs = map { "$root/$_" } @{ $targets{$t}{dirs} };
        my @files = split /\n/, `find @dirs -type f`;
        my $inputs = @files;
        ok($inputs >= $targets{$t}{min}, "fuzz_$t: $inputs seed inputs");
        my $out = `cd $root && $bin -runs=0 @dirs 2>&1`;
        is($? >> 8, 0, "fuzz_$t: every seed handled without a sanitizer report") or diag $out;
        like($out, qr/INITED|Done \d+ runs/, "fuzz_$t: libFuzzer ran the corpus");
        unlike($out, qr/ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:/,
               "fuzz_$t: no sanitizer output");
    }
}
done_testing;
