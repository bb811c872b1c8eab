//! Upgrades: every released version, installed from its own script, written to, and brought up to
//! date with ALTER EXTENSION ... UPDATE, must end up with exactly a fresh install's schema and keep
//! every row. tests/client.sh installs the released scripts (sql/pg_eventstore--<version>.sql).

use pg_eventstore_client_tests::*;

/// Every released version before the current one.
const RELEASED: &[&str] = &["0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0"];

#[test]
fn upgrade_from_every_release_equals_a_fresh_install_and_keeps_the_data() {
    let fresh_url = url_for("es_upgrade_fresh");
    let mut fresh = fresh_db(&fresh_url, "es_upgrade_fresh", None);
    let current = extension_version(&mut fresh);
    let expected = schema_fingerprint(&mut fresh);

    for old in RELEASED {
        let db = format!("es_upgrade_from_{}", old.replace('.', "_"));
        let u = url_for(&db);
        let mut c = fresh_db(&u, &db, Some(old));
        assert_eq!(&extension_version(&mut c), old);
        populate(&mut c);
        let columns = store_columns(&mut c);
        let before = store_digest_of(&mut c, &columns);

        c.batch_execute("ALTER EXTENSION pg_eventstore UPDATE").unwrap();
        assert_eq!(extension_version(&mut c), current, "ALTER EXTENSION UPDATE from {old} reaches the current version");

        let got = schema_fingerprint(&mut c);
        let missing: Vec<_> = expected.iter().filter(|l| !got.contains(l)).collect();
        let extra: Vec<_> = got.iter().filter(|l| !expected.contains(l)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "schema after upgrading from {old} differs from a fresh install\nonly in fresh install:\n{missing:#?}\nonly after upgrade:\n{extra:#?}"
        );
        assert_eq!(store_digest_of(&mut c, &columns), before, "upgrading from {old} changed the data");
        assert_eq!(violations(&mut c), Vec::<String>::new());

        // and the upgraded store works: appends continue the streams and the feed
        let seq: i64 = c.query_one("SELECT eventstore.append_event('acct-1', 'Account', 'Closed', '{}')", &[]).unwrap().get(0);
        assert_eq!(seq, 4);
        let polled = c.query("SELECT * FROM eventstore.poll('projection', 1000)", &[]).unwrap().len();
        assert!(polled > 0);
        // and the lifecycle functions work on what the older version wrote
        populate_lifecycle(&mut c);
        assert_eq!(violations(&mut c), Vec::<String>::new());
        drop(c);
        drop_db(&u, &db);
    }
    drop(fresh);
    drop_db(&fresh_url, "es_upgrade_fresh");
}
