//! Three in-process nodes on 127.0.0.1: bootstrap and join, replication in order, failover
//! time, loss of quorum, restart from disk and catch-up; the listener's mutual TLS. Every
//! wait is bounded.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster::{Applier, Cluster, ClusterConfig, ClusterError, Credentials};
use futures_util::future::BoxFuture;

/// Records applied entries; idempotent by content is not needed here (each entry is unique),
/// but a duplicate would show up in the comparison.
#[derive(Default)]
struct Recorder {
    entries: Mutex<Vec<Vec<u8>>>,
}

impl Recorder {
    fn all(&self) -> Vec<Vec<u8>> {
        self.entries.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

impl Applier for Recorder {
    fn apply(&self, entry: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let n = {
            let mut g = self.entries.lock().expect("test");
            g.push(entry);
            g.len()
        };
        Box::pin(async move { Ok((n as u64).to_be_bytes().to_vec()) })
    }
    fn snapshot(&self) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let all = self.all();
        Box::pin(async move { Ok(all.concat()) })
    }
    fn install(&self, _data: Vec<u8>) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async { Err("not used in this test".to_string()) })
    }
    /// Kept in memory: everything applied counts as durable.
    fn applied_mark(&self) -> u64 {
        self.entries.lock().map(|g| g.len() as u64).unwrap_or(0)
    }
    fn durable_mark(&self) -> u64 {
        self.applied_mark()
    }
}

fn free_addr() -> String {
    // Bind port 0, read the real port, release it, advertise it.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("test");
    l.local_addr().expect("test").to_string()
}

struct Node {
    cfg: ClusterConfig,
    rec: Arc<Recorder>,
    c: Option<Cluster>,
}

/// The cluster's secret (the server derives it from the root key).
const SECRET: [u8; 32] = [42; 32];

impl Node {
    /// Starts the node with the cluster's credentials (as if unsealed).
    async fn start(cfg: ClusterConfig, rec: Arc<Recorder>) -> Node {
        let c = Cluster::start(cfg.clone(), rec.clone()).await.expect("test");
        c.set_credentials(Some(&SECRET)).expect("test");
        Node { cfg, rec, c: Some(c) }
    }
    fn c(&self) -> &Cluster {
        self.c.as_ref().expect("test")
    }
    async fn stop(&mut self) {
        if let Some(c) = self.c.take() {
            c.shutdown().await;
        }
    }
}

async fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn leader_index(nodes: &[Node]) -> Option<usize> {
    nodes.iter().position(|n| n.c.as_ref().is_some_and(|c| c.status().is_leader))
}

fn entry(i: usize) -> Vec<u8> {
    format!("frame-{i:05}").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_replicate_fail_over_and_restart() {
    let _ = tracing_subscriber::fmt().with_env_filter("error").with_test_writer().try_init();
    let tmp = tempfile::tempdir().expect("test");
    let mut nodes = Vec::new();
    for i in 1..=3 {
        let addr = free_addr();
        let cfg = ClusterConfig::new(
            format!("node{i}"),
            tmp.path().join(format!("n{i}")),
            format!("http://127.0.0.1:1820{i}"),
            addr,
        );
        nodes.push(Node::start(cfg, Arc::new(Recorder::default())).await);
    }

    // Only a peer with the cluster's credentials gets an answer; garbage from one is
    // refused with 400, never a panic.
    let plain = reqwest::Client::new();
    let stranger = Credentials::derive(&[7; 32], "stranger").expect("test");
    let member = Credentials::derive(&SECRET, "tester").expect("test");
    for route in ["append", "vote", "pre_vote", "snapshot", "transfer_leader", "join"] {
        let addr = &nodes[0].cfg.cluster_addr;
        let r = plain.post(format!("http://{addr}/cluster/v1/{route}")).body(vec![0xff; 64]).send().await;
        assert!(r.is_err(), "plain HTTP to {route}: {r:?}");
        let url = format!("https://{addr}/cluster/v1/{route}");
        let r = stranger.client().post(&url).body(vec![0xff; 64]).send().await;
        assert!(r.is_err(), "another cluster's certificate on {route}: {r:?}");
        let r = member.client().post(&url).body(vec![0xff; 64]).send().await.expect("test");
        assert_eq!(r.status().as_u16(), 400, "{route}");
    }

    // Bootstrap node 1, join 2 and 3 (node 3 asks node 2, which points it to the leader).
    assert!(!nodes[0].c().is_initialized());
    nodes[0].c().bootstrap().await.expect("test");
    wait_until("node1 leads", Duration::from_secs(5), || nodes[0].c().status().is_leader).await;
    assert!(matches!(nodes[0].c().bootstrap().await, Err(ClusterError::AlreadyInitialized)));
    // Without credentials, or with another cluster's, a node cannot join.
    nodes[1].c().set_credentials(None).expect("test");
    let brief = Duration::from_secs(2);
    assert!(nodes[1].c().join(&nodes[0].cfg.cluster_addr, brief).await.is_err());
    nodes[1].c().set_credentials(Some(&[7; 32])).expect("test");
    assert!(nodes[1].c().join(&nodes[0].cfg.cluster_addr, brief).await.is_err());
    assert_eq!(nodes[0].c().status().members.len(), 1);
    nodes[1].c().set_credentials(Some(&SECRET)).expect("test");
    let within = Duration::from_secs(40);
    nodes[1].c().join(&nodes[0].cfg.cluster_addr, within).await.expect("test");
    nodes[2].c().join(&nodes[1].cfg.cluster_addr, within).await.expect("test");
    let st = nodes[0].c().status();
    assert_eq!(st.members.iter().filter(|m| m.voter).count(), 3, "{st:?}");
    assert!(nodes[2].c().is_initialized());

    // A follower refuses and names the leader.
    match nodes[1].c().propose(b"x".to_vec()).await {
        Err(ClusterError::NotLeader { leader: Some((id, m)) }) => {
            assert_eq!(id, "node1");
            assert_eq!(m.cluster_addr, nodes[0].cfg.cluster_addr);
        }
        other => panic!("expected NotLeader, got {other:?}"),
    }

    // 100 entries, replies are the applier's.
    let mut acked = Vec::new();
    for i in 0..100 {
        let r = nodes[0].c().propose(entry(i)).await.expect("test");
        assert_eq!(r, ((i + 1) as u64).to_be_bytes().to_vec());
        acked.push(entry(i));
    }
    wait_until("all three hold 100", Duration::from_secs(10), || nodes.iter().all(|n| n.rec.all().len() == 100)).await;
    for n in &nodes {
        assert_eq!(n.rec.all(), acked, "{}", n.cfg.node_id);
    }

    // A follower that loses its credentials (sealed) is cut off at once, open connections
    // included, while the other two go on; with them back it catches up.
    nodes[2].c().set_credentials(None).expect("test");
    for i in 100..110 {
        nodes[0].c().propose(entry(i)).await.expect("test");
        acked.push(entry(i));
    }
    wait_until("node2 holds 110", Duration::from_secs(10), || nodes[1].rec.all().len() == 110).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(nodes[2].rec.all().len(), 100, "a node without credentials got entries");
    nodes[2].c().set_credentials(Some(&SECRET)).expect("test");
    wait_until("node3 catches up", Duration::from_secs(10), || nodes[2].rec.all().len() == 110).await;

    // Kill the leader: a new one within 5 s; proposals go on there.
    let mut leader_rx = nodes[1].c().leader_changes();
    nodes[0].stop().await;
    let t0 = Instant::now();
    wait_until("a new leader", Duration::from_secs(5), || leader_index(&nodes).is_some()).await;
    let failover = t0.elapsed();
    println!("failover: new leader after {failover:?}");
    let li = leader_index(&nodes).expect("test");
    assert_ne!(li, 0);
    // The watch follows Raft's metrics, a moment after them.
    wait_until("leader_changes to name the new leader", Duration::from_secs(5), || {
        leader_rx.borrow_and_update().as_ref().is_some_and(|l| l != "node1")
    })
    .await;
    nodes[li].c().ensure_leader_applied().await.expect("test");
    for i in 110..130 {
        nodes[li].c().propose(entry(i)).await.expect("test");
        acked.push(entry(i));
    }
    let other = if li == 1 { 2 } else { 1 };
    wait_until("the follower holds 130", Duration::from_secs(10), || nodes[other].rec.all().len() == 130).await;
    for i in [1, 2] {
        assert_eq!(nodes[i].rec.all(), acked, "node{}", i + 1);
    }

    // Two of three down: propose fails within a bounded time, nothing applied.
    nodes[other].stop().await;
    let before = nodes[li].rec.all().len();
    let t0 = Instant::now();
    let r = nodes[li].c().propose(b"lost-quorum".to_vec()).await;
    let took = t0.elapsed();
    println!("propose without quorum: {r:?} after {took:?}");
    assert!(matches!(r, Err(ClusterError::Unavailable(_)) | Err(ClusterError::NotLeader { .. })), "{r:?}");
    assert!(took < Duration::from_secs(7), "{took:?}");
    assert_eq!(nodes[li].rec.all().len(), before);

    // Restart the stopped nodes from their directories, no bootstrap: they catch up.
    for i in [0, other] {
        let cfg = nodes[i].cfg.clone();
        let rec = nodes[i].rec.clone();
        nodes[i] = Node::start(cfg, rec).await;
        assert!(nodes[i].c().is_initialized(), "node{} lost its membership", i + 1);
    }
    let t0 = Instant::now();
    let mut li2 = None;
    while t0.elapsed() < Duration::from_secs(10) {
        if let Some(l) = leader_index(&nodes)
            && nodes[l].c().propose(entry(130)).await.is_ok()
        {
            li2 = Some(l);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let li2 = li2.expect("a leader accepting proposals after restart");
    acked.push(entry(130));
    wait_until("all three caught up", Duration::from_secs(10), || {
        nodes.iter().all(|n| n.rec.all().iter().any(|e| e == &entry(130)))
    })
    .await;
    let reference = nodes[li2].rec.all();
    for n in &nodes {
        let got = n.rec.all();
        // The restarted nodes re-apply from their saved applied index (the applier here is
        // in memory and kept, so entries must not be handed twice).
        assert_eq!(got, reference, "{}", n.cfg.node_id);
        // No acknowledged entry is missing, and they are in order.
        let mut it = got.iter();
        for a in &acked {
            assert!(it.any(|e| e == a), "{} lacks an acknowledged entry", n.cfg.node_id);
        }
    }
    let st = nodes[li2].c().status();
    println!("final status: {st:?}");
    assert_eq!(st.committed_index, st.applied_index);

    for n in &mut nodes {
        n.stop().await;
    }
}
