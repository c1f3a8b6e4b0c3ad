//! The ledger over HTTP with bad input: malformed and oversized records, a missing append
//! token, absurd sizes and indexes — each refused with a clear error, nothing appended, the log
//! still consistent and serving.

use pp_ledger::{Ledger, LedgerConfig, LedgerKey};
use pp_vocab::ledger::ReleaseRecord;
use pp_vocab::log::{DiscardSink, EventLog};

async fn start(token: Option<&str>) -> (String, std::sync::Arc<Ledger>) {
    let dir =
        std::env::temp_dir().join(format!("pp-ledger-service-{}-{}", std::process::id(), token.is_some()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ledger.key"), LedgerKey::generate("ledger.test/releases").0).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = LedgerConfig {
        listen: listener.local_addr().unwrap(),
        origin: "ledger.test/releases".into(),
        key_file: dir.join("ledger.key"),
        data_dir: dir.join("data"),
        publish_dir: None,
        witnesses: vec![],
        append_token: token.map(str::to_string),
        tiles_dir: None,
    };
    let ledger = Ledger::open(config, EventLog::new(&["outcome"], Box::new(DiscardSink))).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(pp_ledger::serve(ledger.clone(), listener));
    (url, ledger)
}

fn record() -> ReleaseRecord {
    ReleaseRecord {
        launch_measurement: hex::encode([3; 48]),
        manifest_digest: pp_vocab::Sha256::of(b"manifest"),
        manifest: serde_json::json!({}),
        source_revision: "abc".into(),
    }
}

#[tokio::test]
async fn bad_input_is_refused_and_nothing_is_appended() {
    let (url, ledger) = start(None).await;
    let http = reqwest::Client::new();
    let add = |body: Vec<u8>| {
        http.post(format!("{url}/add")).header("content-type", "application/json").body(body).send()
    };
    assert_eq!(add(serde_json::to_vec(&record()).unwrap()).await.unwrap().status(), 200);

    let answer = add(b"{not json".to_vec()).await.unwrap();
    assert_eq!(answer.status(), 400);
    assert!(answer.text().await.unwrap().contains("not a valid release record"));
    let mut unknown_field = serde_json::to_value(record()).unwrap();
    unknown_field["extra"] = serde_json::json!(1);
    assert_eq!(add(serde_json::to_vec(&unknown_field).unwrap()).await.unwrap().status(), 400);
    let bad_measurement = ReleaseRecord { launch_measurement: "abcd".into(), ..record() };
    assert_eq!(add(serde_json::to_vec(&bad_measurement).unwrap()).await.unwrap().status(), 400);
    let huge = ReleaseRecord { source_revision: "x".repeat(300 * 1024), ..record() };
    assert_eq!(add(serde_json::to_vec(&huge).unwrap()).await.unwrap().status(), 400);
    assert_eq!(ledger.size().await, 1, "nothing was appended");

    for query in [
        "/entry/0?size=2",
        "/entry/5?size=1",
        "/entry/0?size=99999999999999",
        "/entry/0",
        "/consistency?old=2&new=1",
        "/consistency?old=0&new=9",
    ] {
        let answer = http.get(format!("{url}{query}")).send().await.unwrap();
        assert_eq!(answer.status(), 400, "{query}");
    }
    assert_eq!(http.get(format!("{url}/entry/0?size=1")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn appending_needs_the_token_when_one_is_set() {
    let (url, ledger) = start(Some("operator-secret")).await;
    let http = reqwest::Client::new();
    let denied = http.post(format!("{url}/add")).json(&record()).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    let allowed =
        http.post(format!("{url}/add")).bearer_auth("operator-secret").json(&record()).send().await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(ledger.size().await, 1);
}
