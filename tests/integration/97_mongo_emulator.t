#!/usr/bin/perl
# The MongoDB emulator (tests/emulators/mongo.py) is a standalone mongod 6.0 as far as the
# MongoDB store backend can tell, and no more: checked from outside through two real drivers.
# pymongo 3.11 (97_mongo_emulator_pymongo.py, one JSON line per check) tries the handshake,
# CRUD, upserts, unique indexes, cursors past 101 documents, findAndModify, count, the BSON sort
# order, each refusal a real server gives (and the "emulator:" ones), failCommand, write concern
# on a standalone, the raw wire (checksums, legacy opcodes), documents over 16 MiB, wrong BSON
# types, database names and batchSize 0; then mongo-c-driver itself, in a
# small C program built here, connects, pings, inserts and finds.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use JSON::PP;
use Sipwake;

my $dir = tempdir('mongo-emulator-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my (undef, $port) = Sipwake::start_emulator('mongo', '--log', "$dir/mongo.log");
ok($port, 'the MongoDB emulator listening') or BAIL_OUT('no emulator');
alarm 300;    # bounded: every step below has its own timeouts well under this

# The log, one decoded command per line.
sub log_entries {
    open my $fh, '<', "$dir/mongo.log" or return ();
    return map { decode_json($_) } grep { /\S/ } <$fh>;
}

# -- pymongo
my $json = JSON::PP->new->canonical;
open my $py, '-|', '/usr/bin/python3', "$FindBin::Bin/97_mongo_emulator_pymongo.py", $port or die;
my ($checks, $done) = (0, 0);
while (my $line = <$py>) {
    my $r = eval { decode_json($line) };
    if (!$r) { diag("helper: $line"); next; }
    if ($r->{done}) { $done = $r->{checks}; next; }
    $checks++;
    is($json->encode($r->{got}), $json->encode($r->{want}), "pymongo: $r->{name}");
}
close $py;
is($done, $checks, "the pymongo helper ran to its end, every check of it compared");

my @log = log_entries();
my ($py_first) = grep { ($_->{body}{client}{driver}{name} // '') eq 'PyMongo' } @log;
is($py_first && "$py_first->{op} $py_first->{command}", 'OP_QUERY ismaster',
   "pymongo's handshake came as OP_QUERY on admin.\$cmd, with its client metadata");
my ($maj) = grep { ($_->{command} // '') eq 'insert' && ($_->{collection} // '') eq 'wc'
                   && ($_->{body}{writeConcern}{w} // '') eq 'majority' } @log;
ok($maj && $maj->{body}{writeConcern}{j} && $maj->{body}{writeConcern}{wtimeout} == 1000,
   'the log shows the write concern the driver sent (w: majority, j, wtimeout)');
ok((grep { ($_->{command} // '') eq 'getMore' } @log), 'the log shows the getMore commands');
my $hellos = grep { ($_->{command} // '') =~ /^(hello|isMaster|ismaster)$/ } @log;
cmp_ok($hellos, '<', 100, "pymongo's monitor waits in awaitable hellos instead of spinning ($hellos hellos)");

# -- mongo-c-driver
my $cflags = `pkg-config --cflags --libs libmongoc-1.0 2>/dev/null`;
chomp $cflags;
ok($cflags, 'pkg-config knows libmongoc-1.0 (Debian libmongoc-dev)');
my $bin = "$dir/97_mongo_emulator_c";
is(system("gcc -Wall -Werror -o $bin $FindBin::Bin/97_mongo_emulator_c.c $cflags"), 0,
   'the C check builds against mongo-c-driver');
my $out = `$bin 'mongodb://127.0.0.1:$port/?appname=c-check&serverSelectionTimeoutMS=5000&socketTimeoutMS=10000'`;
is($out, <<'OUT', 'mongo-c-driver: ping, insert, insert_many, find with sort, duplicate key, w: majority');
ping ok
insert_one ok
insert_many 3
found { "_id" : 12, "name" : "bob" }
found { "_id" : 11, "name" : "bob" }
insert_dup error 11000 E11000 duplicate key error collection: ccheck.people index: _id_ dup key: { _id: 1 }
insert_majority ok
OUT
@log = grep { ($_->{db} // '') eq 'ccheck' || ($_->{body}{client}{application}{name} // '') eq 'c-check' } log_entries();
my ($c_first) = grep { ($_->{body}{client}{driver}{name} // '') eq 'mongoc' } @log;
is($c_first && "$c_first->{op} $c_first->{command}", 'OP_QUERY isMaster',
   "mongo-c-driver's handshake came as OP_QUERY isMaster, with its client metadata");
my ($many) = grep { ($_->{command} // '') eq 'insert' && @{ $_->{body}{documents} // [] } == 3 } @log;
is($many && join(',', @{ $many->{sequences} // [] }), 'documents',
   'its insert_many came as an OP_MSG with a "documents" document sequence (kind 1)');
my @maj = grep { ($_->{body}{writeConcern}{w} // '') eq 'majority' } @log;
is(scalar(@maj), 2, 'its two w: majority inserts carry the write concern');

done_testing();
