#!/usr/bin/perl
# Perl Cache::Memcached::Fast against the server on 127.0.0.1:$MC_PORT.
#
# Environment: MC_PORT (required), MC_AUTH ("TOKEN PROJECT CACHE", sent first
# as `set oauth`; empty = no auth), MC_AUTH_OTHER (second cache: isolation
# check), MC_BAD_AUTH (set in secure mode only), MC_PREFIX (key prefix).
# Prints one line per check; exits 1 if any failed.
use strict;
use warnings;
use Cache::Memcached::Fast;
use Time::HiRes qw(sleep time);

my $port       = $ENV{MC_PORT} or die "MC_PORT not set\n";
my $auth       = $ENV{MC_AUTH} // '';
my $auth_other = $ENV{MC_AUTH_OTHER} // '';
my $p          = $ENV{MC_PREFIX} // 'perl-';
my $failures   = 0;

sub show { defined $_[0] ? "'$_[0]'" : 'undef' }

sub check {
    my ($name, $got, $want) = @_;
    my $same = (defined $got && defined $want) ? $got eq $want : !defined $got && !defined $want;
    if ($same) {
        print "ok   perl Cache::Memcached::Fast: $name\n";
    } else {
        $failures++;
        print "FAIL perl Cache::Memcached::Fast: $name: expected ", show($want), ", got ", show($got), "\n";
    }
}

sub truth { $_[0] ? 1 : 0 }

sub client {
    my ($creds) = @_;
    my $c = Cache::Memcached::Fast->new({
        servers         => ["127.0.0.1:$port"],
        connect_timeout => 5,
        io_timeout      => 5,
        close_on_error  => 0,
    });
    check("auth: set oauth '$creds'", truth($c->set('oauth', $creds)), 1) if $creds ne '';
    return $c;
}

my $mc = client($auth);

check('expiry: set exptime 2', truth($mc->set("${p}exp", 'short-lived', 2)), 1);
check('expiry: get at once', $mc->get("${p}exp"), 'short-lived');
my $set_at = time;

check('set', truth($mc->set("${p}k1", 'v1')), 1);
check('get', $mc->get("${p}k1"), 'v1');
check('get missing', $mc->get("${p}missing"), undef);
check('set k2', truth($mc->set("${p}k2", 'v2')), 1);
my $multi = $mc->get_multi("${p}k1", "${p}k2", "${p}missing");
check('get_multi', join(',', map { "$_=$multi->{$_}" } sort keys %$multi), "${p}k1=v1,${p}k2=v2");

check('set counter', truth($mc->set("${p}ctr", '10')), 1);
check('incr', $mc->incr("${p}ctr"), 11);
check('incr 5', $mc->incr("${p}ctr", 5), 16);
# A new value of 0 comes back as '0E0', Perl's "zero but true".
check('decr 20 floors at 0', $mc->decr("${p}ctr", 20), '0E0');
check('incr missing is false', truth($mc->incr("${p}nocounter")), 0);

check('cas: set', truth($mc->set("${p}cas", 'one')), 1);
my $g = $mc->gets("${p}cas");
check('cas: gets value', $g ? $g->[1] : undef, 'one');
check('cas: cas with current token', truth($g && $mc->cas("${p}cas", $g->[0], 'two')), 1);
check('cas: cas with stale token', truth($g && $mc->cas("${p}cas", $g->[0], 'three')), 0);
check('cas: get', $mc->get("${p}cas"), 'two');

check('delete', truth($mc->delete("${p}k1")), 1);
check('delete missing', truth($mc->delete("${p}k1")), 0);
check('get after delete', $mc->get("${p}k1"), undef);

check('append', truth($mc->append("${p}k2", '+')), 1);
check('prepend', truth($mc->prepend("${p}k2", '-')), 1);
check('get after append/prepend', $mc->get("${p}k2"), '-v2+');

if ($auth_other ne '') {
    my $other = client($auth_other);
    check('isolation: set in cache A', truth($mc->set("${p}iso", 'from-A')), 1);
    check('isolation: set in cache B', truth($other->set("${p}iso", 'from-B')), 1);
    check('isolation: get in cache A', $mc->get("${p}iso"), 'from-A');
    check('isolation: get in cache B', $other->get("${p}iso"), 'from-B');
    $other->disconnect_all;
}

if (($ENV{MC_BAD_AUTH} // '') ne '') {
    # Secure mode: with its default close_on_error => 1, Cache::Memcached::Fast
    # drops the connection on an error reply and reconnects for the next
    # command without `set oauth`, so that command is refused.
    my $d = Cache::Memcached::Fast->new({
        servers  => ["127.0.0.1:$port"],
        max_size => 4 * 1024 * 1024,
    });
    check('default client: auth', truth($d->set('oauth', $auth)), 1);
    check('default client: set', truth($d->set("${p}d", 'x')), 1);
    check('default client: 2 MiB set refused', truth($d->set("${p}huge", 'x' x (2 * 1024 * 1024))), 0);
    check('default client: reconnected unauthenticated, get finds nothing', $d->get("${p}d"), undef);
    $d->disconnect_all;
}

my $left = 3 - (time - $set_at);
sleep $left if $left > 0;
check('expiry: get after 3 s', $mc->get("${p}exp"), undef);
$mc->disconnect_all;

exit($failures ? 1 : 0);
