#!/usr/bin/perl
# A first start with Web Push on and the default data_dir/vapid.pem: the credential check
# (push_check_config, before the store is opened) must neither fail because data_dir does
# not exist yet nor write anything — `--check` makes no key pair; the start makes data_dir
# and the key pair.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Sipwake;

my $sw = Sipwake->new(config => { general => { data_dir => undef }, store => { path => undef },
    registrar => { push_providers => 'webpush' } });
my $fresh = $sw->dir . '/fresh';
$sw->{config}{general}{data_dir} = $fresh;
$sw->write_config;
my $cfg = $sw->config_path;
my $bin = $Sipwake::BIN;

my $out = `$bin --config $cfg --check 2>&1`;
is($? >> 8, 0, '--check passes before data_dir exists') or diag $out;
ok(!-e $fresh, '--check made no data_dir');
mkdir $fresh or die "mkdir: $!";
$out = `$bin --config $cfg --check 2>&1`;
is($? >> 8, 0, '--check passes with an empty data_dir') or diag $out;
ok(!-e "$fresh/vapid.pem", '--check wrote no VAPID key pair');
rmdir $fresh;
ok(eval { $sw->start }, 'the first start comes up') or diag $@;
ok(-e "$fresh/vapid.pem", 'and made data_dir and the key pair');
$sw->stop;
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error/, 'no errors or sanitizer reports');
done_testing;
