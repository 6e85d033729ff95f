//! The reply: the responder runs in a task of its own (so a barge-in can cancel it by dropping
//! its future, the LLM request with it), and its pieces come back to the call, where the splitter
//! cuts them into what the synthesizer says.

use super::call::Call;
use super::PipelineError;
use crate::responder::{Reply, Responder, ResponderError};
use crate::turn::TurnInput;
use callfleet_core::scenario::CallResult;
use tokio::sync::{mpsc, oneshot};

pub(super) enum Request {
    Respond {
        turn: u64,
        text: String,
        confidence: Option<f32>,
    },
    Interrupted {
        said: String,
        heard: String,
    },
    Finish(oneshot::Sender<Option<CallResult>>),
}

pub(super) enum ResponderEvent {
    Piece {
        turn: u64,
        text: String,
    },
    Done {
        turn: u64,
        result: Result<Reply, ResponderError>,
    },
}

pub(super) fn spawn_responder(
    mut responder: Box<dyn Responder>,
) -> (
    mpsc::UnboundedSender<Request>,
    mpsc::UnboundedReceiver<ResponderEvent>,
    mpsc::UnboundedSender<u64>,
) {
    let (req_tx, mut req_rx) = mpsc::unbounded_channel::<Request>();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let (cancel_tx, mut cancel_rx) = mpsc::unbounded_channel::<u64>();
    tokio::spawn(async move {
        while let Some(req) = req_rx.recv().await {
            match req {
                Request::Respond {
                    turn,
                    text,
                    confidence,
                } => {
                    let (piece_tx, mut piece_rx) = mpsc::unbounded_channel();
                    let reply = responder.respond_heard(&text, confidence, piece_tx);
                    tokio::pin!(reply);
                    loop {
                        tokio::select! {
                            biased;
                            cancel = cancel_rx.recv() => {
                                // Dropping the reply's future cancels the LLM request with it.
                                if cancel == Some(turn) || cancel.is_none() {
                                    break;
                                }
                            }
                            Some(piece) = piece_rx.recv() => {
                                let _ = ev_tx.send(ResponderEvent::Piece { turn, text: piece });
                            }
                            result = &mut reply => {
                                while let Ok(piece) = piece_rx.try_recv() {
                                    let _ = ev_tx.send(ResponderEvent::Piece { turn, text: piece });
                                }
                                let _ = ev_tx.send(ResponderEvent::Done { turn, result });
                                break;
                            }
                        }
                    }
                }
                Request::Interrupted { said, heard } => responder.interrupted(&said, &heard),
                Request::Finish(tx) => {
                    let _ = tx.send(responder.finish());
                    return;
                }
            }
        }
    });
    (req_tx, ev_rx, cancel_tx)
}

impl Call {
    /// Sends text of the current responder turn to the synthesizer.
    fn speak_piece(&mut self, piece: String) {
        let now = self.now();
        let Some(s) = &mut self.speaking else { return };
        if s.apologized {
            return;
        }
        let Some(tts) = self.tts.as_ref().filter(|_| !self.tts_failed) else {
            return;
        };
        let id = *s.utterance.get_or_insert_with(|| tts.start());
        s.timer.tts_request.get_or_insert(now);
        s.text.push_str(&piece);
        let _ = tts.push_text(id, piece);
    }

    pub(super) async fn responder_event(
        &mut self,
        ev: ResponderEvent,
    ) -> Result<(), PipelineError> {
        let now = self.now();
        let current = self.speaking.as_ref().and_then(|s| s.turn);
        match ev {
            ResponderEvent::Piece { turn, text } if Some(turn) == current => {
                if let Some(s) = &mut self.speaking {
                    s.timer.first_text.get_or_insert(now);
                }
                for piece in self.splitter.push(&text) {
                    self.speak_piece(piece);
                }
            }
            ResponderEvent::Done { turn, result } if Some(turn) == current => {
                if let Some(rest) = self.splitter.finish() {
                    self.speak_piece(rest);
                }
                match result {
                    Ok(reply) => {
                        let actions = self
                            .detector
                            .handle(now, TurnInput::Collecting(reply.collecting_digits));
                        if let Some(s) = &mut self.speaking {
                            s.text_complete = true;
                            s.ends_call = reply.ends_call;
                            s.timer.first_text.get_or_insert(now);
                            match (s.utterance, &self.tts) {
                                (Some(id), Some(tts)) => {
                                    let _ = tts.finish(id);
                                }
                                // Nothing to say (an empty reply): done at once.
                                _ => s.tts_done = true,
                            }
                        }
                        self.act(actions).await?;
                        if self.queue.is_empty() {
                            self.maybe_finish_utterance().await?;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "The responder failed; apologizing.");
                        let said_something =
                            self.speaking.as_ref().is_some_and(|s| s.samples_in > 0);
                        if said_something {
                            if let Some(s) = &mut self.speaking {
                                s.text_complete = true;
                                if let (Some(id), Some(tts)) = (s.utterance, &self.tts) {
                                    let _ = tts.finish(id);
                                }
                            }
                        } else {
                            self.apologize();
                        }
                    }
                }
            }
            // A cancelled turn's leftovers.
            _ => {}
        }
        Ok(())
    }
}
