//! A small connection pool, the way Go's `database/sql` is set up by Vault's plugins: at most
//! `max_open` connections exist (in use or idle), at most `max_idle` wait idle, none is used
//! past `max_lifetime`, and new credentials retire every connection opened with the old ones.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};
use zeroize::Zeroizing;

use super::DbError;

/// How a pool opens and checks connections of one kind of database.
pub(super) trait Connector: Send + Sync {
    type Conn: Send;
    /// Opens a connection with `password`. Errors are already redacted.
    fn open(&self, password: &str) -> impl Future<Output = Result<Self::Conn, DbError>> + Send;
    /// Whether an idle connection can still be used (it may ask the server).
    fn check(&self, conn: &mut Self::Conn) -> impl Future<Output = bool> + Send;
}

/// Pool sizes; see [`super::ConnectionConfig`].
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    pub max_open: usize,
    pub max_idle: usize,
    /// `None`: connections live as long as the server lets them.
    pub max_lifetime: Option<Duration>,
}

pub(super) struct Pool<K: Connector> {
    connector: K,
    password: RwLock<Zeroizing<String>>,
    slots: Semaphore,
    idle: Mutex<Vec<Idle<K::Conn>>>,
    generation: AtomicU64,
    limits: Limits,
}

struct Idle<C> {
    conn: C,
    born: Instant,
    generation: u64,
}

/// A connection taken from the pool; it goes back when dropped, unless it is left
/// [`Pooled::unsettled`] (a call cancelled or failed mid-transaction may leave a transaction
/// open on it, which the next user must not inherit).
pub(super) struct Pooled<'a, K: Connector> {
    conn: Option<K::Conn>,
    settled: bool,
    born: Instant,
    generation: u64,
    pool: &'a Pool<K>,
    _slot: SemaphorePermit<'a>,
}

impl<K: Connector> Pool<K> {
    pub(super) fn new(connector: K, password: Zeroizing<String>, limits: Limits) -> Self {
        let max_open = limits.max_open.max(1);
        let limits = Limits { max_open, max_idle: limits.max_idle.min(max_open), ..limits };
        Pool {
            connector,
            password: RwLock::new(password),
            slots: Semaphore::new(max_open),
            idle: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
            limits,
        }
    }

    #[cfg(test)]
    pub(super) fn connector(&self) -> &K {
        &self.connector
    }

    /// The current password, for redacting messages.
    pub(super) fn password(&self) -> Zeroizing<String> {
        self.password.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Waits for a free slot, then hands out an idle connection that still works or opens one.
    pub(super) async fn get(&self) -> Result<Pooled<'_, K>, DbError> {
        let slot = self.slots.acquire().await.map_err(|_| DbError::Connect("the connection pool is closed".into()))?;
        let generation = self.generation.load(Ordering::Acquire);
        while let Some(mut idle) = self.pop_idle() {
            if idle.generation == generation && !self.expired(idle.born) && self.connector.check(&mut idle.conn).await {
                return Ok(Pooled {
                    conn: Some(idle.conn),
                    settled: true,
                    born: idle.born,
                    generation,
                    pool: self,
                    _slot: slot,
                });
            }
        }
        let password = self.password();
        let conn = self.connector.open(&password).await?;
        Ok(Pooled { conn: Some(conn), settled: true, born: Instant::now(), generation, pool: self, _slot: slot })
    }

    /// Sets new credentials: idle connections are closed now, the ones in use when they return.
    pub(super) fn set_password(&self, password: Zeroizing<String>) {
        *self.password.write().unwrap_or_else(PoisonError::into_inner) = password;
        self.retire_all();
    }

    /// Closes the idle connections and marks those in use to be closed when they return.
    pub(super) fn retire_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.idle_list().clear();
    }

    fn pop_idle(&self) -> Option<Idle<K::Conn>> {
        self.idle_list().pop()
    }

    fn idle_list(&self) -> MutexGuard<'_, Vec<Idle<K::Conn>>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn expired(&self, born: Instant) -> bool {
        self.limits.max_lifetime.is_some_and(|life| born.elapsed() >= life)
    }

    fn give_back(&self, conn: K::Conn, born: Instant, generation: u64) {
        if generation != self.generation.load(Ordering::Acquire) || self.expired(born) {
            return;
        }
        let mut idle = self.idle_list();
        if idle.len() < self.limits.max_idle {
            idle.push(Idle { conn, born, generation });
        }
    }
}

impl<K: Connector> Pooled<'_, K> {
    /// `true`: the connection is mid-way through something (it is closed, not returned, if
    /// dropped now); `false`: it is back in a clean state.
    pub(super) fn unsettled(&mut self, unsettled: bool) {
        self.settled = !unsettled;
    }

    /// The connection (an error only if it was already let go, which this API never does).
    pub(super) fn conn(&mut self) -> Result<&mut K::Conn, DbError> {
        self.conn.as_mut().ok_or_else(|| DbError::Connect("the connection was already released".into()))
    }
}

impl<K: Connector> Drop for Pooled<'_, K> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.settled
        {
            self.pool.give_back(conn, self.born, self.generation);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Counts connections alive; each remembers the password it was opened with.
    struct Fake {
        alive: Arc<AtomicUsize>,
        opened: AtomicUsize,
    }

    struct FakeConn {
        password: String,
        alive: Arc<AtomicUsize>,
    }

    impl Drop for FakeConn {
        fn drop(&mut self) {
            self.alive.fetch_sub(1, Ordering::SeqCst);
        }
    }

    impl Connector for Fake {
        type Conn = FakeConn;
        async fn open(&self, password: &str) -> Result<FakeConn, DbError> {
            if password == "wrong" {
                return Err(DbError::Connect("refused".into()));
            }
            self.opened.fetch_add(1, Ordering::SeqCst);
            self.alive.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(FakeConn { password: password.to_string(), alive: self.alive.clone() })
        }
        async fn check(&self, _: &mut FakeConn) -> bool {
            true
        }
    }

    fn pool(max_open: usize, max_idle: usize, life: Option<Duration>) -> (Arc<Pool<Fake>>, Arc<AtomicUsize>) {
        let alive = Arc::new(AtomicUsize::new(0));
        let fake = Fake { alive: alive.clone(), opened: AtomicUsize::new(0) };
        let limits = Limits { max_open, max_idle, max_lifetime: life };
        (Arc::new(Pool::new(fake, Zeroizing::new("pw".into()), limits)), alive)
    }

    #[tokio::test]
    async fn never_more_than_max_open_connections() {
        let (pool, alive) = pool(3, 3, None);
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (pool, alive, peak) = (pool.clone(), alive.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                let conn = pool.get().await.expect("conn");
                peak.fetch_max(alive.load(Ordering::SeqCst), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(conn);
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        assert_eq!(alive.load(Ordering::SeqCst), 3, "three stay idle");
        assert_eq!(pool.connector().opened.load(Ordering::SeqCst), 3, "idle ones are reused");
    }

    #[tokio::test]
    async fn keeps_at_most_max_idle() {
        let (pool, alive) = pool(4, 1, None);
        let a = pool.get().await.expect("a");
        let b = pool.get().await.expect("b");
        assert_eq!(alive.load(Ordering::SeqCst), 2);
        drop(a);
        drop(b);
        assert_eq!(alive.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn lifetime_and_new_password_retire_connections() {
        let (pool, alive) = pool(2, 2, Some(Duration::from_millis(30)));
        drop(pool.get().await.expect("first"));
        tokio::time::sleep(Duration::from_millis(40)).await;
        drop(pool.get().await.expect("second"));
        assert_eq!(pool.connector().opened.load(Ordering::SeqCst), 2, "the expired one was not reused");

        let in_use = pool.get().await.expect("in use");
        pool.set_password(Zeroizing::new("new".into()));
        let mut fresh = pool.get().await.expect("fresh");
        assert_eq!(fresh.conn().expect("conn").password, "new");
        drop(in_use);
        drop(fresh);
        assert_eq!(alive.load(Ordering::SeqCst), 1, "the old-password one is closed on return");
        assert_eq!(pool.get().await.expect("again").conn().expect("conn").password, "new");
    }

    #[tokio::test]
    async fn failures_and_unsettled_connections_free_the_slot() {
        let (pool, alive) = pool(1, 1, None);
        pool.set_password(Zeroizing::new("wrong".into()));
        assert!(pool.get().await.is_err());
        pool.set_password(Zeroizing::new("pw".into()));
        pool.get().await.expect("slot is free").unsettled(true);
        assert_eq!(alive.load(Ordering::SeqCst), 0, "an unsettled connection is closed");
        assert!(pool.get().await.is_ok());
    }
}
