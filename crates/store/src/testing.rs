//! Fresh, migrated databases for tests, on every backend the machine offers.
//!
//! SQLite is always available (a temp file). PostgreSQL is used when
//! `CALLFLEET_TEST_POSTGRES_URL` names a server (each test gets a database of its own); when it is
//! unset under CI (`CI` set), the tests fail instead of silently covering one backend.

use crate::{Backend, Store};
use sqlx::any::install_default_drivers;
use sqlx::{AnyConnection, Connection};

/// A migrated store and what keeps it alive.
pub struct TestDb {
    pub store: Store,
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
}

pub const POSTGRES_ENV: &str = "CALLFLEET_TEST_POSTGRES_URL";

/// One fresh store per available backend: SQLite first, then PostgreSQL.
pub async fn test_stores() -> Vec<TestDb> {
    let mut out = vec![sqlite().await];
    match std::env::var(POSTGRES_ENV) {
        Ok(url) if !url.is_empty() => out.push(postgres(&url).await),
        _ if std::env::var_os("CI").is_some() => {
            panic!(
                "{POSTGRES_ENV} is not set under CI: the PostgreSQL half of the suite cannot run"
            )
        }
        _ => eprintln!("note: {POSTGRES_ENV} unset; testing SQLite only"),
    }
    out
}

pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_data_dir(dir.path()).await.expect("open sqlite");
    store.migrate().await.expect("migrate sqlite");
    TestDb {
        store,
        backend: Backend::Sqlite,
        _dir: Some(dir),
    }
}

/// A new database on the server at `admin_url`, migrated.
pub async fn postgres(admin_url: &str) -> TestDb {
    install_default_drivers();
    let name = format!("cf_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = AnyConnection::connect(admin_url).await.unwrap_or_else(|e| {
        panic!(
            "cannot reach PostgreSQL at {}: {e}",
            crate::redact_url(admin_url)
        )
    });
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create test database");
    admin.close().await.ok();
    let url = with_database(admin_url, &name);
    let store = Store::connect(&url)
        .await
        .expect("connect to test database");
    store.migrate().await.expect("migrate postgres");
    TestDb {
        store,
        backend: Backend::Postgres,
        _dir: None,
    }
}

/// `admin_url` with its database name replaced.
fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut url = format!("{}/{name}", &base[..host_end]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_names_are_swapped() {
        assert_eq!(
            super::with_database("postgres://u:p@h:5432/postgres", "x"),
            "postgres://u:p@h:5432/x"
        );
        assert_eq!(super::with_database("postgres://h", "x"), "postgres://h/x");
        assert_eq!(
            super::with_database("postgres://h/db?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
    }
}
