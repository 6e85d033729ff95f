use thiserror::Error;

/// Why a file could not be read; the message is shown on the document as its error.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ParseError {
    #[error("the file is empty or has no text")]
    Empty,
    #[error("the file is encrypted or password-protected: {0}")]
    Encrypted(String),
    #[error("the file is damaged: {0}")]
    Corrupt(String),
    #[error("unsupported file type: {0}")]
    Unsupported(String),
    #[error("the file is too large: {size} bytes, the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    /// The file is small but what it expands into is not (a compression bomb, a CSV whose
    /// header is repeated into every cell, thousands of pages).
    #[error("the document's {what} exceeds the limit of {limit}")]
    Exceeds { what: &'static str, limit: usize },
    #[error("reading the file took longer than {secs} s")]
    TimedOut { secs: u64 },
}

/// Why embedding failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EmbedError {
    #[error("embedding provider unreachable: {0}")]
    Unavailable(String),
    #[error("embedding provider answered badly: {0}")]
    BadResponse(String),
    #[error("embedding model failed: {0}")]
    Model(String),
}

/// Why the vector index failed.
#[derive(Debug, Error)]
pub enum IndexError {
    #[error("vector index: {0}")]
    Backend(String),
    #[error("vector index has dimension {index}, the embedder gives {embedder}")]
    Dimension { index: usize, embedder: usize },
}

/// What the knowledge service reports to its callers.
#[derive(Debug, Error)]
pub enum KnowledgeError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[cfg(feature = "library")]
    #[error(transparent)]
    Store(#[from] callfleet_store::StoreError),
    #[error("document not found")]
    NotFound,
    /// The bot is at one of its quotas (documents, chunks).
    #[error("quota exceeded: {0}")]
    Quota(String),
    /// Every upload slot is parsing a file; try again shortly.
    #[error("too many uploads are being processed; try again shortly")]
    Busy,
}
