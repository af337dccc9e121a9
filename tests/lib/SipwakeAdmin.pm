package SipwakeAdmin;

# HTTP client for the web admin's API in tests: keeps the session cookie and CSRF token
# after a login, or sends an API token; remembers every answer so a test can check that no
# secret was ever returned.

use strict;
use warnings;
use HTTP::Tiny;
use JSON::PP;
use IO::Socket::INET;

my $json = JSON::PP->new->canonical;

# new(port => N) or new(base => "http://...")
sub new {
    my ($class, %o) = @_;
    my $self = bless { base => $o{base} || "http://127.0.0.1:$o{port}", token => $o{token},
                       http => HTTP::Tiny->new(timeout => 15, max_redirect => 0), seen => '' }, $class;
    return $self;
}

sub base { $_[0]{base} }
sub csrf { $_[0]{csrf} }
sub cookie { $_[0]{cookie} }
sub seen { $_[0]{seen} }
sub set_token { $_[0]{token} = $_[1] }

# req(METHOD, PATH, BODY, %opt): BODY a reference (sent as JSON) or a string. Options:
# csrf => 0 (leave the token out), csrf_value, cookie => 0, token, headers => {...}.
# Returns { status, content, json (decoded when it is JSON), headers }.
sub req {
    my ($self, $method, $path, $body, %o) = @_;
    my %h = %{ $o{headers} || {} };
    my $token = exists $o{token} ? $o{token} : $self->{token};
    $h{Authorization} = "Bearer $token" if defined $token;
    $h{Cookie} = "sipwake_session=$self->{cookie}" if $self->{cookie} && ($o{cookie} // 1);
    if ($self->{csrf} && ($o{csrf} // 1) && $method ne 'GET') {
        $h{'X-CSRF-Token'} = $o{csrf_value} // $self->{csrf};
    }
    my %args = (headers => \%h);
    if (defined $body) {
        $args{content} = ref $body ? $json->encode($body) : $body;
        $h{'Content-Type'} ||= 'application/json';
    }
    my $r = $self->{http}->request($method, $self->{base} . $path, \%args);
    my $res = { status => $r->{status}, content => $r->{content} // '', headers => $r->{headers} };
    $res->{json} = eval { $json->decode($res->{content}) } if ($r->{headers}{'content-type'} // '') =~ /json/;
    $self->{seen} .= $res->{content} . "\n";
    return $res;
}

sub get { my ($s, $p, %o) = @_; $s->req('GET', $p, undef, %o) }
sub post { my ($s, $p, $b, %o) = @_; $s->req('POST', $p, $b // {}, %o) }
sub put { my ($s, $p, $b, %o) = @_; $s->req('PUT', $p, $b // {}, %o) }
sub patch { my ($s, $p, $b, %o) = @_; $s->req('PATCH', $p, $b // {}, %o) }
sub del { my ($s, $p, %o) = @_; $s->req('DELETE', $p, undef, %o) }

# Log in; keeps the cookie and the CSRF token. Returns the response.
sub login {
    my ($self, $user, $password) = @_;
    my $r = $self->post('/api/login', { user => $user, password => $password }, token => undef);
    my $sc = $r->{headers}{'set-cookie'} // '';
    $sc = $sc->[0] if ref $sc;
    if ($r->{status} == 200 && $sc =~ /sipwake_session=([^;]+)/) {
        $self->{cookie} = $1;
        $self->{csrf} = $r->{json}{csrf};
        $self->{set_cookie} = $sc;
    }
    return $r;
}

sub set_cookie_header { $_[0]{set_cookie} }

# A JSON-RPC call on /mi; returns the decoded answer.
sub mi {
    my ($self, $method, $params, %o) = @_;
    my $req = { jsonrpc => '2.0', id => $o{id} // '1', method => $method };
    $req->{params} = $params if defined $params;
    my $r = $self->post('/mi', $req, %o);
    return $r->{json} // { http_status => $r->{status}, raw => $r->{content} };
}

# A raw HTTP request line (for paths a client library would clean up). Returns the status.
sub raw_status {
    my ($self, $line) = @_;
    my ($host, $port) = $self->{base} =~ m{//([^:/]+):(\d+)};
    my $s = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port, Timeout => 5) or return 0;
    print $s "$line HTTP/1.1\r\nHost: $host:$port\r\nConnection: close\r\n\r\n";
    my $first = <$s> // '';
    close $s;
    return $first =~ m{^HTTP/1\.\d (\d+)} ? $1 : 0;
}

1;
