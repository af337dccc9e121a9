#!/usr/bin/perl
# INVITE server transactions (RFC 3261 §17.2.1): a final non-2xx response to an INVITE is
# retransmitted over UDP (Timer G: T1, 2*T1, ...) until the ACK, which is absorbed and
# stops them; a retransmitted INVITE gets the response again; a CANCEL for an INVITE that
# was answered gets 200 (no effect), one for an unknown INVITE 481; a stray ACK is dropped.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Time::HiRes qw(time);
use Sipwake;

my $sw = Sipwake->new;
$sw->start;
my $ua = $sw->ua;
my $lp = $ua->local_port;

sub req {
    my ($method, $branch, $cseq_method, %o) = @_;
    return "$method sip:bob\@example.com SIP/2.0\r\n"
        . "Via: SIP/2.0/UDP 127.0.0.1:$lp;rport;branch=$branch\r\nMax-Forwards: 70\r\n"
        . "From: <sip:alice\@example.com>;tag=inv1\r\nTo: <sip:bob\@example.com>" . ($o{to_tag} // '') . "\r\n"
        . "Call-ID: invite-txn-$branch\r\nCSeq: 1 " . ($cseq_method // $method) . "\r\n"
        . "Content-Length: 0\r\n\r\n";
}

my $invite = req('INVITE', 'z9hG4bKinv1');
my $r = $ua->request($invite);
is($r->{code}, 404, 'INVITE for a user with no binding: 404 from the default policy');
my ($tag) = $r->{raw} =~ /^To: [^\r]*;tag=(\w+)/m;
my $t0 = time;
my $again = $ua->recv_raw(2);
ok($again && $again eq $r->{raw}, 'no ACK: the same response is retransmitted (Timer G)');
my $dt = time - $t0;
ok($dt > 0.3 && $dt < 2.0, sprintf('not before T1 (%.2f s)', $dt));
$again = $ua->recv_raw(2);
ok($again && $again eq $r->{raw}, 'and again (Timer G doubles)');

$ua->send_raw(req('INVITE', 'z9hG4bKinv1'));
my $re = $ua->recv_raw(1);
ok($re && $re eq $r->{raw}, 'a retransmitted INVITE gets the same response');

$ua->send_raw(req('ACK', 'z9hG4bKinv1', 'ACK', to_tag => ";tag=$tag"));
my $after = $ua->recv_raw(2.5);
is($after, undef, 'the ACK stops the retransmissions and gets no answer itself');

$r = $ua->request(req('CANCEL', 'z9hG4bKinv1'));
is($r->{code}, 200, 'CANCEL for an INVITE already answered: 200, no effect');
$r = $ua->request(req('CANCEL', 'z9hG4bKnosuch'));
is($r->{code}, 481, 'CANCEL for an unknown INVITE: 481');
$ua->send_raw(req('ACK', 'z9hG4bKstray', 'ACK', to_tag => ';tag=x'));
is($ua->recv_raw(0.5), undef, 'an ACK matching no transaction is dropped');

# Over TCP nothing is retransmitted.
my $tcp = $sw->ua(transport => 'tcp');
my $tl = $tcp->local_port;
my $tinv = "INVITE sip:bob\@example.com SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:$tl;branch=z9hG4bKtcp1\r\n"
    . "Max-Forwards: 70\r\nFrom: <sip:a\@example.com>;tag=t1\r\nTo: <sip:bob\@example.com>\r\n"
    . "Call-ID: tcp-inv\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
$r = $tcp->request($tinv);
is($r->{code}, 404, 'INVITE over TCP answered');
is($tcp->recv_raw(1.2), undef, 'and not retransmitted over TCP');
ok($sw->stop, 'clean shutdown, no sanitizer report');
done_testing;
