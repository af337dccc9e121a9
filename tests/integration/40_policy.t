#!/usr/bin/perl
# The on_register hook: reject, lower expires, tag a tenant; a hook that errors, overruns or
# returns nonsense gets the safe default; SIGHUP reloads a good policy and keeps the running
# one when the new one is broken; the sandbox refuses io/os.execute and locks globals.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Sipwake;

my $policy = <<'LUA';
local blocked = { mallory = true }
return {
    on_register = function(req, ctx)
        if blocked[req.user] then
            return { reject = { code = 403, reason = "Blocked By Policy" } }
        end
        if req.user == "short" then return { expires = 700 } end
        if req.user == "tenant" then return { tenant = "acme" } end
        if req.user == "boom" then error("kaboom") end
        if req.user == "loop" then while true do end end
        if req.user == "nonsense" then return { expires = "forever" } end
        if req.user == "unknownkey" then return { forward = true } end
        if req.user == "io" then return { tenant = tostring(io) } end
        if req.user == "global" then newglobal = 1 end
        if req.user == "tableerr" then error({ code = 1 }) end
        if req.user == "logger" then
            local c = req.contacts[1]
            log.info("on_register sees " .. c.uri .. " prid " .. tostring(c.pn.prid))
        end
        return nil
    end,
}
LUA
my $sw = Sipwake->new(policy => $policy, config => { policy => { time_budget_ms => 50 } });
$sw->start;

sub reg {
    my ($user, %o) = @_;
    my $ua = $sw->ua(user => $user);
    return $ua->register(contact => "sip:$user\@127.0.0.1:9", expires => 3600, %o);
}

# a policy that logs what it is given logs no push token: it sees the token redacted
my $tok = 'policy-visible-token-77d1';
is(reg('logger', contact => "sip:logger\@127.0.0.1:9;pn-provider=fcm;pn-param=proj;pn-prid=$tok")->{code},
   200, 'a push binding registered through a policy that logs its input');
ok($sw->wait_log(qr/on_register sees sip:logger\@127\.0\.0\.1:9;.*pn-prid=redacted-[0-9a-f]{16} prid redacted-[0-9a-f]{16}/),
   'the policy saw the token as redacted-<hash>, in the URI and in pn.prid');
unlike($sw->log, qr/\Q$tok\E/, 'the token is not in the log');

my $r = reg('mallory');
is($r->{code}, 403, 'policy rejects');
is($r->{reason}, 'Blocked By Policy', 'with its reason');
is($sw->sql("select count(*) from location where username='mallory'"), '0', 'no binding');
$r = reg('short');
like(scalar Sipwake::UA::header($r, 'contact'), qr/;expires=(700|699)$/, 'policy lowers expires');
$r = reg('tenant');
is($r->{code}, 200, 'tenant tagged');
is($sw->sql_wait("select kv_store from location where username='tenant'", '{"tenant":"acme"}'),
   '{"tenant":"acme"}', 'tenant stored with the binding');

for my $case (['boom', qr/policy\[gen 1\]: on_register failed: .*policy\.lua:\d+: kaboom/],
              ['loop', qr/policy\[gen 1\]: on_register ran past its 50 ms budget/],
              ['nonsense', qr/invalid decision: expires must be an integer/],
              ['unknownkey', qr/invalid decision: unknown key 'forward'/],
              ['io', qr/read of undeclared global 'io'/],
              ['global', qr/assignment to undeclared global 'newglobal'/],
              ['tableerr', qr/on_register failed: .*policy\.lua:\d+: \(error object is a table value\)/]) {
    my ($user, $re) = @$case;
    $r = reg($user);
    is($r->{code}, 200, "$user: safe default (accept as asked)");
    ok($sw->wait_log($re), "$user: logged with the reason");
}
$sw->signal('USR1');
ok($sw->wait_log(qr/sipwake_policy_errors 6/), 'errors counted');
ok($sw->wait_log(qr/sipwake_policy_timeouts 1/), 'overrun counted');

# reload: a good policy
$sw->write_policy('return { on_register = function(req) return { reject = { code = 480, reason = "Reloaded" } } end }');
$sw->signal('HUP');
ok($sw->wait_log(qr/policy: .*policy\.lua loaded as generation 2/), 'SIGHUP loads generation 2');
is(reg('anyone')->{code}, 480, 'the new policy decides');

# reload: a broken policy keeps the running one
$sw->write_policy("return {\n on_register = function(req)\n  return { \nend }\n");
$sw->signal('HUP');
ok($sw->wait_log(qr/policy: reload failed, generation 2 stays: .*policy\.lua:\d+:/), 'broken policy reported with file:line');
is(reg('anyone2')->{code}, 480, 'generation 2 still decides');
$sw->write_policy('return { on_regster = function() end }');
$sw->signal('HUP');
ok($sw->wait_log(qr/unknown hook 'on_regster'/), 'unknown hook name refused at load');
$sw->write_policy('os.execute("touch /tmp/sipwake-pwned") return {}');
$sw->signal('HUP');
ok($sw->wait_log(qr/reload failed.*(os|execute)/), 'os.execute is not available');
ok(!-e '/tmp/sipwake-pwned', 'and nothing ran');
$sw->write_policy('local f = require("helpers.none") return {}');
$sw->signal('HUP');
ok($sw->wait_log(qr/module 'helpers\.none' not found in lua_path/), 'require only reaches lua_path');
$sw->write_policy('local f = require("../../etc/passwd") return {}');
$sw->signal('HUP');
ok($sw->wait_log(qr/invalid module name/), 'require refuses paths');
is(reg('anyone3')->{code}, 480, 'after failed reloads generation 2 still decides');
ok($sw->stop, 'clean shutdown');
done_testing;
