#!/usr/bin/env python3
"""Instructions per call: the append workloads of bench/run.py counted by callgrind in a single-user
backend, so that a change to the append path can be measured without the run-to-run noise of pgbench
on this 2-core machine (±15% between runs; an instruction count repeats to within a fraction of a
percent). Run through bench/instructions.sh, which installs the extension and valgrind first.

Each variant runs twice from the same freshly set-up database, with n1 and n2 calls, each call its own
transaction (`EXECUTE` of a statement prepared once, as pgbench -M prepared does); the difference
divided by n2 - n1 is the cost of one call, commit included, with start-up and the first call's
catalog lookups taken out. Appends go round-robin to 8 streams, like pgbench's 8 clients.

What this does not see: waiting (WAL flush, locks), contention between sessions, the notifier (a
single-user backend has no background workers, so the store runs with pg_eventstore.notify = off),
and the client's side of the protocol. It is a measure of CPU work, not of throughput.
"""

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile

from run import META, PAYLOAD, batch_json, floor_update_insert, machine

BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")
# results of another major than the default 15 say so in their name
MAJOR_SUFFIX = "" if os.environ.get("PG_MAJOR", "15") == "15" else "-pg" + os.environ["PG_MAJOR"]
HERE = os.path.dirname(os.path.abspath(__file__))
STREAM = "{p}-' || ($1 % 8) || '"
SEQ = "$1 / 8 + 1"

SINGLE = [
    ("plain INSERT (postgres-es table)",
     f"INSERT INTO baseline.events VALUES ('Bench', '{STREAM.format(p='ins')}', {SEQ}, 'Tick', '1', '{PAYLOAD}', '{META}')"),
    ("plain INSERT (table of the store's shape)",
     "INSERT INTO baseline.store_shaped_events (stream_id, sequence, event_id, stream_type, event_type, payload, "
     f"metadata, global_position, horizon_xid) SELECT '{STREAM.format(p='sins')}', {SEQ}, lpad(to_hex(p), 32, '0')::uuid, "
     f"'Bench', 'Tick', '{PAYLOAD}', '{META}', p, pg_current_xact_id() FROM nextval('baseline.store_shaped_position') AS p"),
    # the stream's version bumped as append_event bumps it (the 8 stream rows: SINGLE_SETUP)
    ("plain UPDATE and INSERT (stream version and event row, tables of the store's shape)",
     floor_update_insert(f"'{STREAM.format(p='sxs')}'", "baseline.store_shaped_events")),
    ("PL/pgSQL append", f"SELECT baseline.append_event('{STREAM.format(p='plp')}', 'Bench', 'Tick', '{PAYLOAD}', '{META}')"),
    ("append_event", f"SELECT eventstore.append_event('{STREAM.format(p='es')}', 'Bench', 'Tick', '{PAYLOAD}', '{META}')"),
]
SINGLE_SETUP = ("INSERT INTO baseline.store_shaped_streams (stream_id, stream_type, version) "
                "SELECT 'sxs-' || k, 'Bench', 0 FROM generate_series(0, 7) AS k;\n\n")
# The first event of a new stream: every call appends to a stream of its own.
NEW = "{p}-' || $1 || '"
NEW_STREAM = [
    ("plain INSERT (postgres-es table)",
     f"INSERT INTO baseline.events VALUES ('Bench', '{NEW.format(p='nins')}', 1, 'Tick', '1', '{PAYLOAD}', '{META}')"),
    ("plain INSERTs (stream and event rows, tables of the store's shape)",
     f"WITH s AS (INSERT INTO baseline.store_shaped_streams (stream_id, stream_type, version) VALUES ('{NEW.format(p='nsins')}', "
     "'Bench', 1)) INSERT INTO baseline.store_shaped_events (stream_id, sequence, event_id, stream_type, event_type, payload, "
     f"metadata, global_position, horizon_xid) SELECT '{NEW.format(p='nsins')}', 1, lpad(to_hex(p), 32, '0')::uuid, "
     f"'Bench', 'Tick', '{PAYLOAD}', '{META}', p, pg_current_xact_id() FROM nextval('baseline.store_shaped_position') AS p"),
    ("PL/pgSQL append", f"SELECT baseline.append_event('{NEW.format(p='nplp')}', 'Bench', 'Tick', '{PAYLOAD}', '{META}')"),
    ("append_event", f"SELECT eventstore.append_event('{NEW.format(p='nes')}', 'Bench', 'Tick', '{PAYLOAD}', '{META}')"),
    ("append_event, expected_version => 0",
     f"SELECT eventstore.append_event('{NEW.format(p='nez')}', 'Bench', 'Tick', '{PAYLOAD}', '{META}', expected_version => 0)"),
]
COMMAND_PAYLOAD = '{"amount": 125, "account": "DE89370400440532013000"}'
# A command and the event it caused, in one statement (Sequent's command loop).
COMMAND = [
    ("PL/pgSQL record_command + append",
     f"SELECT baseline.append_event_cmd('{STREAM.format(p='cplp')}', 'Bench', 'Tick', '{PAYLOAD}', '{META}', "
     f"baseline.record_command('Transfer', '{COMMAND_PAYLOAD}', '{STREAM.format(p='cplp')}'))"),
    ("record_command + append_event",
     f"SELECT eventstore.append_event('{STREAM.format(p='ces')}', 'Bench', 'Tick', '{PAYLOAD}', '{META}', "
     f"command_id => eventstore.record_command('Transfer', '{COMMAND_PAYLOAD}', '{STREAM.format(p='ces')}'))"),
]
# A client's own INSERT into the events table: the store's trigger checks and completes the row
# (the path where src/spi.rs must set search_path itself).
TRIGGER = [
    ("plain INSERT (postgres-es table)",
     f"INSERT INTO baseline.events VALUES ('Bench', '{STREAM.format(p='tins')}', {SEQ}, 'Tick', '1', '{PAYLOAD}', '{META}')"),
    ("INSERT INTO eventstore.events (through its trigger)",
     "INSERT INTO eventstore.events (stream_id, sequence, event_type, payload, metadata) "
     f"VALUES ('{STREAM.format(p='trg')}', {SEQ}, 'Tick', '{PAYLOAD}', '{META}')"),
]
BATCH = [
    ("multi-row INSERT of 100 (postgres-es table)",
     f"INSERT INTO baseline.events SELECT 'Bench', '{STREAM.format(p='bins')}', ({SEQ}) * 100 + k, 'Tick', '1', "
     f"'{PAYLOAD}', '{META}' FROM generate_series(0, 99) AS k"),
    ("multi-row INSERT of 100 (table of the store's shape)",
     "WITH r AS (SELECT k, nextval('baseline.store_shaped_position') AS p FROM generate_series(0, 99) AS k) "
     "INSERT INTO baseline.store_shaped_events (stream_id, sequence, event_id, stream_type, event_type, payload, "
     f"metadata, global_position, horizon_xid) SELECT '{STREAM.format(p='bsins')}', ({SEQ}) * 100 + k, "
     f"lpad(to_hex(p), 32, '0')::uuid, 'Bench', 'Tick', '{PAYLOAD}', '{META}', p, pg_current_xact_id() FROM r"),
    ("append_events of 100", f"SELECT eventstore.append_events('{STREAM.format(p='bes')}', 'Bench', '{batch_json(100)}')"),
]


def single_user(datadir, sql, callgrind_out=None):
    """Runs `sql` (statements separated by blank lines) in a single-user backend; returns its output."""
    cmd = [os.path.join(BIN, "postgres"), "--single", "-D", datadir, "-j", "-c", "fsync=off", "bench"]
    if callgrind_out:
        cmd = ["valgrind", "--tool=callgrind", "-q", f"--callgrind-out-file={callgrind_out}"] + cmd
    out = subprocess.run(["sudo", "-u", "postgres"] + cmd, input=sql, capture_output=True, text=True)
    text = out.stdout + out.stderr
    if out.returncode != 0 or "ERROR:" in text:
        sys.exit(f"single-user backend failed:\n{text[-3000:]}")
    return text


def instructions(template, statement, n, work, keep=None):
    datadir = os.path.join(work, "run")
    shutil.rmtree(datadir, ignore_errors=True)
    shutil.copytree(template, datadir, symlinks=True)
    subprocess.run(["chown", "-R", "postgres", datadir], check=True)
    calls = "\n\n".join(f"EXECUTE p({i});" for i in range(n))
    out = os.path.join(work, "callgrind.out")
    single_user(datadir, f"SET pg_eventstore.notify = off;\n\nPREPARE p(bigint) AS {statement};\n\n{calls}\n\n", out)
    with open(out) as f:
        total = next(int(line.split()[1]) for line in f if line.startswith("summary:"))
    if keep:
        shutil.move(out, keep)
    else:
        os.remove(out)
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", default="100,1100", help="n1,n2 single appends (batches: a fifth of each)")
    ap.add_argument("--smoke", action="store_true", help="few calls, debug build: checks that it runs")
    ap.add_argument("--only", default="single,new,command,batch,trigger", help="comma-separated workloads")
    ap.add_argument("--match", default="", help="only the variants whose name contains this")
    ap.add_argument("--keep", metavar="DIR", help="keep each variant's callgrind profile of the longer run "
                    "there, for callgrind_annotate")
    args = ap.parse_args()
    n1, n2 = (int(x) for x in ("5,15" if args.smoke else args.calls).split(","))

    work = tempfile.mkdtemp(prefix="pg_eventstore_instr_")
    shutil.chown(work, "postgres")
    template = os.path.join(work, "template")
    subprocess.run(["sudo", "-u", "postgres", os.path.join(BIN, "initdb"), "-D", template, "-A", "trust"],
                   check=True, capture_output=True)
    subprocess.run(["sudo", "-u", "postgres", os.path.join(BIN, "postgres"), "--single", "-D", template, "-j",
                    "postgres"], input="CREATE DATABASE bench;\n\n", check=True, capture_output=True, text=True)
    with open(os.path.join(HERE, "setup.sql")) as f:
        single_user(template, f.read() + "\n\n" + SINGLE_SETUP)

    lines = []
    ap_only = set(args.only.split(","))
    groups = [("single", "Single-event append (one event per transaction)", SINGLE, "call", 1),
              ("new", "First event of a new stream (one event per transaction)", NEW_STREAM, "call", 1),
              ("command", "A command and its event (one of each per transaction)", COMMAND, "call", 1),
              ("batch", "Batch append (100 events per transaction)", BATCH, "event", 5),
              ("trigger", "A direct INSERT into the events table (one per transaction)", TRIGGER, "call", 1)]
    for key, title, variants, per, scale in groups:
        if key not in ap_only:
            continue
        a, b = max(1, n1 // scale), max(2, n2 // scale)
        counts = []
        for name, statement in variants:
            if args.match not in name:
                continue
            keep = None
            if args.keep:
                os.makedirs(args.keep, exist_ok=True)
                slug = "".join(c if c.isalnum() else "_" for c in f"{key}_{name}")
                keep = os.path.join(args.keep, f"{slug}.callgrind")
            per_call = (instructions(template, statement, b, work, keep) - instructions(template, statement, a, work)) / (b - a)
            per_unit = per_call / (100 if per == "event" else 1)
            counts.append((name, per_unit))
            print(f"  {name}: {per_unit:,.0f} instructions per {per}", flush=True)
        if not counts:
            continue
        base = counts[0][1]
        lines += [f"## {title}", "", f"| variant | instructions per {per} | × {counts[0][0]} (inverse: work ratio) |",
                  "|---|---|---|"]
        lines += [f"| {name} | {n:,.0f} | {base / n:.2f} |" for name, n in counts]
        lines.append("")
    shutil.rmtree(work, ignore_errors=True)

    now = datetime.datetime.utcnow()
    head = [f"# pg_eventstore: instructions per append{' (smoke run)' if args.smoke else ''}", "",
            f"Run `bench/instructions.sh{' --smoke' if args.smoke else ''}` on {now:%Y-%m-%d %H:%M} UTC. "
            f"Machine: {machine()}. callgrind instruction counts in a single-user backend (fsync off, "
            f"pg_eventstore.notify off), per call: the difference between {n1} and {n2} calls "
            "(batches: a fifth of that), each its own transaction. The ratio column is the baseline's "
            "instructions over the variant's: 1.00 is as cheap as the plain INSERT.", ""]
    path = os.path.join(HERE, "results", "instructions-smoke.md" if args.smoke else f"{now:%Y-%m-%d-%H%M}-instructions{MAJOR_SUFFIX}.md")
    with open(path, "w") as f:
        f.write("\n".join(head + lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
