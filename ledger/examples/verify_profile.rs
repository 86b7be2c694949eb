//! Builds a 200k-event ledger in batches of 256 (once) and verifies it five times, printing
//! the rate: `cargo run --release -p cairn-ledger --example verify_profile [DIR]`. Handy
//! under `perf record`.
use ledger::verify::{VerifyOptions, verify_dir};
use ledger::{Actor, EventDraft, Ledger, LedgerKey, Options};

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "/tmp/cairn-verify-profile".into()));
    if !dir.exists() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        let l = Ledger::create(&dir, LedgerKey::from_seed(&[1; 32]).expect("key"), Options::default()).expect("create");
        let actor = Actor {
            accessor: "aBcDeFgHiJkLmNoPqRsTuVwX".into(),
            entity_id: Some([9; 16]),
            display_name: "approle".into(),
            remote_addr: "10.0.0.7".into(),
        };
        rt.block_on(async {
            for b in 0..800u64 {
                let drafts = (0..256u64)
                    .map(|i| {
                        let mut body = format!("bench event {} ", b * 256 + i).into_bytes();
                        body.resize(300, b'x');
                        EventDraft {
                            kind: 0x100,
                            kind_version: 1,
                            request_id: [3; 16],
                            actor: actor.clone(),
                            body,
                            slots: vec![],
                        }
                    })
                    .collect();
                l.append(drafts).await.expect("append");
            }
        });
    }
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let r = verify_dir(&dir, VerifyOptions::default());
        assert!(r.intact);
        eprintln!(
            "{} events in {:?} = {:.0} events/s",
            r.events,
            t.elapsed(),
            r.events as f64 / t.elapsed().as_secs_f64()
        );
    }
}
