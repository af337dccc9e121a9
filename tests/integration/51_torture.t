#!/usr/bin/perl
# Every RFC 4475 and RFC 5118 torture message, sent byte-exact over UDP, gets the answer the
# RFCs call for: valid messages are never refused as malformed (REGISTERs register,
# requests for users are routed and find nobody registered, 404 from the default policy, or
# are proxied (100 Trying to an INVITE), whatever their method (RFC 3261 §16); an INVITE for
# the server itself gets 405, an unknown method for it 501), invalid ones get 400 (505,
# 416, 420, 483 where the RFC names those), responses are silently dropped.
# Without rport, a response goes to the source address at the Via sent-by port (RFC 3261
# §18.2.2), so this test listens on the loopback ports those Vias name.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time);
use Sipwake;

# name => expected status code ('-' = no answer), with the RFC section
my @cases = (
    # RFC 4475 §3.1.1 valid messages
    ['rfc4475/wsinv', 404, '3.1.1.1 short tortuous INVITE'],
    ['rfc4475/intmeth', 404, '3.1.1.2 wide range of valid characters (unknown method for a user: routed like any request, nobody registered)'],
    ['rfc4475/esc01', 404, '3.1.1.3 valid % escaping'],
    ['rfc4475/escnull', 200, '3.1.1.4 escaped NULs in URIs (REGISTER)'],
    ['rfc4475/esc02', 501, '3.1.1.5 % that is not an escape (an unknown method for the server itself; RE%47IST%45R is no REGISTER)'],
    ['rfc4475/lwsdisp', 404, '3.1.1.6 no LWS between display name and <'],
    ['rfc4475/longreq', 404, '3.1.1.7 long values in header fields'],
    ['rfc4475/dblreq', 200, '3.1.1.8 extra trailing octets in a UDP datagram'],
    ['rfc4475/semiuri', 404, '3.1.1.9 semicolons in the URI user part'],
    ['rfc4475/transports', 404, '3.1.1.10 varied and unknown transports'],
    ['rfc4475/mpart01', 404, '3.1.1.11 multipart MIME'],
    ['rfc4475/unreason', '-', '3.1.1.12 unusual reason phrase (a response)'],
    ['rfc4475/noreason', '-', '3.1.1.13 empty reason phrase (a response)'],
    # §3.1.2 invalid messages
    ['rfc4475/badinv01', 400, '3.1.2.1 extraneous header field separators'],
    ['rfc4475/clerr', 400, '3.1.2.2 Content-Length larger than the message'],
    ['rfc4475/ncl', 400, '3.1.2.3 negative Content-Length'],
    ['rfc4475/scalar02', 400, '3.1.2.4 request scalars out of range'],
    ['rfc4475/scalarlg', '-', '3.1.2.5 response scalars out of range'],
    ['rfc4475/quotbal', 400, '3.1.2.6 unterminated quoted string'],
    ['rfc4475/ltgtruri', 400, '3.1.2.7 <> around the Request-URI'],
    ['rfc4475/lwsruri', 400, '3.1.2.8 LWS inside the Request-URI'],
    ['rfc4475/lwsstart', 400, '3.1.2.9 multiple SP in the Request-Line'],
    ['rfc4475/trws', 400, '3.1.2.10 SP at the end of the Request-Line'],
    ['rfc4475/escruri', 400, '3.1.2.11 escaped headers in the Request-URI'],
    ['rfc4475/baddate', 404, '3.1.2.12 bad Date time zone (Date is not used: not rejected)'],
    ['rfc4475/regbadct', 400, '3.1.2.13 name-addr Contact URI without <>'],
    ['rfc4475/badaspec', 400, '3.1.2.14 spaces within addr-spec'],
    ['rfc4475/baddn', 400, '3.1.2.15 non-token display name'],
    ['rfc4475/badvers', 505, '3.1.2.16 unknown protocol version'],
    ['rfc4475/mismatch01', 400, '3.1.2.17 start line and CSeq method mismatch'],
    ['rfc4475/mismatch02', 501, '3.1.2.18 unknown method with CSeq mismatch'],
    ['rfc4475/bigcode', '-', '3.1.2.19 overlarge response code'],
    # §3.2, §3.3, §3.4
    ['rfc4475/badbranch', 404, '3.2.1 branch with the cookie and no identifier'],
    ['rfc4475/insuf', 400, '3.3.1 missing required header fields'],
    ['rfc4475/unkscm', 416, '3.3.2 Request-URI with an unknown scheme'],
    ['rfc4475/novelsc', 416, '3.3.3 Request-URI with an atypical scheme'],
    ['rfc4475/unksm2', 400, '3.3.4 REGISTER whose AOR is not a SIP URI'],
    ['rfc4475/bext01', 420, '3.3.5 Require with unknown options'],
    ['rfc4475/invut', 404, '3.3.6 unknown Content-Type'],
    ['rfc4475/regaut01', 200, '3.3.7 unknown Authorization scheme (auth off here)'],
    ['rfc4475/multi01', 400, '3.3.8 repeated single-value header fields'],
    ['rfc4475/mcl01', 400, '3.3.9 two Content-Length values'],
    ['rfc4475/bcast', '-', '3.3.10 200 OK with a broadcast Via'],
    ['rfc4475/zeromf', 483, '3.3.11 Max-Forwards of zero'],
    ['rfc4475/cparam01', 200, '3.3.12 Contact header parameter'],
    ['rfc4475/cparam02', 200, '3.3.13 Contact url-parameter'],
    ['rfc4475/regescrt', 200, '3.3.14 Contact with an escaped header'],
    ['rfc4475/sdp01', 100, '3.3.15 unacceptable Accept (user\'s binding registered: proxied, Accept is the UAS\'s concern)'],
    ['rfc4475/inv2543', 404, '3.4.1 RFC 2543 INVITE'],
    # RFC 5118
    ['rfc5118/ipv6-good', 200, 'RFC 5118 4.1 valid IPv6 REGISTER'],
    ['rfc5118/ipv6-bad', 400, 'RFC 5118 4.2 IPv6 host without brackets'],
    ['rfc5118/port-ambiguous', 200, 'RFC 5118 4.3 port-like IPv6 address'],
    ['rfc5118/port-unambiguous', 200, 'RFC 5118 4.4 IPv6 with a port'],
    ['rfc5118/via-received-param-with-delim', 405, 'RFC 5118 4.5 received with brackets'],
    ['rfc5118/via-received-param-no-delim', 200, 'RFC 5118 4.5 received without brackets'],
    ['rfc5118/ipv6-in-sdp', 400, 'RFC 5118 4.6 as printed: Content-Length beyond the body'],
    ['rfc5118/clfix/ipv6-in-sdp', 404, 'RFC 5118 4.6 IPv6 in SDP'],
    ['rfc5118/mult-ip-in-header', 404, 'RFC 5118 4.7 IPv4 and IPv6 in headers'],
    ['rfc5118/clfix/mult-ip-in-sdp', 404, 'RFC 5118 4.8 IPv4 and IPv6 in SDP'],
    ['rfc5118/clfix/ipv4-mapped-ipv6', 404, 'RFC 5118 4.9 IPv4-mapped IPv6'],
    ['rfc5118/ipv6-bug-abnf-3-colons', 404, 'RFC 5118 4.10 three colons (accepted)'],
    ['rfc5118/ipv6-correct-abnf-2-colons', 404, 'RFC 5118 4.10 two colons'],
);

my @listen_ports = (5060, 5050, 6050, 19823);
my %listeners;
for my $p (@listen_ports) {
    my $s = IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.1', LocalPort => $p);
    plan skip_all => "loopback UDP port $p is busy (the torture Vias name it)" unless $s;
    $listeners{$p} = $s;
}

sub fresh {
    my $s = Sipwake->new(config => { registrar => { min_expires => 1 } });
    $s->start;
    return $s;
}
my $sw = fresh();
my @servers = ($sw);
my %seen;

for my $c (@cases) {
    my ($name, $want, $what) = @$c;
    my $file = "$Sipwake::ROOT/tests/torture/$name.dat";
    open my $fh, '<:raw', $file or die "$file: $!";
    my $msg = do { local $/; <$fh> };
    close $fh;
    # Several files reuse one Via branch, Call-ID and CSeq: to a server that saw the earlier
    # one they are retransmissions (answered from the transaction) or stale CSeqs, so such a
    # file goes to a fresh server.
    my ($branch) = $msg =~ /branch\s*=\s*([^;,\s]+)/i;
    my ($callid) = $msg =~ /^(?:Call-ID|i)\s*:\s*(\S+)/mi;
    my $key = join '|', $branch // '', $callid // '';
    if ($seen{$key}++) {
        $sw = fresh();
        push @servers, $sw;
    }
    my $tx = IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.1', PeerAddr => '127.0.0.1',
        PeerPort => $sw->port) or die;
    $tx->send($msg);
    my $sel = IO::Select->new($tx, values %listeners);
    my @got;
    my $deadline = time + ($want eq '-' ? 0.3 : 1.5);
    while (time < $deadline) {
        my @ready = $sel->can_read($deadline - time) or last;
        for my $s (@ready) {
            $s->recv(my $r, 70000);
            # INVITE answers are retransmitted until ACKed (RFC 3261 §17.2.1) and this test
            # sends no ACK: only answers to this message count, each code once
            my ($rcid) = $r =~ /^(?:Call-ID|i)\s*:\s*(\S+)/mi;
            next if ($rcid // '') ne ($callid // '');
            my $code = $r =~ m{^SIP/2\.0 (\d{3})} ? $1 : 'garbage';
            push @got, $code unless grep { $_ eq $code } @got;
        }
        last if @got && $want ne '-';
    }
    my $got = @got ? join(',', @got) : '-';
    is($got, "$want", "$name: $what");
}

ok(!(grep { !$_->alive } @servers), 'every server alive after the corpus');
$sw = $servers[0];
is($sw->sql_wait("select count(*) from location where contact in "
    . "('sip:%00\@host5.example.com', 'sip:%00%00\@host5.example.com')", '2'),
   '2', 'escnull: %00 and %00%00 are two bindings (no early NUL termination)');
like($sw->sql("select username from location where contact='sip:%00\@host5.example.com'"),
     qr/^null-%00-null$/, 'escnull: the AOR keeps its escaped NUL');
like($sw->sql("select contact from location where callid like 'regescrt%'"),
     qr/^sip:user\@example\.com\?Route=%3Csip:sip\.example\.com%3E$/, 'regescrt: contact stored as sent');
for my $s (@servers) {
    ok($s->stop, 'clean shutdown, no sanitizer report');
}
done_testing;
