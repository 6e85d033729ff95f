//! The call pipeline, independent of LiveKit: caller audio frames in → VAD → streaming STT →
//! turn-taking → responder (the scenario engine, or an LLM) → sentence splitter → streaming
//! TTS → paced audio frames out, with barge-in, false-interruption recovery, silence
//! re-prompts, a cached greeting and apology, and per-turn latency metrics.
//!
//! **Architecture invariant:** the pipeline knows frames and text, never a room, a track or a
//! codec — the LiveKit participant, the console and the tests drive the same [`Pipeline`].
//! Its decisions live in I/O-free modules ([`turn`], [`splitter`], [`vad`]) that read no clock;
//! the runtime feeds them tokio time, so every timing rule runs under a paused clock in tests.

pub mod end_of_turn;
pub mod metrics;
pub mod phrases;
pub mod recorded;
pub mod responder;
pub mod runtime;
pub mod splitter;
pub mod turn;
pub mod vad;

pub use end_of_turn::EndOfTurnModel;
pub use metrics::PipelineMetrics;
pub use phrases::PhraseCache;
pub use recorded::{run_recorded_call, RecordedCall};
pub use responder::{LlmResponder, Responder, ScenarioResponder};
pub use runtime::{
    AgentState, CallInput, CallOutput, CallReport, Pipeline, PipelineConfig, PipelineError,
    Providers,
};
pub use splitter::{SentenceSplitter, SplitRules};
pub use turn::{Endpoint, TurnAction, TurnConfig, TurnDetector, TurnInput};
pub use vad::{EnergyVad, Vad, VadSmoother};
