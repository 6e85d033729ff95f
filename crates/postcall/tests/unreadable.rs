//! Entries on the post-call stream that are not call records at all (damaged, or from a foreign
//! producer) end up with the other dead letters, under the company their JSON names when it
//! names one, and leave the queue's own `postcall:dead` stream. Real Redis.

use callfleet_fleet::testing::redis_url;
use callfleet_fleet::RedisQueue;
use callfleet_postcall::PostCallWorker;
use callfleet_store::testing::sqlite;
use callfleet_store::NewCompany;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn unreadable_entries_become_dead_letters_visible_with_the_others() {
    let Some(url) = redis_url() else { return };
    let prefix = format!("unreadable-{}:", std::process::id());
    let queue = Arc::new(RedisQueue::connect(&url, &prefix).await.unwrap());
    let db = sqlite().await;
    let company = db
        .store
        .create_company(NewCompany {
            name: "A".into(),
            timezone: "UTC".into(),
            max_concurrent_calls: 1,
        })
        .await
        .unwrap()
        .id;
    let damaged = queue.push_raw("{\"id\": \"call_cut").await.unwrap();
    let foreign = queue
        .push_raw(&format!(
            "{{\"id\": \"call_7\", \"company_id\": \"{company}\", \"status\": \"exploded\"}}"
        ))
        .await
        .unwrap();
    let worker = PostCallWorker::new(queue.clone(), db.store.clone(), "pc");
    // Reading sets them aside on the queue's dead stream; the next round keeps them.
    for _ in 0..3 {
        worker
            .process_next(Duration::from_millis(50))
            .await
            .unwrap();
    }
    assert_eq!(
        queue.dead_entries().await.unwrap(),
        0,
        "moved off postcall:dead"
    );
    assert_eq!(
        queue.pending_entries().await.unwrap(),
        0,
        "and off the stream"
    );

    let all = db.store.list_dead_letters(None, 10).await.unwrap();
    let mut ids: Vec<&str> = all.iter().map(|d| d.id.as_str()).collect();
    ids.sort();
    let mut want = vec![damaged.as_str(), foreign.as_str()];
    want.sort();
    assert_eq!(ids, want, "both kept, by their stream entry: {all:?}");
    let cut = all.iter().find(|d| d.id == damaged).unwrap();
    assert_eq!((cut.company_id.as_str(), cut.call_id.as_str()), ("", ""));
    assert_eq!(cut.record, serde_json::json!("{\"id\": \"call_cut"));
    assert!(cut.last_error.starts_with("not a call record: "), "{cut:?}");

    let mine = db
        .store
        .list_dead_letters(Some(&company), 10)
        .await
        .unwrap();
    assert_eq!(mine.len(), 1, "the company sees the entry that names it");
    assert_eq!(mine[0].call_id, "call_7");
    assert_eq!(mine[0].record["status"], "exploded");
}
