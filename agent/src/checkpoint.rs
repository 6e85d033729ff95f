//! Checkpoints: after the greeting and after every turn, the call's engine is saved on the fleet
//! bus, so a worker that takes the call over when this one dies resumes where it was.

use crate::plan::{now_ms, opening_after_takeover};
use callfleet_core::scenario::{BoxFuture, CallResult, EngineSnapshot, ScenarioEngine};
use callfleet_fleet::{Checkpoint, FleetBus, FleetError, CHECKPOINT_TTL, MESSAGE_VERSION};
use callfleet_pipeline::responder::{Reply, ResponderError};
use callfleet_pipeline::{Responder, ScenarioResponder};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Saves a call's checkpoint after each turn, fenced by the job's attempt: when the bus says a
/// newer attempt holds the call, this worker has lost it and `lost` is cancelled.
#[derive(Clone)]
pub struct Checkpointer {
    bus: Arc<dyn FleetBus>,
    call_id: String,
    attempt: u32,
    lost: CancellationToken,
}

impl Checkpointer {
    pub(crate) fn new(
        bus: Arc<dyn FleetBus>,
        call_id: String,
        attempt: u32,
        lost: CancellationToken,
    ) -> Checkpointer {
        Checkpointer {
            bus,
            call_id,
            attempt,
            lost,
        }
    }

    pub async fn save(&self, engine: serde_json::Value, turns: u32) -> Result<(), FleetError> {
        let checkpoint = Checkpoint {
            v: MESSAGE_VERSION,
            call_id: self.call_id.clone(),
            engine,
            turns,
            at: now_ms(),
            attempt: self.attempt,
        };
        let saved = self.bus.save_checkpoint(&checkpoint, CHECKPOINT_TTL).await;
        if let Err(FleetError::Fenced { held, .. }) = &saved {
            tracing::warn!(call_id = %self.call_id, attempt = self.attempt, held, "another worker holds this call now; leaving it");
            self.lost.cancel();
        }
        saved
    }

    /// Saves the engine's snapshot; a failure is logged, never fatal to the call.
    pub async fn save_snapshot(&self, snapshot: &EngineSnapshot) {
        match serde_json::to_value(snapshot) {
            Ok(value) => {
                if let Err(e) = self.save(value, snapshot.state.user_turns).await {
                    tracing::warn!(call_id = %self.call_id, error = %e, "checkpoint not saved");
                }
            }
            Err(e) => {
                tracing::error!(call_id = %self.call_id, error = %e, "checkpoint not serialisable")
            }
        }
    }
}

/// The scenario engine as a voice call's responder, checkpointed after the greeting and after
/// every reply. The snapshots are saved in order by a task of their own, so a slow bus never
/// holds up the pipeline.
pub(crate) struct CheckpointingResponder {
    inner: ScenarioResponder,
    snapshots: mpsc::UnboundedSender<EngineSnapshot>,
    resumed: bool,
}

impl CheckpointingResponder {
    /// The responder for `engine`, and the task saving its snapshots through `checkpointer`
    /// (it ends once the responder is dropped and every snapshot is saved).
    pub(crate) fn start(
        engine: ScenarioEngine,
        resumed: bool,
        checkpointer: Checkpointer,
    ) -> (CheckpointingResponder, JoinHandle<()>) {
        let (snapshots, mut pending) = mpsc::unbounded_channel::<EngineSnapshot>();
        let saver = tokio::spawn(async move {
            while let Some(snapshot) = pending.recv().await {
                checkpointer.save_snapshot(&snapshot).await;
            }
        });
        let responder = CheckpointingResponder {
            inner: ScenarioResponder::new(engine),
            snapshots,
            resumed,
        };
        (responder, saver)
    }

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
        self.respond_heard(text, None, pieces)
    }

    fn respond_heard<'a>(
        &'a mut self,
        text: &'a str,
        confidence: Option<f32>,
        pieces: mpsc::UnboundedSender<String>,
    ) -> BoxFuture<'a, Result<Reply, ResponderError>> {
        Box::pin(async move {
            let reply = self.inner.respond_heard(text, confidence, pieces).await;
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
