//! Standalone echo participant.
//!
//!   cargo run -p callfleet-rtc --example lk_echo -- --url ws://127.0.0.1:7880 --token JWT [--delay-ms 500]
//!   cargo run -p callfleet-rtc --example lk_echo -- --room demo [--identity echo]   # mints a dev token
//!
//! Without `--token`, a token for `--room` is minted from LIVEKIT_API_KEY / LIVEKIT_API_SECRET
//! (default devkey / secret, the dev server's keys). Ctrl-C leaves the room.

use std::time::Duration;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,str0m=warn".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().collect();
    let url = arg(&args, "--url").unwrap_or_else(|| "ws://127.0.0.1:7880".into());
    let delay = Duration::from_millis(
        arg(&args, "--delay-ms")
            .and_then(|d| d.parse().ok())
            .unwrap_or(500),
    );
    let token = match arg(&args, "--token") {
        Some(t) => t,
        None => {
            let room = arg(&args, "--room").ok_or("--token or --room is required")?;
            let identity = arg(&args, "--identity").unwrap_or_else(|| "echo".into());
            let key = std::env::var("LIVEKIT_API_KEY").unwrap_or_else(|_| "devkey".into());
            let secret = std::env::var("LIVEKIT_API_SECRET").unwrap_or_else(|_| "secret".into());
            callfleet_rtc::participant_token(&key, &secret, &room, &identity)?
        }
    };
    callfleet_rtc::echo::run_until(&url, &token, delay, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
