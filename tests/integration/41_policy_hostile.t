#!/usr/bin/perl
# Hostile policies cannot stop sipwake: a decision with a metatable whose __index raises or
# loops, a hook that hides its endless loop inside pcall / xpcall, a pathological pattern
# (string.find, s:find, gsub), a 1 GiB string.rep (also inside pcall), gsub nested through
# its replacement function or a table's __index (it overflowed the C stack: SIGSEGV), find
# offsets of -2^63 / +-1e300 (UBSan: overflow), a hook table with a hostile metatable. Each hook gets its safe default, logged with the reason, and SIP is
# still answered. Top-level code runs under a load budget and the memory limit: a policy
# whose top level never ends is refused at start (clear error) and on SIGHUP, the admin's
# reload and MI reload_routes (each returns, the running generation stays and answers).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Sipwake;
use SipwakeAdmin;

my $policy = <<'LUA';
local function hostile(who, hook)
    if who == "mterror" then
        return setmetatable({}, { __index = function() error("index boom") end })
    elseif who == "mtloop" then
        return setmetatable({}, { __index = function() while true do end end })
    elseif who == "mtnested" then
        local bad = setmetatable({}, { __index = function() error("nested boom") end })
        if hook == "route" then return { reply = bad } end
        return { reject = bad }
    elseif who == "pcallloop" then
        while true do pcall(function() while true do end end) end
    elseif who == "xpcallloop" then
        while true do
            xpcall(function() while true do end end, function() while true do end end)
        end
    elseif who == "coroutine" then
        local co = coroutine.wrap(function() while true do pcall(function() while true do end end) end end)
        co()
    elseif who == "find" then
        return { tenant = tostring(string.find(string.rep("a", 3000), string.rep("a*", 12) .. "b")) }
    elseif who == "methodfind" then
        local s = string.rep("a", 3000)
        return { tenant = tostring(s:find(string.rep("a*", 12) .. "b")) }
    elseif who == "gsub" then
        local s = string.rep("a", 3000)
        return { tenant = (s:gsub(string.rep("a-", 12) .. "b", "x")) }
    elseif who == "rep" then
        local s = string.rep("x", 2^30)
        return { tenant = tostring(#s) }
    elseif who == "pcallrep" then
        while true do pcall(string.rep, "x", 2^30) end
    elseif who == "gsubnest" then
        local function g(s) return (s:gsub(".", function(c) return g(c .. c) end)) end
        return { tenant = g("ab") }
    elseif who == "gsubindex" then
        local mt = {}
        mt.__index = function() return ("x"):gsub("x", setmetatable({}, mt)) end
        return { tenant = (("x"):gsub("x", setmetatable({}, mt))) }
    elseif who == "findextreme" then
        return { tenant = tostring(("abc"):find("b", -2^63)) .. tostring(("abc"):find("b", -1e300))
                          .. tostring(("abc"):find("b", 1e300)) }
    elseif who == "patterns" then
        local d = ("acme.example.com"):match("^(%w+)%.")
        local n = select(2, ("a,b,,c"):gsub(",", ";"))
        return { tenant = d .. n }
    end
    return nil
end
return {
    on_register = function(req) return hostile(req.user, "on_register") end,
    route = function(req, ctx)
        return hostile(req.user, "route") or { reply = { code = 404, reason = "Nobody" } }
    end,
}
LUA

my $hport = Sipwake::free_port();
my $sw = Sipwake->new(policy => $policy,
    config => { policy => { time_budget_ms => 50, load_budget_ms => 300, memory_limit_mb => 32 },
                admin => { enabled => 'yes', listen => "127.0.0.1:$hport" } });
$sw->write_config;
my (undef, $out) = $sw->run_bin('admin', 'token', 'add', 'cli');
my ($token) = $out =~ /^(swk_\S+)$/m;
$sw->start;
my $admin = SipwakeAdmin->new(port => $hport, token => $token);

sub count_log { my ($re) = @_; my $n = () = $sw->log =~ /$re/g; return $n }

# Wait (bounded) until re appears more often than `before` times.
sub wait_more {
    my ($re, $before) = @_;
    my $deadline = time + 5;
    while (time < $deadline) {
        return 1 if count_log($re) > $before;
        sleep 0.05;
    }
    return 0;
}

sub reg {
    my ($user) = @_;
    my $ua = $sw->ua(user => $user);
    my $t0 = time;
    my $r = $ua->register(contact => "sip:$user\@127.0.0.1:9", expires => 600) || {};
    return ($r, time - $t0);
}

my $mseq = 0;
sub message {
    my ($to) = @_;
    my $ua = $sw->ua(user => 'sender');
    my $lp = $ua->local_port;
    $mseq++;
    my $m = "MESSAGE sip:$to\@example.com SIP/2.0\r\n"
        . "Via: SIP/2.0/UDP 127.0.0.1:$lp;rport;branch=z9hG4bKhm$mseq$$\r\n"
        . "Max-Forwards: 70\r\nFrom: <sip:sender\@example.com>;tag=h$mseq\r\n"
        . "To: <sip:$to\@example.com>\r\nCall-ID: hostile-$mseq-$$\r\nCSeq: 1 MESSAGE\r\n"
        . "Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi";
    $ua->send_raw($m);
    return Sipwake::UA::parse_response($ua->expect(qr{^SIP/2\.0 [2-6]\d\d }, 5)) || {};
}

my $mt = qr/returned an invalid decision: a decision table \(or a table in it\) has a metatable/;
my $over = qr/ran past its 50 ms budget/;
my $mem = qr/went past the VM's memory limit of 32 MiB/;
my $nest = qr/string\.gsub nested too deep/;
my @cases = (
    ['mterror', $mt], ['mtloop', $mt], ['mtnested', $mt],
    ['pcallloop', $over], ['xpcallloop', $over],
    ['coroutine', qr/read of undeclared global 'coroutine'/],
    ['find', $over], ['methodfind', $over], ['gsub', $over],
    ['rep', $mem], ['pcallrep', $mem],
    ['gsubnest', $nest], ['gsubindex', $nest],
);
for my $case (@cases) {
    my ($user, $re) = @$case;
    my $before = count_log(qr/on_register.*$re/);
    my ($r, $took) = reg($user);
    is($r->{code}, 200, "$user: REGISTER answered with on_register's safe default (accept)");
    ok($took < 2.5, "$user: and promptly") or diag "took $took s";
    ok(wait_more(qr/on_register.*$re/, $before), "$user: the log says why");
}
for my $case (@cases) {
    my ($user, $re) = @$case;
    my $before = count_log(qr/policy\[gen 1\]: route.*$re/);
    my $r = message($user);
    is($r->{code}, 500, "$user: MESSAGE answered with route's safe default (500)");
    ok(wait_more(qr/policy\[gen 1\]: route.*$re/, $before), "$user: the log says why");
}
# extreme find offsets clamp (-2^63 and -1e300 from the start, 1e300 past the end): no
# overflow (the UBSan build aborted)
my ($r) = reg('findextreme');
is($r->{code}, 200, 'string.find with -2^63, -1e300, 1e300 as init: REGISTER answered');
is($sw->sql_wait("select kv_store from location where username='findextreme'",
                 '{"tenant":"22nil"}'), '{"tenant":"22nil"}', 'and the offsets clamp');
($r) = reg('patterns');
is($r->{code}, 200, 'ordinary patterns still work in a hook');
is($sw->sql_wait("select kv_store from location where username='patterns'", '{"tenant":"acme3"}'),
   '{"tenant":"acme3"}', 'and give the builtin results (match, gsub count)');
is(message('nobody')->{code}, 404, 'a route hook that behaves still decides');
like($sw->log, qr/time budget exceeded/, 'the overrun names the budget');
like($sw->log, qr/route ran past its 50 ms budget \(.*policy\.lua:\d+: time budget exceeded\)/,
     'with the policy line it stopped at');

$sw->signal('USR1');
ok($sw->wait_log(qr/sipwake_policy_timeouts 10\b/), 'every overrun counted (5 cases x 2 hooks)');
ok($sw->wait_log(qr/sipwake_policy_errors 16\b/),
   'metatables, coroutine, memory and nested gsub counted as errors (8 cases x 2 hooks)');

# ---- the hook table itself with a hostile metatable: hooks are read raw
$sw->write_policy(<<'LUA');
local hooks = { on_register = function() return { reject = { code = 403, reason = "Gen Two" } } end }
return setmetatable(hooks, { __index = function(t, k) error("hooks index boom " .. k) end })
LUA
$sw->signal('HUP');
ok($sw->wait_log(qr/loaded as generation 2/), 'a hook table with a metatable loads');
is((reg('anyone'))[0]{code}, 403, 'its on_register decides');
is(message('bob')->{code}, 404, 'the route hook it lacks is not looked up through __index');
$sw->write_policy(<<'LUA');
local hooks = { on_register = function() return { reject = { code = 403, reason = "Gen Three" } } end }
return setmetatable(hooks, { __index = function() while true do end end })
LUA
$sw->signal('HUP');
ok($sw->wait_log(qr/loaded as generation 3/), 'a hook table whose __index loops loads');
is(message('bob')->{code}, 404, 'and routes by default');
is((reg('anyone'))[0]{code}, 403, 'generation 3 decides');

# ---- top-level code under the load budget and the memory limit
my @loads = (
    ['while true do end return {}', qr/ran past the load budget of 300 ms/, 'endless top level'],
    ['while true do pcall(function() while true do end end) end return {}',
     qr/ran past the load budget of 300 ms/, 'endless top level inside pcall'],
    ['local x = string.find(string.rep("a", 3000), string.rep("a*", 12) .. "b") return {}',
     qr/ran past the load budget of 300 ms/, 'pathological pattern at the top level'],
    ['local s = string.rep("x", 2^30) return {}', qr/went past the memory limit of 32 MiB while loading/,
     '1 GiB string.rep at the top level'],
    ['local function g(s) return (s:gsub(".", function(c) return g(c .. c) end)) end g("ab") return {}',
     qr/policy\.lua:1: string\.gsub nested too deep/, 'gsub nested through its function at the top level'],
    ['local mt = {}; mt.__index = function() return ("x"):gsub("x", setmetatable({}, mt)) end; '
     . '("x"):gsub("x", setmetatable({}, mt)) return {}',
     qr/string\.gsub nested too deep/, 'gsub nested through __index at the top level'],
);
for my $l (@loads) {
    my ($code, $re, $name) = @$l;
    $sw->write_policy($code);
    my $before = count_log(qr/reload failed, generation 3 stays: .*$re/);
    my $t0 = time;
    $sw->signal('HUP');
    ok(wait_more(qr/reload failed, generation 3 stays: .*$re/, $before), "SIGHUP, $name: refused with the reason");
    is((reg('anyone'))[0]{code}, 403, "SIGHUP, $name: generation 3 still answers");
}
$sw->write_policy('while true do end return {}');
my $t0 = time;
my $res = $admin->post('/api/policy/reload');
is($res->{status}, 422, 'admin reload of an endless top level: refused');
like($res->{json}{error} // '', qr/load budget of 300 ms/, 'with the reason');
ok(time - $t0 < 5, 'and the admin answers promptly');
$res = $admin->mi('reload_routes');
is($res->{error}{code}, 500, 'MI reload_routes of an endless top level: an error');
like($res->{error}{data} // '', qr/load budget/, 'with the reason');
is((reg('anyone'))[0]{code}, 403, 'generation 3 still decides after all refused reloads');
ok($sw->stop, 'clean shutdown');

# ---- at start: refused with a clear error, sipwake exits
my $bad = Sipwake->new(policy => "local n = 0\nwhile true do n = n + 1 end\nreturn {}\n",
                       config => { policy => { load_budget_ms => 300 } });
my $t1 = time;
ok(!eval { $bad->start; 1 }, 'a policy whose top level never ends: sipwake does not start');
ok(time - $t1 < 10, 'and says so promptly');
like($bad->log, qr/policy\.lua: the policy's top-level code ran past the load budget of 300 ms .*policy\.lua:2: time budget exceeded/,
     'the log names the budget and the line');
done_testing;
