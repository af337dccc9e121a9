#!/usr/bin/perl
# schemas/hooks/*.json are what `sipwake --hook-schemas` writes from the decision tables the
# decoder walks (server/policy/lua_hook_decision.c): a field, a bound, a word or a rule added,
# changed or removed on one side only fails here, naming it (`make hook-schemas` regenerates
# the files from the tables).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use File::Basename qw(basename);
use JSON::PP;
use Sipwake;

my $bin = $Sipwake::BIN;
my $committed_dir = "$Sipwake::ROOT/schemas/hooks";
my $dir = tempdir('sipwake-hook-schemas-XXXXXX', TMPDIR => 1, CLEANUP => 1);

my $out = `$bin --hook-schemas $dir 2>&1`;
is($?, 0, '--hook-schemas writes the schemas') or diag $out;

my @generated = sort map { basename($_) } glob("$dir/*.json");
my @committed = sort map { basename($_) } glob("$committed_dir/*.json");
ok(@generated >= 7, 'a schema for every hook') or diag "@generated";
is_deeply(\@committed, \@generated, 'schemas/hooks holds one file per hook the tables know, no other');

sub slurp { open my $f, '<', $_[0] or return undef; local $/; <$f> }

# Every property path of a schema, with what it says of it (type, words, bounds, required,
# conditions), so a difference is reported as the field it is about.
sub fields {
    my ($s, $path, $into) = @_;
    return $into unless ref $s eq 'HASH';
    my %said = map { exists $s->{$_} ? ($_ => $s->{$_}) : () }
        qw(type enum minimum maximum minLength maxLength pattern required additionalProperties
           maxProperties propertyNames oneOf anyOf dependentRequired dependentSchemas allOf if then);
    $into->{$path || '(decision)'} = JSON::PP->new->canonical->encode(\%said);
    my $props = $s->{properties} || {};
    fields($props->{$_}, $path ? "$path.$_" : $_, $into) for keys %$props;
    return $into;
}

my $json = JSON::PP->new;
for my $name (@generated) {
    my $want = slurp("$dir/$name");
    my $have = slurp("$committed_dir/$name");
    if (!defined $have) {
        fail("$name: no committed file for this hook (make hook-schemas)");
        next;
    }
    my ($w, $h) = (eval { $json->decode($want) }, eval { $json->decode($have) });
    ok($w && $h, "$name: both parse as JSON") or next;
    my ($fw, $fh) = (fields($w, '', {}), fields($h, '', {}));
    my @only_tables = grep { !exists $fh->{$_} } sort keys %$fw;
    my @only_file = grep { !exists $fw->{$_} } sort keys %$fh;
    my @differ = grep { exists $fh->{$_} && $fw->{$_} ne $fh->{$_} } sort keys %$fw;
    ok(!@only_tables && !@only_file && !@differ,
       "$name: the same fields, with the same types, words, bounds and rules")
        or diag join '', (map { "  $_: only in the tables (add it to the file: make hook-schemas)\n" } @only_tables),
                         (map { "  $_: only in the file (no row for it in the tables)\n" } @only_file),
                         (map { "  $_:\n    tables: $fw->{$_}\n    file:   $fh->{$_}\n" } @differ);
    my @wl = split /\n/, $want, -1;
    my @hl = split /\n/, $have, -1;
    my ($line) = grep { ($wl[$_] // '') ne ($hl[$_] // '') } 0 .. ($#wl > $#hl ? $#wl : $#hl);
    ok(!defined $line, "$name: the committed file is exactly the generated one, descriptions too")
        or diag sprintf("  line %d\n    generated: %s\n    committed: %s\n", $line + 1,
                        $wl[$line] // '(end of file)', $hl[$line] // '(end of file)');
}

# The committed schemas accept and refuse what the decoder does: every case of
# tests/policy/decisions_test.lua (ok_* accepted, bad_* refused by the decoder) that JSON can
# hold is validated against its hook's schema by a JSON Schema 2020-12 validator (Debian's
# python3-jsonschema). A few bad_* cases break rules the schemas state only in a description.
my %prose = map { $_ => 1 } (
    'route bad_uri_name',        # "a numeric IPv4 or IPv6 address"
    'route bad_headers_via',     # "Via, From, To, ... are sipwake's and refused"
    'route bad_headers_compact', # ... "and their compact forms"
    'route bad_headers_big',     # "at most 1000 bytes in all"
    'push bad_data_big',         # "at most 1 KiB as JSON"
);
my %call = (
    register    => 'p.on_register({ user = n }, {})',
    route       => 'p.route({ user = n }, {})',
    push        => 'p.push({}, { aor = n }, {})',
    credentials => 'p.credentials({ aor = n }, {})',
    push_result => 'p.on_push_result({ reason = n }, {})',
    timeout     => 'p.on_timeout({ user = n }, {})',
    offline     => 'p.offline({ aor = n }, {})',
);
my %hook_of = (register => 'on_register', push_result => 'on_push_result', timeout => 'on_timeout');
my $cases_src = slurp("$Sipwake::ROOT/tests/policy/decisions_test.lua");
my $lua = <<'LUA';
local p = require("decisions_policy")
local function esc(s)
    return '"' .. s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end
local function enc(v)
    local t = type(v)
    if t == "nil" then return "null" end
    if t == "boolean" then return tostring(v) end
    if t == "string" then return esc(v) end
    if t == "number" then
        assert(v == v and v ~= math.huge and v ~= -math.huge, "not finite")
        if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", v) end
        return string.format("%.17g", v)
    end
    assert(t == "table" and not getmetatable(v), "not JSON")
    local parts = {}
    for k, x in pairs(v) do
        assert(type(k) == "string" and #parts < 100, "not a JSON object")
        parts[#parts + 1] = esc(k) .. ":" .. enc(x)
    end
    return "{" .. table.concat(parts, ",") .. "}"
end
local function case(hook, n, d)
    local ok, j = pcall(enc, d)
    if ok then print("CASE\t" .. hook .. "\t" .. n .. "\t" .. j) end
end
LUA
my $n_lists = 0;
while ($cases_src =~ /^local (\w+)_cases = \{(.*?)\n\}/msg) {
    my ($list, $body) = ($1, $2);
    my $call = $call{$list} or next;
    my $hook = $hook_of{$list} || $list;
    my @names = $body =~ /"(\w+)"/g;
    $lua .= "for _, n in ipairs({" . join(', ', map { "\"$_\"" } @names) . "}) do "
          . "case(\"$hook\", n, $call) end\n";
    $n_lists++;
}
$lua .= "return true\n";
is($n_lists, 7, 'decisions_test.lua has a case list for each of the 7 hooks');
my $sw = Sipwake->new(config => { policy => { file => "$Sipwake::ROOT/tests/policy/decisions_policy.lua",
                                              lua_path => "$Sipwake::ROOT/lua, $Sipwake::ROOT/tests/policy" } });
my $dump = "$dir/dump_cases.lua";
open my $df, '>', $dump or die "$dump: $!";
print $df $lua;
close $df;
my @case_lines = grep { /^CASE\t/ } split /\n/, `$bin --config ${\ $sw->config_path } --test-policy $dump 2>&1`;
ok(@case_lines >= 200, scalar(@case_lines) . ' decisions of decisions_test.lua as JSON');
my $py = <<'PY';
import json, sys
from jsonschema import Draft202012Validator
schemas = {}
for line in sys.stdin:
    _, hook, name, text = line.rstrip("\n").split("\t", 3)
    if hook not in schemas:
        with open(sys.argv[1] + "/" + hook + ".json") as f:
            s = json.load(f)
        Draft202012Validator.check_schema(s)
        schemas[hook] = Draft202012Validator(s)
    print(hook, name, 1 if schemas[hook].is_valid(json.loads(text)) else 0)
PY
my $in = "$dir/cases.tsv";
open my $cf, '>', $in or die "$in: $!";
print $cf "$_\n" for @case_lines;
close $cf;
my $verdicts = `/usr/bin/python3 -c '$py' '$committed_dir' < '$in' 2>&1`;
is($?, 0, 'the committed schemas are valid JSON Schema 2020-12 (apt-get install python3-jsonschema)')
    or diag $verdicts;
my (@wrong, $checked);
for (split /\n/, $verdicts) {
    my ($hook, $name, $valid) = /^(\w+) (\w+) ([01])$/ or next;
    $checked++;
    my $want = $name =~ /^ok_/ ? 1 : $prose{"$hook $name"} ? 1 : 0;
    push @wrong, "$hook $name: the schema " . ($valid ? 'accepts' : 'refuses') . ', the decoder '
        . ($name =~ /^ok_/ ? 'accepts' : 'refuses') if $valid != $want;
}
is($checked, scalar @case_lines, 'every decision validated');
ok(!@wrong, 'each schema accepts what its decoder accepts and refuses what it refuses')
    or diag join "\n", @wrong;

my $missing = "$dir/no/such/dir";
$out = `$bin --hook-schemas $missing 2>&1`;
ok($? >> 8 == 1 && $out =~ m{\Q$missing\E/\w+\.json: No such file or directory}, 'an unwritable directory: exit 1, the path and the reason')
    or diag $out;

done_testing;
