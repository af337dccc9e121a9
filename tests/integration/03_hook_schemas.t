#!/usr/bin/perl
# schemas/hooks/*.json are what `sipwake --hook-schemas` writes from the decision tables the
# decoder walks (server/policy/lua_hook_decision.c): a field, a bound, a word or a rule added,
# changed or removed on one side only fails here, naming it (`make hook-schemas` regenerates
# the files from the tables).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use File::Basename qw(basename);
use JSON::PP;
use Sipwake;

my $bin = $Sipwake::BIN;
my $committed_dir = "$Sipwake::ROOT/schemas/hooks";
my $dir = tempdir('sipwake-hook-schemas-XXXXXX', TMPDIR => 1, CLEANUP => 1);

my $out = `$bin --hook-schemas $dir 2>&1`;
is($?, 0, '--hook-schemas writes the schemas') or diag $out;

my @generated = sort map { basename($_) } glob("$dir/*.json");
my @committed = sort map { basename($_) } glob("$committed_dir/*.json");
ok(@generated >= 7, 'a schema for every hook') or diag "@generated";
is_deeply(\@committed, \@generated, 'schemas/hooks holds one file per hook the tables know, no other');

sub slurp { open my $f, '<', $_[0] or return undef; local $/; <$f> }

# Every property path of a schema, with what it says of it (type, words, bounds, required,
# conditions), so a difference is reported as the field it is about.
sub fields {
    my ($s, $path, $into) = @_;
    return $into unless ref $s eq 'HASH';
    my %said = map { exists $s->{$_} ? ($_ => $s->{$_}) : () }
        qw(type enum minimum maximum minLength maxLength pattern required additionalProperties
           maxProperties propertyNames oneOf anyOf dependentRequired dependentSchemas allOf);
    $into->{$path || '(decision)'} = JSON::PP->new->canonical->encode(\%said);
    my $props = $s->{properties} || {};
    fields($props->{$_}, $path ? "$path.$_" : $_, $into) for keys %$props;
    return $into;
}

my $json = JSON::PP->new;
for my $name (@generated) {
    my $want = slurp("$dir/$name");
    my $have = slurp("$committed_dir/$name");
    if (!defined $have) {
        fail("$name: no committed file for this hook (make hook-schemas)");
        next;
    }
    my ($w, $h) = (eval { $json->decode($want) }, eval { $json->decode($have) });
    ok($w && $h, "$name: both parse as JSON") or next;
    my ($fw, $fh) = (fields($w, '', {}), fields($h, '', {}));
    my @only_tables = grep { !exists $fh->{$_} } sort keys %$fw;
    my @only_file = grep { !exists $fw->{$_} } sort keys %$fh;
    my @differ = grep { exists $fh->{$_} && $fw->{$_} ne $fh->{$_} } sort keys %$fw;
    ok(!@only_tables && !@only_file && !@differ,
       "$name: the same fields, with the same types, words, bounds and rules")
        or diag join '', (map { "  $_: only in the tables (add it to the file: make hook-schemas)\n" } @only_tables),
                         (map { "  $_: only in the file (no row for it in the tables)\n" } @only_file),
                         (map { "  $_:\n    tables: $fw->{$_}\n    file:   $fh->{$_}\n" } @differ);
    my @wl = split /\n/, $want, -1;
    my @hl = split /\n/, $have, -1;
    my ($line) = grep { ($wl[$_] // '') ne ($hl[$_] // '') } 0 .. ($#wl > $#hl ? $#wl : $#hl);
    ok(!defined $line, "$name: the committed file is exactly the generated one, descriptions too")
        or diag sprintf("  line %d\n    generated: %s\n    committed: %s\n", $line + 1,
                        $wl[$line] // '(end of file)', $hl[$line] // '(end of file)');
}

my $missing = "$dir/no/such/dir";
$out = `$bin --hook-schemas $missing 2>&1`;
ok($? >> 8 == 1 && $out =~ m{\Q$missing\E/\w+\.json: No such file or directory}, 'an unwritable directory: exit 1, the path and the reason')
    or diag $out;

done_testing;
