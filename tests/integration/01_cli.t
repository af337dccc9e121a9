#!/usr/bin/perl
# The command line: --version, --check with good and broken configs and policies (messages
# name file, line and key), --config-doc agreeing with the README, and the user command.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Sipwake;
use Digest::MD5;
use Digest::SHA;

my $bin = $Sipwake::BIN;
like(`$bin --version`, qr/^sipwake \d+\.\d+\.\d+$/, '--version');
my $sw = Sipwake->new;
my ($rc, $out) = $sw->run_bin('--check');
is($rc, 0, '--check passes on a good config') or diag $out;

my $dir = $sw->dir;
sub check_conf {
    my ($text) = @_;
    open my $fh, '>', "$dir/bad.conf" or die;
    print $fh $text;
    close $fh;
    my $o = `$bin --check --config $dir/bad.conf 2>&1`;
    return ($? >> 8, $o);
}
($rc, $out) = check_conf("[sip]\nlisten = udp:127.0.0.1:5060\n\n[registrar]\nmax_expires = lots\n");
is($rc, 1, 'bad value: exit 1');
like($out, qr{bad\.conf:5: \[registrar\] max_expires: expected an integer}, 'names file, line and key');
($rc, $out) = check_conf("[registrar]\nmax_contact = 3\n");
like($out, qr{bad\.conf:2: \[registrar\] max_contact: unknown key}, 'unknown key named');
open my $p, '>', "$dir/broken.lua" or die;
print $p "return {\n  on_register = function(req)\n    return { expires = \n  end,\n}\n";
close $p;
($rc, $out) = check_conf("[policy]\nfile = $dir/broken.lua\n");
is($rc, 1, 'broken policy: exit 1');
like($out, qr{broken\.lua:4: unexpected symbol near 'end'}, 'policy error names file and line');

# --check loads the [push] credentials as a start does (issue 13): what stops a start fails it
($rc, $out) = check_conf("[push]\napns_key_file = $dir/nonexistent.p8\napns_key_id = KEYID12345\napns_team_id = TEAMID1234\n");
is($rc, 1, '--check: an APNs key file that is not there: exit 1');
like($out, qr{bad\.conf:2: \[push\] apns_key_file: \S*nonexistent\.p8: cannot open}, 'with the message a start gives, naming file and line') or diag $out;
open my $pem, '>', "$dir/notjson.pem" or die;
print $pem "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
close $pem;
($rc, $out) = check_conf("[push]\nfcm_service_account = $dir/notjson.pem\n");
ok($rc == 1 && $out =~ /bad\.conf:2: \[push\] fcm_service_account: .*not a JSON object/, '--check: a service account that is a PEM file') or diag $out;
($rc, $out) = check_conf("[push]\napns_certificate = $dir/notjson.pem\n");
ok($rc == 1 && $out =~ /bad\.conf:2: \[push\] apns_certificate: /, '--check: a certificate that is not one') or diag $out;
($rc, $out) = check_conf("[registrar]\npush_providers = webpush\n[push]\nvapid_subject = mailto:ops\@example.com\nvapid_key = $dir/notjson.pem\n");
ok($rc == 1 && $out =~ /bad\.conf:5: \[push\] vapid_key: /, '--check: a VAPID key file that is not a key') or diag $out;
# and a start that fails on them has not touched (migrated) the store yet
mkdir "$dir/fresh";
open my $fc, '>', "$dir/fresh.conf" or die;
print $fc "[general]\ndata_dir = $dir/fresh\n[sip]\nlisten = udp:127.0.0.1:1\n[push]\napns_key_file = $dir/nonexistent.p8\napns_key_id = KEYID12345\napns_team_id = TEAMID1234\n";
close $fc;
$out = `timeout 30 $bin --config $dir/fresh.conf 2>&1`;
is($? >> 8, 1, 'a start with a missing APNs key: exit 1');
like($out, qr{fresh\.conf:6: \[push\] apns_key_file: \S*nonexistent\.p8: cannot open}, 'the same message') or diag $out;
ok(!-e "$dir/fresh/sipwake.db", 'and no store made or migrated before the credentials were checked');

# config messages (issue 13)
($rc, $out) = check_conf("[push]\napns_environment = dev\n");
like($out, qr{bad\.conf:2: \[push\] apns_environment: unknown value 'dev' \(expected both, production or sandbox\)}, 'an enum value: the accepted words listed') or diag $out;
($rc, $out) = check_conf("[push]\nfcm_project_number = 929724111839\n");
like($out, qr{\[push\] fcm_project_number: needs fcm_service_account \(it is that account's project number\)}, 'a project number alone: says what it needs') or diag $out;
($rc, $out) = check_conf("[push]\napns_key_id = KEY\n");
ok($rc == 1 && $out =~ /bad\.conf:2: \[push\] apns_key_id: a Key ID is 10 letters or digits/, 'a Key ID of the wrong length: refused at config time') or diag $out;
($rc, $out) = check_conf("[push]\napns_team_id = TEAM-12345\n");
ok($rc == 1 && $out =~ /bad\.conf:2: \[push\] apns_team_id: a Team ID is 10 letters or digits/, 'a Team ID that is not letters and digits') or diag $out;

# tenant credential commands: a wrong ENV or project number is named (issue 13)
($rc, $out) = $sw->run_bin('tenant', 'apns-cert', 'acme/legacy', "$dir/notjson.pem", 'sandbx');
ok($rc == 1 && $out =~ /ENV is production, sandbox or both \(got 'sandbx'\)/, 'apns-cert: a misspelled ENV is named, not opened as a password file') or diag $out;
($rc, $out) = $sw->run_bin('tenant', 'apns-key', 'acme/dev2', 'KEYID67890', 'TEAMID1234', "$dir/notjson.pem", 'dev');
ok($rc == 1 && $out =~ /ENV is production, sandbox or both \(got 'dev'\)/, 'apns-key: a wrong ENV is named') or diag $out;
($rc, $out) = $sw->run_bin('tenant', 'fcm', 'acme/x', "$dir/notjson.pem", 'my-app');
ok($rc == 1 && $out =~ /PROJECT_NUMBER 'my-app': a project number is 1\.\.20 digits/ && $out !~ /notjson/, 'fcm: the bad project number is named, not the file') or diag $out;
like(`$bin --help 2>&1`, qr/ENV=production\|sandbox\|both/, 'usage says what ENV is');

my $doc = `$bin --config-doc`;
open my $rm, '<', "$Sipwake::ROOT/README.md" or die;
my $readme = do { local $/; <$rm> };
my ($section) = $readme =~ /<!-- config-doc:begin -->\n(.*?)\n<!-- config-doc:end -->/s;
s/^\s+|\s+$//g for $section, $doc;
is($section, $doc, 'README documents exactly the keys --config-doc lists (make readme-config)');

# user management
($rc, $out) = $sw->run_bin('user', 'add', 'alice@Example.COM', 'secret');
is($rc, 0, 'user add') or diag $out;
is($sw->sql("select username, domain, password, ha1 from subscriber"),
   'alice|example.com||' . Digest::MD5::md5_hex('alice:example.com:secret'),
   'MD5 HA1 stored, password not stored, domain lower-cased');
is($sw->sql("select ha1_sha256 from subscriber"), Digest::SHA::sha256_hex('alice:example.com:secret'),
   'SHA-256 HA1 stored');
($rc, $out) = $sw->run_bin('user', 'add', 'bob@example.com', '< /dev/null');
is($rc, 2, 'no password on stdin refused');
($rc, $out) = $sw->run_bin('user', 'add', 'nodomain', 'x');
is($rc, 2, 'USER@DOMAIN required');
($rc, $out) = $sw->run_bin('user', 'list');
is($out, "alice\@example.com\n", 'user list');
($rc, $out) = $sw->run_bin('user', 'del', 'alice@example.com');
is($rc, 0, 'user del');
($rc, $out) = $sw->run_bin('user', 'del', 'alice@example.com');
is($rc, 1, 'deleting a missing user fails');
is($sw->sql("select count(*) from subscriber"), '0', 'table empty');
is($sw->sql("select table_version from version where table_name='location'"), '1013',
   'OpenSIPS location table version');
is($sw->sql("select table_version from version where table_name='subscriber'"), '8',
   'OpenSIPS subscriber table version');
is($sw->sql("select group_concat(name) from pragma_table_info('location')"),
   'contact_id,username,domain,contact,received,path,expires,q,callid,cseq,last_modified,flags,cflags,user_agent,socket,methods,sip_instance,kv_store,attr',
   'location columns are OpenSIPS 1013, in order');
done_testing;
