//! Knowledge documents' bookkeeping rows (status, pages, chunk progress). The chunks and vectors
//! themselves live in the knowledge crate's index.

use crate::sql::text_enum;
use crate::{now_ms, Result, Store, StoreError};
use callfleet_core::domain::DocumentStatus;
use callfleet_core::ids::{new_id, IdKind};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KnowledgeDocument {
    pub id: String,
    pub bot_id: String,
    pub company_id: String,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub status: DocumentStatus,
    pub pages: Option<i64>,
    pub chunks_total: i64,
    pub chunks_done: i64,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub struct NewKnowledgeDocument<'a> {
    pub bot_id: &'a str,
    pub company_id: &'a str,
    pub filename: &'a str,
    pub content_type: &'a str,
    pub size_bytes: i64,
    pub sha256: &'a str,
}

const COLUMNS: &str =
    "id, bot_id, company_id, filename, content_type, size_bytes, sha256, status, pages, \
     chunks_total, chunks_done, error, created_at, updated_at";

fn document_from_row(row: &AnyRow) -> Result<KnowledgeDocument> {
    Ok(KnowledgeDocument {
        id: row.try_get("id")?,
        bot_id: row.try_get("bot_id")?,
        company_id: row.try_get("company_id")?,
        filename: row.try_get("filename")?,
        content_type: row.try_get("content_type")?,
        size_bytes: row.try_get("size_bytes")?,
        sha256: row.try_get("sha256")?,
        status: text_enum(row, "status", DocumentStatus::parse)?,
        pages: row.try_get("pages")?,
        chunks_total: row.try_get("chunks_total")?,
        chunks_done: row.try_get("chunks_done")?,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    pub async fn create_knowledge_document(
        &self,
        new: NewKnowledgeDocument<'_>,
    ) -> Result<KnowledgeDocument> {
        let id = new_id(IdKind::Document);
        let now = now_ms();
        sqlx::query(
            "INSERT INTO knowledge_documents (id, bot_id, company_id, filename, content_type, size_bytes, sha256,
                status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $8)",
        )
        .bind(&id)
        .bind(new.bot_id)
        .bind(new.company_id)
        .bind(new.filename)
        .bind(new.content_type)
        .bind(new.size_bytes)
        .bind(new.sha256)
        .bind(now)
        .execute(self.pool())
        .await?;
        self.get_knowledge_document(&id).await
    }

    pub async fn get_knowledge_document(&self, id: &str) -> Result<KnowledgeDocument> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM knowledge_documents WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or(StoreError::NotFound)?;
        document_from_row(&row)
    }

    pub async fn list_knowledge_documents(&self, bot_id: &str) -> Result<Vec<KnowledgeDocument>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM knowledge_documents WHERE bot_id = $1 ORDER BY created_at, id"
        ))
        .bind(bot_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(document_from_row).collect()
    }

    /// Records indexing progress or its end (`ready`, or `failed` with the error).
    pub async fn update_knowledge_progress(
        &self,
        id: &str,
        status: DocumentStatus,
        pages: Option<i64>,
        chunks_total: i64,
        chunks_done: i64,
        error: Option<&str>,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE knowledge_documents SET status = $2, pages = COALESCE($3, pages), chunks_total = $4,
                chunks_done = $5, error = $6, updated_at = $7 WHERE id = $1",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(pages)
        .bind(chunks_total)
        .bind(chunks_done)
        .bind(error)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    pub async fn delete_knowledge_document(&self, id: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM knowledge_documents WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Documents whose indexing had not finished (`pending` or `indexing`), on every bot: after
    /// a restart their background task is gone and the service fails them.
    pub async fn list_unfinished_knowledge_documents(&self) -> Result<Vec<KnowledgeDocument>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM knowledge_documents WHERE status IN ('pending', 'indexing') ORDER BY created_at, id"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(document_from_row).collect()
    }

    /// Deletes every document of a bot; returns how many.
    pub async fn clear_knowledge_documents(&self, bot_id: &str) -> Result<u64> {
        let done = sqlx::query("DELETE FROM knowledge_documents WHERE bot_id = $1")
            .bind(bot_id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}
