#!/usr/bin/perl
# embed.pl KIND FILE...: turns the numbered schema files of schemas/KIND (NNN_name.sql for
# sqlite, NNN_name.json for mongo) into a C array of migrations, in number order, so the
# binary carries its schema and needs no files at run time.
use strict;
use warnings;
my $kind = shift @ARGV;
$kind =~ /^(sqlite|mongo)$/ or die "usage: embed.pl sqlite|mongo FILE...\n";
print "/* Generated from schemas/$kind by schemas/sqlite/embed.pl. Do not edit. */\n";
print "#include \"store_${kind}_migrations.h\"\n\n";
print "const struct store_${kind}_migration store_${kind}_migrations[] = {\n";
my $count = 0;
for my $file (sort @ARGV) {
    my ($id, $name) = $file =~ m{(\d+)_([^/]+)\.(?:sql|json)$} or die "bad migration name $file\n";
    open my $fh, '<', $file or die "$file: $!\n";
    local $/;
    my $text = <$fh>;
    close $fh;
    $text =~ s/\\/\\\\/g;
    $text =~ s/"/\\"/g;
    $text =~ s/\n/\\n"\n    "/g;
    printf "    {%d, \"%s\",\n    \"%s\"},\n", $id, $name, $text;
    $count++;
}
print "};\n\nconst int store_${kind}_migrations_count = $count;\n";
