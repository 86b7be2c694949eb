//! A three-node cluster (`storage "raft"`) of real server processes on loopback: nodes
//! join by `retry_join`, every node's ledger holds the same bytes and verifies on its own,
//! standbys forward to the leader, and the faults an operator meets — the leader killed
//! under write load, quorum lost and restored, the leader paused — lose nothing that was
//! acknowledged. Every wait is bounded in time.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use e2e::{ConfigServer, HttpReply, Options, Raft, Server, Target};
use serde_json::{Value, json};

/// How long a new leader may take (the issue's bound).
const ELECTION_BOUND: Duration = Duration::from_secs(5);

struct Cluster {
    nodes: Vec<ConfigServer>,
    root: String,
    key: String,
}

/// A node of the clusters under test. They keep four batches in flight: the pipelined
/// commit path is the harder one (the auto-unseal tests run the default, one).
fn node(id: &str, join: Option<&str>) -> Result<ConfigServer> {
    node_with(id, join, "")
}

/// [`node`] with more lines in its config file.
fn node_with(id: &str, join: Option<&str>, config: &str) -> Result<ConfigServer> {
    ConfigServer::start_with(Options {
        target: Some(Target::Cairn),
        raft: Some(Raft {
            node_id: id.into(),
            retry_join: join.map(|a| vec![a.to_owned()]).unwrap_or_default(),
            pipeline_depth: Some(4),
            leader_ca_cert_file: None,
        }),
        config: config.into(),
        ..Options::default()
    })
}

fn unseal(server: &Server, key: &str) -> Result<()> {
    let body = json!({ "key": key }).to_string();
    let r = server.http("PUT", "/v1/sys/unseal", None, Some(&body))?;
    ensure!(r.status == 200 && r.json()?["sealed"] == json!(false), "unseal: {} {}", r.status, r.body);
    Ok(())
}

/// Completes a join: once the node holds the cluster's seal material (it then shows as
/// initialized), unseals it, which adds it to the cluster; the unseal answers once the
/// cluster's ledger has reached it.
fn unseal_joining(server: &Server, key: &str) -> Result<()> {
    wait_for(Duration::from_secs(30), "the cluster's seal material", || {
        Ok(server.http("GET", "/v1/sys/init", None, None)?.json()?["initialized"] == json!(true))
    })?;
    unseal(server, key)
}

/// Polls `check` every 50 ms until it holds or `within` passes.
fn wait_for(within: Duration, what: &str, mut check: impl FnMut() -> Result<bool>) -> Result<Duration> {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < within {
        match check() {
            Ok(true) => return Ok(start.elapsed()),
            Ok(false) => {}
            Err(e) => last = e.to_string(),
        }
        thread::sleep(Duration::from_millis(50));
    }
    bail!("{what}: not within {within:?} (last error: {last})")
}

fn leader_of(server: &Server) -> Result<Value> {
    server.http("GET", "/v1/sys/leader", None, None)?.json()
}

impl Cluster {
    /// node1 initialised and unsealed, node2 and node3 joined by `retry_join` and unsealed.
    fn start() -> Result<Cluster> {
        Cluster::start_with("")
    }

    /// [`Cluster::start`] with more lines in every node's config file.
    fn start_with(config: &str) -> Result<Cluster> {
        let first = node_with("node1", None, config)?;
        let (root, key) = first.init_and_unseal()?;
        let leader_addr = first.addr();
        let mut nodes = vec![first];
        for id in ["node2", "node3"] {
            nodes.push(node_with(id, Some(&leader_addr), config)?);
        }
        let c = Cluster { nodes, root, key };
        for n in &c.nodes[1..] {
            unseal_joining(n, &c.key)?;
        }
        wait_for(Duration::from_secs(60), "three voters", || Ok(c.voters(0)? == 3))?;
        Ok(c)
    }

    /// Enables KV v2 at `path`, through node `via`.
    fn enable_kv(&self, via: usize, path: &str) -> Result<()> {
        let body = r#"{"type":"kv","options":{"version":"2"}}"#;
        let r = self.nodes[via].http("POST", &format!("/v1/sys/mounts/{path}"), Some(&self.root), Some(body))?;
        ensure!(r.status == 204, "enable kv at {path}: {} {}", r.status, r.body);
        Ok(())
    }

    fn voters(&self, via: usize) -> Result<usize> {
        let r = self.nodes[via].http("GET", "/v1/sys/storage/raft/configuration", Some(&self.root), None)?;
        ensure!(r.status == 200, "configuration: {} {}", r.status, r.body);
        let servers = r.json()?["data"]["config"]["servers"].as_array().cloned().unwrap_or_default();
        Ok(servers.iter().filter(|s| s["voter"] == json!(true)).count())
    }

    /// Index of the node that says it leads (among running ones).
    fn leader(&mut self) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| {
            self.nodes[i].is_running().unwrap_or(false)
                && leader_of(&self.nodes[i]).is_ok_and(|l| l["is_self"] == json!(true))
        })
    }

    fn write(&self, via: usize, path: &str, value: &str) -> Result<u16> {
        let body = json!({ "data": { "v": value } }).to_string();
        Ok(self.nodes[via].http("PUT", &format!("/v1/secret/data/{path}"), Some(&self.root), Some(&body))?.status)
    }

    fn read(&self, via: usize, path: &str) -> Result<Option<String>> {
        let r = self.nodes[via].http("GET", &format!("/v1/secret/data/{path}"), Some(&self.root), None)?;
        match r.status {
            200 => Ok(r.json()?["data"]["data"]["v"].as_str().map(str::to_owned)),
            404 => Ok(None),
            s => bail!("read {path}: {s} {}", r.body),
        }
    }

    fn applied(&self, i: usize) -> Result<u64> {
        leader_of(&self.nodes[i])?["raft_applied_index"].as_u64().context("raft_applied_index")
    }

    /// Waits until the running nodes have applied the same Raft index.
    fn settle(&mut self) -> Result<()> {
        let running: Vec<usize> =
            (0..self.nodes.len()).filter(|&i| self.nodes[i].is_running().unwrap_or(false)).collect();
        wait_for(Duration::from_secs(30), "nodes applying the same index", || {
            let idx: Vec<u64> = running.iter().map(|&i| self.applied(i)).collect::<Result<_>>()?;
            Ok(idx.windows(2).all(|w| w[0] == w[1]))
        })?;
        Ok(())
    }
}

/// The segment files of a node's ledger, by name.
fn segments(server: &Server) -> Result<Vec<(String, Vec<u8>)>> {
    let dir = server.data_dir().join("ledger").join("segments");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| Ok((p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), std::fs::read(&p)?)))
        .collect()
}

/// Every stopped node's ledger verifies on its own, and all hold the same bytes up to the
/// shortest: a node may stop before applying the last frames (a leader records its seal at
/// shutdown), but no node holds bytes another does not.
fn same_valid_ledgers(nodes: &[&ConfigServer]) -> Result<()> {
    let all: Vec<Vec<(String, Vec<u8>)>> = nodes.iter().map(|n| segments(n)).collect::<Result<_>>()?;
    let longest = all.iter().max_by_key(|segs| segs.iter().map(|(_, b)| b.len()).sum::<usize>()).context("nodes")?;
    for (n, segs) in nodes.iter().zip(&all) {
        ensure!(!segs.is_empty(), "no segments in {}", n.data_dir().display());
        for (i, (name, bytes)) in segs.iter().enumerate() {
            let (their_name, theirs) = longest.get(i).context("a segment the longest ledger lacks")?;
            let last = i + 1 == segs.len();
            let same = name == their_name && if last { theirs.starts_with(bytes) } else { theirs == bytes };
            ensure!(same, "segment {name} of {} differs from the longest ledger's", n.data_dir().display());
        }
        let dir = n.data_dir().display().to_string();
        let run = e2e::cairn(&["ledger", "verify", "--data-dir", &dir])?;
        let out = e2e::stdout(&run);
        ensure!(run.status.success() && out.contains(": intact"), "verify {dir}: {out}");
    }
    Ok(())
}

#[test]
fn three_nodes_replicate_forward_and_hold_identical_ledgers() -> Result<()> {
    let mut c = Cluster::start()?;
    // Every node names the same leader; standbys say so in sys/health (429, or 200 with standbyok).
    let leader = c.leader().context("a leader")?;
    let standby = (leader + 1) % 3;
    let l = leader_of(&c.nodes[standby])?;
    assert_eq!(l["ha_enabled"], json!(true));
    assert_eq!(l["is_self"], json!(false));
    assert_eq!(l["leader_address"], json!(c.nodes[leader].addr()));
    assert_eq!(c.nodes[standby].http("GET", "/v1/sys/health", None, None)?.status, 429);
    let h = c.nodes[standby].http("GET", "/v1/sys/health?standbyok=true", None, None)?;
    assert_eq!((h.status, h.json()?["standby"].clone()), (200, json!(true)));
    assert_eq!(c.nodes[leader].http("GET", "/v1/sys/health", None, None)?.status, 200);
    assert_eq!(c.nodes[standby].http("GET", "/v1/sys/seal-status", None, None)?.json()?["storage_type"], json!("raft"));

    // A client pointed at any node works: writes through standbys are forwarded (the
    // leader's X-Vault-Index comes back with them), and a read on another node with that
    // index sees the write (standbys serve reads: without the index it may be stale).
    c.enable_kv(leader, "kv")?;
    let mut indexes = Vec::new();
    for i in 0..30 {
        let via = i % 3;
        let body = json!({ "data": { "v": format!("value-{i}") } }).to_string();
        let w = c.nodes[via].http("PUT", &format!("/v1/kv/data/k{i}"), Some(&c.root), Some(&body))?;
        ensure!(w.status == 200, "write via node {via}: {} {}", w.status, w.body);
        indexes.push(w.header("x-vault-index").context("X-Vault-Index")?.to_owned());
    }
    for (i, index) in indexes.iter().enumerate() {
        let headers = [("X-Vault-Index", index.as_str()), ("X-Vault-Inconsistent", "await-state")];
        let r = call(&c.nodes[(i + 1) % 3], "GET", &format!("/v1/kv/data/k{i}"), &c.root, &headers, "")?;
        ensure!(r.status == 200, "read: {} {}", r.status, r.body);
        assert_eq!(r.json()?["data"]["data"]["v"], json!(format!("value-{i}")));
    }

    // The peers, as the bao CLI lists them.
    let peers = c.nodes[standby].bao_as(&c.root, &["operator", "raft", "list-peers", "-format=json"])?;
    ensure!(peers.code == Some(0), "list-peers: {peers}");
    let listed: Value = serde_json::from_str(&peers.stdout)?;
    let mut ids: Vec<String> = listed["data"]["config"]["servers"]
        .as_array()
        .context("servers")?
        .iter()
        .map(|s| s["node_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["node1", "node2", "node3"]);

    // Sealing the leader (Vault seals only the active node: a standby forwards `sys/seal`)
    // hands leadership on and drops its cluster credentials: it receives nothing more
    // until unsealed, then catches up.
    let old = c.leader().context("a leader")?;
    c.enable_kv(old, "secret")?;
    let sealed = c.nodes[old].http("PUT", "/v1/sys/seal", Some(&c.root), None)?;
    assert_eq!(sealed.status, 204, "{}", sealed.body);
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    wait_for(ELECTION_BOUND, "a new leader after the seal", || {
        Ok(others.iter().any(|&i| leader_of(&c.nodes[i]).is_ok_and(|l| l["is_self"] == json!(true))))
    })?;
    thread::sleep(Duration::from_millis(300));
    let before = c.applied(old)?;
    assert_eq!(c.write(others[0], "while-sealed", "1")?, 200);
    let written = c.applied(others[0])?;
    thread::sleep(Duration::from_millis(500));
    assert_eq!(c.applied(old)?, before, "a sealed node kept receiving the log");
    assert!(written > before);
    unseal(&c.nodes[old], &c.key)?;
    c.settle()?;
    assert_eq!(c.read(old, "while-sealed")?.as_deref(), Some("1"));

    c.settle()?;
    for n in &mut c.nodes {
        n.stop(Duration::from_secs(30))?;
    }
    same_valid_ledgers(&c.nodes.iter().collect::<Vec<_>>())
}

#[test]
fn killing_the_leader_under_load_loses_no_acknowledged_write() -> Result<()> {
    let mut c = Cluster::start()?;
    c.enable_kv(0, "secret")?;
    let leader = c.leader().context("a leader")?;
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();

    // Writers on the survivors (forwarded to whoever leads), counting what was acknowledged.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let addrs: Vec<String> = survivors.iter().map(|&i| c.nodes[i].addr()).collect();
    let writers: Vec<_> = addrs
        .iter()
        .enumerate()
        .map(|(w, addr)| {
            let (acked, stop, addr, root) = (acked.clone(), stop.clone(), addr.clone(), c.root.clone());
            thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("w{w}-{n}");
                    n += 1;
                    let body = json!({ "data": { "v": key } }).to_string();
                    let path = format!("/v1/secret/data/{key}");
                    let sock: std::net::SocketAddr = match addr.trim_start_matches("http://").parse() {
                        Ok(a) => a,
                        Err(_) => return,
                    };
                    if let Ok(r) =
                        e2e::process::http(sock, "PUT", &path, Some(&root), Some(&body), Duration::from_secs(10))
                        && r.status == 200
                    {
                        acked.lock().unwrap_or_else(|e| e.into_inner()).push(key);
                    }
                }
            })
        })
        .collect();
    wait_for(Duration::from_secs(10), "writes acknowledged before the kill", || {
        Ok(acked.lock().map(|a| a.len()).unwrap_or(0) >= 20)
    })?;

    c.nodes[leader].kill()?;
    let killed_at = Instant::now();
    let before = acked.lock().map(|a| a.len()).unwrap_or(0);
    let new_leader = wait_for(ELECTION_BOUND, "a new leader", || {
        Ok(survivors.iter().any(|&i| leader_of(&c.nodes[i]).is_ok_and(|l| l["is_self"] == json!(true))))
    })?;
    wait_for(Duration::from_secs(10), "writes acknowledged after the kill", || {
        Ok(acked.lock().map(|a| a.len()).unwrap_or(0) > before + 10)
    })?;
    let writes_back = killed_at.elapsed();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.join();
    }
    eprintln!(
        "leader killed: new leader after {new_leader:?}, acknowledged writes again after at most {writes_back:?}"
    );

    let acked = acked.lock().map(|a| a.clone()).unwrap_or_default();
    // Standbys answer reads from what they applied: let the survivors catch up first.
    c.settle()?;
    for key in &acked {
        for &i in &survivors {
            assert_eq!(c.read(i, key)?.as_deref(), Some(key.as_str()), "acknowledged {key} missing on node {i}");
        }
    }

    // The killed node comes back sealed, is unsealed, and catches up.
    c.nodes[leader].start_again()?;
    unseal(&c.nodes[leader], &c.key)?;
    c.settle()?;
    assert_eq!(c.read(leader, &acked[acked.len() - 1])?.as_deref(), Some(acked[acked.len() - 1].as_str()));
    for n in &mut c.nodes {
        n.stop(Duration::from_secs(30))?;
    }
    same_valid_ledgers(&c.nodes.iter().collect::<Vec<_>>())?;
    // Each leader signed with its own key, registered by event: the init key, the first
    // leader's and the new leader's are all in the ledger.
    let dir = c.nodes[0].data_dir().display().to_string();
    let keys = e2e::stdout(&e2e::cairn(&["ledger", "public-key", "--data-dir", &dir])?);
    assert!(keys.lines().filter(|l| l.starts_with("ed25519:")).count() >= 3, "{keys}");
    Ok(())
}

#[test]
fn without_quorum_writes_fail_and_resume_when_it_returns() -> Result<()> {
    let mut c = Cluster::start()?;
    c.enable_kv(0, "secret")?;
    assert_eq!(c.write(0, "before", "1")?, 200);
    let leader = c.leader().context("a leader")?;
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    c.settle()?;
    for &i in &others {
        c.nodes[i].kill()?;
    }
    // What was committed before the kill may still be applying: wait for it, then hold
    // the leader's applied index against the refused write.
    wait_for(Duration::from_secs(5), "the leader applying what was committed", || {
        let l = leader_of(&c.nodes[leader])?;
        Ok(l["raft_applied_index"] == l["raft_committed_index"])
    })?;
    let applied = c.applied(leader)?;
    // Alone, the leader cannot commit: the write is refused within a bounded time.
    let started = Instant::now();
    let status = c.write(leader, "alone", "x")?;
    assert_eq!(status, 503, "a write without quorum");
    assert!(started.elapsed() < Duration::from_secs(10), "refused in {:?}", started.elapsed());
    assert_eq!(c.applied(leader)?, applied, "nothing was applied without quorum");

    // One node back: quorum again, writes resume.
    c.nodes[others[0]].start_again()?;
    unseal(&c.nodes[others[0]], &c.key)?;
    let resumed = wait_for(Duration::from_secs(15), "writes after quorum returns", || {
        let mut c2 = Vec::new();
        for i in [leader, others[0]] {
            c2.push(c.write(i, "after", "2")?);
        }
        Ok(c2.contains(&200))
    })?;
    eprintln!("quorum restored: writes resumed after {resumed:?}");
    c.settle()?;
    assert_eq!(c.read(others[0], "after")?.as_deref(), Some("2"));
    assert_eq!(c.read(others[0], "before")?.as_deref(), Some("1"));
    c.nodes[others[1]].start_again()?;
    unseal(&c.nodes[others[1]], &c.key)?;
    c.settle()?;
    for n in &mut c.nodes {
        n.stop(Duration::from_secs(30))?;
    }
    same_valid_ledgers(&c.nodes.iter().collect::<Vec<_>>())
}

#[test]
fn a_paused_leader_is_replaced_and_steps_down_when_resumed() -> Result<()> {
    let mut c = Cluster::start()?;
    c.enable_kv(0, "secret")?;
    let old = c.leader().context("a leader")?;
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    c.nodes[old].signal("STOP")?;
    let elected = wait_for(ELECTION_BOUND, "a new leader while the old one is paused", || {
        Ok(others.iter().any(|&i| leader_of(&c.nodes[i]).is_ok_and(|l| l["is_self"] == json!(true))))
    })?;
    eprintln!("leader paused: new leader after {elected:?}");
    assert_eq!(c.write(others[0], "during", "new")?, 200);
    c.nodes[old].signal("CONT")?;
    wait_for(ELECTION_BOUND, "the old leader stepping down", || {
        Ok(leader_of(&c.nodes[old])?["is_self"] == json!(false))
    })?;
    // Through the old leader, a write reaches the new one; a read sees the latest value.
    assert_eq!(c.write(old, "during", "newer")?, 200);
    c.settle()?;
    for i in 0..3 {
        assert_eq!(c.read(i, "during")?.as_deref(), Some("newer"), "node {i}");
    }
    for n in &mut c.nodes {
        n.stop(Duration::from_secs(30))?;
    }
    same_valid_ledgers(&c.nodes.iter().collect::<Vec<_>>())
}

#[test]
fn membership_with_the_cairn_and_bao_clis() -> Result<()> {
    let first = node("node1", None)?;
    let (root, key) = first.init_and_unseal()?;
    let second = node("node2", None)?;
    let third = node("node3", None)?;
    let cairn_op = |args: &[&str]| -> Result<String> {
        let out = e2e::cairn(args)?;
        ensure!(out.status.success(), "cairn {args:?}: {}{}", e2e::stdout(&out), String::from_utf8_lossy(&out.stderr));
        Ok(e2e::stdout(&out))
    };
    let voters = || -> Result<usize> {
        let r = first.http("GET", "/v1/sys/storage/raft/configuration", Some(&root), None)?;
        ensure!(r.status == 200, "configuration: {} {}", r.status, r.body);
        let servers = r.json()?["data"]["config"]["servers"].as_array().cloned().unwrap_or_default();
        Ok(servers.iter().filter(|s| s["voter"] == json!(true)).count())
    };

    // The cluster listener speaks only mutual TLS: a plain HTTP join request is not answered.
    let cluster_addr = leader_of(&first)?["leader_cluster_address"].as_str().context("cluster address")?.to_owned();
    let mut tcp = std::net::TcpStream::connect(cluster_addr.split("://").last().unwrap_or(&cluster_addr))?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    tcp.write_all(b"POST /cluster/v1/join HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")?;
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/"), "{}", String::from_utf8_lossy(&answer));

    // A member hands out the cluster's seal material (what a joining node unseals with);
    // a node that is in no cluster has none.
    let challenge = first.http("POST", "/v1/sys/storage/raft/bootstrap/challenge", None, Some("{}"))?;
    assert_eq!(challenge.status, 200, "{}", challenge.body);
    let challenge = challenge.json()?;
    assert_eq!(challenge["seal_config"]["secret_threshold"], json!(1));
    assert!(challenge["challenge"].as_str().is_some_and(|c| !c.is_empty() && !c.contains(key.as_str())));
    let none = second.http("POST", "/v1/sys/storage/raft/bootstrap/challenge", None, Some("{}"))?;
    assert_eq!(none.status, 400, "{}", none.body);

    // Joined by our CLI and by bao's, then unsealed with the cluster's key. A join completes
    // only at unseal: a node unsealed with another key is refused and added to nothing.
    cairn_op(&["operator", "raft", "join", "--address", &second.addr(), &first.addr()])?;
    let mut wrong = key.clone().into_bytes();
    wrong[8] = if wrong[8] == b'A' { b'B' } else { b'A' };
    let wrong = String::from_utf8(wrong)?;
    wait_for(Duration::from_secs(30), "the cluster's seal material", || {
        Ok(second.http("GET", "/v1/sys/seal-status", None, None)?.json()?["initialized"] == json!(true))
    })?;
    let refused = second.http("PUT", "/v1/sys/unseal", None, Some(&json!({ "key": wrong }).to_string()))?;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(second.http("GET", "/v1/sys/seal-status", None, None)?.json()?["sealed"], json!(true));
    assert_eq!(voters()?, 1);
    let joined = third.bao_env(None, &[], &["operator", "raft", "join", &first.addr()])?;
    ensure!(
        joined.code == Some(0) && joined.stdout.contains("true"),
        "bao operator raft join: {joined}\n{}",
        third.log()
    );
    for n in [&second, &third] {
        unseal_joining(n, &key)?;
    }
    wait_for(Duration::from_secs(60), "three voters", || Ok(voters()? == 3))?;

    let peers = cairn_op(&["operator", "raft", "list-peers", "--address", &second.addr(), "--token", &root])?;
    for id in ["node1", "node2", "node3"] {
        assert!(peers.contains(id), "{peers}");
    }
    assert_eq!(peers.lines().filter(|l| l.contains("leader")).count(), 1, "{peers}");
    // Removal goes through a standby (forwarded to the leader).
    cairn_op(&["operator", "raft", "remove-peer", "--address", &second.addr(), "--token", &root, "node3"])?;
    let listed = cairn_op(&[
        "operator",
        "raft",
        "list-peers",
        "--address",
        &first.addr(),
        "--token",
        &root,
        "--format",
        "json",
    ])?;
    let servers: Value = serde_json::from_str(&listed)?;
    let ids: Vec<&str> = servers.as_array().context("servers")?.iter().filter_map(|s| s["node_id"].as_str()).collect();
    assert_eq!(ids, ["node1", "node2"]);
    // Without a token, the membership is not readable.
    let refused = e2e::cairn(&["operator", "raft", "list-peers", "--address", &first.addr(), "--token", "nope"])?;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("403"), "{}", String::from_utf8_lossy(&refused.stderr));
    Ok(())
}

/// One request over HTTPS trusting `ca` (the harness's raw requests are plain HTTP): the
/// status, the body (JSON, or null) and the `X-Vault-Index` header if any.
fn https(
    server: &Server,
    ca: &std::path::Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<(u16, Value, Option<String>)> {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-s", "--max-time", "60", "--cacert"]).arg(ca).args(["-X", method, "-D", "-", "-w", "\n%{http_code}"]);
    for (name, value) in headers {
        cmd.args(["-H", &format!("{name}: {value}")]);
    }
    if let Some(body) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary", body]);
    }
    let out = cmd.arg(format!("{}{path}", server.addr())).output().context("curl")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (rest, status) = text.rsplit_once('\n').context("curl printed no status")?;
    let (head, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
    let index = head.lines().find_map(|l| {
        l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("x-vault-index")).map(|(_, v)| v.trim().to_owned())
    });
    let json = if body.trim().is_empty() { Value::Null } else { serde_json::from_str(body)? };
    Ok((status.trim().parse().with_context(|| format!("curl: {text}"))?, json, index))
}

/// With TLS on the API listeners (certificates from a private CA), a node joins by
/// `retry_join` with `leader_ca_cert_file`, and another with the CLI's `--leader-ca-cert`;
/// without the CA, the leader's certificate is refused and nothing is joined.
#[test]
fn nodes_behind_tls_join_with_the_leaders_ca() -> Result<()> {
    let certs = tempfile::tempdir()?;
    let tls = e2e::certs::make_certificates(certs.path())?;
    let ca = tls.ca_file.clone();
    let start = |id: &str, join: Option<&str>, ca: Option<&std::path::Path>| {
        ConfigServer::start_with(Options {
            target: Some(Target::Cairn),
            tls: Some(tls.clone()),
            raft: Some(Raft {
                node_id: id.into(),
                retry_join: join.map(|a| vec![a.to_owned()]).unwrap_or_default(),
                pipeline_depth: None,
                leader_ca_cert_file: ca.map(|c| c.to_path_buf()),
            }),
            ..Options::default()
        })
    };
    let unseal = |n: &Server, key: &str| -> Result<()> {
        wait_for(Duration::from_secs(30), "the node initialized or holding the seal material", || {
            Ok(https(n, &ca, "GET", "/v1/sys/seal-status", &[], None)?.1["initialized"] == json!(true))
        })?;
        let (status, answer, _) =
            https(n, &ca, "PUT", "/v1/sys/unseal", &[], Some(&json!({ "key": key }).to_string()))?;
        ensure!(status == 200 && answer["sealed"] == json!(false), "unseal: {status} {answer}");
        Ok(())
    };

    let first = start("node1", None, None)?;
    let (status, init, _) =
        https(&first, &ca, "PUT", "/v1/sys/init", &[], Some(r#"{"secret_shares":1,"secret_threshold":1}"#))?;
    ensure!(status == 200, "init: {status} {init}");
    let root = init["root_token"].as_str().context("root_token")?.to_owned();
    let key = init["keys_base64"][0].as_str().context("keys_base64")?.to_owned();
    unseal(&first, &key)?;
    let second = start("node2", Some(&first.addr()), Some(&ca))?;
    unseal(&second, &key)?;

    let third = start("node3", None, None)?;
    let join = |with_ca: bool| {
        let (ca, address, leader) = (ca.display().to_string(), third.addr(), first.addr());
        let mut args = vec!["operator", "raft", "join", "--address", address.as_str(), "--ca-cert", ca.as_str()];
        if with_ca {
            args.extend(["--leader-ca-cert", ca.as_str()]);
        }
        args.push(leader.as_str());
        e2e::cairn(&args)
    };
    let garbage = https(
        &third,
        &ca,
        "POST",
        "/v1/sys/storage/raft/join",
        &[],
        Some(&json!({ "leader_api_addr": first.addr(), "leader_ca_cert": "not a certificate" }).to_string()),
    )?;
    assert_eq!(garbage.0, 400, "{}", garbage.1);
    let refused = join(false)?;
    assert!(!refused.status.success(), "joined without the leader's CA: {}", e2e::stdout(&refused));
    assert_eq!(https(&third, &ca, "GET", "/v1/sys/seal-status", &[], None)?.1["initialized"], json!(false));
    let joined = join(true)?;
    ensure!(joined.status.success(), "join: {}{}", e2e::stdout(&joined), String::from_utf8_lossy(&joined.stderr));
    unseal(&third, &key)?;

    let token = [("X-Vault-Token", root.as_str())];
    wait_for(Duration::from_secs(60), "three voters", || {
        let (_, config, _) = https(&first, &ca, "GET", "/v1/sys/storage/raft/configuration", &token, None)?;
        let servers = config["data"]["config"]["servers"].as_array().cloned().unwrap_or_default();
        Ok(servers.iter().filter(|s| s["voter"] == json!(true)).count() == 3)
    })?;
    // A write through a standby (forwarded over the cluster listener) reads back everywhere.
    let mount = r#"{"type":"kv","options":{"version":"2"}}"#;
    assert_eq!(https(&second, &ca, "POST", "/v1/sys/mounts/secret", &token, Some(mount))?.0, 204);
    let (status, _, index) = https(&third, &ca, "PUT", "/v1/secret/data/tls", &token, Some(r#"{"data":{"v":"1"}}"#))?;
    assert_eq!(status, 200);
    let index = index.context("X-Vault-Index")?;
    for n in [&first, &second, &third] {
        let headers = [token[0], ("X-Vault-Index", index.as_str()), ("X-Vault-Inconsistent", "await-state")];
        let (status, read, _) = https(n, &ca, "GET", "/v1/secret/data/tls", &headers, None)?;
        assert_eq!((status, &read["data"]["data"]["v"]), (200, &json!("1")), "{read}");
    }
    Ok(())
}

#[test]
fn a_snapshot_restored_into_a_new_cluster_verifies_and_serves() -> Result<()> {
    let mut old = Cluster::start()?;
    old.enable_kv(0, "secret")?;
    for i in 0..20 {
        assert_eq!(old.write(i % 3, &format!("app/{i}"), &format!("v{i}"))?, 200);
    }
    // Saved through a standby; the file is the ledger itself. (`bao operator raft snapshot
    // save` insists on Vault's own archive format, so cairn's CLI does this.)
    let standby = (old.leader().context("a leader")? + 1) % 3;
    let file = old.nodes[standby].write_file("ledger.snap", "")?;
    let path = file.display().to_string();
    let args =
        ["operator", "raft", "snapshot", "save", "--address", &old.nodes[standby].addr(), "--token", &old.root, &path];
    let saved = e2e::cairn(&args)?;
    ensure!(saved.status.success(), "snapshot save: {}{}", e2e::stdout(&saved), String::from_utf8_lossy(&saved.stderr));
    let snapshot = std::fs::read(&file)?;
    assert!(snapshot.starts_with(b"CAIRNSNP"), "a cairn snapshot");
    let via_api =
        old.nodes[0].http_with("GET", "/v1/sys/storage/raft/snapshot", &[("X-Vault-Token", &old.root)], b"")?;
    assert_eq!(via_api.status, 200);
    // No restore over a cluster that is initialized: its ledger is never replaced.
    let refused = old.nodes[0].http_with(
        "POST",
        "/v1/sys/storage/raft/snapshot-force",
        &[("X-Vault-Token", &old.root)],
        &snapshot,
    )?;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("append-only"), "{}", refused.body);

    // A new cluster: node1 restores, then joins the others and everyone unseals with the old key.
    let first = node("node1", None)?;
    let restored = e2e::cairn(&[
        "operator",
        "raft",
        "snapshot",
        "restore",
        "--address",
        &first.addr(),
        &file.display().to_string(),
    ])?;
    ensure!(
        restored.status.success(),
        "restore: {}{}",
        e2e::stdout(&restored),
        String::from_utf8_lossy(&restored.stderr)
    );
    unseal(&first, &old.key)?;
    let leader_addr = first.addr();
    let mut nodes = vec![first];
    for id in ["node2", "node3"] {
        nodes.push(node(id, Some(&leader_addr))?);
    }
    let mut new = Cluster { nodes, root: old.root.clone(), key: old.key.clone() };
    for n in &new.nodes[1..] {
        unseal_joining(n, &new.key)?;
    }
    wait_for(Duration::from_secs(60), "three voters", || Ok(new.voters(0)? == 3))?;
    new.settle()?;
    for i in 0..20 {
        assert_eq!(new.read(i % 3, &format!("app/{i}"))?, Some(format!("v{i}")), "app/{i}");
    }
    assert_eq!(new.write(2, "app/after-restore", "yes")?, 200);
    new.settle()?;
    old.settle()?;
    for n in old.nodes.iter_mut().chain(new.nodes.iter_mut()) {
        n.stop(Duration::from_secs(30))?;
    }
    same_valid_ledgers(&new.nodes.iter().collect::<Vec<_>>())?;
    // The new cluster's ledger starts with the old one's bytes, up to the snapshot.
    let old_bytes: Vec<u8> = segments(&old.nodes[0])?.into_iter().flat_map(|(_, b)| b).collect();
    let new_bytes: Vec<u8> = segments(&new.nodes[0])?.into_iter().flat_map(|(_, b)| b).collect();
    let snapshot_frames = snapshot.len() - 12;
    let header = 32;
    assert_eq!(new_bytes[header..header + snapshot_frames], old_bytes[header..header + snapshot_frames]);
    Ok(())
}

/// `method path` through `server` as `token`, with extra headers.
fn call(
    server: &Server,
    method: &str,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<HttpReply> {
    let mut all = vec![("X-Vault-Token", token)];
    all.extend_from_slice(headers);
    server.http_with(method, path, &all, body.as_bytes())
}

/// A GET through `server` from the client address 127.0.0.2 (curl binds it), so that the
/// ledger shows whether the node served it (the client's address) or forwarded it (the
/// node's own, 127.0.0.1). The status and body.
fn get_from_127_0_0_2(server: &Server, path: &str, token: &str, index: Option<&str>) -> Result<(u16, String)> {
    let url = format!("{}{path}", server.addr());
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-s", "--max-time", "20", "--interface", "127.0.0.2", "-w", "\n%{http_code}", "-H"])
        .arg(format!("X-Vault-Token: {token}"));
    if let Some(index) = index {
        cmd.args(["-H", &format!("X-Vault-Index: {index}"), "-H", "X-Vault-Inconsistent: await-state"]);
    }
    let out = cmd.arg(&url).output().context("curl")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').context("curl printed no status")?;
    Ok((status.trim().parse().with_context(|| format!("curl: {text}"))?, body.to_owned()))
}

/// The access events of a stopped node's ledger under `path` (a prefix), as rows.
fn access_rows(server: &Server, path: &str) -> Result<Vec<Value>> {
    let dir = server.data_dir().display().to_string();
    let run = e2e::cairn(&["ledger", "query", "--data-dir", &dir, "--path", path, "--format", "json"])?;
    ensure!(run.status.success(), "ledger query: {}", String::from_utf8_lossy(&run.stderr));
    let rows: Value = serde_json::from_str(&e2e::stdout(&run))?;
    Ok(rows.as_array().cloned().unwrap_or_default().into_iter().filter(|r| r["kind"] == json!("access")).collect())
}

fn index_of(reply: &HttpReply) -> Result<String> {
    reply.header("x-vault-index").map(str::to_owned).with_context(|| format!("no X-Vault-Index: {}", reply.status))
}

#[test]
fn standbys_serve_reads_on_one_chain_and_read_their_writes_with_the_index() -> Result<()> {
    let mut c = Cluster::start()?;
    let leader = c.leader().context("a leader")?;
    let standbys: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    c.enable_kv(leader, "kv")?;
    let root = c.root.clone();
    let await_state =
        |index: &str| [("X-Vault-Index", index.to_owned()), ("X-Vault-Inconsistent", "await-state".into())];

    // Read-your-writes: each write on the leader is read at once on a standby with the
    // write's index, and seen.
    for i in 0..40 {
        let body = json!({ "data": { "v": format!("v{i}") } }).to_string();
        let w = call(&c.nodes[leader], "PUT", "/v1/kv/data/ryw", &root, &[], &body)?;
        ensure!(w.status == 200, "write {i}: {} {}", w.status, w.body);
        let index = index_of(&w)?;
        let h = await_state(&index);
        let headers: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let r = call(&c.nodes[standbys[i % 2]], "GET", "/v1/kv/data/ryw", &root, &headers, "")?;
        ensure!(r.status == 200, "read {i}: {} {}", r.status, r.body);
        assert_eq!(r.json()?["data"]["data"]["v"], json!(format!("v{i}")), "round {i}");
        index_of(&r)?;
    }
    // The index is Vault's format: base64 of v1:<cluster id>:<local index>:0:<hex HMAC>.
    let w = call(&c.nodes[leader], "PUT", "/v1/kv/data/fmt", &root, &[], r#"{"data":{"v":"x"}}"#)?;
    let index = index_of(&w)?;
    let decoded = String::from_utf8(base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &index)?)?;
    let parts: Vec<&str> = decoded.split(':').collect();
    ensure!(parts.len() == 5 && parts[0] == "v1" && parts[3] == "0" && parts[4].len() == 64, "{decoded}");
    ensure!(parts[2].parse::<u64>().is_ok(), "{decoded}");
    // A forged index (another seq under the same tag) is refused on every node.
    let forged = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        decoded.replacen(&format!(":{}:", parts[2]), ":999999999:", 1),
    );
    for i in 0..3 {
        let r = call(&c.nodes[i], "GET", "/v1/kv/data/fmt", &root, &[("X-Vault-Index", forged.as_str())], "")?;
        ensure!(r.status == 400 && r.body.contains("X-Vault-Index"), "node {i}: {} {}", r.status, r.body);
    }

    // An index a standby has not reached: 412 without X-Vault-Inconsistent (the client
    // retries), the leader's answer with forward-active-node. The standby is paused while
    // the write commits, and asked before it hears from the leader again; it may still
    // catch up first, so the rounds are repeated until a 412 shows (never a stale answer).
    // A resumed node may call an election (its timer ran out while paused): each attempt
    // starts from a settled cluster and its current leader, and an attempt that meets an
    // election (503) proves nothing either way and is made again.
    let (mut saw_412, mut saw_forwarded) = (false, false);
    for attempt in 0..12 {
        if saw_412 && saw_forwarded {
            break;
        }
        c.settle()?;
        wait_for(ELECTION_BOUND, "a leader", || Ok(c.leader().is_some()))?;
        let leader = c.leader().context("a leader")?;
        let slow = (leader + 1) % 3;
        let slow_addr = c.nodes[slow].socket_addr();
        let mode = if saw_412 || (attempt % 2 == 1 && !saw_forwarded) { "forward-active-node" } else { "" };
        let value = format!("{attempt}-{mode}");
        c.nodes[slow].signal("STOP")?;
        let body = json!({"data": {"v": value}}).to_string();
        let w = call(&c.nodes[leader], "PUT", "/v1/kv/data/lag", &root, &[], &body);
        thread::sleep(Duration::from_millis(1500));
        let (root2, index) = (root.clone(), w.as_ref().ok().and_then(|w| index_of(w).ok()).unwrap_or_default());
        let mode2 = mode.to_owned();
        let reader = thread::spawn(move || {
            let mut headers = vec![("X-Vault-Token", root2.as_str()), ("X-Vault-Index", index.as_str())];
            if !mode2.is_empty() {
                headers.push(("X-Vault-Inconsistent", mode2.as_str()));
            }
            e2e::http_with(slow_addr, "GET", "/v1/kv/data/lag", &headers, b"", Duration::from_secs(20))
        });
        thread::sleep(Duration::from_millis(200));
        c.nodes[slow].signal("CONT")?;
        let r = reader.join().map_err(|_| anyhow::anyhow!("reader panicked"))??;
        let w = w?;
        if w.status != 200 {
            eprintln!("attempt {attempt}: the write met an election: {} {}", w.status, w.body);
            continue;
        }
        match (mode, r.status) {
            ("", 412) => {
                ensure!(r.body.contains("required index state not present"), "{}", r.body);
                saw_412 = true;
            }
            (_, 200) => {
                assert_eq!(r.json()?["data"]["data"]["v"], json!(value), "never a stale answer");
                saw_forwarded |= !mode.is_empty();
            }
            (_, 503) => eprintln!("attempt {attempt}: the read met an election: {}", r.body),
            _ => bail!("mode {mode:?}: {} {}", r.status, r.body),
        }
    }
    ensure!(saw_forwarded, "forward-active-node never answered");
    ensure!(saw_412, "a standby behind the index never answered 412");
    // The last resumed node may still call an election: let it pass (timeouts are
    // 400-800 ms), then go on with the settled cluster's leader.
    thread::sleep(Duration::from_secs(2));
    c.settle()?;
    wait_for(ELECTION_BOUND, "a leader after the pauses", || Ok(c.leader().is_some()))?;
    let leader = c.leader().context("a leader")?;
    let standbys: Vec<usize> = (0..3).filter(|&i| i != leader).collect();

    // A token with three uses, used on both standbys: its fourth use is refused.
    let policy = json!({ "policy": "path \"kv/data/*\" { capabilities = [\"read\"] }" }).to_string();
    wait_for(ELECTION_BOUND, "the policy written", || {
        Ok(call(&c.nodes[leader], "PUT", "/v1/sys/policies/acl/reader", &root, &[], &policy)?.status == 204)
    })?;
    let t =
        call(&c.nodes[leader], "POST", "/v1/auth/token/create", &root, &[], r#"{"policies":["reader"],"num_uses":3}"#)?;
    ensure!(t.status == 200, "token: {} {}", t.status, t.body);
    let limited = t.json()?["auth"]["client_token"].as_str().context("token")?.to_owned();
    let limited_accessor = t.json()?["auth"]["accessor"].as_str().context("accessor")?.to_owned();
    let mut index = index_of(&t)?;
    for use_ in 0..5 {
        let h = await_state(&index);
        let headers: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let r = call(&c.nodes[standbys[use_ % 2]], "GET", "/v1/kv/data/ryw", &limited, &headers, "")?;
        let want = if use_ < 3 { 200 } else { 403 };
        ensure!(r.status == want, "use {}: {} {}", use_ + 1, r.status, r.body);
        if let Ok(i) = index_of(&r) {
            index = i;
        }
    }

    // A read a standby served: its access event, with the client's address, is in the
    // leader's ledger (checked on every node below).
    let w = call(&c.nodes[leader], "PUT", "/v1/kv/data/served", &root, &[], r#"{"data":{"v":"s"}}"#)?;
    let (status, body) = get_from_127_0_0_2(&c.nodes[standbys[0]], "/v1/kv/data/served", &root, Some(&index_of(&w)?))?;
    ensure!(status == 200 && body.contains("\"s\""), "served read: {status} {body}");

    // A GET that writes (database credentials issue a lease) goes to the leader whole,
    // before anything is recorded: one access event, from the standby's address.
    let mut cleanup = e2e::db::PgCleanup::new();
    let role = e2e::db::unique_name("r", 7)?;
    cleanup.role_prefix(&format!("v-root-{role}-"));
    cleanup.role_prefix(&format!("v-token-{role}-"));
    let ok = |r: HttpReply, what: &str| -> Result<HttpReply> {
        ensure!((200..300).contains(&r.status), "{what}: {} {}", r.status, r.body);
        Ok(r)
    };
    ok(call(&c.nodes[leader], "POST", "/v1/sys/mounts/database", &root, &[], r#"{"type":"database"}"#)?, "mount")?;
    let config = json!({
        "plugin_name": "postgresql-database-plugin",
        "connection_url": format!("postgresql://{{{{username}}}}:{{{{password}}}}@{}/postgres?sslmode=disable", e2e::db::PG_ADDR),
        "username": "postgres",
        "password": "unused",
        "allowed_roles": role,
    });
    ok(call(&c.nodes[leader], "POST", "/v1/database/config/pg", &root, &[], &config.to_string())?, "config")?;
    let statement = r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"#;
    let r = json!({ "db_name": "pg", "creation_statements": statement, "default_ttl": "1h", "max_ttl": "2h" });
    let w =
        ok(call(&c.nodes[leader], "POST", &format!("/v1/database/roles/{role}"), &root, &[], &r.to_string())?, "role")?;
    let creds_path = format!("/v1/database/creds/{role}");
    let (status, body) = get_from_127_0_0_2(&c.nodes[standbys[1]], &creds_path, &root, Some(&index_of(&w)?))?;
    ensure!(status == 200, "creds through a standby: {status} {body}");
    let creds: Value = serde_json::from_str(&body)?;
    let lease = creds["lease_id"].as_str().context("lease_id")?.to_owned();
    let revoke = json!({ "lease_id": lease }).to_string();
    ok(call(&c.nodes[leader], "PUT", "/v1/sys/leases/revoke", &root, &[], &revoke)?, "revoke")?;

    // The leader's internal endpoint takes access events only from unsealed nodes of this
    // cluster, on the cluster listener: the API listener does not serve it, and a client's
    // forged event is recorded nowhere.
    let forged = json!({
        "time": 0, "caller": null, "actor_accessor": "", "actor_entity_id": null, "actor_display_name": "",
        "actor_remote_addr": "", "request_id": "00000000000000000000000000000000",
        "access": { "operation": "read", "path": "kv/data/forged", "mount_accessor": "", "outcome": "Allowed",
            "policies": [], "request_hmac": {}, "response_hmac": {}, "used_token": false },
    })
    .to_string();
    for auth in [None, Some("00".repeat(32))] {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("x-cairn-node-auth", a.as_str()));
        }
        let r = c.nodes[leader].http_with("POST", "/cairn/internal/access", &headers, forged.as_bytes())?;
        ensure!(r.status == 404, "a forged access event: {} {}", r.status, r.body);
    }

    c.settle()?;
    for n in &mut c.nodes {
        n.stop(Duration::from_secs(30))?;
    }
    same_valid_ledgers(&c.nodes.iter().collect::<Vec<_>>())?;
    for n in &c.nodes {
        ensure!(access_rows(n, "kv/data/forged")?.is_empty(), "a forged access event was recorded");
        let served: Vec<Value> =
            access_rows(n, "kv/data/served")?.into_iter().filter(|r| r["operation"] == json!("read")).collect();
        ensure!(served.len() == 1, "one access event for the served read: {served:?}");
        assert_eq!(served[0]["remote_addr"], json!("127.0.0.2"), "served by the standby itself");
        assert_eq!(served[0]["outcome"], json!("allowed"));
        let creds = access_rows(n, &format!("database/creds/{role}"))?;
        ensure!(creds.len() == 1, "the forwarded GET is recorded once: {creds:?}");
        assert_eq!(creds[0]["remote_addr"], json!("127.0.0.2"), "forwarded: the leader saw the client");
        let uses: Vec<Value> = access_rows(n, "kv/data/ryw")?
            .into_iter()
            .filter(|r| r["actor"] == json!(limited_accessor) && r["outcome"] == json!("allowed"))
            .collect();
        ensure!(uses.len() == 3, "three allowed uses of the limited token: {uses:?}");
    }
    drop(cleanup);
    Ok(())
}

#[test]
fn with_disable_standby_reads_a_standby_forwards_reads() -> Result<()> {
    let mut c = Cluster::start_with("disable_standby_reads = true\n")?;
    let leader = c.leader().context("a leader")?;
    c.enable_kv(leader, "secret")?;
    assert_eq!(c.write(leader, "x", "1")?, 200);
    let standby = (leader + 1) % 3;
    // No index needed: the leader answers, so the read sees the write.
    let (status, body) = get_from_127_0_0_2(&c.nodes[standby], "/v1/secret/data/x", &c.root, None)?;
    ensure!(status == 200 && body.contains("\"1\""), "{status} {body}");
    c.settle()?;
    for n in &mut c.nodes {
        n.stop(Duration::from_secs(30))?;
    }
    same_valid_ledgers(&c.nodes.iter().collect::<Vec<_>>())?;
    let rows = access_rows(&c.nodes[leader], "secret/data/x")?;
    let reads: Vec<&Value> = rows.iter().filter(|r| r["operation"] == json!("read")).collect();
    ensure!(reads.len() == 1, "{rows:?}");
    assert_eq!(reads[0]["remote_addr"], json!("127.0.0.2"), "forwarded: the leader saw the client, not the standby");
    Ok(())
}

/// An `audit "file"` stanza that discards its entries (every node runs its devices; a
/// shared file would get each entry once per node).
fn discard_stanza(name: &str) -> String {
    format!("audit \"file\" \"{name}\" {{\n  options {{\n    file_path = \"discard\"\n  }}\n}}\n")
}

#[test]
fn each_new_leader_enables_the_audit_devices_its_configuration_declares() -> Result<()> {
    let first = node_with("node1", None, &discard_stanza("all"))?;
    let (root, key) = first.init_and_unseal()?;
    let leader_addr = first.addr();
    let mut nodes = vec![first];
    for id in ["node2", "node3"] {
        let config = format!("{}{}", discard_stanza("all"), discard_stanza("late"));
        nodes.push(node_with(id, Some(&leader_addr), &config)?);
    }
    let mut c = Cluster { nodes, root, key };
    for n in &c.nodes[1..] {
        unseal_joining(n, &c.key)?;
    }
    wait_for(Duration::from_secs(60), "three voters", || Ok(c.voters(0)? == 3))?;
    let listed = |s: &Server, root: &str| -> Result<Vec<String>> {
        let r = s.http("GET", "/v1/sys/audit", Some(root), None)?;
        ensure!(r.status == 200, "sys/audit: {} {}", r.status, r.body);
        Ok(r.json()?["data"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default())
    };
    // Standbys apply no configuration of their own: only the leader's device exists.
    c.settle()?;
    for n in &c.nodes {
        assert_eq!(listed(n, &c.root)?, ["all/"]);
    }

    // The leader goes: the next one brings in what its own file declares.
    c.nodes[0].stop(Duration::from_secs(20))?;
    wait_for(ELECTION_BOUND, "a new leader", || Ok(c.leader().is_some_and(|i| i != 0)))?;
    let leader = c.leader().context("a leader")?;
    wait_for(Duration::from_secs(10), "the new leader's declared device", || {
        Ok(listed(&c.nodes[leader], &c.root)? == ["all/", "late/"])
    })?;
    let off = c.nodes[leader].http("DELETE", "/v1/sys/audit/late", Some(&c.root), None)?;
    assert_eq!(
        (off.status, off.json()?["errors"].clone()),
        (400, json!(["cannot disable configuration-managed audit device"]))
    );

    c.settle()?;
    for i in 1..3 {
        c.nodes[i].stop(Duration::from_secs(20))?;
    }
    let events = e2e::ledger::read_ledger(c.nodes[leader].data_dir())?;
    let enabled: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match &e.env.body {
            migrations::Body::App(migrations::Event::AuditDeviceEnabled(d)) if d.from_config => {
                Some((d.path.clone(), e.env.actor.display_name.clone()))
            }
            _ => None,
        })
        .collect();
    let new_leader = format!("config:node{}", leader + 1);
    assert_eq!(enabled, [("all/".to_string(), "config:node1".to_string()), ("late/".to_string(), new_leader)]);
    Ok(())
}
