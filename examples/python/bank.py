#!/usr/bin/env python3
"""pg_eventstore from Python with psycopg 3: append, load, retry after a conflict (SQLSTATE 40001),
and follow a durable subscription. Usage: python3 bank.py "<libpq connection string>"."""

import sys
import threading
import uuid

import psycopg
from psycopg import errors
from psycopg.types.json import Jsonb

DSN = sys.argv[1] if len(sys.argv) > 1 else "dbname=pg_eventstore_clients host=/var/run/postgresql"


def balance(conn, account):
    """Folds the account's events; returns (balance, version)."""
    total, version = 0, 0
    for seq, event_type, payload in conn.execute(
            "SELECT sequence, event_type, payload FROM eventstore.load_stream(%s)", [account]):
        # jsonb comes back as Python objects, bigint as int
        total += {"Deposited": 1, "Withdrawn": -1}.get(event_type, 0) * payload.get("amount", 0)
        version = seq
    return total, version


def withdraw(dsn, account, amount, log):
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            total, version = balance(conn, account)
            if total < amount:
                return False
            try:
                # dicts must be wrapped: psycopg does not guess that a dict is jsonb
                conn.execute("SELECT eventstore.append_event(%s, 'Account', 'Withdrawn', %s, expected_version => %s)",
                             [account, Jsonb({"amount": amount}), version])
                return True
            except errors.SerializationFailure as e:  # 40001: someone else appended first
                log.append(e.diag.message_primary)


def main():
    account = f"account-{uuid.uuid4()}"
    subscription = f"py-balances-{uuid.uuid4()}"
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute("SELECT eventstore.create_subscription(%s, ARRAY['Account'])", [subscription])
        conn.execute("SELECT eventstore.append_event(%s, 'Account', 'Opened', %s, expected_version => 0)",
                     [account, Jsonb({"owner": "ann"})])
        # a batch: one jsonb array of events, all or nothing
        conn.execute("SELECT eventstore.append_events(%s, 'Account', %s, expected_version => 1)",
                     [account, Jsonb([{"type": "Deposited", "payload": {"amount": 100}}])])
        try:
            conn.execute("SELECT eventstore.append_event(%s, 'Account', 'Deposited', %s, expected_version => 1)",
                         [account, Jsonb({"amount": 1})])
            raise AssertionError("a stale expected version must fail")
        except errors.SerializationFailure as e:
            print("conflict as expected:", e.diag.message_primary)

        conflicts = []
        results = []
        tellers = [threading.Thread(target=lambda a=a: results.append(withdraw(DSN, account, a, conflicts)))
                   for a in (30, 50)]
        for t in tellers:
            t.start()
        for t in tellers:
            t.join()
        total, version = balance(conn, account)
        print(f"withdrawals {sorted(results)}, balance {total} at version {version}, {len(conflicts)} conflicts retried")
        assert total == 20 and version == 4

    # a subscriber: LISTEN for wake-ups, poll and ack on one session (the lease is the session's)
    with psycopg.connect(DSN, autocommit=True) as sub:
        sub.execute("LISTEN eventstore")
        seen = 0
        for _ in range(50):
            rows = sub.execute("SELECT global_position, stream_id FROM eventstore.poll(%s, 100)", [subscription]).fetchall()
            if rows:
                seen += sum(1 for _, s in rows if s == account)
                sub.execute("SELECT eventstore.ack(%s, %s)", [subscription, rows[-1][0]])
                continue
            if seen == 4:
                break
            for _ in sub.notifies(timeout=0.2, stop_after=1):
                pass
        print(f"subscriber saw {seen} events of the account")
        assert seen == 4
        sub.execute("SELECT eventstore.delete_subscription(%s)", [subscription])
    print("ok")


if __name__ == "__main__":
    main()
