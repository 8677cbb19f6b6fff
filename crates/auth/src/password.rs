//! Passwords: Argon2id hashes (PHC strings with their own salt and parameters) and the
//! strength policy recommended by NIST SP 800-63B — a minimum length, no composition
//! rules, and refusal of the most common passwords and of the user's own name.
//!
//! Each hash costs 19 MiB and most of a core for tens of milliseconds, so hashing runs
//! under a bound of its own ([`set_parallelism`]): at most that many hashes at once, and a
//! short queue behind them; when the queue is full an attempt is refused at once
//! ([`Busy`]) instead of taking the cores the API answers on.

use std::collections::HashSet;
use std::sync::{Condvar, LazyLock, Mutex};

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::{AuthError, random};

/// Shortest password accepted (characters).
pub const MIN_LEN: usize = 10;
/// Longest password accepted (characters): bounds the hashing work per login.
pub const MAX_LEN: usize = 128;

static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../data/common-passwords.txt").lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect()
});

/// Why a password is refused, in words for the person choosing it; `Ok` if acceptable.
pub fn check_strength(password: &str, username: &str) -> Result<(), String> {
    let len = password.chars().count();
    if len < MIN_LEN {
        return Err(format!("The password must have at least {MIN_LEN} characters (it has {len})"));
    }
    if len > MAX_LEN {
        return Err(format!("The password must have at most {MAX_LEN} characters"));
    }
    let lower = password.to_lowercase();
    if COMMON.contains(lower.as_str()) {
        return Err("This password is one of the most commonly used ones; choose another".into());
    }
    if password.chars().all(|c| password.starts_with(c)) {
        return Err("The password must not repeat a single character".into());
    }
    let user = username.to_lowercase();
    if user.chars().count() >= 3 && lower.contains(&user) {
        return Err("The password must not contain the user name".into());
    }
    Ok(())
}

/// Argon2id with the OWASP-recommended cost (19 MiB, 2 passes, 1 lane).
fn argon2() -> Result<Argon2<'static>, AuthError> {
    let params = Params::new(19 * 1024, 2, 1, None).map_err(|e| AuthError::Crypto(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// How many hashes run at once, and how many attempts may wait for one.
struct Pool {
    state: Mutex<(usize, usize)>,
    freed: Condvar,
    limits: Mutex<(usize, usize)>,
}

static POOL: LazyLock<Pool> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    Pool { state: Mutex::new((0, 0)), freed: Condvar::new(), limits: Mutex::new(default_limits(cores)) }
});

/// Half the cores hash (at least one); sixteen attempts per hashing thread may wait.
fn default_limits(cores: usize) -> (usize, usize) {
    let threads = (cores / 2).max(1);
    (threads, threads * 16)
}

/// All hashing threads are busy and the queue behind them is full: try again shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password checks are busy: try again in a moment")]
pub struct Busy;

/// Set how many password hashes may run at once (0: the default, half the cores); the
/// queue behind them holds sixteen attempts per thread.
pub fn set_parallelism(threads: usize) {
    let limits = match threads {
        0 => default_limits(std::thread::available_parallelism().map_or(2, usize::from)),
        n => (n, n * 16),
    };
    *POOL.limits.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = limits;
    POOL.freed.notify_all();
}

/// How many hashes run at once, and how many attempts may wait behind them (for a
/// caller that queues attempts before they reach [`permit`], e.g. without holding a
/// thread while waiting).
pub fn parallelism() -> (usize, usize) {
    *POOL.limits.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A place in the hashing pool, held while one hash runs (and released when dropped).
pub struct Permit(&'static Pool);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).0 -= 1;
        self.0.freed.notify_one();
    }
}

/// Wait for a place in the hashing pool; [`Busy`] at once when its queue is full.
pub fn permit() -> Result<Permit, Busy> {
    let pool: &'static Pool = &POOL;
    let (threads, queue) = *pool.limits.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut st = pool.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if st.0 >= threads {
        if st.1 >= queue {
            return Err(Busy);
        }
        st.1 += 1;
        while st.0 >= threads {
            st = pool.freed.wait(st).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        st.1 -= 1;
    }
    st.0 += 1;
    Ok(Permit(pool))
}

impl Permit {
    /// Does `password` match the stored hash? (Constant-time comparison inside.)
    pub fn verify(&self, password: &str, phc: &str) -> bool {
        password.chars().count() <= MAX_LEN
            && argon2().is_ok_and(|a| a.verify_password(password.as_bytes(), phc).is_ok())
    }
}

/// An Argon2id hash of no one's password, with the same cost as real ones: verified
/// against when a user name does not exist, so that the answer takes as long. Made once,
/// outside the pool, with a fixed salt (nothing to fail on at sign-in time).
pub fn dummy_hash() -> &'static str {
    static DUMMY: LazyLock<String> = LazyLock::new(|| {
        argon2()
            .and_then(|a| {
                a.hash_password_with_salt(b"not a password of anyone", b"medkarta-dummy-salt")
                    .map(|h| h.to_string())
                    .map_err(|e| AuthError::Crypto(e.to_string()))
            })
            .unwrap_or_else(|_| String::from(FALLBACK_DUMMY))
    });
    &DUMMY
}

/// Used only if the dummy cannot be made (it can: fixed input and parameters).
const FALLBACK_DUMMY: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$bWVka2FydGEtZHVtbXktc2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) of a password.
pub fn hash(password: &str) -> Result<String, AuthError> {
    let salt = random::bytes(16)?;
    let hasher = argon2()?;
    let _permit = permit().map_err(|b| AuthError::Crypto(b.to_string()))?;
    let phc = hasher.hash_password_with_salt(password.as_bytes(), &salt).map(|h| h.to_string());
    phc.map_err(|e| AuthError::Crypto(e.to_string()))
}

/// Does `password` match the stored hash? (Constant-time comparison inside.) [`Busy`]
/// when the hashing pool and its queue are full.
pub fn verify(password: &str, phc: &str) -> Result<bool, Busy> {
    Ok(permit()?.verify(password, phc))
}

/// A generated password: 16 readable characters (80 bits), in groups of four.
pub fn generate() -> Result<String, AuthError> {
    let raw = random::readable(16)?;
    let chars: Vec<char> = raw.chars().collect();
    Ok(chars.chunks(4).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strength_policy() {
        assert!(check_strength("short", "anna").unwrap_err().contains("at least 10"));
        assert!(check_strength("qwertyuiop", "anna").unwrap_err().contains("commonly used"));
        assert!(check_strength("QWERTYUIOP", "anna").is_err(), "case does not help");
        assert!(check_strength("йцукенгшщз", "anna").is_err(), "Russian keyboard runs are common too");
        assert!(check_strength("aaaaaaaaaaaa", "anna").is_err());
        assert!(check_strength("petrova-anna-1990", "anna.petrova").is_ok());
        assert!(check_strength("my name is anna.petrova", "anna.petrova").unwrap_err().contains("user name"));
        assert!(check_strength("конь ходит буквой г", "anna").is_ok(), "any characters, spaces included");
        assert!(check_strength(&("x".repeat(10) + &"y".repeat(200)), "anna").is_err());
    }

    #[test]
    fn hashes_verify_and_are_salted() {
        let h = hash("правильный пароль").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert_eq!(verify("правильный пароль", &h), Ok(true));
        assert_eq!(verify("неправильный пароль", &h), Ok(false));
        assert_eq!(verify("правильный пароль", "not a hash"), Ok(false));
        assert_ne!(hash("правильный пароль").unwrap(), h, "a new salt each time");
        let g = generate().unwrap();
        assert_eq!((g.len(), g.matches('-').count()), (19, 3), "{g}");
        assert!(check_strength(&g, "anna").is_ok());
    }

    #[test]
    fn the_dummy_costs_what_a_real_hash_costs() {
        let d = dummy_hash();
        assert!(d.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{d}");
        assert_ne!(d, FALLBACK_DUMMY);
        assert_eq!(verify("not a password of anyone", d), Ok(true), "a real hash, not one that fails to parse");
    }

    #[test]
    fn hashing_is_bounded() {
        // one hash at a time, sixteen waiting: of 40 simultaneous checks at least 23 are
        // refused at once, and every one that runs gives the right answer
        set_parallelism(1);
        let h = hash("правильный пароль").unwrap();
        let start = std::sync::Barrier::new(40);
        let results: Vec<Result<bool, Busy>> = std::thread::scope(|s| {
            let all: Vec<_> = (0..40)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        verify("правильный пароль", &h)
                    })
                })
                .collect();
            all.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let busy = results.iter().filter(|r| r.is_err()).count();
        assert!(busy >= 23, "{busy} of 40 refused");
        assert!(results.iter().all(|r| *r != Ok(false)));
        assert_eq!(verify("правильный пароль", &h), Ok(true), "free again afterwards");
    }
}
