//! The scenario engine's view of a bot's knowledge: core's [`KnowledgeSearch`] backed by a
//! [`KnowledgeSearcher`], each passage citing the document (and page or section) it came from.

use crate::search::{KnowledgeSearcher, SearchHit};
use callfleet_core::scenario::{AssistError, BoxFuture, KnowledgeChunk, KnowledgeSearch};

/// One bot's documents, as the scenario engine asks for them.
#[derive(Debug, Clone)]
pub struct BotKnowledge {
    searcher: KnowledgeSearcher,
    bot_id: String,
}

impl BotKnowledge {
    pub fn new(searcher: KnowledgeSearcher, bot_id: impl Into<String>) -> Self {
        BotKnowledge {
            searcher,
            bot_id: bot_id.into(),
        }
    }
}

/// How a passage is cited: the file, then where in it.
pub fn citation(hit: &SearchHit) -> String {
    let mut source = hit.chunk.source.clone();
    if let Some(page) = hit.chunk.page {
        source.push_str(&format!(", p. {page}"));
    } else if let Some(heading) = &hit.chunk.heading {
        source.push_str(&format!(", «{heading}»"));
    }
    source
}

impl KnowledgeSearch for BotKnowledge {
    fn search<'a>(
        &'a self,
        query: &'a str,
        top_k: usize,
    ) -> BoxFuture<'a, Result<Vec<KnowledgeChunk>, AssistError>> {
        Box::pin(async move {
            let hits = self
                .searcher
                .search(&self.bot_id, query, top_k)
                .await
                .map_err(|e| AssistError(e.to_string()))?;
            Ok(hits
                .iter()
                .map(|hit| KnowledgeChunk {
                    text: hit.chunk.text.clone(),
                    source: citation(hit),
                    // Cosine similarity is comparable across questions (a bot's `min_score`
                    // means something); the fused score stands in for keyword-only finds.
                    score: f64::from(hit.vector_score.unwrap_or(hit.score)),
                })
                .collect())
        })
    }
}
