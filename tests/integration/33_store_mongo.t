#!/usr/bin/perl
# One sipwake node on the MongoDB backend ([store] backend = mongodb), against the MongoDB
# emulator (tests/emulators/mongo.py) through the real mongo-c-driver: the CLI writes users and
# API tokens there, and its other commands (tenant, messages, push-log, admin) work on it; a REGISTER's binding, two MESSAGEs stored for a sleeping phone (one
# retransmitted) and the admin's audit rows land in its collections, read back here with
# pymongo; the phone gets its MESSAGEs in order when it registers again, and they leave the
# store; after a restart the bindings are loaded from it. With the server gone, a REGISTER
# gets 503 and the process keeps running; SIGTERM still stops it.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Sipwake;
use SipwakeAdmin;

my $dir = File::Temp::tempdir('sipwake-mongo-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my ($epid, $eport) = Sipwake::start_emulator('mongo', '--port', 0, '--log', "$dir/mongo.log");
ok($eport, "the MongoDB emulator listens on $eport") or BAIL_OUT('no emulator');
my $uri = "mongodb://127.0.0.1:$eport/swtest";

# One pymongo expression on the database (db), printed; the second real driver reads what the
# first one wrote.
sub mongo {
    my ($expr) = @_;
    my $py = "import pymongo; c = pymongo.MongoClient('$uri', serverSelectionTimeoutMS=5000); "
        . "db = c.get_database(); print($expr)";
    my $out = `/usr/bin/python3 -c "$py" 2>&1`;
    chomp $out;
    return $out;
}

sub mongo_wait {
    my ($expr, $want, $max) = @_;
    my $got;
    my $end = time + ($max // 10);
    while (time < $end) {
        $got = mongo($expr);
        return $got if $got eq $want;
        sleep 0.1;
    }
    return $got;
}

my $hport = Sipwake::free_port();
my $sw = Sipwake->new(config => {
    store => { backend => 'mongodb', uri => $uri, path => undef },
    auth => { enabled => 'yes' },
    offline => { enabled => 'yes' },
    admin => { enabled => 'yes', listen => "127.0.0.1:$hport" },
});
my @cli;
for (['alice@example.com', 'pw-alice'], ['sam@example.com', 'pw-sam']) {
    my ($rc, $out) = $sw->run_bin('user', 'add', @$_);
    is($rc, 0, "user add $_->[0] into MongoDB") or diag $out;
    push @cli, $out;
}
like($cli[0], qr/store: applied MongoDB migration 001_core/, 'the schema (indexes) applied at the first open');
unlike($cli[1], qr/applied MongoDB migration/, 'and not again at the next');
is(mongo("len(list(db.subscriber.find({})))"), '2', 'both subscribers are in the collection');
my ($rc, $out) = $sw->run_bin('admin', 'token', 'add', 'ci');
my ($token) = $out =~ /^(swk_\S+)$/m;
ok($rc == 0 && $token, 'an API token made in MongoDB');
is(mongo("len(list(db.sipwake_admin_tokens.find({'_id': 'ci'})))"), '1', 'kept as a hash under its name');
$sw->start;
ok(!-e "$sw->{dir}/sipwake.db", 'no SQLite database made');
ok($sw->wait_log(qr{admin: listening on http://127\.0\.0\.1:$hport}, 5), 'the admin API listens');
my $api = SipwakeAdmin->new(port => $hport, token => $token);
$api->{http}->timeout(10);
is($api->get('/api/stats')->{status}, 200, 'the API token, read from MongoDB, works');

# ---- alice registers with push parameters, then sleeps
my $PN = 'pn-provider=apns;pn-param=TEAM123456.org.example.app;pn-prid=AAAA0001';
my $phone = $sw->ua(user => 'alice', transport => 'tcp');
is($phone->register(contact => "sip:alice\@127.0.0.1:" . $phone->local_port . ";transport=tcp;$PN",
    expires => 3600, password => 'pw-alice')->{code}, 200, 'alice registered (her password read from MongoDB)');
is(mongo("len(list(db.location.find({'username': 'alice', 'domain': 'example.com'})))"), '1',
   'her binding is in the location collection when the 200 comes');
like(mongo("db.location.find_one({'username': 'alice'})['contact']"), qr/pn-prid=AAAA0001/,
     'with its push parameters, OpenSIPS field names');
sub log_count {
    my ($re) = @_;
    open my $fh, '<', "$dir/mongo.log" or return 0;
    my $n = grep { /"update"/ && /"location"/ && /$re/ } <$fh>;
    return $n;
}
ok(log_count(qr/"w": "majority"/) >= 1, 'the binding written with the majority write concern');
ok($sw->disconnect($phone), 'asleep: sipwake saw her connection close');

# ---- two MESSAGEs stored for her, the second retransmitted
my $sender = $sw->ua(user => 'sam', transport => 'tcp');
my $sp = $sender->local_port;
my $n = 0;
sub message {
    my ($callid, $body) = @_;
    ++$n;
    return "MESSAGE sip:alice\@example.com SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:$sp;rport;branch=z9hG4bKm$n\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:sam\@example.com>;tag=m$n\r\nTo: <sip:alice\@example.com>\r\n"
        . "Call-ID: $callid\r\nCSeq: 7 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: "
        . length($body) . "\r\n\r\n$body";
}
is($sender->request(message('mg-1', 'one'), 5)->{code}, 202, 'first MESSAGE stored: 202');
is($sender->request(message('mg-2', 'two'), 5)->{code}, 202, 'second MESSAGE stored: 202');
is($sender->request(message('mg-2', 'two'), 5)->{code}, 202, 'the second again: 202');
is(mongo("len(list(db.sipwake_messages.find({'aor': 'alice\@example.com'})))"), '2',
   'two stored in MongoDB, the repeated one once');

# ---- she registers again: both, in order, then gone from the store
my $back = $sw->ua(user => 'alice', transport => 'tcp');
is($back->register(contact => "sip:alice\@127.0.0.1:" . $back->local_port . ";transport=tcp;$PN",
    expires => 3600, password => 'pw-alice')->{code}, 200, 'alice registers again');
my @got;
for (1 .. 2) {
    my $m = $back->expect(qr/^MESSAGE /, 5) or last;
    push @got, $m =~ /(one|two)$/;
    $back->answer($m, 200, reason => 'OK');
}
is_deeply(\@got, ['one', 'two'], 'she got both, in order');
is(mongo_wait("len(list(db.sipwake_messages.find({})))", '0'), '0', 'delivered: gone from MongoDB');

# ---- the CLI's other commands on MongoDB, beside the running server
my ($prc, $plog) = $sw->run_bin('push-log', '--limit', '20');
ok($prc == 0 && $plog =~ /alice\@example\.com/, 'push-log lists the pushes sent for alice (from MongoDB)')
    or diag $plog;
my ($mrc, $mout) = $sw->run_bin('messages');
ok($mrc == 0 && $mout =~ /^0 pending deliveries/m, 'messages: nothing pending once delivered') or diag $mout;
system("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $dir/k.p8 2>/dev/null");
for my $c (['tenant', 'add', 'beta', 'beta.example'],
           ['tenant', 'apns-key', 'beta', 'KEY1234567', 'TEAM123456', "$dir/k.p8"],
           ['tenant', 'rename', 'beta', 'gamma']) {
    my ($crc, $cout) = $sw->run_bin(@$c);
    is($crc, 0, "sipwake @$c[0 .. 1]") or diag $cout;
}
my ($lrc, $lout) = $sw->run_bin('tenant', 'list');
like($lout, qr/^gamma\n  domains: beta\.example\n  gamma\/default apns_key key_id=KEY1234567/m,
     'tenant list: renamed, with its domain and key');
is(mongo("db.sipwake_credentials.find_one({'tenant': 'gamma'})['kind']"), 'apns_key', 'the key in MongoDB');
my ($drc) = $sw->run_bin('tenant', 'cred-del', 'gamma', 'apns_key');
my ($xrc) = $sw->run_bin('tenant', 'del', 'gamma');
ok($drc == 0 && $xrc == 0 && mongo("len(list(db.sipwake_credentials.find({})))") eq '0'
   && mongo("len(list(db.sipwake_tenant_domains.find({'tenant': 'gamma'})))") eq '0',
   'cred-del and tenant del leave nothing of it');
my ($arc, $aout) = $sw->run_bin('admin', 'list');
ok($arc == 0 && $aout !~ /\S/, 'admin list: no account yet') or diag $aout;
my $added = `echo 'a-long-password-1' | $Sipwake::BIN --config @{[$sw->config_path]} admin add root 2>&1`;
is($? >> 8, 0, 'admin add') or diag $added;
($arc, $aout) = $sw->run_bin('admin', 'list');
like($aout, qr/^root\b/m, 'admin add reads the password from stdin; admin list shows the account');

# ---- tenants and the audit log through the admin API
my $t = $api->post('/api/tenants', { name => 'acme', domains => ['acme.example'] });
ok($t->{status} == 200 || $t->{status} == 201, "a tenant made through the API ($t->{status})");
is(mongo("db.sipwake_tenant_domains.find_one({'_id': 'acme.example'})['tenant']"), 'acme',
   'tenant and domain in MongoDB');
is(mongo("len(list(db.sipwake_audit.find({'action': 'tenant.add', 'who': 'token:ci'})))"), '1',
   'the audit row too');
my $audit = $api->get('/api/audit?limit=10');
ok((grep { $_->{action} eq 'tenant.add' && ($_->{object} // '') eq 'acme' } @{ $audit->{json} || [] }),
   'and the API reads it back');

# ---- a binding the store cannot write: 503, then 200 once it takes writes again
is(mongo("c.admin.command('configureFailPoint', 'failCommand', mode='alwaysOn', "
    . "data={'failCommands': ['update'], 'errorCode': 2})['ok']"), '1.0', 'every update refused from now');
my $again = $sw->ua(user => 'alice');
my $r503 = $again->register(expires => 600, password => 'pw-alice', timeout => 20);
is($r503 && $r503->{code}, 503, 'a REGISTER whose binding cannot be written gets 503 (' . ($r503 ? $r503->{code} : 'none') . ')');
like($r503 ? $r503->{raw} // '' : '', qr/^Retry-After: 5\r?$/m, 'with Retry-After');
is(mongo("c.admin.command('configureFailPoint', 'failCommand', mode='off')['ok']"), '1.0', 'updates allowed again');
my $r200 = $again->register(expires => 600, password => 'pw-alice', timeout => 10);
is($r200 && $r200->{code}, 200, 'the retry is answered 200');
is(mongo("len(list(db.location.find({'username': 'alice'})))"), '2', 'and the binding is stored');

# ---- a restart loads the bindings from MongoDB
ok($sw->stop, 'stopped with SIGTERM');
$sw->start;
like($sw->log, qr/location: 2 bindings loaded/, 'after a restart, alice\'s bindings are loaded from MongoDB');

# ---- the server gone: a REGISTER gets 503, the process keeps running
kill 'TERM', $epid;
waitpid($epid, 0);
my $t0 = time;
my $bob = $sw->ua(user => 'alice');
my $r = $bob->register(expires => 600, password => 'pw-alice', timeout => 40);
is($r && $r->{code}, 503, 'with the store unreachable, a REGISTER is answered 503 (' . ($r ? $r->{code} : 'none') . ')');
ok($sw->alive, 'and sipwake keeps running');
like($sw->log, qr/mongodb: .*(reaching|No suitable servers|connection)/i, 'the driver\'s error is logged');
$t0 = time;
ok($sw->stop, 'SIGTERM stops it');
ok(time - $t0 < 30, sprintf('within bound (%.1f s)', time - $t0));
done_testing();
