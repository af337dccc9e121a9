#!/usr/bin/perl
# The RFC 8599 registrar on the wire (UDP) and in the store: push bindings, capability
# queries, 555, 423, binding identity, unregister, ordering, caps, retransmissions, expiry.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Time::HiRes qw(sleep);
use Sipwake;

my $sw = Sipwake->new(config => {
    registrar => { min_expires => 1, max_contacts => 3 },
});
$sw->start;

my $TOK = 'ab' x 32;
my $PUSH = "pn-provider=apns;pn-param=TEAM123.com.example.app.voip;pn-prid=$TOK";
sub fc { join ' | ', Sipwake::UA::header($_[0], 'feature-caps') }
sub contacts { [Sipwake::UA::header($_[0], 'contact')] }

# --- push binding
my $ua = $sw->ua(user => 'alice');
my $r = $ua->register(contact => "sip:alice\@127.0.0.1:" . $ua->local_port . ";$PUSH", expires => 3600);
is($r->{code}, 200, 'push REGISTER answered 200');
is(fc($r), '*;+sip.pns="apns";+sip.pnsreg="130"',
   'Feature-Caps names the push service (RFC 8599 §5.6.1.1); a VoIP-only app gets no refresh push, so it is told to refresh itself');
like($r->{raw}, qr/^Via: .*;rport=\d+;.*received=127\.0\.0\.1/m, 'Via has rport and received (RFC 3581)');
like($r->{raw}, qr/^To: <sip:alice\@example\.com>;tag=\w+/m, 'To-tag added');
like($r->{raw}, qr/^Date: /m, 'Date header');
is(scalar @{ contacts($r) }, 1, 'one binding listed');
like(contacts($r)->[0], qr/;expires=(3600|3599)$/, 'remaining expires listed');
is($sw->sql_wait("select flags from location where username='alice'", '4'), '4',
   'stored as a push binding (OpenSIPS flag 4)');
like($sw->sql("select expires - strftime('%s','now') from location where username='alice'"),
     qr/^3(59\d|600)$/, 'expires stored as an absolute UNIX time');

# --- +sip.pnsreg feature tag
my $ua2 = $sw->ua(user => 'bob');
$r = $ua2->register(contact => "sip:bob\@127.0.0.1:" . $ua2->local_port
    . ";pn-provider=fcm;pn-param=proj;pn-prid=tok:APA91b", contact_params => ';+sip.pnsreg',
    expires => 3600);
is($r->{code}, 200, 'fcm push REGISTER with +sip.pnsreg');
is(fc($r), '*;+sip.pns="fcm";+sip.pnsreg="130"', 'sip.pnsreg in the same Feature-Caps');

# --- capability queries
my $q = $sw->ua(user => 'carol');
$r = $q->register(contact => "sip:carol\@127.0.0.1:" . $q->local_port . ";pn-provider", expires => 600);
is($r->{code}, 200, 'bare pn-provider query answered 200');
is_deeply([sort(Sipwake::UA::header($r, 'feature-caps'))],
    ['*;+sip.pns="apns"', '*;+sip.pns="fcm"'], 'one Feature-Caps per supported provider');
is($sw->sql_wait("select flags from location where username='carol'", '0'), '0',
   'query binding stored as an ordinary binding');
$r = $q->register(contact => "sip:carol\@127.0.0.1:" . $q->local_port . ";pn-provider=fcm", expires => 600);
is(fc($r), '*;+sip.pns="fcm"', 'named query gets that provider only');

# --- 555
my $w = $sw->ua(user => 'dave');
$r = $w->register(contact => "sip:dave\@127.0.0.1:1;pn-provider=webpush;pn-prid=https://push.example/x", expires => 3600);
is($r->{code}, 555, 'provider not enabled: 555');
is($r->{reason}, 'Push Notification Service Not Supported', '555 reason phrase');
is(fc($r), '', 'no Feature-Caps in a 555');
$r = $w->register(contact => "sip:dave\@127.0.0.1:1;pn-provider", expires => 3600);
$r = $w->register(contact => "sip:dave\@127.0.0.1:1;pn-provider=huawei", expires => 3600);
is($r->{code}, 555, 'query for an unsupported provider: 555');
$r = $w->register(contact => "sip:dave\@127.0.0.1:1;pn-provider=apns;pn-prid=AA", expires => 3600);
is($r->{code}, 555, 'apns without pn-param: 555');
like(Sipwake::UA::header($r, 'warning'), qr/pn-param/, 'Warning says why');
is($sw->sql_wait("select count(*) from location where username='dave'", '1'), '1',
   'only the earlier query binding of dave exists');

# --- 423
my $e = $sw->ua(user => 'erin');
$r = $e->register(contact => "sip:erin\@127.0.0.1:1;$PUSH", expires => 300);
is($r->{code}, 423, 'push binding too short to push 120 s before expiry: 423');
is(Sipwake::UA::header($r, 'min-expires'), '600', 'Min-Expires is push_min_expires');
is($sw->sql("select count(*) from location where username='erin'"), '0', 'nothing stored');

# --- re-REGISTER from a new address with the same push params replaces the binding
my $ua_b = $sw->ua(user => 'alice');
$r = $ua_b->register(contact => "sip:alice\@127.0.0.1:" . $ua_b->local_port . ";$PUSH", expires => 3600);
is($r->{code}, 200, 're-REGISTER from a new port');
is(scalar @{ contacts($r) }, 1, 'the 200 lists one contact');
like(contacts($r)->[0], qr/:\Q${\ $ua_b->local_port }\E;/, 'and it is the new one');
my $rcv = "sip:127.0.0.1:" . $ua_b->local_port;
is($sw->sql_wait("select received from location where username='alice'", $rcv), $rcv,
   'the binding now points at the new flow');
is($sw->sql("select count(*) from location where username='alice'"), '1', 'one row in the store');

# --- same instance with a new token replaces too
my $inst = '+sip.instance="<urn:uuid:00000000-0000-1000-8000-00aa00bb00cc>"';
my $f = $sw->ua(user => 'frank');
$r = $f->register(contact => "sip:frank\@127.0.0.1:1;pn-provider=fcm;pn-param=proj;pn-prid=OLD",
    contact_params => ";$inst", expires => 3600);
$r = $f->register(contact => "sip:frank\@127.0.0.1:2;pn-provider=fcm;pn-param=proj;pn-prid=NEW",
    contact_params => ";$inst", expires => 3600);
is(scalar @{ contacts($r) }, 1, 'new token, same +sip.instance: replaced');
like(contacts($r)->[0], qr/pn-prid=NEW/, 'the new token is kept');
like(contacts($r)->[0], qr/\+sip\.instance="<urn:uuid:/, 'instance listed');

# --- Linphone forms and legacy params
my $l = $sw->ua(user => 'linphone');
$r = $l->register(contact => "sip:linphone\@127.0.0.1:3;pn-provider=apns.dev;"
    . "pn-param=ABCD1234.org.linphone.phone.voip&remote;pn-prid=AAAA:voip&BBBB:remote;pn-silent=1",
    expires => 3600);
is($r->{code}, 200, 'Linphone dual-token sandbox REGISTER');
is(fc($r), '*;+sip.pns="apns.dev"', 'apns.dev advertised as sent');
$r = $l->register(contact => "sip:linphone\@127.0.0.1:4;pn-provider=apns.dev;"
    . "pn-param=ABCD1234.org.linphone.phone.remote&voip;pn-prid=BBBB:remote&CCCC:voip",
    expires => 3600);
is(scalar @{ contacts($r) }, 1, 'rotated voip token, reversed order: still one binding');
my $g = $sw->ua(user => 'legacy');
$r = $g->register(contact => "sip:legacy\@127.0.0.1:5;pn-type=firebase;pn-tok=LTOK;app-id=proj", expires => 3600);
is($r->{code}, 200, 'legacy pn-type REGISTER accepted');
is(fc($r), '*;+sip.pns="fcm"', 'legacy params pushed through fcm');
like($sw->sql_wait("select contact from location where username='legacy'", qr/pn-provider/),
     qr/pn-provider=fcm;pn-param=proj;pn-prid=LTOK/, 'stored in RFC 8599 form');
unlike($sw->sql("select contact from location where username='legacy'"), qr/pn-type|pn-tok|app-id/,
       'legacy params gone from the stored contact');

# --- retransmission: same branch gets the same response, processed once
my $h = $sw->ua(user => 'henry');
my $msg = $h->register_msg(contact => "sip:henry\@127.0.0.1:9", expires => 600, branch => 'z9hG4bKretrans1');
$h->send_raw($msg);
my $first = $h->recv_raw;
$h->send_raw($msg);
my $second = $h->recv_raw;
ok(defined $first && defined $second && $first eq $second, 'retransmitted REGISTER gets the identical response');
like($sw->log, qr/./, 'log present');

# --- Call-ID / CSeq ordering
my $o = $sw->ua(user => 'olga');
$r = $o->register(contact => "sip:olga\@127.0.0.1:9", expires => 600, cseq => 10);
is($r->{code}, 200, 'CSeq 10');
$r = $o->register(contact => "sip:olga\@127.0.0.1:9", expires => 600, cseq => 5);
is($r->{code}, 400, 'lower CSeq with the same Call-ID refused');
$r = $o->register(contact => "sip:olga\@127.0.0.1:9", expires => 600, cseq => 11);
is($r->{code}, 200, 'higher CSeq accepted');

# --- q-values and several contacts; the per-AOR cap
my $m = $sw->ua(user => 'multi');
$r = $m->register(contacts => ['<sip:multi@127.0.0.1:1>;q=0.5', '<sip:multi@127.0.0.1:2>;q=1.0'], expires => 600);
is(scalar @{ contacts($r) }, 2, 'two contacts in one REGISTER');
ok((grep { /;q=0\.500/ } @{ contacts($r) }), 'q-value kept');
is($sw->sql_wait("select group_concat(q) from (select q from location where username='multi' order by q)", '0.5,1.0'),
   '0.5,1.0', 'q stored');
$r = $m->register(contacts => ['<sip:multi@127.0.0.1:3>', '<sip:multi@127.0.0.1:4>'], expires => 600);
is($r->{code}, 403, 'more than max_contacts bindings: 403');
is(scalar(() = $sw->sql("select contact from location where username='multi'") =~ /\n/g) + 1, 2,
   'nothing applied from the refused REGISTER');

# --- unregister and Contact: *
$r = $m->register(contacts => ['<sip:multi@127.0.0.1:1>'], expires => 0);
is(scalar @{ contacts($r) }, 1, 'one contact removed, one left');
$r = $m->register(contacts => ['*'], expires => 0);
is($r->{code}, 200, 'Contact: * with Expires: 0');
is(scalar @{ contacts($r) }, 0, 'no bindings left');
is($sw->sql_wait("select count(*) from location where username='multi'", '0'), '0', 'store empty for the AOR');
$r = $m->register(contacts => ['*'], expires => 60);
is($r->{code}, 400, 'Contact: * needs Expires: 0');
$r = $ua_b->register(contact => "sip:alice\@127.0.0.1:" . $ua_b->local_port
    . ";pn-provider=apns;pn-param=TEAM123.com.example.app.voip", expires => 0);
is(scalar @{ contacts($r) }, 0, 'RFC 8599 §4.1.2: removal without pn-prid removes the push binding');

# --- min_expires and a binding that expires
my $x = $sw->ua(user => 'short');
$r = $x->register(contact => "sip:short\@127.0.0.1:9", expires => 2);
is($r->{code}, 200, 'short binding accepted (min_expires 1 here)');
is($sw->sql_wait("select count(*) from location where username='short'", '1'), '1', 'stored');
is($sw->sql_wait("select count(*) from location where username='short'", '0', 10), '0',
   'removed from the store when it expires');
ok($sw->wait_log(qr/binding sip:short\@127\.0\.0\.1:9 of short\@example\.com expired/, 10), 'expiry logged');

# --- the domain must be served when domains are configured; OPTIONS ping
my $ping = $sw->ua;
$r = $ping->request("OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:" . $ping->local_port
    . ";branch=z9hG4bKping\r\nFrom: <sip:p\@x>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: ping1\r\n"
    . "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n");
is($r->{code}, 200, 'OPTIONS to the server answered 200');
$r = $ping->request("INVITE sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:" . $ping->local_port
    . ";branch=z9hG4bKinv\r\nFrom: <sip:p\@x>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: inv1\r\n"
    . "CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n");
is($r->{code}, 405, 'an INVITE for the server itself gets 405');
like(join(',', Sipwake::UA::header($r, 'allow')), qr/\bREGISTER\b/, 'with Allow');

ok($sw->stop, 'clean shutdown, no sanitizer report');
done_testing;
