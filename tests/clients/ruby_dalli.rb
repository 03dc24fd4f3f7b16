# Ruby Dalli 3.0.6 against the server on 127.0.0.1:$MC_PORT. Dalli speaks only
# the binary protocol, which ferrocache (like IronCache) refuses.
#
# Environment: MC_PORT (required), MC_PREFIX (key prefix), MC_BINARY:
#   refused  (ferrocache) the refusal is clear: Dalli raises Dalli::DalliError
#            "Response error 129: Unknown command" (status 0x0081) instead of
#            hanging, retrying or returning nil, and a raw binary request gets
#            one response (magic 0x81, status 0x0081, a message naming the text
#            protocol) and then the connection is closed;
#   served   (a reference memcached) Dalli works: set, get, multi-get, incr,
#            cas, delete.
# Prints one line per check; exits 1 if any failed.
require 'dalli'
require 'logger'
require 'socket'
require 'stringio'

PORT = Integer(ENV.fetch('MC_PORT'))
PREFIX = ENV.fetch('MC_PREFIX', 'dalli-')
MODE = ENV.fetch('MC_BINARY', 'refused')
$failures = 0

def check(name, got, want)
  if got == want
    puts "ok   ruby dalli #{Dalli::VERSION}: #{name}"
  else
    $failures += 1
    puts "FAIL ruby dalli #{Dalli::VERSION}: #{name}: expected #{want.inspect}, got #{got.inspect}"
  end
end

# Dalli's own log, so the report can show what it says about the server.
log = StringIO.new
Dalli.logger = Logger.new(log)
Dalli.logger.level = Logger::DEBUG

def new_client
  Dalli::Client.new("127.0.0.1:#{PORT}", socket_timeout: 5, socket_max_failures: 1,
                                         down_retry_delay: 0, socket_failure_delay: false)
end

# Runs the block; returns [:ok, value] or [:raised, class name, message].
def outcome
  [:ok, yield]
rescue StandardError => e
  [:raised, e.class.name, e.message]
end

case MODE
when 'refused'
  dc = new_client
  started = Time.now
  got = outcome { dc.set("#{PREFIX}k", 'v') }
  elapsed = Time.now - started
  puts "     dalli set raised: #{got[1..].inspect}" if got[0] == :raised
  check('set is refused with Dalli::DalliError', got[0..1], [:raised, 'Dalli::DalliError'])
  check('error names status 129 (0x81) Unknown command', got[2], 'Response error 129: Unknown command')
  check('refusal is prompt (< 2 s)', elapsed < 2, true)
  got = outcome { new_client.get("#{PREFIX}k") }
  check('get is refused with Dalli::DalliError', got[0..1], [:raised, 'Dalli::DalliError'])
  dc.close

  # The same request on a raw socket: Dalli's connect sends `version`
  # (opcode 0x0b): 24-byte header, no body.
  sock = TCPSocket.new('127.0.0.1', PORT)
  sock.write([0x80, 0x0b, 0, 0, 0, 0, 0, 0xdeadbeef, 0].pack('CCnCCnNNQ>'))
  header = sock.read(24)
  check('raw: a 24-byte response header', header&.bytesize, 24)
  if header&.bytesize == 24
    magic, opcode, _keylen, _extlen, _dtype, status, bodylen, opaque = header.unpack('CCnCCnNN')
    body = bodylen.positive? ? sock.read(bodylen).to_s : ''
    puts "     raw response: magic=0x#{magic.to_s(16)} opcode=0x#{opcode.to_s(16)} " \
         "status=0x#{status.to_s(16)} body=#{body.inspect}"
    check('raw: magic 0x81', magic, 0x81)
    check('raw: status 0x0081 unknown command', status, 0x81)
    check('raw: opcode echoed', opcode, 0x0b)
    check('raw: opaque echoed', opaque, 0xdeadbeef)
    check('raw: body says to use the text protocol', body.match?(/text protocol/i), true)
  end
  rest = begin
    sock.read
  rescue Errno::ECONNRESET => e
    e.class.name
  end
  check('raw: then the connection is closed', rest, '')
  sock.close
when 'served'
  dc = new_client
  check('set', dc.set("#{PREFIX}k1", 'v1').is_a?(Integer), true)
  check('get', dc.get("#{PREFIX}k1"), 'v1')
  check('set k2', dc.set("#{PREFIX}k2", 'v2').is_a?(Integer), true)
  check('get_multi', dc.get_multi("#{PREFIX}k1", "#{PREFIX}k2", "#{PREFIX}missing"),
        { "#{PREFIX}k1" => 'v1', "#{PREFIX}k2" => 'v2' })
  check('set counter', dc.set("#{PREFIX}ctr", '10', 0, raw: true).is_a?(Integer), true)
  check('incr', dc.incr("#{PREFIX}ctr"), 11)
  check('cas', dc.cas("#{PREFIX}k1") { |v| v + '!' }.is_a?(Integer), true)
  check('get after cas', dc.get("#{PREFIX}k1"), 'v1!')
  check('delete', dc.delete("#{PREFIX}k1"), true)
  check('get after delete', dc.get("#{PREFIX}k1"), nil)
  dc.close
else
  abort "MC_BINARY must be refused or served, not #{MODE}"
end

if $failures.positive?
  puts '     dalli log:'
  log.string.each_line { |l| puts "       #{l}" }
end
exit($failures.positive? ? 1 : 0)
