#!/usr/bin/perl
# Route decisions beyond the AOR's bindings: relay to an explicit URI (a voicemail server, a
# PBX) over UDP and over a TCP connection sipwake opens and reuses; replies with extra
# headers (a 302 with a Contact, a 486 with Retry-After); and the decisions that are refused
# (a host name, a reserved header) get 500 and a log line. Also RFC 3261 §16.6 step 7: an
# initial request whose Route set goes on past sipwake is sent to the next Route, with the
# Request-URI of the binding, when the policy trusts its sender to name the next hop
# (follow_route); from anyone else that Route is ignored (67_route_untrusted.t).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use IO::Socket::INET;
use IO::Select;
use Sipwake;

# the "voicemail server": one UDP socket and one TCP listener on 127.0.0.3
my $vm_udp = IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.3', LocalPort => 0)
    or die "udp: $!";
my $vu = $vm_udp->sockport;
my $vm_tcp = IO::Socket::INET->new(Proto => 'tcp', LocalAddr => '127.0.0.3', LocalPort => 0,
    Listen => 5, ReuseAddr => 1) or die "tcp: $!";
my $vt = $vm_tcp->sockport;

my $sw = Sipwake->new(policy => <<"LUA");
return {
    route = function(req, ctx)
        if req.user == "vm" then return { relay = "uri", uri = "sip:vm-box\@127.0.0.3:$vu" } end
        if req.user == "vmtcp" then
            return { relay = "uri", uri = "sip:vm-box\@127.0.0.3:$vt;transport=tcp", branch_timeout = 30 }
        end
        if req.user == "moved" then
            return { reply = { code = 302, reason = "Moved Temporarily",
                               headers = { Contact = "<sip:new\@example.org>" } } }
        end
        if req.user == "busy" then
            return { reply = { code = 486, reason = "Busy Here", headers = { ["Retry-After"] = 60 } } }
        end
        if req.user == "named" then return { relay = "uri", uri = "sip:vm\@voicemail.example.com" } end
        if req.user == "hdrs" then
            return { relay = "uri", uri = "sip:a\@127.0.0.3:$vu?Route=%3Csip:127.0.0.3%3E" }
        end
        if req.user == "hdrat" then
            return { relay = "uri", uri = "sip:127.0.0.3:$vu?Route=%3Csip:x\@127.0.0.3%3E" }
        end
        if req.user == "method" then return { relay = "uri", uri = "sip:a\@127.0.0.3:$vu;Method=INVITE" } end
        if req.user == "nul" then return { relay = "uri", uri = "sip:a\@127.0.0.3:$vu\0?Route=x" } end
        if req.user == "maddr" then return { relay = "uri", uri = "sip:a\@127.0.0.3:$vu;maddr=evil.example.com" } end
        if req.user == "sctp" then return { relay = "uri", uri = "sip:a\@127.0.0.3:$vu;transport=sctp" } end
        if req.user == "twotp" then return { relay = "uri", uri = "sip:a\@127.0.0.3:$vu;transport=udp;transport=tcp" } end
        if req.user == "bcast" then return { relay = "uri", uri = "sip:a\@255.255.255.255:$vu" } end
        if req.user == "zero" then return { relay = "uri", uri = "sip:a\@0.0.0.0:$vu" } end
        if req.user == "mcast" then return { relay = "uri", uri = "sip:a\@[ff02::1]:$vu" } end
        if req.user == "via" then return { reply = { code = 403, headers = { Via = "x" } } } end
        if req.user == "crlf" then return { reply = { code = 403, headers = { X = "a\\r\\nVia: y" } } } end
        if req.user == "pushbad" then return { relay = "upstream", push = true } end
        if #ctx.bindings > 0 then
            -- the PBX on 127.0.0.4 may name the next hop; nobody else
            return { relay = "bindings", push = true,
                     follow_route = req.source.ip == "127.0.0.4" and ctx.route ~= nil }
        end
        return { reply = { code = 404, reason = "Not Found" } }
    end,
}
LUA
$sw->start;
my $port = $sw->port;
my $ua = $sw->ua(user => 'alice');
my $lp = $ua->local_port;
my $n = 0;
sub message {
    my ($to, $from) = @_;
    $n++;
    my ($ip, $p) = $from ? ('127.0.0.4', $from->local_port) : ('127.0.0.1', $lp);
    return "MESSAGE sip:$to SIP/2.0\r\nVia: SIP/2.0/UDP $ip:$p;rport;branch=z9hG4bKrd$n$$\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:alice\@example.com>;tag=a$n\r\nTo: <sip:$to>\r\n"
        . "Call-ID: rd-$n-$$\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi";
}
sub answer_of {
    my ($req, $code) = @_;
    my ($head) = split /\r\n\r\n/, $req, 2;
    my $resp = "SIP/2.0 $code OK\r\n";
    for (split /\r\n/, $head) {
        $resp .= "$_\r\n" if /^(Via|From|Call-ID|CSeq)\s*:/i;
        $resp .= "$_;tag=vm\r\n" if /^To\s*:/i;
    }
    return $resp . "Content-Length: 0\r\n\r\n";
}

# relay to a URI over UDP
$ua->send_raw(message('vm@example.com'));
my $got;
if (IO::Select->new($vm_udp)->can_read(3)) {
    $vm_udp->recv($got, 65535, 0);
}
like($got // '', qr{^MESSAGE sip:vm-box\@127\.0\.0\.3:$vu SIP/2\.0\r\n}, 'relayed to the URI, which is the Request-URI now');
like($got // '', qr{\r\nVia: SIP/2\.0/UDP 127\.0\.0\.1:$port;branch=z9hG4bKsw}, 'through sipwake');
$vm_udp->send(answer_of($got, 200), 0, $vm_udp->peername // pack_sockaddr_in($port, inet_aton('127.0.0.1'))) if $got;
like($ua->recv_raw(3) // '', qr{^SIP/2\.0 200 }, 'its answer came back');

# relay to a URI over TCP: sipwake connects, and reuses the connection
my @conns;
for my $i (1, 2) {
    $ua->send_raw(message('vmtcp@example.com'));
    if (!@conns || !IO::Select->new($conns[0])->can_read(0.5)) {
        my $c = IO::Select->new($vm_tcp)->can_read(3) ? $vm_tcp->accept : undef;
        push @conns, $c if $c;
    }
    my $c = $conns[-1];
    my $buf = '';
    while ($c && IO::Select->new($c)->can_read(3)) {
        my $r = sysread($c, my $chunk, 65535) or last;
        $buf .= $chunk;
        last if $buf =~ /\r\n\r\n.*hi$/s;
    }
    like($buf, qr{^MESSAGE sip:vm-box\@127\.0\.0\.3:$vt;transport=tcp SIP/2\.0\r\nVia: SIP/2\.0/TCP }, "TCP relay $i: over a connection sipwake opened");
    syswrite($c, answer_of($buf, 200)) if $c && $buf;
    like($ua->recv_raw(3) // '', qr{^SIP/2\.0 200 }, "TCP relay $i: answered");
}
is(scalar @conns, 1, 'the second request went down the same connection');

# replies with headers
my $r = $ua->request(message('moved@example.com'));
is($r->{code}, 302, 'a 302 from the policy');
is(Sipwake::UA::header($r, 'contact'), '<sip:new@example.org>', 'with the Contact it named');
$r = $ua->request(message('busy@example.com'));
is($r->{code}, 486, 'a 486 from the policy');
is(Sipwake::UA::header($r, 'retry-after'), '60', 'with Retry-After');

# refused decisions
$r = $ua->request(message('named@example.com'));
is($r->{code}, 500, 'relay to a host name: 500 (sipwake resolves no names on its loop)');
ok($sw->wait_log(qr/invalid decision: uri's host must be a numeric IPv4 or IPv6 address/), 'logged');
# RFC 3261 §19.1.1: no headers and no method parameter in a Request-URI; the URI becomes one,
# so such a decision is refused (500, logged, counted) and nothing goes out to it
$sw->signal('USR1');
ok($sw->wait_log(qr/sipwake_policy_errors (\d+)\b/), 'metrics dumped');
my ($errors0) = $sw->log =~ /.*sipwake_policy_errors (\d+)\b/s;
for my $c (['hdrs', qr/uri must not have headers \(\?\.\.\.\): RFC 3261 §19\.1\.1/],
           ['hdrat', qr/uri must not have headers/],
           ['method', qr/uri must not have a method parameter: RFC 3261 §19\.1\.1/],
           ['nul', qr/uri must not contain a NUL byte/],
           ['maddr', qr/uri must not have a maddr parameter/],
           ['sctp', qr/uri's transport must be udp, tcp or tls/],
           ['twotp', qr/uri must have one transport parameter at most/],
           ['bcast', qr/uri's host must be a unicast address/],
           ['zero', qr/uri's host must be a unicast address/],
           ['mcast', qr/uri's host must be a unicast address/]) {
    my ($user, $re) = @$c;
    $r = $ua->request(message("$user\@example.com"));
    is($r->{code}, 500, "$user: relay to a URI that is no Request-URI to send to: 500");
    ok($sw->wait_log(qr/route returned an invalid decision: $re/), "$user: logged with the reason");
}
# the decision is made before anything is sent: by the 500s, a relay would have gone out
ok(!IO::Select->new($vm_udp)->can_read(0.3), 'nothing was sent to those URIs');
$sw->signal('USR1');
my $want = $errors0 + 10;
ok($sw->wait_log(qr/sipwake_policy_errors $want\b/), 'counted as invalid decisions');
$r = $ua->request(message('via@example.com'));
is($r->{code}, 500, 'a reply setting Via: 500');
ok($sw->wait_log(qr/invalid decision: reply\.headers: Via, From, To, Call-ID, CSeq and Content-\* are sipwake's/), 'logged');
is(Sipwake::UA::header($r, 'via') =~ /^SIP\/2\.0\/UDP 127\.0\.0\.1:$lp/ ? 1 : 0, 1, 'the Via is still the caller\'s');
$r = $ua->request(message('crlf@example.com'));
is($r->{code}, 500, 'a header value with a line break: 500');
ok($sw->wait_log(qr/reply\.headers: a header value must be a one-line string/), 'logged');

# a Route set past sipwake, from a sender the policy trusts: the next Route is the next hop
my $bob = $sw->ua(user => 'bob');
my $bp = $bob->local_port;
is($bob->register(contact => "sip:bob\@127.0.0.1:$bp;pn-provider=fcm;pn-param=proj;pn-prid=tb", expires => 3600)->{code},
    200, 'bob registered');
my $pbx = $sw->ua(user => 'pbx', local_addr => '127.0.0.4');
my $m = message('bob@example.com', $pbx);
$m =~ s/Max-Forwards: 70\r\n/Max-Forwards: 70\r\nRoute: <sip:127.0.0.1:$port;lr>, <sip:127.0.0.3:$vu;lr>\r\n/;
$pbx->send_raw($m);
$got = undef;
if (IO::Select->new($vm_udp)->can_read(3)) {
    $vm_udp->recv($got, 65535, 0);
}
like($got // '', qr{^MESSAGE sip:bob\@127\.0\.0\.1:$bp SIP/2\.0\r\n}, 'sent to the next Route, with the binding\'s Request-URI');
like($got // '', qr{\r\nRoute: <sip:127\.0\.0\.3:$vu;lr>\r\n}, 'our Route entry off, the next one kept');
unlike($got // '', qr/127\.0\.0\.1:$port;lr/, 'no Route of ours left');
ok(!defined $bob->recv_raw(0.3), 'bob did not get it directly');
$vm_udp->send(answer_of($got, 200), 0, $vm_udp->peername) if $got;
like($pbx->recv_raw(3) // '', qr{^SIP/2\.0 200 }, 'the answer came back');

# the same from a sender the policy does not trust: the Route is ignored, bob gets it
$m = message('bob@example.com');
$m =~ s/Max-Forwards: 70\r\n/Max-Forwards: 70\r\nRoute: <sip:127.0.0.1:$port;lr>, <sip:127.0.0.3:$vu;lr>\r\n/;
$ua->send_raw($m);
$got = $bob->recv_raw(3);
like($got // '', qr{^MESSAGE sip:bob\@127\.0\.0\.1:$bp SIP/2\.0\r\n}, 'untrusted: bob got it by its Request-URI');
unlike($got // '', qr/^Route:/mi, 'untrusted: without the Route entries');
$bob->answer($got, 200, reason => 'OK') if $got;
like($ua->recv_raw(3) // '', qr{^SIP/2\.0 200 }, 'untrusted: answered');
ok(!IO::Select->new($vm_udp)->can_read(0.3), 'untrusted: nothing went to the Route\'s address');

# push = true: for now, the live bindings
$ua->send_raw(message('bob@example.com'));
my $pm = $bob->recv_raw(3);
like($pm // '', qr{^MESSAGE sip:bob\@127\.0\.0\.1:$bp SIP/2\.0}, 'relay with push = true reaches the live binding');
$bob->answer($pm, 200, reason => 'OK') if $pm;
like($ua->recv_raw(3) // '', qr{^SIP/2\.0 200 }, 'answered');
$r = $ua->request(message('pushbad@example.com'));
is($r->{code}, 500, 'push with relay = "upstream": 500');
ok($sw->wait_log(qr/invalid decision: push is a boolean that goes only with relay = "bindings"/), 'logged');

ok($sw->alive, 'sipwake still running');
$sw->stop;
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error/, 'no errors or sanitizer reports');
done_testing;
