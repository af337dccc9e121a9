#!/usr/bin/perl
# The tree says what the README's "Source layout" says: every source file under server/ sits in
# a subsystem's directory and is named in the table, every file the table names exists, every
# header opens with the paragraph that says what it is, and the names a file exports begin with
# the file's name (read from the objects the test build made, so a new export cannot drift).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Basename qw(basename dirname);
use Sipwake;

my $root = $Sipwake::ROOT;
chdir $root or die "$root: $!";

my @src = grep { !/store_sqlite_migrations\.c$/ } split /\n/, `git ls-files 'server/*.c' 'server/*.h'`;
ok(@src > 40, 'git lists the sources') or BAIL_OUT('no git checkout?');
is_deeply([grep { m{^server/[^/]+$} } @src], [], 'no source file directly in server/: each is in its subsystem');

open my $fh, '<', 'README.md' or die;
my $readme = do { local $/; <$fh> };
my ($table) = $readme =~ /\n## Source layout\n(.*?)(?:\n## |\z)/s;
ok($table, 'the README has a Source layout section') or BAIL_OUT('no table');
my @named = $table =~ /`(server\/[^`]+)`/g;
my @patterns = map { my $p = quotemeta; $p =~ s/\\\*/[^\/]*/g; qr/^$p$/ } @named;
for my $c (grep { /\.c$/ } @src) {
    ok((grep { $c =~ $_ } @patterns), "$c is in the README's table");
}
for my $n (@named) {
    next if $n =~ /store_sqlite_migrations/;
    my @hit = $n =~ /\*/ ? glob($n) : (-e $n ? $n : ());
    ok(@hit, "$n, named in the table, exists");
}

for my $f (@src) {
    open my $hf, '<', $f or die;
    my $first = <$hf> // '';
    my $second = <$hf> // '';
    my $b = basename($f) =~ s/\.[ch]$//r;
    ok($first =~ m{^/\*} && $second =~ /^ \* \Q$b\E\b/, "$f opens with a paragraph naming it");
}

# Exports: the defined global symbols of each object of the build under test.
my $bin = $ENV{SIPWAKE_BIN} || "$root/server/sipwake";
my $objdir = $bin =~ m{/build-asan/sipwake$} ? dirname($bin) : "$root/server/build-release";
my @objs = glob("$objdir/*/*.o");
SKIP: {
    skip "no objects under $objdir", 1 unless @objs;
    my @bad;
    for my $o (@objs) {
        my $b = basename($o, '.o');
        for (split /\n/, `nm --defined-only $o`) {
            my ($type, $sym) = /^\S*\s+([TDBR])\s+(\S+)$/ or next;
            next if $sym eq $b || index($sym, "${b}_") == 0 || 0;
            next if $b eq 'util' && $sym =~ /^x(malloc|calloc|realloc|strdup|strndup|asprintf)$/;
            next if $sym =~ /^__|^_GLOBAL_|\.|^(__odr_asan|__asan)/;
            push @bad, "$o: $sym";
        }
    }
    is_deeply(\@bad, [], 'every exported name begins with its file\'s name') or diag join("\n", @bad);
}

done_testing;
