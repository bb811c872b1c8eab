// pg_eventstore from Node with node-postgres: append, load, retry after a conflict (SQLSTATE
// 40001), and follow a durable subscription. Usage: node bank.js "<connection string>".
'use strict';
const { Client } = require('pg');
const { randomUUID } = require('crypto');
const assert = require('assert');

// Unlike libpq, node-postgres takes the user name from PGUSER or $USER, not from the OS: name it.
const connection = process.argv[2] || `postgresql://${process.env.PGUSER || 'postgres'}@/pg_eventstore_clients?host=/var/run/postgresql`;

async function balance(db, account) {
  // bigint columns (sequence, global_position) arrive as strings: node-postgres will not lose
  // precision silently. Numbers under 2^53 are safe to convert.
  const { rows } = await db.query('SELECT sequence, event_type, payload FROM eventstore.load_stream($1)', [account]);
  let total = 0;
  for (const r of rows) total += ({ Deposited: 1, Withdrawn: -1 }[r.event_type] || 0) * (r.payload.amount || 0);
  return { total, version: rows.length ? Number(rows[rows.length - 1].sequence) : 0 };
}

async function withdraw(account, amount, conflicts) {
  const db = new Client({ connectionString: connection });
  await db.connect();
  try {
    for (;;) {
      const { total, version } = await balance(db, account);
      if (total < amount) return false;
      try {
        await db.query("SELECT eventstore.append_event($1, 'Account', 'Withdrawn', $2, expected_version => $3)",
          [account, { amount }, version]);
        return true;
      } catch (e) {
        if (e.code !== '40001') throw e; // someone else appended first: reload and retry
        conflicts.push(e.message);
      }
    }
  } finally {
    await db.end();
  }
}

async function main() {
  const account = `account-${randomUUID()}`;
  const subscription = `node-balances-${randomUUID()}`;
  const db = new Client({ connectionString: connection });
  await db.connect();
  await db.query("SELECT eventstore.create_subscription($1, ARRAY['Account'])", [subscription]);
  // a plain object parameter is sent as JSON text, which Postgres takes as jsonb
  await db.query("SELECT eventstore.append_event($1, 'Account', 'Opened', $2, expected_version => 0)",
    [account, { owner: 'ann' }]);
  // but a JavaScript array becomes a Postgres array literal: stringify a batch yourself
  await db.query("SELECT eventstore.append_events($1, 'Account', $2::jsonb, expected_version => 1)",
    [account, JSON.stringify([{ type: 'Deposited', payload: { amount: 100 } }])]);
  await assert.rejects(
    db.query("SELECT eventstore.append_event($1, 'Account', 'Deposited', '{}', expected_version => 1)", [account]),
    (e) => e.code === '40001');

  const conflicts = [];
  const results = await Promise.all([withdraw(account, 30, conflicts), withdraw(account, 50, conflicts)]);
  const { total, version } = await balance(db, account);
  console.log(`withdrawals ${results}, balance ${total} at version ${version}, ${conflicts.length} conflicts retried`);
  assert.strictEqual(total, 20);
  assert.strictEqual(version, 4);

  // a subscriber: LISTEN for wake-ups, poll and ack on the same connection (the lease is the session's)
  await db.query('LISTEN eventstore');
  let wake = null;
  db.on('notification', () => { if (wake) wake(); });
  let seen = 0;
  for (let i = 0; i < 50 && seen < 4; i++) {
    const { rows } = await db.query('SELECT global_position, stream_id FROM eventstore.poll($1, 100)', [subscription]);
    if (rows.length) {
      seen += rows.filter((r) => r.stream_id === account).length;
      await db.query('SELECT eventstore.ack($1, $2)', [subscription, rows[rows.length - 1].global_position]);
      continue;
    }
    await new Promise((resolve) => { wake = resolve; setTimeout(resolve, 200); });
  }
  console.log(`subscriber saw ${seen} events of the account`);
  assert.strictEqual(seen, 4);
  await db.query('SELECT eventstore.delete_subscription($1)', [subscription]);
  await db.end();
  console.log('ok');
}

main().catch((e) => { console.error(e); process.exit(1); });
