//! Turning text into vectors. [`Embedder`] is the one interface the service uses; behind it sit
//! the offline MiniLM model (feature `minilm`, from `callfleet-local-engines`), the providers
//! crate's embedders (Ollama `/api/embed`, OpenAI-compatible `/v1/embeddings`, fallback chains)
//! through [`ProviderEmbedder`], and [`HashingEmbedder`], a model-free fallback for tests and
//! for machines that have not fetched the model.
//!
//! Why a trait of our own on top of `callfleet_providers::Embedder`: an index is built for one
//! model and one vector length and must refuse another, so the knowledge base needs the model's
//! name and dimension (and a batch size for progress), which a provider call does not carry.

use crate::EmbedError;
use callfleet_core::scenario::BoxFuture;

/// A text embedding model.
pub trait Embedder: Send + Sync {
    /// Names the model, so an index built with one model is never searched with another.
    fn model_id(&self) -> &str;
    /// Length of every vector it returns.
    fn dimension(&self) -> usize;
    /// Most texts to send in one call.
    fn max_batch(&self) -> usize {
        32
    }
    /// One vector per text, in order, L2-normalised (so cosine is a dot product).
    fn embed<'a>(&'a self, texts: &'a [String])
        -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>>;
}

/// Embeds any number of texts in batches of the embedder's size, calling `progress` with the
/// number done after each batch (the service turns it into `chunks_done`).
pub async fn embed_batched(
    embedder: &dyn Embedder,
    texts: &[String],
    mut progress: impl FnMut(usize),
) -> Result<Vec<Vec<f32>>, EmbedError> {
    let mut out = Vec::with_capacity(texts.len());
    for batch in texts.chunks(embedder.max_batch().max(1)) {
        let vectors = embedder.embed(batch).await?;
        if vectors.len() != batch.len() {
            return Err(EmbedError::BadResponse(format!(
                "{} vectors for {} texts",
                vectors.len(),
                batch.len()
            )));
        }
        if let Some(v) = vectors.iter().find(|v| v.len() != embedder.dimension()) {
            return Err(EmbedError::BadResponse(format!(
                "vector of {} dims, expected {}",
                v.len(),
                embedder.dimension()
            )));
        }
        out.extend(vectors);
        progress(out.len());
    }
    Ok(out)
}

pub(crate) fn normalize(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// Feature hashing of word stems and their bigrams: no model, no server, deterministic. It
/// finds passages sharing words with the question (like a keyword search), not paraphrases;
/// it keeps `callfleet dev` and the tests working where MiniLM has not been fetched.
#[derive(Debug, Clone)]
pub struct HashingEmbedder {
    dimension: usize,
}

impl HashingEmbedder {
    pub fn new(dimension: usize) -> Self {
        HashingEmbedder {
            dimension: dimension.max(8),
        }
    }

    fn vector(&self, text: &str) -> Vec<f32> {
        let stems: Vec<String> = callfleet_core::text::stems(text)
            .into_iter()
            .filter(|s| s.chars().count() > 1)
            .collect();
        let mut v = vec![0f32; self.dimension];
        let mut add = |feature: &str, weight: f32| {
            // FNV-1a: stable across runs and platforms, unlike std's randomised hasher.
            let hash = feature.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
            });
            let sign = if hash >> 63 == 0 { 1.0 } else { -1.0 };
            v[(hash % self.dimension as u64) as usize] += sign * weight;
        };
        for stem in &stems {
            add(stem, 1.0);
        }
        for pair in stems.windows(2) {
            add(&format!("{} {}", pair[0], pair[1]), 0.5);
        }
        normalize(v)
    }
}

impl Embedder for HashingEmbedder {
    fn model_id(&self) -> &str {
        "hashing"
    }
    fn dimension(&self) -> usize {
        self.dimension
    }
    fn max_batch(&self) -> usize {
        256
    }
    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(std::future::ready(Ok(texts
            .iter()
            .map(|t| self.vector(t))
            .collect())))
    }
}

/// A provider's embedder (Ollama `/api/embed`, an OpenAI-compatible `/v1/embeddings`, or a
/// fallback chain of them) from `callfleet-providers`, given what an index needs to know and
/// the provider trait does not say: the model's name and vector length, and a batch size.
pub struct ProviderEmbedder {
    inner: std::sync::Arc<dyn callfleet_providers::Embedder>,
    model_id: String,
    dimension: usize,
    max_batch: usize,
}

impl ProviderEmbedder {
    /// `dimension` is the model's (768 for nomic-embed-text, 1536 for text-embedding-3-small).
    pub fn new(
        inner: std::sync::Arc<dyn callfleet_providers::Embedder>,
        model_id: &str,
        dimension: usize,
        max_batch: usize,
    ) -> Self {
        ProviderEmbedder {
            inner,
            model_id: model_id.to_string(),
            dimension,
            max_batch: max_batch.max(1),
        }
    }
}

impl std::fmt::Debug for ProviderEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderEmbedder")
            .field("provider", &self.inner.name())
            .field("model", &self.model_id)
            .finish()
    }
}

impl Embedder for ProviderEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }
    fn dimension(&self) -> usize {
        self.dimension
    }
    fn max_batch(&self) -> usize {
        self.max_batch
    }
    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move {
            let vectors = self.inner.embed(texts.to_vec()).await.map_err(|e| {
                if e.retryable() {
                    EmbedError::Unavailable(e.to_string())
                } else {
                    EmbedError::BadResponse(e.to_string())
                }
            })?;
            // Providers may or may not normalise; cosine search assumes unit vectors.
            Ok(vectors.into_iter().map(normalize).collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callfleet_core::scenario::block_on;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn hashing_embedder_ranks_shared_words_higher() {
        let e = HashingEmbedder::new(256);
        let texts: Vec<String> = [
            "How much does delivery cost?",
            "Delivery costs 300 roubles.",
            "Our office opens at nine.",
        ]
        .map(String::from)
        .to_vec();
        let v = block_on(e.embed(&texts)).unwrap();
        assert!(cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]));
        assert!((cosine(&v[1], &v[1]) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn batching_reports_progress() {
        struct Small;
        impl Embedder for Small {
            fn model_id(&self) -> &str {
                "small"
            }
            fn dimension(&self) -> usize {
                2
            }
            fn max_batch(&self) -> usize {
                2
            }
            fn embed<'a>(
                &'a self,
                texts: &'a [String],
            ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
                Box::pin(std::future::ready(Ok(texts
                    .iter()
                    .map(|_| vec![1.0, 0.0])
                    .collect())))
            }
        }
        let texts: Vec<String> = (0..5).map(|i| i.to_string()).collect();
        let mut seen = Vec::new();
        let out = block_on(embed_batched(&Small, &texts, |n| seen.push(n))).unwrap();
        assert_eq!(out.len(), 5);
        assert_eq!(seen, [2, 4, 5]);
    }
}

/// The offline default: all-MiniLM-L6-v2 in-process (candle), from the models dir.
#[cfg(feature = "minilm")]
#[derive(Debug, Clone)]
pub struct MiniLmEmbedder {
    model: std::sync::Arc<callfleet_local_engines::MiniLm>,
}

#[cfg(feature = "minilm")]
impl MiniLmEmbedder {
    /// Loads the model from `dir` (`callfleet_local_engines::minilm_dir(models_dir())` by
    /// default); fails with a message naming scripts/fetch-models.sh when it is missing.
    pub fn load(dir: &std::path::Path) -> Result<Self, EmbedError> {
        let model = callfleet_local_engines::MiniLm::load(dir)
            .map_err(|e| EmbedError::Model(e.to_string()))?;
        Ok(MiniLmEmbedder {
            model: std::sync::Arc::new(model),
        })
    }

    /// Loads from the default models dir.
    pub fn load_default() -> Result<Self, EmbedError> {
        Self::load(&callfleet_local_engines::minilm_dir(
            &callfleet_local_engines::models_dir(),
        ))
    }
}

#[cfg(feature = "minilm")]
impl Embedder for MiniLmEmbedder {
    fn model_id(&self) -> &str {
        "all-minilm-l6-v2"
    }
    fn dimension(&self) -> usize {
        callfleet_local_engines::MiniLm::DIMENSION
    }
    fn max_batch(&self) -> usize {
        // Batches pad to their longest text; 16 keeps that waste small for chunk-sized texts.
        16
    }
    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        let model = self.model.clone();
        let texts = texts.to_vec();
        Box::pin(async move {
            // The model is CPU-bound for milliseconds to seconds: keep it off the async workers.
            tokio::task::spawn_blocking(move || model.embed(&texts))
                .await
                .map_err(|e| EmbedError::Model(format!("embedding task failed: {e}")))?
                .map_err(|e| EmbedError::Model(e.to_string()))
        })
    }
}
