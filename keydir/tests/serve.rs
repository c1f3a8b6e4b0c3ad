//! The key directory serves the published files with their media types and cache headers, and
//! nothing else.

use pp_keydir::{serve, KeyDirConfig};

#[tokio::test]
async fn serves_published_files_with_cache_headers_only() {
    let dir = std::env::temp_dir().join(format!("pp-keydir-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ohttp-keys"), b"\x00\x01k").unwrap();
    std::fs::write(dir.join("secret.toml"), b"seed").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(
        KeyDirConfig { listen: "127.0.0.1:0".parse().unwrap(), dir, max_age_secs: 60 },
        listener,
    ));
    let http = reqwest::Client::new();

    let keys = http.get(format!("{base}/ohttp-keys")).send().await.unwrap();
    assert_eq!(keys.status(), 200);
    assert_eq!(keys.headers()["content-type"], "application/ohttp-keys");
    assert_eq!(keys.headers()["cache-control"], "public, max-age=60");
    let etag = keys.headers()["etag"].clone();
    assert_eq!(keys.bytes().await.unwrap().as_ref(), b"\x00\x01k");

    let again = http.get(format!("{base}/ohttp-keys")).header("if-none-match", etag).send().await.unwrap();
    assert_eq!(again.status(), 304);
    for name in ["secret.toml", "..%2Fetc%2Fpasswd", "checkpoint"] {
        assert_eq!(http.get(format!("{base}/{name}")).send().await.unwrap().status(), 404, "{name}");
    }
}
