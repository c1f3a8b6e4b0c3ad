//! `pp dev up` / `pp dev down`: every party of the pipeline as its own process on loopback —
//! key directory, token issuer, two witnesses, the ledger, two hosts with the simulated TEE and
//! the real model, the gateway and the relay — with development keys made on first start in a
//! state directory, and this release recorded in the ledger. Run from the repository root,
//! after `cargo build --workspace --bins` and `scripts/build-components`.

use anyhow::{bail, Context, Result};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The `[platform]` table of the dev stack's device.toml. Its hosts run the simulated TEE, which
/// no TCB floor applies to; the floors only show the form (Milan's and Turin's are the TCB of the
/// real Milan report and Turin VCEK in testdata/attestation, Genoa's a placeholder). A real
/// device ships AMD's current values, from its security bulletins.
const PLATFORM: &str = "[platform]\nvmpl = 0\n\
    [platform.minimum_tcb.milan]\nbootloader = 3\ntee = 0\nsnp = 8\nmicrocode = 115\n\
    [platform.minimum_tcb.genoa]\nbootloader = 7\ntee = 0\nsnp = 14\nmicrocode = 72\n\
    [platform.minimum_tcb.turin]\nfmc = 0\nbootloader = 0\ntee = 0\nsnp = 0\nmicrocode = 9\n";

const ISSUER_NAME: &str = "issuer.pp.localhost";
const ORIGIN_NAME: &str = "gateway.pp.localhost";
const LEDGER_ORIGIN: &str = "ledger.pp.localhost/releases";

/// The loopback ports of the development stack: the relay on the base port, the others after it.
struct Ports {
    relay: u16,
    gateway: u16,
    keydir: u16,
    issuer: u16,
    ledger: u16,
    witnesses: [u16; 2],
    hosts: [u16; 2],
}

/// The base port unless `--base-port` says otherwise.
pub const DEFAULT_BASE_PORT: u16 = 18080;

impl Ports {
    fn from_base(base: u16) -> Self {
        Ports {
            relay: base,
            gateway: base + 1,
            keydir: base + 2,
            issuer: base + 3,
            ledger: base + 4,
            witnesses: [base + 5, base + 6],
            hosts: [base + 11, base + 12],
        }
    }

    /// The port a service listens on.
    fn of(&self, name: &str) -> u16 {
        match name {
            "relay" => self.relay,
            "gateway" => self.gateway,
            "keydir" => self.keydir,
            "issuer" => self.issuer,
            "ledger" => self.ledger,
            "witness-1" => self.witnesses[0],
            "witness-2" => self.witnesses[1],
            "host-1" => self.hosts[0],
            _ => self.hosts[1],
        }
    }

    fn all(&self) -> Vec<u16> {
        let mut ports = vec![self.relay, self.gateway, self.keydir, self.issuer, self.ledger];
        ports.extend(self.witnesses);
        ports.extend(self.hosts);
        ports
    }
}

/// The stack's state directory and where the binaries are.
pub struct Stack {
    pub state: PathBuf,
    bin: PathBuf,
    /// Hosts answer with a canned reply instead of the model (load tests of the path itself).
    scripted: bool,
    ports: Ports,
}

impl Stack {
    /// The stack in `state`. Its configs name its ports, so a state directory keeps the base port
    /// it was made with; `base_port` only chooses it for a new one.
    pub fn new(state: PathBuf, scripted: bool, base_port: Option<u16>) -> Result<Self> {
        let bin = std::env::current_exe()?.parent().context("the pp binary has no directory")?.to_path_buf();
        for needed in [
            "pp-keydir",
            "pp-issuer",
            "pp-witness",
            "pp-ledger",
            "pp-host",
            "pp-host-dev",
            "pp-gateway",
            "pp-relay",
        ] {
            if !bin.join(needed).exists() {
                bail!(
                    "{needed} is not built next to pp ({}): run `cargo build --workspace --bins` first",
                    bin.display()
                );
            }
        }
        if !Path::new("policies/release.toml").exists() || !Path::new("target/components").exists() {
            bail!("run pp dev from the repository root, after `scripts/build-components`");
        }
        let made_with =
            std::fs::read_to_string(state.join("base-port")).ok().and_then(|p| p.trim().parse().ok());
        let base = match (made_with, base_port) {
            (Some(made), Some(asked)) if made != asked => {
                bail!("{} was made for base port {made}, not {asked}: use another --dir", state.display())
            }
            (Some(made), _) => made,
            (None, asked) => asked.unwrap_or(DEFAULT_BASE_PORT),
        };
        if base > u16::MAX - 12 {
            bail!("the base port {base} leaves no room for the 12 ports after it");
        }
        Ok(Stack { state, bin, scripted, ports: Ports::from_base(base) })
    }

    /// The device config `pp dev up` writes.
    pub fn device_config(&self) -> PathBuf {
        self.state.join("device.toml")
    }

    fn pids(&self) -> PathBuf {
        self.state.join("pids")
    }

    pub fn is_up(&self) -> bool {
        self.running().is_some_and(|pids| !pids.is_empty())
    }

    /// The processes recorded by the last `up` that are still alive.
    pub fn running(&self) -> Option<Vec<(String, u32)>> {
        let alive = self
            .recorded()?
            .into_iter()
            .map(|(name, pid, _)| (name, pid))
            .filter(|(_, pid)| alive(*pid))
            .collect();
        Some(alive)
    }

    /// Every service started: name, pid, command line (tab-separated lines of `pids`).
    fn recorded(&self) -> Option<Vec<(String, u32, Vec<String>)>> {
        let text = std::fs::read_to_string(self.pids()).ok()?;
        let services = text
            .lines()
            .filter_map(|line| {
                let mut fields = line.split('\t');
                let name = fields.next()?.to_string();
                let pid = fields.next()?.parse().ok()?;
                Some((name, pid, fields.map(str::to_string).collect()))
            })
            .collect();
        Some(services)
    }

    fn save_recorded(&self, services: &[(String, u32, Vec<String>)]) -> Result<()> {
        let lines: Vec<String> =
            services.iter().map(|(name, pid, args)| format!("{name}\t{pid}\t{}", args.join("\t"))).collect();
        Ok(std::fs::write(self.pids(), lines.join("\n") + "\n")?)
    }

    /// Kills one service as a crash would (SIGKILL), leaves it down for `down`, starts it again
    /// with the same command line and waits until it listens: fault injection for load tests.
    pub fn restart(&self, name: &str, down: Duration) -> Result<()> {
        let mut services = self.recorded().context("the stack is not up")?;
        let service =
            services.iter_mut().find(|(n, _, _)| n == name).with_context(|| format!("no service {name}"))?;
        let _ = Command::new("kill").args(["-9", &service.1.to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(service.1) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(down);
        let args: Vec<&str> = service.2.iter().map(String::as_str).collect();
        service.1 = self.spawn(name, &args)?;
        self.save_recorded(&services)?;
        self.wait_for(&[self.ports.of(name)])
    }

    /// Starts every party; on any failure stops what it started, so nothing is left half-up.
    pub fn up(&self) -> Result<()> {
        let result = self.start_all();
        if result.is_err() && self.running().is_some() {
            let _ = self.down();
        }
        result
    }

    fn start_all(&self) -> Result<()> {
        if self.is_up() {
            eprintln!(
                "pp dev: the stack is already up (state in {}); `pp dev down` stops it",
                self.state.display()
            );
            return Ok(());
        }
        for port in self.ports.all() {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                bail!("port {port} is in use: stop what runs there (or `pp dev down`) first");
            }
        }
        std::fs::create_dir_all(&self.state)?;
        if !self.device_config().exists() {
            eprintln!(
                "pp dev: first start: making development keys and configs in {}…",
                self.state.display()
            );
            self.make_keys_and_configs()?;
        }
        let mut services = Vec::new();
        let mut start = |name: &str, args: &[&str]| -> Result<()> {
            let pid = self.spawn(name, args)?;
            eprintln!("pp dev: started {name} (pid {pid}, log {})", self.log(name).display());
            services.push((name.to_string(), pid, args.iter().map(|a| a.to_string()).collect()));
            self.save_recorded(&services)
        };
        let config = |name: &str| self.state.join(name).display().to_string();
        start("keydir", &["pp-keydir", "--config", &config("keydir.toml")])?;
        start("issuer", &["pp-issuer", "serve", "--config", &config("issuer.toml")])?;
        start("witness-1", &["pp-witness", "serve", "--config", &config("witness-1.toml")])?;
        start("witness-2", &["pp-witness", "serve", "--config", &config("witness-2.toml")])?;
        self.wait_for(&[self.ports.witnesses[0], self.ports.witnesses[1]])?;
        start("ledger", &["pp-ledger", "serve", "--config", &config("ledger.toml")])?;
        let root = config("simulated-root.key");
        let policy = self.policy().display().to_string();
        if self.scripted {
            // The manifest a scripted host attests names the backend `scripted`; the ledger
            // records that one (written anew each start, so it follows the release policy).
            self.run(&[
                "pp-host-dev",
                "scripted-policy",
                "--policy",
                "policies/release.toml",
                "--out",
                &policy,
            ])?;
        }
        let model_dir = model_dir().display().to_string();
        for (index, port) in self.ports.hosts.iter().enumerate() {
            let listen = format!("127.0.0.1:{port}");
            let name = format!("host-{}", index + 1);
            // Scripted replies are only in the developer binary, whose launch measurement is
            // its own: a device pinned to the real release refuses it.
            let mut args = if self.scripted {
                vec![
                    "pp-host-dev",
                    "serve",
                    "--scripted",
                    "--reply=- (scripted) the picnic is on Saturday at 11",
                ]
            } else {
                vec!["pp-host", "serve", "--attester", "simulated", "--model-dir", &model_dir]
            };
            args.extend(["--policy", &policy, "--components", "target/components"]);
            args.extend(["--listen", &listen, "--simulated-root", &root]);
            start(&name, &args)?;
        }
        eprintln!(
            "pp dev: the hosts load and check {} and the components…",
            if self.scripted { "SCRIPTED replies (no model)" } else { "the model" }
        );
        self.wait_for(&[
            self.ports.keydir,
            self.ports.issuer,
            self.ports.ledger,
            self.ports.hosts[0],
            self.ports.hosts[1],
        ])?;
        self.record_release()?;
        start("gateway", &["pp-gateway", "serve", "--config", &config("gateway.toml")])?;
        start("relay", &["pp-relay", "--config", &config("relay.toml")])?;
        self.wait_for(&[self.ports.gateway, self.ports.relay])?;
        self.print_map();
        Ok(())
    }

    pub fn down(&self) -> Result<()> {
        let Some(running) = self.running() else {
            eprintln!("pp dev: nothing to stop (no stack was started from {})", self.state.display());
            return Ok(());
        };
        for (name, pid) in running.iter().rev() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            eprintln!("pp dev: stopped {name} (pid {pid})");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while running.iter().any(|(_, pid)| alive(*pid)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::remove_file(self.pids())?;
        eprintln!("pp dev: down; keys, ledger and logs stay in {}", self.state.display());
        Ok(())
    }

    /// The policy the hosts serve: the release's, or its scripted form.
    fn policy(&self) -> PathBuf {
        if self.scripted {
            self.state.join("release-scripted.toml")
        } else {
            PathBuf::from("policies/release.toml")
        }
    }

    /// The host binary: the attested one, or the developer tools for scripted replies.
    fn host_binary(&self) -> &'static str {
        if self.scripted {
            "pp-host-dev"
        } else {
            "pp-host"
        }
    }

    fn log(&self, name: &str) -> PathBuf {
        self.state.join(format!("{name}.log"))
    }

    /// Starts a service in its own process group (a Ctrl-C meant for `pp` does not reach it).
    fn spawn(&self, name: &str, args: &[&str]) -> Result<u32> {
        use std::os::unix::process::CommandExt;
        // Appended to: a restarted service's log follows the one it had before.
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log(name))?;
        let mut command = Command::new(self.bin.join(args[0]));
        if name.starts_with("host-") {
            // Two hosts share this machine's cores (each has its own CVM in production): OpenMP's
            // spinning workers would starve each other, so they spin only briefly before sleeping.
            command.env("GOMP_SPINCOUNT", "20000");
        }
        let child = command
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(child.id())
    }

    /// Runs a tool to completion and returns what it printed on stdout.
    fn run(&self, args: &[&str]) -> Result<String> {
        let output = Command::new(self.bin.join(args[0])).args(&args[1..]).output()?;
        if !output.status.success() {
            bail!("{} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(String::from_utf8(output.stdout)?.trim().to_string())
    }

    /// Appends this release to the ledger unless its latest entry already is it.
    fn record_release(&self) -> Result<()> {
        let policy = self.policy().display().to_string();
        let values = self.run(&[self.host_binary(), "reference-values", "--policy", &policy])?;
        let value = |key: &str| {
            values
                .lines()
                .find_map(|line| line.strip_prefix(key).map(|v| v.trim().to_string()))
                .unwrap_or_default()
        };
        let (measurement, manifest) = (value("launch-measurement"), value("manifest-digest"));
        let recorded = std::fs::read_to_string(self.state.join("recorded-release")).unwrap_or_default();
        if recorded.trim() == format!("{measurement} {manifest}") {
            eprintln!("pp dev: this release is already in the ledger");
            return Ok(());
        }
        let revision = Command::new("git")
            .args(["rev-parse", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        // Receipts show the source revision: say there what this entry serves.
        let revision = if self.scripted {
            format!("{revision} (pp-host-dev: SCRIPTED replies, no model)")
        } else {
            revision
        };
        eprintln!("pp dev: recording this release in the ledger (the witnesses cosign the new checkpoint)…");
        let ledger = format!("http://127.0.0.1:{}", self.ports.ledger);
        self.run(&[
            "pp-ledger",
            "release",
            "--ledger",
            &ledger,
            "--launch-measurement",
            &measurement,
            "--policy",
            &policy,
            "--source-revision",
            &revision,
        ])?;
        std::fs::write(self.state.join("recorded-release"), format!("{measurement} {manifest}\n"))?;
        Ok(())
    }

    fn print_map(&self) {
        let p = &self.ports;
        eprintln!("pp dev: up. On 127.0.0.1:");
        eprintln!(
            "  relay :{} → gateway :{} → hosts :{} :{} (simulated TEE, {})",
            p.relay,
            p.gateway,
            p.hosts[0],
            p.hosts[1],
            if self.scripted { "scripted replies" } else { "real model" }
        );
        eprintln!(
            "  key directory :{}   token issuer :{}   ledger :{}   witnesses :{} :{}",
            p.keydir, p.issuer, p.ledger, p.witnesses[0], p.witnesses[1]
        );
        eprintln!("  logs and keys in {}", self.state.display());
        eprintln!(
            "  device: pp --config {} summarize examples/picnic-chat.txt",
            self.device_config().display()
        );
    }

    /// Development keys for every party, and every config, on first start.
    fn make_keys_and_configs(&self) -> Result<()> {
        let s = |path: &str| self.state.join(path).display().to_string();
        for dir in ["issuer", "gateway", "ledger", "witness-1", "witness-2", "keydir"] {
            std::fs::create_dir_all(self.state.join(dir))?;
        }
        let p = &self.ports;
        std::fs::write(self.state.join("base-port"), format!("{}\n", p.relay))?;
        let keydir = s("keydir");
        self.run(&[
            "pp-gateway",
            "keys",
            "init",
            "--keys-file",
            &s("gateway-keys.toml"),
            "--publish",
            &keydir,
        ])?;
        self.write("issuer.toml", &format!(
            "listen = \"127.0.0.1:{}\"\nname = \"{ISSUER_NAME}\"\nrequest_uri = \"http://127.0.0.1:{}/token-request\"\n\
             keys_file = \"{}\"\npublish_dir = \"{keydir}\"\naccounts_file = \"{}\"\nquota_file = \"{}\"\n\
             # Development: a quota no load test runs into.\ntokens_per_window = 10000000\n",
            p.issuer, p.issuer, s("issuer/keys.json"), s("issuer/accounts.toml"), s("issuer/quota.redb")
        ))?;
        self.run(&["pp-issuer", "keys", "init", "--config", &s("issuer.toml")])?;
        let credential = self.run(&[
            "pp-issuer",
            "add-account",
            "--accounts-file",
            &s("issuer/accounts.toml"),
            "--name",
            "dev-user",
        ])?;
        let root = self.run(&["pp-host-dev", "simulated-root", "--out", &s("simulated-root.key")])?;
        let witness_urls: Vec<String> =
            p.witnesses.iter().map(|port| format!("\"http://127.0.0.1:{port}\"")).collect();
        self.write(
            "ledger.toml",
            &format!(
            "listen = \"127.0.0.1:{}\"\norigin = \"{LEDGER_ORIGIN}\"\nkey_file = \"{}\"\ndata_dir = \"{}\"\n\
             publish_dir = \"{keydir}\"\ntiles_dir = \"{}\"\nwitnesses = [{}]\n",
            p.ledger, s("ledger/log.key"), s("ledger/data"), s("ledger/tiles"), witness_urls.join(", ")
        ),
        )?;
        let log_vkey = self.run(&["pp-ledger", "init", "--config", &s("ledger.toml")])?;
        let mut witness_vkeys = Vec::new();
        for (index, port) in p.witnesses.iter().enumerate() {
            let n = index + 1;
            let file = format!("witness-{n}.toml");
            self.write(&file, &format!(
                "listen = \"127.0.0.1:{port}\"\nname = \"witness-{n}.pp.localhost\"\nkey_file = \"{}\"\nstate_file = \"{}\"\n\n\
                 [[logs]]\norigin = \"{LEDGER_ORIGIN}\"\nvkey = \"{log_vkey}\"\n",
                s(&format!("witness-{n}/witness.key")), s(&format!("witness-{n}/state.json"))
            ))?;
            witness_vkeys.push(format!("\"{}\"", self.run(&["pp-witness", "init", "--config", &s(&file)])?));
        }
        self.write("keydir.toml", &format!("listen = \"127.0.0.1:{}\"\ndir = \"{keydir}\"\n", p.keydir))?;
        let hosts: Vec<String> = p.hosts.iter().map(|port| format!("\"http://127.0.0.1:{port}\"")).collect();
        self.write("gateway.toml", &format!(
            "listen = \"127.0.0.1:{}\"\nkeys_file = \"{}\"\npublish_dir = \"{keydir}\"\nhosts = [{}]\n\n[tokens]\n\
             issuer_name = \"{ISSUER_NAME}\"\norigin_name = \"{ORIGIN_NAME}\"\n\
             # The issuer's keys from the issuer itself, never from the key directory.\n\
             issuer_directory = \"http://127.0.0.1:{}{}\"\nspent_store = \"{}\"\n",
            p.gateway,
            s("gateway-keys.toml"),
            hosts.join(", "),
            p.issuer,
            pp_vocab::tokens::DIRECTORY_PATH,
            s("gateway/spent-tokens.redb")
        ))?;
        self.write(
            "relay.toml",
            &format!(
                "listen = \"127.0.0.1:{}\"\ngateway_url = \"http://127.0.0.1:{}/gateway\"\n\
                 # Development: every device here shares one address, so no per-address limit.\n\
                 requests_per_minute = 100000000\n",
                p.relay, p.gateway
            ),
        )?;
        self.write("device.toml", &format!(
            "relay_url = \"http://127.0.0.1:{relay}/\"\nkey_urls = [\"http://127.0.0.1:{keydir_port}/ohttp-keys\"]\n\
             # INSECURE, development only: this machine has no SEV-SNP, so the hosts run the simulated TEE.\n\
             accept_simulated_insecure_root = \"{root}\"\n\n\
             # Tokens are refilled on a timer, apart from requests; none is spent within\n\
             # decorrelation_ms (default 5000) of an issuance, so a request that finds the wallet\n\
             # empty (the first one) waits 5-10 s.\n\
             [tokens]\nissuer_url = \"http://127.0.0.1:{issuer}\"\n\
             directory_urls = [\"http://127.0.0.1:{keydir_port}/token-issuer-directory\"]\n\
             account_credential = \"{credential}\"\nissuer_name = \"{ISSUER_NAME}\"\norigin_name = \"{ORIGIN_NAME}\"\n\n\
             [ledger]\nledger_url = \"http://127.0.0.1:{ledger}\"\n\
             checkpoint_urls = [\"http://127.0.0.1:{keydir_port}/checkpoint\"]\norigin = \"{LEDGER_ORIGIN}\"\n\
             log_vkey = \"{log_vkey}\"\nwitness_vkeys = [{witnesses}]\nquorum = 2\n\n{PLATFORM}",
            relay = p.relay,
            keydir_port = p.keydir,
            issuer = p.issuer,
            ledger = p.ledger,
            witnesses = witness_vkeys.join(", ")
        ))?;
        Ok(())
    }

    /// Waits (up to 120 s: hosts load the model first) until something listens on every port;
    /// a service that exits meanwhile is an error naming its log.
    fn wait_for(&self, ports: &[u16]) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let started = std::fs::read_to_string(self.pids()).unwrap_or_default().lines().count();
        for &port in ports {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                let alive = self.running().unwrap_or_default();
                if alive.len() < started {
                    let text = std::fs::read_to_string(self.pids()).unwrap_or_default();
                    let dead = text
                        .lines()
                        .filter_map(|l| l.split_once('\t'))
                        .map(|(name, _)| name)
                        .find(|name| !alive.iter().any(|(a, _)| a == name));
                    let name = dead.unwrap_or("a service");
                    let log = std::fs::read_to_string(self.log(name)).unwrap_or_default();
                    bail!(
                        "{name} exited: {} (log {})",
                        log.lines().last().unwrap_or("no output"),
                        self.log(name).display()
                    );
                }
                if Instant::now() > deadline {
                    bail!("nothing answers on port {port}; see the logs in {}", self.state.display());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    fn write(&self, name: &str, text: &str) -> Result<()> {
        std::fs::write(self.state.join(name), text).with_context(|| format!("writing {name}"))
    }
}

/// Where `scripts/fetch-model` puts the model: `$PP_MODEL_DIR`, else
/// `$XDG_CACHE_HOME/private-processing/models`, else `~/.cache/private-processing/models`. Read
/// here, by the developer tool; the host takes it as `--model-dir`, never from its environment.
fn model_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PP_MODEL_DIR") {
        return dir.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
    cache.join("private-processing/models")
}

/// Whether a process runs (an exited child of ours that nobody reaped is a zombie: not running).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(") ").map(|(_, rest)| !rest.starts_with(['Z', 'X'])))
        .unwrap_or(false)
}
