//! The `cairn` binary: argument parsing and nothing else. Each subcommand calls the crate
//! that does the work.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use replay::{Source, VerifyRequest};

#[derive(Parser)]
#[command(name = "cairn", version, about = "A secrets manager built on a verifiable ledger")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: `cairn server -dev`, or `cairn server -config=FILE`. Flags may be
    /// written Vault's way with one dash.
    Server(ServerFlags),
    /// Tools for the ledger: verify, export, query, keys, checkpoints. Offline on a data
    /// dir or bundle (no server, no unseal keys), or online with `--address`.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Rebuild the state as of a seq or a time from the verified ledger: mounts, policies,
    /// live tokens and leases, KV paths with versions and metadata, entities; with
    /// `--unseal-key-file`, the values then too.
    Replay(ReplayArgs),
    /// Cluster operations on a running server (Vault's `operator raft`).
    #[command(subcommand)]
    Operator(OperatorCommand),
}

#[derive(Subcommand)]
enum OperatorCommand {
    /// Raft cluster membership: list-peers, join, remove-peer.
    #[command(subcommand)]
    Raft(RaftCommand),
}

/// The server to talk to: `--address`, else VAULT_ADDR, else
/// http://127.0.0.1:8200; the token: `--token`, else VAULT_TOKEN, else BAO_TOKEN.
#[derive(Args, Clone)]
struct ServerAddress {
    #[arg(long, value_name = "URL", env = "VAULT_ADDR", default_value = "http://127.0.0.1:8200")]
    address: String,
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// PEM file of the CA that signed the server's certificate.
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
}

#[derive(Subcommand)]
enum RaftCommand {
    /// The cluster's members: node id, cluster address, state, voter.
    ListPeers {
        #[command(flatten)]
        server: ServerAddress,
        #[arg(long, value_enum, default_value = "table")]
        format: TableFormat,
    },
    /// Make the server at `--address` (not yet in a cluster) join the one at LEADER_API_ADDR.
    Join {
        #[command(flatten)]
        server: ServerAddress,
        /// A PEM file of the CA certificates the leader's API is checked against (Vault's
        /// `-leader-ca-cert`), when it is not signed by a CA the platform trusts.
        #[arg(long)]
        leader_ca_cert: Option<std::path::PathBuf>,
        leader_api_addr: String,
    },
    /// Remove a member from the cluster (by node id).
    RemovePeer {
        #[command(flatten)]
        server: ServerAddress,
        node_id: String,
    },
    /// Save the cluster's ledger to a file, or restore one into a new cluster.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Save every durable frame of the ledger to FILE (needs sudo on
    /// `sys/storage/raft/snapshot`).
    Save {
        #[command(flatten)]
        server: ServerAddress,
        file: PathBuf,
    },
    /// Restore FILE into a new cluster (not initialized); then unseal it with the keys of
    /// the cluster the snapshot came from.
    Restore {
        #[command(flatten)]
        server: ServerAddress,
        file: PathBuf,
    },
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct ReplayArgs {
    #[command(subcommand)]
    subcommand: Option<ReplaySubcommand>,
    #[command(flatten)]
    source: Option<SourceArgs>,
    /// The moment: a seq (digits), an RFC 3339 time, or `end` (the default).
    #[arg(long, value_name = "TIME|SEQ", conflicts_with = "diff")]
    at: Option<String>,
    /// List what changed between two moments (seqs or times).
    #[arg(long, num_args = 2, value_names = ["A", "B"])]
    diff: Option<Vec<String>>,
    /// Only what lies under this path prefix (mounts, KV paths, leases; `secret/data/app`
    /// covers the KV secret `secret/app`).
    #[arg(long, value_name = "PREFIX")]
    path: Option<String>,
    /// Also show the value every KV path held at the moment (KV v1, each KV v2 version,
    /// cubbyholes), opened with the unseal keys: a file holding one unseal key share, in hex
    /// or base64 as `bao operator init` prints it (or the unseal key `server -dev` prints).
    /// Repeat it up to the threshold. Erased values say when they were destroyed. An
    /// auto-unseal (transit) setup cannot be opened offline with its transit key: give its
    /// recovery key shares. The output then holds secrets.
    #[arg(long, value_name = "FILE", conflicts_with = "diff")]
    unseal_key_file: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    Text,
    Html,
    Json,
}

#[derive(Subcommand)]
enum ReplaySubcommand {
    /// Every token live at the moment, and every entity, whose policies allowed the
    /// operation on the path — with the rule and the policies that granted it.
    WhoCan {
        #[command(flatten)]
        source: SourceArgs,
        /// The API path (`secret/data/app`).
        #[arg(long, value_name = "PATH")]
        path: String,
        #[arg(long, value_name = "TIME|SEQ", default_value = "end")]
        at: String,
        /// read, create, update, patch, delete, list or scan.
        #[arg(long, value_name = "OP", default_value = "read")]
        op: String,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// One self-contained report of a time window: the timeline (who did what, with what
    /// outcome), the state diff (policy changes as line diffs, with who and when), who could
    /// read the paths touched before and after, and how the ledger was verified.
    Report {
        #[command(flatten)]
        source: SourceArgs,
        /// Start of the window (a seq or an RFC 3339 time; the state before it is the
        /// "before").
        #[arg(long, value_name = "TIME|SEQ")]
        from: String,
        /// End of the window (`end` by default).
        #[arg(long, value_name = "TIME|SEQ", default_value = "end")]
        to: String,
        /// Only requests and state under this path prefix.
        #[arg(long, value_name = "PREFIX")]
        path: Option<String>,
        /// `html` is one file with no external asset.
        #[arg(long, value_enum, default_value = "text")]
        format: ReportFormat,
        /// Write the report to FILE instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// A running server, for the online variants.
#[derive(Args, Clone)]
struct RemoteArgs {
    /// Address of a running server (`https://vault.example:8200`): work online through its
    /// `sys/ledger/` endpoints, with a token that has `sudo` on them.
    #[arg(long, value_name = "URL")]
    address: Option<String>,
    /// The token (default: VAULT_TOKEN, then BAO_TOKEN).
    #[arg(long, value_name = "TOKEN", requires = "address")]
    token: Option<String>,
    /// PEM file of the CA that signed the server's certificate.
    #[arg(long, value_name = "FILE", requires = "address")]
    ca_cert: Option<PathBuf>,
}

impl RemoteArgs {
    fn connect(&self) -> anyhow::Result<Option<api::remote::Remote>> {
        match &self.address {
            None => Ok(None),
            Some(a) => Ok(Some(api::remote::Remote::new(a, self.token.clone(), self.ca_cert.as_deref())?)),
        }
    }
}

/// Runs one online call on a small runtime of its own.
fn block_on<T>(f: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(f))
}

#[derive(Clone, Copy, ValueEnum)]
enum TableFormat {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum QueryFormat {
    Table,
    Json,
    Jsonl,
}

#[derive(Args)]
struct ServerFlags {
    /// Development mode: embedded storage in a temporary directory, initialized and
    /// unsealed, KV v2 at secret/, root token printed.
    #[arg(long)]
    dev: bool,
    /// The dev root token (random when not given).
    #[arg(long, value_name = "ID")]
    dev_root_token_id: Option<String>,
    /// Address the dev server listens on (default 127.0.0.1:8200).
    #[arg(long, value_name = "ADDR")]
    dev_listen_address: Option<String>,
    /// Keep the dev server's data in DIR (and reuse it on the next start).
    #[arg(long, value_name = "DIR")]
    dev_data_dir: Option<PathBuf>,
    /// Server configuration file (HCL, Vault's stanzas).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// trace, debug, info, warn or error.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct SourceArgs {
    /// A server data directory (or a ledger directory).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A bundle written by `cairn ledger export`.
    #[arg(long, value_name = "FILE")]
    bundle: Option<PathBuf>,
}

/// The offline source of `ledger query`, optional because `--address` replaces it.
#[derive(Args)]
#[group(required = false, multiple = false)]
struct QuerySource {
    /// A server data directory (or a ledger directory).
    #[arg(long, value_name = "DIR", conflicts_with = "address")]
    data_dir: Option<PathBuf>,
    /// A bundle written by `cairn ledger export`.
    #[arg(long, value_name = "FILE", conflicts_with = "address")]
    bundle: Option<PathBuf>,
}

impl SourceArgs {
    fn source(&self) -> Source {
        match (&self.data_dir, &self.bundle) {
            (_, Some(b)) => Source::Bundle(b.clone()),
            (Some(d), None) => Source::DataDir(d.clone()),
            (None, None) => Source::DataDir(PathBuf::from(".")),
        }
    }
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Check every link, checkpoint signature, Merkle root and key rotation.
    ///
    /// Exit codes: 0 the ledger is intact; 1 BROKEN (damage or tampering: the first broken
    /// seq and why); 2 the verification could not run (bad arguments, unreadable key or
    /// checkpoint file); 3 TORN TAIL: the data dir ends in an unfinished write that was never
    /// acknowledged (the server stopped while writing it), everything before it verifies, and
    /// the server cuts it when it next starts.
    Verify {
        #[command(flatten)]
        source: SourceArgs,
        /// File of pinned public keys (`cairn ledger public-key` output): at least one of
        /// the ledger's keys must be among them.
        #[arg(long, value_name = "FILE")]
        trusted_key: Option<PathBuf>,
        /// A checkpoint saved earlier: the ledger must contain it, which catches truncation
        /// and rewritten history. What `cairn ledger checkpoint` prints, the
        /// `sys/ledger/checkpoint` answer, or its signed note alone.
        #[arg(long, value_name = "FILE")]
        expect_checkpoint: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Write a self-contained bundle of (a range of) the ledger for offline verification:
    /// from a data dir, or online from a running server with `--address`.
    Export {
        #[arg(long, value_name = "DIR", required_unless_present = "address", conflicts_with = "address")]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        remote: RemoteArgs,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// First seq to include (widened to the start of its commit batch).
        #[arg(long, value_name = "SEQ")]
        from: Option<u64>,
        /// Last seq to include (widened to the end of its commit batch).
        #[arg(long, value_name = "SEQ")]
        to: Option<u64>,
    },
    /// List the events that match an actor, a path prefix, an operation and a time window:
    /// requests (allowed, denied, failed) and the mutations they caused. Offline on a data
    /// dir or bundle, or online with `--address`.
    Query {
        #[command(flatten)]
        source: QuerySource,
        #[command(flatten)]
        remote: RemoteArgs,
        /// Token accessor of the actor.
        #[arg(long, value_name = "ACCESSOR")]
        actor: Option<String>,
        /// Request path prefix (`secret/`).
        #[arg(long, value_name = "PREFIX")]
        path: Option<String>,
        /// read, create, update, patch, delete, list, scan.
        #[arg(long, value_name = "OP")]
        op: Option<String>,
        /// Event kinds as rows print them (`access` for requests, `KvWritten`,
        /// `TokensRevoked`, `PayloadErased`, …); repeat or separate with commas.
        #[arg(long, value_name = "KIND", value_delimiter = ',')]
        kind: Vec<String>,
        /// Start of the window (RFC 3339).
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// End of the window (RFC 3339).
        #[arg(long, value_name = "TIME")]
        to: Option<String>,
        /// `jsonl`: one JSON object per line.
        #[arg(long, value_enum, default_value = "table")]
        format: QueryFormat,
    },
    /// Print one event of the verified ledger: its fields, hash and key slots, with its
    /// inclusion proof against a signed checkpoint (the latest unless `--tree-size`), and
    /// that checkpoint, ready for `cairn ledger verify-proof`.
    Show {
        /// The event's seq.
        seq: u64,
        #[command(flatten)]
        source: SourceArgs,
        /// Prove inclusion in the tree of this size (the last seq of a commit batch) rather
        /// than the latest checkpoint's.
        #[arg(long, value_name = "N")]
        tree_size: Option<u64>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Print the ledger's checkpoint signing keys, to pin with `--trusted-key`.
    PublicKey {
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Print the latest signed checkpoint as JSON, to save for `--expect-checkpoint`.
    Checkpoint {
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Check a proof from `sys/ledger/proof/…` against signed checkpoints and pinned keys.
    /// Exit 0 when it holds, 1 when it is refused (with the reason).
    VerifyProof {
        /// The proof: the endpoint's answer, or its `data` object.
        #[arg(long, value_name = "FILE")]
        proof: PathBuf,
        /// The checkpoint (JSON form, `sys/ledger/checkpoint` answer, or signed note); for a
        /// consistency proof, the new one. By default, the checkpoint the proof carries (a
        /// proof asked for without a size, or `cairn ledger show --format json`): its
        /// signature is checked with the pinned keys all the same.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        /// For a consistency proof: the checkpoint saved earlier.
        #[arg(long, value_name = "FILE")]
        old_checkpoint: Option<PathBuf>,
        /// File of pinned public keys (`cairn ledger public-key` output).
        #[arg(long, value_name = "FILE")]
        trusted_key: PathBuf,
        /// For an inclusion proof: the event hash you hold (otherwise the proof's own).
        #[arg(long, value_name = "HEX")]
        leaf_hash: Option<String>,
        /// For an inclusion proof: the seq it must be about.
        #[arg(long, value_name = "SEQ")]
        seq: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(vault_style_flags(std::env::args()));
    match cli.command {
        Command::Server(flags) => server_command(flags),
        Command::Ledger(cmd) => ledger_command(cmd),
        Command::Replay(args) => replay_command(args),
        Command::Operator(OperatorCommand::Raft(cmd)) => raft_command(cmd),
    }
}

fn raft_command(cmd: RaftCommand) -> ExitCode {
    let run = || -> anyhow::Result<()> {
        match cmd {
            RaftCommand::ListPeers { server, format } => {
                let remote = api::remote::Remote::new(&server.address, server.token, server.ca_cert.as_deref())?;
                let answer = block_on(remote.call("GET", "sys/storage/raft/configuration", None))??;
                let servers = answer.as_ref().map(|a| a["data"]["config"]["servers"].clone()).unwrap_or_default();
                match format {
                    TableFormat::Json => println!("{}", serde_json::to_string_pretty(&servers)?),
                    TableFormat::Table => {
                        println!("{:<16} {:<24} {:<10} Voter", "Node", "Address", "State");
                        for s in servers.as_array().into_iter().flatten() {
                            let state = if s["leader"] == serde_json::json!(true) { "leader" } else { "follower" };
                            println!(
                                "{:<16} {:<24} {:<10} {}",
                                s["node_id"].as_str().unwrap_or(""),
                                s["address"].as_str().unwrap_or(""),
                                state,
                                s["voter"]
                            );
                        }
                    }
                }
            }
            RaftCommand::Join { server, leader_ca_cert, leader_api_addr } => {
                let remote = api::remote::Remote::anonymous(&server.address, server.ca_cert.as_deref())?;
                let mut body = serde_json::json!({ "leader_api_addr": leader_api_addr });
                if let Some(file) = leader_ca_cert {
                    let pem = std::fs::read_to_string(&file)
                        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
                    body["leader_ca_cert"] = serde_json::Value::String(pem);
                }
                let answer = block_on(remote.call("POST", "sys/storage/raft/join", Some(&body)))??;
                let joined = answer.is_some_and(|a| a["joined"] == serde_json::json!(true));
                anyhow::ensure!(joined, "the node did not join");
                println!("Joined: true");
            }
            RaftCommand::Snapshot(SnapshotCommand::Save { server, file }) => {
                let remote = api::remote::Remote::new(&server.address, server.token, server.ca_cert.as_deref())?;
                let bytes = block_on(remote.bytes("GET", "sys/storage/raft/snapshot", None))??;
                let dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
                let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
                std::io::Write::write_all(&mut tmp, &bytes)?;
                tmp.as_file().sync_all()?;
                tmp.persist(&file)?;
                println!("Snapshot saved to {} ({} bytes)", file.display(), bytes.len());
            }
            RaftCommand::Snapshot(SnapshotCommand::Restore { server, file }) => {
                let remote = api::remote::Remote::anonymous(&server.address, server.ca_cert.as_deref())?;
                let bytes = std::fs::read(&file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
                block_on(remote.bytes("POST", "sys/storage/raft/snapshot", Some(bytes)))??;
                println!("Snapshot restored; unseal the cluster with the keys of the cluster it came from");
            }
            RaftCommand::RemovePeer { server, node_id } => {
                let remote = api::remote::Remote::new(&server.address, server.token, server.ca_cert.as_deref())?;
                let body = serde_json::json!({ "server_id": node_id });
                block_on(remote.call("POST", "sys/storage/raft/remove-peer", Some(&body)))??;
                println!("Peer removed successfully!");
            }
        }
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Vault's CLI takes Go-style flags (`-dev`, `-config=FILE`); clap wants `--dev`. After
/// `server`, a single-dash flag longer than one letter gets its second dash.
fn vault_style_flags(args: impl Iterator<Item = String>) -> Vec<String> {
    let mut in_server = false;
    args.map(|a| {
        if a == "server" {
            in_server = true;
        }
        let single_dash_long = a.starts_with('-') && !a.starts_with("--") && a.len() > 2;
        if in_server && single_dash_long { format!("-{a}") } else { a }
    })
    .collect()
}

/// The ledger's writer is a dedicated thread that is busy whenever requests are, so the
/// runtime takes the other cores (at least one). `TOKIO_WORKER_THREADS` overrides it.
/// Measured on 2 cores: one worker serves 18% more writes than two (BENCHMARKS.md).
fn worker_threads() -> usize {
    if let Some(n) = std::env::var("TOKIO_WORKER_THREADS").ok().and_then(|v| v.parse().ok()).filter(|&n: &usize| n > 0)
    {
        return n;
    }
    std::thread::available_parallelism().map(|n| n.get().saturating_sub(1)).unwrap_or(1).max(1)
}

fn server_command(f: ServerFlags) -> ExitCode {
    // Before any thread exists, so that every file the server and its libraries create (sled
    // and redb included, which take no mode) is private.
    api::server::restrict_umask();
    let args = api::server::ServerArgs {
        dev: f.dev,
        dev_root_token_id: f.dev_root_token_id,
        dev_listen_address: f.dev_listen_address,
        dev_data_dir: f.dev_data_dir,
        config: f.config,
        log_level: f.log_level,
    };
    let runtime =
        match tokio::runtime::Builder::new_multi_thread().worker_threads(worker_threads()).enable_all().build() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: cannot start the runtime: {e}");
                return ExitCode::from(1);
            }
        };
    match runtime.block_on(api::server::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `cairn ledger verify`: a rule is broken (tampering or damage).
const VERIFY_BROKEN: u8 = 1;
/// `cairn ledger verify`: only an unacknowledged torn tail is wrong (2 is any error).
const VERIFY_TORN_TAIL: u8 = 3;

fn ledger_command(cmd: LedgerCommand) -> ExitCode {
    let result: anyhow::Result<ExitCode> = (|| match cmd {
        LedgerCommand::Verify { source, trusted_key, expect_checkpoint, format } => {
            let req = VerifyRequest {
                source: source.source(),
                trusted_key,
                expect_checkpoint,
                json: matches!(format, Format::Json),
            };
            Ok(match replay::verify(&req, &mut std::io::stdout())? {
                replay::Verdict::Intact => ExitCode::SUCCESS,
                replay::Verdict::Broken => ExitCode::from(VERIFY_BROKEN),
                replay::Verdict::TornTail => ExitCode::from(VERIFY_TORN_TAIL),
            })
        }
        LedgerCommand::Export { data_dir, remote, out, from, to } => {
            if let Some(remote) = remote.connect()? {
                let bytes = block_on(remote.export(&out, from, to))??;
                println!("exported {bytes} bytes to {}", out.display());
                return Ok(ExitCode::SUCCESS);
            }
            let data_dir = data_dir.unwrap_or_else(|| PathBuf::from("."));
            let s = replay::export(&data_dir, &out, from, to)?;
            println!(
                "exported events {}..={} ({} commit batches, {} bytes) to {}",
                s.first_seq,
                s.last_seq,
                s.frames,
                s.bytes,
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        LedgerCommand::Query { source, remote, actor, path, op, kind, from, to, format } => {
            let time = |t: Option<String>| -> anyhow::Result<Option<u64>> {
                t.map(|t| {
                    replay::time::parse_rfc3339(&t)
                        .ok_or_else(|| anyhow::anyhow!("{t:?} is not an RFC 3339 time (2026-11-23T15:04:05Z)"))
                })
                .transpose()
            };
            let filter = projections::query::Filter { actor, path, op, kinds: kind, from: time(from)?, to: time(to)? };
            let rows = match remote.connect()? {
                Some(remote) => block_on(remote.query(&filter))??
                    .into_iter()
                    .map(|v| {
                        replay::query::row_from_json(v).ok_or_else(|| anyhow::anyhow!("the server sent a bad row"))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?,
                None => {
                    let source = match (source.data_dir, source.bundle) {
                        (_, Some(b)) => Source::Bundle(b),
                        (Some(d), None) => Source::DataDir(d),
                        (None, None) => anyhow::bail!("give --data-dir, --bundle or --address"),
                    };
                    replay::query::query(&source, &filter)?
                }
            };
            match format {
                QueryFormat::Json => {
                    let rows: Vec<serde_json::Value> = rows.iter().map(replay::query::row_json).collect();
                    println!("{}", serde_json::to_string_pretty(&rows)?)
                }
                QueryFormat::Jsonl => print!("{}", replay::query::to_jsonl(&rows)),
                QueryFormat::Table => print!("{}", replay::query::to_table(&rows)),
            }
            Ok(ExitCode::SUCCESS)
        }
        LedgerCommand::Show { seq, source, tree_size, format } => {
            let shown = replay::show::show(&source.source(), seq, tree_size)?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&shown)?),
                Format::Text => print!("{}", replay::show::to_text(&shown)),
            }
            Ok(ExitCode::SUCCESS)
        }
        LedgerCommand::PublicKey { source } => {
            for k in replay::public_keys(&source.source())? {
                let status = k.retired_at.map_or("current".to_string(), |at| format!("retired_at={at}"));
                println!("{} key_id={} registered_at={} {status}", k.public_key, k.key_id, k.registered_at);
            }
            Ok(ExitCode::SUCCESS)
        }
        LedgerCommand::Checkpoint { source } => {
            let cp = replay::checkpoint(&source.source())?;
            println!("{}", serde_json::to_string(&cp)?);
            Ok(ExitCode::SUCCESS)
        }
        LedgerCommand::VerifyProof { proof, checkpoint, old_checkpoint, trusted_key, leaf_hash, seq } => {
            let req = replay::VerifyProofRequest { proof, checkpoint, old_checkpoint, trusted_key, leaf_hash, seq };
            Ok(match replay::verify_proof(&req)? {
                replay::ProofVerdict::Valid(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                replay::ProofVerdict::Refused(reason) => {
                    println!("proof REFUSED: {reason}");
                    ExitCode::from(1)
                }
            })
        }
    })();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn replay_command(args: ReplayArgs) -> ExitCode {
    let result: anyhow::Result<()> = (|| {
        use replay::replay::{At, Report, diff, replay};
        if let Some(ReplaySubcommand::WhoCan { source, path, at, op, format }) = args.subcommand {
            let op = replay::who_can::parse_operation(&op)
                .ok_or_else(|| anyhow::anyhow!("--op {op:?}: use read, create, update, patch, delete, list or scan"))?;
            let replayed = replay(&source.source(), At::parse(&at)?)?;
            let grants = replay::who_can::who_can(&replayed, &path, op);
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&grants)?),
                Format::Text => print!("{}", replay::who_can::to_text(&grants, &path, &replayed)),
            }
            return Ok(());
        }
        if let Some(ReplaySubcommand::Report { source, from, to, path, format, out }) = args.subcommand {
            let r = replay::report::report(&source.source(), At::parse(&from)?, At::parse(&to)?, path.as_deref())?;
            let text = match format {
                ReportFormat::Text => r.to_text(),
                ReportFormat::Html => r.to_html(),
                ReportFormat::Json => serde_json::to_string_pretty(&r)? + "\n",
            };
            match out {
                Some(file) => std::fs::write(&file, text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?,
                None => print!("{text}"),
            }
            return Ok(());
        }
        let source = args.source.map(|s| s.source()).ok_or_else(|| anyhow::anyhow!("give --data-dir or --bundle"))?;
        if let Some(moments) = args.diff {
            let [a, b] = moments.as_slice() else { anyhow::bail!("--diff takes two moments") };
            let before = Report::of(&replay(&source, At::parse(a)?)?);
            let after = Report::of(&replay(&source, At::parse(b)?)?);
            let mut d = diff(&before, &after);
            if let Some(prefix) = &args.path {
                d.retain_path(prefix);
            }
            match args.format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&d)?),
                Format::Text => print!("{}", d.to_text()),
            }
            return Ok(());
        }
        let at = At::parse(args.at.as_deref().unwrap_or("end"))?;
        let keys = replay::values::read_key_files(&args.unseal_key_file)?;
        let replayed = replay(&source, at)?;
        let mut report = Report::of(&replayed);
        if let Some(prefix) = &args.path {
            report.retain_path(prefix);
        }
        if !keys.is_empty() {
            // Everything is opened before anything is printed: a wrong key prints nothing.
            let values = replay::values::values_at(&source, &replayed, &keys)?;
            match args.format {
                Format::Json => {
                    let with = replay::values::ReportWithValues { report: &report, values: &values };
                    println!("{}", serde_json::to_string_pretty(&with)?);
                }
                Format::Text => print!("{}{}", report.to_text(), values.to_text()),
            }
            return Ok(());
        }
        match args.format {
            Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            Format::Text => print!("{}", report.to_text()),
        }
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
