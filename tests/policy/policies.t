#!/usr/bin/perl
# Runs every tests/policy/*_test.lua with `sipwake --test-policy` against the policy it tests,
# inside the real sandboxed VM, and reports each as a subtest.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Sipwake;

my %policy_of = (
    'default_test.lua'  => "$Sipwake::ROOT/policies/default.lua",
    'route_test.lua'    => "$Sipwake::ROOT/policies/default.lua",
    'examples_test.lua' => "$Sipwake::ROOT/policies/examples/tenant-by-domain.lua",
    'push_hooks_test.lua' => "$FindBin::Bin/push_hooks_policy.lua",
    'decisions_test.lua'  => "$FindBin::Bin/decisions_policy.lua",
);
for my $test (sort glob("$FindBin::Bin/*_test.lua")) {
    my ($name) = $test =~ m{([^/]+)$};
    my $policy = $policy_of{$name} or BAIL_OUT("no policy named for $name");
    my $sw = Sipwake->new(config => { policy => { file => $policy } });
    my $out = `$Sipwake::BIN --config ${\ $sw->config_path } --test-policy $test 2>&1`;
    my $rc = $? >> 8;
    subtest $name => sub {
        my $seen = 0;
        for my $line (split /\n/, $out) {
            if ($line =~ /^(not )?ok \d+ - (.*)$/) {
                ok(!$1, $2);
                $seen++;
            } elsif ($line =~ /^#/) {
                diag $line;
            }
        }
        ok($seen > 0, 'the test ran checks');
        is($rc, 0, "$name exits 0") or diag $out;
    };
}
done_testing;
