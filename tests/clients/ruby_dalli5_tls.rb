# Dalli 5 (meta protocol) over TLS (`ssl_context`) against 127.0.0.1:$MC_TLS_PORT.
#
#   ruby -I ../shared/clients/dalli-5.0.6/lib tests/clients/ruby_dalli5_tls.rb
#
# Environment: MC_TLS_PORT, MC_CA (the CA of the server's certificate),
# MC_AUTH ("TOKEN PROJECT CACHE", sent first with a raw `set oauth` over the
# same TLS settings; empty = none), MC_PREFIX. Dalli 5 speaks only the meta
# protocol: against a server that answers ERROR to `mn` this prints SKIP and
# exits 0. Prints one line per check; exits 1 if any failed.
require "openssl"
require "socket"
require "dalli"

PORT = Integer(ENV.fetch("MC_TLS_PORT"))
CA = ENV.fetch("MC_CA")
AUTH = ENV.fetch("MC_AUTH", "")
P = ENV.fetch("MC_PREFIX", "dalli5-tls-")
$failures = 0

def check(name, got, want)
  if got == want
    puts "ok   dalli5 tls: #{name}"
  else
    $failures += 1
    puts "FAIL dalli5 tls: #{name}: expected #{want.inspect}, got #{got.inspect}"
  end
end

def context
  ctx = OpenSSL::SSL::SSLContext.new
  ctx.ca_file = CA
  ctx.verify_mode = OpenSSL::SSL::VERIFY_PEER
  ctx.verify_hostname = true
  ctx
end

# One raw request over TLS; returns the reply line.
def raw(request)
  tcp = TCPSocket.new("localhost", PORT)
  ssl = OpenSSL::SSL::SSLSocket.new(tcp, context)
  ssl.hostname = "localhost"
  ssl.sync_close = true
  ssl.connect
  ssl.write(request)
  line = ssl.gets
  ssl.close
  line
end

if raw("mn\r\n") != "MN\r\n"
  puts "SKIP dalli5 tls: the server does not speak the meta protocol (`mn` was not answered MN); Dalli 5 needs it"
  exit 0
end

# Dalli has no hook for `set oauth`: authenticate (on a tenancy server)
# through Dalli itself, with a raw-value set of the pseudo-key, on the one
# socket Dalli keeps per server.
dc = Dalli::Client.new("localhost:#{PORT}", ssl_context: context, socket_timeout: 5)
check("auth: set oauth", dc.set("oauth", AUTH, 0, raw: true).nil?, false) unless AUTH.empty?
check("set", dc.set(P + "k1", "v1", 0, raw: true).nil?, false)
check("get", dc.get(P + "k1"), "v1")
check("get missing", dc.get(P + "missing"), nil)
big = "x" * 300_000
check("set 300 KB", dc.set(P + "big", big, 0, raw: true).nil?, false)
check("get 300 KB", dc.get(P + "big"), big)
check("get_multi", dc.get_multi(P + "k1", P + "missing"), { P + "k1" => "v1" })
dc.set(P + "ctr", "1", 0, raw: true)
check("incr", dc.incr(P + "ctr", 41), 42)
check("delete", dc.delete(P + "k1"), true)
check("get deleted", dc.get(P + "k1"), nil)
dc.close
exit($failures.zero? ? 0 : 1)
