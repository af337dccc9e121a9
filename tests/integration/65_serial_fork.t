#!/usr/bin/perl
# Serial forking by q (RFC 3261 §16.6) and ring timeouts, as the route decision asks
# (fork = "serial", branch_timeout): the default policy rings devices with different q one
# group at a time, the next when the first declines; a branch that rings past its timeout
# is CANCELled and the next group rings; the caller gets the most telling final answer.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Sipwake;

my $n = 0;
sub invite {
    my ($caller, $to) = @_;
    $n++;
    my $p = $caller->local_port;
    $caller->send_raw("INVITE sip:$to SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$p;rport;branch=z9hG4bKser$n\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:alice\@example.com>;tag=s$n\r\nTo: <sip:$to>\r\n"
        . "Call-ID: serial-$n-$$\r\nCSeq: 1 INVITE\r\nContact: <sip:alice\@127.0.0.1:$p>\r\nContent-Length: 0\r\n\r\n");
}

# The final response to INVITE number $n (not a retransmission of an earlier one), ACKed.
sub final {
    my ($caller) = @_;
    my $m = $caller->expect(qr/^SIP\/2\.0 [2-6][^\r]*\r\n(?:[^\r]*\r\n)*Call-ID: serial-$n-/) // return {};
    my $r = Sipwake::UA::parse_response($m);
    if ($r->{code} >= 300) {
        my ($to) = $m =~ /^(To:[^\r]*)/m;
        my $p = $caller->local_port;
        $caller->send_raw("ACK sip:x\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$p;rport;branch=z9hG4bKser$n\r\n"
            . "Max-Forwards: 70\r\nFrom: <sip:alice\@example.com>;tag=s$n\r\n$to\r\nCall-ID: serial-$n-$$\r\n"
            . "CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n");
    }
    return $r;
}

sub devices {
    my ($sw, $user) = @_;
    my @d;
    for my $q ('1.0', '0.5') {
        my $ua = $sw->ua(user => $user);
        my $r = $ua->register(contact => "sip:$user\@127.0.0.1:" . $ua->local_port, contact_params => ";q=$q", expires => 3600);
        is($r->{code}, 200, "$user device with q=$q registered");
        push @d, $ua;
    }
    return @d;
}

# 1. The default policy: different q, so serial. The first declines, the second answers.
my $sw = Sipwake->new;
$sw->start;
my ($hi, $lo) = devices($sw, 'erin');
my $alice = $sw->ua(user => 'alice');
invite($alice, 'erin@example.com');
my $g1 = $hi->expect(qr/^INVITE /);
ok($g1, 'the q=1.0 device rings first');
is($lo->expect(qr/^INVITE /, 0.7), undef, 'the q=0.5 device does not ring yet');
$hi->answer($g1, 486, tag => 'h1');
ok($hi->expect(qr/^ACK /), 'its 486 is ACKed');
my $g2 = $lo->expect(qr/^INVITE /);
ok($g2, 'then the q=0.5 device rings');
is($alice->expect(qr/^SIP\/2\.0 486/, 0.3), undef, 'the 486 is not passed on while another group may answer');
$lo->answer($g2, 200, tag => 'l1');
my $r = final($alice);
is($r->{code}, 200, "the caller gets the second device's 200");

# Both decline: the caller gets the best answer.
invite($alice, 'erin@example.com');
$g1 = $hi->expect(qr/^INVITE /);
$hi->answer($g1, 486, tag => 'h2');
$g2 = $lo->expect(qr/^INVITE /);
$lo->answer($g2, 480, tag => 'l2');
$r = final($alice);
is($r->{code}, 486, 'both declined: the first 4xx goes to the caller (§16.7)');
ok($sw->stop, 'clean shutdown');

# 2. A policy with a 1 s ring timeout: serial, and parallel.
my $pol = Sipwake->new(policy => <<'LUA');
return {
    route = function(req, ctx)
        if #ctx.bindings == 0 then return { reply = { code = 404 } } end
        return { relay = "bindings", fork = req.user == "para" and "parallel" or "serial",
                 branch_timeout = 1 }
    end,
}
LUA
$pol->start;
($hi, $lo) = devices($pol, 'erin');
$alice = $pol->ua(user => 'alice');
invite($alice, 'erin@example.com');
$g1 = $hi->expect(qr/^INVITE /);
$hi->answer($g1, 180, tag => 'h3');
ok($alice->expect(qr/^SIP\/2\.0 180/), 'ringing reaches the caller');
my $t0 = time;
my $cancel = $hi->expect(qr/^CANCEL /, 3);
ok($cancel, 'after branch_timeout the ringing device gets a CANCEL');
$hi->answer($cancel, 200, tag => 'h3');
$hi->answer($g1, 487, tag => 'h3');
$g2 = $lo->expect(qr/^INVITE /);
ok($g2, 'and the next q group rings');
$lo->answer($g2, 486, tag => 'l3');
$r = final($alice);
is($r->{code}, 486, "the caller gets the 486, not the 487 of the branch sipwake cancelled");

my ($p1, $p2) = devices($pol, 'para');
invite($alice, 'para@example.com');
$g1 = $p1->expect(qr/^INVITE /);
$g2 = $p2->expect(qr/^INVITE /);
ok($g1 && $g2, 'parallel: both ring');
$p1->answer($g1, 180, tag => 'p1');
$p2->answer($g2, 180, tag => 'p2');
my $c1 = $p1->expect(qr/^CANCEL /, 3);
my $c2 = $p2->expect(qr/^CANCEL /, 3);
ok($c1 && $c2, 'after branch_timeout both are CANCELled');
$p1->answer($c1, 200, tag => 'p1');
$p1->answer($g1, 487, tag => 'p1');
$p2->answer($c2, 200, tag => 'p2');
$p2->answer($g2, 487, tag => 'p2');
$r = final($alice);
is($r->{code}, 408, 'the caller gets 408 (no answer), not the 487s of sipwake\'s own CANCELs');
ok($pol->stop, 'clean shutdown, no sanitizer report');
done_testing;
