//! The knowledge base behind bots' answers: a file comes in (PDF, DOCX, CSV, TXT, MD), its type
//! is decided by its bytes, it is parsed by maintained libraries into text blocks that remember
//! page and heading, cut into ~500-token chunks with overlap, embedded in batches, and stored in
//! a per-bot partition of a vector index (Qdrant's engine embedded, or a Qdrant server).
//! Questions are answered by hybrid search: vector similarity and BM25 (both scored by the
//! index, BM25 over sparse vectors of word stems) fused by reciprocal rank. Two halves:
//! [`KnowledgeSearcher`] (search: index + embedder, no database — what agent workers open) and, with the `library` feature, [`KnowledgeService`]
//! (the library of documents the admin API writes: rows in the store, background indexing).
//! [`BotKnowledge`] is the scenario engine's view.
//!
//! Architecture invariant: knows no HTTP and no tenancy rules beyond the bot id it is given
//! (the admin API decides who may see a bot); search never needs the database. Detection,
//! parsing, chunking, BM25 weights and fusion are pure functions tested with tables; only the index,
//! the embedders and the service do I/O.

pub mod assist;
pub mod chunk;
pub mod detect;
pub mod embed;
mod error;
pub mod index;
pub mod keyword;
pub mod parse;
pub mod search;
#[cfg(feature = "library")]
pub mod service;

pub use assist::{citation, BotKnowledge};
pub use chunk::{Chunk, ChunkConfig};
pub use detect::ContentKind;
#[cfg(feature = "minilm")]
pub use embed::MiniLmEmbedder;
pub use embed::{Embedder, HashingEmbedder, ProviderEmbedder};
pub use error::{EmbedError, IndexError, KnowledgeError, ParseError};
pub use index::{ChunkRecord, EdgeIndex, QdrantIndex, VectorHit, VectorIndex};
pub use search::{KnowledgeSearcher, SearchConfig, SearchHit};
#[cfg(feature = "library")]
pub use service::{KnowledgeConfig, KnowledgeService};
