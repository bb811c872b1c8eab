#!/usr/bin/env python3
"""The pg_eventstore benchmark suite: every workload side by side with its baselines, in one run,
on one Postgres. Run through bench/run.sh, which builds and installs the extension first.

    bench/run.sh            full run (30 s per variant in 3 alternating rounds; scale at 1M and 10M events)
    bench/run.sh --smoke    a few seconds per variant, small scale: checks that everything runs

Writes bench/results/<UTC date>.md (full), <UTC date>-<workloads>.md (--only), with -<HHMM> added when that
file exists, or bench/results/smoke.md. Numbers are pgbench's:
transactions/s, events/s, and latency p50/p99 from its per-transaction log. The suite measures;
it asserts nothing about speed.
"""

import argparse
import datetime
import glob
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile

BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")
DB = "pg_eventstore_bench"
HERE = os.path.dirname(os.path.abspath(__file__))
PAYLOAD = '{"amount": 125, "currency": "EUR", "account": "DE89370400440532013000", "note": "monthly transfer"}'
META = '{"correlation": "c0ffee", "user": "u-17"}'
NOTIFY_OFF = {"PGOPTIONS": "-c pg_eventstore.notify=off"}
OWN_NOTIFY = {"PGOPTIONS": "-c pg_eventstore.notifier=off"}


# --waits: sample what the benchmark's backends wait for while each variant runs (see run_variant).
WAITS = False
# --wal: WAL bytes per transaction of each variant, from the insert position before and after its runs
# (everything the server wrote meanwhile counts: full-page images, the notifier's, autovacuum's).
WAL = False
WAL_TRANSACTIONS = 2000  # per variant, for its WAL records by type (--smoke: 100)
WAL_POSITION = "SELECT pg_current_wal_insert_lsn()"
WAL_FLUSH = {"LWLock:WALWrite", "IO:WALSync", "IO:WALWrite"}
# --async-commit: every variant's sessions commit without waiting for the WAL flush, so that tx/s
# measures the work of a transaction rather than this machine's fsync latency.
SESSION_OPTIONS = ""

WORKLOADS = ["single", "new", "command", "many", "contended", "batch", "load", "scale", "lifecycle"]
COMMAND_PAYLOAD = '{"amount": 125, "account": "DE89370400440532013000"}'


def plain_insert(prefix):
    """The postgres-es baseline: one event row INSERTed into its table, each client on its own stream."""
    return ("\\set n :n + 1\nINSERT INTO baseline.events VALUES ('Bench', '" + prefix + "-' || :client_id || '-' || :run, "
            f":n, 'Tick', '1', '{PAYLOAD}', '{META}');\n")


def floor_update_insert(stream, events):
    """The two rows append_event writes to an existing stream, by one statement of plain SQL into bare
    tables of the store's shape: the stream's version bumped by an UPDATE and the event row INSERTed
    into `events`. `stream` is an SQL expression for the stream id (bench/instructions.py uses it too)."""
    return (f"WITH s AS (UPDATE baseline.store_shaped_streams SET version = version + 1 WHERE stream_id = {stream} "
            f"RETURNING version) INSERT INTO {events} (stream_id, sequence, event_id, stream_type, event_type, "
            f"payload, metadata, global_position, horizon_xid) SELECT {stream}, s.version, "
            f"lpad(to_hex(p), 32, '0')::uuid, 'Bench', 'Tick', '{PAYLOAD}', '{META}', p, pg_current_xact_id() "
            "FROM s, nextval('baseline.store_shaped_position') AS p")


def existing_floor(prefix, events):
    """floor_update_insert as a pgbench script, each client on its own stream, whose row the client's
    first transaction makes."""
    stream = f"'{prefix}-' || :client_id || '-' || :run"
    return ("\\set n :n + 1\n\\if :n = 1\nINSERT INTO baseline.store_shaped_streams (stream_id, stream_type, version) "
            f"VALUES ({stream}, 'Bench', 0);\n\\endif\n" + floor_update_insert(stream, events) + ";\n")


def psql(sql, db=DB):
    args = ["psql", "-v", "ON_ERROR_STOP=1", "-qAtX", "-d", db]
    return subprocess.run(args, input=sql, check=True, capture_output=True, text=True).stdout


def psql_file(path, db=DB):
    subprocess.run(["psql", "-v", "ON_ERROR_STOP=1", "-qX", "-d", db, "-f", path], check=True,
                   capture_output=True, text=True)


class Variant:
    """One pgbench script run: `script` is the pgbench script text, `events` how many events one
    transaction appends or reads."""

    def __init__(self, name, script, events=1, clients=8, options=(), env=None, db=DB):
        self.name, self.script, self.events, self.clients, self.options = name, script, events, clients, list(options)
        self.db = db
        self.env = env or {}
        self.tps = self.p50 = self.p99 = None
        self.round_tps, self.latencies = [], []
        self.retried = 0
        self.failed = 0
        self.waits = {}
        self.wal_bytes = self.transactions = 0
        self.wal_records = ""


def run_variant(v, seconds, workdir, round_no=0):
    """One pgbench run of `v`; appends its tx/s to v.round_tps and its latencies to v.latencies."""
    path = os.path.join(workdir, re.sub(r"\W+", "_", v.name) + ".sql")
    with open(path, "w") as f:
        f.write(v.script)
    prefix = os.path.join(workdir, f"log{round_no}_" + re.sub(r"\W+", "_", v.name))
    for old in glob.glob(prefix + "*"):
        os.remove(old)
    cmd = [os.path.join(BIN, "pgbench"), "-n", "-M", "prepared", "-c", str(v.clients), "-j", "2",
           "-T", str(seconds), "-D", "n=0", "-D", f"run={os.getpid()}{round_no}", "-f", path,
           "-l", f"--log-prefix={prefix}"] + v.options + [v.db]
    sampler = None
    if WAITS:
        # Every 10 ms, each pgbench backend's wait event (none: on CPU), each sample its own
        # transaction (pg_stat_activity is read once per transaction). About as many samples as fit
        # in the run; the few after it find no pgbench backend. Script and samples go through files:
        # through pipes, writing the script delayed pgbench's start, and a full output pipe (64
        # clients fill it within a second) could block psql while the script was still being written.
        sample = ("SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') FROM pg_stat_activity "
                  "WHERE application_name = 'pgbench' AND state <> 'idle';\nSELECT pg_sleep(0.01);\n")
        waits = os.path.join(workdir, "waits_" + re.sub(r"\W+", "_", v.name))  # not under pgbench's log prefix
        with open(waits + ".sql", "w") as f:
            f.write(sample * (seconds * 85))
        samples = open(waits + ".out", "w+")
        sampler = subprocess.Popen(["psql", "-qAtX", "-d", v.db, "-f", waits + ".sql"], stdout=samples)
    env = {**os.environ, **v.env}
    if SESSION_OPTIONS:
        env["PGOPTIONS"] = (env.get("PGOPTIONS", "") + " " + SESSION_OPTIONS).strip()
    start = psql(WAL_POSITION, db=v.db).strip() if WAL else None
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if WAL:
        v.wal_bytes += int(float(psql(f"SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '{start}')", db=v.db)))
        v.transactions += int(re.search(r"number of transactions actually processed: (\d+)", out.stdout).group(1))
    if sampler:
        sampler.wait()
        samples.seek(0)
        for line in samples.read().split():
            v.waits[line] = v.waits.get(line, 0) + 1
        samples.close()
    if out.returncode != 0:
        sys.exit(f"pgbench failed for {v.name}:\n{out.stdout}\n{out.stderr}")
    m = re.search(r"^tps = ([\d.]+) \(without initial connection time\)", out.stdout, re.M)
    v.round_tps.append(float(m.group(1)))
    m = re.search(r"number of transactions retried: (\d+)", out.stdout)
    v.retried += int(m.group(1)) if m else 0
    m = re.search(r"number of failed transactions: (\d+)", out.stdout)
    v.failed += int(m.group(1)) if m else 0
    for log in glob.glob(prefix + "*"):
        with open(log) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2].isdigit():
                    v.latencies.append(int(parts[2]))


def wal_records(v, workdir, n):
    """What n transactions of `v` by one client write to the WAL, by record type (pg_waldump
    --stats=record): each type's records per transaction and their average size, full-page images
    apart (how many there are depends on how long ago the last checkpoint was)."""
    path = os.path.join(workdir, "wal_" + re.sub(r"\W+", "_", v.name) + ".sql")
    with open(path, "w") as f:
        f.write(v.script)
    start = psql(WAL_POSITION, db=v.db).strip()
    subprocess.run([os.path.join(BIN, "pgbench"), "-n", "-M", "prepared", "-c", "1", "-t", str(n), "-D", "n=0",
                    "-D", f"run={os.getpid()}99", "-f", path] + v.options + [v.db], check=True, capture_output=True,
                   env={**os.environ, **v.env})
    end = psql(WAL_POSITION, db=v.db).strip()
    psql("SELECT pg_switch_wal()", db=v.db)  # flushed and closed: pg_waldump finds every record up to `end`
    wal = os.path.join(psql("SHOW data_directory", db=v.db).strip(), "pg_wal")
    out = subprocess.run([os.path.join(BIN, "pg_waldump"), "-p", wal, "-s", start, "-e", end, "--stats=record"],
                         capture_output=True, text=True).stdout
    rows, fpi = [], 0
    for m in re.finditer(r"^(\S+/\S+)\s+(\d+)\s+\(\s*[\d.]+\)\s+(\d+)\s+\(\s*[\d.]+\)\s+(\d+)", out, re.M):
        kind, count, size, fpi_size = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))
        fpi += fpi_size
        if count:
            rows.append((size, f"{kind} {count / n:.2f} × {size / count:.0f} B"))
    rows.sort(reverse=True)
    return (", ".join(r for _, r in rows[:8]) + f"; full-page images {fpi / n:.0f} B per transaction")


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def run_workload(variants, seconds, workdir, rounds):
    """Runs the variants of one workload against each other in `rounds` rounds of seconds/rounds
    each, the order reversed every other round, so that a slow spell of the machine (this 2-core
    machine has them, ±15%) falls on every variant rather than on whichever ran during it."""
    for r in range(rounds):
        for v in (variants if r % 2 == 0 else variants[::-1]):
            run_variant(v, max(1, seconds // rounds), workdir, r)
    for v in variants:
        if WAL:
            v.wal_records = wal_records(v, workdir, WAL_TRANSACTIONS)
        v.tps = median(v.round_tps)
        lat = sorted(v.latencies)
        if lat:
            v.p50 = lat[len(lat) // 2] / 1000.0
            v.p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1000.0
        rounds_txt = ", ".join(f"{t:.0f}" for t in v.round_tps)
        print(f"  {v.name}: {v.tps:.0f} tps (rounds: {rounds_txt}), {v.tps * v.events:.0f} events/s, "
              f"p50 {v.p50} ms, p99 {v.p99} ms" + (f", {v.retried} retried" if v.retried else ""), flush=True)


def ratio(v, b, inverse=False):
    """The median over rounds of v's throughput against b's in the same round."""
    rs = [(bt / vt) if inverse else (vt * v.events) / (bt * b.events) for vt, bt in zip(v.round_tps, b.round_tps)]
    return median(rs)


def table(variants, baselines):
    head = "| variant | clients | tx/s | events/s | p50 ms | p99 ms | " + " | ".join(
        f"× {b.name}" for b in baselines) + " |"
    if WAITS:
        head += " waiting for the WAL flush | on CPU |"
    if WAL:
        head += " WAL bytes/tx |"
    rows = [head, "|" + "---|" * (6 + len(baselines) + (2 if WAITS else 0) + (1 if WAL else 0))]
    for v in variants:
        ratios = " | ".join(f"{ratio(v, b):.2f}" if b is not v else "1.00"
                            for b in baselines)
        extra = f" ({v.retried} retried)" if v.retried else ""
        row = (f"| {v.name}{extra} | {v.clients} | {v.tps:.0f} | {v.tps * v.events:.0f} | "
               f"{v.p50:.3f} | {v.p99:.3f} | {ratios} |")
        if WAITS:
            n = max(1, sum(v.waits.values()))
            row += (f" {100 * sum(c for w, c in v.waits.items() if w in WAL_FLUSH) / n:.0f}% |"
                    f" {100 * v.waits.get('CPU', 0) / n:.0f}% |")
        if WAL:
            row += f" {v.wal_bytes / max(1, v.transactions):.0f} |"
        rows.append(row)
    if WAITS:
        # The columns above say how much is the flush and the CPU; this says what the rest is.
        rows.append("")
        for v in variants:
            n = max(1, sum(v.waits.values()))
            top = sorted(v.waits.items(), key=lambda kv: -kv[1])[:6]
            rows.append(f"- {v.name}: " + ", ".join(f"{w} {100 * c / n:.0f}%" for w, c in top))
    if WAL:
        rows.append(f"\nWAL records per transaction ({WAL_TRANSACTIONS:,} transactions by one client, "
                    "pg_waldump --stats=record):\n")
        rows.extend(f"- {v.name}: {v.wal_records}" for v in variants)
    return "\n".join(rows)


def load_table(variants, baseline):
    """Reads: ratios are of time per call (lower is better), against the plain SELECT."""
    rows = ["| variant | clients | calls/s | events/s | p50 ms | p99 ms | time × " + baseline.name + " |",
            "|---|---|---|---|---|---|---|"]
    for v in variants:
        rows.append(f"| {v.name} | {v.clients} | {v.tps:.0f} | {v.tps * v.events:.0f} | {v.p50:.3f} | "
                    f"{v.p99:.3f} | {ratio(v, baseline, inverse=True):.2f} |")
    return "\n".join(rows)


def batch_json(n):
    return "[" + ", ".join(f'{{"type": "Tick", "payload": {PAYLOAD}, "metadata": {META}}}' for _ in range(n)) + "]"


def fill(total, prefix="fill", db=DB):
    """Grows the store to `total` events: streams of 100 events, 10 stream types, batches of 100."""
    have = int(psql("SELECT count(*) FROM eventstore.events", db=db))
    first = have // 100 + 1
    last = total // 100
    step = 2000  # streams per statement: one transaction each, so progress is committed as it goes
    for start in range(first, last + 1, step):
        end = min(last, start + step - 1)
        psql(f"""SELECT count(eventstore.append_events('{prefix}-' || i, 'Fill' || (i % 10),
                   (SELECT jsonb_agg(jsonb_build_object('type', 'Tick', 'payload', jsonb_build_object('i', i, 'k', k)))
                    FROM generate_series(1, 100) AS k)))
                 FROM generate_series({start}, {end}) AS i""", db=db)
    psql("VACUUM ANALYZE eventstore.events", db=db)


def timed(sql, db=DB):
    """Milliseconds one statement takes, commit included, as psql's \\timing reports it."""
    out = psql("\\timing on\n" + sql, db=db)
    return float(re.findall(r"^Time: ([\d.]+) ms", out, re.M)[-1])


def lifecycle_ops(rounds, n):
    """Times each removal on a stream of n events (ten snapshots, ten commands), in a store of
    other streams; the median of `rounds` fresh streams per operation."""
    person = ('jsonb_build_object(\'customer\', jsonb_build_object(\'name\', \'Ada Lovelace\', '
              '\'email\', \'ada-\' || k || \'@example.org\'), \'amount\', k)')

    def make(stream):
        psql(f"""SELECT count(eventstore.append_events('{stream}', 'Customer',
                   (SELECT jsonb_agg(jsonb_build_object('type', 'Paid', 'payload', {person},
                                                        'metadata', jsonb_build_object('ip', '10.0.0.' || (k % 250))))
                    FROM generate_series(b * 100 + 1, b * 100 + 100) AS k)))
                 FROM generate_series(0, {n // 100 - 1}) AS b;
                 SELECT count(eventstore.take_snapshot('{stream}', s, '{{"balance": 1}}'))
                 FROM generate_series({n // 10}, {n}, {n // 10}) AS s;
                 SELECT count(eventstore.record_command('Pay', '{{"email": "ada@example.org"}}', '{stream}'))
                 FROM generate_series(1, 10);
                 CHECKPOINT""")

    ops = [
        ("hard delete (`delete_stream(…, hard => true, reason => …)`)",
         "SELECT eventstore.delete_stream('{s}', hard => true, reason => 'bench')"),
        ("soft delete (`delete_stream`)", "SELECT eventstore.delete_stream('{s}')"),
        ("redact one path in every event (`redact_events(…, NULL, '{payload.customer.email}', …)`)",
         "SELECT eventstore.redact_events('{s}', NULL, '{{payload.customer.email}}', 'bench')"),
        ("redact two paths with a wildcard (`'{payload.customer.*, metadata.ip}'`)",
         "SELECT eventstore.redact_events('{s}', NULL, '{{payload.customer.*, metadata.ip}}', 'bench')"),
        ("erase the stream (`erase_stream`)", "SELECT eventstore.erase_stream('{s}', 'bench')"),
        ("truncate half (`truncate_stream`)", f"SELECT eventstore.truncate_stream('{{s}}', {n // 2 + 1}, 'bench')"),
        ("archive (`archive_stream`)", "SELECT eventstore.archive_stream('{s}')"),
        ("restore (`restore_stream`, of an archived stream)", "SELECT eventstore.restore_stream('{s}')"),
    ]
    rows = [f"| operation on a stream of {n:,} events | median ms | rounds (ms) |", "|---|---|---|"]
    for name, sql in ops:
        times = []
        for r in range(rounds):
            stream = f"life-{abs(hash(name)) % 100000}-{r}-{os.getpid()}"
            make(stream)
            if "restore" in name:
                psql(f"SELECT eventstore.archive_stream('{stream}'); CHECKPOINT")
            times.append(timed(sql.format(s=stream)))
        print(f"  {name}: {median(times):.1f} ms ({', '.join(f'{t:.0f}' for t in times)})", flush=True)
        rows.append(f"| {name} | {median(times):.1f} | {', '.join(f'{t:.0f}' for t in times)} |")
    return "\n".join(rows)


def settings():
    names = ["server_version", "shared_buffers", "synchronous_commit", "fsync", "wal_level", "max_wal_size",
             "checkpoint_timeout", "work_mem", "jit"]
    vals = psql("SELECT string_agg(name || ' = ' || setting || COALESCE(unit, ''), ', ' ORDER BY name) "
                f"FROM pg_settings WHERE name IN ({', '.join(repr(n) for n in names)})")
    return vals.strip()


def machine():
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f"{kb / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), {mem}, {platform.platform()}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="seconds, not minutes: check that it all runs")
    ap.add_argument("--seconds", type=int, help="per variant")
    ap.add_argument("--rounds", type=int, help="rounds per workload, variants alternating (default 3; smoke 1)")
    ap.add_argument("--scale", default=None, help="comma-separated store sizes for the scale workload")
    ap.add_argument("--only", help="comma-separated workloads (default: all but schema; --smoke: all)")
    ap.add_argument("--waits", action="store_true", help="sample the backends' wait events (adds two columns)")
    ap.add_argument("--wal", action="store_true",
                    help="WAL bytes per transaction (adds a column), and each variant's WAL records by type")
    ap.add_argument("--async-commit", action="store_true",
                    help="every variant with synchronous_commit = off: CPU-bound, not fsync-bound")
    args = ap.parse_args()
    global WAITS, WAL, WAL_TRANSACTIONS, SESSION_OPTIONS
    WAITS, WAL = args.waits, args.wal
    if args.smoke:
        WAL_TRANSACTIONS = 100
    SESSION_OPTIONS = "-c synchronous_commit=off" if args.async_commit else ""
    seconds = args.seconds or (2 if args.smoke else 30)
    rounds = args.rounds or (1 if args.smoke else 3)
    scale = [int(s) for s in (args.scale or ("10000,20000" if args.smoke else "1000000,10000000")).split(",")]

    psql(f"DROP DATABASE IF EXISTS {DB}", db="postgres")
    psql(f"CREATE DATABASE {DB}", db="postgres")
    psql_file(os.path.join(HERE, "setup.sql"))
    work = tempfile.mkdtemp(prefix="pg_eventstore_bench_")
    out = [f"# pg_eventstore benchmarks{' (smoke run: too short to mean anything)' if args.smoke else ''}", "",
           f"Run `{' '.join(['bench/run.sh'] + sys.argv[1:])}` on {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC.",
           f"Machine: {machine()}.", f"Postgres: {settings()}.",
           f"pgbench, `-M prepared`, `-j 2`, {seconds} s per variant in {rounds} round(s) of {max(1, seconds // rounds)} s:"
           " the variants of a workload take turns in the same database, in reverse order every other round. tx/s is"
           " the median round; a ratio is the median over rounds of the two variants' ratio within a round; p50/p99"
           " are over all rounds' transactions."
           f" The extension is a {'debug' if args.smoke else 'release'} build."
           " Payload of each event: "
           f"`{PAYLOAD}`, metadata `{META}`.", ""]

    def section(title, text):
        out.extend([f"## {title}", "", text, ""])

    # schema is a diagnostic, left out of the full run; the smoke run still checks that it runs
    only = set(args.only.split(",")) if args.only else set(WORKLOADS) | ({"schema"} if args.smoke else set())
    if only & {"load", "scale"}:
        # The 1,000-event stream that both the load and the scale workloads read.
        psql(f"SELECT eventstore.append_events('load-1000', 'Load', '{batch_json(1000)}')")
    stream = "'{p}-' || :client_id || '-' || :run"

    # 1. Single-event append, one event per transaction, 8 clients on distinct streams.
    if "single" in only:
        print("single-event append", flush=True)
        single = [
            Variant("plain INSERT (postgres-es table)", plain_insert("ins")),
            Variant("PL/pgSQL append", f"SELECT baseline.append_event({stream.format(p='plp')}, 'Bench', 'Tick', "
                                       f"'{PAYLOAD}', '{META}');\n"),
            # The row append_event writes, by a plain INSERT into a bare table with the store's columns
            # and four indexes: what the schema costs, apart from the function and the stream row.
            Variant("plain INSERT (table of the store's shape)",
                    "\\set n :n + 1\nINSERT INTO baseline.store_shaped_events (stream_id, sequence, event_id, "
                    "stream_type, event_type, payload, metadata, global_position, horizon_xid) SELECT "
                    "'sins1-' || :client_id || '-' || :run, :n, lpad(to_hex(p), 32, '0')::uuid, 'Bench', "
                    f"'Tick', '{PAYLOAD}', '{META}', p, pg_current_xact_id() "
                    "FROM nextval('baseline.store_shaped_position') AS p;\n"),
            # The two rows append_event writes, by plain SQL into bare tables of the store's shape: the
            # stream's version bumped by an UPDATE (its row made by the client's first transaction) and
            # the event row INSERTed, in one statement. What the schema costs for this append.
            Variant("plain UPDATE and INSERT (stream version and event row, tables of the store's shape)",
                    existing_floor("sxs", "baseline.store_shaped_events")),
            Variant("append_event", f"SELECT eventstore.append_event({stream.format(p='es')}, 'Bench', 'Tick', "
                                    f"'{PAYLOAD}', '{META}');\n"),
            Variant("append_event, notify off", f"SELECT eventstore.append_event({stream.format(p='esq')}, 'Bench', "
                                                f"'Tick', '{PAYLOAD}', '{META}');\n",
                    env=NOTIFY_OFF),
            Variant("append_event, own NOTIFY (notifier off)",
                    f"SELECT eventstore.append_event({stream.format(p='eso')}, 'Bench', 'Tick', '{PAYLOAD}', '{META}');\n",
                    env=OWN_NOTIFY),
        ]
        run_workload(single, seconds, work, rounds)
        section("1. Single-event append (8 clients, each on its own stream)",
                table(single, single[:4]) + "\n\nTargets: append_event ≥ 0.80 × plain INSERT (postgres-es table) and "
                "≥ 1.15 × PL/pgSQL. The third baseline writes append_event's event row into a bare table with the "
                "store's four indexes; the fourth also bumps the stream's version in a bare streams table, as "
                "append_event does: the floor for this schema.")

    # 1b. The first event of a new stream: every transaction creates a stream (a new aggregate).
    if "new" in only:
        print("new-stream append", flush=True)
        fresh = "'{p}-' || :client_id || '-' || :run || '-' || :n"
        new = [
            Variant("plain INSERT (postgres-es table)",
                    "\\set n :n + 1\nINSERT INTO baseline.events VALUES ('Bench', 'nins-' || :client_id || '-' || :run || '-' || :n, 1, "
                    f"'Tick', '1', '{PAYLOAD}', '{META}');\n"),
            # The two rows append_event writes, by plain INSERTs into bare tables of the store's shape
            # (streams with its primary key; events with its four indexes): what the schema costs.
            Variant("plain INSERTs (stream and event rows, tables of the store's shape)",
                    "\\set n :n + 1\nWITH s AS (INSERT INTO baseline.store_shaped_streams (stream_id, stream_type, version) "
                    f"VALUES ({fresh.format(p='nsins')}, 'Bench', 1)) "
                    "INSERT INTO baseline.store_shaped_events (stream_id, sequence, event_id, stream_type, event_type, "
                    f"payload, metadata, global_position, horizon_xid) SELECT {fresh.format(p='nsins')}, "
                    f"1, lpad(to_hex(p), 32, '0')::uuid, 'Bench', 'Tick', '{PAYLOAD}', '{META}', p, pg_current_xact_id() "
                    "FROM nextval('baseline.store_shaped_position') AS p;\n"),
            Variant("PL/pgSQL append (creates the stream)",
                    f"\\set n :n + 1\nSELECT baseline.append_event({fresh.format(p='nplp')}, 'Bench', 'Tick', '{PAYLOAD}', '{META}');\n"),
            Variant("append_event (creates the stream)",
                    f"\\set n :n + 1\nSELECT eventstore.append_event({fresh.format(p='nes')}, 'Bench', 'Tick', '{PAYLOAD}', '{META}');\n"),
            # what the postgres-es INSERT of sequence 1 means, and what the cqrs-es adapter passes
            Variant("append_event, expected_version => 0",
                    f"\\set n :n + 1\nSELECT eventstore.append_event({fresh.format(p='nez')}, 'Bench', 'Tick', '{PAYLOAD}', '{META}', "
                    "expected_version => 0);\n"),
            Variant("append_event, expected_version => 0, notify off",
                    f"\\set n :n + 1\nSELECT eventstore.append_event({fresh.format(p='nezq')}, 'Bench', 'Tick', '{PAYLOAD}', '{META}', "
                    "expected_version => 0);\n", env=NOTIFY_OFF),
        ]
        run_workload(new, seconds, work, rounds)
        section("1b. First event of a new stream (8 clients, a new stream per transaction)",
                table(new, [new[0], new[2], new[1]]) + "\n\nTargets: append_event ≥ 0.80 × plain INSERT and ≥ 1.15 × "
                "the PL/pgSQL append creating the stream. The third baseline writes append_event's two rows into bare "
                "tables of the store's shape: the floor for this schema.")

    # 1c. A command and the event it caused, in one statement (Sequent's command loop).
    if "command" in only:
        print("command + event", flush=True)
        command = [
            Variant("PL/pgSQL record_command + append",
                    f"SELECT baseline.append_event_cmd({stream.format(p='cplp')}, 'Bench', 'Tick', '{PAYLOAD}', '{META}', "
                    f"baseline.record_command('Transfer', '{COMMAND_PAYLOAD}', {stream.format(p='cplp')}));\n"),
            Variant("record_command + append_event",
                    f"SELECT eventstore.append_event({stream.format(p='ces')}, 'Bench', 'Tick', '{PAYLOAD}', '{META}', "
                    f"command_id => eventstore.record_command('Transfer', '{COMMAND_PAYLOAD}', {stream.format(p='ces')}));\n"),
        ]
        run_workload(command, seconds, work, rounds)
        section("1c. A command and its event (8 clients, one of each per transaction)",
                table(command, command[:1]) + "\n\nTarget: ≥ 1.15 × the PL/pgSQL version, which checks the "
                "event's foreign key to its command as the store does.")

    # 1d. Many more clients than cores: contention on the position sequence, the notifier and the lock manager.
    if "many" in only:
        print("single-event append, 64 clients", flush=True)
        many = [
            Variant("plain INSERT (postgres-es table)",
                    plain_insert("mins"), clients=64),
            Variant("PL/pgSQL append", f"SELECT baseline.append_event({stream.format(p='mplp')}, 'Bench', 'Tick', "
                                       f"'{PAYLOAD}', '{META}');\n", clients=64),
            Variant("append_event", f"SELECT eventstore.append_event({stream.format(p='mes')}, 'Bench', 'Tick', "
                                    f"'{PAYLOAD}', '{META}');\n", clients=64),
            Variant("append_event, notify off", f"SELECT eventstore.append_event({stream.format(p='mesq')}, 'Bench', "
                                                f"'Tick', '{PAYLOAD}', '{META}');\n", clients=64, env=NOTIFY_OFF),
        ]
        run_workload(many, seconds, work, rounds)
        section("1d. Single-event append with 64 clients (each on its own stream, 2 cores)",
                table(many, many[:2]) + "\n\nNo target: with 32 clients per core this shows contention (the "
                "position sequence, the notifier's wake-ups, the lock manager) rather than work per call.")

    # 1e. Not in the full run: what each of the events table's indexes costs the existing-stream floor,
    # for deciding what the schema keeps (the store needs every one of them today; see bench/README.md).
    if "schema" in only:
        print("schema: the existing-stream floor with fewer indexes", flush=True)
        keys = {"pk": "PRIMARY KEY (stream_id, sequence)", "id": "UNIQUE (event_id)",
                "pos": "UNIQUE (global_position)"}
        shapes = [("all four indexes (the store's)", "all", ["pk", "id", "pos"], True),
                  ("without the category index", "nocat", ["pk", "id", "pos"], False),
                  ("without the event_id index", "noid", ["pk", "pos"], True),
                  ("without either", "neither", ["pk", "pos"], False)]
        ddl = ""
        for _, tag, cons, category in shapes:
            ddl += (f"CREATE TABLE baseline.floor_{tag} (LIKE eventstore.events INCLUDING DEFAULTS, "
                    + ", ".join(keys[c] for c in cons) + ") WITH (autovacuum_enabled = off);\n")
            if category:
                ddl += f"CREATE INDEX ON baseline.floor_{tag} (stream_type, global_position);\n"
        psql(ddl)
        schema = [Variant("plain INSERT (postgres-es table)", plain_insert("fins"))]
        schema += [Variant(f"plain UPDATE and INSERT, {name}", existing_floor("f" + tag, f"baseline.floor_{tag}"))
                   for name, tag, _, _ in shapes]
        run_workload(schema, seconds, work, rounds)
        section("1e. The existing-stream floor with fewer indexes (8 clients, each on its own stream)",
                table(schema, schema[:2]) + "\n\nEach variant bumps the stream's version and inserts the event "
                "row by plain SQL, as the floor in 1 does, into an events table with some of the store's indexes "
                "left out. The store needs all four: the primary key for streams, global_position for the feed, "
                "the category index for category reads, event_id for idempotent appends.")

    # 2. Contended append: 8 clients on 8 hot streams with expected_version, retried on conflict.
    if "contended" in only:
        print("contended append", flush=True)
        hot = "'hot-{p}-' || :s || '-' || :run"

        def es_contended(name, p, env=None):
            return Variant(name, f"\\set s random(1, 8)\nBEGIN;\nSELECT eventstore.stream_version({hot.format(p=p)}) AS v \\gset\n"
                                 f"SELECT eventstore.append_event({hot.format(p=p)}, 'Bench', 'Tick', '{PAYLOAD}', '{META}', :v);\n"
                                 "END;\n", options=["--max-tries=1000"], env=env)

        contended = [
            Variant("PL/pgSQL append, expected_version",
                    "\\set s random(1, 8)\nBEGIN;\nSELECT COALESCE((SELECT version FROM baseline.streams WHERE stream_id = "
                    f"{hot.format(p='plp')}), 0) AS v \\gset\nSELECT baseline.append_event({hot.format(p='plp')}, 'Bench', "
                    f"'Tick', '{PAYLOAD}', '{META}', :v);\nEND;\n", options=["--max-tries=1000"]),
            es_contended("append_event, expected_version", "es"),
            es_contended("append_event, expected_version, notify off", "esq", env=NOTIFY_OFF),
        ]
        run_workload(contended, seconds, work, rounds)
        section("2. Contended append (8 clients on 8 hot streams, expected_version, retried on 40001)",
                table(contended, contended[:1]))

    # 3. Batch append: 100 events per transaction.
    if "batch" in only:
        print("batch append", flush=True)
        batch = [
            Variant("multi-row INSERT of 100 (postgres-es table)",
                    "\\set n :n + 1\nINSERT INTO baseline.events SELECT 'Bench', 'bins-' || :client_id || '-' || :run, "
                    f":n * 100 + k, 'Tick', '1', '{PAYLOAD}', '{META}' FROM generate_series(1, 100) AS k;\n", events=100),
            Variant("multi-row INSERT of 100 (table of the store's shape)",
                    "\\set n :n + 1\nWITH r AS (SELECT k, nextval('baseline.store_shaped_position') AS p "
                    "FROM generate_series(1, 100) AS k)\nINSERT INTO baseline.store_shaped_events (stream_id, sequence, "
                    "event_id, stream_type, event_type, payload, metadata, global_position, horizon_xid) SELECT "
                    "'sins-' || :client_id || '-' || :run, :n * 100 + k, lpad(to_hex(p), 32, '0')::uuid, 'Bench', "
                    f"'Tick', '{PAYLOAD}', '{META}', p, pg_current_xact_id() FROM r;\n", events=100),
            Variant("append_events of 100",
                    f"SELECT eventstore.append_events({stream.format(p='bes')}, 'Bench', '{batch_json(100)}');\n",
                    events=100),
        ]
        run_workload(batch, seconds, work, rounds)
        section("3. Batch append (100 events per transaction, 8 clients)",
                table(batch, batch[:2]) + "\n\nTarget: append_events ≥ 0.70 × the multi-row INSERT (postgres-es table) in events/s. "
                "The second baseline writes the same rows as append_events into a bare table with the store's "
                "four indexes: the floor for this schema.")

    # 4. Load: a 1,000-event stream, and a snapshot plus a tail of 20.
    if "load" in only:
        print("load", flush=True)
        psql("SELECT eventstore.take_snapshot('load-1000', 980, '{\"balance\": 42}')")
        cols = "sequence, event_type, event_version, payload, metadata, event_id, command_id, global_position, created_at"
        load = [
            Variant("plain SELECT … ORDER BY sequence",
                    f"SELECT {cols} FROM eventstore.events WHERE stream_id = 'load-1000' ORDER BY sequence;\n",
                    events=1000, clients=2),
            Variant("load_stream", "SELECT * FROM eventstore.load_stream('load-1000');\n", events=1000, clients=2),
        ]
        snap = [
            Variant("plain SELECTs: snapshot + 20",
                    "SELECT sequence, snapshot_version, payload, created_at FROM eventstore.snapshots WHERE stream_id = "
                    "'load-1000' ORDER BY sequence DESC LIMIT 1;\n"
                    f"SELECT {cols} FROM eventstore.events WHERE stream_id = 'load-1000' AND sequence > 980 ORDER BY sequence;\n",
                    events=21, clients=2),
            Variant("load_snapshot + load_stream tail",
                    "SELECT * FROM eventstore.load_snapshot('load-1000');\n"
                    "SELECT * FROM eventstore.load_stream('load-1000', 981);\n", events=21, clients=2),
        ]
        run_workload(load, seconds, work, rounds)
        run_workload(snap, seconds, work, rounds)
        section("4. Load (2 clients)", load_table(load, load[0]) + "\n\n" + load_table(snap, snap[0]) +
                "\n\nTarget: load_stream of 1,000 events ≤ 1.3 × the plain SELECT's time.")

    # 5. Scale: append and load cost as the store grows.
    if "scale" in only:
        print("scale", flush=True)
        rows = ["| events in store | append_event tx/s | p50 ms | p99 ms | load_stream (1,000) calls/s | p50 ms | p99 ms |",
                "|---|---|---|---|---|---|---|"]
        first = None
        for size in scale:
            fill(size)
            # the fill's WAL and dirty pages are checkpointed before the timed runs, not during them
            psql("CHECKPOINT")
            a = Variant("append", f"SELECT eventstore.append_event({stream.format(p=f'scale{size}')}, 'Bench', 'Tick', "
                                  f"'{PAYLOAD}', '{META}');\n")
            ld = Variant("load", "SELECT * FROM eventstore.load_stream('load-1000');\n", events=1000, clients=2)
            print(f" at {size} events", flush=True)
            run_workload([a, ld], seconds, work, rounds)
            rows.append(f"| {size:,} | {a.tps:.0f} | {a.p50:.3f} | {a.p99:.3f} | {ld.tps:.0f} | {ld.p50:.3f} | {ld.p99:.3f} |")
            if first is None:
                first = (a, ld)
            last = (a, ld)
        drift = (f"\n\nDrift from {scale[0]:,} to {scale[-1]:,} events: append tx/s × {last[0].tps / first[0].tps:.2f}, "
                 f"load calls/s × {last[1].tps / first[1].tps:.2f} (target: within 1.2× either way).")
        section("5. Scale (append: 8 clients on their own streams; load: 2 clients, the same 1,000-event stream)",
                "\n".join(rows) + drift)

    # 6. Lifecycle: what removals cost, and that archived events cost the hot tables nothing.
    if "lifecycle" in only:
        print("lifecycle", flush=True)
        fill(max(scale[0], 100000) if not args.smoke else 10000, prefix="life-bg")
        ops = lifecycle_ops(3 if args.smoke else 5, 1000 if args.smoke else 10000)
        archived_n, live_n = (10000, 2000) if args.smoke else (1000000, 100000)
        hot_db, arch_db = DB + "_hot", DB + "_archived"
        for db in (hot_db, arch_db):
            psql(f"DROP DATABASE IF EXISTS {db}", db="postgres")
            psql(f"CREATE DATABASE {db}", db="postgres")
            psql("CREATE EXTENSION pg_eventstore", db=db)
        # The archived store first had archived_n events, all archived since; both then get the
        # same live events, so the archived ones sit below every live position.
        fill(archived_n, prefix="old", db=arch_db)
        for start in range(1, archived_n // 100 + 1, 2000):
            end = min(archived_n // 100, start + 1999)
            psql(f"SELECT count(eventstore.archive_stream('old-' || i)) FROM generate_series({start}, {end}) AS i",
                 db=arch_db)
        for db in (hot_db, arch_db):
            fill(live_n, prefix="live", db=db)
            psql("VACUUM ANALYZE eventstore.events, eventstore.archived_events", db=db)
            psql("CHECKPOINT", db=db)
        sizes = {db: psql("SELECT pg_size_pretty(pg_total_relation_size('eventstore.events')) || ' events, ' || "
                          "(SELECT count(*) FROM eventstore.archived_events) || ' archived'", db=db).strip()
                 for db in (hot_db, arch_db)}
        variants = []
        for db, label in ((hot_db, "no archive"), (arch_db, f"{archived_n:,} archived")):
            after = int(psql("SELECT max(global_position) FROM eventstore.events", db=db)) - 1000
            first = int(psql("SELECT min(global_position) FROM eventstore.events", db=db)) - 1
            variants.append((
                Variant(f"append_event, {label}", f"SELECT eventstore.append_event({stream.format(p='la')}, 'Bench', "
                                                  f"'Tick', '{PAYLOAD}', '{META}');\n", db=db),
                Variant(f"read_all near the head, {label}",
                        f"SELECT count(*) FROM eventstore.read_all({after}, 1000);\n", events=1000, clients=2, db=db),
                Variant(f"read_all from 0, {label}",
                        "SELECT count(*) FROM eventstore.read_all(0, 1000);\n", events=1000, clients=2, db=db),
                Variant(f"load_stream (100), {label}",
                        "SELECT count(*) FROM eventstore.load_stream('live-7');\n", events=100, clients=2, db=db),
            ))
        rows = [f"| {archived_n:,} archived vs none | tx/s none | tx/s archived | ratio (archived / none) |",
                "|---|---|---|---|"]
        for hot, arch in zip(*variants):
            run_workload([hot, arch], seconds, work, rounds)
            rows.append(f"| {hot.name.split(',')[0]} | {hot.tps:.0f} | {arch.tps:.0f} | {ratio(arch, hot):.2f} |")
        for db in (hot_db, arch_db):
            psql(f"DROP DATABASE IF EXISTS {db}", db="postgres")
        section("6. Lifecycle",
                f"Each removal on a fresh stream of {'1,000' if args.smoke else '10,000'} events (payload "
                "`{\"customer\": {\"name\": …, \"email\": …}, \"amount\": k}`, metadata `{\"ip\": …}`), "
                "with ten snapshots and ten commands, in a store of other streams; psql's `\\timing`, commit "
                "included.\n\n" + ops + "\n\nTarget: hard delete and redaction of a path in 10,000 events each well "
                "under a second.\n\nTwo databases with the same live events, one of which first held "
                f"{archived_n:,} events, all archived since (and vacuumed): {sizes[hot_db]} / {sizes[arch_db]}. "
                "The variants alternate between them; read_all from 0 starts below every archived position.\n\n"
                + "\n".join(rows) + "\n\nTarget: with the archive as fast as without (ratio ≈ 1, within the "
                "machine's noise).")

    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    # A run of some workloads only gets its own name, so that it never replaces a full run's file.
    partial = "" if only >= set(WORKLOADS) else "-" + "-".join(sorted(only))
    now = datetime.datetime.utcnow()
    # results of another major than the default 15 say so in their name
    major = "" if os.environ.get("PG_MAJOR", "15") == "15" else "-pg" + os.environ["PG_MAJOR"]
    name = "smoke.md" if args.smoke else f"{now:%Y-%m-%d}{partial}{major}.md"
    path = os.path.join(HERE, "results", name)
    if not args.smoke and os.path.exists(path):
        # A second run of the same day keeps the first one's file (results are committed).
        path = os.path.join(HERE, "results", f"{now:%Y-%m-%d}{partial}{major}-{now:%H%M}.md")
    with open(path, "w") as f:
        f.write("\n".join(out))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
