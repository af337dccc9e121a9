#!/usr/bin/perl
# What may wake a sleeping phone (issue 13 review): a SUBSCRIBE or REFER from a sender
# nobody authenticated wakes nothing by default (each would be an APNs background push, of
# which iOS delivers "two or three per hour", the budget RFC 8599 §5.5 refresh pushes need);
# an "is typing" notice (RFC 3994) or an IMDN (RFC 5438) wakes nothing either (no IM_MSG
# alert for them), while the policy sees ctx.content_type and may push one; a device is
# woken at most once per [push] wake_interval for requests that are neither calls nor
# messages, and its refresh pushes still go. Checked in the APNs emulator's log.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Sipwake;

my $dir = tempdir('push-wake-budget-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir, 'apns') or BAIL_OUT('openssl failed');
my (undef, $aport) = Sipwake::start_apns_emulator($dir, '--strict', '--log', "$dir/apns.log", '--lifetime', '120');
ok($aport, 'APNs emulator listening');
sub slurp { open my $f, '<', $_[0] or return ''; local $/; <$f> // '' }
sub apns_lines { grep { /"status": \d/ && index($_, $_[0]) >= 0 } split /\n/, slurp("$dir/apns.log") }
sub pushed {
    my ($needle, $wait) = @_;
    for (1 .. ($wait // 3) * 20) {
        my ($l) = apns_lines($needle);
        return $l if $l;
        sleep 0.05;
    }
    return '';
}

my $sw = Sipwake->new(config => {
    registrar => { push_providers => 'apns', min_expires => 1, push_min_expires => 6, push_refresh_margin => 2 },
    push => { apns_key_file => "$dir/apns.p8", apns_key_id => 'KEY1234567', apns_team_id => 'TEAM123456',
              apns_host => '127.0.0.1', apns_port => $aport, ca => "$dir/cert.pem",
              bucket_timeout => 1, bucket_timeout_other => 1, refresh_lead => 4 },
});
$sw->write_policy(<<'LUA');
return {
  push = function(req, binding, ctx)
    if binding.aor == "pal@example.com" then
      if ctx.kind == "wake" then return { skip = false } end
      if ctx.content_type == "message/imdn+xml" then return { skip = false, type = "background" } end
    end
    return nil
  end,
}
LUA
$sw->write_config;
$sw->start;

my $IOS = 'pn-provider=apns;pn-param=TEAM123456.org.example.app.voip%26remote';
sub reg {
    my ($user, $prid, $expires) = @_;
    my $ua = $sw->ua(user => $user, transport => 'tcp');
    my $r = $ua->register(contact => "sip:$user\@127.0.0.1:" . $ua->local_port . ";transport=tcp;$IOS;pn-prid=$prid",
        expires => $expires);
    # asleep: sipwake has seen the connection close
    return $sw->disconnect($ua) ? $r->{code} : 'still connected';
}
is(reg('ios', 'AAAA0001:voip%26BBBB0002:remote', 3600), 200, 'an iPhone registered (voip and remote tokens)');

my $caller = $sw->ua(user => 'mallory');
my $cp = $caller->local_port;
sub request {
    my ($method, $user, $callid, $ct, $body) = @_;
    my $extra = $method eq 'SUBSCRIBE' ? "Event: presence\r\nExpires: 600\r\n"
              : $method eq 'REFER'     ? "Refer-To: <sip:dave\@example.com>\r\n" : '';
    $extra .= "Content-Type: $ct\r\n" if $ct;
    $body //= '';
    $caller->send_raw("$method sip:$user\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bK$callid\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:stranger\@evil.example>;tag=c-$callid\r\nTo: <sip:$user\@example.com>\r\n"
        . "Call-ID: $callid\r\nCSeq: 1 $method\r\nContact: <sip:mallory\@127.0.0.1:$cp>\r\n$extra"
        . "Content-Length: " . length($body) . "\r\n\r\n$body");
    my $r = Sipwake::UA::parse_response($caller->expect(qr/^SIP\/2\.0 [2-6]\d\d .*Call-ID: $callid\r/s, 5));
    return $r ? $r->{code} : 0;
}
my $COMPOSING = '<?xml version="1.0"?><isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing"><state>active</state></isComposing>';
my $IMDN = '<?xml version="1.0"?><imdn xmlns="urn:ietf:params:xml:ns:imdn"><message-id>m1</message-id>'
    . '<datetime>2026-12-06T00:00:00Z</datetime><delivery-notification><status><delivered/></status></delivery-notification></imdn>';

# 1. unauthenticated SUBSCRIBE and REFER: no push
is(request('SUBSCRIBE', 'ios', 'sub-u1'), 480, 'an unauthenticated SUBSCRIBE to the sleeping iPhone: 480');
is(request('REFER', 'ios', 'ref-u1'), 480, 'an unauthenticated REFER: 480');
ok($sw->wait_log(qr/an unauthenticated SUBSCRIBE or REFER wakes no phone/, 10), 'sipwake says why');

# 2. typing notices and delivery reports: no push; a chat message still is one
is(request('MESSAGE', 'ios', 'typing-1', 'application/im-iscomposing+xml', $COMPOSING), 480, 'an "is typing" notice: 480');
is(request('MESSAGE', 'ios', 'imdn-1', 'message/imdn+xml;charset=utf-8', $IMDN), 480, 'a delivery report: 480');
ok($sw->wait_log(qr/a typing notice or delivery report wakes no phone/, 10), 'sipwake says why');
request('MESSAGE', 'ios', 'chat-1', 'text/plain', 'hello');
like(pushed('chat-1'), qr/"push_type": "alert"[^\n]*IM_MSG/, 'a chat message is an IM_MSG alert (the control)');
is(join('', apns_lines('sub-u1'), apns_lines('ref-u1'), apns_lines('typing-1'), apns_lines('imdn-1')), '',
   'none of the others was pushed');

# 3. a device the policy lets be woken: once per wake_interval, refresh pushes go still
my $t0 = time;
is(reg('pal', 'CCCC0003:voip%26DDDD0004:remote', 12), 200, 'an iPhone whose wakes the policy allows, registered for 12 s');
request('SUBSCRIBE', 'pal', 'sub-p1');
like(pushed('sub-p1'), qr{"path": "/3/device/DDDD0004"[^\n]*"push_type": "background", "priority": "5"},
     'its first SUBSCRIBE: a background push (skip = false)');
request('SUBSCRIBE', 'pal', 'sub-p2');
request('REFER', 'pal', 'ref-p1');
ok($sw->wait_log(qr/REFER ref-p1: no push to pal\@example\.com: its device was woken less than 1200 s ago/, 10),
   'a second SUBSCRIBE and a REFER within wake_interval: not pushed, and sipwake says why');
is(join('', apns_lines('sub-p2'), apns_lines('ref-p1')), '', 'neither is on the wire');
# the policy sees the content type and may push a delivery report (as a silent wake here)
request('MESSAGE', 'pal', 'imdn-p1', 'message/imdn+xml', $IMDN);
like(pushed('imdn-p1'), qr{"path": "/3/device/DDDD0004"[^\n]*"push_type": "background"},
     'the policy pushes an IMDN, told by ctx.content_type');
my $refresh = '';
for (1 .. 240) {
    ($refresh) = grep { !/sub-p|ref-p|imdn-p/ } apns_lines('/3/device/DDDD0004');
    last if $refresh;
    sleep 0.05;
}
like($refresh // '', qr/"push_type": "background", "priority": "5"[^\n]*content-available/,
     'the refresh push still goes: wakes do not block it');
ok(time - $t0 < 12, 'before the binding expires');

ok($sw->alive, 'sipwake still running');
$sw->stop;
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error/, 'no errors or sanitizer reports');
done_testing;
