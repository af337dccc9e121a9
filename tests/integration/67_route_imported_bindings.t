#!/usr/bin/perl
# Bindings imported from an OpenSIPS location table, whose received text sipwake did not
# write: where the proxy reaches each one (IPv6 with brackets, IPv6 written without zero
# compression as OpenSIPS prints it, a TCP binding whose connection is gone, a received
# without a port, none at all), what the route hook sees of it (transport, reachable), and
# the transport the admin API lists for a binding without a socket column (a transport
# sipwake does not speak, as an OpenSIPS with WebSocket clients writes it, is shown as
# written). The received text is parsed once when the binding is loaded (location.c); a
# store round trip keeps it as it was. A UDP push binding whose received IPv6 is written
# without zero compression is rung directly once its address was heard within [push]
# udp_awake_window, like one sipwake registered itself (before e1a5f73 the text as written
# was looked up among the addresses heard, in the form the transport prints them, never
# matched, and such a phone was only pushed).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use IO::Socket::IP;
use Socket ();
use IO::Select;
use Sipwake;
use SipwakeAdmin;

my $v6 = IO::Socket::IP->new(Proto => 'udp', LocalHost => '::1', LocalPort => 0);
my $v6b = IO::Socket::IP->new(Proto => 'udp', LocalHost => '::1', LocalPort => 0);
my $v6p = IO::Socket::IP->new(Proto => 'udp', LocalHost => '::1', LocalPort => 0);
my $v4 = IO::Socket::IP->new(Proto => 'udp', LocalHost => '127.0.0.1', LocalPort => 0) or die $!;
my $ws = IO::Socket::IP->new(Proto => 'udp', LocalHost => '127.0.0.1', LocalPort => 0) or die $!;

my $hport = Sipwake::free_port();
my $sw = Sipwake->new(policy => <<'LUA');
return {
    route = function(req, ctx)
        if req.from:find("^sip:probe@") then
            local seen = {}
            for _, b in ipairs(ctx.bindings) do
                seen[#seen + 1] = b.transport .. (b.reachable and "+" or "-")
            end
            return { reply = { code = 486, reason = "Seen " .. table.concat(seen, ",") } }
        end
        return { relay = "bindings", push = true }
    end,
}
LUA
my $p = $sw->port;
$sw->{config}{admin} = { enabled => 'yes', listen => "127.0.0.1:$hport" };
$sw->{config}{sip} = { listen => "udp:127.0.0.1:$p, tcp:127.0.0.1:$p" . ($v6 ? ", udp:[::1]:$p" : '') };
$sw->write_config;
my ($rc, $out) = $sw->run_bin('admin', 'token', 'add', 'ci');
my ($token) = $out =~ /^(swk_\S+)$/m;
ok($token, 'an API token');

# what an OpenSIPS writes: socket NULL on these rows (an import from a table without it)
my %rows = (
    v4     => ['sip:v4@127.0.0.1:' . $v4->sockport, 'sip:127.0.0.1:' . $v4->sockport],
    tcp    => ['sip:tcp@127.0.0.1:9;transport=tcp', 'sip:127.0.0.1:9;transport=tcp'],
    noport => ['sip:noport@127.0.0.1:9', 'sip:127.0.0.1'],
    none   => ['sip:none@127.0.0.1:9', undef],
    ws     => ['sip:ws@127.0.0.1:' . $ws->sockport . ';transport=ws',
               'sip:127.0.0.1:' . $ws->sockport . ';transport=ws'],
);
if ($v6) {
    $rows{v6} = ['sip:v6@[::1]:' . $v6->sockport, 'sip:[::1]:' . $v6->sockport];
    $rows{v6full} = ['sip:v6full@[::1]:' . $v6b->sockport, 'sip:[0:0:0:0:0:0:0:1]:' . $v6b->sockport];
    $rows{v6push} = ['sip:v6push@[::1]:' . $v6p->sockport
        . ';pn-provider=apns;pn-param=TEAM123456.org.example.app;pn-prid=AB12CD34',
        'sip:[0:0:0:0:0:0:0:1]:' . $v6p->sockport, 4];
}
my $id = 100;
for my $u (sort keys %rows) {
    my ($contact, $rcv, $flags) = @{ $rows{$u} };
    $sw->sql("insert into location (contact_id, username, domain, contact, received, expires, callid, "
        . "cseq, flags) values (" . $id++ . ", '$u', 'example.com', '$contact', "
        . (defined $rcv ? "'$rcv'" : 'NULL') . ", strftime('%s','now') + 3600, 'imp-$u', 1, "
        . ($flags // 0) . ")");
}
$sw->start;
like($sw->log, qr/location: ${\ scalar keys %rows} bindings loaded/, 'the imported bindings are loaded');

my $caller = $sw->ua(user => 'carl');
my $cp = $caller->local_port;
my $n = 0;
sub message {
    my ($to, $from) = @_;
    $n++;
    return "MESSAGE sip:$to\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bKimp$n\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:$from\@example.com>;tag=i$n\r\nTo: <sip:$to\@example.com>\r\n"
        . "Call-ID: imp-$n\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi";
}
sub answer_of {
    my ($call) = @_;
    my $r = $caller->expect(qr/^SIP\/2\.0 [2-6]\d\d .*Call-ID: imp-$call\r\n/s, 5) // '';
    my ($code, $reason) = $r =~ /^SIP\/2\.0 (\d+) ([^\r]*)/;
    return ($code // 0, $reason // '');
}
sub recv_on {
    my ($sock) = @_;
    return undef unless IO::Select->new($sock)->can_read(5);
    $sock->recv(my $d, 65536);
    return $d;
}
sub relay_to {
    my ($user, $sock, $what) = @_;
    $caller->send_raw(message($user, 'carl'));
    my $call = $n;
    my $got = recv_on($sock) // '';
    like($got, qr/^MESSAGE sip:\Q$user\E\@/, "$what: the MESSAGE reaches it over UDP");
    my ($via) = $got =~ /^(Via: [^\r]*)\r\n/m;
    my ($callid) = $got =~ /^Call-ID: ([^\r]*)/m;
    my ($from) = $got =~ /^(From: [^\r]*)/m;
    my ($to) = $got =~ /^(To: [^\r]*)/m;
    my $vias = join('', map {"$_\r\n"} $got =~ /^(Via: [^\r]*)/mg);
    $sock->send("SIP/2.0 200 OK\r\n$vias$from\r\n$to;tag=r$call\r\nCall-ID: $callid\r\nCSeq: 1 MESSAGE\r\n"
        . "Content-Length: 0\r\n\r\n");
    my ($code) = answer_of($call);
    is($code, 200, "$what: its 200 comes back");
}
sub probe {
    my ($user) = @_;
    $caller->send_raw(message($user, 'probe'));
    my ($code, $reason) = answer_of($n);
    return $code == 486 ? $reason : "answered $code";
}

is(probe('v4'), 'Seen udp+', 'IPv4 received: the hook sees a reachable UDP binding');
relay_to('v4', $v4, 'IPv4 received');
is(probe('tcp'), 'Seen tcp-', 'TCP received, its connection gone (a restart): TCP, unreachable');
$caller->send_raw(message('tcp', 'carl'));
is((answer_of($n))[0], 480, 'so a MESSAGE for it gets 480');
is(probe('noport'), 'Seen udp-', 'a received without a port: unreachable');
$caller->send_raw(message('noport', 'carl'));
is((answer_of($n))[0], 480, 'and 480');
is(probe('none'), 'Seen udp-', 'no received at all: unreachable');
is(probe('ws'), 'Seen udp+', 'a transport sipwake does not speak: its received address, over UDP');
relay_to('ws', $ws, 'transport=ws');
SKIP: {
    skip 'no IPv6 loopback on this machine', 6 unless $v6;
    is(probe('v6'), 'Seen udp+', 'IPv6 received in brackets: reachable over UDP');
    relay_to('v6', $v6, 'IPv6 received');
    relay_to('v6full', $v6b, 'IPv6 received written without zero compression');
    # the push phone sends something from its address: sipwake hears it awake
    $v6p->send("OPTIONS sip:[::1]:$p SIP/2.0\r\nVia: SIP/2.0/UDP [::1]:" . $v6p->sockport
        . ";rport;branch=z9hG4bKaw1\r\nMax-Forwards: 70\r\nFrom: <sip:v6push\@example.com>;tag=aw\r\n"
        . "To: <sip:[::1]:$p>\r\nCall-ID: awake-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", 0,
        Socket::pack_sockaddr_in6($p, Socket::inet_pton(Socket::AF_INET6, '::1')));
    like(recv_on($v6p) // '', qr/^SIP\/2\.0 \d+ .*Call-ID: awake-1/s, 'the push phone was heard (its OPTIONS answered)');
    $caller->send_raw(message('v6push', 'carl'));
    like(recv_on($v6p) // '', qr/^MESSAGE sip:v6push\@/,
         'so it is rung at its received address as well as pushed, not only pushed');
}

my $api = SipwakeAdmin->new(port => $hport, token => $token);
my %tr;
for my $u (sort keys %rows) {
    my $r = $api->get("/api/registrations?aor=$u\@");
    $tr{$u} = $r->{json}{aors}[0]{bindings}[0]{transport} // '(none)';
}
is($tr{tcp}, 'tcp', 'admin: the TCP binding is listed as tcp');
is($tr{v4}, 'udp', 'admin: a binding without transport= as udp');
is($tr{ws}, 'ws', 'admin: transport=ws as written, not as the udp sipwake would use');
is($sw->sql("select received from location where username='ws'"),
   'sip:127.0.0.1:' . $ws->sockport . ';transport=ws', 'the store keeps the received text as it was');
ok($sw->stop, 'clean shutdown');
done_testing;
