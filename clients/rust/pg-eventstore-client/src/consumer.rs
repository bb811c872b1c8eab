//! A worker for a durable subscription: it LISTENs for the feed's notifications, polls the
//! subscription on a connection of its own (the lease belongs to that session), hands each batch
//! to the application, acknowledges it once the handler succeeded, and reconnects with backoff.

use crate::store::feed_event;
use crate::{Error, RecordedEvent};
use sqlx::postgres::{PgListener, PgPool};
use std::future::Future;
use std::time::Duration;

/// See the module documentation; made by [`crate::EventStore::consumer`].
pub struct Consumer {
    pool: PgPool,
    name: String,
    batch: i32,
    idle_poll: Duration,
    max_backoff: Duration,
    channel: String,
}

/// How a consumer's run ended, or what it tells the application on the way.
#[derive(Debug)]
pub enum ConsumerEvent<'a> {
    /// The handler failed; the batch is delivered again after `retry_in`.
    HandlerFailed { error: &'a str, retry_in: Duration },
    /// The connection failed; the consumer reconnects after `retry_in`.
    Disconnected { error: &'a Error, retry_in: Duration },
}

impl Consumer {
    pub(crate) fn new(pool: PgPool, name: &str) -> Consumer {
        Consumer {
            pool,
            name: name.to_string(),
            batch: 100,
            idle_poll: Duration::from_secs(5),
            max_backoff: Duration::from_secs(30),
            channel: "eventstore".to_string(),
        }
    }

    /// Events per batch (default 100).
    pub fn batch_size(mut self, n: i32) -> Consumer {
        self.batch = n;
        self
    }

    /// How long to wait without a notification before polling anyway (default 5 s): notifications
    /// can be lost while the consumer is not listening, the subscription cannot.
    pub fn idle_poll(mut self, d: Duration) -> Consumer {
        self.idle_poll = d;
        self
    }

    /// The longest pause between retries (default 30 s).
    pub fn max_backoff(mut self, d: Duration) -> Consumer {
        self.max_backoff = d;
        self
    }

    /// The channel to LISTEN on: "eventstore" (default) or "eventstore.<stream_type>".
    pub fn channel(mut self, channel: &str) -> Consumer {
        self.channel = channel.to_string();
        self
    }

    /// Runs until `shutdown` completes. Each batch goes to `handler`; when it returns Ok the batch
    /// is acknowledged, when it returns Err the same batch is delivered again after a pause
    /// (at-least-once). `on_event` hears about failures and retries.
    pub async fn run<H, Fut, E>(
        &self,
        mut handler: H,
        mut on_event: impl FnMut(ConsumerEvent<'_>),
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error>
    where
        H: FnMut(Vec<RecordedEvent>) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(100);
        loop {
            let session = self.session(&mut handler, &mut on_event, &mut backoff);
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                result = session => match result {
                    Err(e @ (Error::Connection(_) | Error::Database { .. })) => {
                        on_event(ConsumerEvent::Disconnected { error: &e, retry_in: backoff });
                        tokio::select! {
                            _ = &mut shutdown => return Ok(()),
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(self.max_backoff);
                    }
                    Err(e) => return Err(e),
                    Ok(()) => unreachable!("a session ends only with an error"),
                }
            }
        }
    }

    async fn session<H, Fut, E>(
        &self,
        handler: &mut H,
        on_event: &mut impl FnMut(ConsumerEvent<'_>),
        backoff: &mut Duration,
    ) -> Result<(), Error>
    where
        H: FnMut(Vec<RecordedEvent>) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(&self.channel).await?;
        // One session for poll and ack: the subscription's lease is that session's.
        let mut conn = self.pool.acquire().await?;
        loop {
            let rows = sqlx::query(
                "SELECT global_position, stream_id, stream_type, sequence, event_type, event_version, payload, \
                 metadata, event_id, command_id, created_at FROM eventstore.poll($1, $2)",
            )
            .bind(&self.name)
            .bind(self.batch)
            .fetch_all(&mut *conn)
            .await?;
            let events: Vec<RecordedEvent> = rows.iter().map(feed_event).collect();
            *backoff = Duration::from_millis(100);
            if let Some(last) = events.last().map(|e| e.global_position) {
                match handler(events).await {
                    Ok(()) => {
                        sqlx::query("SELECT eventstore.ack($1, $2)").bind(&self.name).bind(last).execute(&mut *conn).await?;
                    }
                    Err(e) => {
                        let pause = Duration::from_secs(1);
                        on_event(ConsumerEvent::HandlerFailed { error: &e.to_string(), retry_in: pause });
                        tokio::time::sleep(pause).await;
                    }
                }
                continue;
            }
            // Nothing new (or another worker holds the lease): wait for a notification or the poll interval.
            tokio::select! {
                n = listener.recv() => { n?; }
                _ = tokio::time::sleep(self.idle_poll) => {}
            }
        }
    }
}
