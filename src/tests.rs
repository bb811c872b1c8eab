//! #[pg_test]s
