//! Fault injection over real processes: `pp dev up --scripted` runs every party as its own
//! process; while devices send requests through it, each party in turn is killed (SIGKILL, as a
//! crash) and started again. Checked: every request ends in an answer or a clear, typed error
//! within a deadline; the system answers again after the last restart; no token is ever accepted
//! twice (a prober spends each of its tokens twice at once during the faults, and once more after
//! them); the ledger grows across its own and the witnesses' restarts and every checkpoint stays
//! consistent with the one a device saw before.

use pp_client::device::KeyExchange;
use pp_client::device::{Device, DeviceConfig, DeviceError};
use pp_client::ledger::LedgerClient;
use pp_client::session::{ClientHandshake, SessionError};
use pp_client::tokens::{SpendableToken, TokenError, TokenSupply};
use pp_client::transport::{InnerRequest, Transport, TransportConfig};
use pp_plaintext::ChatMessage;
use pp_vocab::session::{OPEN_PATH, SESSION_HEADER};
use pp_vocab::tokens::{Refusal, REFUSAL_HEADER};

mod dev_stack;
use dev_stack::RunningStack;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every party, in the order they are killed; after the marked ones a release is appended to
/// the ledger (so the witnesses must cosign with the state they kept).
const FAULTS: [(&str, bool); 9] = [
    ("relay", false),
    ("gateway", false),
    ("host-1", false),
    ("issuer", false),
    ("ledger", true),
    ("witness-1", true),
    ("keydir", false),
    ("host-2", false),
    ("witness-2", true),
];
const DEVICES: usize = 3;
const REQUEST_DEADLINE: Duration = Duration::from_secs(60);
/// Requests each device must have answered in a row after the last restart.
const RECOVERED_REQUESTS: usize = 3;
/// How long each killed party stays down: longer than the device's one retry (a pause of 1 s),
/// so requests in that window fail and the test sees which errors a restart causes.
const DOWN: Duration = Duration::from_millis(2_500);

/// A device's request: when it ended, and the restart-explained kind of its error (if any).
type Ending = (Instant, Option<&'static str>);

/// What the devices saw: each device's requests in order, errors by kind, and anything a
/// restart does not explain.
#[derive(Default)]
struct Tally {
    devices: Vec<Vec<Ending>>,
    errors: BTreeMap<&'static str, usize>,
    unexplained: Vec<String>,
}

impl Tally {
    fn count(
        &mut self,
        device: usize,
        result: Result<Result<pp_client::device::Outcome, DeviceError>, tokio::time::error::Elapsed>,
    ) {
        let kind = match result {
            Ok(Ok(_)) => None,
            Ok(Err(error)) => {
                let kind = restart_explains(&error).unwrap_or_else(|| {
                    self.unexplained.push(format!("{error:?}"));
                    "unexplained"
                });
                Some(kind)
            }
            Err(_) => {
                self.unexplained.push(format!("no answer or error within {REQUEST_DEADLINE:?}"));
                Some("deadline")
            }
        };
        if let Some(kind) = kind {
            *self.errors.entry(kind).or_default() += 1;
        }
        if self.devices.len() <= device {
            self.devices.resize(device + 1, Vec::new());
        }
        self.devices[device].push((Instant::now(), kind));
    }

    fn answered(&self) -> usize {
        self.devices.iter().flatten().filter(|(_, kind)| kind.is_none()).count()
    }

    /// Whether every device's last `k` requests ended after `since` with an answer.
    fn all_recovered(&self, since: Instant, k: usize) -> bool {
        self.devices.len() == DEVICES
            && self.devices.iter().all(|requests| {
                requests.len() >= k
                    && requests[requests.len() - k..].iter().all(|(at, kind)| *at > since && kind.is_none())
            })
    }
}

/// The failure a party's restart explains, by kind: it was unreachable, answered 5xx or was
/// busy, or its witnesses' quorum was briefly unmet. Anything else — a split view, a rollback,
/// a bad signature, a malformed answer, a key mismatch, attestation, TLS, a spent token — is a
/// bug, whatever the faults.
fn restart_explains(error: &DeviceError) -> Option<&'static str> {
    use pp_client::ledger::LedgerClientError;
    use pp_client::transport::TransportError;
    use pp_vocab::ledger::LedgerError;
    fn transport(error: &TransportError) -> Option<&'static str> {
        match error {
            TransportError::KeyDirectoryUnreachable { .. } => Some("key directory unreachable"),
            TransportError::RelayUnreachable { .. } => Some("relay unreachable"),
            TransportError::RelayRefused { status: 500.., .. } => Some("relay 5xx (gateway down)"),
            TransportError::GatewayRefused { status: 500.., .. } => Some("gateway 5xx (host down)"),
            _ => None,
        }
    }
    match error {
        DeviceError::Transport(error) | DeviceError::Session(SessionError::Transport(error)) => {
            transport(error)
        }
        DeviceError::Session(SessionError::Host { status: 500.., .. }) => Some("host 5xx"),
        DeviceError::Ledger(LedgerClientError::Unreachable { .. }) => Some("ledger unreachable"),
        DeviceError::Ledger(LedgerClientError::Ledger(LedgerError::Quorum { .. })) => {
            Some("witness quorum briefly unmet")
        }
        DeviceError::Tokens(TokenError::IssuerUnreachable { .. }) => Some("issuer unreachable"),
        DeviceError::Tokens(TokenError::DirectoryUnreachable { .. }) => Some("token directory unreachable"),
        DeviceError::Tokens(TokenError::IssuerRefused { status: 500.., .. }) => Some("issuer 5xx"),
        _ => None,
    }
}

async fn device_loop(
    index: usize,
    config: DeviceConfig,
    state: PathBuf,
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
) {
    let _ = std::fs::remove_dir_all(&state);
    let mut device = Device::open(config, &state).unwrap();
    device.opt_in().unwrap();
    let chat = vec![
        ChatMessage { author: "Maya".into(), text: "Picnic on Saturday at 11 by the big oak?".into() },
        ChatMessage { author: "Sam".into(), text: "Yes, I'll bring lemonade.".into() },
    ];
    while !stop.load(Ordering::Relaxed) {
        let result = tokio::time::timeout(REQUEST_DEADLINE, device.summarize(None, chat.clone())).await;
        tally.lock().unwrap().count(index, result);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the gateway let a session open with `token` (through the relay, like a device).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opening {
    Accepted,
    Refused(Refusal),
    /// The relay, gateway or host did not give an answer (it was down).
    NoAnswer,
}

async fn open_with(transport: &Transport, token: &SpendableToken) -> Opening {
    let (_handshake, opening) = ClientHandshake::start(KeyExchange::PostQuantum).unwrap();
    let request = InnerRequest {
        path: OPEN_PATH.into(),
        headers: vec![
            (SESSION_HEADER.into(), hex::encode(rand::random::<[u8; 16]>())),
            ("authorization".into(), token.authorization.clone()),
        ],
        body: opening,
    };
    match transport.send(&request).await {
        Ok(answer) => match answer.header(REFUSAL_HEADER).and_then(Refusal::from_word) {
            Some(refusal) => Opening::Refused(refusal),
            None if answer.status == 200 => Opening::Accepted,
            None => Opening::NoAnswer,
        },
        Err(_) => Opening::NoAnswer,
    }
}

/// Spends each token twice at once while the faults happen; returns every token sent and how
/// often it was accepted.
async fn double_spender(
    config: DeviceConfig,
    state: PathBuf,
    stop: Arc<AtomicBool>,
) -> Vec<(SpendableToken, usize)> {
    let _ = std::fs::remove_dir_all(&state);
    let transport = transport(&config);
    let supply = TokenSupply::new(config.tokens.clone(), &state);
    let mut sent = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let Ok(token) = supply.take(pp_vocab::unix_now()).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let (first, second) = tokio::join!(open_with(&transport, &token), open_with(&transport, &token));
        let accepted = [first, second].iter().filter(|o| **o == Opening::Accepted).count();
        sent.push((token, accepted));
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    sent
}

fn transport(config: &DeviceConfig) -> Transport {
    Transport::new(TransportConfig {
        relay_url: config.relay_url.clone(),
        key_urls: config.key_urls.clone(),
        local_address: None,
        timeout: REQUEST_DEADLINE,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_party_killed_in_turn_the_stack_recovers_and_no_token_is_accepted_twice() {
    let running = RunningStack::up("faults");
    let stack = running.0.clone();
    let config = stack.config();
    let ledger_settings = config.ledger.clone().unwrap();
    let watcher_state = stack.dir.join("ledger-watcher");
    let watcher = LedgerClient::new(ledger_settings.clone(), &watcher_state).unwrap();
    let before = watcher.current().await.expect("the ledger view before the faults").checkpoint.size;

    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let devices: Vec<_> = (0..DEVICES)
        .map(|i| {
            let state = stack.dir.join(format!("device-{i}"));
            tokio::spawn(device_loop(i, config.clone(), state, tally.clone(), stop.clone()))
        })
        .collect();
    let spender = tokio::spawn(double_spender(config.clone(), stack.dir.join("prober"), stop.clone()));

    let mut appended = 0;
    for (party, then_append) in FAULTS {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let handle = stack.clone();
        let down_ms = DOWN.as_millis().to_string();
        tokio::task::spawn_blocking(move || handle.pp(&["restart", party, "--down-ms", &down_ms]))
            .await
            .unwrap();
        eprintln!("faults: {party} killed and restarted");
        if then_append {
            let (handle, revision) = (stack.clone(), format!("fault-test-{appended}"));
            tokio::task::spawn_blocking(move || handle.append_release(&revision)).await.unwrap();
            appended += 1;
        }
    }
    let last_restart = Instant::now();
    let during = tally.lock().unwrap().answered();

    // Recovered: every device's last requests after the last restart were all answered.
    let recovery_deadline = last_restart + Duration::from_secs(30);
    while !tally.lock().unwrap().all_recovered(last_restart, RECOVERED_REQUESTS) {
        assert!(Instant::now() < recovery_deadline, "the devices did not all recover within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for device in devices {
        device.await.unwrap();
    }
    let sent = spender.await.unwrap();

    {
        let tally = tally.lock().unwrap();
        eprintln!(
            "faults: {} answered ({during} by the end of the faults), errors by kind: {:#?}",
            tally.answered(),
            tally.errors
        );
        assert!(tally.unexplained.is_empty(), "failures no restart explains: {:#?}", tally.unexplained);
        assert!(
            tally.all_recovered(last_restart, RECOVERED_REQUESTS),
            "a device failed after the last restart"
        );
    }
    assert!(during > 0, "nothing was answered while the parties were restarted");
    let failed: usize = tally.lock().unwrap().errors.values().sum();
    assert!(failed > 0, "no outage reached a request: the error criteria checked nothing");

    // No token accepted twice: not at once during the faults, nor again after them.
    let transport = transport(&config);
    let mut replayed = 0;
    for (token, accepted) in &sent {
        assert!(*accepted <= 1, "a token was accepted twice at once");
        let again = open_with(&transport, token).await;
        assert_ne!(again, Opening::NoAnswer, "the stack did not answer a replayed token");
        if *accepted == 1 {
            assert_eq!(
                again,
                Opening::Refused(Refusal::Spent),
                "a token was accepted again after the faults"
            );
            replayed += 1;
        }
    }
    eprintln!(
        "faults: {} tokens spent twice at once, {replayed} accepted once and refused after",
        sent.len()
    );
    assert!(replayed > 0, "the prober got no token accepted: nothing was checked");

    // The ledger kept every entry and every checkpoint extends the one seen before the faults
    // (`current` checks the consistency proof and the quorum of both witnesses).
    let view = watcher.current().await.expect("the ledger view after the faults");
    assert_eq!(view.checkpoint.size, before + appended, "the ledger lost or gained entries");
    assert_eq!(view.checkpoint.witnesses.len(), 2, "both witnesses cosign after their restarts");
}
