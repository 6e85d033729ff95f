//! A call from a recording: the caller's audio is played into the pipeline in real time, then
//! silence until the bot has finished; the bot's frames are laid on the same timeline, so the
//! reply track lines up with the caller's. The console's audio mode and tests use it.

use crate::responder::Responder;
use crate::runtime::{CallInput, CallOutput, CallReport, Pipeline, PipelineError};
use callfleet_core::domain::Turn;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub struct RecordedCall {
    /// The bot's audio at the pipeline's output rate, silence where it said nothing.
    pub reply: Vec<i16>,
    pub report: CallReport,
}

/// Plays `caller` (at the pipeline's input rate) into a call. After the recording ends, the call
/// goes on in silence until the bot has been quiet for `tail`, then the caller hangs up.
/// `on_turn` sees every transcript line as it happens.
pub async fn run_recorded_call(
    pipeline: Pipeline,
    responder: Box<dyn Responder>,
    caller: &[i16],
    tail: Duration,
    mut on_turn: impl FnMut(&Turn),
) -> Result<RecordedCall, PipelineError> {
    let (in_rate, out_rate, frame_ms) = {
        let c = pipeline.config();
        (c.input_rate, c.output_rate, c.frame_ms)
    };
    let (in_tx, in_rx) = mpsc::channel(64);
    let (out_tx, mut out_rx) = mpsc::channel(256);
    let call = tokio::spawn(pipeline.run(responder, in_rx, out_tx));
    let frame = (in_rate * frame_ms / 1000).max(1) as usize;
    let mut frames = caller.chunks(frame).map(<[i16]>::to_vec);
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(frame_ms as u64));
    let mut reply: Vec<i16> = Vec::new();
    let mut last_activity = Instant::now();
    let mut recording_done = false;
    let mut output_open = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let next = frames.next();
                if next.is_none() && !recording_done {
                    recording_done = true;
                    last_activity = Instant::now();
                }
                if recording_done && last_activity.elapsed() >= tail {
                    let _ = in_tx.send(CallInput::Hangup).await;
                    break;
                }
                let f = next.unwrap_or_else(|| vec![0; frame]);
                if in_tx.send(CallInput::Audio(f)).await.is_err() {
                    break;
                }
            }
            out = out_rx.recv(), if output_open => match out {
                Some(CallOutput::Audio(f)) => {
                    last_activity = Instant::now();
                    // Frames are paced in real time, so arrival time is their place on the timeline.
                    let at = (start.elapsed().as_secs_f64() * out_rate as f64) as usize;
                    if reply.len() < at.saturating_sub(f.len()) {
                        reply.resize(at - f.len(), 0);
                    }
                    reply.extend(f);
                }
                Some(CallOutput::Transcript(t)) => {
                    last_activity = Instant::now();
                    on_turn(&t);
                }
                Some(_) => {}
                None => output_open = false,
            },
        }
        if !output_open {
            break;
        }
    }
    // Whatever is still in flight after the hang-up.
    while let Some(out) = out_rx.recv().await {
        match out {
            CallOutput::Audio(f) => reply.extend(f),
            CallOutput::Transcript(t) => on_turn(&t),
            _ => {}
        }
    }
    let report = call
        .await
        .map_err(|e| PipelineError::Task(e.to_string()))??;
    Ok(RecordedCall { reply, report })
}
