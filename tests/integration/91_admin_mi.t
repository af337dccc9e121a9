#!/usr/bin/perl
# The OpenSIPS MI on POST /mi: JSON-RPC 2.0 with OpenSIPS 4.x's command names (and their old
# aliases), parameters by position or by name, answer shapes and error codes; ul_dump streams
# a table of hundreds of AORs; a token is needed like for the API.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Sipwake;
use SipwakeAdmin;

my $hport = Sipwake::free_port();
my $sw = Sipwake->new(config => { admin => { enabled => 'yes', listen => "127.0.0.1:$hport" } });
$sw->write_config;
my ($rc, $out) = $sw->run_bin('admin', 'token', 'add', 'cli');
my ($token) = $out =~ /^(swk_\S+)$/m;
ok($rc == 0 && $token, 'an API token for the MI');
$sw->start;
my $mi = SipwakeAdmin->new(port => $hport, token => $token);

is(SipwakeAdmin->new(port => $hport)->post('/mi', { jsonrpc => '2.0', id => 1, method => 'version' })->{status}, 401,
   'no token: 401');

# ---- core
my $r = $mi->mi('uptime', undef, id => '1');
is($r->{jsonrpc}, '2.0', 'uptime: a JSON-RPC 2.0 answer');
is($r->{id}, '1', 'with the id');
like($r->{result}{Now}, qr/^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$/, '"Now" as OpenSIPS writes it');
like($r->{result}{'Up since'}, qr/^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$/, '"Up since"');
like($r->{result}{'Up time'}, qr/^\d+ \[sec\]$/, '"Up time": N [sec]');
is($mi->mi('core:uptime', undef, id => 7)->{id}, 7, 'core:uptime too, a numeric id echoed');
like($mi->mi('version')->{result}{Server}, qr/^sipwake \(\d+\.\d+\.\d+ \(x86_64\/linux\)\)$/, 'version: {"Server": ...}');
$r = $mi->mi('which');
ok(ref $r->{result} eq 'ARRAY' && (grep { $_ eq 'usrloc:dump' } @{ $r->{result} })
   && (grep { $_ eq 'statistics:get' } @{ $r->{result} }) && (grep { $_ eq 'core:reload_routes' } @{ $r->{result} }),
   'which: a flat array of module:cmd names');
is_deeply($mi->mi('which', { command => 'ul_rm_contact' })->{result}, [['table_name', 'aor', 'contact']],
          'which ul_rm_contact: one array per accepted param set');
is_deeply($mi->mi('which', ['ul_dump'])->{result}, [[], ['brief']], 'which ul_dump: [] and [brief]');

# ---- errors
is_deeply($mi->mi('no_such_cmd')->{error}, { code => -32601, message => 'Method not found' }, 'unknown method: -32601');
is_deeply($mi->mi('ul_rm', ['location'])->{error},
          { code => -32602, message => 'Invalid params', data => 'Too few or too many parameters' }, 'too few params: -32602');
my $raw = $mi->post('/mi', '{"jsonrpc":"2.0","method":');
is($raw->{status}, 200, 'a parse error still answers 200');
is($raw->{json}{error}{code}, -32700, 'with -32700');
is($mi->post('/mi', { id => 1, method => 'uptime' })->{json}{error}{code}, -32600, 'no "jsonrpc":"2.0": -32600');

# ---- usrloc
is_deeply($mi->mi('ul_dump')->{result}, { Domains => [{ name => 'location', hash_size => 512, AORs => [] }] },
          'ul_dump of an empty table');
my @uas;
for my $u (qw(alice bob carol)) {
    my $ua = $sw->ua(user => $u);
    is($ua->register(expires => 600)->{code}, 200, "$u registered");
    push @uas, $ua;
}
my $push = $sw->ua(user => 'frank');
is($push->register(contact => 'sip:frank@127.0.0.1:' . $push->local_port
    . ';pn-provider=apns;pn-prid=0123456789ABCDEF;pn-param=TEAM.com.example.voip', expires => 600)->{code}, 200,
   'frank registered with push params');
$r = $mi->mi('ul_show_contact', { table_name => 'location', aor => 'frank@example.com' });
is($r->{result}{AOR}, 'frank@example.com', 'ul_show_contact: {"AOR", "Contacts"}');
my $c = $r->{result}{Contacts}[0];
ok($c && (grep { exists $c->{$_} } qw(Contact ContactID Expires Q Callid Cseq User-agent State Flags Cflags Socket Methods)) == 12,
   'a contact has OpenSIPS\'s keys') or diag explain $c;
like($c->{ContactID}, qr/^\d+$/, 'ContactID as a string of digits');
ok($c->{Expires} > 500 && $c->{Expires} <= 600, 'Expires: seconds left');
is($c->{Methods}, 4294967295, 'Methods');
like($c->{Contact}, qr/pn-prid=redacted-[0-9a-f]{16}/, 'the device token is shown hashed');
unlike($mi->seen, qr/0123456789ABCDEF/, 'and never in clear');
is_deeply($mi->mi('ul_show_contact', ['location', 'nobody@example.com'])->{error}, { code => 404, message => 'AOR not found' },
          'unknown AOR: 404 "AOR not found"');
is_deeply($mi->mi('ul_show_contact', ['location', 'alice'])->{error}, { code => 400, message => 'Domain missing in AOR' },
          'no domain: 400');
is_deeply($mi->mi('ul_show_contact', ['other', 'alice@example.com'])->{error}, { code => 404, message => 'Table not found' },
          'another table: 404 "Table not found"');

$r = $mi->mi('usrloc:dump', { brief => 1 });
is_deeply([sort map { $_->{AOR} } @{ $r->{result}{Domains}[0]{AORs} }],
          [map { "$_\@example.com" } qw(alice bob carol frank)], 'ul_dump brief: AORs only');
is($r->{result}{Domains}[0]{name}, 'location', 'in the domain "location"');
ok(!exists $r->{result}{Domains}[0]{AORs}[0]{Contacts}, 'without contacts');

# a table of hundreds of AORs is streamed and still one JSON answer
for my $i (1 .. 450) {
    my $ua = $sw->ua(user => sprintf('bulk%03d', $i));
    $ua->send_raw($ua->register_msg(expires => 600));
    $ua->expect(qr/^SIP\/2\.0 200/, 2) if $i % 50 == 0;
}
my $n = 0;
for (1 .. 100) { $n = $sw->sql("SELECT count(*) FROM location"); last if $n >= 454; sleep 0.1 }
is($n, 454, '450 more AORs registered');
$raw = $mi->post('/mi', { jsonrpc => '2.0', id => 'd', method => 'ul_dump', params => [] });
ok(!defined $raw->{headers}{'content-length'} || $raw->{headers}{'transfer-encoding'}, 'ul_dump is streamed (chunked)');
my $aors = $raw->{json}{result}{Domains}[0]{AORs};
is(scalar @$aors, 454, 'and holds every AOR') or diag substr($raw->{content}, -300);
is($raw->{json}{id}, 'd', 'with the id');
ok((grep { $_->{AOR} eq 'bulk450@example.com' && @{ $_->{Contacts} } == 1 } @$aors), 'each with its contacts');

is($mi->mi('ul_rm_contact', ['location', 'alice@example.com', 'sip:nobody@127.0.0.1:9'])->{error}{code}, 404,
   'ul_rm_contact of an unknown contact: 404');
my ($alice_contact) = map { $_->{Contacts}[0]{Contact} } grep { $_->{AOR} eq 'alice@example.com' } @$aors;
is($mi->mi('ul_rm_contact', ['location', 'alice@example.com', $alice_contact])->{result}, 'OK',
   'ul_rm_contact (positional): "OK"');
is($sw->sql_wait("SELECT count(*) FROM location WHERE username='alice'", '0'), '0', 'the binding is gone from the store');
is($mi->mi('usrloc:rm', { table_name => 'location', aor => 'bob@example.com' })->{result}, 'OK', 'usrloc:rm (named): "OK"');
is($mi->mi('ul_show_contact', ['location', 'bob@example.com'])->{error}{code}, 404, 'bob is gone');
is($mi->mi('ul_rm', ['location', 'bob@example.com'])->{error}{code}, 404, 'removing him again: 404');
# frank's contact as shown (token hashed) removes it too
is($mi->mi('ul_rm_contact', ['location', 'frank@example.com', $c->{Contact}])->{result}, 'OK',
   'ul_rm_contact with the contact as the MI showed it');

# ---- statistics
$r = $mi->mi('get_statistics', { statistics => ['usrloc:', 'registrar:'] });
ok(exists $r->{result}{'usrloc:location-contacts'} && exists $r->{result}{'registrar:accepted_regs'},
   'get_statistics by group') or diag explain $r;
ok(!(grep { !/^(usrloc|registrar):/ } keys %{ $r->{result} }), 'only those groups');
is($r->{result}{'usrloc:registered_users'}, 451, 'usrloc:registered_users');
$r = $mi->mi('get_statistics', [['accepted_regs']]);
is_deeply([keys %{ $r->{result} }], ['registrar:accepted_regs'], 'a bare name, positional: keyed group:name');
is_deeply($mi->mi('get_statistics', [['no_such_stat']])->{result}, {}, 'nothing found: {} (as OpenSIPS answers)');
$r = $mi->mi('list_statistics', { statistics => ['usrloc:'] });
is($r->{result}{'usrloc:location-contacts'}, 'non-incremental', 'list_statistics: gauges non-incremental');
is($r->{result}{'usrloc:location-expires'}, 'incremental', 'counters incremental');
ok(keys %{ $mi->mi('statistics:list')->{result} } > 20, 'statistics:list without params: everything');
is($mi->mi('get_statistics')->{error}{code}, -32602, 'get_statistics needs its list');

# ---- reload_routes
is($mi->mi('reload_routes')->{result}, 'OK', 'reload_routes: "OK"');
ok($sw->wait_log(qr/policy: .* loaded as generation 2/, 10), 'the policy was reloaded');
is(SipwakeAdmin->new(port => $hport, token => $token)->get('/api/policy')->{json}{generation}, 2, 'generation 2');
my $audit = $mi->get('/api/audit')->{json};
ok((grep { $_->{who} eq 'token:cli' && $_->{action} eq 'registration.remove' && $_->{object} eq 'bob@example.com' } @$audit),
   'MI removals are in the audit log');

ok($sw->alive, 'sipwake still running');
$sw->stop;
unlike($sw->log, qr/ERROR|AddressSanitizer|runtime error|LeakSanitizer/, 'no errors or sanitizer reports');
done_testing;
