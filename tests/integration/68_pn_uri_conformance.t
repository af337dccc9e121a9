#!/usr/bin/perl
# Issue 12, on the wire:
# - one reading of pn-* params: a Contact with "pn%2Dprid=TOKEN" is a push binding whose
#   token is neither in the forwarded Request-URI nor in the MI's answer; a second pn-prid
#   makes the REGISTER fail (555 and a Warning, as any unusable push params) rather than
#   guessing which token is the phone's;
# - push tokens never in the log: a push binding that expires (short Expires) is logged
#   without its token (and the harness checks every line of the log at stop);
# - a Contact registered with a URI header (?Route=...) is used as a Request-URI without it
#   (RFC 3261 §19.1.1);
# - a request with an unknown method for a user is forwarded to the user's binding like any
#   non-INVITE request (RFC 3261 §16, RFC 4475 3.1.1.2), answered 404 without one, and 501
#   only when it is addressed to sipwake itself.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Sipwake;
use SipwakeAdmin;

my $hport = Sipwake::free_port();
my $sw = Sipwake->new(config => { registrar => { min_expires => 1, push_min_expires => 2, push_refresh_margin => 1 },
                                  admin => { enabled => 'yes', listen => "127.0.0.1:$hport" } });
$sw->write_config;
my ($rc, $out) = $sw->run_bin('admin', 'token', 'add', 'cli');
my ($api) = $out =~ /^(swk_\S+)$/m;
ok($rc == 0 && $api, 'an API token for the MI');
$sw->start;
my $mi = SipwakeAdmin->new(port => $hport, token => $api);

my $caller = $sw->ua(user => 'alice');
my $cp = $caller->local_port;
my $n = 0;
sub request {
    my ($method, $ruri) = @_;
    $n++;
    return "$method $ruri SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bKpn$n$$\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:alice\@example.com>;tag=a$n\r\nTo: <$ruri>\r\n"
        . "Call-ID: pn-$n-$$\r\nCSeq: 1 $method\r\nContent-Type: text/plain\r\n"
        . "Content-Length: 2\r\n\r\nhi";
}
# send a request for user, the device gets it: its Request-URI line
sub delivered {
    my ($dev, $method, $user) = @_;
    $caller->send_raw(request($method, "sip:$user\@example.com"));
    my $got = $dev->expect(qr/^\Q$method\E /, 3);
    $dev->answer($got, 200, reason => 'OK') if $got;
    my $r = Sipwake::UA::parse_response($caller->expect(qr/^SIP\/2\.0 [2-6]/, 3));
    is($r && $r->{code}, 200, "$method for $user: the device's 200 came back");
    return $got && $got =~ /^(\S+ \S+ SIP\/2\.0)\r\n/ ? $1 : '';
}

# pn%2Dprid: the same param as pn-prid
my $token = 'escaped-name-token-5e1f';
my $pat = $sw->ua(user => 'pat');
my $pp = $pat->local_port;
is($pat->register(contact => "sip:pat\@127.0.0.1:$pp;pn-provider=fcm;pn-param=proj;pn%2Dprid=$token",
    expires => 600)->{code}, 200, 'pat registered with pn%2Dprid');
is($sw->sql_wait("SELECT count(*) FROM location WHERE username = 'pat'", 1), 1, 'stored');
my $line = delivered($pat, 'MESSAGE', 'pat');
is($line, "MESSAGE sip:pat\@127.0.0.1:$pp SIP/2.0", 'pn%2Dprid stripped from the Request-URI, with the other pn-* params');
my $c = $mi->mi('ul_show_contact', { table_name => 'location', aor => 'pat@example.com' })->{result}{Contacts}[0];
like($c->{Contact} // '', qr/;pn%2Dprid=redacted-[0-9a-f]{16}/, 'the MI shows pn%2Dprid hashed');
unlike($mi->seen, qr/\Q$token\E/, 'and never in clear');

# a second pn-prid: refused, whichever way it is written
my $dup = $sw->ua(user => 'dup');
my $r = $dup->register(contact => 'sip:dup@127.0.0.1:' . $dup->local_port
    . ';pn-provider=fcm;pn-param=proj;pn-prid=first-token-aaaa;PN%2dPRID=second-token-bbbb', expires => 600);
is($r->{code}, 555, 'two pn-prid params: refused as unusable push params (555, as any)');
like(Sipwake::UA::header($r, 'warning') // '', qr/pn-prid given more than once/, 'with the reason');
is($sw->sql("SELECT count(*) FROM location WHERE username = 'dup'"), 0, 'nothing stored');

# a push binding expiring logs no token
my $eve = $sw->ua(user => 'eve');
my $etok = 'expiring-token-77d0c1';
is($eve->register(contact => 'sip:eve@127.0.0.1:' . $eve->local_port
    . ";pn-provider=fcm;pn-param=proj;pn-prid=$etok", expires => 2)->{code}, 200, "eve registered for 2 s");
ok($sw->wait_log(qr/location: binding \S+ of eve\@example\.com expired/, 10), 'her binding expired');
my ($exp) = $sw->log =~ /^(.*location: binding \S+ of eve\@example\.com expired.*)$/m;
like($exp // '', qr/;pn-prid=redacted-[0-9a-f]{16}/, 'the expiry line shows the token hashed');
unlike($sw->log, qr/\Q$etok\E/, 'the token is nowhere in the log');

# a Contact with a URI header: none in the Request-URI
my $hal = $sw->ua(user => 'hal');
my $hp = $hal->local_port;
is($hal->register(contact => "sip:hal\@127.0.0.1:$hp;method=INVITE?Route=%3Csip:evil.example.com%3E",
    expires => 600)->{code}, 200, 'hal registered a Contact with ?Route= and method=');
$line = delivered($hal, 'MESSAGE', 'hal');
is($line, "MESSAGE sip:hal\@127.0.0.1:$hp SIP/2.0", 'the Request-URI has neither the header nor method= (RFC 3261 §19.1.1)');

# one REGISTER adding one push device twice (the same token from two ports): refused, not
# two bindings pushed and forked to twice; the same +sip.instance and reg-id twice likewise
my $twice = $sw->ua(user => 'twin');
my $dp = $twice->local_port;
my $dtok = 'dup-token-in-one-register-0070';
$r = $twice->register(contacts => [map { "<sip:twin\@127.0.0.1:$_;pn-provider=fcm;pn-param=proj;pn-prid=$dtok>" } ($dp, $dp + 1)],
    expires => 600);
is($r->{code}, 400, 'two Contacts with one push token in one REGISTER: 400');
like(Sipwake::UA::header($r, 'warning') // '', qr/same device/, 'saying why');
my $inst = ';+sip.instance="<urn:uuid:00000000-0000-0000-0000-0000000000d7>";reg-id=1';
$r = $twice->register(contacts => ["<sip:twin\@127.0.0.1:$dp>$inst", "<sip:twin\@127.0.0.1:" . ($dp + 1) . ">$inst"],
    expires => 600);
is($r->{code}, 400, 'two Contacts with one +sip.instance and reg-id: 400');
is($sw->sql("SELECT count(*) FROM location WHERE username = 'twin'"), '0', 'nothing stored');
is($twice->register(contact => "sip:twin\@127.0.0.1:$dp;pn-provider=fcm;pn-param=proj;pn-prid=$dtok",
    expires => 600)->{code}, 200, 'the device alone registers');

# unknown methods
$line = delivered($pat, 'FOOBAR', 'pat');
is($line, "FOOBAR sip:pat\@127.0.0.1:$pp SIP/2.0", 'an unknown method for a user is forwarded to its binding');
$r = $caller->request(request('FOOBAR', 'sip:nobody@example.com'));
is($r->{code}, 404, 'for a user with no binding: 404, as for any request');
$r = $caller->request(request('FOOBAR', 'sip:example.com'));
is($r->{code}, 501, 'for sipwake itself: 501');
like(Sipwake::UA::header($r, 'allow') // '', qr/REGISTER/, 'with Allow');

ok($sw->stop, 'clean shutdown, no token in the log');

# at debug level too: osip2's own complaints about a header it cannot parse quote the header,
# and a Contact that lacks its '>' is not a URI anyone can redact
my $dbg = Sipwake->new(config => { log => { level => 'debug' } });
$dbg->start;
my $broken = $dbg->ua(user => 'bea');
my $bp = $broken->local_port;
my $btok = 'debug-broken-contact-0050';
$broken->send_raw("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$bp;rport;branch=z9hG4bKdbg$$\r\n"
    . "Max-Forwards: 70\r\nFrom: <sip:bea\@example.com>;tag=d\r\nTo: <sip:bea\@example.com>\r\n"
    . "Call-ID: dbg-$$\r\nCSeq: 1 REGISTER\r\n"
    . "Contact: <sip:bea\@127.0.0.1:$bp;pn-provider=apns;pn-param=ABCDE12345.com.x.voip;pn-prid=$btok\r\n"
    . "Expires: 600\r\nContent-Length: 0\r\n\r\n");
ok(defined $broken->expect(qr/^SIP\/2\.0 [2-6]/, 3), 'a REGISTER whose Contact lacks its ">" is answered');
ok($dbg->wait_log(qr/debug/), 'the log is at debug level');
unlike($dbg->log, qr/\Q$btok\E/, 'and holds no push token');
ok($dbg->stop, 'clean shutdown');
done_testing;
