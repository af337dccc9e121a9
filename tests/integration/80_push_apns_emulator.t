#!/usr/bin/perl
# The APNs emulator refuses what real APNs refuses (Apple's "Sending notification requests to
# APNs", "Handling notification responses from APNs", "Establishing a token-based connection
# to APNs"), so a sipwake that passes the push tests would pass Apple: each rule is tried
# here with curl over HTTP/2 and a provider token made for the case, next to a request that
# passes.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Sipwake;

my $dir = tempdir('apns-emulator-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir, 'prod', 'sand') or BAIL_OUT('openssl failed');
open my $tf, '>', "$dir/tokens.json" or die;
print $tf '{"aaaa0001": {"topic": "org.ex.app", "environment": "production"},'
    . ' "bbbb0002": {"topic": "org.ex.app", "environment": "sandbox"},'
    . ' "cccc0003": {"topic": "org.ex.app.voip", "environment": "production"}}';
close $tf;
my (undef, $port) = Sipwake::start_emulator('apns', '--cert', "$dir/cert.pem", '--key', "$dir/key.pem",
    '--auth-key', "KEYPROD001:TEAM123456:$dir/prod-pub.pem", '--auth-key', "KEYSAND001:TEAM123456:$dir/sand-pub.pem",
    '--key-environment', 'KEYSAND001=sandbox', '--team-topics', 'TEAM123456=org.ex.app',
    '--tokens', "$dir/tokens.json", '--environment', 'production', '--lifetime', '60');
ok($port, 'an APNs emulator for production listening');

# An ES256 provider token for kid, signed with dir/NAME.p8, issued at now + skew.
sub jwt {
    my ($name, $kid, $skew) = @_;
    my $py = <<'PY';
import base64, json, sys, time
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
b = lambda x: base64.urlsafe_b64encode(x).rstrip(b'=').decode()
key = serialization.load_pem_private_key(open(sys.argv[1], 'rb').read(), None)
msg = b(json.dumps({'alg': 'ES256', 'kid': sys.argv[2]}).encode()) + '.' + \
    b(json.dumps({'iss': 'TEAM123456', 'iat': int(time.time()) + int(sys.argv[3])}).encode())
r, s = decode_dss_signature(key.sign(msg.encode(), ec.ECDSA(hashes.SHA256())))
print(msg + '.' + b(r.to_bytes(32, 'big') + s.to_bytes(32, 'big')))
PY
    open my $ph, '-|', '/usr/bin/python3', '-c', $py, "$dir/$name.p8", $kid, $skew // 0 or die;
    my $t = <$ph>;
    close $ph;
    chomp $t;
    return $t;
}
my $TOKEN = jwt('prod', 'KEYPROD001');

# POST a push; returns "STATUS REASON" (REASON empty on 200).
sub push_req {
    my (%o) = @_;
    my %h = ('apns-topic' => 'org.ex.app', 'apns-push-type' => 'alert', 'authorization' => "bearer $TOKEN",
        %{ $o{headers} || {} });
    my @args = ('curl', '-s', '--http2', '--cacert', "$dir/cert.pem", '-o', "$dir/body", '-w', '%{http_code}',
        '-X', 'POST', '--data-binary', $o{body} // '{"aps":{"alert":"hi"}}');
    push @args, '-H', "$_: $h{$_}" for grep { defined $h{$_} } sort keys %h;
    push @args, "https://127.0.0.1:$port/3/device/" . ($o{token} // 'aaaa0001');
    open my $ch, '-|', @args or die;
    my $code = <$ch> // '';
    close $ch;
    my $body = do { open my $f, '<', "$dir/body" or return "$code ?"; local $/; <$f> // '' };
    my ($reason) = $body =~ /"reason":\s*"([^"]+)"/;
    return "$code" . ($reason ? " $reason" : '');
}

is(push_req(), '200', 'a valid alert push: 200');
is(push_req(headers => { 'apns-push-type' => 'voip' }), '400 BadTopic',
   'a voip push whose topic lacks .voip: BadTopic');
is(push_req(headers => { 'apns-topic' => 'org ex app' }), '400 BadTopic', 'a topic that is no bundle id: BadTopic');
is(push_req(headers => { 'apns-expiration' => 'soon' }), '400 BadExpirationDate',
   'apns-expiration not a UNIX time: BadExpirationDate');
is(push_req(headers => { 'apns-expiration' => '0' }), '200', 'apns-expiration 0 is fine');
is(push_req(headers => { 'apns-push-type' => 'background', 'apns-priority' => '10' }, body => '{"aps":{"content-available":1}}'),
   '400 BadPriority', 'a background push at priority 10: BadPriority');
is(push_req(headers => { 'apns-push-type' => 'background' }, body => '{"aps":{"content-available":1}}'),
   '400 BadPriority', 'a background push without apns-priority (10): BadPriority');
is(push_req(headers => { 'apns-push-type' => 'alert', 'apns-priority' => '10' }, body => '{"aps":{"content-available":1}}'),
   '400 BadPriority', 'content-available alone at priority 10: BadPriority');
is(push_req(headers => { 'apns-push-type' => 'background', 'apns-priority' => '5' }, body => '{"aps":{"content-available":1}}'),
   '200', 'a background push at priority 5: 200');
is(push_req(headers => { authorization => 'bearer ' . jwt('prod', 'KEYPROD001', 300) }), '403 InvalidProviderToken',
   'a provider token issued in the future: InvalidProviderToken');
is(push_req(headers => { authorization => 'bearer ' . jwt('sand', 'KEYSAND001') }), '403 BadEnvironmentKeyInToken',
   'a key restricted to the sandbox, on production: BadEnvironmentKeyInToken (not InvalidProviderToken)');
is(push_req(headers => { 'apns-topic' => 'org.other.app' }, token => 'dddd0004'), '400 TopicDisallowed',
   'a bundle id that is not the key\'s team\'s: TopicDisallowed');
is(push_req(token => 'bbbb0002'), '400 BadDeviceToken', 'a sandbox token sent to production: BadDeviceToken');
is(push_req(token => 'cccc0003'), '400 DeviceTokenNotForTopic',
   'a PushKit token (topic .voip) pushed as an alert to the bundle: DeviceTokenNotForTopic');
is(push_req(token => 'cccc0003', headers => { 'apns-topic' => 'org.ex.app.voip', 'apns-push-type' => 'voip' }), '200',
   'and as a voip push to its topic: 200');

# 429 TooManyRequests, "too many requests were made consecutively to the same device token"
# (Apple names no rate: the emulator's is --token-burst pushes a --token-burst-window)
my (undef, $bport) = Sipwake::start_emulator('apns', '--cert', "$dir/cert.pem", '--key', "$dir/key.pem",
    '--auth-key', "KEYPROD001:TEAM123456:$dir/prod-pub.pem", '--token-burst', '2',
    '--token-burst-window', '60', '--lifetime', '60');
ok($bport, 'an APNs emulator allowing 2 pushes a minute to one device token');
$port = $bport;
is(push_req(token => 'eeee0005'), '200', 'the first push to a device token: 200');
is(push_req(token => 'eeee0005'), '200', 'the second: 200');
is(push_req(token => 'eeee0005'), '429 TooManyRequests', 'the third within the window: 429 TooManyRequests');
is(push_req(token => 'ffff0006'), '200', 'another device token is not held back: 200');
done_testing();
