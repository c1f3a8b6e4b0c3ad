//! Fetching a published file (gateway keys, issuer directory, ledger checkpoint) from every
//! mirror of the key directory. Everyone must get the same bytes: a file that not every mirror
//! serves could single this device out, so any difference is refused.

/// Why the mirrors gave no agreed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorError {
    Unreachable { url: String, why: String },
    Disagree { first: String, second: String },
    NoneConfigured,
}

/// The bytes every URL in `urls` serves, if they are all the same.
pub async fn fetch_agreed(http: &reqwest::Client, urls: &[String]) -> Result<Vec<u8>, MirrorError> {
    let mut agreed: Option<(&String, Vec<u8>)> = None;
    for url in urls {
        let bytes = fetch(http, url).await?;
        match &agreed {
            Some((first, seen)) if *seen != bytes => {
                return Err(MirrorError::Disagree { first: first.to_string(), second: url.clone() })
            }
            Some(_) => {}
            None => agreed = Some((url, bytes)),
        }
    }
    agreed.map(|(_, bytes)| bytes).ok_or(MirrorError::NoneConfigured)
}

/// One GET that must answer 2xx.
pub async fn fetch(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, MirrorError> {
    let unreachable = |why: String| MirrorError::Unreachable { url: url.into(), why };
    let answer = http.get(url).send().await.map_err(|e| unreachable(e.to_string()))?;
    if !answer.status().is_success() {
        return Err(unreachable(format!("it answered {}", answer.status())));
    }
    Ok(answer.bytes().await.map_err(|e| unreachable(e.to_string()))?.to_vec())
}
