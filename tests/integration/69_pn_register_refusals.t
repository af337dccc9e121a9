#!/usr/bin/perl
# Issue 13 review, the registrar's 555 (RFC 8599 §5.6.1.1):
# - the Warning of a 555 never carries what the phone sent as it sent it: a pn-provider or a
#   legacy pn-type with %-escaped CR LF or '"' is shown as a token, so the response keeps its
#   headers (no injected header, no second response on the stream);
# - a REGISTER whose push params the sender would refuse later is refused now, with the same
#   reason the sender gives, so the phone is never told +sip.pns for pushes that cannot be
#   sent: a Web Push pn-prid that is http://, has userinfo or a bad port; an APNs token that
#   is not hex; an APNs pn-param whose topic has a character a header cannot carry; unless a
#   proxy nearer the phone says it pushes (RFC 8599 §5.6.1).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Sipwake;

my $sw = Sipwake->new(config => { registrar => { push_providers => 'apns, fcm, webpush' } });
$sw->start;

# --- the Warning of a 555 is a token, whatever the phone sent
my $n = 0;
for my $case (['pn-provider=x%22%0d%0aX-Injected:%20yes%0d%0a%0d%0aSIP/2.0%20200%20OK;pn-prid=t1',
               qr/^Push service 'x\?\?\?X-Injected\?\?yes\?\?\?\?SIP\?2\.0\?200\?OK' is not enabled$/i],
              ['pn-type=a%0d%0aX-Injected:%20legacy%22;pn-tok=t2',
               qr/^unknown legacy pn-type 'a\?\?X-Injected\?\?legacy\?'$/]) {
    my ($params, $want) = @$case;
    $n++;
    my $ua = $sw->ua(user => "mallory$n", transport => 'tcp');
    my $p = $ua->local_port;
    $ua->send_raw($ua->register_msg(contact => "sip:mallory$n\@127.0.0.1:$p;transport=tcp;$params",
                                    expires => 3600, call_id => "inj-$n-$$"));
    my $r = Sipwake::UA::parse_response($ua->recv_raw(5));
    is($r && $r->{code}, 555, "injection $n: 555");
    my @w = Sipwake::UA::header($r, 'warning');
    is(scalar @w, 1, "injection $n: one Warning header");
    my ($text) = ($w[0] // '') =~ /^399 sipwake "([^"]*)"$/;
    like($text // '', $want, "injection $n: the phone's text is shown as token characters only");
    ok(!grep({ $_->[0] =~ /injected/i } @{ $r->{headers} || [] }), "injection $n: no injected header");
    # the next message on the stream is the answer to the next request, not a forged one
    $ua->send_raw($ua->register_msg(contact => "sip:mallory$n\@127.0.0.1:$p;transport=tcp",
                                    expires => 3600, call_id => "ok-$n-$$"));
    my $next = $ua->recv_raw(5) // '';
    like($next, qr/^SIP\/2\.0 200 .*\r\nCall-ID: ok-$n-$$\r\n/s,
         "injection $n: the next response on the stream is the next REGISTER's 200");
}

# --- refused at REGISTER what the sender would refuse at the first push
my %bad = (
    webhttp => ['pn-provider=webpush;pn-prid=http%3A%2F%2Fpush.example.com%2Fpush%2Fabc', qr/https:\/\/ subscription URL/],
    webuser => ['pn-provider=webpush;pn-prid=https%3A%2F%2Fu%40push.example.com%2Fpush%2Fabc', qr/https:\/\/ subscription URL/],
    webport => ['pn-provider=webpush;pn-prid=https%3A%2F%2Fpush.example.com%3A99999%2Fp', qr/https:\/\/ subscription URL/],
    apnsnothex => ['pn-provider=apns;pn-param=TEAM123456.org.example.app;pn-prid=not-a-hex-token', qr/hex/],
    apnsbundle => ['pn-provider=apns;pn-param=TEAM123456.org.exa%0Ample.app;pn-prid=ABCDEF01', qr/topic/],
    apnsvoip2 => ['pn-provider=apns;pn-param=TEAM123456.org.example.app.voip&remote;'
                  . 'pn-prid=ABCDEF01:voip&zz:remote', qr/hex/],
);
for my $u (sort keys %bad) {
    my ($params, $why) = @{ $bad{$u} };
    my $ua = $sw->ua(user => $u, transport => 'tcp');
    my $r = $ua->register(contact => "sip:$u\@127.0.0.1:" . $ua->local_port . ";transport=tcp;$params",
                          expires => 3600);
    is($r && $r->{code}, 555, "$u: 555 at REGISTER");
    ok(!grep({ /\+sip\.pns/ } Sipwake::UA::header($r, 'feature-caps')), "$u: no +sip.pns");
    my ($text) = (Sipwake::UA::header($r, 'warning') // '') =~ /^399 sipwake "([^"]*)"$/;
    like($text // '', $why, "$u: the Warning says why (" . ($text // 'none') . ")");
}
is($sw->sql("SELECT count(*) FROM location WHERE username IN ('" . join("','", sort keys %bad) . "')"),
   0, 'none of them was stored');

# the same senders take what they can send: still 200 +sip.pns
my %good = (
    webok => 'pn-provider=webpush;pn-prid=https%3A%2F%2Fpush.example.com%3A8443%2Fpush%2Fabc',
    apnsok => 'pn-provider=apns;pn-param=ABCD1234.org.example.app.voip&remote;'
              . 'pn-prid=ABCDEF01:voip&0123abcd:remote',
);
for my $u (sort keys %good) {
    my $ua = $sw->ua(user => $u, transport => 'tcp');
    my $r = $ua->register(contact => "sip:$u\@127.0.0.1:" . $ua->local_port . ";transport=tcp;$good{$u}",
                          expires => 3600);
    is($r && $r->{code}, 200, "$u: 200");
    ok(grep({ /\+sip\.pns/ } Sipwake::UA::header($r, 'feature-caps')), "$u: +sip.pns");
}

# a proxy nearer the phone that pushes (Feature-Caps +sip.pns in the REGISTER, RFC 8599
# §5.6.1) pushes by its own rules: sipwake keeps the binding, as before, and a re-REGISTER
# updates it rather than adding a second one
my $up = $sw->ua(user => 'upstream', transport => 'tcp');
for my $round (1, 2) {
    my $r = $up->register(contact => "sip:upstream\@127.0.0.1:" . $up->local_port . ";transport=tcp;"
        . "pn-provider=webpush;pn-prid=http%3A%2F%2Fpush.example.com%2Fpush%2Fup", expires => 3600,
        extra => "Feature-Caps: *;+sip.pns=\"webpush\"\r\n");
    is($r && $r->{code}, 200, "an http:// subscription another proxy pushes: 200 (REGISTER $round)");
}
is($sw->sql("SELECT count(*) FROM location WHERE username = 'upstream'"), 1, 'one binding, updated');

$sw->stop;
done_testing();
