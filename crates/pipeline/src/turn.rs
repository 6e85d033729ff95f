//! Turn-taking as a pure state machine: when the caller has finished (STT endpointing and VAD
//! silence under min/max delays, longer while digits are being dictated, DTMF), when the caller
//! is really interrupting the agent (min speech, min words), when an interruption was only a
//! cough (resume), and when silence calls for a re-prompt or the end of the call.
//!
//! With an end-of-turn model (audio-native, like Smart Turn), endpointing works the way LiveKit
//! Agents does it: at the recognizer's endpoint the machine asks for the model's verdict on the
//! caller's recent audio ([`TurnAction::PredictEndOfTurn`]) and holds the turn meanwhile; a
//! caller the model judges finished is answered after `min_endpointing`, one it judges mid-
//! sentence gets up to `max_endpointing` of silence to go on. Without a model nothing changes.
//!
//! Times are offsets from the call's start, handed in by the caller; the machine never reads a
//! clock, so every rule is tested with plain tables, and the pipeline drives it from tokio time.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct TurnConfig {
    /// After the recognizer's endpoint, the least silence before the turn ends.
    pub min_endpointing: Duration,
    /// Without an endpoint from the recognizer, the silence after which the turn ends anyway.
    pub max_endpointing: Duration,
    /// The same two while a phone number or e-mail is being dictated: callers pause between
    /// digit groups, and cutting them off there is the worst mistake a bot makes.
    pub collecting_min_endpointing: Duration,
    pub collecting_max_endpointing: Duration,
    /// Caller speech shorter than this does not interrupt the agent.
    pub min_interruption_speech: Duration,
    /// Nor speech with fewer recognized words than this (0: duration alone decides).
    pub min_interruption_words: usize,
    /// After an interruption, if no words are recognized within this much silence, the agent
    /// resumes what it was saying.
    pub false_interruption_timeout: Duration,
    /// Silence after the agent spoke before a re-prompt; a second one ends the call.
    pub silence_timeout: Duration,
    pub reprompts: u32,
    /// Between DTMF digits; `#` ends the entry at once.
    pub dtmf_timeout: Duration,
    /// An end-of-turn model's probability at or above this means the caller has finished.
    pub end_of_turn_threshold: f32,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig {
            min_endpointing: Duration::from_millis(100),
            max_endpointing: Duration::from_millis(2500),
            collecting_min_endpointing: Duration::from_millis(1500),
            collecting_max_endpointing: Duration::from_millis(3500),
            min_interruption_speech: Duration::from_millis(500),
            min_interruption_words: 0,
            false_interruption_timeout: Duration::from_millis(1500),
            silence_timeout: Duration::from_secs(10),
            reprompts: 1,
            dtmf_timeout: Duration::from_millis(2500),
            end_of_turn_threshold: 0.5,
        }
    }
}

/// What the machine is told.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnInput {
    /// The VAD's verdict on one frame: `speaking` smoothed (onset, hangover), `voiced` this
    /// frame's own; end-of-speech times count from the last voiced frame, not the hangover.
    Vad {
        speaking: bool,
        voiced: bool,
    },
    Interim {
        text: String,
    },
    Final {
        text: String,
        speech_final: bool,
    },
    UtteranceEnd,
    Dtmf(char),
    /// The agent's audio started or stopped reaching the caller.
    AgentSpeaking(bool),
    /// The agent now waits for a phone number or e-mail (or no longer does).
    Collecting(bool),
    /// The end-of-turn model's answer to [`TurnAction::PredictEndOfTurn`] with the same
    /// `request`: the probability that the caller has finished, `None` if the model failed
    /// (endpointing then goes on as without a model).
    EndOfTurnVerdict {
        request: u64,
        probability: Option<f32>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The recognizer's endpoint confirmed by VAD silence.
    Stt,
    /// Long silence without an endpoint.
    Silence,
    Dtmf,
    /// The caller typed the turn (chat during a voice call).
    Typed,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Stt => "stt",
            Endpoint::Silence => "silence",
            Endpoint::Dtmf => "dtmf",
            Endpoint::Typed => "typed",
        }
    }
}

/// What the machine decides.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnAction {
    EndOfTurn {
        text: String,
        via: Endpoint,
    },
    /// Stop the agent now: cancel the reply, its audio, what is queued.
    Interrupt,
    /// The interruption had no words: say the rest of what was cut off.
    Resume,
    Reprompt,
    Hangup,
    /// Run the end-of-turn model on the caller's recent audio and answer with
    /// [`TurnInput::EndOfTurnVerdict`]; only with [`TurnDetector::with_turn_model`].
    PredictEndOfTurn {
        request: u64,
    },
}

/// What the end-of-turn model was asked about a turn and what it said, as offsets from the
/// call's start: kept with the turn's metrics, so a slow end of turn can be explained.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judgement {
    pub asked: Duration,
    /// `None`: no answer came before the turn ended.
    pub answered: Option<Duration>,
    /// The probability that the caller had finished; `None` without an answer or when the model
    /// failed.
    pub probability: Option<f32>,
}

/// Where the end-of-turn model stands on the current endpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    /// No model, or no endpoint to judge yet.
    None,
    /// Asked; the turn is held until the answer (or the max delay).
    Pending(u64),
    Complete,
    Incomplete,
}

#[derive(Debug, Clone)]
pub struct TurnDetector {
    cfg: TurnConfig,
    collecting: bool,
    user_speaking: bool,
    speech_started: Option<Duration>,
    last_voiced: Option<Duration>,
    finals: Vec<String>,
    interim: String,
    endpointed: bool,
    last_final: Option<Duration>,
    dtmf: String,
    last_dtmf: Option<Duration>,
    agent_speaking: bool,
    /// When the agent's current utterance started reaching the caller.
    agent_since: Option<Duration>,
    /// Set by an interruption until the caller's words arrive (or do not).
    interrupted: bool,
    /// A turn was handed to the responder and the agent has not spoken since.
    awaiting_reply: bool,
    silence_since: Option<Duration>,
    reprompts_done: u32,
    /// An end-of-turn model judges endpoints.
    turn_model: bool,
    verdict: Verdict,
    requests: u64,
    /// The model's judgement of the current endpoint, and of the turn that last ended.
    judgement: Option<Judgement>,
    ended_judgement: Option<Judgement>,
}

fn words(s: &str) -> usize {
    s.split_whitespace().count()
}

impl TurnDetector {
    pub fn new(cfg: TurnConfig) -> Self {
        TurnDetector {
            cfg,
            collecting: false,
            user_speaking: false,
            speech_started: None,
            last_voiced: None,
            finals: Vec::new(),
            interim: String::new(),
            endpointed: false,
            last_final: None,
            dtmf: String::new(),
            last_dtmf: None,
            agent_speaking: false,
            agent_since: None,
            interrupted: false,
            awaiting_reply: false,
            silence_since: None,
            reprompts_done: 0,
            turn_model: false,
            verdict: Verdict::None,
            requests: 0,
            judgement: None,
            ended_judgement: None,
        }
    }

    /// Endpoints are judged by an end-of-turn model: the detector asks for its verdict.
    pub fn with_turn_model(mut self) -> Self {
        self.turn_model = true;
        self
    }

    pub fn config(&self) -> &TurnConfig {
        &self.cfg
    }

    pub fn is_interrupted(&self) -> bool {
        self.interrupted
    }

    /// When the caller's voice was last heard; end-of-utterance latencies count from it.
    pub fn last_voiced(&self) -> Option<Duration> {
        self.last_voiced
    }

    /// What the end-of-turn model said about the turn that last ended (taken once).
    pub fn take_judgement(&mut self) -> Option<Judgement> {
        self.ended_judgement.take()
    }

    fn text(&self) -> String {
        self.finals
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn endpointing(&self) -> (Duration, Duration) {
        if self.collecting {
            (
                self.cfg.collecting_min_endpointing,
                self.cfg.collecting_max_endpointing,
            )
        } else {
            (self.cfg.min_endpointing, self.cfg.max_endpointing)
        }
    }

    /// The agent is talking and the caller's speech counts only if it becomes an interruption.
    fn agent_holds_floor(&self) -> bool {
        self.agent_speaking && !self.interrupted
    }

    pub fn handle(&mut self, at: Duration, input: TurnInput) -> Vec<TurnAction> {
        let mut out = Vec::new();
        match input {
            TurnInput::Vad { speaking, voiced } => {
                if speaking {
                    if !self.user_speaking {
                        self.user_speaking = true;
                        self.speech_started = Some(at);
                        self.endpointed = false;
                        self.verdict = Verdict::None;
                        self.judgement = None;
                    }
                    self.silence_since = None;
                } else if self.user_speaking {
                    self.user_speaking = false;
                }
                if voiced {
                    self.last_voiced = Some(at);
                }
            }
            TurnInput::Interim { text } => {
                self.interim = text;
                self.silence_since = None;
            }
            TurnInput::Final { text, speech_final } => {
                self.interim.clear();
                if !text.trim().is_empty() {
                    self.finals.push(text);
                    self.reprompts_done = 0;
                    self.silence_since = None;
                    // New words make a verdict on the audio before them stale: ask again.
                    self.verdict = Verdict::None;
                    self.judgement = None;
                    out = self.interrupt_for_late_words();
                }
                self.last_final = Some(at);
                if speech_final {
                    self.endpointed = true;
                }
            }
            TurnInput::UtteranceEnd => {
                self.endpointed = true;
                self.last_final.get_or_insert(at);
            }
            TurnInput::Dtmf(d) => {
                self.silence_since = None;
                self.reprompts_done = 0;
                if d == '#' {
                    let digits = std::mem::take(&mut self.dtmf);
                    self.last_dtmf = None;
                    if !digits.is_empty() {
                        return self.end_turn(digits, Endpoint::Dtmf);
                    }
                } else {
                    self.dtmf.push(d);
                    self.last_dtmf = Some(at);
                }
            }
            TurnInput::AgentSpeaking(speaking) => {
                if speaking {
                    if !self.agent_speaking {
                        self.agent_since = Some(at);
                    }
                    self.agent_speaking = true;
                    self.awaiting_reply = false;
                    self.silence_since = None;
                } else if self.agent_speaking {
                    self.agent_speaking = false;
                    // Words said over the agent that did not interrupt it stay: they are the
                    // caller's, and end a turn of their own now that the agent is quiet.
                    if !self.awaiting_reply && self.finals.is_empty() && !self.user_speaking {
                        self.silence_since = Some(at);
                    }
                }
            }
            TurnInput::Collecting(on) => self.collecting = on,
            TurnInput::EndOfTurnVerdict {
                request,
                probability,
            } => {
                if self.verdict == Verdict::Pending(request) {
                    self.verdict = match probability {
                        Some(p) if p < self.cfg.end_of_turn_threshold => Verdict::Incomplete,
                        _ => Verdict::Complete,
                    };
                    if let Some(j) = &mut self.judgement {
                        j.answered = Some(at);
                        j.probability = probability;
                    }
                }
            }
        }
        out.extend(self.check_interruption(at));
        out.extend(self.request_verdict(at));
        out.extend(self.poll(at));
        out
    }

    /// Asks the model about an endpoint that would end a turn, once per endpoint.
    fn request_verdict(&mut self, at: Duration) -> Option<TurnAction> {
        if !self.turn_model
            || !self.endpointed
            || self.verdict != Verdict::None
            || self.finals.is_empty()
            || self.agent_holds_floor()
        {
            return None;
        }
        self.requests += 1;
        self.verdict = Verdict::Pending(self.requests);
        self.judgement = Some(Judgement {
            asked: at,
            answered: None,
            probability: None,
        });
        Some(TurnAction::PredictEndOfTurn {
            request: self.requests,
        })
    }

    fn check_interruption(&mut self, at: Duration) -> Vec<TurnAction> {
        if !self.agent_holds_floor() || !self.user_speaking {
            return Vec::new();
        }
        let Some(started) = self.speech_started else {
            return Vec::new();
        };
        let heard_words = words(&self.text()) + words(&self.interim);
        if at.saturating_sub(started) >= self.cfg.min_interruption_speech
            && heard_words >= self.cfg.min_interruption_words
        {
            self.interrupted = true;
            self.agent_speaking = false;
            return vec![TurnAction::Interrupt];
        }
        Vec::new()
    }

    /// Words that arrive while the agent holds the floor, from speech that began before it
    /// started talking, were late, not said over it: the recognizer was still at work when the
    /// reply began. The reply answers less than the caller said, so it is cut off and the
    /// caller's words make the turn.
    fn interrupt_for_late_words(&mut self) -> Vec<TurnAction> {
        if !self.agent_holds_floor() {
            return Vec::new();
        }
        let began_before_agent = match (self.speech_started, self.agent_since) {
            (Some(speech), Some(agent)) => speech < agent,
            _ => true,
        };
        if !began_before_agent {
            return Vec::new();
        }
        self.interrupted = true;
        self.agent_speaking = false;
        vec![TurnAction::Interrupt]
    }

    fn end_turn(&mut self, text: String, via: Endpoint) -> Vec<TurnAction> {
        self.ended_judgement = self.judgement.take();
        self.finals.clear();
        self.interim.clear();
        self.dtmf.clear();
        self.last_dtmf = None;
        self.endpointed = false;
        self.verdict = Verdict::None;
        self.interrupted = false;
        self.awaiting_reply = true;
        self.silence_since = None;
        vec![TurnAction::EndOfTurn { text, via }]
    }

    /// The earliest time [`poll`](Self::poll) may decide something.
    pub fn next_deadline(&self) -> Option<Duration> {
        let mut d: Vec<Duration> = Vec::new();
        if let Some(t) = self.last_dtmf {
            d.push(t + self.cfg.dtmf_timeout);
        }
        // Silence is measured from the last voiced frame, not from the smoothed VAD flipping back:
        // its hangover steadies barge-in but would add its length to every reply. A caller still
        // talking keeps pushing `last_voiced` forward, so the deadline never comes.
        if !self.agent_holds_floor() {
            let since = self.last_voiced.or(self.last_final);
            if let Some(since) = since {
                if !self.finals.is_empty() {
                    let (min, max) = self.endpointing();
                    // A model's doubt, or its answer still coming, holds the turn up to the max.
                    let judged_complete = matches!(self.verdict, Verdict::None | Verdict::Complete);
                    d.push(
                        since
                            + if self.endpointed && judged_complete {
                                min
                            } else {
                                max
                            },
                    );
                } else if self.interrupted {
                    d.push(since + self.cfg.false_interruption_timeout);
                }
            }
        }
        if let Some(s) = self.silence_since {
            d.push(s + self.cfg.silence_timeout);
        }
        d.into_iter().min()
    }

    /// Decisions due at `at`.
    pub fn poll(&mut self, at: Duration) -> Vec<TurnAction> {
        let Some(due) = self.next_deadline() else {
            return Vec::new();
        };
        if at < due {
            return Vec::new();
        }
        if self
            .last_dtmf
            .is_some_and(|t| at >= t + self.cfg.dtmf_timeout)
        {
            let digits = std::mem::take(&mut self.dtmf);
            return self.end_turn(digits, Endpoint::Dtmf);
        }
        if !self.finals.is_empty() && !self.agent_holds_floor() {
            let via = if self.endpointed {
                Endpoint::Stt
            } else {
                Endpoint::Silence
            };
            let text = self.text();
            return self.end_turn(text, via);
        }
        if self.interrupted && self.finals.is_empty() {
            self.interrupted = false;
            self.awaiting_reply = true;
            return vec![TurnAction::Resume];
        }
        if let Some(s) = self.silence_since {
            if at >= s + self.cfg.silence_timeout {
                self.silence_since = None;
                if self.reprompts_done < self.cfg.reprompts {
                    self.reprompts_done += 1;
                    self.awaiting_reply = true;
                    return vec![TurnAction::Reprompt];
                }
                return vec![TurnAction::Hangup];
            }
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TurnAction::*;
    use TurnInput::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn fin(text: &str, speech_final: bool) -> TurnInput {
        Final {
            text: text.into(),
            speech_final,
        }
    }

    /// Runs timed inputs (`None` = just poll at that time) and returns the actions with times.
    fn check(cfg: TurnConfig, script: &[(u64, Option<TurnInput>)], want: &[(u64, TurnAction)]) {
        check_detector(TurnDetector::new(cfg), script, want)
    }

    fn check_detector(
        mut t: TurnDetector,
        script: &[(u64, Option<TurnInput>)],
        want: &[(u64, TurnAction)],
    ) {
        let mut got = Vec::new();
        for (at, input) in script {
            // Deadlines that fall before this step fire at their own time, as timers would.
            while let Some(due) = t.next_deadline() {
                if due > ms(*at) {
                    break;
                }
                let acts = t.poll(due);
                if acts.is_empty() {
                    break;
                }
                got.extend(acts.into_iter().map(|a| (due.as_millis() as u64, a)));
            }
            let acts = match input {
                Some(i) => t.handle(ms(*at), i.clone()),
                None => t.poll(ms(*at)),
            };
            got.extend(acts.into_iter().map(|a| (*at, a)));
        }
        let want: Vec<(u64, TurnAction)> = want.to_vec();
        assert_eq!(got, want);
    }

    fn speech(from: u64, to: u64) -> Vec<(u64, Option<TurnInput>)> {
        let mut v: Vec<_> = (from..to)
            .step_by(20)
            .map(|t| {
                (
                    t,
                    Some(Vad {
                        speaking: true,
                        voiced: true,
                    }),
                )
            })
            .collect();
        v.push((
            to,
            Some(Vad {
                speaking: false,
                voiced: false,
            }),
        ));
        v
    }

    fn script(parts: Vec<Vec<(u64, Option<TurnInput>)>>) -> Vec<(u64, Option<TurnInput>)> {
        let mut v: Vec<_> = parts.into_iter().flatten().collect();
        v.sort_by_key(|(t, _)| *t);
        v
    }

    fn eot(text: &str, via: Endpoint) -> TurnAction {
        EndOfTurn {
            text: text.into(),
            via,
        }
    }

    #[test]
    fn a_finished_caller_is_answered_at_once_after_the_endpoint() {
        // Voice last heard at 980; the final with speech_final comes at 1150; min delay 100
        // from the last voice has passed, so the turn ends when the final arrives.
        let s = script(vec![
            speech(0, 1000),
            vec![(1150, Some(fin("book a table", true))), (3000, None)],
        ]);
        check(
            TurnConfig::default(),
            &s,
            &[(1150, eot("book a table", Endpoint::Stt))],
        );
    }

    #[test]
    fn min_delay_holds_an_early_endpoint() {
        let cfg = TurnConfig {
            min_endpointing: ms(400),
            ..TurnConfig::default()
        };
        let s = script(vec![
            speech(0, 1000),
            vec![(1050, Some(fin("yes", true))), (3000, None)],
        ]);
        check(cfg, &s, &[(1380, eot("yes", Endpoint::Stt))]);
    }

    #[test]
    fn a_pause_mid_sentence_does_not_cut_the_caller_off() {
        // A final without speech_final, then more speech: one turn with both parts.
        let s = script(vec![
            speech(0, 800),
            vec![(900, Some(fin("I would like", false)))],
            speech(1400, 2000),
            vec![(2150, Some(fin("a haircut", true))), (5000, None)],
        ]);
        check(
            TurnConfig::default(),
            &s,
            &[(2150, eot("I would like a haircut", Endpoint::Stt))],
        );
    }

    #[test]
    fn without_an_endpoint_the_turn_ends_after_the_max_delay() {
        let s = script(vec![
            speech(0, 800),
            vec![(900, Some(fin("hello", false))), (6000, None)],
        ]);
        check(
            TurnConfig::default(),
            &s,
            &[(780 + 2500, eot("hello", Endpoint::Silence))],
        );
    }

    #[test]
    fn digits_being_dictated_get_longer_endpointing() {
        let s = script(vec![
            vec![(0, Some(Collecting(true)))],
            speech(0, 800),
            vec![(900, Some(fin("plus seven nine one six", true)))],
            speech(1800, 2600),
            vec![(2700, Some(fin("five five five", true))), (8000, None)],
        ]);
        check(
            TurnConfig::default(),
            &s,
            &[(
                2580 + 1500,
                eot("plus seven nine one six five five five", Endpoint::Stt),
            )],
        );
    }

    #[test]
    fn dtmf_digits_end_with_hash_or_timeout() {
        let cfg = TurnConfig::default();
        let s = vec![
            (0, Some(Dtmf('1'))),
            (300, Some(Dtmf('2'))),
            (500, Some(Dtmf('#'))),
        ];
        check(cfg.clone(), &s, &[(500, eot("12", Endpoint::Dtmf))]);
        let s = vec![(0, Some(Dtmf('4'))), (300, Some(Dtmf('2'))), (5000, None)];
        check(cfg, &s, &[(2800, eot("42", Endpoint::Dtmf))]);
    }

    #[test]
    fn barge_in_needs_enough_speech() {
        let cfg = TurnConfig::default();
        // 300 ms of speech over the agent: too short to interrupt it, but the caller's words are
        // kept and answered once the agent has finished.
        let s = script(vec![
            vec![(0, Some(AgentSpeaking(true)))],
            speech(1000, 1300),
            vec![
                (1400, Some(fin("uh", true))),
                (2000, Some(AgentSpeaking(false))),
                (4000, None),
            ],
        ]);
        check(cfg.clone(), &s, &[(2000, eot("uh", Endpoint::Stt))]);
        // A cough (no words) over the agent leaves nothing behind.
        let s = script(vec![
            vec![(0, Some(AgentSpeaking(true)))],
            speech(1000, 1300),
            vec![
                (1400, Some(fin("", true))),
                (2000, Some(AgentSpeaking(false))),
                (4000, None),
            ],
        ]);
        check(cfg.clone(), &s, &[]);
        // 600 ms: interrupts at 500 ms of speech, then the words make a turn.
        let s = script(vec![
            vec![(0, Some(AgentSpeaking(true)))],
            speech(1000, 1600),
            vec![(1700, Some(fin("wait stop", true))), (4000, None)],
        ]);
        check(
            cfg,
            &s,
            &[(1500, Interrupt), (1700, eot("wait stop", Endpoint::Stt))],
        );
    }

    #[test]
    fn barge_in_can_require_words() {
        let cfg = TurnConfig {
            min_interruption_words: 2,
            ..TurnConfig::default()
        };
        let s = script(vec![
            vec![(0, Some(AgentSpeaking(true)))],
            speech(1000, 2000),
            vec![
                (1300, Some(Interim { text: "no".into() })),
                (
                    1700,
                    Some(Interim {
                        text: "no wait".into(),
                    }),
                ),
            ],
        ]);
        check(cfg, &s, &[(1700, Interrupt)]);
    }

    #[test]
    fn an_interruption_without_words_resumes_the_agent() {
        let s = script(vec![
            vec![(0, Some(AgentSpeaking(true)))],
            speech(1000, 1600),
            vec![(1700, Some(fin("", true))), (5000, None)],
        ]);
        check(
            TurnConfig::default(),
            &s,
            &[(1500, Interrupt), (1580 + 1500, Resume)],
        );
    }

    #[test]
    fn silence_reprompts_once_then_hangs_up() {
        let cfg = TurnConfig {
            silence_timeout: ms(5000),
            ..TurnConfig::default()
        };
        let s = vec![
            (0, Some(AgentSpeaking(true))),
            (2000, Some(AgentSpeaking(false))),
            (7500, Some(AgentSpeaking(true))),
            (8000, Some(AgentSpeaking(false))),
            (20000, None),
        ];
        check(cfg.clone(), &s, &[(7000, Reprompt), (13000, Hangup)]);
        // An answer after the re-prompt resets the count.
        let s = script(vec![
            vec![
                (0, Some(AgentSpeaking(true))),
                (2000, Some(AgentSpeaking(false))),
                (7500, Some(AgentSpeaking(true))),
                (8000, Some(AgentSpeaking(false))),
            ],
            speech(9000, 9500),
            vec![
                (9600, Some(fin("yes", true))),
                (10000, Some(AgentSpeaking(true))),
                (11000, Some(AgentSpeaking(false))),
                (15500, None),
                (17000, None),
            ],
        ]);
        check(
            cfg,
            &s,
            &[
                (7000, Reprompt),
                (9600, eot("yes", Endpoint::Stt)),
                (16000, Reprompt),
            ],
        );
    }

    // --- With an end-of-turn model -------------------------------------------------------------

    fn verdict(request: u64, probability: Option<f32>) -> TurnInput {
        EndOfTurnVerdict {
            request,
            probability,
        }
    }

    fn with_model(
        cfg: TurnConfig,
        script: &[(u64, Option<TurnInput>)],
        want: &[(u64, TurnAction)],
    ) {
        check_detector(TurnDetector::new(cfg).with_turn_model(), script, want)
    }

    fn predict(request: u64) -> TurnAction {
        PredictEndOfTurn { request }
    }

    #[test]
    fn a_caller_the_model_judges_finished_is_answered_after_the_min_delay() {
        // Voice last heard at 980; endpoint at 1150; the verdict (0.9) comes at 1180, past
        // 980 + 100, so the turn ends on it.
        let s = script(vec![
            speech(0, 1000),
            vec![
                (1150, Some(fin("thank you that is all", true))),
                (1180, Some(verdict(1, Some(0.9)))),
                (4000, None),
            ],
        ]);
        with_model(
            TurnConfig::default(),
            &s,
            &[
                (1150, predict(1)),
                (1180, eot("thank you that is all", Endpoint::Stt)),
            ],
        );
        // With a longer min delay the verdict does not end it early.
        let cfg = TurnConfig {
            min_endpointing: ms(400),
            ..TurnConfig::default()
        };
        with_model(
            cfg,
            &s,
            &[
                (1150, predict(1)),
                (1380, eot("thank you that is all", Endpoint::Stt)),
            ],
        );
    }

    #[test]
    fn a_caller_the_model_judges_mid_sentence_may_go_on() {
        let s = script(vec![
            speech(0, 1000),
            vec![
                (1150, Some(fin("my phone number is five five five", true))),
                (1180, Some(verdict(1, Some(0.1)))),
            ],
            speech(1800, 2600),
            vec![
                (2750, Some(fin("one two three four", true))),
                (2770, Some(verdict(2, Some(0.95)))),
                (6000, None),
            ],
        ]);
        with_model(
            TurnConfig::default(),
            &s,
            &[
                (1150, predict(1)),
                (2750, predict(2)),
                (
                    2770,
                    eot(
                        "my phone number is five five five one two three four",
                        Endpoint::Stt,
                    ),
                ),
            ],
        );
        // The same caller without a model is cut off at the first endpoint.
        check(
            TurnConfig::default(),
            &s,
            &[
                (
                    1150,
                    eot("my phone number is five five five", Endpoint::Stt),
                ),
                (2750, eot("one two three four", Endpoint::Stt)),
            ],
        );
    }

    #[test]
    fn doubt_waits_up_to_the_max_delay_then_ends_the_turn() {
        let s = script(vec![
            speech(0, 1000),
            vec![
                (1150, Some(fin("I want to", true))),
                (1170, Some(verdict(1, Some(0.2)))),
                (6000, None),
            ],
        ]);
        with_model(
            TurnConfig::default(),
            &s,
            &[
                (1150, predict(1)),
                (980 + 2500, eot("I want to", Endpoint::Stt)),
            ],
        );
    }

    #[test]
    fn the_turn_is_held_until_the_verdict_and_stale_or_failed_verdicts_are_handled() {
        // No answer (or only a stale one): held to the max delay.
        let s = script(vec![
            speech(0, 1000),
            vec![
                (1150, Some(fin("hello", true))),
                (1200, Some(verdict(7, Some(0.99)))),
                (6000, None),
            ],
        ]);
        with_model(
            TurnConfig::default(),
            &s,
            &[(1150, predict(1)), (3480, eot("hello", Endpoint::Stt))],
        );
        // The model failed: endpointing as without one.
        let s = script(vec![
            speech(0, 1000),
            vec![
                (1150, Some(fin("hello", true))),
                (1300, Some(verdict(1, None))),
                (6000, None),
            ],
        ]);
        with_model(
            TurnConfig::default(),
            &s,
            &[(1150, predict(1)), (1300, eot("hello", Endpoint::Stt))],
        );
    }

    #[test]
    fn the_model_works_with_the_longer_delays_of_dictation() {
        let s = script(vec![
            vec![(0, Some(Collecting(true)))],
            speech(0, 1000),
            vec![
                (1150, Some(fin("seven nine one six", true))),
                (1170, Some(verdict(1, Some(0.8)))),
                (9000, None),
            ],
        ]);
        with_model(
            TurnConfig::default(),
            &s,
            &[
                (1150, predict(1)),
                (980 + 1500, eot("seven nine one six", Endpoint::Stt)),
            ],
        );
        let s = script(vec![
            vec![(0, Some(Collecting(true)))],
            speech(0, 1000),
            vec![
                (1150, Some(fin("seven nine one six", true))),
                (1170, Some(verdict(1, Some(0.3)))),
                (9000, None),
            ],
        ]);
        with_model(
            TurnConfig::default(),
            &s,
            &[
                (1150, predict(1)),
                (980 + 3500, eot("seven nine one six", Endpoint::Stt)),
            ],
        );
    }

    #[test]
    fn no_verdict_is_asked_while_the_agent_holds_the_floor() {
        // 300 ms over the agent: too short to interrupt; its endpoint is judged once the agent
        // has stopped, and with no answer the words wait for the max delay.
        let s = script(vec![
            vec![(0, Some(AgentSpeaking(true)))],
            speech(1000, 1300),
            vec![
                (1400, Some(fin("uh huh", true))),
                (1500, Some(AgentSpeaking(false))),
                (4000, None),
            ],
        ]);
        with_model(
            TurnConfig::default(),
            &s,
            &[
                (1500, predict(1)),
                (1280 + 2500, eot("uh huh", Endpoint::Stt)),
            ],
        );
    }

    #[test]
    fn words_recognized_late_cut_off_the_reply_that_missed_them() {
        // "Hello." ends a turn; the caller goes on at 900 and stops at 2000; the reply to
        // "Hello." starts at 2300, and only then do the recognizer's words for 900–2000 arrive.
        // They were said before the reply began: it is cut off and they make the next turn.
        let s = script(vec![
            speech(0, 500),
            vec![(700, Some(fin("Hello.", true)))],
            speech(900, 2000),
            vec![
                (2300, Some(AgentSpeaking(true))),
                (2600, Some(fin("I would like to book an appointment", true))),
                (5000, None),
            ],
        ]);
        check(
            TurnConfig::default(),
            &s,
            &[
                (700, eot("Hello.", Endpoint::Stt)),
                (2600, Interrupt),
                (
                    2600,
                    eot("I would like to book an appointment", Endpoint::Stt),
                ),
            ],
        );
    }

    #[test]
    fn a_verdict_is_asked_again_when_words_follow_it() {
        // "Hello." is recognized late, after the caller went on: the model, asked then, hears
        // "Hello. I w…" and doubts. The rest's endpoint is judged afresh, not by that doubt.
        let s = script(vec![
            speech(0, 500),
            speech(800, 2500),
            vec![
                (1000, Some(fin("Hello.", true))),
                (1050, Some(verdict(1, Some(0.1)))),
                (2700, Some(fin("I would like a table", true))),
                (2720, Some(verdict(2, Some(0.9)))),
                (6000, None),
            ],
        ]);
        let mut t = TurnDetector::new(TurnConfig::default()).with_turn_model();
        check_detector(
            t.clone(),
            &s,
            &[
                (1000, predict(1)),
                (2700, predict(2)),
                (2720, eot("Hello. I would like a table", Endpoint::Stt)),
            ],
        );
        // What the model said about the turn is kept for its metrics.
        for (at, input) in &s {
            if let Some(i) = input {
                t.handle(ms(*at), i.clone());
            }
        }
        assert_eq!(
            t.take_judgement(),
            Some(Judgement {
                asked: ms(2700),
                answered: Some(ms(2720)),
                probability: Some(0.9),
            })
        );
        assert_eq!(t.take_judgement(), None);
    }
}
