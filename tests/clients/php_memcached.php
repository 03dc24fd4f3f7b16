<?php
// PHP Memcached extension (libmemcached, ASCII protocol) against the server on
// 127.0.0.1:$MC_PORT.
//
// Environment: MC_PORT (required), MC_AUTH ("TOKEN PROJECT CACHE", sent first
// as `set oauth`; empty = no auth), MC_AUTH_OTHER (second cache: isolation
// check), MC_BINARY (refused: ferrocache, served: a reference memcached),
// MC_PREFIX (key prefix). Prints one line per check; exits 1 if any failed.

$port = (int) getenv('MC_PORT');
$auth = (string) getenv('MC_AUTH');
$auth_other = (string) getenv('MC_AUTH_OTHER');
$p = getenv('MC_PREFIX') !== false ? getenv('MC_PREFIX') : 'php-';
$failures = 0;

function check($name, $got, $want) {
    global $failures;
    if ($got === $want) {
        echo "ok   php-memcached: $name\n";
    } else {
        $failures++;
        echo "FAIL php-memcached: $name: expected ", var_export($want, true), ", got ", var_export($got, true), "\n";
    }
}

function client($creds) {
    global $port;
    $c = new Memcached();
    $c->setOptions([
        Memcached::OPT_BINARY_PROTOCOL => false,
        Memcached::OPT_COMPRESSION => false,
        Memcached::OPT_CONNECT_TIMEOUT => 5000,
        Memcached::OPT_RECV_TIMEOUT => 5000000,
        Memcached::OPT_SEND_TIMEOUT => 5000000,
    ]);
    $c->addServer('127.0.0.1', $port);
    if ($creds !== '') {
        check("auth: set oauth '$creds'", $c->set('oauth', $creds), true);
    }
    return $c;
}

$mc = client($auth);

check('expiry: set exptime 2', $mc->set("{$p}exp", 'short-lived', 2), true);
check('expiry: get at once', $mc->get("{$p}exp"), 'short-lived');
$set_at = microtime(true);

check('set', $mc->set("{$p}k1", 'v1'), true);
check('get', $mc->get("{$p}k1"), 'v1');
check('get missing', $mc->get("{$p}missing"), false);
check('get missing: result code NOTFOUND', $mc->getResultCode(), Memcached::RES_NOTFOUND);
check('set int (flags)', $mc->set("{$p}n", 42), true);
check('get int (flags)', $mc->get("{$p}n"), 42);
check('set k2', $mc->set("{$p}k2", 'v2'), true);
$multi = $mc->getMulti(["{$p}k1", "{$p}k2", "{$p}missing"]);
if (is_array($multi)) {
    ksort($multi);
}
check('getMulti', $multi, ["{$p}k1" => 'v1', "{$p}k2" => 'v2']);

check('set counter', $mc->set("{$p}ctr", '10'), true);
check('increment', $mc->increment("{$p}ctr"), 11);
check('increment 5', $mc->increment("{$p}ctr", 5), 16);
check('decrement 20 floors at 0', $mc->decrement("{$p}ctr", 20), 0);
check('increment missing', $mc->increment("{$p}nocounter"), false);

check('cas: set', $mc->set("{$p}cas", 'one'), true);
$g = $mc->get("{$p}cas", null, Memcached::GET_EXTENDED);
check('cas: get extended value', is_array($g) ? $g['value'] : $g, 'one');
$token = is_array($g) ? $g['cas'] : 0;
check('cas: cas with current token', $mc->cas($token, "{$p}cas", 'two'), true);
check('cas: cas with stale token', $mc->cas($token, "{$p}cas", 'three'), false);
check('cas: stale result code DATA_EXISTS', $mc->getResultCode(), Memcached::RES_DATA_EXISTS);
check('cas: get', $mc->get("{$p}cas"), 'two');

check('delete', $mc->delete("{$p}k1"), true);
check('delete missing', $mc->delete("{$p}k1"), false);
check('get after delete', $mc->get("{$p}k1"), false);

if ($auth_other !== '') {
    $other = client($auth_other);
    check('isolation: set in cache A', $mc->set("{$p}iso", 'from-A'), true);
    check('isolation: set in cache B', $other->set("{$p}iso", 'from-B'), true);
    check('isolation: get in cache A', $mc->get("{$p}iso"), 'from-A');
    check('isolation: get in cache B', $other->get("{$p}iso"), 'from-B');
    $other->quit();
}

// The same extension configured for the binary protocol (MC_BINARY as for Dalli).
$binary = new Memcached();
$binary->setOption(Memcached::OPT_BINARY_PROTOCOL, true);
$binary->addServer('127.0.0.1', $port);
if (getenv('MC_BINARY') === 'refused') {
    // libmemcached reports the 0x0081 refusal as a failed read on writes and
    // as a plain miss on reads.
    check('binary protocol: set fails', $binary->set("{$p}bin", 'x'), false);
    check('binary protocol: set result UNKNOWN_READ_FAILURE', $binary->getResultCode(), Memcached::RES_UNKNOWN_READ_FAILURE);
    check('binary protocol: get is a miss', $binary->get("{$p}bin"), false);
} elseif (getenv('MC_BINARY') === 'served') {
    check('binary protocol: set', $binary->set("{$p}bin", 'x'), true);
    check('binary protocol: get', $binary->get("{$p}bin"), 'x');
}
$binary->quit();

$left = 3.0 - (microtime(true) - $set_at);
if ($left > 0) {
    usleep((int) ($left * 1e6));
}
check('expiry: get after 3 s', $mc->get("{$p}exp"), false);
$mc->quit();

exit($failures ? 1 : 0);
