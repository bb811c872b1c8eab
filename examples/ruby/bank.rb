#!/usr/bin/env ruby
# pg_eventstore from Ruby with ruby-pg: append, load, retry after a conflict (SQLSTATE 40001),
# and follow a durable subscription. Usage: ruby bank.rb "<libpq connection string>".
require 'pg'
require 'json'
require 'securerandom'

DSN = ARGV[0] || 'dbname=pg_eventstore_clients host=/var/run/postgresql'

def connect
  conn = PG.connect(DSN)
  # without a type map every value comes back as a String (jsonb as JSON text, bigint as "42")
  conn.type_map_for_results = PG::BasicTypeMapForResults.new(conn)
  conn
end

def balance(conn, account)
  total = 0
  version = 0
  conn.exec_params('SELECT sequence, event_type, payload FROM eventstore.load_stream($1)', [account]).each do |r|
    payload = r['payload'].is_a?(String) ? JSON.parse(r['payload']) : r['payload']
    total += ({ 'Deposited' => 1, 'Withdrawn' => -1 }[r['event_type']] || 0) * (payload['amount'] || 0)
    version = r['sequence']
  end
  [total, version]
end

def withdraw(account, amount, conflicts)
  conn = connect
  loop do
    total, version = balance(conn, account)
    return false if total < amount
    begin
      # parameters are sent as text: JSON goes as a string, Postgres reads it as jsonb
      conn.exec_params("SELECT eventstore.append_event($1, 'Account', 'Withdrawn', $2, expected_version => $3)",
                       [account, JSON.generate(amount: amount), version])
      return true
    rescue PG::TRSerializationFailure => e # 40001: someone else appended first
      conflicts << e.result.error_field(PG::Result::PG_DIAG_MESSAGE_PRIMARY)
    end
  end
ensure
  conn&.close
end

account = "account-#{SecureRandom.uuid}"
subscription = "ruby-balances-#{SecureRandom.uuid}"
conn = connect
conn.exec_params("SELECT eventstore.create_subscription($1, ARRAY['Account'])", [subscription])
conn.exec_params("SELECT eventstore.append_event($1, 'Account', 'Opened', $2, expected_version => 0)",
                 [account, JSON.generate(owner: 'ann')])
conn.exec_params("SELECT eventstore.append_events($1, 'Account', $2, expected_version => 1)",
                 [account, JSON.generate([{ type: 'Deposited', payload: { amount: 100 } }])])
begin
  conn.exec_params("SELECT eventstore.append_event($1, 'Account', 'Deposited', '{}', expected_version => 1)", [account])
  raise 'a stale expected version must fail'
rescue PG::TRSerializationFailure => e
  puts "conflict as expected: #{e.result.error_field(PG::Result::PG_DIAG_SQLSTATE)}"
end

conflicts = Queue.new
tellers = [30, 50].map { |a| Thread.new { withdraw(account, a, conflicts) } }
results = tellers.map(&:value)
total, version = balance(conn, account)
puts "withdrawals #{results.sort}, balance #{total} at version #{version}, #{conflicts.size} conflicts retried"
raise "balance #{total}, version #{version}" unless total == 20 && version == 4

# a subscriber: LISTEN for wake-ups, poll and ack on the same session (the lease is the session's)
conn.exec('LISTEN eventstore')
seen = 0
50.times do
  rows = conn.exec_params('SELECT global_position, stream_id FROM eventstore.poll($1, 100)', [subscription]).to_a
  if rows.any?
    seen += rows.count { |r| r['stream_id'] == account }
    conn.exec_params('SELECT eventstore.ack($1, $2)', [subscription, rows.last['global_position']])
    next
  end
  break if seen == 4
  conn.wait_for_notify(0.2)
end
puts "subscriber saw #{seen} events of the account"
raise "saw #{seen}" unless seen == 4
conn.exec_params('SELECT eventstore.delete_subscription($1)', [subscription])
conn.close
puts 'ok'
