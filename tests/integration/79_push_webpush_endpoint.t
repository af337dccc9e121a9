#!/usr/bin/perl
# Issue 13 attack b06: a Web Push subscription URL
# - in any case of its scheme (HTTPS://..., RFC 3986 §3.1) is one: 200 and pushed;
# - naming localhost or a loopback, private, link-local or unspecified IP address is refused
#   unless [push] webpush_allow_private (default no; the harness sets yes for the loopback
#   emulators): 555 at REGISTER, and a stored binding of that kind is not pushed, so sipwake
#   never posts to an internal service on a registering user's behalf; a host name that
#   resolves to such an address is not connected to (checked on the resolved address).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Sys::Hostname;
use Socket qw(inet_ntoa);
use Sipwake;

my $dir = tempdir('webpush-endpoint-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir) or BAIL_OUT('openssl failed');
open my $subs, '>', "$dir/subs.json" or die;
print $subs '{"sub-upper": {}, "sub-stored": {}, "sub-named": {}}';
close $subs;
my (undef, $wport) = Sipwake::start_emulator('webpush', '--cert', "$dir/cert.pem", '--key', "$dir/key.pem",
    '--subscriptions', "$dir/subs.json", '--log', "$dir/webpush.log", '--lifetime', '120');
ok($wport, 'Web Push emulator listening');
sub slurp { open my $f, '<', $_[0] or return ''; local $/; <$f> // '' }

sub server {
    my ($allow) = @_;
    return Sipwake->new(config => {
        registrar => { push_providers => 'webpush' },
        push => { ca => "$dir/cert.pem", webpush_allow_private => $allow, bucket_timeout_other => 2 } });
}
sub register {
    my ($sw, $user, $prid) = @_;
    my $ua = $sw->ua(user => $user);
    my $r = $ua->register(contact => "sip:$user\@127.0.0.1:" . $ua->local_port . ";pn-provider=webpush;pn-prid=$prid",
        expires => 3600);
    my ($warning) = (Sipwake::UA::header($r, 'warning') // '') =~ /"([^"]*)"/;
    return ($r->{code}, $warning // '');
}
my $n = 0;
sub message_to {
    my ($sw, $user) = @_;
    my $caller = $sw->ua(user => 'carl');
    my $cp = $caller->local_port;
    $n++;
    $caller->send_raw("MESSAGE sip:$user\@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:$cp;rport;branch=z9hG4bKwe$n\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:carl\@example.com>;tag=w$n\r\nTo: <sip:$user\@example.com>\r\n"
        . "Call-ID: webpush-endpoint-$n\r\nCSeq: 1 MESSAGE\r\nContent-Length: 2\r\n\r\nhi");
    return $caller;
}

# ---- allowed (a push service on the operator's own network, or these tests)
my $sw = server('yes');
$sw->start;
is_deeply([ register($sw, 'upper', "HTTPS://127.0.0.1:$wport/push/sub-upper") ], [200, ''],
          'HTTPS:// in upper case is a subscription URL: 200');
message_to($sw, 'upper');
is($sw->sql_wait("SELECT outcome FROM sipwake_push_log WHERE aor = 'upper\@example.com'", qr/\w/, 10), 'delivered',
   'and it is pushed');
like(slurp("$dir/webpush.log"), qr{/push/sub-upper}, 'the push service got it');
is_deeply([ register($sw, 'stored', "https://127.0.0.1:$wport/push/sub-stored") ], [200, ''],
          'a loopback endpoint, allowed: 200');
ok($sw->stop, 'clean shutdown');

# ---- the default (the same server and store, restarted without the key): refused
$sw->{config}{push}{webpush_allow_private} = undef;
$sw->write_config;
$sw->start;
for my $u ("https://127.0.0.1:$wport/push/x", 'https://169.254.169.254/latest/meta-data', 'https://10.0.0.1/x',
           'https://[::1]:8080/x', 'https://localhost:9200/x', 'https://2130706433/x', 'HTTPS://192.168.1.1/x') {
    is_deeply([ register($sw, 'mallory', $u) ], [555, 'Web Push endpoint is a local or private address'],
              "$u: 555, saying why");
}
is($sw->sql("SELECT count(*) FROM location WHERE username = 'mallory'"), '0', 'none stored');
is_deeply([ register($sw, 'walt', 'https://push.example.net/sub/1') ], [200, ''], 'a public host: 200');
my $before = () = slurp("$dir/webpush.log") =~ /sub-stored/g;
message_to($sw, 'stored')->expect(qr/^SIP\/2\.0 4\d\d /, 10);
ok($sw->wait_log(qr/local or private \(\[push\] webpush_allow_private\)/, 10),
   'a binding stored while it was allowed: not pushed, saying why');
is(scalar(() = slurp("$dir/webpush.log") =~ /sub-stored/g), $before, 'the push service got nothing');

# a host name that resolves to a private address: refused when connecting
my $name = hostname();
my $addr = gethostbyname($name);
SKIP: {
    skip "$name does not resolve to a loopback address here", 2
        unless $addr && inet_ntoa($addr) =~ /^127\./ && $name !~ /localhost/i;
    is_deeply([ register($sw, 'named', "https://$name:$wport/push/sub-named") ], [200, ''],
              "a name ($name) is not resolved at REGISTER: 200");
    message_to($sw, 'named');
    like($sw->sql_wait("SELECT COALESCE(reason, '') FROM sipwake_push_log WHERE aor = 'named\@example.com'", qr/./, 10),
         qr/local or private address/, 'the connection to the address it resolves to is refused');
}
ok($sw->stop, 'clean shutdown');
done_testing;
