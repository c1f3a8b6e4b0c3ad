//! The device, as one object other programs use: configure it, let the user opt in, list the
//! features the ledger-proven release serves, run any of them through the whole private path,
//! and read the receipts. This module names no feature ([`crate::features`] has the friendly
//! helpers).
//!
//! ```no_run
//! use pp_client::device::{Device, DeviceConfig};
//! use pp_plaintext::{ChatMessage, FeatureRequest};
//!
//! # async fn example() -> Result<(), pp_client::device::DeviceError> {
//! let config = DeviceConfig::load("device.toml".as_ref())?;
//! let mut device = Device::open(config, "state/device".as_ref())?.on_progress(|line| eprintln!("{line}"));
//! device.opt_in()?;
//! for feature in device.features().await? {
//!     println!("{}: {}", feature.name, feature.summary);
//! }
//! let chat = vec![ChatMessage { author: "Maya".into(), text: "Picnic on Saturday at 11?".into() }];
//! let request = FeatureRequest::new("summarize").messages("chat", chat);
//! let outcome = device.run(&request, Some("picnic")).await?;
//! println!("{}", outcome.response.text());
//! println!("{}", outcome.receipt.explain());
//! # Ok(()) }
//! ```
//!
//! Every request: the user's settings first (nothing leaves before opt-in, nor for a chat kept
//! on the device), then the releases proven in the ledger, the gateway's keys, one anonymous
//! token, and an attested session whose evidence is checked before the request is sent. A
//! spent or retired token, a relay, gateway or host that fails mid-request, or a host on a
//! release newer than the ledger view held, costs one retry in a fresh session with a fresh
//! token; anything else fails with an error that names the phase.

use crate::ledger::{LedgerClient, LedgerClientError, LedgerSettings, ReleaseView};
use crate::receipts::{LedgerEvidence, PlatformEvidence, Receipt, ReceiptError, Receipts};
use crate::session::{AttestedSession, OnPiece, SessionError, Verified};
use crate::settings::{Refusal as SettingsRefusal, Settings, SettingsError};
use crate::tokens::{SpendableToken, TokenError, TokenSettings, TokenSupply};
use crate::transport::{KeysSource, Transport, TransportConfig, TransportError};
use pp_attestation::evidence::Release;
pub use pp_attestation::ratls::KeyExchange;
use pp_attestation::simulated::SimulatedRootPublic;
use pp_attestation::snp::{MinimumTcb, PlatformPolicy, PlatformPolicyError, Product};
use pp_attestation::{AttestationError, ReferenceValues, TeeKind};
use pp_plaintext::{FeatureRequest, FeatureResponse};
use pp_vocab::config::ConfigError;
use pp_vocab::feature::Descriptor;
use pp_vocab::policy::ReleasePolicy;
use pp_vocab::tokens::Refusal;
use pp_vocab::Sha256;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `device.toml` (every key: `client/device.example.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    pub relay_url: String,
    /// The key directory and its mirrors: all must serve the same keys.
    pub key_urls: Vec<String>,
    /// The transparency ledger: the releases this device accepts are the latest proven there.
    #[serde(default)]
    pub ledger: Option<LedgerSettings>,
    /// Without a ledger: the releases this device accepts, pinned (development and tests); the
    /// i-th launch measurement goes with the i-th manifest digest.
    #[serde(default)]
    pub launch_measurements: Vec<String>,
    #[serde(default)]
    pub manifest_digests: Vec<Sha256>,
    /// INSECURE, development only: accept simulated evidence signed by this root (hex).
    #[serde(default)]
    pub accept_simulated_insecure_root: Option<String>,
    /// Privacy Pass: where this device's anonymous tokens come from.
    pub tokens: TokenSettings,
    /// What the host's hardware must be: without a floor for a product line, its reports are
    /// refused.
    #[serde(default)]
    pub platform: PlatformSettings,
    /// The TLS key exchange with the host: "post-quantum" (X25519MLKEM768 only, the default) or
    /// "allow-classical" (X25519 too, for a host without ML-KEM).
    #[serde(default)]
    pub key_exchange: KeyExchange,
}

/// The `[platform]` table of `device.toml`: the app vendor's pin on the host's hardware.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformSettings {
    /// The VMPL the host's reports must be requested from (0: nothing more privileged, such as
    /// an SVSM, runs beneath the guest).
    #[serde(default)]
    pub vmpl: u32,
    /// The lowest TCB accepted per AMD product line (`[platform.minimum_tcb.milan]` …); an
    /// all-zero floor is a config error.
    #[serde(default)]
    pub minimum_tcb: MinimumTcbs,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinimumTcbs {
    pub milan: Option<MinimumTcb>,
    pub genoa: Option<MinimumTcb>,
    pub turin: Option<MinimumTcb>,
}

impl PlatformSettings {
    /// The platform policy; refuses an all-zero floor, naming its product.
    pub fn policy(&self) -> Result<PlatformPolicy, PlatformPolicyError> {
        let floors = &self.minimum_tcb;
        let mut policy = PlatformPolicy::new(self.vmpl);
        for (product, floor) in
            [(Product::Milan, floors.milan), (Product::Genoa, floors.genoa), (Product::Turin, floors.turin)]
        {
            if let Some(floor) = floor {
                policy = policy.with_floor(product, floor)?;
            }
        }
        Ok(policy)
    }
}

impl DeviceConfig {
    pub fn load(file: &Path) -> Result<Self, DeviceError> {
        Ok(pp_vocab::config::load(file)?)
    }
}

/// Why a request did not complete: each names the phase that failed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Refused(#[from] SettingsRefusal),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the device config: {0}")]
    BadConfig(String),
    /// Not a `source`: the message already says it all (anyhow would print it twice).
    #[error("the device config's [platform]: {0}")]
    Platform(PlatformPolicyError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Ledger(#[from] LedgerClientError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("tokens: {0}")]
    Tokens(#[from] TokenError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Receipts(#[from] ReceiptError),
    #[error("the release does not serve feature {feature:?} (it serves {served:?})")]
    UnknownFeature { feature: String, served: Vec<String> },
    #[error(transparent)]
    Request(#[from] pp_plaintext::RequestError),
    #[error("no feature list: features are discovered from the transparency ledger's manifests, and no ledger is configured")]
    NoFeatureList,
    #[error("the ledger's manifest is not a release policy: {0}")]
    BadManifest(String),
}

/// An answer and what was verified to get it.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub response: FeatureResponse,
    pub receipt: Receipt,
}

type Progress = Box<dyn Fn(&str) + Send + Sync>;

pub struct Device {
    config: DeviceConfig,
    state_dir: PathBuf,
    settings: Settings,
    progress: Progress,
    /// Kept across requests: the gateway's keys and the ledger view are reused while the key
    /// directory says they are fresh, and connections stay open.
    transport: Transport,
    ledger: Option<LedgerClient>,
    view: Mutex<Option<(Arc<ReleaseView>, Instant)>>,
    tokens: TokenSupply,
    receipts: Receipts,
    /// From the config's `[platform]`, checked when the device opens.
    platform: PlatformPolicy,
}

/// The ledger view a request trusts, and whether it was checked before this request.
struct TrustedView {
    view: Arc<ReleaseView>,
    reused: bool,
}

impl Device {
    /// The device with its state (settings, tokens, ledger view, receipts) in `state_dir`.
    pub fn open(config: DeviceConfig, state_dir: &Path) -> Result<Self, DeviceError> {
        let platform = config.platform.policy().map_err(DeviceError::Platform)?;
        let settings = Settings::load(state_dir)?;
        let transport = Transport::new(TransportConfig {
            relay_url: config.relay_url.clone(),
            key_urls: config.key_urls.clone(),
            local_address: None,
            timeout: Duration::from_secs(300),
        });
        let ledger = match &config.ledger {
            Some(settings) => Some(LedgerClient::new(settings.clone(), state_dir)?),
            None => None,
        };
        let tokens = TokenSupply::new(config.tokens.clone(), state_dir);
        let receipts = Receipts::new(state_dir);
        Ok(Device {
            config,
            state_dir: state_dir.to_path_buf(),
            settings,
            progress: Box::new(|_| {}),
            transport,
            ledger,
            view: Mutex::new(None),
            tokens,
            receipts,
            platform,
        })
    }

    /// Called with one line per phase as it happens (the `pp` command prints them).
    pub fn on_progress(mut self, progress: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.progress = Box::new(progress);
        self
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Turns cloud AI features on (they are off until the user does this).
    pub fn opt_in(&mut self) -> Result<(), DeviceError> {
        self.change_settings(|settings| settings.opted_in = true)
    }

    pub fn opt_out(&mut self) -> Result<(), DeviceError> {
        self.change_settings(|settings| settings.opted_in = false)
    }

    /// No AI feature may see `chat` (advanced chat privacy).
    pub fn keep_on_device(&mut self, chat: &str) -> Result<(), DeviceError> {
        self.change_settings(|settings| _ = settings.keep_on_device.insert(chat.into()))
    }

    pub fn allow(&mut self, chat: &str) -> Result<(), DeviceError> {
        self.change_settings(|settings| _ = settings.keep_on_device.remove(chat))
    }

    fn change_settings(&mut self, change: impl FnOnce(&mut Settings)) -> Result<(), DeviceError> {
        change(&mut self.settings);
        Ok(self.settings.save(&self.state_dir)?)
    }

    pub fn receipts(&self) -> &Receipts {
        &self.receipts
    }

    /// The features of the newest release the ledger proves, as its manifest describes them
    /// (what they take and answer). Needs a ledger: pinned releases carry no manifest.
    pub async fn features(&self) -> Result<Vec<Descriptor>, DeviceError> {
        let trusted = self.trusted_view(false).await?.ok_or(DeviceError::NoFeatureList)?;
        features_of(&trusted.view)
    }

    /// Runs any feature of the release through the whole private path (`chat` names the chat
    /// the request is about, which `keep_on_device` refers to). With a ledger, the request is
    /// checked first against the feature's descriptor in the ledger-proven manifests, so a
    /// mistake is reported before a token is spent.
    pub async fn run(&self, request: &FeatureRequest, chat: Option<&str>) -> Result<Outcome, DeviceError> {
        self.run_with(request, chat, None).await
    }

    /// [`Device::run`] with the answer streamed: `on_piece` gets each piece as it arrives; the
    /// outcome is the same as [`Device::run`]'s. A stream cut before any piece is retried once
    /// like any lost answer; one cut later is an error (what was shown is not an answer).
    pub async fn run_streamed(
        &self,
        request: &FeatureRequest,
        chat: Option<&str>,
        on_piece: OnPiece<'_>,
    ) -> Result<Outcome, DeviceError> {
        self.run_with(request, chat, Some(on_piece)).await
    }

    async fn run_with(
        &self,
        request: &FeatureRequest,
        chat: Option<&str>,
        mut on_piece: Option<OnPiece<'_>>,
    ) -> Result<Outcome, DeviceError> {
        // Before any network call: the user's choices.
        self.settings.check(chat)?;
        let pinned = self.pinned_reference_values()?;
        let mut trusted = self.trusted_view(false).await?;
        if let Some(trusted) = &trusted {
            check_request(&trusted.view, request)?;
        }
        self.ready_keys().await?;
        let now = pp_vocab::unix_now();
        let mut token = self.take_token(now).await?;
        self.say(&format!("opening an attested session through the relay {}…", self.config.relay_url));
        let reference = reference_values(&pinned, trusted.as_ref());
        let first = self.attempt(&reference, request, &token, now as i64, &mut on_piece).await;
        let mut retried = false;
        let (response, verified) = match first {
            Err(error) if worth_one_retry(&error, trusted.as_ref()) => {
                self.say(&format!("{error}; retrying once in a fresh session with a fresh token"));
                if let SessionError::TokenRefused(Refusal::UnknownKey | Refusal::ExpiredKey) = error {
                    self.tokens.discard_key(&token.key_id).await?;
                }
                if let SessionError::Attestation(_) = error {
                    trusted = self.trusted_view(true).await?;
                }
                if let SessionError::Transport(_) = error {
                    // Long enough for a relay or gateway that crashed to be restarted.
                    tokio::time::sleep(TRANSPORT_RETRY_PAUSE).await;
                }
                token = self.take_token(now).await?;
                retried = true;
                let reference = reference_values(&pinned, trusted.as_ref());
                self.attempt(&reference, request, &token, now as i64, &mut on_piece).await?
            }
            other => other?,
        };
        let view = trusted.as_ref().map(|trusted| &*trusted.view);
        self.report_attestation(&verified, view);
        self.say(&format!(
            "answer received ({} prompt + {} generated tokens)",
            response.prompt_tokens, response.completion_tokens
        ));
        let receipt = receipt(request, &verified, view, &token, &self.config.relay_url, retried);
        let receipt = self.receipts().save(receipt)?;
        self.say(&format!(
            "privacy receipt #{} kept on this device (`pp receipts show {}`)",
            receipt.number, receipt.number
        ));
        Ok(Outcome { response, receipt })
    }

    async fn attempt(
        &self,
        reference: &ReferenceValues,
        request: &FeatureRequest,
        token: &SpendableToken,
        now: i64,
        on_piece: &mut Option<OnPiece<'_>>,
    ) -> Result<(FeatureResponse, Verified), SessionError> {
        let session = self.session(reference);
        match on_piece {
            Some(on_piece) => session.request_streamed(request, token, now, &mut **on_piece).await,
            None => session.request(request, token, now).await,
        }
    }

    fn session<'a>(&'a self, reference: &'a ReferenceValues) -> AttestedSession<'a> {
        AttestedSession::new(&self.transport, reference)
            .with_progress(&*self.progress)
            .with_key_exchange(self.config.key_exchange)
    }

    /// The gateway's keys: the agreed set held while fresh, else fetched from every mirror.
    async fn ready_keys(&self) -> Result<(), DeviceError> {
        let mirrors = self.config.key_urls.len();
        match self.transport.ready_keys().await? {
            KeysSource::Fetched => {
                self.say(&format!("gateway keys fetched from {mirrors} key directory mirror(s); they agree"))
            }
            KeysSource::Reused(left) => self.say(&format!(
                "gateway keys: reusing the set {mirrors} mirror(s) agreed on (fresh for {} s more)",
                left.as_secs()
            )),
        }
        Ok(())
    }

    fn say(&self, line: &str) {
        (self.progress)(line);
    }

    fn report_attestation(&self, verified: &Verified, view: Option<&ReleaseView>) {
        let attestation = &verified.attestation;
        let tee = match attestation.tee {
            TeeKind::SevSnp => "AMD SEV-SNP",
            TeeKind::Tdx => "Intel TDX",
            TeeKind::Simulated => "SIMULATED (no hardware protection)",
        };
        self.say(&format!("attestation passed before sending: TEE {tee}"));
        self.say(&format!("  launch measurement {}", hex::encode(attestation.launch_measurement)));
        self.say(&format!("  release manifest   {}", attestation.manifest_digest));
        if let Some(platform) = &attestation.platform {
            self.say(&format!(
                "  AMD {} at TCB {} (at least {} required), VMPL {}",
                platform.product, platform.reported_tcb, platform.minimum_tcb, platform.vmpl
            ));
        }
        if let Some((view, entry)) = ledger_entry(view, attestation.manifest_digest) {
            self.say(&format!(
                "  = ledger entry {} (source {}), under checkpoint size {}",
                entry.index, entry.record.source_revision, view.checkpoint.size
            ));
        }
    }

    /// The releases proven in the ledger: the view checked before while its checkpoint is fresh
    /// (and `refresh` is not asked), else checked anew. `None` without a ledger.
    async fn trusted_view(&self, refresh: bool) -> Result<Option<TrustedView>, DeviceError> {
        let Some(ledger) = &self.ledger else {
            self.say(
                "WARNING: no transparency ledger configured; trusting the releases pinned in the config",
            );
            return Ok(None);
        };
        let held = self.view.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some((view, until)) = held.filter(|_| !refresh) {
            if let Some(left) = until.checked_duration_since(Instant::now()) {
                self.say(&format!(
                    "transparency ledger: reusing the view of checkpoint size {} (fresh for {} s more); releases {} only",
                    view.checkpoint.size,
                    left.as_secs(),
                    release_indexes(&view)
                ));
                return Ok(Some(TrustedView { view, reused: true }));
            }
        }
        let settings = ledger.settings();
        self.say(&format!(
            "checking the transparency ledger {} (checkpoint from {} mirror(s))…",
            settings.origin,
            settings.checkpoint_urls.len()
        ));
        let view = Arc::new(ledger.current().await?);
        let checkpoint = &view.checkpoint;
        self.say(&format!(
            "  checkpoint size {} signed by the log, cosigned by {} of {} required witnesses ({}), consistent with the last one seen",
            checkpoint.size,
            checkpoint.witnesses.len(),
            settings.quorum,
            checkpoint.witnesses.join(", ")
        ));
        self.say(&format!(
            "  releases {} proven included; only these may serve this device",
            release_indexes(&view)
        ));
        let until = Instant::now() + view.fresh_for;
        *self.view.lock().unwrap_or_else(|p| p.into_inner()) = Some((view.clone(), until));
        Ok(Some(TrustedView { view, reused: false }))
    }

    /// One token from the wallet, asking the issuer for a batch when it runs low.
    async fn take_token(&self, now: u64) -> Result<SpendableToken, DeviceError> {
        let supply = &self.tokens;
        if supply.count().await? == 0 {
            self.say(
                "no anonymous token left; asking the issuer for a batch (blinded: it cannot recognize them \
                 later), then waiting a few seconds before spending one (so issuance and spending \
                 cannot be matched by their timing)…",
            );
        }
        let token = supply.take(now).await?;
        let left = supply.count().await?;
        let coming = if supply.refilling() { "; a new batch is on its way" } else { " on this device" };
        self.say(&format!("spending one anonymous token ({left} left{coming})"));
        Ok(token)
    }

    /// Waits for work the device does in the background (a token batch on its way); a program
    /// about to exit calls it so that the batch is kept.
    pub async fn settle(&self) -> Result<(), DeviceError> {
        Ok(self.tokens.settled().await?)
    }

    /// The platform policy, the simulated-TEE opt-in and any releases pinned in the config.
    fn pinned_reference_values(&self) -> Result<ReferenceValues, DeviceError> {
        if self.config.launch_measurements.len() != self.config.manifest_digests.len() {
            return Err(DeviceError::BadConfig(
                "pinned releases: as many launch measurements as manifest digests, pairwise".into(),
            ));
        }
        let launch_measurements =
            self.config
                .launch_measurements
                .iter()
                .map(|m| {
                    hex::decode(m).ok().and_then(|b| <[u8; 48]>::try_from(b).ok()).ok_or_else(|| {
                        DeviceError::BadConfig("a launch measurement is 48 bytes of hex".into())
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
        let accept_simulated_insecure = match &self.config.accept_simulated_insecure_root {
            Some(root) => {
                self.say("WARNING: this device accepts SIMULATED evidence (insecure, development only)");
                let root = hex::decode(root)
                    .map_err(|_| DeviceError::BadConfig("the simulated root is not hex".into()))?;
                Some(SimulatedRootPublic(root))
            }
            None => None,
        };
        let releases = launch_measurements
            .into_iter()
            .zip(&self.config.manifest_digests)
            .map(|(launch_measurement, &manifest_digest)| Release { launch_measurement, manifest_digest })
            .collect();
        Ok(ReferenceValues { releases, platform: self.platform, accept_simulated_insecure })
    }
}

/// How long the device waits before its one retry after the relay or gateway failed.
const TRANSPORT_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// A failure that a fresh session may not meet: the token was refused as spent or under a
/// retired key; the host went away mid-request (the gateway routes the new session to another)
/// or no longer knows the session (it or the gateway restarted: the request was not processed);
/// the relay could not be reached or the gateway behind it did not answer (after a pause: the
/// features keep no state, so a request that did reach a host is only computed twice); or the
/// host runs a release newer than the ledger view this device reused (the view is checked anew
/// for the retry).
fn worth_one_retry(error: &SessionError, trusted: Option<&TrustedView>) -> bool {
    match error {
        SessionError::Transport(TransportError::RelayUnreachable { .. }) => true,
        SessionError::Transport(TransportError::RelayRefused { status, .. }) => (502..=504).contains(status),
        SessionError::TokenRefused(refusal) => {
            matches!(refusal, Refusal::Spent | Refusal::UnknownKey | Refusal::ExpiredKey)
        }
        SessionError::Host { status, .. } => *status >= 500 || *status == 404,
        // Nothing was shown yet: as good as an answer lost on the way.
        SessionError::AnswerCut { pieces: 0, .. } => true,
        SessionError::Attestation(
            AttestationError::UnknownLaunchMeasurement(_) | AttestationError::UnknownManifest(_),
        ) => trusted.is_some_and(|trusted| trusted.reused),
        _ => false,
    }
}

/// The pinned values, with the ledger's releases as the only accepted ones when there is a ledger.
fn reference_values(pinned: &ReferenceValues, trusted: Option<&TrustedView>) -> ReferenceValues {
    let mut reference = pinned.clone();
    if let Some(TrustedView { view, .. }) = trusted {
        // Pairs from one record each: a measurement is accepted only with its own manifest.
        reference.releases = view
            .releases
            .iter()
            .map(|r| Release {
                launch_measurement: r.launch_measurement,
                manifest_digest: r.record.manifest_digest,
            })
            .collect();
    }
    reference
}

/// The features of the newest release in `view`, from its manifest.
fn features_of(view: &ReleaseView) -> Result<Vec<Descriptor>, DeviceError> {
    let newest = view.releases.iter().max_by_key(|r| r.index).ok_or(DeviceError::NoFeatureList)?;
    let policy: ReleasePolicy = serde_json::from_value(newest.record.manifest.clone())
        .map_err(|e| DeviceError::BadManifest(e.to_string()))?;
    Ok(policy.features.into_values().map(|f| f.descriptor).collect())
}

/// Whether `request` fits its feature as the ledger-proven release describes it.
fn check_request(view: &ReleaseView, request: &FeatureRequest) -> Result<(), DeviceError> {
    let features = features_of(view)?;
    let descriptor =
        features.iter().find(|d| d.name == request.feature).ok_or_else(|| DeviceError::UnknownFeature {
            feature: request.feature.chars().take(40).collect(),
            served: features.iter().map(|d| d.name.clone()).collect(),
        })?;
    Ok(request.check(descriptor)?)
}

fn release_indexes(view: &ReleaseView) -> String {
    view.releases.iter().map(|r| r.index.to_string()).collect::<Vec<_>>().join(", ")
}

fn ledger_entry(
    view: Option<&ReleaseView>,
    manifest: Sha256,
) -> Option<(&ReleaseView, &crate::ledger::VerifiedRelease)> {
    let view = view?;
    Some((view, view.releases.iter().find(|r| r.record.manifest_digest == manifest)?))
}

/// What this request's receipt says was verified.
fn receipt(
    request: &FeatureRequest,
    verified: &Verified,
    view: Option<&ReleaseView>,
    token: &SpendableToken,
    relay: &str,
    retried: bool,
) -> Receipt {
    let attestation = &verified.attestation;
    let entry = ledger_entry(view, attestation.manifest_digest);
    let components = entry
        .and_then(|(_, entry)| serde_json::from_value::<ReleasePolicy>(entry.record.manifest.clone()).ok())
        .and_then(|policy| {
            policy.features.get(&request.feature).map(|f| vec![(f.component.clone(), f.sha256)])
        })
        .unwrap_or_default();
    Receipt {
        number: 0,
        time: pp_vocab::unix_now(),
        feature: request.feature.clone(),
        tee: match attestation.tee {
            TeeKind::SevSnp => "AMD SEV-SNP".into(),
            TeeKind::Tdx => "Intel TDX".into(),
            TeeKind::Simulated => "simulated".into(),
        },
        simulated: attestation.simulated,
        launch_measurement: hex::encode(attestation.launch_measurement),
        manifest_digest: attestation.manifest_digest,
        components,
        platform: attestation.platform.map(|platform| PlatformEvidence {
            product: platform.product,
            reported_tcb: platform.reported_tcb,
            minimum_tcb: platform.minimum_tcb,
            vmpl: platform.vmpl,
        }),
        ledger: entry.map(|(view, entry)| LedgerEvidence {
            origin: view.checkpoint.origin.clone(),
            entry: entry.index,
            source_revision: entry.record.source_revision.clone(),
            checkpoint_size: view.checkpoint.size,
            checkpoint_root: hex::encode(view.checkpoint.root.0),
            witnesses: view.checkpoint.witnesses.clone(),
        }),
        token_key_id: token.key_id.clone(),
        key_exchange: verified.key_exchange.clone(),
        relay: relay.into(),
        retried,
    }
}

#[cfg(test)]
mod platform_tests {
    use super::*;

    fn config(platform: &str) -> Result<DeviceConfig, DeviceError> {
        let dir = std::env::temp_dir().join(format!("pp-device-platform-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("device-{}.toml", Sha256::of(platform.as_bytes())));
        let toml = format!(
            "relay_url = \"http://127.0.0.1:9/\"\nkey_urls = []\n\n[tokens]\nissuer_url = \"http://127.0.0.1:9\"\n\
             directory_urls = []\naccount_credential = \"unused\"\nissuer_name = \"i\"\norigin_name = \"o\"\n\n{platform}"
        );
        std::fs::write(&file, toml).unwrap();
        DeviceConfig::load(&file)
    }

    #[test]
    fn finding_2_a_zero_floor_in_the_device_config_is_refused_naming_the_product() {
        let zero = "[platform.minimum_tcb.milan]\nbootloader = 3\ntee = 0\nsnp = 8\nmicrocode = 115\n\
                    [platform.minimum_tcb.genoa]\nbootloader = 0\ntee = 0\nsnp = 0\nmicrocode = 0\n";
        let state = std::env::temp_dir().join(format!("pp-device-platform-state-{}", std::process::id()));
        let error = Device::open(config(zero).unwrap(), &state).err().expect("refused");
        assert!(
            matches!(error, DeviceError::Platform(PlatformPolicyError::ZeroFloor(Product::Genoa))),
            "{error}"
        );
        assert!(error.to_string().contains("[platform]") && error.to_string().contains("Genoa"), "{error}");

        let good = "[platform]\nvmpl = 0\n[platform.minimum_tcb.turin]\nfmc = 1\nbootloader = 0\ntee = 0\nsnp = 0\nmicrocode = 9\n";
        let policy = config(good).unwrap().platform.policy().unwrap();
        assert_eq!(policy.minimum_tcb(Product::Turin).map(|floor| floor.fmc), Some(1));
        assert_eq!(policy.minimum_tcb(Product::Milan), None);
        // A misspelt key is an error, not a silently absent floor.
        assert!(config("[platform.minimum_tcb.milan]\nbootloader = 3\ntee = 0\nsnp = 8\nmicrocod = 115\n")
            .is_err());
    }
}

#[cfg(test)]
mod retry_tests {
    use super::*;

    #[test]
    fn a_cut_stream_is_retried_only_if_nothing_was_shown() {
        let cut = |pieces| SessionError::AnswerCut { pieces, why: "the connection closed".into() };
        assert!(worth_one_retry(&cut(0), None), "nothing shown: as good as a lost answer");
        assert!(!worth_one_retry(&cut(1), None), "a piece shown: the user saw part of an answer");
        let tampered = SessionError::AnswerTampered { pieces: 0, why: "a chunk did not open".into() };
        assert!(!worth_one_retry(&tampered, None), "tampering is not retried into");
    }
}
