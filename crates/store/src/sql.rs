//! A small builder for queries assembled at run time (filters, cursors). It numbers placeholders
//! `$1, $2, …`, which both PostgreSQL and sqlx's SQLite driver read by number.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::Any;

pub(crate) enum Arg {
    Int(i64),
    Text(String),
}

#[derive(Default)]
pub(crate) struct Sql {
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    pub(crate) fn new(text: &str) -> Sql {
        Sql {
            text: text.to_string(),
            args: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `arg`.
    pub(crate) fn arg(&mut self, arg: Arg) -> &mut Self {
        self.args.push(arg);
        self.text.push_str(&format!("${}", self.args.len()));
        self
    }

    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    pub(crate) fn query(&self) -> Query<'_, Any, AnyArguments<'_>> {
        let mut query = sqlx::query(&self.text);
        for arg in &self.args {
            query = match arg {
                Arg::Int(v) => query.bind(*v),
                Arg::Text(v) => query.bind(v.as_str()),
            };
        }
        query
    }
}

/// A text column holding one of an enum's names (`parse` is the enum's), or `Corrupt`: the one
/// place a status's text in the database becomes its type.
pub(crate) fn text_enum<T>(
    row: &AnyRow,
    column: &str,
    parse: fn(&str) -> Option<T>,
) -> crate::Result<T> {
    let text: String = sqlx::Row::try_get(row, column)?;
    parse(&text).ok_or_else(|| crate::StoreError::Corrupt(format!("{column} {text:?}")))
}

/// Reads a JSON column.
pub(crate) fn json_column<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    column: &str,
) -> crate::Result<T> {
    use sqlx::Row;
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text)
        .map_err(|e| crate::StoreError::Corrupt(format!("column {column}: {e}")))
}
