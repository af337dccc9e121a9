#!/usr/bin/perl
# Turns schemas/sqlite/NNN_name.sql files into a C array of migrations, in number order,
# so the binary carries its schema and needs no files at run time.
use strict;
use warnings;
print "/* Generated from schemas/sqlite by schemas/sqlite/embed.pl. Do not edit. */\n";
print "#include \"store_sqlite_migrations.h\"\n\n";
print "const struct store_sqlite_migration store_sqlite_migrations[] = {\n";
my $count = 0;
for my $file (sort @ARGV) {
    my ($id, $name) = $file =~ m{(\d+)_([^/]+)\.sql$} or die "bad migration name $file\n";
    open my $fh, '<', $file or die "$file: $!\n";
    local $/;
    my $sql = <$fh>;
    close $fh;
    $sql =~ s/\\/\\\\/g;
    $sql =~ s/"/\\"/g;
    $sql =~ s/\n/\\n"\n    "/g;
    printf "    {%d, \"%s\",\n    \"%s\"},\n", $id, $name, $sql;
    $count++;
}
print "};\n\nconst int store_sqlite_migrations_count = $count;\n";
