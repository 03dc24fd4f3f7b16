# Dalli 5 (meta protocol only) against the server on 127.0.0.1:$MC_PORT.
#
# Run as: ruby -I ../shared/clients/dalli-5.0.6/lib tests/clients/ruby_dalli5_meta.rb
# (tests/clients/run.sh does, and skips this program with a message when
# ../shared/clients/dalli-5.0.6 is missing.)
#
# Environment: MC_PORT (required), MC_AUTH ("TOKEN PROJECT CACHE", sent first
# as `ms oauth` by Dalli's own set; empty = no auth), MC_AUTH_OTHER (a second
# cache: isolation check), MC_BAD_AUTH (secure mode: ';'-separated values that
# must be refused), MC_PREFIX (key prefix). Prints one line per check; exits 1
# if any failed.
# Ruby 3.1 (Debian's) does not autoload Set, which Dalli 5 uses.
require 'set'
require 'dalli'
require 'logger'

# Dalli 5's multi-get reads replies with String#byteindex (Ruby 3.2+). On
# Debian 12's Ruby 3.1 this shim stands in: a byte offset in a binary copy.
unless String.method_defined?(:byteindex)
  class String
    def byteindex(sub, offset = 0)
      b.index(sub.b, offset)
    end
  end
end

Dalli.logger = Logger.new(nil)

PORT = Integer(ENV.fetch('MC_PORT'))
AUTH = ENV.fetch('MC_AUTH', '')
AUTH_OTHER = ENV.fetch('MC_AUTH_OTHER', '')
BAD_AUTH = ENV.fetch('MC_BAD_AUTH', '')
# Unique per run, so a rerun against the same server starts clean.
P = "#{ENV.fetch('MC_PREFIX', 'dalli5-')}#{Process.pid}-"
$failures = 0

def check(name, got, want)
  if got == want
    puts "ok   dalli5: #{name}"
  else
    $failures += 1
    puts "FAIL dalli5: #{name}: expected #{want.inspect}, got #{got.inspect}"
  end
end

# raw: true sends values untouched (Dalli marshals by default), which the
# handshake needs: the server reads `TOKEN PROJECT CACHE` as the value.
def client(auth)
  dc = Dalli::Client.new("127.0.0.1:#{PORT}", raw: true, socket_timeout: 5, socket_max_failures: 0)
  check("auth: set oauth '#{auth}'", dc.set('oauth', auth).is_a?(Integer), true) unless auth.empty?
  dc
end

dc = client(AUTH)

check('set returns a cas', dc.set(P + 'k1', 'v1').is_a?(Integer), true)
check('get', dc.get(P + 'k1'), 'v1')
check('get missing', dc.get(P + 'missing'), nil)
check('add new', dc.add(P + 'add', 'a').is_a?(Integer), true)
check('add existing', dc.add(P + 'add', 'b'), false)
check('replace existing', dc.replace(P + 'add', 'c').is_a?(Integer), true)
check('replace missing', dc.replace(P + 'norep', 'c'), false)
check('append', dc.append(P + 'add', 'z'), true)
check('prepend', dc.prepend(P + 'add', 'y'), true)
check('get after append/prepend', dc.get(P + 'add'), 'ycz')
check('append missing', dc.append(P + 'noapp', 'z'), false)

value, cas = dc.get_cas(P + 'k1')
check('get_cas value', value, 'v1')
check('get_cas token', cas.is_a?(Integer) && cas.positive?, true)
check('set_cas current', dc.set_cas(P + 'k1', 'v2', cas).is_a?(Integer), true)
check('set_cas stale', dc.set_cas(P + 'k1', 'v3', cas), false)
check('cas block', dc.cas(P + 'k1') { |v| v + '!' }.is_a?(Integer), true)
check('get after cas', dc.get(P + 'k1'), 'v2!')
check('cas missing', dc.cas(P + 'nocas') { |v| v }, nil)

check('delete', dc.delete(P + 'k1'), true)
check('delete missing', dc.delete(P + 'k1'), false)
check('get after delete', dc.get(P + 'k1'), nil)

check('incr missing with default', dc.incr(P + 'ctr', 1, 0, 10), 10)
check('incr', dc.incr(P + 'ctr', 5), 15)
check('decr', dc.decr(P + 'ctr', 3), 12)
check('decr floors at 0', dc.decr(P + 'ctr', 100), 0)
check('incr missing without default', dc.incr(P + 'noctr', 1), nil)
# memcached rewrites a shrinking number in place, padded with spaces.
check('get counter', dc.get(P + 'ctr'), '0 ')

check('set with ttl', dc.set(P + 'ttl', 'x', 100).is_a?(Integer), true)
check('touch', dc.touch(P + 'ttl', 200), true)
check('touch missing', dc.touch(P + 'nottl', 200), nil)
check('gat', dc.gat(P + 'ttl', 300), 'x')
check('gat missing', dc.gat(P + 'nottl', 300), nil)
meta = dc.get_with_metadata(P + 'ttl', return_hit_status: true, return_last_access: true)
check('metadata: value', meta[:value], 'x')
check('metadata: hit before', meta[:hit_before], true)
check('metadata: last access', meta[:last_access].between?(0, 5), true)

# Many keys: with several cores they live on different shards.
many = (0...200).to_h { |i| ["#{P}many-#{i}", "value-#{i}"] }
dc.set_multi(many)
got = dc.get_multi(*many.keys, P + 'missing')
check('set_multi/get_multi over shards', got, many)
yielded = {}
dc.get_multi(*many.keys.first(3)) { |k, v| yielded[k] = v }
check('get_multi with a block', yielded, many.first(3).to_h)
dc.delete_multi(many.keys.first(100))
got = dc.get_multi(*many.keys)
check('delete_multi', got.size, 100)
check('delete_multi left the rest', got[many.keys.last], many.values.last)

check('fetch computes on a miss', dc.fetch(P + 'fetch') { 'computed' }, 'computed')
check('fetch reads on a hit', dc.fetch(P + 'fetch') { 'again' }, 'computed')

stats = dc.stats
server_stats = stats.values.first
check('stats has curr_items', server_stats.key?('curr_items'), true)
check('stats has cmd_get', server_stats['cmd_get'].to_i.positive?, true)
check('version', dc.version.values.first.start_with?('1.6.18'), true)

# A second cache sees its own values, never the first's.
unless AUTH_OTHER.empty?
  other = client(AUTH_OTHER)
  check('isolation: other cache misses', other.get(P + 'fetch'), nil)
  other.set(P + 'fetch', 'other')
  check('isolation: other cache has its own', other.get(P + 'fetch'), 'other')
  check('isolation: first cache unchanged', dc.get(P + 'fetch'), 'computed')
  other.close
end

BAD_AUTH.split(';').each do |bad|
  refused = Dalli::Client.new("127.0.0.1:#{PORT}", raw: true, socket_timeout: 5, socket_max_failures: 0)
  begin
    refused.set('oauth', bad)
    check("bad auth '#{bad}' refused", 'accepted', 'refused')
  rescue Dalli::DalliError => e
    # Dalli keeps only a reply's first word; the exact line is checked by
    # tests/meta_tenancy.rs.
    check("bad auth '#{bad}' refused", e.message, 'Response error: CLIENT_ERROR')
  end
  begin
    refused.get(P + 'fetch')
    check("unauthenticated get after '#{bad}'", 'served', 'refused')
  rescue Dalli::DalliError => e
    check("unauthenticated get after '#{bad}'", e.message, 'Response error: CLIENT_ERROR')
  end
  refused.close
end

check('flush', dc.flush.all? { |r| r }, true)
check('get after flush', dc.get(P + 'fetch'), nil)
dc.close

puts($failures.zero? ? 'ok   dalli5: all checks passed' : "FAIL dalli5: #{$failures} checks failed")
exit($failures.zero? ? 0 : 1)
