//! SmolLM2-135M through candle: answers from a scenario-style system prompt, streams, stops.
#![cfg(feature = "llm")]

mod common;

use callfleet_local_engines::{models_dir, LocalLlm, LocalLlmConfig};
use callfleet_providers::{ChatMessage, ChatRequest, FinishReason, LanguageModel, LlmEvent};

fn model() -> Option<LocalLlm> {
    let config = LocalLlmConfig::smollm2(&models_dir());
    if !common::require(&config.model_file, "SmolLM2-135M-Instruct GGUF") {
        return None;
    }
    Some(LocalLlm::new(config))
}

fn salon(question: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![
            ChatMessage::system("You are a salon receptionist. Opening hours: 9 to 18, Monday to Saturday. The salon opens at 9 and closes at 18."),
            ChatMessage::user(question),
        ],
        tools: Vec::new(),
        temperature: Some(0.0),
        max_tokens: Some(48),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_from_the_system_prompt_token_by_token() {
    let Some(llm) = model() else { return };
    let started = std::time::Instant::now();
    let mut stream = llm.stream(salon("When do you open?")).await.unwrap();
    let (mut tokens, mut text, mut done) = (0, String::new(), None);
    while let Some(ev) = stream.recv().await {
        match ev.unwrap() {
            LlmEvent::Token(t) => {
                tokens += 1;
                text.push_str(&t);
            }
            LlmEvent::ToolCall(c) => panic!("no tool calls expected: {c:?}"),
            LlmEvent::Done(r) => done = Some(r),
        }
    }
    println!("{tokens} tokens in {:?}: {text:?}", started.elapsed());
    assert!(tokens >= 3, "{tokens} tokens: {text:?}");
    assert!(
        text.contains('9') || text.to_lowercase().contains("nine"),
        "{text:?}"
    );
    assert!(
        !text.contains("<|im_end|>") && !text.contains("<|im_start|>"),
        "{text:?}"
    );
    assert!(
        matches!(done, Some(FinishReason::Stop) | Some(FinishReason::Length)),
        "{done:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tokens_and_dropping_the_stream_stop_generation() {
    let Some(llm) = model() else { return };
    let mut req = salon("Tell me everything about your salon, your staff and your services.");
    req.max_tokens = Some(5);
    let mut stream = llm.stream(req).await.unwrap();
    let mut tokens = 0;
    let mut done = None;
    while let Some(ev) = stream.recv().await {
        match ev.unwrap() {
            LlmEvent::Token(_) => tokens += 1,
            LlmEvent::Done(r) => done = Some(r),
            LlmEvent::ToolCall(_) => {}
        }
    }
    assert!((1..=5).contains(&tokens), "{tokens}");
    assert_eq!(done, Some(FinishReason::Length));

    // A long reply dropped after its first token: the generator notices and the next request is
    // served at once (one rayon thread, so a runaway generation would block it).
    let mut req = salon("Write a long story about a cat.");
    req.max_tokens = Some(400);
    let mut stream = llm.stream(req).await.unwrap();
    assert!(matches!(stream.recv().await, Some(Ok(LlmEvent::Token(_)))));
    drop(stream);
    let started = std::time::Instant::now();
    let mut follow_up = salon("When do you open?");
    follow_up.max_tokens = Some(12);
    let text = llm
        .stream(follow_up)
        .await
        .unwrap()
        .collect_text()
        .await
        .unwrap();
    assert!(text.contains('9'), "{text:?}");
    // Finishing the dropped 400-token reply first would take far longer (even optimised, at
    // ~30 tok/s, over 10 s); 12 tokens take a few seconds in a debug build.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}
