//! The process-wide count of open provider connections (reported in worker heartbeats) follows
//! sessions opening and closing. Its own test binary, so no other test's sessions are counted.

use callfleet_core::secret::Secret;
use callfleet_providers::cartesia::CartesiaTts;
use callfleet_providers::deepgram::DeepgramStt;
use callfleet_providers::*;
use callfleet_testkit::*;

#[tokio::test]
async fn open_connections_counts_live_sessions() {
    let (stt_fake, tts_fake) = (
        FakeDeepgram::start(SttScript::default()).await,
        FakeCartesia::start().await,
    );
    assert_eq!(open_connections(), 0);
    let stt = DeepgramStt::new(Secret::new(TEST_KEY))
        .with_base_url(stt_fake.url())
        .open(SttOptions::default())
        .await
        .unwrap();
    let tts = CartesiaTts::new(Secret::new(TEST_KEY))
        .with_base_url(tts_fake.url())
        .open(TtsOptions::default())
        .await
        .unwrap();
    assert_eq!(
        open_connections(),
        2,
        "one recognizer and one synthesizer connection"
    );
    let refused = DeepgramStt::new(Secret::new("wrong"))
        .with_base_url(stt_fake.url())
        .open(SttOptions::default())
        .await;
    assert!(refused.is_err());
    assert_eq!(open_connections(), 2, "a refused connection is not counted");
    drop(stt);
    drop(tts);
    // Dropping a session aborts its task; the connection goes with it on the next poll.
    for _ in 0..100 {
        if open_connections() == 0 {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(open_connections(), 0);
}
