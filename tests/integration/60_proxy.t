#!/usr/bin/perl
# Proxying non-INVITE requests to registered phones (RFC 3261 §16): MESSAGE relay down the
# phone's own flow (UDP address or TCP connection) with pn-* stripped from the Request-URI,
# a Via of sipwake's with a unique branch, Max-Forwards decremented, the response passed
# back without that Via; fork to two devices; 404 from the default policy; 483; 482 loop.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Sipwake;

my $sw = Sipwake->new;
$sw->start;
my $port = $sw->port;

# A phone registered over UDP with push params.
my $bob = $sw->ua(user => 'bob');
my $r = $bob->register(contact => "sip:bob\@127.0.0.1:" . $bob->local_port
    . ";pn-provider=fcm;pn-param=proj;pn-prid=bobtoken", expires => 3600);
is($r->{code}, 200, 'bob registered over UDP with a push binding');

my $alice = $sw->ua(user => 'alice');
my $n = 0;
sub message {
    my ($ua, $to, %o) = @_;
    $n++;
    my $body = $o{body} // "hello $n";
    my $mf = exists $o{mf} ? ($o{mf} // '') : 70;
    return "MESSAGE sip:$to SIP/2.0\r\n"
        . "Via: SIP/2.0/UDP 127.0.0.1:" . $ua->local_port . ";rport;branch=z9hG4bKmsg$n$$\r\n"
        . ($mf ne '' ? "Max-Forwards: $mf\r\n" : '')
        . "From: <sip:alice\@example.com>;tag=a$n\r\nTo: <sip:$to>\r\nCall-ID: msg-$n-$$\r\n"
        . "CSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: " . length($body)
        . "\r\n\r\n$body";
}

$alice->send_raw(message($alice, 'bob@example.com', body => 'hi bob'));
my $got = $bob->recv_raw(3);
ok($got, 'bob received the MESSAGE');
like($got, qr{^MESSAGE sip:bob\@127\.0\.0\.1:\d+ SIP/2\.0\r\n}, 'Request-URI is the contact');
unlike($got, qr/^MESSAGE [^\r]*pn-/, 'no pn-* params in the Request-URI (RFC 8599 §4.1)');
like($got, qr{\AMESSAGE [^\r]*\r\nVia: SIP/2\.0/UDP 127\.0\.0\.1:$port;branch=z9hG4bKsw[0-9a-f]{16}\.[0-9a-f]+;rport\r\n},
     "sipwake's Via on top with a unique branch");
like($got, qr/^Via: SIP\/2\.0\/UDP 127\.0\.0\.1:\d+;rport=\d+;branch=z9hG4bKmsg/m,
     "alice's Via kept below, with rport and received");
like($got, qr/^Max-Forwards: 69\r$/m, 'Max-Forwards decremented');
like($got, qr/\r\n\r\nhi bob\z/, 'body unchanged');
$bob->answer($got, 200, reason => 'OK');
$r = Sipwake::UA::parse_response($alice->recv_raw(3));
is($r->{code}, 200, 'alice got the 200');
my @vias = Sipwake::UA::header($r, 'via');
is(scalar @vias, 1, "sipwake's Via removed from the response");
like($vias[0], qr/branch=z9hG4bKmsg/, "alice's own Via remains");

# A phone on TCP: the MESSAGE goes down its connection.
my $carol = $sw->ua(user => 'carol', transport => 'tcp');
$r = $carol->register(contact => "sip:carol\@127.0.0.1:1;transport=tcp", expires => 3600);
is($r->{code}, 200, 'carol registered over TCP');
$alice->send_raw(message($alice, 'carol@example.com'));
$got = $carol->recv_raw(3);
like($got // '', qr{\AMESSAGE sip:carol\@127\.0\.0\.1:1;transport=tcp SIP/2\.0\r\nVia: SIP/2\.0/TCP }, 'carol got it over her TCP connection');
$carol->answer($got, 202, reason => 'Accepted') if $got;
$r = Sipwake::UA::parse_response($alice->recv_raw(3));
is($r->{code}, 202, 'UDP caller gets the TCP callee\'s 202');

# Two devices: both get it, the first 2xx wins, the caller sees one final response.
my $d1 = $sw->ua(user => 'dave');
my $d2 = $sw->ua(user => 'dave');
$d1->register(contact => "sip:dave\@127.0.0.1:" . $d1->local_port, expires => 600);
$d2->register(contact => "sip:dave\@127.0.0.1:" . $d2->local_port, expires => 600);
$alice->send_raw(message($alice, 'dave@example.com'));
my $g1 = $d1->recv_raw(3);
my $g2 = $d2->recv_raw(3);
ok($g1 && $g2, 'both devices of dave got the MESSAGE');
my ($b1) = ($g1 // '') =~ /branch=(z9hG4bKsw[^;\r]+)/;
my ($b2) = ($g2 // '') =~ /branch=(z9hG4bKsw[^;\r]+)/;
isnt($b1, $b2, 'each branch has its own branch parameter');
$d2->answer($g2, 480, reason => 'Temporarily Unavailable');
$d1->answer($g1, 200, reason => 'OK');
$r = Sipwake::UA::parse_response($alice->recv_raw(3));
is($r->{code}, 200, 'the 2xx is what the caller gets');
is($alice->recv_raw(0.5), undef, 'and only one final response');

# Best response when nobody accepts: 6xx beats 4xx (§16.7).
$alice->send_raw(message($alice, 'dave@example.com'));
$g1 = $d1->recv_raw(3);
$g2 = $d2->recv_raw(3);
$d1->answer($g1, 486, reason => 'Busy Here');
$d2->answer($g2, 603, reason => 'Decline');
$r = Sipwake::UA::parse_response($alice->recv_raw(3));
is($r->{code}, 603, '603 chosen over 486');

# Unknown user, Max-Forwards 0, a loop.
$r = $alice->request(message($alice, 'nobody@example.com'));
is($r->{code}, 404, 'unregistered callee: the default policy answers 404');
$r = $alice->request(message($alice, 'bob@example.com', mf => 0));
is($r->{code}, 483, 'Max-Forwards 0: 483 Too Many Hops');
# A loop (§16.3 step 4): a misrouting hop sends the very request back to sipwake.
my $lp = $sw->ua(user => 'loop');
$lp->register(contact => 'sip:loop@example.com', expires => 600);
$alice->send_raw(message($alice, 'loop@example.com'));
my $fwd = $lp->recv_raw(3);
ok($fwd, 'the request reached the misrouting hop');
$lp->send_raw($fwd);                       # ... which sends it straight back
my $back = $lp->recv_raw(3);
like($back // '', qr{^SIP/2\.0 482 Loop Detected\r\n}, 'sipwake recognises its own request: 482');
$lp->send_raw($back) if $back;              # the hop passes the 482 on
$r = Sipwake::UA::parse_response($alice->recv_raw(3));
is($r->{code}, 482, 'the caller gets 482 Loop Detected');

# A phone using sipwake as its outbound proxy preloads a Route to it: removed (§16.4).
# (A Route set that goes on past sipwake: 66_route_decisions.t.)
(my $routed = message($alice, 'bob@example.com'))
    =~ s/\r\nMax-Forwards/\r\nRoute: <sip:127.0.0.1:$port;lr>\r\nMax-Forwards/;
$alice->send_raw($routed);
$got = $bob->recv_raw(3);
ok($got, 'a request with a preloaded Route to sipwake reached bob');
unlike($got // '', qr/^Route: <sip:127\.0\.0\.1:$port;lr>/m, "sipwake's own Route entry removed");
unlike($got // '', qr/^Route:/m, 'no Route left');
$bob->answer($got, 200, reason => 'OK') if $got;
is(Sipwake::UA::parse_response($alice->recv_raw(3))->{code}, 200, 'answered');

# OPTIONS to a user is proxied like any other request; OPTIONS to sipwake is answered by it.
my $lpa = $alice->local_port;
my $opt = "OPTIONS sip:bob\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$lpa;rport;branch=z9hG4bKopt$$\r\n"
    . "Max-Forwards: 70\r\nFrom: <sip:alice\@example.com>;tag=o1\r\nTo: <sip:bob\@example.com>\r\n"
    . "Call-ID: opt-$$\r\nCSeq: 1 OPTIONS\r\nAccept: application/sdp\r\nContent-Length: 0\r\n\r\n";
$alice->send_raw($opt);
$got = $bob->recv_raw(3);
like($got // '', qr{^OPTIONS sip:bob\@127\.0\.0\.1:\d+ SIP/2\.0\r\n}, 'OPTIONS for bob reached bob');
$bob->answer($got, 200, reason => 'OK') if $got;
is(Sipwake::UA::parse_response($alice->recv_raw(3))->{code}, 200, 'and his 200 came back');
(my $opt_us = $opt) =~ s/^OPTIONS sip:bob\@example\.com/OPTIONS sip:127.0.0.1:$port/;
$opt_us =~ s/branch=z9hG4bKopt/branch=z9hG4bKoptus/;
$r = $alice->request($opt_us);
is($r->{code}, 200, 'OPTIONS for sipwake itself: answered 200 by sipwake');
ok(!defined $bob->recv_raw(0.3), 'and not forwarded');

# A UDP phone registered, then gone away: nobody answers; covered by Timer F (32 s), so
# here only check that a response matching no transaction is dropped quietly.
$alice->send_raw("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:$port;branch=z9hG4bKswnothing.1\r\n"
    . "From: <sip:a\@b>;tag=1\r\nTo: <sip:c\@d>;tag=2\r\nCall-ID: stray\r\nCSeq: 1 MESSAGE\r\n"
    . "Content-Length: 0\r\n\r\n");
$r = $alice->request(message($alice, 'bob@example.com'));
$got = $bob->recv_raw(3);
$bob->answer($got, 200, reason => 'OK') if $got;
$r = Sipwake::UA::parse_response($alice->recv_raw(3)) if !$r || !$r->{code};
ok($sw->alive, 'a stray response changed nothing');
ok($sw->stop, 'clean shutdown, no sanitizer report');

# A route hook that fails, or answers nonsense: the safe default is 500, and it is logged.
my $bad = Sipwake->new(policy => <<'LUA');
return {
    route = function(req, ctx)
        if req.user == "boom" then error("route exploded") end
        if req.user == "nonsense" then return { relay = "everywhere" } end
        if req.user == "both" then return { relay = "bindings", reply = { code = 404 } } end
        if req.user == "fork" then return { relay = "bindings", fork = "sideways" } end
        if req.user == "timeout" then return { relay = "bindings", branch_timeout = 0.5 } end
        if req.user == "replyfork" then return { reply = { code = 404 }, fork = "serial" } end
        if req.user == "up" then return { relay = "upstream" } end
        if req.user == "upfork" then return { relay = "upstream", fork = "serial" } end
        return { reply = { code = 488, reason = "Policy Says No" } }
    end,
}
LUA
$bad->start;
my $u = $bad->ua(user => 'alice');
$r = $u->request(message($u, 'boom@example.com'));
is($r->{code}, 500, 'route raising an error: 500');
ok($bad->wait_log(qr/policy\[gen 1\]: route failed: .*route exploded/), 'logged with the reason');
$r = $u->request(message($u, 'nonsense@example.com'));
is($r->{code}, 500, 'invalid relay target: 500');
$r = $u->request(message($u, 'both@example.com'));
is($r->{code}, 500, 'reply and relay together: 500');
ok($bad->wait_log(qr/route returned an invalid decision: exactly one of reply or relay/), 'logged');
$r = $u->request(message($u, 'fork@example.com'));
is($r->{code}, 500, 'unknown fork mode: 500');
ok($bad->wait_log(qr/invalid decision: fork must be "parallel" or "serial"/), 'logged');
$r = $u->request(message($u, 'timeout@example.com'));
is($r->{code}, 500, 'branch_timeout not a whole number of seconds: 500');
ok($bad->wait_log(qr/invalid decision: branch_timeout must be an integer 1\.\.300/), 'logged');
$r = $u->request(message($u, 'replyfork@example.com'));
is($r->{code}, 500, 'fork with a reply: 500');
ok($bad->wait_log(qr/invalid decision: unknown key 'fork'/), 'logged');
$r = $u->request(message($u, 'up@example.com'));
is($r->{code}, 500, 'relay to the upstream without one configured: 500');
ok($bad->wait_log(qr/relay = "upstream" for MESSAGE .* without an \[upstream\] address; answered 500/), 'logged');
$r = $u->request(message($u, 'upfork@example.com'));
is($r->{code}, 500, 'fork with relay = upstream: 500');
ok($bad->wait_log(qr/invalid decision: fork goes only with relay = "bindings"/), 'logged');
$r = $u->request(message($u, 'anyone@example.com'));
is($r->{code}, 488, 'a valid reply decision is sent as decided');
is($r->{reason}, 'Policy Says No', 'with its reason');
ok($bad->stop, 'clean shutdown');
done_testing;
