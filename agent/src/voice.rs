//! A voice call in a LiveKit room: the caller's audio track feeds the pipeline (VAD → STT →
//! turns → scenario engine → TTS), whose audio goes out on the agent's track; barge-in clears
//! the track at once. Transcript turns are also sent on the data topic `callfleet.transcript` so
//! the talk page can show them live. The engine is checkpointed after the greeting and every
//! turn; a re-placed call resumes from its checkpoint and says it is back.
//!
//! Local engines (`whisper`, `local-llm`, `piper`, `espeak`) are built through the
//! [`LocalEngines`] the session is given — with no cloud key set, they also serve what the cloud
//! cannot ([`call_chains`]) — and each call gets its VAD and end-of-turn model from a
//! [`TurnModelFactory`] (Silero + Smart Turn in the binary), so this crate links no model.
//! A bot whose STT or TTS cannot be built (no provider configured, or its key missing) is run as
//! a chat call instead, so it still answers.

use crate::session::{
    failed_record, is_caller, join_room, now_ms, opening_after_takeover, record_for, start_engine,
    CallError, ChatSession, LiveKitSettings,
};
use crate::worker::{CallHandle, CallRunner, Checkpointer};
use async_trait::async_trait;
use callfleet_core::config::BotConfig;
use callfleet_core::domain::{CallRecord, CallStatus, Outcome};
use callfleet_core::scenario::{BoxFuture, CallResult, EngineSnapshot};
use callfleet_pipeline::responder::{Reply, ResponderError};
use callfleet_pipeline::{
    CallInput, CallOutput, EndOfTurnModel, PhraseCache, Pipeline, PipelineConfig, PipelineMetrics,
    Providers, Responder, ScenarioResponder, Vad,
};
use callfleet_providers::{call_chains, LocalEngines, ProviderEnv};
use callfleet_rtc::{AudioFrame, RoomEvent};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// One call's voice activity detector and end-of-turn model; `None` keeps the pipeline's own
/// (the energy VAD, no end-of-turn model).
#[derive(Default)]
pub struct CallTurnModels {
    pub vad: Option<Box<dyn Vad>>,
    pub end_of_turn: Option<Box<dyn EndOfTurnModel>>,
}

/// Makes [`CallTurnModels`] for each call (run on the blocking pool at call start).
pub type TurnModelFactory = Arc<dyn Fn() -> CallTurnModels + Send + Sync>;

impl CallTurnModels {
    /// One call's models from `factory`, opened off the executor (reading model files).
    pub async fn open(factory: &TurnModelFactory) -> CallTurnModels {
        let factory = factory.clone();
        tokio::task::spawn_blocking(move || factory())
            .await
            .unwrap_or_default()
    }

    /// `pipeline` judging the caller with these models.
    pub fn install(self, mut pipeline: Pipeline) -> Pipeline {
        if let Some(vad) = self.vad {
            pipeline = pipeline.with_vad(vad);
        }
        if let Some(model) = self.end_of_turn {
            pipeline = pipeline.with_turn_model(model);
        }
        pipeline
    }
}

/// Runs calls over the room's audio.
pub struct VoiceSession {
    livekit: LiveKitSettings,
    providers: ProviderEnv,
    local: Option<Arc<dyn LocalEngines>>,
    turn_models: Option<TurnModelFactory>,
    phrases: PhraseCache,
    metrics: Option<PipelineMetrics>,
    chat: ChatSession,
    knowledge: Option<callfleet_knowledge::KnowledgeSearcher>,
    /// How long to wait for the caller's microphone before the call ends as NO_ANSWER.
    pub caller_timeout: Duration,
}

impl VoiceSession {
    pub fn new(livekit: LiveKitSettings, providers: ProviderEnv) -> VoiceSession {
        VoiceSession {
            chat: ChatSession::new(livekit.clone()),
            livekit,
            providers,
            local: None,
            turn_models: None,
            phrases: PhraseCache::new(),
            metrics: None,
            knowledge: None,
            caller_timeout: Duration::from_secs(60),
        }
    }

    /// Bots with `use_knowledge_base` answer from their documents through this searcher.
    pub fn with_knowledge(
        mut self,
        knowledge: callfleet_knowledge::KnowledgeSearcher,
    ) -> VoiceSession {
        self.chat = self.chat.with_knowledge(knowledge.clone());
        self.knowledge = Some(knowledge);
        self
    }

    /// Builds `whisper`, `local-llm`, `piper` and `espeak` through `engines`; with no cloud key
    /// set, they also serve the stages the cloud cannot.
    pub fn with_local_engines(mut self, engines: Arc<dyn LocalEngines>) -> VoiceSession {
        self.local = Some(engines);
        self
    }

    /// Each call's VAD and end-of-turn model come from `factory`.
    pub fn with_turn_models(mut self, factory: TurnModelFactory) -> VoiceSession {
        self.turn_models = Some(factory);
        self
    }

    pub fn with_metrics(mut self, metrics: PipelineMetrics) -> VoiceSession {
        self.metrics = Some(metrics);
        self
    }
}

/// The scenario engine, checkpointed after the greeting and after every reply.
struct CheckpointingResponder {
    inner: ScenarioResponder,
    snapshots: mpsc::UnboundedSender<EngineSnapshot>,
    resumed: bool,
}

impl CheckpointingResponder {
    fn checkpoint(&self) {
        // The receiver lives as long as the call; a send after it is gone has nothing to save.
        let _ = self.snapshots.send(self.inner.engine().snapshot());
    }
}

impl Responder for CheckpointingResponder {
    fn greeting(&mut self) -> String {
        let text = if self.resumed {
            opening_after_takeover(self.inner.engine())
        } else {
            self.inner.greeting()
        };
        self.checkpoint();
        text
    }

    fn language(&self) -> String {
        self.inner.language()
    }

    fn respond<'a>(
        &'a mut self,
        text: &'a str,
        pieces: mpsc::UnboundedSender<String>,
    ) -> BoxFuture<'a, Result<Reply, ResponderError>> {
        Box::pin(async move {
            let reply = self.inner.respond(text, pieces).await;
            self.checkpoint();
            reply
        })
    }

    fn interrupted(&mut self, said: &str, heard: &str) {
        self.inner.interrupted(said, heard);
    }

    fn finish(&mut self) -> Option<CallResult> {
        self.inner.finish()
    }
}

async fn save_checkpoints(
    checkpointer: Checkpointer,
    mut snapshots: mpsc::UnboundedReceiver<EngineSnapshot>,
) {
    while let Some(snapshot) = snapshots.recv().await {
        checkpointer.save_snapshot(&snapshot).await;
    }
}

impl VoiceSession {
    async fn converse(
        &self,
        call: &CallHandle,
        config: Arc<BotConfig>,
        providers: Providers,
        llm: Option<Arc<dyn callfleet_core::scenario::Llm>>,
        started_at: i64,
    ) -> Result<CallRecord, CallError> {
        let job = &call.job;
        let resumed = call.resume_from.is_some();
        let engine = start_engine(call, config.clone(), self.knowledge.as_ref())?;
        // A taken-over call's record holds the whole conversation: what was said on the dead
        // worker (from the checkpoint) and then what is said here.
        let earlier = if resumed {
            engine.state().transcript.clone()
        } else {
            Vec::new()
        };
        let engine = match llm {
            Some(llm) => engine.with_llm(llm),
            None => engine,
        };
        let (snapshot_tx, snapshot_rx) = mpsc::unbounded_channel();
        let saver = tokio::spawn(save_checkpoints(call.checkpointer.clone(), snapshot_rx));
        let responder = CheckpointingResponder {
            inner: ScenarioResponder::new(engine),
            snapshots: snapshot_tx,
            resumed,
        };

        let pipeline_config = PipelineConfig::for_bot(job.bot_id.clone(), &config);
        let (input_rate, output_rate) = (pipeline_config.input_rate, pipeline_config.output_rate);
        let mut pipeline =
            Pipeline::new(pipeline_config, providers).with_phrase_cache(self.phrases.clone());
        if let Some(metrics) = &self.metrics {
            pipeline = pipeline.with_metrics(metrics.clone());
        }
        if let Some(factory) = &self.turn_models {
            pipeline = CallTurnModels::open(factory).await.install(pipeline);
        }

        let (room, mut events) = join_room(&self.livekit, job).await?;
        let track = room.publish_audio("agent", output_rate).await?;
        tracing::info!(call_id = %job.call_id, room = %job.room, resumed, "joined the room for a voice call");

        // The call starts when the caller's microphone does, so the greeting is heard.
        let mut caller = job.caller_identity.clone();
        let wait = tokio::time::sleep(self.caller_timeout);
        tokio::pin!(wait);
        let stream = loop {
            let event = tokio::select! {
                () = call.cancel.cancelled() => None,
                () = &mut wait => None,
                e = events.recv() => e,
            };
            match event {
                Some(RoomEvent::TrackSubscribed {
                    participant,
                    stream,
                    ..
                }) if is_caller(participant.kind)
                    && caller.as_deref().is_none_or(|c| c == participant.identity) =>
                {
                    caller = Some(participant.identity.clone());
                    break Some(stream.resampled(input_rate));
                }
                Some(RoomEvent::Disconnected { .. }) | None => break None,
                Some(_) => {}
            }
        };
        let Some(mut stream) = stream else {
            room.leave().await;
            drop(saver);
            let mut record = record_for(job, started_at, CallStatus::NoAnswer);
            record.outcome = Some(Outcome {
                kind: "NO_ANSWER".into(),
                evidence: vec!["the caller's audio never arrived".into()],
            });
            return Ok(record);
        };

        let (input_tx, input_rx) = mpsc::channel::<CallInput>(256);
        let (output_tx, mut output_rx) = mpsc::channel::<CallOutput>(256);
        let microphone = {
            let input = input_tx.clone();
            tokio::spawn(async move {
                while let Some(frame) = stream.recv().await {
                    if input.send(CallInput::Audio(frame.samples)).await.is_err() {
                        break;
                    }
                }
            })
        };
        let room_events = {
            let (input, caller, cancel) = (input_tx.clone(), caller.clone(), call.cancel.clone());
            tokio::spawn(async move {
                loop {
                    let event = tokio::select! {
                        () = cancel.cancelled() => None,
                        e = events.recv() => e,
                    };
                    match event {
                        Some(RoomEvent::ParticipantLeft { identity })
                            if caller.as_deref() == Some(identity.as_str()) =>
                        {
                            break
                        }
                        Some(RoomEvent::Dtmf { from, digit, .. })
                            if caller.as_deref() == Some(from.as_str()) =>
                        {
                            for c in digit.chars() {
                                let _ = input.send(CallInput::Dtmf(c)).await;
                            }
                        }
                        Some(RoomEvent::Disconnected { .. }) | None => break,
                        Some(_) => {}
                    }
                }
                let _ = input.send(CallInput::Hangup).await;
            })
        };
        let speaker = {
            let (room, track) = (room.clone(), track.clone());
            tokio::spawn(async move {
                while let Some(out) = output_rx.recv().await {
                    match out {
                        CallOutput::Audio(samples) => {
                            track.push(&AudioFrame::new(samples, output_rate))
                        }
                        CallOutput::Clear => track.clear(),
                        CallOutput::Transcript(turn) => {
                            let body = serde_json::json!({"speaker": turn.speaker, "text": turn.text, "interrupted": turn.interrupted});
                            let _ = room
                                .send_data("callfleet.transcript", body.to_string().into_bytes())
                                .await;
                        }
                        CallOutput::Metrics(_) => {}
                    }
                }
                track.wait_played_out().await;
            })
        };
        drop(input_tx);
        let report = pipeline.run(Box::new(responder), input_rx, output_tx).await;
        speaker.await.ok();
        microphone.abort();
        room_events.abort();
        room.leave().await;
        saver.await.ok();
        let report = report?;

        let mut record = record_for(
            job,
            started_at,
            if call.cancel.is_cancelled() {
                CallStatus::Failed
            } else {
                CallStatus::Completed
            },
        );
        record.transcript = earlier;
        record.transcript.extend(report.transcript);
        record.metrics = report.metrics;
        if let Some(result) = report.result {
            record.language = Some(result.language);
            record.fields = result.fields;
            record.outcome = Some(result.outcome);
        }
        Ok(record)
    }
}

#[async_trait]
impl CallRunner for VoiceSession {
    async fn run(&self, call: CallHandle) -> CallRecord {
        let started_at = if call.job.created_at > 0 {
            call.job.created_at
        } else {
            now_ms()
        };
        let config = match BotConfig::from_value(&call.job.config) {
            Ok(config) => Arc::new(config),
            Err(e) => {
                return failed_record(&call.job, started_at, &CallError::Config(e.to_string()))
            }
        };
        let chains = call_chains(
            &config.providers,
            &config.language,
            &self.providers,
            self.local.as_deref(),
        );
        tracing::info!(call_id = %call.job.call_id, chosen = ?chains.chosen, skipped = ?chains.skipped, "Providers for this call.");
        let llm = chains.llm.map(|model| {
            let engine_llm =
                callfleet_providers::EngineLlm::for_call(model, config.providers.llm.as_ref());
            Arc::new(engine_llm) as Arc<dyn callfleet_core::scenario::Llm>
        });
        let (Some(stt), Some(tts)) = (chains.stt, chains.tts) else {
            tracing::info!(call_id = %call.job.call_id, skipped = ?chains.skipped, "no speech providers for this bot: running the call over chat");
            return self.chat.run_with_llm(call, llm).await;
        };
        match self
            .converse(&call, config, Providers { stt, tts }, llm, started_at)
            .await
        {
            Ok(record) => record,
            Err(e) => {
                tracing::error!(call_id = %call.job.call_id, error = %e, "voice call failed");
                failed_record(&call.job, started_at, &e)
            }
        }
    }
}
