//! pg_eventstore: an event store that lives inside PostgreSQL.
//!
//! The SQL contract (tables, triggers, function signatures) is `sql/schema.sql`; each module here
//! implements one concern of it. Entry points are plain V1 C functions so that jsonb payloads pass
//! through as datums and every statement runs from a plan prepared once per backend.

::pgrx::pg_module_magic!(name, version);

pgrx::extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);

#[macro_use]
mod fcall;
mod append;
mod commands;
mod compat;
mod direct;
mod distributed;
mod errors;
mod feed;
mod integrity;
mod jsonb;
mod lifecycle;
mod notifier;
mod read;
mod snapshots;
mod spi;
mod subscriptions;
mod verify;

#[pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    direct::init();
    notifier::init();
    commands::init();
}

#[cfg(any(test, feature = "pg_test"))]
mod tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
