//! Fetching a published file (gateway keys, issuer directory, ledger checkpoint) from every
//! mirror of the key directory. Everyone must get the same bytes: a file that not every mirror
//! serves could single this device out, so any difference is refused.

use std::time::Duration;

/// Reuse a published file at most this long, whatever a mirror's `Cache-Control` says.
pub const MAX_REUSE: Duration = Duration::from_secs(3600);

/// No published file is larger: key configurations, issuer directories and checkpoints are a
/// few KiB, a ledger entry with its manifest and proofs tens of KiB.
pub const MAX_PUBLISHED_BYTES: usize = 1 << 20;

/// Why the mirrors gave no agreed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorError {
    Unreachable { url: String, why: String },
    Disagree { first: String, second: String },
    NoneConfigured,
    Oversized(Oversized),
}

/// An answer longer than the device reads from that peer: refused before it is all in memory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{url} sent an answer over the limit of {limit} bytes; refused")]
pub struct Oversized {
    pub url: String,
    pub limit: usize,
}

/// The body of `answer`, read a chunk at a time and refused past `limit` bytes (a hostile CDN,
/// ledger, issuer or relay could otherwise fill the device's memory).
pub async fn read_capped(answer: reqwest::Response, url: &str, limit: usize) -> Result<Vec<u8>, ReadError> {
    if answer.content_length().is_some_and(|length| length > limit as u64) {
        return Err(ReadError::Oversized(Oversized { url: url.into(), limit }));
    }
    let mut answer = answer;
    let mut body = Vec::new();
    while let Some(chunk) = answer.chunk().await.map_err(|e| ReadError::Broken(e.to_string()))? {
        if body.len() + chunk.len() > limit {
            return Err(ReadError::Oversized(Oversized { url: url.into(), limit }));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Why an answer's body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    Oversized(Oversized),
    Broken(String),
}

/// A file every mirror served alike, and how long it may be reused: the shortest
/// `Cache-Control: max-age` among the mirrors (none given: not at all), at most [`MAX_REUSE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreed {
    pub bytes: Vec<u8>,
    pub fresh_for: Duration,
}

/// The bytes every URL in `urls` serves, if they are all the same.
pub async fn fetch_agreed(http: &reqwest::Client, urls: &[String]) -> Result<Agreed, MirrorError> {
    let mut agreed: Option<(&String, Agreed)> = None;
    for url in urls {
        let (bytes, fresh_for) = fetch_with_age(http, url).await?;
        match &mut agreed {
            Some((first, seen)) if seen.bytes != bytes => {
                return Err(MirrorError::Disagree { first: first.to_string(), second: url.clone() })
            }
            Some((_, seen)) => seen.fresh_for = seen.fresh_for.min(fresh_for),
            None => agreed = Some((url, Agreed { bytes, fresh_for })),
        }
    }
    agreed.map(|(_, agreed)| agreed).ok_or(MirrorError::NoneConfigured)
}

/// One GET that must answer 2xx.
pub async fn fetch(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, MirrorError> {
    Ok(fetch_with_age(http, url).await?.0)
}

async fn fetch_with_age(http: &reqwest::Client, url: &str) -> Result<(Vec<u8>, Duration), MirrorError> {
    let unreachable = |why: String| MirrorError::Unreachable { url: url.into(), why };
    let answer = http.get(url).send().await.map_err(|e| unreachable(e.to_string()))?;
    if !answer.status().is_success() {
        return Err(unreachable(format!("it answered {}", answer.status())));
    }
    let fresh_for = answer
        .headers()
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|value| value.to_str().ok())
        .map(max_age)
        .unwrap_or_default();
    let bytes = read_capped(answer, url, MAX_PUBLISHED_BYTES).await.map_err(|error| match error {
        ReadError::Oversized(oversized) => MirrorError::Oversized(oversized),
        ReadError::Broken(why) => unreachable(why),
    })?;
    Ok((bytes, fresh_for))
}

/// The `max-age` of a `Cache-Control` value (RFC 9111 §5.2.2.1); zero when the response may
/// not be reused without checking (`no-cache`, `no-store`) or says nothing.
fn max_age(cache_control: &str) -> Duration {
    let mut max_age = None;
    for directive in cache_control.split(',').map(|d| d.trim().to_ascii_lowercase()) {
        if directive == "no-cache" || directive == "no-store" {
            return Duration::ZERO;
        }
        if let Some(seconds) = directive.strip_prefix("max-age=") {
            max_age = seconds.trim_matches('"').parse::<u64>().ok();
        }
    }
    max_age.map(Duration::from_secs).unwrap_or_default().min(MAX_REUSE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_bounded_and_overruled_by_no_cache() {
        assert_eq!(max_age("public, max-age=300"), Duration::from_secs(300));
        assert_eq!(max_age("max-age=\"60\""), Duration::from_secs(60));
        assert_eq!(max_age("public, max-age=99999999"), MAX_REUSE);
        assert_eq!(max_age("max-age=300, no-cache"), Duration::ZERO);
        assert_eq!(max_age("public"), Duration::ZERO);
        assert_eq!(max_age("max-age=soon"), Duration::ZERO);
    }
}
