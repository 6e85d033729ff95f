//! Both recording stores pass one suite: the data dir, and an S3-compatible bucket reached over
//! HTTP with SigV4 (the testkit's fake S3 checks every signature and body hash the way S3 does).
//! A wrong secret is refused, a bucket error is reported with S3's code, keys stay inside.

use callfleet_core::secret::Secret;
use callfleet_recording::{
    recording_key, stereo_wav, DirStore, RecordingError, RecordingStore, S3Settings, S3Store,
};
use callfleet_testkit::s3::{FakeS3, TEST_ACCESS_KEY, TEST_REGION, TEST_SECRET_KEY};

async fn suite(name: &str, store: &dyn RecordingStore) {
    let key = recording_key("cmp_1", "call_1");
    let wav = stereo_wav(&[1, 2, 3, 4], &[-4, -3], 16_000);
    assert_eq!(store.get(&key).await.unwrap(), None, "{name}: nothing yet");
    assert_eq!(store.size(&key).await.unwrap(), None, "{name}");
    store.put(&key, wav.clone()).await.unwrap();
    assert_eq!(
        store.size(&key).await.unwrap(),
        Some(wav.len() as u64),
        "{name}"
    );
    assert_eq!(
        store.get(&key).await.unwrap(),
        Some(wav),
        "{name}: read back"
    );
    let other = recording_key("cmp_2", "call_1");
    assert_eq!(
        store.get(&other).await.unwrap(),
        None,
        "{name}: keyed by company"
    );
    store.put(&key, b"again".to_vec()).await.unwrap();
    assert_eq!(
        store.get(&key).await.unwrap().as_deref(),
        Some(&b"again"[..])
    );
    store.delete(&key).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap(), None, "{name}: deleted");
    store.delete(&key).await.unwrap();
    assert!(matches!(
        store.put("recordings/../x.wav", vec![1]).await,
        Err(RecordingError::Key(_))
    ));
}

fn settings(s3: &FakeS3, secret: &str) -> S3Settings {
    S3Settings {
        endpoint: s3.url(),
        bucket: "calls".into(),
        region: TEST_REGION.into(),
        access_key: TEST_ACCESS_KEY.into(),
        secret_key: Secret::new(secret),
    }
}

#[tokio::test]
async fn recordings_are_stored_read_and_deleted_in_a_dir_and_a_bucket() {
    let dir = tempfile::tempdir().unwrap();
    suite("dir", &DirStore::new(dir.path())).await;

    let s3 = FakeS3::start("calls").await;
    let bucket = S3Store::new(settings(&s3, TEST_SECRET_KEY)).unwrap();
    suite("s3", &bucket).await;
    assert!(s3.keys().is_empty());
    bucket
        .put("recordings/cmp_1/call_9.wav", vec![9; 1000])
        .await
        .unwrap();
    assert_eq!(
        s3.object("recordings/cmp_1/call_9.wav"),
        Some(vec![9; 1000]),
        "the object is in the bucket under its key"
    );
    assert!(s3
        .requests()
        .contains(&"PUT /calls/recordings/cmp_1/call_9.wav".to_string()));

    // A wrong secret: S3 refuses the signature.
    let forged = S3Store::new(settings(&s3, "not-the-secret")).unwrap();
    match forged.get("recordings/cmp_1/call_9.wav").await {
        Err(RecordingError::Status { status, code }) => {
            assert_eq!((status, code.as_str()), (403, "SignatureDoesNotMatch"))
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The bucket's own errors come back with their code.
    s3.fail_next(503, "SlowDown");
    match bucket.put("recordings/cmp_1/call_8.wav", vec![1]).await {
        Err(RecordingError::Status { status, code }) => {
            assert_eq!((status, code.as_str()), (503, "SlowDown"))
        }
        other => panic!("expected SlowDown, got {other:?}"),
    }
    let missing_bucket = S3Store::new(S3Settings {
        bucket: "nope".into(),
        ..settings(&s3, TEST_SECRET_KEY)
    })
    .unwrap();
    assert!(matches!(
        missing_bucket.get("recordings/a/b.wav").await,
        Err(RecordingError::Status { status: 404, code }) if code == "NoSuchBucket"
    ));
}
