//! The speech and language providers a call talks to: the traits the pipeline drives
//! ([`SpeechToText`], [`LanguageModel`], [`TextToSpeech`], [`Embedder`]), one client module per
//! cloud service speaking its real wire protocol (Deepgram live STT, Cartesia, ElevenLabs and
//! Deepgram Aura TTS, Ollama, OpenAI-compatible chat and embeddings), retries with backoff and
//! fallback chains per provider kind.
//!
//! **Architecture invariant:** a provider's JSON types never leave its module; everything public
//! is our own type, so the pipeline cannot tell Deepgram from a local engine. Sessions are plain
//! channel pairs driven by one task per connection, so a session can be opened at call start and
//! cancelled by dropping it. Keys travel as [`callfleet_core::secret::Secret`] and are sent only
//! in the request header that needs them.

mod bytes_pcm;
mod config;
mod fallback;
mod http;
mod lines;
mod retry;
mod types;
mod ws;

pub mod aura;
pub mod cartesia;
pub mod deepgram;
pub mod elevenlabs;
pub mod ollama;
pub mod openai;

pub use config::{
    build_chains, build_chains_with, call_chains, local_default, with_local_defaults, LocalEngines,
    ProviderChains, ProviderEnv, LOCAL_LLM, LOCAL_STT, LOCAL_TTS,
};
pub use fallback::{
    heard_prefix, unheard_rest, FallbackEmbedder, FallbackLlm, FallbackStt, FallbackTts,
    SPOKEN_CHARS_PER_SEC,
};
pub use retry::Backoff;
pub use types::*;
pub use ws::open_connections;
