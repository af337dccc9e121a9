#!/usr/bin/perl
# Dead push tokens, as Apple and Linphone phones live them (issue 13):
# - a token answered 410 stays dead only until the phone registers it again (Apple: stop
#   pushing "unless your application retrieves the same device token"): the next request
#   after that authenticated REGISTER is pushed (one that fails authentication changes
#   nothing);
# - a 410 whose "timestamp" is older than the binding's registration does not kill it;
# - Linphone's two tokens ("<voip>:voip&<remote>:remote"): the voip token dying leaves the
#   binding, and its remote token still gets alerts (the call that found the voip token
#   dead is pushed again at once as an alert to it, and so are later calls); the binding
#   goes only when both are dead.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Digest::SHA;
use Sipwake;

my $dir = tempdir('push-dead-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir, 'apns') or BAIL_OUT('openssl failed');
sub script {
    open my $sf, '>', "$dir/script.json.new" or die;
    print $sf $_[0];
    close $sf;
    rename "$dir/script.json.new", "$dir/script.json" or die;
}
script('{"DEAD0001": {"status": 410, "reason": "Unregistered", "times": 1}, '
    . '"01D00002": {"status": 410, "reason": "Unregistered", "timestamp_ms": 1000}, '
    . '"A0A0A001": {"status": 410, "reason": "Unregistered"}}');

my (undef, $aport) = Sipwake::start_emulator('apns', '--cert', "$dir/cert.pem",
    '--key', "$dir/key.pem", '--auth-key', "KEY1234567:TEAM123456:$dir/apns-pub.pem",
    '--script', "$dir/script.json", '--log', "$dir/apns.log", '--lifetime', '120');
ok($aport, 'APNs emulator listening');
sub apns_log { open my $f, '<', "$dir/apns.log" or return ''; local $/; <$f> // '' }
sub pushes_to {
    my ($tok, $status) = @_;
    my @l = grep { m{"event": "push", "path": "/3/device/$tok"} } split /\n/, apns_log();
    @l = grep { /"status": $status\b/ } @l if defined $status;
    return @l;
}
sub wait_pushes {
    my ($tok, $n, $status) = @_;
    for (1 .. 100) { last if pushes_to($tok, $status) >= $n; sleep 0.05 }
    return scalar pushes_to($tok, $status);
}

my $sw = Sipwake->new(config => {
    auth => { enabled => 'yes', algorithms => 'MD5' },
    push => { apns_key_file => "$dir/apns.p8", apns_key_id => 'KEY1234567',
              apns_team_id => 'TEAM123456', apns_host => '127.0.0.1', apns_port => $aport,
              ca => "$dir/cert.pem", bucket_timeout => 1, bucket_timeout_other => 1 },
});
for my $u (qw(again fresh duo)) {
    is(($sw->run_bin('user', 'add', "$u\@example.com", 'pw'))[0], 0, "user $u added");
}
$sw->start;
my $ONE = 'pn-provider=apns;pn-param=TEAM123456.org.example.app';
my $TWO = 'pn-provider=apns;pn-param=TEAM123456.org.example.app.voip%26remote';
sub reg {
    my ($user, $pn, $password) = @_;
    my $ua = $sw->ua(user => $user, transport => 'tcp');
    my $r = $ua->register(contact => "sip:$user\@127.0.0.1:" . $ua->local_port . ";transport=tcp;$pn",
        expires => 3600, password => $password // 'pw');
    # asleep: sipwake has seen the connection close
    return $sw->disconnect($ua) ? $r->{code} : 'still connected';
}
sub bindings { $sw->sql("SELECT count(*) FROM location WHERE username='$_[0]'") }

my $caller = $sw->ua(user => 'carl');
my $cp = $caller->local_port;
sub request {
    my ($method, $user, $callid) = @_;
    $caller->send_raw("$method sip:$user\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bK$callid\r\n"
        . "Max-Forwards: 70\r\nFrom: \"Carl\" <sip:carl\@example.com>;tag=c-$callid\r\nTo: <sip:$user\@example.com>\r\n"
        . "Call-ID: $callid\r\nCSeq: 1 $method\r\nContact: <sip:carl\@127.0.0.1:$cp>\r\n"
        . ($method eq 'MESSAGE' ? "Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi" : "Content-Length: 0\r\n\r\n"));
    my $r = Sipwake::UA::parse_response($caller->expect(qr/^SIP\/2\.0 [3-6]\d\d .*Call-ID: $callid\r/s, 5));
    return $r ? $r->{code} : 0;
}

# 1. A token answered 410 lives again when the phone registers it again.
is(reg('again', "$ONE;pn-prid=DEAD0001"), 200, 'a phone registered');
is(request('MESSAGE', 'again', 'dead-1'), 480, 'a MESSAGE: its token is answered 410, 480');
is($sw->sql_wait("SELECT count(*) FROM location WHERE username='again'", '0'), '0', 'and the binding is removed');
is(reg('again', "$ONE;pn-prid=DEAD0001", 'wrong'), 401, 'a REGISTER with that token that fails authentication');
is(request('MESSAGE', 'again', 'dead-1b'), 480, 'changes nothing: the next MESSAGE gets 480');
is(scalar(pushes_to('DEAD0001')), 1, 'without a push');
is(reg('again', "$ONE;pn-prid=DEAD0001"), 200, 'the app registers the same token again, authenticated');
request('MESSAGE', 'again', 'dead-2');
is(wait_pushes('DEAD0001', 1, 200), 1, 'the next MESSAGE is pushed to it, and APNs takes it')
    or diag join("\n", grep { /push|dead/i } split /\n/, $sw->log);
is(scalar(pushes_to('DEAD0001')), 2, 'two pushes in all: the 410 and this one');

# 2. A 410 older than the registration does not kill the fresh binding.
is(reg('fresh', "$ONE;pn-prid=01D00002"), 200, 'a phone registered');
request('MESSAGE', 'fresh', 'old-1');
is(wait_pushes('01D00002', 1, 410), 1, 'its push is answered 410 with a timestamp of 1970');
ok($sw->wait_log(qr/registered it again since: kept/, 10), 'sipwake says the binding is newer than the 410');
is(bindings('fresh'), '1', 'and the binding stays');
request('MESSAGE', 'fresh', 'old-2');
is(wait_pushes('01D00002', 2), 2, 'the next MESSAGE is pushed again');

# 3. Linphone's two tokens: the voip token dies, the remote token still works.
is(reg('duo', "$TWO;pn-prid=A0A0A001:voip%26B0B0B002:remote"), 200, 'a Linphone phone registered its voip and remote tokens');
request('INVITE', 'duo', 'duo-1');
is(wait_pushes('A0A0A001', 1, 410), 1, 'a call: VoIP push, answered 410');
ok($sw->wait_log(qr/binding \d+ kept for its other token/, 10), 'sipwake keeps the binding for its remote token');
is(wait_pushes('B0B0B002', 1, 200), 1, 'and pushes the call again at once, to the remote token');
like((pushes_to('B0B0B002'))[0] // '', qr/"push_type": "alert"[^\n]*IC_MSG[^\n]*duo-1/, 'as an incoming-call alert');
is(bindings('duo'), '1', 'the binding stays');
# the push log names the token each push went to (a hash of it), not the pair
my %th = map { $_ => substr(Digest::SHA::sha256_hex($_), 0, 16) } qw(A0A0A001 B0B0B002);
is($sw->sql_wait("SELECT token_hash FROM sipwake_push_log WHERE call_id='duo-1' AND outcome='dead_token'", $th{A0A0A001}),
   $th{A0A0A001}, 'the push log shows the dead VoIP push with the voip token\'s hash');
is($sw->sql_wait("SELECT token_hash FROM sipwake_push_log WHERE call_id='duo-1' AND outcome='delivered'", $th{B0B0B002}),
   $th{B0B0B002}, 'and the delivered alert with the remote token\'s');
request('MESSAGE', 'duo', 'duo-2');
is(wait_pushes('B0B0B002', 2, 200), 2, 'a MESSAGE: alert to the remote token, delivered');
request('INVITE', 'duo', 'duo-3');
is(wait_pushes('B0B0B002', 3, 200), 3, 'the next call: pushed to the remote token');
like((pushes_to('B0B0B002'))[2] // '', qr/"push_type": "alert"[^\n]*IC_MSG[^\n]*duo-3/, 'as an incoming-call alert');
is(scalar(pushes_to('A0A0A001')), 1, 'the dead voip token is not pushed again');

script('{"B0B0B002": {"status": 410, "reason": "Unregistered"}}');
request('MESSAGE', 'duo', 'duo-4');
is(wait_pushes('B0B0B002', 1, 410), 1, 'the remote token dies too');
is($sw->sql_wait("SELECT count(*) FROM location WHERE username='duo'", '0'), '0', 'both dead: the binding goes');

ok($sw->alive, 'sipwake still running');
$sw->stop;
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error/, 'no errors or sanitizer reports');
done_testing;
