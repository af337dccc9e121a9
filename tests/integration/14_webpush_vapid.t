#!/usr/bin/perl
# Web Push and VAPID in REGISTER (RFC 8599 §5.6.1.1, §5.6.1.2, §8.3): with webpush among
# the push providers, sipwake makes a VAPID key pair once (data_dir/vapid.pem, 0600) and
# advertises its public key in +sip.vapid, next to +sip.pns="webpush" — in the 2xx to a
# capability query (the browser needs the key to subscribe) and to a push binding. The key
# outlives a restart. Without webpush no key is made; a bad VAPID subject is a config error.
# Push credentials ([push] apns_key_file, fcm_service_account) are checked at start.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Sipwake;

my $sw = Sipwake->new(config => { registrar => { push_providers => 'apns, fcm, webpush' },
                                  push => { vapid_subject => 'mailto:ops@example.com' } });
$sw->start;
my $ua = $sw->ua(user => 'wendy');
my $p = $ua->local_port;
my $r = $ua->register(contact => "sip:wendy\@127.0.0.1:$p;pn-provider=webpush", expires => 3600);
is($r->{code}, 200, 'capability query for webpush: 200');
my ($fc) = Sipwake::UA::header($r, 'feature-caps');
like($fc // '', qr/^\*;\+sip\.pns="webpush";\+sip\.vapid="([A-Za-z0-9_-]{87})"$/,
     'Feature-Caps names webpush with the VAPID public key (65 bytes, base64url)');
my ($key) = ($fc // '') =~ /\+sip\.vapid="([^"]+)"/;
like($key // '', qr/^B/, 'an uncompressed P-256 point (0x04 ...)');

$r = $ua->register(contact => "sip:wendy\@127.0.0.1:$p;pn-provider=webpush;pn-prid=https://push.example/sub/abc",
    expires => 3600);
is($r->{code}, 200, 'a webpush binding: 200');
($fc) = grep { /webpush/ } Sipwake::UA::header($r, 'feature-caps');
is($fc, qq{*;+sip.pns="webpush";+sip.pnsreg="130";+sip.vapid="$key"},
   'the same key for the binding (and +sip.pnsreg: a browser gets no refresh push)');
my $file = $sw->dir . '/vapid.pem';
ok(-f $file, 'kept in data_dir/vapid.pem');
is(sprintf('%o', (stat $file)[2] & 0777), '600', 'mode 0600');

$sw->stop;
chmod 0644, $file; # an operator's copy left readable by others
$sw->start;
$r = $ua->register(contact => "sip:wendy\@127.0.0.1:$p;pn-provider=webpush", expires => 3600);
($fc) = Sipwake::UA::header($r, 'feature-caps');
like($fc // '', qr/\Q$key\E/, 'after a restart: the same key');
is(sprintf('%o', (stat $file)[2] & 0777), '600', 'a key left readable by others is made 0600 at start');
ok($sw->wait_log(qr/warn.*webpush: .*vapid\.pem was mode 0644 \(readable by others\); it is now 0600/),
   'with a warning');
$r = $ua->register(contact => "sip:wendy\@127.0.0.1:$p;pn-provider=fcm", expires => 3600);
($fc) = Sipwake::UA::header($r, 'feature-caps');
unlike($fc // '', qr/vapid/, 'no +sip.vapid for another provider');
ok($sw->stop, 'clean shutdown');

my $plain = Sipwake->new;
$plain->start;
ok(!-e $plain->dir . '/vapid.pem', 'webpush not enabled: no key made');
$plain->stop;

my $bad = Sipwake->new(config => { push => { vapid_subject => 'ops@example.com' } });
my ($rc, $out) = $bad->run_bin('--check');
is($rc, 1, 'a VAPID subject that is not a mailto: or https: URI: --check fails');
like($out, qr/\[push\] vapid_subject: must be a mailto: or https: URI/, 'saying why');

# push credentials are checked at start: a bad file stops sipwake with the reason
my $badkey = Sipwake->new(config => { push => { apns_key_file => '/nonexistent/AuthKey.p8',
    apns_key_id => 'KEY1234567', apns_team_id => 'TEAM123456' } });
ok(!eval { $badkey->start; 1 }, 'an unreadable APNs key: sipwake does not start');
like($badkey->log, qr{\[push\] apns_key_file: /nonexistent/AuthKey\.p8: cannot open}, 'and says why');
open my $fh, '>', $badkey->dir . '/sa.json' or die;
print $fh '{"type": "service_account", "project_id": "p", "client_email": "e@p", "token_uri": "https://t/token"}';
close $fh;
my $badsa = Sipwake->new(config => { push => { fcm_service_account => $badkey->dir . '/sa.json' } });
ok(!eval { $badsa->start; 1 }, 'a service account without its private key: sipwake does not start');
like($badsa->log, qr/\[push\] fcm_service_account: .*no private_key/, 'and says why');
my ($rc2, $out2) = Sipwake->new(config => { push => { apns_key_file => 'k.p8' } })->run_bin('--check');
like($out2, qr/\[push\] apns_key_file: needs apns_key_id and apns_team_id/, '--check: a key without its ids');
done_testing;
