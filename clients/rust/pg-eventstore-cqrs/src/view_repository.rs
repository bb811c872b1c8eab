//! Views (cqrs-es's `ViewRepository`) in a table of the application's, with the same layout as
//! postgres-es's: `view_id text PRIMARY KEY, version bigint, payload json(b)`. Views are the
//! application's read model, not part of the store.

use cqrs_es::persist::{PersistenceError, ViewContext, ViewRepository};
use cqrs_es::{Aggregate, View};
use sqlx::types::Json;
use sqlx::{Pool, Postgres};
use std::marker::PhantomData;

/// postgres-es: `PostgresViewRepository`.
pub struct PgEventStoreViewRepository<V, A> {
    select: String,
    insert: String,
    update: String,
    pool: Pool<Postgres>,
    _types: PhantomData<(V, A)>,
}

impl<V: View<A>, A: Aggregate> PgEventStoreViewRepository<V, A> {
    /// `view_name`: the table, optionally schema-qualified (`views.accounts`). It is quoted as an
    /// identifier, so it can be nothing but a table name.
    pub fn new(view_name: &str, pool: Pool<Postgres>) -> Self {
        let table = view_name.split('.').map(|p| format!("\"{}\"", p.replace('"', "\"\""))).collect::<Vec<_>>().join(".");
        PgEventStoreViewRepository {
            select: format!("SELECT version, payload::jsonb FROM {table} WHERE view_id = $1"),
            insert: format!("INSERT INTO {table} (payload, version, view_id) VALUES ($1, $2, $3)"),
            update: format!("UPDATE {table} SET payload = $1, version = $2 WHERE view_id = $3 AND version = $4"),
            pool,
            _types: PhantomData,
        }
    }
}

fn error(e: sqlx::Error) -> PersistenceError {
    match e.as_database_error().and_then(|d| d.code()).as_deref() {
        Some("23505") => PersistenceError::OptimisticLockError,
        _ if e.as_database_error().is_none() => PersistenceError::ConnectionError(Box::new(e)),
        _ => PersistenceError::UnknownError(Box::new(e)),
    }
}

impl<V: View<A>, A: Aggregate> ViewRepository<V, A> for PgEventStoreViewRepository<V, A> {
    async fn load(&self, view_id: &str) -> Result<Option<V>, PersistenceError> {
        Ok(self.load_with_context(view_id).await?.map(|(v, _)| v))
    }

    async fn load_with_context(&self, view_id: &str) -> Result<Option<(V, ViewContext)>, PersistenceError> {
        let row: Option<(i64, Json<serde_json::Value>)> =
            sqlx::query_as(&self.select).bind(view_id).fetch_optional(&self.pool).await.map_err(error)?;
        match row {
            None => Ok(None),
            Some((version, payload)) => {
                let view = serde_json::from_value(payload.0).map_err(|e| PersistenceError::DeserializationError(Box::new(e)))?;
                Ok(Some((view, ViewContext::new(view_id.to_string(), version))))
            }
        }
    }

    async fn update_view(&self, view: V, context: ViewContext) -> Result<(), PersistenceError> {
        let payload = serde_json::to_value(&view).map_err(|e| PersistenceError::DeserializationError(Box::new(e)))?;
        let sql = if context.version == 0 { &self.insert } else { &self.update };
        let done = sqlx::query(sql)
            .bind(Json(payload))
            .bind(context.version + 1)
            .bind(&context.view_instance_id)
            .bind(context.version)
            .execute(&self.pool)
            .await
            .map_err(error)?
            .rows_affected();
        if done == 1 { Ok(()) } else { Err(PersistenceError::OptimisticLockError) }
    }
}
