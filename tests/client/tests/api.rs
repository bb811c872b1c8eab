//! The store as an application sees it over the wire: jsonb in and out, snapshots, causation,
//! and errors that carry a SQLSTATE and leave nothing behind.

use pg_eventstore_client_tests::*;
use serde_json::{json, Value};

#[test]
fn append_load_snapshot_roundtrip() {
    let mut c = connect();
    let s = unique("acct");
    let payload = json!({"owner": "Zoë", "tags": ["a", "b"], "nested": {"x": 1.5, "big": 12345678901234567i64}});
    let seq: i64 = c
        .query_one("SELECT eventstore.append_event($1, 'Account', 'Opened', $2, $3)", &[&s, &payload, &json!({"trace": "t-1"})])
        .unwrap()
        .get(0);
    assert_eq!(seq, 1);
    let batch = json!([{"type": "Deposited", "payload": {"amount": 10}}, {"type": "Deposited", "payload": {"amount": 5}}]);
    let last: i64 = c.query_one("SELECT eventstore.append_events($1, 'Account', $2, 1)", &[&s, &batch]).unwrap().get(0);
    assert_eq!(last, 3);
    let rows = c.query("SELECT sequence, event_type, payload, metadata FROM eventstore.load_stream($1)", &[&s]).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].get::<_, Value>(2), payload, "payload comes back exactly");
    assert_eq!(rows[0].get::<_, Value>(3), json!({"trace": "t-1"}));
    assert_eq!(rows[2].get::<_, String>(1), "Deposited");

    c.execute("SELECT eventstore.take_snapshot($1, 2, $2)", &[&s, &json!({"balance": 10})]).unwrap();
    let snap = c.query_one("SELECT sequence, payload FROM eventstore.load_snapshot($1)", &[&s]).unwrap();
    assert_eq!(snap.get::<_, i64>(0), 2);
    let tail = c.query("SELECT sequence FROM eventstore.load_stream($1, $2)", &[&s, &(snap.get::<_, i64>(0) + 1)]).unwrap();
    assert_eq!(tail.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>(), vec![3]);
}

#[test]
fn causation_over_the_wire() {
    let mut c = connect();
    let (a, m) = (unique("acct"), unique("mail"));
    let root: uuid::Uuid = c.query_one("SELECT eventstore.record_command('Open', '{}', $1, 'u-1')", &[&a]).unwrap().get(0);
    c.execute("SELECT eventstore.append_event($1, 'Account', 'Opened', '{}', command_id => $2)", &[&a, &root]).unwrap();
    let next: uuid::Uuid = c
        .query_one("SELECT eventstore.record_command('Mail', '{}', $1, NULL, $2, 1)", &[&m, &a])
        .unwrap()
        .get(0);
    c.execute("SELECT eventstore.append_event($1, 'Mail', 'Sent', '{}', command_id => $2)", &[&m, &next]).unwrap();
    let chain: Vec<(i32, String, Option<uuid::Uuid>)> = c
        .query("SELECT depth, kind, command_id FROM eventstore.causation_chain($1, 1)", &[&m])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        chain,
        vec![
            (0, "event".into(), Some(next)),
            (1, "command".into(), Some(next)),
            (2, "event".into(), Some(root)),
            (3, "command".into(), Some(root)),
        ]
    );
    let corr: uuid::Uuid = c.query_one("SELECT correlation_id FROM eventstore.commands WHERE command_id = $1", &[&next]).unwrap().get(0);
    assert_eq!(corr, root);
}

#[test]
fn bad_input_fails_cleanly_and_writes_nothing() {
    let mut c = connect();
    let s = unique("bad");
    let cases: Vec<(&str, &str)> = vec![
        ("SELECT eventstore.append_event(NULL, 'T', 'E', '{}')", "22004"),
        ("SELECT eventstore.append_event($1, 'T', 'E', '[]')", "22023"),
        ("SELECT eventstore.append_event($1, 'T', 'E', '{}', expected_version => -7)", "22023"),
        ("SELECT eventstore.append_events($1, 'T', '[{\"type\": \"E\", \"payload\": {}}, {\"type\": \"E\"}]')", "22023"),
        ("SELECT eventstore.append_event($1, 'T', 'E', '{}', command_id => gen_random_uuid())", "23503"),
        ("SELECT eventstore.append_event($1, 'T', 'E', '{}', expected_version => 3)", "40001"),
        ("SELECT eventstore.take_snapshot($1, 1, '{}')", "23503"),
    ];
    for (sql, code) in cases {
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> = if sql.contains("$1") { vec![&s] } else { vec![] };
        let e = c.query(sql, &params).expect_err(sql);
        let (got, message) = db_error(&e);
        assert_eq!(got, code, "{sql}: {message}");
        assert_clean_message(&message);
    }
    let n: i64 = c.query_one("SELECT count(*) FROM eventstore.streams WHERE stream_id = $1", &[&s]).unwrap().get(0);
    assert_eq!(n, 0, "nothing half-written");
}

#[test]
fn a_failed_append_in_a_transaction_rolls_back_with_it() {
    let mut c = connect();
    let s = unique("tx");
    let mut tx = c.transaction().unwrap();
    tx.execute("SELECT eventstore.append_event($1, 'T', 'A', '{}')", &[&s]).unwrap();
    tx.execute("SELECT eventstore.append_event($1, 'T', 'B', '{}')", &[&s]).unwrap();
    let e = tx.execute("SELECT eventstore.append_event($1, 'T', 'C', '{}', expected_version => 1)", &[&s]).unwrap_err();
    assert_eq!(db_error(&e).0, "40001");
    drop(tx);
    assert_eq!(version(&mut c, &s), 0, "the whole transaction is gone");
}
