//! `#[pg_test]`s: the Rust side of the store, run inside a Postgres backend by `cargo pgrx test`.

#[pgrx::pg_schema]
mod tests {
    use crate::{integrity, jsonb};
    use pgrx::prelude::*;
    use pgrx::{IntoDatum, JsonB};
    use serde_json::json;

    fn one_i64(sql: &str) -> i64 {
        Spi::get_one::<i64>(sql).unwrap().unwrap()
    }

    /// The direct path is taken only for a table whose definition is the extension's own: a fresh
    /// install's tables must read exactly as sql/table_definition.expected says, or every append
    /// would quietly go through SQL.
    #[pg_test]
    fn a_fresh_install_has_the_definitions_the_direct_path_expects() {
        for (name, table) in [("commands", c"commands"), ("events", c"events"), ("stream_types", c"stream_types"), ("streams", c"streams")] {
            let relid = integrity::store_relid(table).unwrap();
            assert_eq!(crate::direct::definition(relid), crate::direct::expected_definition(name), "definition of {name}");
        }
    }

    /// A new stream is created directly, and its type's snapshot threshold is applied as the
    /// streams trigger applies it to a row inserted with SQL.
    #[pg_test]
    fn a_new_stream_gets_its_types_threshold() {
        Spi::run("SELECT eventstore.set_snapshot_threshold('Thresholded', 7)").unwrap();
        assert_eq!(one_i64("SELECT eventstore.append_event('t-new-1', 'Thresholded', 'A', '{}')"), 1);
        assert_eq!(one_i64("SELECT snapshot_threshold FROM eventstore.streams WHERE stream_id = 't-new-1'"), 7);
        assert!(crate::direct::remembered_stream("t-new-1").is_some(), "created directly");
        assert_eq!(one_i64("SELECT eventstore.append_event('t-new-2', 'Plain', 'A', '{}')"), 1);
        let threshold = Spi::get_one::<i32>("SELECT snapshot_threshold FROM eventstore.streams WHERE stream_id = 't-new-2'");
        assert_eq!(threshold, Ok(None));
        assert_eq!(one_i64("SELECT count(*) FROM eventstore.verify()"), 0);
    }

    #[pg_test]
    fn append_returns_the_new_version() {
        assert_eq!(one_i64("SELECT eventstore.append_event('t-1', 'T', 'A', '{}')"), 1);
        assert_eq!(one_i64("SELECT eventstore.append_event('t-1', 'T', 'B', '{\"x\": 1}', expected_version => 1)"), 2);
        assert_eq!(
            one_i64("SELECT eventstore.append_events('t-1', 'T', '[{\"type\": \"C\", \"payload\": {}}, {\"type\": \"D\", \"payload\": {}}]', 2)"),
            4
        );
        assert_eq!(one_i64("SELECT eventstore.stream_version('t-1')"), 4);
        assert_eq!(one_i64("SELECT count(*) FROM eventstore.load_stream('t-1', 2, 2)"), 2);
    }

    /// An append finds its stream's row through the TID this backend wrote last; whatever is at a
    /// remembered TID that is not the row's visible version sends it through the index instead.
    #[pg_test]
    fn a_stream_row_is_found_again_by_its_tid_and_never_by_a_wrong_one() {
        use pgrx::pg_sys::{BlockIdData, ItemPointerData};
        let tid = |block: u32, offset: u16| ItemPointerData {
            ip_blkid: BlockIdData { bi_hi: (block >> 16) as u16, bi_lo: block as u16 },
            ip_posid: offset,
        };
        let versions = || -> (i64, i64) {
            (one_i64("SELECT version FROM eventstore.streams WHERE stream_id = 't-tid-a'"),
             one_i64("SELECT version FROM eventstore.streams WHERE stream_id = 't-tid-b'"))
        };
        let append = |s: &str| one_i64(&format!("SELECT eventstore.append_event('{s}', 'T', 'A', '{{}}')"));
        // each append remembers where it wrote its stream's row
        for s in ["t-tid-a", "t-tid-a", "t-tid-b", "t-tid-b"] {
            append(s);
        }
        assert!(crate::direct::remembered_stream("t-tid-a").is_some(), "the append did not remember its row");
        // another stream's row
        crate::direct::remember_stream("t-tid-a", crate::direct::remembered_stream("t-tid-b").unwrap());
        assert_eq!(append("t-tid-a"), 3);
        assert_eq!(versions(), (3, 2));
        // past the end of the table, past the last item of a page
        crate::direct::remember_stream("t-tid-a", tid(100_000, 1));
        assert_eq!(append("t-tid-a"), 4);
        crate::direct::remember_stream("t-tid-a", tid(0, 1000));
        assert_eq!(append("t-tid-a"), 5);
        // a version that SQL has replaced since (set_snapshot_threshold updates the rows of a type)
        Spi::run("SELECT eventstore.set_snapshot_threshold('T', 50)").unwrap();
        assert_eq!(append("t-tid-a"), 6);
        assert_eq!(versions(), (6, 2));
        assert_eq!(one_i64("SELECT snapshot_threshold FROM eventstore.streams WHERE stream_id = 't-tid-a'"), 50);
        assert_eq!(one_i64("SELECT count(*) FROM eventstore.verify()"), 0);
    }

    #[pg_test]
    fn generated_ids_are_uuid_v7_with_the_current_time() {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
        let (a, b) = (crate::append::new_v7(), crate::append::new_v7());
        for id in [a, b] {
            let u = uuid::Uuid::from_u128(id);
            assert_eq!(u.get_version_num(), 7, "{u}");
            assert_eq!(u.get_variant(), uuid::Variant::RFC4122, "{u}");
            assert!(crate::append::may_be_generated(id), "{u}");
            let ms = id >> 80;
            assert!(ms + 1000 >= now && ms <= now + 1000, "{u}: {ms} is not about {now}");
        }
        assert_ne!(a, b);
        Spi::run("SELECT eventstore.append_events('t-ids', 'T', '[{\"type\": \"A\", \"payload\": {}}, {\"type\": \"B\", \"payload\": {}}]')").unwrap();
        let ordered = Spi::get_one::<bool>(
            "SELECT bool_and(substr(event_id::text, 15, 1) = '7') AND (array_agg(event_id ORDER BY sequence))[1] < (array_agg(event_id ORDER BY sequence))[2] FROM eventstore.events WHERE stream_id = 't-ids'",
        );
        assert_eq!(ordered, Ok(Some(true)));
        // the mark, also on the later ids of a batch; a random (v4) id never looks generated
        for id in Spi::get_one::<Vec<pgrx::Uuid>>("SELECT array_agg(event_id) FROM eventstore.events WHERE stream_id = 't-ids'").unwrap().unwrap() {
            assert!(crate::append::may_be_generated(u128::from_be_bytes(*id.as_bytes())));
        }
        assert!(!crate::append::may_be_generated(uuid::Uuid::new_v4().as_u128()));
    }

    #[pg_test]
    fn statements_are_planned_once() {
        Spi::run("SELECT eventstore.append_event('t-plan', 'T', 'A', '{}')").unwrap();
        for _ in 0..10 {
            one_i64("SELECT count(*) FROM eventstore.read_all(0, 10)");
            one_i64("SELECT count(*) FROM eventstore.read_all(0, 10, ARRAY['T'])");
            one_i64("SELECT count(*) FROM eventstore.load_stream('t-plan', 1, 10)");
            one_i64("SELECT count(*) FROM eventstore.read_stream_backward('t-plan')");
        }
        let (custom, kept) = crate::spi::custom_plan_count();
        assert!(kept >= 4, "only {kept} plans kept");
        assert_eq!(custom, 0, "statements were re-planned for their parameters");
    }

    #[pg_test]
    fn verify_finds_what_the_triggers_were_kept_from_seeing() {
        Spi::run("SELECT eventstore.append_events('t-v', 'T', '[{\"type\": \"A\", \"payload\": {}}, {\"type\": \"B\", \"payload\": {}}]')").unwrap();
        assert_eq!(one_i64("SELECT count(*) FROM eventstore.verify()"), 0);
        // replica mode switches the triggers (and foreign keys) off, as a restore does
        Spi::run("SET LOCAL session_replication_role = replica").unwrap();
        Spi::run("INSERT INTO eventstore.snapshots (stream_id, sequence, payload) VALUES ('t-v', 7, '{}')").unwrap();
        Spi::run("UPDATE eventstore.streams SET version = 3 WHERE stream_id = 't-v'").unwrap();
        Spi::run("SET LOCAL session_replication_role = origin").unwrap();
        let found = Spi::get_one::<String>("SELECT string_agg(invariant, ',' ORDER BY invariant) FROM eventstore.verify()")
            .unwrap()
            .unwrap();
        assert_eq!(found, "snapshot_range,stream_version");
    }

    #[pg_test]
    fn payloads_pass_through_unchanged() {
        Spi::run("SELECT eventstore.append_event('t-2', 'T', 'A', '{\"a\": [1, 2.50, null, \"é\"], \"b\": {\"c\": true}}')").unwrap();
        let p = Spi::get_one::<JsonB>("SELECT payload FROM eventstore.load_stream('t-2')").unwrap().unwrap();
        assert_eq!(p.0, json!({"a": [1, 2.50, null, "é"], "b": {"c": true}}));
    }

    #[pg_test(error = "concurrency conflict on stream \"t-3\": expected version 5, actual version 1")]
    fn stale_expected_version_is_a_conflict() {
        Spi::run("SELECT eventstore.append_event('t-3', 'T', 'A', '{}')").unwrap();
        Spi::run("SELECT eventstore.append_event('t-3', 'T', 'A', '{}', expected_version => 5)").unwrap();
    }

    #[pg_test(error = "events[2]: \"payload\" is required")]
    fn batch_elements_are_checked_before_writing() {
        Spi::run("SELECT eventstore.append_events('t-4', 'T', '[{\"type\": \"A\", \"payload\": {}}, {\"type\": \"B\"}]')").unwrap();
    }

    #[pg_test(error = "eventstore.events is append-only: DELETE is not allowed")]
    fn events_cannot_be_deleted() {
        Spi::run("SELECT eventstore.append_event('t-5', 'T', 'A', '{}')").unwrap();
        Spi::run("DELETE FROM eventstore.events").unwrap();
    }

    #[pg_test]
    fn jsonb_kinds_are_read_from_the_binary_header() {
        for (value, kind) in [(json!({"a": 1}), "an object"), (json!([1]), "an array"), (json!(3), "a scalar")] {
            let d = JsonB(value).into_datum().unwrap();
            let (_, root) = jsonb::root(d);
            assert_eq!(jsonb::kind_of(root), kind);
            assert_eq!(jsonb::is_object(root), kind == "an object");
            assert_eq!(jsonb::is_array(root), kind == "an array");
        }
    }

    #[pg_test]
    fn walk_yields_keys_and_nested_values() {
        let d = JsonB(json!({"type": "A", "payload": {"x": 1}, "version": 2})).into_datum().unwrap();
        let (_, root) = jsonb::root(d);
        let mut walk = jsonb::Walk::new(root);
        let mut keys = Vec::new();
        while let Some((_, key)) = walk.next() {
            let jsonb::Value::String(k) = key else { panic!("key expected") };
            let (_, value) = walk.next().unwrap();
            if k == "payload" {
                let nested = value.to_datum().unwrap();
                let back = unsafe { JsonB::from_datum(nested, false) }.unwrap();
                assert_eq!(back.0, json!({"x": 1}));
            }
            keys.push(k);
        }
        keys.sort();
        assert_eq!(keys, vec!["payload", "type", "version"]);
    }

    #[pg_test]
    fn positions_increase_and_horizon_covers_own_transaction() {
        let own = Spi::get_one::<i64>("SELECT pg_current_xact_id()::text::bigint").unwrap().unwrap();
        let (p1, h1) = integrity::take_position();
        let (p2, h2) = integrity::take_position();
        assert!(p2 > p1);
        assert!(h1 as i64 > own && h2 >= h1, "horizon {h1} is above this transaction's id {own}");
    }

    #[pg_test]
    fn a_grant_covers_exactly_its_rows() {
        let g = integrity::grant("s", 3, 4, 2);
        assert!(integrity::event_granted("s", 3));
        assert!(!integrity::event_granted("s", 3), "each row is granted once");
        assert!(!integrity::event_granted("other", 4));
        assert!(integrity::event_granted("s", 4));
        assert!(!integrity::event_granted("s", 5), "nothing past the last sequence");
        drop(g);
        assert!(!integrity::event_granted("s", 5));
    }

    #[pg_test]
    fn correlation_follows_the_causing_event() {
        let root = Spi::get_one::<pgrx::Uuid>("SELECT eventstore.record_command('Open', '{}', 't-6')").unwrap().unwrap();
        Spi::run(&format!("SELECT eventstore.append_event('t-6', 'T', 'Opened', '{{}}', command_id => '{root}')")).unwrap();
        let child = Spi::get_one::<pgrx::Uuid>(
            "SELECT eventstore.record_command('Next', '{}', caused_by_stream_id => 't-6', caused_by_sequence => 1)",
        )
        .unwrap()
        .unwrap();
        let corr = Spi::get_one::<pgrx::Uuid>(&format!(
            "SELECT correlation_id FROM eventstore.commands WHERE command_id = '{child}'"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(corr, root);
        assert_eq!(one_i64("SELECT count(*) FROM eventstore.causation_chain('t-6', 1)"), 2);
    }

    #[pg_test]
    fn the_feed_holds_back_events_of_a_running_transaction() {
        // The test runs inside one transaction, which is still running when it reads: its own
        // events are not settled yet, so a reader must not get past them.
        Spi::run("SELECT eventstore.append_event('t-7', 'T', 'A', '{}')").unwrap();
        assert_eq!(one_i64("SELECT count(*) FROM eventstore.events WHERE stream_id = 't-7'"), 1);
        assert_eq!(one_i64("SELECT count(*) FROM eventstore.read_all()"), 0);
        assert_eq!(one_i64("SELECT lagging_events FROM eventstore.feed_status()"), 1);
    }

    #[pg_test]
    fn consumer_group_arguments_are_checked() {
        use crate::feed::check_group;
        assert_eq!(check_group(None, None), None);
        assert_eq!(check_group(Some(2), Some(3)), Some((2, 3)));
    }

    #[pg_test(error = "consumer_group_member must be between 0 and consumer_group_size - 1 (size 3 must be 1 or more), not 3")]
    fn consumer_group_member_must_be_below_size() {
        crate::feed::check_group(Some(3), Some(3));
    }

    #[pg_test]
    fn the_cluster_bound_is_above_every_horizon_made_here() {
        Spi::run("SELECT eventstore.append_event('t-8', 'T', 'A', '{}')").unwrap();
        let horizon = Spi::get_one::<i64>("SELECT horizon_xid::text::bigint FROM eventstore.events WHERE stream_id = 't-8'")
            .unwrap()
            .unwrap();
        assert!(crate::feed::cluster_next_xid() >= horizon as u64);
    }

    #[pg_test]
    fn redaction_nulls_each_path_where_it_exists() {
        let got = Spi::get_one::<pgrx::JsonB>(
            r#"SELECT eventstore.redact_json('{"a": {"b": 1, "c": 2}, "l": [{"s": "x"}, {"s": "y", "t": 3}], "k": 4}',
                                              '{a.b, l.*.s, l.1.t, missing.x, k.deeper}')"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            got.0,
            serde_json::json!({"a": {"b": null, "c": 2}, "l": [{"s": null}, {"s": null, "t": null}], "k": 4})
        );
    }

    #[pg_test]
    fn a_hard_delete_leaves_a_tombstone_and_an_audit_entry() {
        Spi::run("SELECT eventstore.append_events('t-9', 'T', '[{\"type\": \"A\", \"payload\": {}}, {\"type\": \"B\", \"payload\": {}}]')").unwrap();
        assert_eq!(one_i64("SELECT eventstore.delete_stream('t-9', 2, hard => true, reason => 'test')"), 2);
        assert_eq!(one_i64("SELECT count(*) FROM eventstore.events WHERE stream_id = 't-9'"), 0);
        assert_eq!(one_i64("SELECT count(*) FROM eventstore.streams WHERE stream_id = 't-9' AND state = 'tombstone'"), 1);
        assert_eq!(one_i64("SELECT rows FROM eventstore.audit_log WHERE stream_id = 't-9' AND reason = 'test'"), 2);
        assert_eq!(one_i64("SELECT count(*) FROM eventstore.verify()"), 0);
    }

    #[pg_test(error = "stream \"t-10\" was deleted permanently")]
    fn a_tombstone_refuses_appends() {
        Spi::run("SELECT eventstore.append_event('t-10', 'T', 'A', '{}')").unwrap();
        Spi::run("SELECT eventstore.delete_stream('t-10', hard => true, reason => 'test')").unwrap();
        Spi::run("SELECT eventstore.append_event('t-10', 'T', 'A', '{}')").unwrap();
    }
}
