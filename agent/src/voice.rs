//! A voice call in a LiveKit room: the caller's audio track feeds the pipeline (VAD → STT →
//! turns → scenario engine → TTS), whose audio goes out on the agent's track; barge-in clears
//! the track at once. The agent's state (`lk.agent.state`) and the transcriptions of both sides
//! (`lk.transcription` text streams) follow the pipeline's events live, as LiveKit's clients and
//! the talk page read them (`livekit_conventions.rs`). The engine is checkpointed after the
//! greeting and every turn; a re-placed call resumes from its checkpoint and says it is back.
//!
//! Local engines (`whisper`, `local-llm`, `piper`, `espeak`) are built through the
//! [`LocalEngines`] the session is given — with no cloud key set, they also serve what the cloud
//! cannot ([`CallPlan::with_providers`]) — and each call gets its VAD and end-of-turn model from
//! a [`TurnModelFactory`] (Silero + Smart Turn in the binary), so this crate links no model.
//! A bot whose STT or TTS cannot be built (no provider configured, or its key missing) is run as
//! a chat call instead, so it still answers.
//!
//! A call runs in steps ([`VoiceSession::converse`]): the pipeline and the checkpointing
//! responder from the plan, the room joined and the agent's track published, the wait for the
//! caller's microphone, the conversation (three tasks around the pipeline: microphone, room
//! events, speaker), and the record.

use crate::chat::ChatSession;
use crate::checkpoint::CheckpointingResponder;
use crate::livekit_conventions::{AgentStatus, Transcriptions};
use crate::plan::{
    call_started_at, failed_record, is_caller, join_room, no_answer_record, opening_after_takeover,
    record_for, CallError, CallPlan, LiveKitSettings, TurnModelFactory,
};
use crate::recorder::Recorder;
use crate::worker::{CallHandle, CallRunner};
use async_trait::async_trait;
use callfleet_core::domain::{CallRecord, CallStatus, Speaker, Turn};
use callfleet_livekit_admin::LiveKitApi;
use callfleet_pipeline::{
    AgentState, CallInput, CallOutput, CallReport, PhraseCache, Pipeline, PipelineMetrics,
    Providers,
};
use callfleet_providers::{LocalEngines, ProviderEnv};
use callfleet_recording::RecordingStore;
use callfleet_rtc::{AudioFrame, AudioStream, LocalAudioTrack, ParticipantKind, RoomEvent};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

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
    /// Where calls of bots with `recording.enabled` leave their two-channel recording.
    recordings: Option<Arc<dyn RecordingStore>>,
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
            recordings: None,
        }
    }

    /// Records the calls of bots that ask for it into `recordings` (under
    /// `recordings/{company}/{call}.wav`, where post-call processing finds it).
    pub fn with_recordings(mut self, recordings: Arc<dyn RecordingStore>) -> VoiceSession {
        self.recordings = Some(recordings);
        self
    }

    /// Stores the call's recording before its record is queued; a failure loses the recording,
    /// never the call.
    async fn save_recording(&self, job: &callfleet_fleet::Job, recorder: Option<Recorder>) {
        let (Some(recorder), Some(recordings)) = (recorder, &self.recordings) else {
            return;
        };
        let key = callfleet_recording::recording_key(&job.company_id, &job.call_id);
        if let Err(e) = recordings.put(&key, recorder.wav()).await {
            tracing::error!(call_id = %job.call_id, error = %e, "the call's recording was not stored");
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

/// The caller, once their microphone is heard.
struct Caller {
    identity: String,
    /// The caller's audio track, which their transcriptions name.
    track_sid: String,
    microphone: AudioStream,
    /// A phone through livekit-sip: the call is hung up when the bot ends it.
    phone: bool,
}

/// The attribute livekit-sip keeps on its participant: `ringing` until the phone leg is
/// answered, then `active`, `hangup` at the end.
const SIP_CALL_STATUS: &str = "sip.callStatus";

/// Whether a SIP participant's phone leg is answered. livekit-sip answers an inbound call once it
/// hears a track in the room (the agent's), so a greeting spoken before that would be cut; one
/// without the attribute is taken as answered.
fn answered(attributes: &std::collections::HashMap<String, String>) -> bool {
    attributes
        .get(SIP_CALL_STATUS)
        .is_none_or(|status| status == "active")
}

/// The opening being synthesized ahead of the call; aborted if the call ends first.
struct Preparing(Option<tokio::task::JoinHandle<()>>);

impl Preparing {
    /// The caller is there. Prepared: the call says the opening from the cache. Not yet (a slow
    /// synthesizer, a long opening): the call streams it itself rather than wait for the whole
    /// of it — while a greeting's preparation goes on into the cache for the bot's next call.
    fn settle(mut self, keep_going: bool) {
        if let Some(task) = self.0.take() {
            if !task.is_finished() && !keep_going {
                task.abort();
            }
        }
    }
}

impl Drop for Preparing {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

impl VoiceSession {
    /// The call from its plan to its record: pipeline, room, caller, conversation, record.
    async fn converse(
        &self,
        call: &CallHandle,
        plan: CallPlan,
        speech: Providers,
    ) -> Result<CallRecord, CallError> {
        let job = &call.job;
        let pipeline = self.pipeline(&plan, speech).await;
        let rates = plan.pipeline_config();
        let recording = plan.config.recording.enabled;
        let transfer_to = plan.config.transfer_to.clone();
        // The opening is synthesized while the agent joins and waits for the caller, so the
        // caller hears it as soon as they are there, not a synthesis later.
        let opening = if plan.resumed {
            opening_after_takeover(&plan.engine)
        } else {
            plan.config.greeting.clone()
        };
        let prepared = Preparing(Some(tokio::spawn(pipeline.prepare_phrase(opening))));
        let CallPlan {
            engine,
            resumed,
            earlier,
            started_at,
            ..
        } = plan;
        let (responder, saver) =
            CheckpointingResponder::start(engine, resumed, call.checkpointer.clone());

        let (room, mut events) = join_room(&self.livekit, job).await?;
        let track = room.publish_audio("agent", rates.output_rate).await?;
        tracing::info!(call_id = %job.call_id, room = %job.room, resumed, "joined the room for a voice call");

        let Some(caller) = self
            .wait_for_caller(call, &mut events, &track, rates.output_rate)
            .await
        else {
            room.leave().await;
            drop(saver);
            return Ok(no_answer_record(
                job,
                started_at,
                "the caller's audio never arrived",
            ));
        };
        let caller = Caller {
            microphone: caller.microphone.resampled(rates.input_rate),
            ..caller
        };

        let (caller_identity, phone) = (caller.identity.clone(), caller.phone);
        let recorder = (recording && self.recordings.is_some()).then(Recorder::start);
        let (input_tx, input_rx) = mpsc::channel::<CallInput>(256);
        let (output_tx, output_rx) = mpsc::channel::<CallOutput>(256);
        let microphone = tokio::spawn(microphone(
            caller.microphone,
            input_tx.clone(),
            recorder.clone().map(|r| (r, rates.input_rate)),
        ));
        let room_events = tokio::spawn(caller_events(
            events,
            caller.identity,
            call.cancel.clone(),
            input_tx,
        ));
        let transcriptions = Transcriptions::new(
            room.clone(),
            caller_identity.clone(),
            caller.track_sid.clone(),
            track.sid().to_string(),
        );
        let speaker = tokio::spawn(speaker(
            AgentStatus::new(room.clone()),
            transcriptions,
            track,
            output_rx,
            rates.output_rate,
            recorder.clone(),
        ));
        prepared.settle(!resumed);
        let report = pipeline.run(Box::new(responder), input_rx, output_tx).await;
        speaker.await.ok();
        microphone.abort();
        room_events.abort();
        // The bot ended the call (goodbye, max turns, silence) or the caller left: hang the
        // phone leg up, or it would stay open to an empty room. A forced stop leaves it for the
        // worker that takes the call over.
        // A caller who asked for a person goes to the number the bot names (SIP REFER); the
        // phone leg leaves the room once the transfer is accepted.
        let transfer = report
            .as_ref()
            .ok()
            .and_then(|r| r.result.as_ref())
            .filter(|r| r.state.transferred.is_some())
            .and(transfer_to.as_deref());
        if phone && !call.cancel.is_cancelled() {
            match transfer {
                Some(to) if self.transfer(&job.room, &caller_identity, to).await => {}
                _ => self.hang_up(&job.room, &caller_identity).await,
            }
        }
        room.leave().await;
        saver.await.ok();
        self.save_recording(job, recorder).await;
        Ok(voice_record(call, started_at, earlier, report?))
    }

    /// The plan's pipeline with this worker's phrase cache, metrics and turn models.
    async fn pipeline(&self, plan: &CallPlan, speech: Providers) -> Pipeline {
        let mut pipeline = plan
            .pipeline(speech, self.turn_models.as_ref())
            .await
            .with_phrase_cache(self.phrases.clone());
        if let Some(metrics) = &self.metrics {
            pipeline = pipeline.with_metrics(metrics.clone());
        }
        pipeline
    }

    /// Transfers the phone participant to `to` with a SIP REFER; whether the transfer was accepted.
    async fn transfer(&self, room: &str, identity: &str, to: &str) -> bool {
        let target = if to.starts_with("tel:") || to.starts_with("sip:") {
            to.to_string()
        } else {
            format!("tel:{to}")
        };
        let api = match LiveKitApi::new(
            &self.livekit.url,
            &self.livekit.api_key,
            self.livekit.api_secret.clone(),
        ) {
            Ok(api) => api,
            Err(e) => {
                tracing::warn!(room = %room, error = %e, "Could not transfer the phone.");
                return false;
            }
        };
        match api
            .transfer_sip_participant(room, identity, &target, Some(Duration::from_secs(30)))
            .await
        {
            Ok(()) => {
                tracing::info!(room = %room, caller = %identity, to = %target, "Transferred the phone.");
                true
            }
            Err(e) => {
                tracing::warn!(room = %room, to = %target, error = %e, "The transfer failed; hanging up.");
                false
            }
        }
    }

    /// Removes the phone participant, which makes livekit-sip send the BYE. Already gone is done.
    async fn hang_up(&self, room: &str, identity: &str) {
        let api = match LiveKitApi::new(
            &self.livekit.url,
            &self.livekit.api_key,
            self.livekit.api_secret.clone(),
        ) {
            Ok(api) => api,
            Err(e) => {
                tracing::warn!(room = %room, error = %e, "Could not hang the phone up.");
                return;
            }
        };
        match api.remove_participant(room, identity).await {
            Ok(()) => tracing::info!(room = %room, caller = %identity, "Hung the phone up."),
            Err(e) => tracing::warn!(room = %room, error = %e, "Could not hang the phone up."),
        }
    }

    /// Waits for the caller's microphone — and for a phone, for its leg to be answered: the call
    /// starts then, so the greeting is heard whole. `None` when it never comes (timeout, forced
    /// stop, the room gone, the phone hung up while ringing).
    async fn wait_for_caller(
        &self,
        call: &CallHandle,
        events: &mut mpsc::Receiver<RoomEvent>,
        track: &LocalAudioTrack,
        rate: u32,
    ) -> Option<Caller> {
        let expected = call.job.caller_identity.as_deref();
        let wait = tokio::time::sleep(self.caller_timeout);
        tokio::pin!(wait);
        // A phone heard but not yet answered.
        let mut ringing: Option<Caller> = None;
        // livekit-sip answers once media of ours reaches it: while the phone rings the track
        // carries a little silence (never queued ahead, so the greeting follows the answer).
        let mut keep_alive = tokio::time::interval(Duration::from_millis(100));
        loop {
            let event = tokio::select! {
                () = call.cancel.cancelled() => None,
                () = &mut wait => None,
                _ = keep_alive.tick(), if ringing.is_some() => {
                    track.push(&AudioFrame::new(vec![0; rate as usize / 10], rate));
                    continue;
                }
                e = events.recv() => e,
            };
            match event {
                Some(RoomEvent::TrackSubscribed {
                    participant,
                    stream,
                    track_sid,
                    ..
                }) if is_caller(participant.kind)
                    && expected.is_none_or(|c| c == participant.identity) =>
                {
                    let caller = Caller {
                        phone: participant.kind == ParticipantKind::Sip,
                        identity: participant.identity,
                        track_sid,
                        microphone: stream,
                    };
                    if !caller.phone || answered(&participant.attributes) {
                        return Some(caller);
                    }
                    tracing::info!(call_id = %call.job.call_id, "The phone is ringing; waiting for livekit-sip to answer it.");
                    ringing = Some(caller);
                }
                Some(RoomEvent::AttributesChanged {
                    identity,
                    attributes,
                }) if ringing.as_ref().is_some_and(|c| c.identity == identity) => {
                    if attributes.get(SIP_CALL_STATUS).map(String::as_str) == Some("hangup") {
                        return None;
                    }
                    if answered(&attributes) {
                        return ringing;
                    }
                }
                Some(RoomEvent::ParticipantLeft { identity })
                    if ringing.as_ref().is_some_and(|c| c.identity == identity) =>
                {
                    return None;
                }
                Some(RoomEvent::Disconnected { .. }) | None => return None,
                Some(_) => {}
            }
        }
    }
}

/// The caller's audio into the pipeline (and the recording, at the pipeline's input rate).
async fn microphone(
    mut stream: AudioStream,
    input: mpsc::Sender<CallInput>,
    recorder: Option<(Recorder, u32)>,
) {
    while let Some(frame) = stream.recv().await {
        if let Some((recorder, rate)) = &recorder {
            recorder.caller(&frame.samples, *rate);
        }
        if input.send(CallInput::Audio(frame.samples)).await.is_err() {
            break;
        }
    }
}

/// The caller's keypad and chat into the pipeline, and a hang-up when they leave, the room goes
/// or the worker is forced to stop.
async fn caller_events(
    mut events: mpsc::Receiver<RoomEvent>,
    caller: String,
    cancel: CancellationToken,
    input: mpsc::Sender<CallInput>,
) {
    loop {
        let event = tokio::select! {
            () = cancel.cancelled() => None,
            e = events.recv() => e,
        };
        match event {
            Some(RoomEvent::ParticipantLeft { identity }) if identity == caller => break,
            Some(RoomEvent::Dtmf { from, digit, .. }) if from == caller => {
                for c in digit.chars() {
                    let _ = input.send(CallInput::Dtmf(c)).await;
                }
            }
            // Typed in the room's chat (a text stream or a legacy chat packet): a turn, answered
            // by voice and in the agent's transcription, as LiveKit Agents answers text input.
            Some(RoomEvent::ChatMessage { from, text }) if from == caller => {
                let _ = input.send(CallInput::Text(text)).await;
            }
            Some(RoomEvent::Disconnected { .. }) | None => break,
            Some(_) => {}
        }
    }
    let _ = input.send(CallInput::Hangup).await;
}

/// The pipeline's output into the room: audio on the agent's track (cleared on barge-in), the
/// agent's state and both sides' transcriptions; returns once the last audio has played out.
async fn speaker(
    mut status: AgentStatus,
    mut transcriptions: Transcriptions,
    track: LocalAudioTrack,
    mut output: mpsc::Receiver<CallOutput>,
    rate: u32,
    recorder: Option<Recorder>,
) {
    while let Some(out) = output.recv().await {
        match out {
            CallOutput::Audio(samples) => {
                if let Some(recorder) = &recorder {
                    recorder.bot(&samples, rate);
                }
                track.push(&AudioFrame::new(samples, rate))
            }
            CallOutput::Clear => {
                if let Some(recorder) = &recorder {
                    recorder.clear();
                }
                track.clear()
            }
            CallOutput::State(state) => {
                if state == AgentState::Speaking {
                    transcriptions.agent_speaking().await;
                }
                status.set(state).await;
            }
            CallOutput::Heard { text, is_final } => {
                transcriptions.caller_heard(&text, is_final).await
            }
            CallOutput::Saying(words) => transcriptions.agent_saying(&words).await,
            CallOutput::Transcript(turn) if turn.speaker == Speaker::Bot => {
                transcriptions.agent_said(&turn.text).await
            }
            CallOutput::Transcript(_) | CallOutput::Metrics(_) => {}
        }
    }
    track.wait_played_out().await;
}

/// A voice call's record: the whole conversation (what was said before a takeover, then here),
/// its metrics and the engine's result. Failed when the worker was forced to stop.
fn voice_record(
    call: &CallHandle,
    started_at: i64,
    earlier: Vec<Turn>,
    report: CallReport,
) -> CallRecord {
    let status = if call.cancel.is_cancelled() {
        CallStatus::Failed
    } else {
        CallStatus::Completed
    };
    let mut record = record_for(&call.job, started_at, status);
    record.transcript = earlier;
    record.transcript.extend(report.transcript);
    record.metrics = report.metrics;
    if let Some(result) = report.result {
        record.language = Some(result.language);
        record.fields = result.fields;
        record.outcome = Some(result.outcome);
    }
    record
}

#[async_trait]
impl CallRunner for VoiceSession {
    async fn run(&self, call: CallHandle) -> CallRecord {
        let mut plan = match CallPlan::for_job(&call, self.knowledge.as_ref()) {
            Ok(plan) => plan.with_providers(&self.providers, self.local.as_deref()),
            Err(e) => {
                tracing::error!(call_id = %call.job.call_id, error = %e, "voice call failed");
                return failed_record(&call.job, call_started_at(&call.job), &e);
            }
        };
        tracing::info!(call_id = %call.job.call_id, chosen = ?plan.chosen, skipped = ?plan.skipped, "Providers for this call.");
        let Some(speech) = plan.speech.take() else {
            tracing::info!(call_id = %call.job.call_id, skipped = ?plan.skipped, "no speech providers for this bot: running the call over chat");
            return self.chat.run_plan(&call, plan).await;
        };
        let started_at = plan.started_at;
        match self.converse(&call, plan, speech).await {
            Ok(record) => record,
            Err(e) => {
                tracing::error!(call_id = %call.job.call_id, error = %e, "voice call failed");
                failed_record(&call.job, started_at, &e)
            }
        }
    }
}
