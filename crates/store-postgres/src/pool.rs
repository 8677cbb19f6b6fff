//! A bounded pool of synchronous PostgreSQL connections: at most `max` are open; a caller
//! that finds none free waits (up to a timeout) instead of opening more, so a burst of
//! requests cannot exhaust the server's `max_connections`.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use postgres::{Client, Config, NoTls, Statement};
use store::{Result, StoreError};

const WAIT: Duration = Duration::from_secs(30);

/// Most statements kept prepared on one connection (then it starts again).
const MAX_STATEMENTS: usize = 512;

/// A connection with the statements prepared on it: each SQL text is parsed once per
/// connection, so running it again costs one round trip instead of two.
pub(crate) struct Session {
    pub client: Client,
    statements: HashMap<String, Statement>,
}

impl Session {
    pub fn new(client: Client) -> Session {
        Session { client, statements: HashMap::new() }
    }

    /// The prepared statement for `sql`.
    pub fn statement(&mut self, sql: &str) -> std::result::Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        if self.statements.len() >= MAX_STATEMENTS {
            self.statements.clear();
        }
        let s = self.client.prepare(sql)?;
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

struct State {
    idle: Vec<Session>,
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
    client: Option<Session>,
}

/// Lock, recovering from a panic in another thread (the pool's state stays consistent).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Pool {
    pub fn new(config: Config, max: usize, first: Client) -> Pool {
        let idle = vec![Session::new(first)];
        Pool { config, max: max.max(1), state: Mutex::new(State { idle, open: 1 }), freed: Condvar::new() }
    }

    pub fn get(&self) -> Result<Pooled<'_>> {
        let mut state = lock(&self.state);
        loop {
            if let Some(c) = state.idle.pop() {
                if c.client.is_closed() {
                    state.open -= 1;
                    continue;
                }
                return Ok(Pooled { pool: self, client: Some(c) });
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match self.config.connect(NoTls) {
                    Ok(c) => Ok(Pooled { pool: self, client: Some(Session::new(c)) }),
                    Err(e) => {
                        self.release(None);
                        Err(crate::connect_error(&self.config, &e))
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
    fn release(&self, client: Option<Session>) {
        let mut state = lock(&self.state);
        match client {
            Some(c) if !c.client.is_closed() => state.idle.push(c),
            _ => state.open = state.open.saturating_sub(1),
        }
        drop(state);
        self.freed.notify_one();
    }
}

impl Pooled<'_> {
    pub fn client(&mut self) -> Result<&mut Session> {
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
