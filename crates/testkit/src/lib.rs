//! Fakes of the services callfleet talks to, speaking their wire protocols exactly — Deepgram
//! live STT, Cartesia, ElevenLabs and Deepgram Aura TTS, Ollama and OpenAI-compatible chat and
//! embeddings — each bound to `127.0.0.1:0` and scriptable: the transcript for each stretch of
//! speech, replies token by token with set delays, errors, mid-stream disconnects, slowness.
//! Plus audio fixtures (speech-like tones, silence) for the callers' side, and (feature `qdrant`)
//! a fake Qdrant server speaking the gRPC API `qdrant-client` uses. For phone calls, `sip` starts
//! a real Redis + livekit-server + livekit-sip stack per test and plays the phone's side (sipp, an
//! RTP recorder).
//!
//! **Architecture invariant:** a dev-dependency only, never linked into release code. The fakes
//! enforce what the real services enforce (auth headers, required fields, message order), so a
//! client that passes against them is wrong only where the real service's docs are.

pub mod audio;
pub mod aura;
pub mod cartesia;
pub mod deepgram;
pub mod elevenlabs;
pub mod fuzz;
pub mod llm;
#[cfg(feature = "qdrant")]
pub mod qdrant;
#[cfg(feature = "s3")]
pub mod s3;
mod server;
pub mod sip;
mod tts;

pub use aura::FakeAura;
pub use cartesia::FakeCartesia;
pub use deepgram::{FakeDeepgram, SttScript};
pub use elevenlabs::FakeElevenLabs;
pub use llm::{FakeOllama, FakeOpenAi, LlmFailure, LlmReply};
pub use tts::{TtsLog, TtsScript};

/// The key every fake accepts unless told otherwise.
pub const TEST_KEY: &str = "test-key";
