#!/usr/bin/perl
# The web admin in headless Chromium (Debian's /usr/bin/chromium) driven by Playwright
# (playwright-core from npm, no browser download): log in, create a tenant, upload an APNs
# key, see a phone that sipp registers, see its push in the push log, reload the policy, log
# out; hostile names and User-Agents stay text. This file runs sipwake, the APNs emulator and
# sipp, then admin.mjs, and reports its TAP lines as its own. The dashboard screenshot is
# saved as tests/browser/out/dashboard.png.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use File::Path qw(make_path);
use Sipwake;

my $here = $FindBin::Bin;
for my $need (['/usr/bin/chromium', 'Debian chromium'], ["$here/node_modules/playwright-core/package.json",
              'playwright-core (npm ci --prefix tests/browser)']) {
    BAIL_OUT("$need->[1] is missing: run make test, which installs it") unless -e $need->[0];
}
my ($node) = grep { -x } map { "$_/node" } split /:/, $ENV{PATH};
BAIL_OUT('node is missing: run make test, which installs it') unless $node;

my $dir = tempdir('admin-browser-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Sipwake::make_keys($dir, 'acme') or BAIL_OUT('openssl failed');
my (undef, $apns) = Sipwake::start_emulator('apns', '--cert', "$dir/cert.pem", '--key', "$dir/key.pem",
    '--auth-key', "KEYACME001:TEAMAAAAAA:$dir/acme-pub.pem", '--log', "$dir/apns.log", '--lifetime', '170');
ok($apns, 'APNs emulator listening');

my $hport = Sipwake::free_port();
my $sw = Sipwake->new(config => {
    admin => { enabled => 'yes', listen => "127.0.0.1:$hport" },
    offline => { enabled => 'yes' },
    push => { apns_host => '127.0.0.1', apns_port => $apns, ca => "$dir/cert.pem" },
});
$sw->write_config;
my $cfg = $sw->config_path;
is(system("printf 'browser test pass\\n' | $Sipwake::BIN --config $cfg admin add operator >/dev/null 2>&1"), 0,
   'an admin account');
$sw->start;

# sipp scenarios for this test: the push REGISTER with a hostile User-Agent, and a MESSAGE that
# is stored (202)
my $hostile = '<img src=x onerror="window.__xss=1">';
(my $xml_ua = $hostile) =~ s/&/&amp;/g;
$xml_ua =~ s/</&lt;/g;
$xml_ua =~ s/"/&quot;/g;
sub scenario {
    my ($from, $to, $subst) = @_;
    open my $in, '<', "$Sipwake::ROOT/tests/sipp/$from" or die;
    my $x = do { local $/; <$in> };
    $subst->() for $x;
    open my $out, '>', "$dir/$to" or die;
    print $out $x;
    close $out;
}
scenario('register_push.xml', 'register.xml', sub { s/User-Agent: sipp/User-Agent: $hostile/ or die });
scenario('uac_message.xml', 'message.xml', sub { s/<recv response="200"\/>/<recv response="202"\/>/ or die });
my $sp = $sw->port;
my $sipp = "sipp -m 1 -nostdin -t u1 -i 127.0.0.1 -timeout 10s -recv_timeout 5000 127.0.0.1:$sp";
my $outdir = "$here/out";
make_path($outdir);
unlink "$outdir/dashboard.png";

$ENV{BASE} = "http://127.0.0.1:$hport";
$ENV{ADMIN_USER} = 'operator';
$ENV{ADMIN_PASSWORD} = 'browser test pass';
$ENV{P8} = "$dir/acme.p8";
$ENV{KEY_ID} = 'KEYACME001';
$ENV{TEAM_ID} = 'TEAMAAAAAA';
$ENV{HOSTILE_UA} = $hostile;
$ENV{REGISTER_CMD} = "$sipp -sf $dir/register.xml -p " . Sipwake::free_port()
    . " -set user pat -set provider apns -set param TEAMAAAAAA.org.acme.app -set prid ABCDEF0123456789 -set expires 3600"
    . " >$dir/sipp-reg.log 2>&1";
$ENV{MESSAGE_CMD} = "$sipp -sf $dir/message.xml -p " . Sipwake::free_port() . " -set callee pat >$dir/sipp-msg.log 2>&1";
$ENV{OUT} = $outdir;
$ENV{NODE_PATH} = "$here/node_modules";

# admin.mjs prints TAP; each of its results becomes one here
open my $tap, '-|', $node, "$here/admin.mjs" or BAIL_OUT("node: $!");
my $steps = 0;
while (my $line = <$tap>) {
    chomp $line;
    if ($line =~ /^(not )?ok \d+ - (.*)$/) {
        ok(!$1, "browser: $2");
        $steps++;
    } elsif ($line =~ /^#/) {
        diag $line;
    }
}
close $tap;
ok($steps >= 15, "the browser test ran all its steps ($steps)");
my $alog = do { open my $f, '<', "$dir/apns.log" or die; local $/; <$f> };
like($alog, qr{"path": "/3/device/ABCDEF0123456789", "kid": "KEYACME001".*"status": 200},
     'APNs got the push signed with the key uploaded in the browser');
ok(-s "$outdir/dashboard.png", 'the dashboard screenshot is saved');

ok($sw->alive, 'sipwake still running');
$sw->stop;
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error|LeakSanitizer/, 'no errors or sanitizer reports');
done_testing;
