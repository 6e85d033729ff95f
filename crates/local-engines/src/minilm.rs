//! all-MiniLM-L6-v2: BERT (6 layers, 384 wide) → mean pooling over real tokens → L2 norm, as
//! sentence-transformers computes it.

use crate::EngineError;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use std::path::Path;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// The sentence embedder. `embed` is CPU-bound and synchronous: call it from a blocking
/// thread in async code.
pub struct MiniLm {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

impl std::fmt::Debug for MiniLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MiniLm")
    }
}

const FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// Longest input in word pieces; the model was trained on 256 (sentence-transformers'
/// `max_seq_length`), longer text is cut there.
pub const MAX_TOKENS: usize = 256;

fn load(e: impl std::fmt::Display) -> EngineError {
    EngineError::Load(e.to_string())
}

fn run(e: impl std::fmt::Display) -> EngineError {
    EngineError::Run(e.to_string())
}

impl MiniLm {
    pub const DIMENSION: usize = 384;

    /// Loads the model from `dir` (the files `scripts/fetch-models.sh` extracts).
    pub fn load(dir: &Path) -> Result<MiniLm, EngineError> {
        let missing: Vec<&str> = FILES
            .into_iter()
            .filter(|f| !dir.join(f).is_file())
            .collect();
        if !missing.is_empty() {
            return Err(EngineError::ModelMissing {
                dir: dir.display().to_string(),
                missing: missing.join(", "),
            });
        }
        let config: Config =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).map_err(load)?)
                .map_err(load)?;
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).map_err(load)?;
        // The shipped tokenizer.json pads every input to 128 pieces; pad a batch only to its
        // longest member instead, and truncate at what the model was trained on.
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..Default::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(load)?;
        let device = Device::Cpu;
        // SAFETY: the safetensors file is memory-mapped read-only; it is ours (under the models
        // dir) and is not modified while the process runs.
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(
                &[dir.join("model.safetensors")],
                DType::F32,
                &device,
            )
        }
        .map_err(load)?;
        let model = BertModel::load(vb, &config).map_err(load)?;
        Ok(MiniLm {
            model,
            tokenizer,
            device,
        })
    }

    /// One L2-normalised 384-dimensional vector per text.
    pub fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EngineError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(run)?;
        let rows = encodings.len();
        let width = encodings
            .iter()
            .map(|e| e.get_ids().len())
            .max()
            .unwrap_or(0);
        let mut ids = Vec::with_capacity(rows * width);
        let mut mask = Vec::with_capacity(rows * width);
        for e in &encodings {
            ids.extend(e.get_ids().iter().copied());
            mask.extend(e.get_attention_mask().iter().copied());
        }
        let ids = Tensor::from_vec(ids, (rows, width), &self.device).map_err(run)?;
        let mask = Tensor::from_vec(mask, (rows, width), &self.device).map_err(run)?;
        let token_types = ids.zeros_like().map_err(run)?;
        let hidden = self
            .model
            .forward(&ids, &token_types, Some(&mask))
            .map_err(run)?; // (rows, width, 384)
                            // Mean over real tokens only: padding must not dilute short texts.
        let mask_f = mask
            .to_dtype(DType::F32)
            .map_err(run)?
            .unsqueeze(2)
            .map_err(run)?;
        let summed = hidden
            .broadcast_mul(&mask_f)
            .map_err(run)?
            .sum(1)
            .map_err(run)?;
        let counts = mask_f
            .sum(1)
            .map_err(run)?
            .clamp(1e-9, f64::MAX)
            .map_err(run)?;
        let mean = summed.broadcast_div(&counts).map_err(run)?;
        let norms = mean
            .sqr()
            .map_err(run)?
            .sum_keepdim(1)
            .map_err(run)?
            .sqrt()
            .map_err(run)?
            .clamp(1e-12, f64::MAX)
            .map_err(run)?;
        let normalized = mean.broadcast_div(&norms).map_err(run)?;
        normalized.to_vec2::<f32>().map_err(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The model is fetched by scripts/fetch-models.sh (CI runs it); locally a missing model
    /// skips with a note, under CI it fails.
    fn model() -> Option<MiniLm> {
        let dir = crate::minilm_dir(&crate::models_dir());
        match MiniLm::load(&dir) {
            Ok(m) => Some(m),
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!("note: skipping the MiniLM test: {e}");
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn related_sentences_rank_above_unrelated_ones() {
        let Some(model) = model() else { return };
        let texts: Vec<String> = [
            "How long does shipping take?",
            "Orders are delivered within two to three business days.",
            "Our support team speaks English and German.",
            "Shipping usually takes a couple of days.",
        ]
        .map(String::from)
        .to_vec();
        let v = model.embed(&texts).unwrap();
        assert!(v.iter().all(|x| x.len() == MiniLm::DIMENSION));
        assert!((cosine(&v[0], &v[0]) - 1.0).abs() < 1e-4);
        assert!(
            cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]) + 0.1,
            "{} vs {}",
            cosine(&v[0], &v[1]),
            cosine(&v[0], &v[2])
        );
        assert!(cosine(&v[0], &v[3]) > 0.6);
        // Batching (padding) must not change a text's vector.
        let alone = model.embed(&texts[..1]).unwrap();
        assert!(cosine(&alone[0], &v[0]) > 0.9999);
    }
}
