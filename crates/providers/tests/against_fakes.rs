//! Every client against its protocol-exact fake: the happy path, the key check, errors the
//! service reports, and connections that die mid-stream.

use callfleet_core::secret::Secret;
use callfleet_providers::aura::AuraTts;
use callfleet_providers::cartesia::CartesiaTts;
use callfleet_providers::deepgram::DeepgramStt;
use callfleet_providers::elevenlabs::ElevenLabsTts;
use callfleet_providers::ollama::{Ollama, OllamaEmbedder};
use callfleet_providers::openai::{OpenAi, OpenAiEmbedder};
use callfleet_providers::*;
use callfleet_testkit::audio::{frames, silence, speech};
use callfleet_testkit::*;
use std::sync::Arc;
use std::time::Duration;

fn key() -> Secret {
    Secret::new(TEST_KEY)
}

const WAIT: Duration = Duration::from_secs(5);

async fn next_stt(s: &mut SttSession) -> SttEvent {
    tokio::time::timeout(WAIT, s.recv())
        .await
        .expect("an STT event in time")
        .expect("session open")
        .expect("no STT error")
}

/// Feeds audio in 20 ms frames, as a call does.
fn feed(s: &mut SttSession, samples: &[i16]) {
    for f in frames(samples, 20, 16000) {
        s.send_audio(f).expect("session open");
    }
}

/// Finals and utterance ends until the `n`-th speech_final.
async fn until_speech_final(s: &mut SttSession) -> (Vec<SttEvent>, String) {
    let mut seen = Vec::new();
    loop {
        let ev = next_stt(s).await;
        seen.push(ev.clone());
        if let SttEvent::Transcript(t) = &ev {
            if t.speech_final {
                return (seen, t.text.clone());
            }
        }
    }
}

#[tokio::test]
async fn deepgram_streams_interims_then_a_final_and_an_utterance_end() {
    let fake = FakeDeepgram::start(SttScript {
        transcripts: vec!["hello there friend".into()],
        ..SttScript::default()
    })
    .await;
    let stt = DeepgramStt::new(key()).with_base_url(fake.url());
    let mut s = stt
        .open(SttOptions {
            language: Some("en".into()),
            ..SttOptions::default()
        })
        .await
        .unwrap();
    feed(&mut s, &speech(700, 16000));
    feed(&mut s, &silence(1200, 16000));
    let (seen, text) = until_speech_final(&mut s).await;
    assert_eq!(text, "hello there friend");
    assert_eq!(seen[0], SttEvent::SpeechStarted);
    let interims: Vec<String> = seen
        .iter()
        .filter_map(|e| match e {
            SttEvent::Transcript(t) if !t.is_final => Some(t.text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(interims, ["hello", "hello there", "hello there friend"]);
    assert_eq!(next_stt(&mut s).await, SttEvent::UtteranceEnd);
    let log = fake.log();
    assert!(
        log.queries[0].contains("language=en") && log.queries[0].contains("vad_events=true"),
        "{:?}",
        log.queries
    );
}

#[tokio::test]
async fn deepgram_finalize_flushes_and_close_stream_ends_the_session() {
    let fake = FakeDeepgram::start(SttScript {
        transcripts: vec!["one two".into()],
        ..SttScript::default()
    })
    .await;
    let mut s = DeepgramStt::new(key())
        .with_base_url(fake.url())
        .open(SttOptions::default())
        .await
        .unwrap();
    feed(&mut s, &speech(300, 16000));
    s.finalize().await.unwrap();
    loop {
        if let SttEvent::Transcript(t) = next_stt(&mut s).await {
            if t.from_finalize {
                assert!(t.is_final);
                assert_eq!(t.text, "one two");
                break;
            }
        }
    }
    s.close().await.unwrap();
    let end = tokio::time::timeout(WAIT, async {
        while let Some(ev) = s.recv().await {
            ev.expect("clean close");
        }
    })
    .await;
    assert!(end.is_ok(), "the session ends after CloseStream");
    assert_eq!((fake.log().finalizes, fake.log().close_streams), (1, 1));
}

// The paused clock makes the count exact whatever the machine's load: keepalives are timer-driven.
// Loopback delivery is not instant (the kernel may defer it), so the fake is given real time to
// read what was sent while the virtual clock stands still.
#[tokio::test(start_paused = true)]
async fn deepgram_sends_keepalives_while_no_audio_flows() {
    let fake = FakeDeepgram::start(SttScript::default()).await;
    let _s = DeepgramStt::new(key())
        .with_base_url(fake.url())
        .with_keepalive(Duration::from_millis(50))
        .open(SttOptions::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(280)).await;
    // Yielding runs the fake but never advances the paused clock, so no keepalive is added.
    let real = std::time::Instant::now();
    while fake.log().keepalives < 5 && real.elapsed() < std::time::Duration::from_secs(10) {
        tokio::task::yield_now().await;
    }
    let n = fake.log().keepalives;
    assert_eq!(
        n, 5,
        "one keepalive every 50 ms of silence: at 50, 100, 150, 200 and 250 ms"
    );
}

#[tokio::test]
async fn deepgram_rejects_a_wrong_key_without_retrying() {
    let fake = FakeDeepgram::start(SttScript::default()).await;
    let err = DeepgramStt::new(Secret::new("wrong"))
        .with_base_url(fake.url())
        .open(SttOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        SttError::Auth {
            provider: "deepgram".into()
        }
    );
    assert_eq!(fake.log().refused, 1);
    assert!(!format!("{err:?}").contains("wrong"));
}

#[tokio::test]
async fn deepgram_reconnects_when_the_connection_drops() {
    let fake = FakeDeepgram::start(SttScript {
        transcripts: vec!["first".into(), "second".into()],
        disconnect_after_ms: Some(400),
        ..SttScript::default()
    })
    .await;
    let mut s = DeepgramStt::new(key())
        .with_base_url(fake.url())
        .with_backoff(Backoff {
            initial: Duration::from_millis(10),
            ..Backoff::default()
        })
        .open(SttOptions::default())
        .await
        .unwrap();
    feed(&mut s, &speech(300, 16000));
    feed(&mut s, &silence(400, 16000));
    // Wait for the drop to be noticed before speaking again.
    loop {
        if next_stt(&mut s).await == SttEvent::Reconnected {
            break;
        }
    }
    feed(&mut s, &speech(300, 16000));
    feed(&mut s, &silence(400, 16000));
    let (_, text) = until_speech_final(&mut s).await;
    assert_eq!(text, "second");
    assert_eq!(fake.log().connections, 2);
}

// ---------------------------------------------------------------------------------------------

/// Audio samples of an utterance until it is done, or the error it failed with.
async fn speak(s: &mut TtsSession, pieces: &[&str]) -> Result<usize, TtsError> {
    let id = s.start();
    for p in pieces {
        s.push_text(id, *p).unwrap();
    }
    s.finish(id).unwrap();
    let mut samples = 0;
    loop {
        let ev = tokio::time::timeout(WAIT, s.recv())
            .await
            .expect("a TTS event in time")
            .expect("session open")?;
        match ev {
            TtsEvent::Audio { id: i, samples: a } if i == id => samples += a.len(),
            TtsEvent::Done { id: i } if i == id => return Ok(samples),
            TtsEvent::Failed { id: i, error } if i == id => return Err(error),
            _ => {}
        }
    }
}

fn expected_samples(text: &str, rate: usize) -> usize {
    text.chars().filter(|c| !c.is_whitespace()).count() * 70 * rate / 1000
}

#[tokio::test]
async fn cartesia_speaks_a_context_from_streamed_pieces() {
    let fake = FakeCartesia::start().await;
    let tts = CartesiaTts::new(key()).with_base_url(fake.url());
    let mut s = tts
        .open(TtsOptions {
            sample_rate: 16000,
            language: Some("en".into()),
            ..TtsOptions::default()
        })
        .await
        .unwrap();
    let n = speak(&mut s, &["Hello, ", "how are you?"]).await.unwrap();
    assert_eq!(n, expected_samples("Hello, how are you?", 16000));
    // A second reply on the same connection.
    speak(&mut s, &["Fine."]).await.unwrap();
    let log = fake.log();
    assert_eq!(log.connections, 1);
    assert_eq!(log.texts[0].1, "Hello, how are you?");
}

#[tokio::test]
async fn cartesia_cancel_stops_the_audio() {
    let fake = FakeCartesia::start().await;
    fake.update_script(|s| s.chunk_interval = Duration::from_millis(20));
    let mut s = CartesiaTts::new(key())
        .with_base_url(fake.url())
        .open(TtsOptions {
            sample_rate: 16000,
            ..TtsOptions::default()
        })
        .await
        .unwrap();
    let id = s.start();
    s.push_text(id, "A rather long sentence that takes a while to say.")
        .unwrap();
    s.finish(id).unwrap();
    let first = tokio::time::timeout(WAIT, s.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(first, TtsEvent::Audio { .. }));
    s.cancel(id).unwrap();
    // Nothing more for the cancelled utterance, and the next one still works.
    let n = speak(&mut s, &["Next."]).await.unwrap();
    assert_eq!(n, expected_samples("Next.", 16000));
    assert_eq!(fake.log().cancels, vec!["callfleet-1".to_string()]);
}

#[tokio::test]
async fn cartesia_errors_and_drops() {
    let fake = FakeCartesia::start().await;
    let err = CartesiaTts::new(Secret::new("nope"))
        .with_base_url(fake.url())
        .open(TtsOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        TtsError::Auth {
            provider: "cartesia".into()
        }
    );

    let mut s = CartesiaTts::new(key())
        .with_base_url(fake.url())
        .open(TtsOptions {
            sample_rate: 16000,
            ..TtsOptions::default()
        })
        .await
        .unwrap();
    fake.update_script(|s| s.fail_after_chunks = Some(1));
    let err = speak(&mut s, &["Hello there, this fails."])
        .await
        .unwrap_err();
    assert!(matches!(err, TtsError::Provider { .. }), "{err:?}");

    fake.update_script(|s| s.disconnect_after_chunks = Some(fake.log().chunks_sent + 1));
    let err = speak(&mut s, &["Hello there, this drops."])
        .await
        .unwrap_err();
    assert!(matches!(err, TtsError::Connect { .. }), "{err:?}");
    // The session reconnected by itself.
    speak(&mut s, &["Back."]).await.unwrap();
    assert_eq!((fake.log().connections, fake.log().refused), (2, 1));
}

#[tokio::test]
async fn elevenlabs_speaks_over_a_socket_opened_in_advance() {
    let fake = FakeElevenLabs::start().await;
    let mut s = ElevenLabsTts::new(key())
        .with_base_url(fake.url())
        .open(TtsOptions {
            sample_rate: 16000,
            ..TtsOptions::default()
        })
        .await
        .unwrap();
    assert_eq!(fake.log().connections, 1, "opened at call start");
    let n = speak(&mut s, &["Hello, ", "world."]).await.unwrap();
    assert_eq!(n, expected_samples("Hello, world.", 16000));
    speak(&mut s, &["Again."]).await.unwrap();
    let log = fake.log();
    assert_eq!(log.texts[0].1, "Hello, world. ");
    assert!(log.connections >= 2);
    let err = ElevenLabsTts::new(Secret::new("x"))
        .with_base_url(fake.url())
        .open(TtsOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        TtsError::Auth {
            provider: "elevenlabs".into()
        }
    );
}

#[tokio::test]
async fn aura_speaks_flushes_and_clears() {
    let fake = FakeAura::start().await;
    fake.update_script(|s| s.chunk_interval = Duration::from_millis(20));
    let mut s = AuraTts::new(key())
        .with_base_url(fake.url())
        .open(TtsOptions {
            sample_rate: 16000,
            ..TtsOptions::default()
        })
        .await
        .unwrap();
    let n = speak(&mut s, &["Hello there."]).await.unwrap();
    assert_eq!(n, expected_samples("Hello there.", 16000));
    let id = s.start();
    s.push_text(id, "This one will be interrupted before it ends.")
        .unwrap();
    s.finish(id).unwrap();
    let first = tokio::time::timeout(WAIT, s.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(first, TtsEvent::Audio { .. }));
    s.cancel(id).unwrap();
    let n = speak(&mut s, &["Next."]).await.unwrap();
    assert_eq!(n, expected_samples("Next.", 16000));
    assert_eq!(fake.log().cancels.len(), 1);
}

// ---------------------------------------------------------------------------------------------

fn ask(text: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![ChatMessage::system("Be brief."), ChatMessage::user(text)],
        ..ChatRequest::default()
    }
}

async fn events(mut s: LlmStream) -> Vec<Result<LlmEvent, LlmError>> {
    let mut out = Vec::new();
    while let Some(ev) = tokio::time::timeout(WAIT, s.recv())
        .await
        .expect("LLM event in time")
    {
        out.push(ev);
    }
    out
}

#[tokio::test]
async fn ollama_streams_tokens_and_tool_calls() {
    let fake = FakeOllama::start().await;
    fake.push_reply(
        LlmReply::text("Booking it now.").tool_call("book", serde_json::json!({"day": "monday"})),
    );
    let llm = Ollama::new(fake.url(), "qwen2.5");
    let tools = vec![ToolSpec {
        name: "book".into(),
        description: "Book a visit".into(),
        parameters: serde_json::json!({"type": "object"}),
    }];
    let got = events(
        llm.stream(ChatRequest {
            tools,
            ..ask("book me")
        })
        .await
        .unwrap(),
    )
    .await;
    let got: Vec<LlmEvent> = got.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        got,
        vec![
            LlmEvent::Token("Booking".into()),
            LlmEvent::Token(" it".into()),
            LlmEvent::Token(" now.".into()),
            LlmEvent::ToolCall(ToolCall {
                id: "call_1".into(),
                name: "book".into(),
                arguments: serde_json::json!({"day": "monday"})
            }),
            LlmEvent::Done(FinishReason::ToolCalls),
        ]
    );
    let req = &fake.requests()[0];
    assert_eq!(req["stream"], true);
    assert_eq!(req["tools"][0]["function"]["name"], "book");
}

/// What the scenario engine gets from `EngineLlm` over a real Ollama wire: the reply, and the
/// pieces handed over while it streamed.
async fn engine_reply(
    llm: &EngineLlm,
) -> (
    Result<String, callfleet_core::scenario::AssistError>,
    Vec<String>,
) {
    use callfleet_core::scenario::{Llm, LlmMessage};
    let pieces = std::sync::Mutex::new(Vec::new());
    let on_text = |p: &str| pieces.lock().unwrap().push(p.to_string());
    let messages = vec![LlmMessage {
        role: "user",
        content: "When are you open?".into(),
    }];
    let reply = tokio::time::timeout(WAIT, llm.complete_streaming(messages, &on_text))
        .await
        .expect("a reply in time");
    (reply, pieces.into_inner().unwrap())
}

#[tokio::test]
async fn the_engine_gets_whole_sentences_as_they_stream_and_never_half_of_one() {
    let fake = FakeOllama::start().await;
    let model: Arc<dyn LanguageModel> =
        Arc::new(Ollama::new(fake.url(), "m").with_backoff(Backoff::NONE));
    let text = "We open at 9. We close at 6 on weekdays. Goodbye.";

    // Streamed: each sentence as soon as the next token shows it ended, the last at the end.
    fake.push_reply(LlmReply::text(text).delays(Duration::ZERO, Duration::from_millis(5)));
    let (reply, pieces) = engine_reply(&EngineLlm::new(model.clone())).await;
    assert_eq!(reply.unwrap(), text);
    assert_eq!(
        pieces,
        ["We open at 9.", " We close at 6 on weekdays.", " Goodbye."]
    );
    assert_eq!(
        fake.requests()[0]["options"]["num_predict"],
        ENGINE_REPLY_TOKENS,
        "a bot without max_tokens gets the engine's cap"
    );

    // Cut off by the token cap (the server stops at num_predict, done_reason "length"): the
    // caller hears only the whole sentence.
    fake.push_reply(LlmReply::text(text));
    let (reply, pieces) =
        engine_reply(&EngineLlm::new(model.clone()).with_sampling(None, Some(6))).await;
    assert_eq!(reply.unwrap(), "We open at 9.");
    assert_eq!(pieces, ["We open at 9."]);

    // Broken off after a sentence was handed over: that sentence is the reply.
    fake.push_reply(LlmReply::text(text).failing(LlmFailure::DisconnectAfter(6)));
    let (reply, pieces) = engine_reply(&EngineLlm::new(model.clone())).await;
    assert_eq!(reply.unwrap(), "We open at 9.");
    assert_eq!(pieces, ["We open at 9."]);

    // Broken off before any sentence: an error, and nothing was said.
    fake.push_reply(
        LlmReply::text(text).failing(LlmFailure::ErrorAfter(2, "out of memory".into())),
    );
    let (reply, pieces) = engine_reply(&EngineLlm::new(model)).await;
    assert!(reply.unwrap_err().0.contains("out of memory"));
    assert!(pieces.is_empty());
}

#[tokio::test]
async fn ollama_failures_table() {
    let fake = FakeOllama::start().await;
    let llm = Ollama::new(fake.url(), "m").with_backoff(Backoff::NONE);
    // (failure, error at start?, predicate on the error)
    type Check = fn(&LlmError) -> bool;
    let cases: Vec<(LlmFailure, bool, Check)> = vec![
        (LlmFailure::Status(500, "boom".into()), true, |e| {
            matches!(e, LlmError::Status { status: 500, .. })
        }),
        (
            LlmFailure::ErrorAfter(1, "out of memory".into()),
            false,
            |e| matches!(e, LlmError::Provider { message, .. } if message == "out of memory"),
        ),
        (LlmFailure::DisconnectAfter(1), false, |e| {
            matches!(e, LlmError::Interrupted { .. })
        }),
    ];
    for (failure, at_start, check) in cases {
        fake.push_reply(LlmReply::text("one two three").failing(failure.clone()));
        match llm.stream(ask("x")).await {
            Err(e) => {
                assert!(at_start && check(&e), "{failure:?}: {e:?}");
            }
            Ok(s) => {
                assert!(!at_start, "{failure:?} should fail at start");
                let evs = events(s).await;
                assert_eq!(evs[0], Ok(LlmEvent::Token("one".into())), "{failure:?}");
                let last = evs.last().unwrap().clone().unwrap_err();
                assert!(check(&last), "{failure:?}: {last:?}");
            }
        }
    }
    let missing = Ollama::new(fake.url(), "missing")
        .stream(ask("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(missing, LlmError::Status { status: 404, ref message, .. } if message.contains("not found")),
        "{missing:?}"
    );
}

#[tokio::test]
async fn openai_compatible_streams_and_accumulates_tool_arguments() {
    let fake = FakeOpenAi::start().await;
    fake.push_reply(LlmReply::text("Sure.").tool_call(
        "book",
        serde_json::json!({"day": "monday", "time": "10:00"}),
    ));
    let llm = OpenAi::new(fake.url(), Some(key()), "gpt-4o-mini");
    let got: Vec<LlmEvent> = events(llm.stream(ask("book")).await.unwrap())
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        got,
        vec![
            LlmEvent::Token("Sure.".into()),
            LlmEvent::ToolCall(ToolCall {
                id: "call_0".into(),
                name: "book".into(),
                arguments: serde_json::json!({"day": "monday", "time": "10:00"})
            }),
            LlmEvent::Done(FinishReason::ToolCalls),
        ]
    );
    let text = llm
        .stream(ask("hi"))
        .await
        .unwrap()
        .collect_text()
        .await
        .unwrap();
    assert_eq!(text, "You said: hi.");
    let err = OpenAi::new(fake.url(), Some(Secret::new("bad")), "m")
        .stream(ask("hi"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        LlmError::Auth {
            provider: "openai".into()
        }
    );
}

#[tokio::test]
async fn embeddings_from_both_servers() {
    let ollama = FakeOllama::start().await;
    let openai = FakeOpenAi::start().await;
    let a = OllamaEmbedder::new(ollama.url(), "all-minilm")
        .embed(vec!["a".into(), "b".into()])
        .await
        .unwrap();
    let b = OpenAiEmbedder::new(openai.url(), Some(key()), "text-embedding-3-small")
        .embed(vec!["a".into(), "b".into()])
        .await
        .unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(a, b);
    let norm: f32 = a[0].iter().map(|x| x * x).sum();
    assert!((norm - 1.0).abs() < 1e-4);
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn llm_fallback_takes_over_when_the_first_refuses() {
    let ollama = FakeOllama::start().await;
    let openai = FakeOpenAi::start().await;
    ollama.push_reply(LlmReply::text("x").failing(LlmFailure::Status(503, "loading".into())));
    let chain = FallbackLlm::new(vec![
        Arc::new(Ollama::new(ollama.url(), "m").with_backoff(Backoff::NONE)),
        Arc::new(OpenAi::new(openai.url(), Some(key()), "m")),
    ]);
    let s = chain.stream(ask("hello")).await.unwrap();
    assert_eq!(s.provider(), "openai");
    assert_eq!(s.collect_text().await.unwrap(), "You said: hello.");
}

#[tokio::test]
async fn tts_fallback_finishes_the_reply_on_the_next_provider() {
    let cartesia = FakeCartesia::start().await;
    let eleven = FakeElevenLabs::start().await;
    let chain = FallbackTts::new(vec![
        Arc::new(
            CartesiaTts::new(key())
                .with_base_url(cartesia.url())
                .with_backoff(Backoff::NONE),
        ),
        Arc::new(ElevenLabsTts::new(key()).with_base_url(eleven.url())),
    ]);
    let mut s = chain
        .open(TtsOptions {
            sample_rate: 16000,
            ..TtsOptions::default()
        })
        .await
        .unwrap();
    cartesia.update_script(|s| {
        s.disconnect_after_chunks = Some(2);
        s.chunk_interval = Duration::from_millis(5);
    });
    // Cartesia dies after 200 ms of audio and refuses to come back.
    cartesia.refuse_next(10);
    let text = "The first part is heard, and the rest comes from another voice.";
    let n = speak(&mut s, &[text]).await.unwrap();
    let said_by_eleven = &eleven.log().texts[0].1;
    assert!(text.ends_with(said_by_eleven.trim()), "{said_by_eleven:?}");
    assert!(said_by_eleven.len() < text.len());
    assert_eq!(n, 2 * 1600 + expected_samples(said_by_eleven, 16000));
}

#[tokio::test]
async fn stt_fallback_opens_the_next_when_the_first_is_down() {
    let down = FakeDeepgram::start(SttScript::default()).await;
    down.refuse_next(100);
    let up = FakeDeepgram::start(SttScript {
        transcripts: vec!["yes".into()],
        ..SttScript::default()
    })
    .await;
    let chain = FallbackStt::new(vec![
        Arc::new(
            DeepgramStt::new(key())
                .with_base_url(down.url())
                .with_backoff(Backoff::NONE),
        ),
        Arc::new(DeepgramStt::new(key()).with_base_url(up.url())),
    ]);
    let mut s = chain.open(SttOptions::default()).await.unwrap();
    feed(&mut s, &speech(300, 16000));
    feed(&mut s, &silence(400, 16000));
    let (_, text) = until_speech_final(&mut s).await;
    assert_eq!(text, "yes");
}
