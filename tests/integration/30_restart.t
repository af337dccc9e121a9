#!/usr/bin/perl
# Bindings survive a restart: loaded from the store with their push params (so a re-REGISTER
# after the restart still replaces instead of adding), expired rows purged at start. Dialogs
# survive too: the flow-token key is kept in data_dir, so a BYE routed by a Record-Route
# made before the restart still reaches the callee.
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

# a call set up before a restart, hung up after it
my $carl = $sw->ua(user => 'carl');
my $cp = $carl->local_port;
is($carl->register(expires => 600)->{code}, 200, 'carl registered');
my $dina = $sw->ua(user => 'dina');
my $dp = $dina->local_port;
$dina->send_raw("INVITE sip:carl\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$dp;rport;branch=z9hG4bKrs1\r\n"
    . "Max-Forwards: 70\r\nFrom: <sip:dina\@example.com>;tag=d1\r\nTo: <sip:carl\@example.com>\r\n"
    . "Call-ID: rs-call\r\nCSeq: 1 INVITE\r\nContact: <sip:dina\@127.0.0.1:$dp>\r\nContent-Length: 0\r\n\r\n");
my $inv = $carl->expect(qr/^INVITE /);
ok($inv, 'carl got the INVITE');
$carl->answer($inv, 200, reason => 'OK', tag => 'c1') if $inv;
my $ok = $dina->expect(qr/^SIP\/2\.0 200/);
my ($rr) = ($ok // '') =~ /^Record-Route: ([^\r]+)/m;
ok($rr, 'dina got the 200 with a Record-Route');
ok(-s $sw->dir . '/flow-token.key', 'the flow-token key is kept in data_dir');
ok($sw->stop, 'stopped mid-call');
$sw->start;
$dina->send_raw("BYE sip:carl\@127.0.0.1:$cp SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$dp;rport;branch=z9hG4bKrs2\r\n"
    . "Route: $rr\r\nMax-Forwards: 70\r\nFrom: <sip:dina\@example.com>;tag=d1\r\n"
    . "To: <sip:carl\@example.com>;tag=c1\r\nCall-ID: rs-call\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n");
my $bye = $carl->expect(qr/^BYE /);
ok($bye, 'after the restart, the BYE still follows the Record-Route to carl');
$carl->answer($bye, 200, reason => 'OK') if $bye;
like($dina->expect(qr/^SIP\/2\.0 /) // '', qr/^SIP\/2\.0 200/, 'and its 200 came back');
ok($sw->stop, 'clean shutdown');
done_testing;
