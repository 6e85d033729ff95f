//! The repository layer. One [`Store`] type serves SQLite (the embedded default, a file under the
//! data dir) and PostgreSQL (production) with the same SQL: the schema in `migrations/` uses only
//! portable types (TEXT ids, BIGINT unix-millisecond times, JSON in TEXT), so every query runs on
//! both and one test suite covers both.
//!
//! Architecture invariant: the store knows rows, not HTTP or business rules. It never decides who
//! may see what; callers pass the company to scope by.

mod api_keys;
mod bots;
mod calls;
mod companies;
mod dead_letters;
mod embed_keys;
mod knowledge;
mod phone_numbers;
mod recordings;
mod sql;
#[cfg(feature = "test-support")]
pub mod testing;
mod webhook_outbox;
mod webhooks;

pub use api_keys::{ApiKey, ApiKeyOwner, NewApiKey};
pub use bots::{Bot, BotPatch, BotVersion, NewBot};
pub use calls::{CallAnalytics, CallFilter, CallPage, CallSummary};
pub use companies::{Company, NewCompany};
pub use dead_letters::DeadLetter;
pub use embed_keys::{EmbedKey, NewEmbedKey, EMBED_KEY_PREFIX};
pub use knowledge::{KnowledgeDocument, NewKnowledgeDocument};
pub use phone_numbers::{PhoneNumber, TrunkSettings};
pub use recordings::CallRecording;
pub use webhook_outbox::{
    AttemptVerdict, DeliveryAttempt, DisableAfter, DueDelivery, RecordedAttempt,
};
pub use webhooks::{NewWebhookEndpoint, WebhookDelivery, WebhookEndpoint, WebhookPatch};

use sqlx::any::{install_default_drivers, AnyPoolOptions};
use sqlx::AnyPool;
use std::path::Path;
use std::time::Duration;

/// Errors of the repository layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was broken; `what` names it for the user (`phone number already assigned`).
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("unsupported database URL {0:?} (use sqlite://PATH or postgres://…)")]
    UnsupportedUrl(String),
    #[error("could not create the data dir {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database engine a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database, whichever engine it is.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl std::fmt::Debug for Store {
    // The pool's options hold the URL, which may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

impl Store {
    /// Connects to `postgres://…` or `sqlite://PATH`; does not migrate.
    pub async fn connect(url: &str) -> Result<Store> {
        install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(url)));
        };
        let options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        let pool = match backend {
            Backend::Postgres => options.max_connections(16).connect(url).await?,
            Backend::Sqlite => {
                // WAL lets readers run beside the single writer; foreign keys are per connection.
                options
                    .max_connections(8)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            sqlx::query("PRAGMA journal_mode = WAL")
                                .execute(&mut *conn)
                                .await?;
                            sqlx::query("PRAGMA foreign_keys = ON")
                                .execute(&mut *conn)
                                .await?;
                            sqlx::query("PRAGMA busy_timeout = 5000")
                                .execute(&mut *conn)
                                .await?;
                            sqlx::query("PRAGMA synchronous = NORMAL")
                                .execute(&mut *conn)
                                .await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?
            }
        };
        Ok(Store { pool, backend })
    }

    /// Opens (creating if needed) the embedded SQLite database `callfleet.db` under `data_dir`.
    pub async fn open_data_dir(data_dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let file = data_dir.join("callfleet.db");
        Store::connect(&format!("sqlite://{}?mode=rwc", file.display())).await
    }

    /// Applies every pending migration from `migrations/`.
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Cheap liveness check for `/health`.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Refreshes the planner's statistics (`ANALYZE`), e.g. after a bulk load.
    pub async fn refresh_statistics(&self) -> Result<()> {
        sqlx::query("ANALYZE").execute(&self.pool).await?;
        Ok(())
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// The URL without its credentials, for messages.
pub use callfleet_core::secret::redact_url;

/// Now, in unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(crate) fn unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}
