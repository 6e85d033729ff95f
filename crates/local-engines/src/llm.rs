//! A small local chat model as a [`LanguageModel`]: SmolLM2-135M-Instruct (GGUF, Q4_1) through
//! candle's `quantized_llama`, with the tokenizer rebuilt from the GGUF metadata (byte-level BPE:
//! `tokenizer.ggml.tokens` + `merges`) and SmolLM2's ChatML template.
//!
//! Generation runs on the blocking pool inside the model's own rayon pool (`threads`, 1 by
//! default) and feeds the stream's channel token by token; dropping the [`LlmStream`] closes the
//! channel and generation stops at the next token.
//!
//! Tools: a 135M model cannot call tools reliably, so tool specs are ignored (never a
//! `ToolCall`); tool results in the history are shown to it as user text. Use a cloud or Ollama
//! model for scenarios that need tools.

use crate::EngineError;
use callfleet_core::scenario::BoxFuture;
use callfleet_providers::*;
use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::quantized_llama::ModelWeights;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokenizers::Tokenizer;
use tokio::sync::mpsc;

const NAME: &str = "local-llm";

/// The model's directory in the models dir and its file.
pub const SMOLLM2_DIR: &str = "smollm2-135m";
pub const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// How the local model runs.
#[derive(Debug, Clone)]
pub struct LocalLlmConfig {
    /// The GGUF file.
    pub model_file: PathBuf,
    /// Threads for the matrix products (a rayon pool of this size; 1 by default).
    pub threads: usize,
    /// When the request gives none.
    pub max_tokens: u32,
    /// When the request gives none; 0 is greedy.
    pub temperature: f32,
    pub top_p: f64,
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    pub seed: u64,
    /// Prompt + reply tokens the model may see (SmolLM2 was trained on 8192).
    pub context_tokens: usize,
    /// Expand the quantized weights to f32 when loading (on by default): candle's Q4_1 kernels are
    /// scalar unless built for AVX2, while f32 products use the CPU's vector units at run time.
    /// Measured here: first token 0.1 s instead of 1.4 s, 50 tokens/s instead of 25, for ~450 MB
    /// more memory (SmolLM2-135M: 540 MB in all, once per process).
    pub dequantize: bool,
}

impl LocalLlmConfig {
    /// SmolLM2-135M-Instruct in `models_dir`.
    pub fn smollm2(models_dir: &Path) -> Self {
        LocalLlmConfig {
            model_file: models_dir.join(SMOLLM2_DIR).join(SMOLLM2_FILE),
            threads: 1,
            max_tokens: 256,
            temperature: 0.0,
            top_p: 0.9,
            repeat_penalty: 1.1,
            repeat_last_n: 64,
            seed: 299_792_458,
            context_tokens: 4096,
            dequantize: true,
        }
    }
}

impl Default for LocalLlmConfig {
    fn default() -> Self {
        LocalLlmConfig::smollm2(&crate::models_dir())
    }
}

struct Loaded {
    weights: ModelWeights,
    tokenizer: Tokenizer,
    /// Tokens that end a reply (`<|im_end|>`, `<|endoftext|>`).
    stop: Vec<u32>,
    pool: rayon::ThreadPool,
}

/// The local model; clones share the loaded weights.
#[derive(Clone)]
pub struct LocalLlm {
    config: LocalLlmConfig,
    loaded: Arc<Mutex<Option<Arc<Loaded>>>>,
}

impl std::fmt::Debug for LocalLlm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLlm")
            .field("config", &self.config)
            .finish()
    }
}

fn load_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Load(e.to_string())
}

/// A byte-level BPE tokenizer from a GGUF's `tokenizer.ggml.*` metadata.
fn tokenizer_from_gguf(ct: &gguf_file::Content) -> Result<Tokenizer, EngineError> {
    use tokenizers::models::bpe::{Vocab, BPE};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::pre_tokenizers::digits::Digits;
    use tokenizers::pre_tokenizers::sequence::Sequence;
    use tokenizers::{AddedToken, PreTokenizerWrapper};
    let md = |k: &str| {
        ct.metadata
            .get(k)
            .ok_or_else(|| load_err(format!("GGUF lacks {k}")))
    };
    let model = md("tokenizer.ggml.model")?.to_string().map_err(load_err)?;
    if model != "gpt2" {
        return Err(load_err(format!(
            "GGUF tokenizer {model} is not byte-level BPE"
        )));
    }
    let tokens: Vec<String> = md("tokenizer.ggml.tokens")?
        .to_vec()
        .map_err(load_err)?
        .iter()
        .map(|v| v.to_string().cloned())
        .collect::<Result<_, _>>()
        .map_err(load_err)?;
    let merges: Vec<(String, String)> = md("tokenizer.ggml.merges")?
        .to_vec()
        .map_err(load_err)?
        .iter()
        .map(|v| {
            let s = v.to_string().map_err(load_err)?;
            let (a, b) = s
                .split_once(' ')
                .ok_or_else(|| load_err(format!("bad merge {s:?}")))?;
            Ok((a.to_string(), b.to_string()))
        })
        .collect::<Result<_, EngineError>>()?;
    let types: Vec<i32> = match ct.metadata.get("tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()
            .map_err(load_err)?
            .iter()
            .map(|t| t.to_i32().unwrap_or(1))
            .collect(),
        None => Vec::new(),
    };
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(load_err)?;
    let mut tok = Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(Sequence::new(vec![
        PreTokenizerWrapper::Digits(Digits::new(true)),
        PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
    ]))));
    tok.with_decoder(Some(ByteLevel::default()));
    // Control tokens (type 3) are matched whole in the prompt and skipped when decoding.
    let specials: Vec<AddedToken> = tokens
        .iter()
        .enumerate()
        .filter(|(i, t)| types.get(*i) == Some(&3) || (t.starts_with("<|") && t.ends_with("|>")))
        .map(|(_, t)| AddedToken::from(t.clone(), true))
        .collect();
    tok.add_special_tokens(&specials);
    Ok(tok)
}

/// SmolLM2's chat template (ChatML), ending with the assistant's open turn.
pub fn chat_prompt(messages: &[ChatMessage]) -> String {
    let mut p = String::new();
    if messages.first().map(|m| m.role) != Some(Role::System) {
        p.push_str("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n");
    }
    for m in messages {
        let (role, content) = match m.role {
            Role::Tool => (
                "user",
                format!(
                    "Result of {}: {}",
                    m.tool_call
                        .as_ref()
                        .map(|c| c.name.as_str())
                        .unwrap_or("a tool"),
                    m.content
                ),
            ),
            r => (r.as_str(), m.content.clone()),
        };
        p.push_str("<|im_start|>");
        p.push_str(role);
        p.push('\n');
        p.push_str(content.trim());
        p.push_str("<|im_end|>\n");
    }
    p.push_str("<|im_start|>assistant\n");
    p
}

impl LocalLlm {
    pub fn new(config: LocalLlmConfig) -> Self {
        LocalLlm {
            config,
            loaded: Arc::new(Mutex::new(None)),
        }
    }

    pub fn config(&self) -> &LocalLlmConfig {
        &self.config
    }

    fn load(&self) -> Result<Arc<Loaded>, EngineError> {
        let mut slot = self.loaded.lock().unwrap();
        if let Some(l) = slot.as_ref() {
            return Ok(l.clone());
        }
        let path = &self.config.model_file;
        if !path.is_file() {
            let dir = path
                .parent()
                .unwrap_or(Path::new("."))
                .display()
                .to_string();
            let missing = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Err(EngineError::ModelMissing { dir, missing });
        }
        let mut file =
            std::fs::File::open(path).map_err(|e| load_err(format!("{}: {e}", path.display())))?;
        let ct = gguf_file::Content::read(&mut file)
            .map_err(|e| load_err(format!("{}: {e}", path.display())))?;
        let tokenizer = tokenizer_from_gguf(&ct)?;
        let weights = if self.config.dequantize {
            let (ct, mut tensors) = dequantized(ct, &mut file)
                .map_err(|e| load_err(format!("{}: {e}", path.display())))?;
            ModelWeights::from_gguf(ct, &mut tensors, &Device::Cpu)
        } else {
            ModelWeights::from_gguf(ct, &mut file, &Device::Cpu)
        }
        .map_err(load_err)?;
        let stop = ["<|im_end|>", "<|endoftext|>"]
            .iter()
            .filter_map(|t| tokenizer.token_to_id(t))
            .collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.config.threads.max(1))
            .thread_name(|i| format!("local-llm-{i}"))
            .build()
            .map_err(load_err)?;
        let loaded = Arc::new(Loaded {
            weights,
            tokenizer,
            stop,
            pool,
        });
        *slot = Some(loaded.clone());
        Ok(loaded)
    }

    /// Loads the model now (blocking).
    pub fn load_now(&self) -> Result<(), EngineError> {
        self.load().map(|_| ())
    }
}

/// The GGUF's tensors expanded to f16, in memory, with a `Content` pointing at them. Loading an
/// f16 tensor, candle's `QMatMul` expands it to f32 and multiplies with its vectorised matmul.
fn dequantized(
    mut ct: gguf_file::Content,
    file: &mut std::fs::File,
) -> candle_core::Result<(gguf_file::Content, std::io::Cursor<Vec<u8>>)> {
    use candle_core::quantized::GgmlDType;
    let mut names: Vec<String> = ct.tensor_infos.keys().cloned().collect();
    names.sort();
    let mut data = Vec::new();
    for name in names {
        let qtensor = ct.tensor(file, &name, &Device::Cpu)?;
        let values = qtensor
            .dequantize_f16(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<half::f16>()?;
        let info = ct
            .tensor_infos
            .get_mut(&name)
            .expect("the name came from this map");
        info.ggml_dtype = GgmlDType::F16;
        info.offset = data.len() as u64;
        data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    }
    ct.tensor_data_offset = 0;
    Ok((ct, std::io::Cursor::new(data)))
}

fn provider_err(e: impl std::fmt::Display) -> LlmError {
    LlmError::Provider {
        provider: NAME.into(),
        message: e.to_string(),
    }
}

type Events = mpsc::Sender<Result<LlmEvent, LlmError>>;

/// Token ids of the prompt, dropping the oldest turns after the system prompt until the prompt
/// leaves room for the reply.
fn prompt_tokens(
    loaded: &Loaded,
    messages: &[ChatMessage],
    budget: usize,
) -> Result<Vec<u32>, LlmError> {
    let mut msgs = messages.to_vec();
    loop {
        let enc = loaded
            .tokenizer
            .encode(chat_prompt(&msgs), false)
            .map_err(provider_err)?;
        let ids = enc.get_ids().to_vec();
        let first_droppable = usize::from(msgs.first().map(|m| m.role) == Some(Role::System));
        if ids.len() <= budget || msgs.len() <= first_droppable + 1 {
            if ids.len() > budget {
                return Err(provider_err(format!(
                    "the prompt is {} tokens, over the {budget} the model may take",
                    ids.len()
                )));
            }
            return Ok(ids);
        }
        msgs.remove(first_droppable);
    }
}

/// Generates into `events` until a stop token, `max_tokens`, or the receiver is gone.
fn generate(
    loaded: &Loaded,
    config: &LocalLlmConfig,
    request: &ChatRequest,
    events: &Events,
) -> Result<FinishReason, LlmError> {
    let max_tokens = request.max_tokens.unwrap_or(config.max_tokens).max(1) as usize;
    let budget = config.context_tokens.saturating_sub(max_tokens).max(16);
    let prompt = prompt_tokens(loaded, &request.messages, budget)?;
    let temperature = request.temperature.unwrap_or(config.temperature);
    let sampling = if temperature <= 0.0 {
        Sampling::ArgMax
    } else {
        Sampling::TopP {
            p: config.top_p,
            temperature: temperature as f64,
        }
    };
    let mut sampler = LogitsProcessor::from_sampling(config.seed, sampling);
    let mut weights = loaded.weights.clone();
    let mut generated: Vec<u32> = Vec::new();
    let mut sent_len = 0usize;
    let mut input = prompt;
    let mut pos = 0usize;
    for _ in 0..max_tokens {
        if events.is_closed() {
            return Ok(FinishReason::Other("cancelled".into()));
        }
        let x = Tensor::new(input.as_slice(), &Device::Cpu)
            .and_then(|t| t.unsqueeze(0))
            .map_err(provider_err)?;
        let logits = weights
            .forward(&x, pos)
            .and_then(|l| l.squeeze(0))
            .map_err(provider_err)?;
        pos += input.len();
        // Penalise repeats within the reply only: the prompt's facts (hours, names) must stay
        // cheap to say.
        let logits = if config.repeat_penalty != 1.0 && !generated.is_empty() {
            let start = generated.len().saturating_sub(config.repeat_last_n);
            candle_transformers::utils::apply_repeat_penalty(
                &logits,
                config.repeat_penalty,
                &generated[start..],
            )
            .map_err(provider_err)?
        } else {
            logits
        };
        let next = sampler.sample(&logits).map_err(provider_err)?;
        if loaded.stop.contains(&next) {
            return Ok(FinishReason::Stop);
        }
        generated.push(next);
        input = vec![next];
        // Send the text that is settled: decode everything and hold back a trailing partial
        // UTF-8 sequence (shown as U+FFFD).
        let text = loaded
            .tokenizer
            .decode(&generated, true)
            .map_err(provider_err)?;
        if text.len() > sent_len && !text.ends_with('\u{FFFD}') && text.is_char_boundary(sent_len) {
            let piece = text[sent_len..].to_string();
            sent_len = text.len();
            if events.blocking_send(Ok(LlmEvent::Token(piece))).is_err() {
                return Ok(FinishReason::Other("cancelled".into()));
            }
        }
    }
    Ok(FinishReason::Length)
}

impl LanguageModel for LocalLlm {
    fn name(&self) -> &str {
        NAME
    }

    fn stream(&self, request: ChatRequest) -> BoxFuture<'_, Result<LlmStream, LlmError>> {
        let this = self.clone();
        Box::pin(async move {
            if !request.tools.is_empty() {
                tracing::debug!(
                    provider = NAME,
                    tools = request.tools.len(),
                    "The local model does not call tools; ignoring them."
                );
            }
            let loader = this.clone();
            let loaded = tokio::task::spawn_blocking(move || loader.load())
                .await
                .map_err(provider_err)?
                .map_err(provider_err)?;
            let (tx, rx) = mpsc::channel(64);
            let config = this.config.clone();
            let task = tokio::task::spawn_blocking(move || {
                let result = loaded
                    .pool
                    .install(|| generate(&loaded, &config, &request, &tx));
                match result {
                    Ok(FinishReason::Other(_)) => {}
                    Ok(reason) => {
                        let _ = tx.blocking_send(Ok(LlmEvent::Done(reason)));
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                    }
                }
            });
            Ok(LlmStream::new(NAME, rx, TaskGuard::new(task)))
        })
    }

    fn warm_up(&self) -> BoxFuture<'_, ()> {
        let this = self.clone();
        Box::pin(async move {
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || this.load()).await {
                tracing::warn!(provider = NAME, error = %e, "The local model failed to load.");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_prompt() {
        let call = ToolCall {
            id: "c".into(),
            name: "hours".into(),
            arguments: serde_json::json!({}),
        };
        let p = chat_prompt(&[
            ChatMessage::system("Be brief."),
            ChatMessage::user(" Hi "),
            ChatMessage::assistant("Hello."),
            ChatMessage::tool_result(&call, "9-18"),
        ]);
        assert_eq!(
            p,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nResult of hours: 9-18<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(chat_prompt(&[ChatMessage::user("Hi")])
            .starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"));
    }
}
