//! Echo participant: publishes back, after a delay, whatever audio it hears, and echoes
//! chat. Lets anyone check this participant with their own LiveKit client.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::audio::{AudioFrame, AudioStream, LocalAudioTrack};
use crate::error::RoomError;
use crate::room::Room;
use crate::types::{RoomEvent, RoomOptions};

/// Join `url` with `token` and echo until the room closes (or `shutdown` resolves).
pub async fn run(url: &str, token: &str, delay: Duration) -> Result<(), RoomError> {
    run_until(url, token, delay, std::future::pending()).await
}

/// [`run`] with a shutdown signal; leaves the room cleanly when it fires.
pub async fn run_until(
    url: &str,
    token: &str,
    delay: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RoomError> {
    let (room, mut events) = Room::connect(url, token, RoomOptions::default()).await?;
    tracing::info!(room = %room.name(), identity = %room.identity(), "Echo joined.");
    let track = room.publish_audio("echo", 48_000).await?;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                room.leave().await;
                return Ok(());
            }
            ev = events.recv() => {
                let Some(ev) = ev else { return Ok(()) };
                match ev {
                    RoomEvent::TrackSubscribed { participant, stream, .. } => {
                        tracing::info!(from = %participant.identity, "Echoing a track.");
                        tokio::spawn(echo_stream(stream, track.clone(), delay));
                    }
                    RoomEvent::ChatMessage { from, text } => {
                        tracing::info!(from = %from, "Echoing chat.");
                        room.send_chat(&text).await?;
                    }
                    RoomEvent::Disconnected { reason } => {
                        tracing::info!(reason = %reason, "Echo left the room.");
                        return Ok(());
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Replays `stream` into `track`, each frame `delay` after it arrived.
async fn echo_stream(mut stream: AudioStream, track: LocalAudioTrack, delay: Duration) {
    let mut pending: VecDeque<(Instant, AudioFrame)> = VecDeque::new();
    loop {
        let next_due = pending.front().map(|(t, _)| *t + delay);
        tokio::select! {
            frame = stream.recv() => match frame {
                Some(f) => pending.push_back((Instant::now(), f)),
                None => break,
            },
            _ = async {
                match next_due {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {
                while let Some((t, _)) = pending.front() {
                    if *t + delay > Instant::now() {
                        break;
                    }
                    if let Some((_, f)) = pending.pop_front() {
                        track.push(&f);
                    }
                }
            }
        }
    }
}
