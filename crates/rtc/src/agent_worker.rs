//! LiveKit's agent worker protocol, the client side: a WebSocket to `<server>/agent` carrying
//! protobuf `WorkerMessage`s out and `ServerMessage`s in. The worker registers under an agent
//! name (room jobs), the server offers it jobs (`AvailabilityRequest`) which it accepts or
//! declines, hands it accepted ones with a token to join the room with (`JobAssignment`), and
//! may end them (`JobTermination`); the worker reports its load (`UpdateWorkerStatus`), the end
//! of each job (`UpdateJobStatus`) and pings.
//!
//! No media here: what a job *does* is up to whoever reads the [`WorkerEvent`]s. The server's
//! wire types stay in this module; callers see [`JobOffer`], [`JobGrant`] and plain values.

use futures::{SinkExt, StreamExt};
use livekit_protocol as proto;
use prost::Message as _;
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use crate::error::RoomError;

/// How a worker registers.
#[derive(Clone)]
pub struct WorkerOptions {
    /// The server, as participants reach it (`ws://`, `wss://`, or the `http(s)://` form).
    pub url: String,
    pub api_key: String,
    pub api_secret: String,
    /// The name dispatches ask for (`roomConfig.agents[].agentName`, `CreateDispatch`). An
    /// empty name is LiveKit's automatic dispatch: the worker is offered every new room.
    pub agent_name: String,
    /// What the worker says it is (shown by the server), e.g. `callfleet 0.1.0`.
    pub version: String,
    /// How often the worker pings; a connection with no pong for three intervals is dead.
    pub ping_interval: Duration,
}

impl fmt::Debug for WorkerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerOptions")
            .field("url", &self.url)
            .field("api_key", &self.api_key)
            .field("api_secret", &"[redacted]")
            .field("agent_name", &self.agent_name)
            .finish()
    }
}

/// A job the server offers: answer with [`AgentWorker::answer`].
#[derive(Debug, Clone, PartialEq)]
pub struct JobOffer {
    pub job_id: String,
    pub dispatch_id: String,
    pub agent_name: String,
    pub room: String,
    /// The room's metadata as the server knows it when offering.
    pub room_metadata: String,
    /// The dispatch's metadata (`roomConfig.agents[].metadata`, `CreateDispatch.metadata`).
    pub metadata: String,
    /// The server moved this job from another worker.
    pub resuming: bool,
}

/// How the worker answers an offer.
#[derive(Debug, Clone, PartialEq)]
pub enum Availability {
    /// Take the job, joining as `identity` (with `name`, and these attributes).
    Accept {
        identity: String,
        name: String,
        attributes: HashMap<String, String>,
    },
    /// Not this worker (full, draining): the server offers it to another one.
    Decline,
    /// Nobody should run this job: the server ends it at once as done.
    Terminate,
}

/// An accepted job, with what to join its room with.
#[derive(Clone)]
pub struct JobGrant {
    pub offer: JobOffer,
    /// The server to join at, when the assignment names one; else the worker's own.
    pub url: Option<String>,
    /// The room token the server minted for this job (identity, kind AGENT, the agent name).
    pub token: String,
}

impl fmt::Debug for JobGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobGrant")
            .field("offer", &self.offer)
            .field("url", &self.url)
            .field("token", &"[redacted]")
            .finish()
    }
}

/// What the server says to the worker.
#[derive(Debug)]
pub enum WorkerEvent {
    Offer(JobOffer),
    Assigned(JobGrant),
    /// The server ended the job (its dispatch was deleted, the room closed).
    Terminated {
        job_id: String,
    },
    /// The connection is gone (server restart, network): register again to get jobs.
    Closed(String),
}

/// The worker's availability for new jobs, as reported to the server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkerLoad {
    /// 0.0–1.0: how full the worker is. The server offers jobs weighted by `1 - load`.
    pub load: f32,
    pub jobs: u32,
    /// Takes no new jobs (status FULL): full, or draining.
    pub full: bool,
}

/// How a job ended, for the server's dispatch state.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEnd {
    Success,
    Failed(String),
}

enum Command {
    Answer(String, Availability),
    Load(WorkerLoad),
    Ended(String, JobEnd),
    Close,
}

/// A registered worker. Dropping it closes the connection.
pub struct AgentWorker {
    id: String,
    commands: mpsc::UnboundedSender<Command>,
}

impl fmt::Debug for AgentWorker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentWorker").field("id", &self.id).finish()
    }
}

/// `ws://host:port[/base]` → `ws://host:port[/base]/agent`.
fn agent_url(base: &str) -> Result<url::Url, RoomError> {
    let mut url = url::Url::parse(base).map_err(|e| RoomError::InvalidUrl(e.to_string()))?;
    match url.scheme() {
        "ws" | "wss" => {}
        "http" => url
            .set_scheme("ws")
            .map_err(|()| RoomError::InvalidUrl("scheme".into()))?,
        "https" => url
            .set_scheme("wss")
            .map_err(|()| RoomError::InvalidUrl("scheme".into()))?,
        other => return Err(RoomError::InvalidUrl(format!("unsupported scheme {other}"))),
    }
    let path = url.path().trim_end_matches('/').to_string();
    url.set_path(&format!("{path}/agent"));
    url.query_pairs_mut().append_pair("protocol", "1");
    Ok(url)
}

/// The token a worker registers with: the `agent` grant and nothing else, for an hour. (The
/// dispatcher accepts the same from a worker asking to run a room it was given.)
pub fn worker_token(api_key: &str, api_secret: &str) -> Result<String, RoomError> {
    livekit_api::access_token::AccessToken::with_api_key(api_key, api_secret)
        .with_ttl(Duration::from_secs(3600))
        .with_grants(livekit_api::access_token::VideoGrants {
            agent: true,
            ..Default::default()
        })
        .to_jwt()
        .map_err(|e| RoomError::Token(e.to_string()))
}

fn offer_of(job: proto::Job, resuming: bool) -> JobOffer {
    JobOffer {
        job_id: job.id,
        dispatch_id: job.dispatch_id,
        agent_name: job.agent_name,
        room_metadata: job
            .room
            .as_ref()
            .map(|r| r.metadata.clone())
            .unwrap_or_default(),
        room: job.room.map(|r| r.name).unwrap_or_default(),
        metadata: job.metadata,
        resuming,
    }
}

fn worker_message(message: proto::worker_message::Message) -> Message {
    let encoded = proto::WorkerMessage {
        message: Some(message),
    }
    .encode_to_vec();
    Message::Binary(encoded.into())
}

fn availability_message(job_id: String, answer: Availability) -> Message {
    let mut response = proto::AvailabilityResponse {
        job_id,
        ..Default::default()
    };
    match answer {
        Availability::Accept {
            identity,
            name,
            attributes,
        } => {
            response.available = true;
            response.participant_identity = identity;
            response.participant_name = name;
            response.participant_attributes = attributes;
        }
        Availability::Decline => {}
        Availability::Terminate => response.terminate = true,
    }
    worker_message(proto::worker_message::Message::Availability(response))
}

fn load_message(load: WorkerLoad) -> Message {
    let status = if load.full {
        proto::WorkerStatus::WsFull
    } else {
        proto::WorkerStatus::WsAvailable
    };
    worker_message(proto::worker_message::Message::UpdateWorker(
        proto::UpdateWorkerStatus {
            status: Some(status as i32),
            load: load.load.clamp(0.0, 1.0),
            job_count: load.jobs,
            ..Default::default()
        },
    ))
}

fn ended_message(job_id: String, end: JobEnd) -> Message {
    let (status, error) = match end {
        JobEnd::Success => (proto::JobStatus::JsSuccess, String::new()),
        JobEnd::Failed(why) => (proto::JobStatus::JsFailed, why),
    };
    worker_message(proto::worker_message::Message::UpdateJob(
        proto::UpdateJobStatus {
            job_id,
            status: status as i32,
            error,
        },
    ))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl AgentWorker {
    /// Connects to `<url>/agent` and registers; returns once the server has confirmed it, with
    /// the worker and its events. Events end with one [`WorkerEvent::Closed`].
    pub async fn register(
        options: WorkerOptions,
    ) -> Result<(AgentWorker, mpsc::Receiver<WorkerEvent>), RoomError> {
        let url = agent_url(&options.url)?;
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| RoomError::InvalidUrl(e.to_string()))?;
        let bearer = HeaderValue::from_str(&format!(
            "Bearer {}",
            worker_token(&options.api_key, &options.api_secret)?
        ))
        .map_err(|_| RoomError::InvalidToken)?;
        request.headers_mut().insert("Authorization", bearer);
        let connector = if url.scheme() == "wss" {
            Some(crate::signal::tls_connector()?)
        } else {
            None
        };
        let (mut ws, _) =
            tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector)
                .await
                .map_err(|e| match e {
                    tokio_tungstenite::tungstenite::Error::Http(resp) => RoomError::Rejected {
                        status: resp.status().as_u16(),
                        message: resp
                            .body()
                            .as_ref()
                            .map(|b| String::from_utf8_lossy(b).trim().to_string())
                            .unwrap_or_default(),
                    },
                    other => RoomError::Signal(other.to_string()),
                })?;
        let register = proto::RegisterWorkerRequest {
            r#type: proto::JobType::JtRoom as i32,
            agent_name: options.agent_name.clone(),
            version: options.version.clone(),
            ping_interval: options.ping_interval.as_secs().max(1) as u32,
            ..Default::default()
        };
        ws.send(worker_message(proto::worker_message::Message::Register(
            register,
        )))
        .await
        .map_err(|e| RoomError::Signal(e.to_string()))?;
        let id = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(msg) = ws.next().await {
                let Message::Binary(data) = msg.map_err(|e| RoomError::Signal(e.to_string()))?
                else {
                    continue;
                };
                if let Ok(proto::ServerMessage {
                    message: Some(proto::server_message::Message::Register(r)),
                }) = proto::ServerMessage::decode(data.as_ref())
                {
                    return Ok(r.worker_id);
                }
            }
            Err(RoomError::Signal("closed before registering".into()))
        })
        .await
        .map_err(|_| RoomError::Timeout("the worker's registration"))??;
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::channel(64);
        tokio::spawn(run(ws, command_rx, events_tx, options.ping_interval));
        Ok((AgentWorker { id, commands }, events))
    }

    /// The id the server gave this worker.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Answers the offer of `job_id`. The server waits up to 10 s for it.
    pub fn answer(&self, job_id: &str, availability: Availability) {
        let _ = self
            .commands
            .send(Command::Answer(job_id.to_string(), availability));
    }

    /// Reports how loaded the worker is.
    pub fn report_load(&self, load: WorkerLoad) {
        let _ = self.commands.send(Command::Load(load));
    }

    /// Tells the server a job has ended.
    pub fn job_ended(&self, job_id: &str, end: JobEnd) {
        let _ = self.commands.send(Command::Ended(job_id.to_string(), end));
    }

    /// Closes the connection (after sending what was queued); the server stops offering jobs.
    pub fn close(&self) {
        let _ = self.commands.send(Command::Close);
    }
}

impl Drop for AgentWorker {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Close);
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn run(
    ws: Socket,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::Sender<WorkerEvent>,
    ping_interval: Duration,
) {
    let (mut sink, mut stream) = ws.split();
    let mut ping = tokio::time::interval(ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_pong = tokio::time::Instant::now();
    let reason = loop {
        tokio::select! {
            command = commands.recv() => {
                let message = match command {
                    Some(Command::Answer(job_id, answer)) => availability_message(job_id, answer),
                    Some(Command::Load(load)) => load_message(load),
                    Some(Command::Ended(job_id, end)) => ended_message(job_id, end),
                    Some(Command::Close) | None => {
                        let _ = sink.close().await;
                        break "closed by the worker".to_string();
                    }
                };
                if let Err(e) = sink.send(message).await {
                    break e.to_string();
                }
            }
            _ = ping.tick() => {
                if last_pong.elapsed() > ping_interval * 3 {
                    break "no pong from the server".to_string();
                }
                let message = worker_message(proto::worker_message::Message::Ping(
                    proto::WorkerPing { timestamp: now_ms() },
                ));
                if let Err(e) = sink.send(message).await {
                    break e.to_string();
                }
            }
            incoming = stream.next() => {
                let data = match incoming {
                    Some(Ok(Message::Binary(data))) => data,
                    Some(Ok(Message::Close(frame))) => {
                        break frame.map(|f| f.reason.to_string()).unwrap_or_else(|| "closed".into())
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => break e.to_string(),
                    None => break "closed".to_string(),
                };
                let message = match proto::ServerMessage::decode(data.as_ref()) {
                    Ok(proto::ServerMessage { message: Some(m) }) => m,
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "undecodable message from the agent server");
                        continue;
                    }
                };
                use proto::server_message::Message as M;
                let event = match message {
                    M::Availability(request) => match request.job {
                        Some(job) => WorkerEvent::Offer(offer_of(job, request.resuming)),
                        None => continue,
                    },
                    M::Assignment(assignment) => match assignment.job {
                        Some(job) => WorkerEvent::Assigned(JobGrant {
                            offer: offer_of(job, false),
                            url: assignment.url.filter(|u| !u.is_empty()),
                            token: assignment.token,
                        }),
                        None => continue,
                    },
                    M::Termination(t) => WorkerEvent::Terminated { job_id: t.job_id },
                    M::Pong(_) => {
                        last_pong = tokio::time::Instant::now();
                        continue;
                    }
                    M::Register(_) | M::GoAway(_) => continue,
                };
                if events.send(event).await.is_err() {
                    let _ = sink.close().await;
                    break "nobody reads the worker's events".to_string();
                }
            }
        }
    };
    let _ = events.send(WorkerEvent::Closed(reason)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_urls() {
        let check = |base: &str, expected: &str| {
            assert_eq!(
                agent_url(base).map(|u| u.to_string()).ok().as_deref(),
                Some(expected),
                "{base}"
            );
        };
        check(
            "ws://127.0.0.1:7880",
            "ws://127.0.0.1:7880/agent?protocol=1",
        );
        check(
            "https://lk.example.com/base/",
            "wss://lk.example.com/base/agent?protocol=1",
        );
        assert!(agent_url("ftp://x").is_err());
    }

    fn decode(message: Message) -> proto::worker_message::Message {
        let Message::Binary(data) = message else {
            panic!("binary")
        };
        proto::WorkerMessage::decode(data.as_ref())
            .expect("decodes")
            .message
            .expect("a message")
    }

    #[test]
    fn answers_and_reports_are_the_protocol_messages() {
        use proto::worker_message::Message as M;
        let accept = Availability::Accept {
            identity: "agent-1".into(),
            name: "Clinic".into(),
            attributes: HashMap::new(),
        };
        let M::Availability(a) = decode(availability_message("AJ_1".into(), accept)) else {
            panic!("availability")
        };
        assert!(a.available && !a.terminate);
        assert_eq!(
            (a.job_id.as_str(), a.participant_identity.as_str()),
            ("AJ_1", "agent-1")
        );
        let M::Availability(a) = decode(availability_message("AJ_2".into(), Availability::Decline))
        else {
            panic!("availability")
        };
        assert!(!a.available && !a.terminate);
        let M::Availability(a) =
            decode(availability_message("AJ_3".into(), Availability::Terminate))
        else {
            panic!("availability")
        };
        assert!(a.terminate);
        let full = WorkerLoad {
            load: 1.5,
            jobs: 3,
            full: true,
        };
        let M::UpdateWorker(u) = decode(load_message(full)) else {
            panic!("status")
        };
        assert_eq!(u.status, Some(proto::WorkerStatus::WsFull as i32));
        assert_eq!((u.load, u.job_count), (1.0, 3));
        let M::UpdateJob(j) = decode(ended_message("AJ_1".into(), JobEnd::Failed("x".into())))
        else {
            panic!("job")
        };
        assert_eq!(j.status, proto::JobStatus::JsFailed as i32);
        assert_eq!(j.error, "x");
    }

    #[test]
    fn secrets_never_print() {
        let grant = JobGrant {
            offer: offer_of(proto::Job::default(), false),
            url: None,
            token: "eyJ.secret.sig".into(),
        };
        assert!(!format!("{grant:?}").contains("secret"));
        let options = WorkerOptions {
            url: "ws://x".into(),
            api_key: "k".into(),
            api_secret: "s3cr3t".into(),
            agent_name: "a".into(),
            version: "v".into(),
            ping_interval: Duration::from_secs(1),
        };
        assert!(!format!("{options:?}").contains("s3cr3t"));
    }
}
