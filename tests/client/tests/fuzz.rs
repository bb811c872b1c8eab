//! Hostile input: random and malformed arguments — NULLs everywhere, empty and huge strings, odd
//! Unicode, deep and huge JSON, wrong JSON shapes, extreme numbers — thrown at every function.
//! Each call must either succeed or fail with a clear SQLSTATE (never an internal error, never
//! panic text), the backend must survive, and a failed call must leave the store exactly as it was.
//! FUZZ_CASES (default 3000) and FUZZ_SEED (default 1) replay or lengthen a run.

use pg_eventstore_client_tests::*;
use postgres::Client;

#[derive(Clone, Copy)]
enum T {
    Text,
    Json,
    Big,
    Int,
    Uuid,
    Arr,
    Bool,
    Interval,
    BigArr,
    Paths,
    Ts,
}

const FUNCTIONS: &[(&str, &[T])] = &[
    ("append_event", &[T::Text, T::Text, T::Text, T::Json, T::Json, T::Big, T::Uuid, T::Uuid, T::Int]),
    ("append_events", &[T::Text, T::Text, T::Json, T::Big, T::Uuid]),
    ("load_stream", &[T::Text, T::Big, T::Big]),
    ("stream_version", &[T::Text]),
    ("take_snapshot", &[T::Text, T::Big, T::Json, T::Int]),
    ("load_snapshot", &[T::Text, T::Big]),
    ("set_snapshot_threshold", &[T::Text, T::Int]),
    ("streams_needing_snapshot", &[T::Int]),
    ("record_command", &[T::Text, T::Json, T::Text, T::Text, T::Text, T::Big, T::Uuid]),
    ("causation_chain", &[T::Text, T::Big]),
    ("read_all", &[T::Big, T::Int, T::Arr, T::Arr, T::Int, T::Int]),
    ("feed_status", &[]),
    ("read_stream_backward", &[T::Text, T::Big, T::Big]),
    ("last_event", &[T::Text]),
    ("read_category_backward", &[T::Text, T::Int, T::Big]),
    ("create_subscription", &[T::Text, T::Arr, T::Arr, T::Big]),
    ("delete_subscription", &[T::Text]),
    ("poll", &[T::Text, T::Int]),
    ("ack", &[T::Text, T::Big]),
    ("verify", &[]),
    ("delete_stream", &[T::Text, T::Big, T::Bool, T::Bool, T::Text]),
    ("truncate_stream", &[T::Text, T::Big, T::Text]),
    ("set_retention", &[T::Text, T::Interval, T::Big, T::Bool]),
    ("apply_retention", &[]),
    ("archive_stream", &[T::Text, T::Big]),
    ("restore_stream", &[T::Text]),
    ("load_archived_stream", &[T::Text, T::Big, T::Big]),
    ("erase_stream", &[T::Text, T::Text]),
    ("redact_events", &[T::Text, T::BigArr, T::Paths, T::Text]),
    ("redact_command", &[T::Uuid, T::Paths, T::Text]),
    ("delete_commands_without_events", &[T::Text, T::Ts, T::Text]),
];

fn sql_type(t: T) -> &'static str {
    match t {
        T::Text => "text",
        T::Json => "jsonb",
        T::Big => "bigint",
        T::Int => "integer",
        T::Uuid => "uuid",
        T::Arr | T::Paths => "text[]",
        T::Bool => "boolean",
        T::Interval => "interval",
        T::BigArr => "bigint[]",
        T::Ts => "timestamptz",
    }
}

const KNOWN_UUID: &str = "f0000000-0000-4000-8000-000000000001";

fn deep(depth: usize, object: bool) -> String {
    if object {
        format!("{}1{}", "{\"a\": ".repeat(depth), "}".repeat(depth))
    } else {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }
}

fn text(rng: &mut Rng) -> Option<String> {
    Some(match rng.below(14) {
        0 => return None,
        1 => String::new(),
        2 => " ".into(),
        3 => "fuzz-1".into(),
        4 => "fuzz-2".into(),
        5 => "Fuzz".into(),
        6 => "Zoë ✓ 𝄞 \u{202e}RTL\u{202c} \u{200b}zero-width e\u{301}".into(),
        7 => "x".repeat(3000), // past the btree key limit
        8 => "y".repeat(1 + rng.below(200_000) as usize),
        9 => "nul\u{0}byte".into(),
        10 => "'; DROP TABLE eventstore.events; --".into(),
        11 => "\u{feff}\u{fffd}\u{10ffff}".into(),
        12 => "sub-1".into(),
        _ => format!("fuzz-{}", rng.below(5)),
    })
}

fn event(rng: &mut Rng) -> String {
    match rng.below(10) {
        0 => r#"{"type": "Ok", "payload": {}}"#.into(),
        1 => r#"{"type": "", "payload": {}}"#.into(),
        2 => r#"{"type": 1, "payload": {}}"#.into(),
        3 => r#"{"payload": {}}"#.into(),
        4 => r#"{"type": "Ok", "payload": [1]}"#.into(),
        5 => format!(r#"{{"type": "Ok", "payload": {{}}, "id": "{KNOWN_UUID}"}}"#),
        6 => r#"{"type": "Ok", "payload": {}, "id": "not-a-uuid"}"#.into(),
        7 => r#"{"type": "Ok", "payload": {}, "version": -3, "metadata": "m"}"#.into(),
        8 => "17".into(),
        _ => r#"{"type": "Ok", "payload": {"n": 1e300}, "metadata": {"k": "\u00e9"}, "version": 2147483647}"#.into(),
    }
}

fn json(rng: &mut Rng) -> Option<String> {
    Some(match rng.below(16) {
        0 => return None,
        1 => "{}".into(),
        2 => "[]".into(),
        3 => "null".into(),
        4 => "\"s\"".into(),
        5 => "123.5e10".into(),
        6 => deep(1 + rng.below(2000) as usize, rng.below(2) == 0),
        7 => deep(200_000, false), // past the parser's stack limit
        8 => format!("{{\"big\": \"{}\"}}", "z".repeat(1 + rng.below(2_000_000) as usize)),
        9 => r#"{"nul": "\u0000"}"#.into(), // jsonb refuses \u0000
        10 => r#"{"n": 1e100000, "m": -0, "k": 123456789012345678901234567890}"#.into(),
        11 => "{\"ключ\": \"値\", \"\u{1F600}\": [true, false, null]}".into(),
        12 => "{not json".into(),
        _ => {
            let n = rng.below(6) as usize;
            let items: Vec<String> = (0..n).map(|_| event(rng)).collect();
            format!("[{}]", items.join(", "))
        }
    })
}

fn big(rng: &mut Rng) -> Option<String> {
    let v = *rng.pick(&[
        "0", "1", "2", "3", "-1", "-2", "100", "9223372036854775807", "-9223372036854775808", "4611686018427387904",
    ]);
    (rng.below(8) != 0).then(|| v.to_string())
}

fn int(rng: &mut Rng) -> Option<String> {
    let v = *rng.pick(&["0", "1", "2", "-1", "5", "1000", "2147483647", "-2147483648"]);
    (rng.below(8) != 0).then(|| v.to_string())
}

fn uuid(rng: &mut Rng) -> Option<String> {
    match rng.below(4) {
        0 => None,
        1 => Some(KNOWN_UUID.into()),
        _ => Some(uuid::Uuid::new_v4().to_string()),
    }
}

fn arr(rng: &mut Rng) -> Option<String> {
    Some(match rng.below(7) {
        0 => return None,
        1 => "{}".into(),
        2 => "{NULL}".into(),
        3 => "{\"\"}".into(),
        4 => "{Fuzz,Other}".into(),
        5 => format!("{{{}}}", (0..10_000).map(|i| format!("t{i}")).collect::<Vec<_>>().join(",")),
        _ => "{Fuzz}".into(),
    })
}

fn value(rng: &mut Rng, t: T) -> Option<String> {
    match t {
        T::Text => text(rng),
        T::Json => json(rng),
        T::Big => big(rng),
        T::Int => int(rng),
        T::Uuid => uuid(rng),
        T::Arr => arr(rng),
        T::Bool => [None, Some("true".to_string()), Some("false".to_string())][rng.below(3) as usize].clone(),
        T::Interval => [None, Some("1 day".into()), Some("-1 day".into()), Some("0".into()), Some("1000000 years".into()), Some("1 microsecond".into())]
            [rng.below(6) as usize]
            .clone(),
        T::BigArr => [None, Some("{}".into()), Some("{1}".into()), Some("{1,2,NULL}".into()), Some("{-1,9223372036854775807}".into())]
            [rng.below(5) as usize]
            .clone(),
        T::Paths => [
            None,
            Some("{}".into()),
            Some("{NULL}".into()),
            Some("{payload}".into()),
            Some("{payload.a,metadata.b}".into()),
            Some("{payload.*.x,payload..y}".into()),
            Some("{metadata.0.1.2}".into()),
            Some("{other.a}".into()),
        ][rng.below(8) as usize]
            .clone(),
        T::Ts => [None, Some("now".into()), Some("-infinity".into()), Some("infinity".into())][rng.below(4) as usize].clone(),
    }
}

fn counts(c: &mut Client) -> Vec<i64> {
    let r = c
        .query_one(
            "SELECT (SELECT count(*) FROM eventstore.events), (SELECT count(*) FROM eventstore.streams), \
                    (SELECT count(*) FROM eventstore.commands), (SELECT count(*) FROM eventstore.snapshots), \
                    (SELECT count(*) FROM eventstore.stream_types), (SELECT count(*) FROM eventstore.subscription_state), \
                    (SELECT COALESCE(sum(version), 0)::bigint FROM eventstore.streams), \
                    (SELECT count(*) FROM eventstore.archived_events), (SELECT count(*) FROM eventstore.audit_log), \
                    (SELECT count(*) FROM eventstore.streams WHERE state <> 'live')",
            &[],
        )
        .unwrap();
    (0..10).map(|i| r.get(i)).collect()
}

fn describe(args: &[Option<String>]) -> String {
    args.iter()
        .map(|a| match a {
            None => "NULL".to_string(),
            Some(s) if s.len() > 60 => format!("<{} bytes: {}…>", s.len(), s.chars().take(30).collect::<String>()),
            Some(s) => format!("{s:?}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn random_and_malformed_arguments_to_every_function() {
    let cases: u64 = env_or("FUZZ_CASES", 3000);
    let seed: u64 = env_or("FUZZ_SEED", 1);
    let u = url_for("es_fuzz");
    let mut c = fresh_db(&u, "es_fuzz", None);
    c.batch_execute("SELECT eventstore.record_command('Seed', '{}', command_id => 'f0000000-0000-4000-8000-000000000001')").unwrap();
    c.batch_execute("SELECT eventstore.append_event('fuzz-1', 'Fuzz', 'Seeded', '{}')").unwrap();
    c.batch_execute("SELECT eventstore.create_subscription('sub-1')").unwrap();
    let mut rng = Rng::new(seed);
    let (mut ok, mut failed) = (0u64, std::collections::BTreeMap::<String, u64>::new());
    for case in 0..cases {
        let (name, types) = *rng.pick(FUNCTIONS);
        let args: Vec<Option<String>> = types.iter().map(|t| value(&mut rng, *t)).collect();
        let params: Vec<String> = types.iter().enumerate().map(|(i, t)| format!("${}::text::{}", i + 1, sql_type(*t))).collect();
        let sql = format!("SELECT count(*) FROM eventstore.{name}({})", params.join(", "));
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
            args.iter().map(|a| a as &(dyn postgres::types::ToSql + Sync)).collect();
        let before = counts(&mut c);
        match c.query_one(&sql, &refs) {
            Ok(_) => ok += 1,
            Err(e) => {
                let Some(db) = e.as_db_error() else {
                    panic!("case {case}: {name}({}) lost the connection: {e}", describe(&args));
                };
                let code = db.code().code();
                assert!(
                    !code.starts_with("XX") && !code.starts_with("58"),
                    "case {case}: {name}({}) raised an internal error {code}: {}",
                    describe(&args),
                    db.message()
                );
                assert_clean_message(db.message());
                assert_eq!(counts(&mut c), before, "case {case}: failed {name}({}) wrote something", describe(&args));
                *failed.entry(code.to_string()).or_default() += 1;
            }
        }
        c.query_one("SELECT 1", &[]).unwrap_or_else(|e| panic!("case {case}: backend gone after {name}: {e}"));
    }
    assert_eq!(violations(&mut c), Vec::<String>::new());
    println!("{cases} cases (seed {seed}): {ok} succeeded, failures by SQLSTATE: {failed:?}");
    assert!(ok > cases / 20, "too few calls succeeded ({ok}) for the run to mean much");
    drop(c);
    drop_db(&u, "es_fuzz");
}

/// The largest values Postgres takes: a payload of ~200 MB is stored and read back whole; one past
/// jsonb's limit (a string of 256 MiB or more) is refused with 54000 and leaves nothing behind.
#[test]
fn payloads_at_the_limits() {
    let u = url_for("es_limits");
    let mut c = fresh_db(&u, "es_limits", None);
    let big = format!("{{\"s\": \"{}\"}}", "a".repeat(200 << 20));
    let seq: i64 = c
        .query_one("SELECT eventstore.append_event('huge', 'Blob', 'Stored', $1::text::jsonb)", &[&big])
        .unwrap()
        .get(0);
    assert_eq!(seq, 1);
    drop(big);
    let len: i32 = c.query_one("SELECT length(payload->>'s') FROM eventstore.load_stream('huge')", &[]).unwrap().get(0);
    assert_eq!(len, 200 << 20);

    let too_big = format!("{{\"s\": \"{}\"}}", "b".repeat(256 << 20));
    let e = c
        .query_one("SELECT eventstore.append_event('huge', 'Blob', 'Stored', $1::text::jsonb)", &[&too_big])
        .unwrap_err();
    assert_eq!(db_error(&e).0, "54000");
    drop(too_big);
    let deep = deep(500_000, false);
    let e = c.query_one("SELECT eventstore.append_event('huge', 'Blob', 'Deep', $1::text::jsonb)", &[&deep]).unwrap_err();
    assert_eq!(db_error(&e).0, "54001", "nesting past max_stack_depth is refused");
    assert_eq!(version(&mut c, "huge"), 1);
    assert_eq!(violations(&mut c), Vec::<String>::new());
    drop(c);
    drop_db(&u, "es_limits");
}
