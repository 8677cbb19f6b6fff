//! A bounded pool of synchronous PostgreSQL connections: at most `max` are open; a caller
//! that finds none free waits (up to a timeout) instead of opening more, so a burst of
//! requests cannot exhaust the server's `max_connections`.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use postgres::{Client, Config, NoTls};
use store::{Result, StoreError};

const WAIT: Duration = Duration::from_secs(30);

struct State {
    idle: Vec<Client>,
    open: usize,
}

pub(crate) struct Pool {
    config: Config,
    max: usize,
    state: Mutex<State>,
    freed: Condvar,
}

/// A connection on loan; it goes back to the pool when dropped.
pub(crate) struct Pooled<'a> {
    pool: &'a Pool,
    client: Option<Client>,
}

/// Lock, recovering from a panic in another thread (the pool's state stays consistent).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Pool {
    pub fn new(config: Config, max: usize, first: Client) -> Pool {
        Pool { config, max: max.max(1), state: Mutex::new(State { idle: vec![first], open: 1 }), freed: Condvar::new() }
    }

    pub fn get(&self) -> Result<Pooled<'_>> {
        let mut state = lock(&self.state);
        loop {
            if let Some(c) = state.idle.pop() {
                if c.is_closed() {
                    state.open -= 1;
                    continue;
                }
                return Ok(Pooled { pool: self, client: Some(c) });
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match self.config.connect(NoTls) {
                    Ok(c) => Ok(Pooled { pool: self, client: Some(c) }),
                    Err(e) => {
                        self.release(None);
                        Err(StoreError::Unavailable(format!("cannot connect to PostgreSQL: {e}")))
                    }
                };
            }
            let (next, timeout) = self.freed.wait_timeout(state, WAIT).unwrap_or_else(PoisonError::into_inner);
            state = next;
            if timeout.timed_out() && state.idle.is_empty() && state.open >= self.max {
                return Err(StoreError::Unavailable(format!("all {} database connections are busy", self.max)));
            }
        }
    }

    /// Take a connection back (`None`: it was lost).
    fn release(&self, client: Option<Client>) {
        let mut state = lock(&self.state);
        match client {
            Some(c) if !c.is_closed() => state.idle.push(c),
            _ => state.open = state.open.saturating_sub(1),
        }
        drop(state);
        self.freed.notify_one();
    }
}

impl Pooled<'_> {
    pub fn client(&mut self) -> Result<&mut Client> {
        self.client.as_mut().ok_or_else(|| StoreError::Backend("the connection was already returned".into()))
    }

    /// The connection is in an unknown state: close it instead of reusing it.
    pub fn discard(mut self) {
        self.client = None;
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let client = self.client.take();
        self.pool.release(client);
    }
}
