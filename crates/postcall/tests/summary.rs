//! Summaries from the bot's own language model chain, against the testkit's protocol-exact
//! Ollama and OpenAI-compatible servers, on every store backend: the first model in the chain
//! answers; a refusing one hands over to the next; when none serves (refusals, a broken stream,
//! too slow) or what comes back invents a number, the call gets the extractive summary; a bot
//! with no model never asks one. Each stored call says which kind of summary it got, and a
//! record processed again keeps the summary its webhooks already carry.

use callfleet_core::config::BotConfig;
use callfleet_core::domain::{CallDirection, CallRecord, CallStatus, Outcome, Speaker, Turn};
use callfleet_core::secret::Secret;
use callfleet_fleet::{FileQueue, PostCallQueue};
use callfleet_postcall::analysis::extractive_summary;
use callfleet_postcall::{PostCallWorker, Summarizer};
use callfleet_providers::ProviderEnv;
use callfleet_store::testing::test_stores;
use callfleet_store::{NewBot, NewCompany, Store};
use callfleet_testkit::llm::{FakeOllama, FakeOpenAi, LlmFailure, LlmReply};
use callfleet_testkit::TEST_KEY;
use std::sync::Arc;
use std::time::Duration;

const WITH_CHAIN: &str = r#"
bot_id: "salon"
language: "ru"
greeting: "Здравствуйте!"
scenarios:
  - name: "booking"
    trigger_keywords: ["записаться"]
    collect_fields:
      - {name: "service", prompt: "На какую услугу?"}
    on_complete: "booking_created"
fallback: "Простите, не поняла."
providers:
  llm: {provider: ollama, model: "qwen2.5:3b", fallback: [{provider: openai, model: gpt-4o-mini}]}
"#;

const WITHOUT_MODEL: &str = r#"
bot_id: "plain"
language: "ru"
greeting: "Здравствуйте!"
scenarios:
  - name: "booking"
    trigger_keywords: ["записаться"]
    collect_fields:
      - {name: "service", prompt: "На какую услугу?"}
    on_complete: "booking_created"
fallback: "Простите, не поняла."
"#;

async fn bot(store: &Store, company: &str, yaml: &str) -> String {
    let config = BotConfig::parse_any(yaml).expect("a valid config");
    store
        .create_bot(NewBot {
            company_id: company,
            name: "bot",
            config: &config,
            source_text: yaml,
            source_format: "yaml",
        })
        .await
        .unwrap()
        .0
        .id
}

fn call(id: &str, company: &str, bot: &str) -> CallRecord {
    let turn = |speaker, text: &str, at_ms| Turn {
        speaker,
        text: text.into(),
        at_ms,
        interrupted: false,
    };
    CallRecord {
        id: id.into(),
        company_id: company.into(),
        bot_id: bot.into(),
        bot_config_version: 1,
        direction: CallDirection::Inbound,
        status: CallStatus::Completed,
        from_number: Some("+79161234567".into()),
        to_number: None,
        room: None,
        started_at: 1_000,
        ended_at: Some(41_000),
        language: Some("ru".into()),
        transcript: vec![
            turn(Speaker::Bot, "Здравствуйте!", 0),
            turn(Speaker::User, "Хочу записаться на стрижку на завтра", 2_000),
            turn(Speaker::Bot, "Записала вас на стрижку.", 5_000),
        ],
        fields: [("service".to_string(), "стрижка".to_string())].into(),
        outcome: Some(Outcome {
            kind: "BOOKING".into(),
            evidence: vec![],
        }),
        summary: None,
        metrics: vec![],
    }
}

const GOOD: &str = "Клиент записался на стрижку на завтра.";

/// Pushes `record`, processes it, and returns what was stored: (summary, kind).
async fn processed(
    worker: &PostCallWorker,
    queue: &Arc<dyn PostCallQueue>,
    store: &Store,
    record: &CallRecord,
) -> (String, String) {
    queue.push(record).await.unwrap();
    assert!(worker.process_next(Duration::from_secs(5)).await.unwrap());
    let page = store
        .list_calls(&Default::default(), None, 500)
        .await
        .unwrap()
        .unwrap();
    let listed = page
        .calls
        .into_iter()
        .find(|c| c.id == record.id)
        .expect("the call is stored");
    let stored = store.get_call_summary(&record.id).await.unwrap();
    assert_eq!(
        stored,
        listed.summary.clone().zip(listed.summary_kind.clone()),
        "the list and the call agree"
    );
    stored.expect("a summary and its kind")
}

#[tokio::test]
async fn calls_are_summarised_by_the_bots_chain_or_extractively_when_none_serves() {
    for db in test_stores().await {
        let name = format!("{:?}", db.backend);
        let store = db.store.clone();
        let company = store
            .create_company(NewCompany {
                name: "Salon".into(),
                timezone: "Europe/Moscow".into(),
                max_concurrent_calls: 5,
            })
            .await
            .unwrap()
            .id;
        let with_chain = bot(&store, &company, WITH_CHAIN).await;
        let without_model = bot(&store, &company, WITHOUT_MODEL).await;
        let ollama = FakeOllama::start().await;
        let openai = FakeOpenAi::start().await;
        let env = ProviderEnv {
            ollama_url: Some(ollama.url()),
            openai_url: Some(openai.url()),
            openai_key: Some(Secret::new(TEST_KEY)),
            ..ProviderEnv::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let queue: Arc<dyn PostCallQueue> = Arc::new(FileQueue::open(dir.path()).unwrap());
        let worker = PostCallWorker::new(queue.clone(), store.clone(), "pc").with_summarizer(
            Summarizer::for_bots(store.clone(), env).with_timeout(Duration::from_secs(2)),
        );

        // The first model of the chain answers.
        ollama.push_reply(LlmReply::text(GOOD));
        let first = call("call_ollama", &company, &with_chain);
        assert_eq!(
            processed(&worker, &queue, &store, &first).await,
            (GOOD.to_string(), "llm".to_string()),
            "{name}: Ollama's summary"
        );
        let asked = ollama.requests();
        assert_eq!(asked.len(), 1, "{name}");
        assert_eq!(asked[0]["model"], "qwen2.5:3b", "{name}");
        let system = asked[0]["messages"][0]["content"].as_str().unwrap();
        let user = asked[0]["messages"][1]["content"].as_str().unwrap();
        assert!(system.contains("in Russian"), "{name}: {system}");
        assert!(
            user.contains("Caller: Хочу записаться на стрижку на завтра")
                && user.contains("service: стрижка")
                && user.contains("Outcome: BOOKING"),
            "{name}: the model is given the call: {user}"
        );

        // Ollama refuses: the chain's next model serves.
        ollama.push_reply(LlmReply::text("-").failing(LlmFailure::Status(
            404,
            "model \"qwen2.5:3b\" not found, try pulling it first".into(),
        )));
        openai.push_reply(LlmReply::text("Клиент записался на стрижку."));
        assert_eq!(
            processed(
                &worker,
                &queue,
                &store,
                &call("call_openai", &company, &with_chain)
            )
            .await,
            (
                "Клиент записался на стрижку.".to_string(),
                "llm".to_string()
            ),
            "{name}: OpenAI's summary after Ollama refused"
        );
        assert_eq!(openai.requests().len(), 1, "{name}");

        // Neither serves: one refuses, the other's stream breaks off.
        let failing = call("call_failing", &company, &with_chain);
        // (a 503 is retried: three of them.)
        for _ in 0..3 {
            ollama.push_reply(LlmReply::text("-").failing(LlmFailure::Status(503, "busy".into())));
        }
        openai.push_reply(
            LlmReply::text("Клиент записался на").failing(LlmFailure::DisconnectAfter(2)),
        );
        assert_eq!(
            processed(&worker, &queue, &store, &failing).await,
            (extractive_summary(&failing), "extractive".to_string()),
            "{name}: extractive when no model serves"
        );

        // Both too slow for the summary's timeout.
        let slow = call("call_slow", &company, &with_chain);
        ollama.push_reply(LlmReply::text(GOOD).delays(Duration::from_secs(30), Duration::ZERO));
        openai.push_reply(LlmReply::text(GOOD).delays(Duration::from_secs(30), Duration::ZERO));
        assert_eq!(
            processed(&worker, &queue, &store, &slow).await,
            (extractive_summary(&slow), "extractive".to_string()),
            "{name}: extractive when the models are too slow"
        );

        // A model that makes up a price is not believed.
        let invented = call("call_invented", &company, &with_chain);
        ollama.push_reply(LlmReply::text(
            "Клиент записался на стрижку за 1500 рублей.",
        ));
        assert_eq!(
            processed(&worker, &queue, &store, &invented).await,
            (extractive_summary(&invented), "extractive".to_string()),
            "{name}: a number that is not in the call"
        );

        // A bot without a model: extractive, and no model is asked.
        let before = (ollama.requests().len(), openai.requests().len());
        let plain = call("call_plain", &company, &without_model);
        assert_eq!(
            processed(&worker, &queue, &store, &plain).await,
            (extractive_summary(&plain), "extractive".to_string()),
            "{name}: no model configured"
        );
        assert_eq!(
            (ollama.requests().len(), openai.requests().len()),
            before,
            "{name}: nobody asked"
        );

        // The same record processed again (a retry after a crash) keeps its summary even though
        // the model would now say something else.
        ollama.push_reply(LlmReply::text("Клиент передумал."));
        assert_eq!(
            processed(&worker, &queue, &store, &first).await,
            (GOOD.to_string(), "llm".to_string()),
            "{name}: a retried record keeps its summary"
        );

        // A summary that came with the record stands.
        let mut given = call("call_given", &company, &with_chain);
        given.summary = Some("Записан на стрижку.".into());
        assert_eq!(
            processed(&worker, &queue, &store, &given).await,
            ("Записан на стрижку.".to_string(), "given".to_string()),
            "{name}: a given summary stands"
        );
    }
}
