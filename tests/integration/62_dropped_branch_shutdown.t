#!/usr/bin/perl
# A branch ended locally (no provisional response: no CANCEL, RFC 3261 §9.1) stays known
# until its Timer B, so a late 2xx can still reach the caller. A shutdown while such calls
# are being cancelled frees every client transaction: the request must forget the ended
# branch first (once an ASan use-after-free, depending on the order of the walk, so several
# calls are left in that state).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Sipwake;

my $sw = Sipwake->new;
$sw->start;
my @keep;
for my $i (1 .. 6) {
    # bob$i has two phones: A never answers, B rings and ignores the CANCEL
    my $a = $sw->ua(user => "bob$i");
    my $b = $sw->ua(user => "bob$i");
    $a->register(contact => "sip:bob$i\@127.0.0.1:" . $a->local_port, expires => 3600);
    $b->register(contact => "sip:bob$i\@127.0.0.1:" . $b->local_port, expires => 3600);
    my $c = $sw->ua(user => "carl$i");
    my $p = $c->local_port;
    my $via = "Via: SIP/2.0/UDP 127.0.0.1:$p;rport;branch=z9hG4bKdrop$i";
    my $hdr = "Max-Forwards: 70\r\nFrom: <sip:carl$i\@example.com>;tag=d$i\r\n"
        . "To: <sip:bob$i\@example.com>\r\nCall-ID: drop-$i\r\n";
    $c->send_raw("INVITE sip:bob$i\@example.com SIP/2.0\r\n$via\r\n$hdr"
        . "CSeq: 1 INVITE\r\nContact: <sip:carl\@127.0.0.1:$p>\r\nContent-Length: 0\r\n\r\n");
    my $ra = $a->expect(qr/^INVITE /, 5);
    my $rb = $b->expect(qr/^INVITE /, 5);
    ok($ra && $rb, "call $i rings both phones");
    $b->answer($rb, 180, reason => 'Ringing') if $rb;
    $c->expect(qr/^SIP\/2\.0 180 /, 5);
    $c->send_raw("CANCEL sip:bob$i\@example.com SIP/2.0\r\n$via\r\n$hdr"
        . "CSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n");
    ok($b->expect(qr/^CANCEL /, 5), "its CANCEL reaches the ringing phone (the silent one is ended locally)");
    push @keep, $a, $b, $c;
}
$sw->stop;
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error/, 'a stop with such calls: no errors or sanitizer reports');
done_testing;
