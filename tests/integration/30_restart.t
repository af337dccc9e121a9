#!/usr/bin/perl
# Bindings survive a restart: loaded from the store with their push params (so a re-REGISTER
# after the restart still replaces instead of adding), expired rows purged at start.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Sipwake;

my $sw = Sipwake->new;
$sw->start;
my $PUSH = 'pn-provider=apns;pn-param=T1.com.ex.app.voip;pn-prid=' . ('0f' x 32);
my $ua = $sw->ua(user => 'alice');
is($ua->register(contact => "sip:alice\@127.0.0.1:1;$PUSH", contact_params => ';+sip.pnsreg',
    expires => 3600)->{code}, 200, 'push binding registered');
my $b = $sw->ua(user => 'bob');
is($b->register(contacts => ['<sip:bob@127.0.0.1:2>;q=0.7;+sip.instance="<urn:uuid:b>";reg-id=1'],
    expires => 600)->{code}, 200, 'plain binding with instance, reg-id and q');
is($sw->sql_wait("select count(*) from location", '2'), '2', 'both stored');
ok($sw->stop, 'stopped with SIGTERM');

# an expired row left by a previous run is purged at start
$sw->sql("insert into location (contact_id, username, domain, contact, expires, callid, cseq, flags) "
    . "values (42, 'old', 'example.com', 'sip:old\@127.0.0.1:9', strftime('%s','now') - 10, 'x', 1, 0)");
$sw->start;
like($sw->log, qr/location: 2 bindings loaded, 1 expired ones purged/, 'two loaded, one purged');
is($sw->sql("select count(*) from location where username='old'"), '0', 'expired row deleted');

my $ua2 = $sw->ua(user => 'alice');
my $r = $ua2->register(contact => "sip:alice\@127.0.0.1:" . $ua2->local_port . ";$PUSH",
    expires => 3600);
my @c = Sipwake::UA::header($r, 'contact');
is(scalar @c, 1, 'after the restart, the same push params still replace the binding');
like($c[0], qr/:\Q${\ $ua2->local_port }\E;/, 'now at the new address');
my $b2 = $sw->ua(user => 'bob');
$r = $b2->register(contacts => ['<sip:bob@127.0.0.1:3>'], expires => 600);
@c = Sipwake::UA::header($r, 'contact');
is(scalar @c, 2, 'another contact of bob adds a second binding');
ok((grep { /q=0\.700;\+sip\.instance="<urn:uuid:b>";reg-id=1/ } @c), 'q, instance and reg-id restored');
is($sw->sql("select kv_store from location where username='bob' and sip_instance is not null"),
   '{"reg_id":1}', 'reg-id kept in kv_store');
ok($sw->stop, 'clean shutdown');
done_testing;
