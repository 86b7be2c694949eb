//! The `cairn` binary: argument parsing and nothing else. Each subcommand calls the crate
//! that does the work.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use replay::{Source, VerifyRequest};

#[derive(Parser)]
#[command(name = "cairn", version, about = "A secrets manager built on a verifiable ledger")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Offline tools for the ledger: verify, export, keys. No server, no unseal keys.
    #[command(subcommand)]
    Ledger(LedgerCommand),
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
    /// Check every link, checkpoint signature, Merkle root and key rotation. Exit 0 only
    /// when the ledger is intact; otherwise report the first broken seq and exit 1.
    Verify {
        #[command(flatten)]
        source: SourceArgs,
        /// File of pinned public keys (`cairn ledger public-key` output): at least one of
        /// the ledger's keys must be among them.
        #[arg(long, value_name = "FILE")]
        trusted_key: Option<PathBuf>,
        /// A checkpoint saved earlier (`cairn ledger checkpoint`): the ledger must contain
        /// it, which catches truncation and rewritten history.
        #[arg(long, value_name = "FILE")]
        expect_checkpoint: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Write a self-contained bundle of (a range of) the ledger for offline verification.
    Export {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// First seq to include (widened to the start of its commit batch).
        #[arg(long, value_name = "SEQ")]
        from: Option<u64>,
        /// Last seq to include (widened to the end of its commit batch).
        #[arg(long, value_name = "SEQ")]
        to: Option<u64>,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Ledger(cmd) => ledger_command(cmd),
    }
}

fn ledger_command(cmd: LedgerCommand) -> ExitCode {
    let result: anyhow::Result<ExitCode> = (|| match cmd {
        LedgerCommand::Verify { source, trusted_key, expect_checkpoint, format } => {
            let req = VerifyRequest {
                source: source.source(),
                trusted_key,
                expect_checkpoint,
                json: matches!(format, Format::Json),
            };
            let intact = replay::verify(&req, &mut std::io::stdout())?;
            Ok(if intact { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        LedgerCommand::Export { data_dir, out, from, to } => {
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
    })();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
