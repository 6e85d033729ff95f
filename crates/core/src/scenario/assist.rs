//! What the engine may ask of the outside world: an LLM and a knowledge search. Both are
//! traits so the engine stays pure; the providers and knowledge crates implement them, and
//! tests use [`InMemoryKnowledge`] and fakes.

use crate::text::stem::{stems_match, token_stems};
use crate::text::tokenize;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// A boxed future, so the traits stay object-safe without an async-trait dependency.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why an assistant could not answer; the engine carries on without it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("assistant unavailable: {0}")]
pub struct AssistError(pub String);

/// One message of an LLM conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmMessage {
    /// `system`, `user` or `assistant`.
    pub role: &'static str,
    pub content: String,
}

/// A language model, reached through the providers crate.
pub trait Llm: Send + Sync {
    fn complete<'a>(
        &'a self,
        messages: Vec<LlmMessage>,
    ) -> BoxFuture<'a, Result<String, AssistError>>;

    /// Like [`Llm::complete`], handing the reply to `on_text` while it is generated, in whole
    /// sentences, so a caller hears its start before the rest is written; the pieces joined are
    /// the reply. The default hands over the whole reply at once.
    fn complete_streaming<'a>(
        &'a self,
        messages: Vec<LlmMessage>,
        on_text: &'a (dyn Fn(&str) + Send + Sync),
    ) -> BoxFuture<'a, Result<String, AssistError>> {
        Box::pin(async move {
            let reply = self.complete(messages).await?;
            on_text(&reply);
            Ok(reply)
        })
    }
}

/// A passage of a bot's documents, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct KnowledgeChunk {
    pub text: String,
    /// The document's name, said to the caller as the source.
    pub source: String,
    /// Higher is more relevant; compared with the bot's `knowledge.min_score`.
    pub score: f64,
}

/// Search over a bot's documents, reached through the knowledge crate.
pub trait KnowledgeSearch: Send + Sync {
    fn search<'a>(
        &'a self,
        query: &'a str,
        top_k: usize,
    ) -> BoxFuture<'a, Result<Vec<KnowledgeChunk>, AssistError>>;
}

/// Documents held in memory and searched by shared word forms; enough for scripted tests
/// and the console, where no vector index runs.
#[derive(Debug, Clone, Default)]
pub struct InMemoryKnowledge {
    chunks: Vec<(String, String, Vec<String>)>,
}

/// Words too common to say anything about relevance.
const STOP_WORDS: &[&str] = &[
    "а", "и", "в", "во", "на", "с", "у", "к", "по", "за", "о", "об", "из", "не", "ли", "же", "бы",
    "то", "это", "как", "что", "вы", "вас", "мне", "я", "у", "есть", "ваш", "ваши", "the", "a",
    "an", "is", "are", "do", "does", "you", "your", "i", "to", "of", "in", "on", "for", "and",
    "or", "what", "it", "my", "me", "can", "there",
];

impl InMemoryKnowledge {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a document; each paragraph becomes a chunk.
    pub fn add_document(&mut self, source: &str, text: &str) {
        for paragraph in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
            let tokens = tokenize(paragraph);
            let stems = token_stems(&tokens)
                .into_iter()
                .zip(&tokens)
                .filter(|(_, t)| !STOP_WORDS.contains(&t.text.as_str()))
                .map(|(s, _)| s)
                .collect();
            self.chunks
                .push((source.to_string(), paragraph.to_string(), stems));
        }
    }

    fn rank(&self, query: &str) -> Vec<KnowledgeChunk> {
        let tokens = tokenize(query);
        let query_stems: Vec<String> = token_stems(&tokens)
            .into_iter()
            .zip(&tokens)
            .filter(|(_, t)| !STOP_WORDS.contains(&t.text.as_str()))
            .map(|(s, _)| s)
            .collect();
        if query_stems.is_empty() {
            return Vec::new();
        }
        let mut out: Vec<KnowledgeChunk> = self
            .chunks
            .iter()
            .filter_map(|(source, text, stems)| {
                let hits = query_stems
                    .iter()
                    .filter(|q| stems.iter().any(|s| stems_match(q, s)))
                    .count();
                (hits > 0).then(|| KnowledgeChunk {
                    text: text.clone(),
                    source: source.clone(),
                    score: hits as f64 / query_stems.len() as f64,
                })
            })
            .collect();
        out.sort_by(|a, b| b.score.total_cmp(&a.score));
        out
    }
}

impl KnowledgeSearch for InMemoryKnowledge {
    fn search<'a>(
        &'a self,
        query: &'a str,
        top_k: usize,
    ) -> BoxFuture<'a, Result<Vec<KnowledgeChunk>, AssistError>> {
        let mut found = self.rank(query);
        found.truncate(top_k);
        Box::pin(std::future::ready(Ok(found)))
    }
}

impl<T: KnowledgeSearch + ?Sized> KnowledgeSearch for Arc<T> {
    fn search<'a>(
        &'a self,
        query: &'a str,
        top_k: usize,
    ) -> BoxFuture<'a, Result<Vec<KnowledgeChunk>, AssistError>> {
        (**self).search(query, top_k)
    }
}

/// Drives a future to completion on this thread.
///
/// Only for futures that never wait on I/O (the engine with in-memory assistants, as in
/// scripted tests and the text console); a real LLM client needs a real runtime.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_memory_knowledge_ranks_by_shared_word_forms() {
        let mut kb = InMemoryKnowledge::new();
        kb.add_document(
            "prices.md",
            "Стрижка женская стоит 2000 рублей.\n\nОкрашивание от 4000 рублей.",
        );
        kb.add_document("hours.md", "Мы работаем ежедневно с 10 до 21.");
        let found = block_on(kb.search("сколько стоит стрижка", 3)).unwrap();
        assert_eq!(found[0].source, "prices.md");
        assert!(found[0].text.contains("2000"));
        let found = block_on(kb.search("когда вы работаете", 3)).unwrap();
        assert_eq!(found[0].source, "hours.md");
        assert!(block_on(kb.search("парковка", 3)).unwrap().is_empty());
    }
}
