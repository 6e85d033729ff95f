//! The scenario engine and what surrounds it: intent matching, field collection and answers
//! ([`engine`]), what it remembers and reports ([`state`]), value extraction ([`extract`]), the
//! bot's own phrases ([`phrases`]), outcome classification ([`outcome`]), the LLM and knowledge
//! traits ([`assist`]) and scripted-call tests ([`script`]).

pub mod assist;
pub mod engine;
pub mod extract;
pub mod grounded;
pub mod outcome;
pub mod phrases;
pub mod script;
pub mod state;

pub use assist::{
    block_on, AssistError, BoxFuture, InMemoryKnowledge, KnowledgeChunk, KnowledgeSearch, Llm,
    LlmMessage,
};
pub use engine::ScenarioEngine;
pub use script::{run_script, run_script_with, CallScript, ScriptError, ScriptReport, ScriptScore};
pub use state::{
    Action, CallContext, CallResult, EngineSnapshot, EngineState, LiveText, Phase, TurnOutput,
};
