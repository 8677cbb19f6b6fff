//! Passwords: Argon2id hashes (PHC strings with their own salt and parameters) and the
//! strength policy recommended by NIST SP 800-63B — a minimum length, no composition
//! rules, and refusal of the most common passwords and of the user's own name.

use std::collections::HashSet;
use std::sync::LazyLock;

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

/// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) of a password.
pub fn hash(password: &str) -> Result<String, AuthError> {
    let salt = random::bytes(16)?;
    let phc = argon2()?.hash_password_with_salt(password.as_bytes(), &salt);
    Ok(phc.map_err(|e| AuthError::Crypto(e.to_string()))?.to_string())
}

/// Does `password` match the stored hash? (Constant-time comparison inside.)
pub fn verify(password: &str, phc: &str) -> bool {
    password.chars().count() <= MAX_LEN && argon2().is_ok_and(|a| a.verify_password(password.as_bytes(), phc).is_ok())
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
        assert!(verify("правильный пароль", &h));
        assert!(!verify("неправильный пароль", &h));
        assert!(!verify("правильный пароль", "not a hash"));
        assert_ne!(hash("правильный пароль").unwrap(), h, "a new salt each time");
        let g = generate().unwrap();
        assert_eq!((g.len(), g.matches('-').count()), (19, 3), "{g}");
        assert!(check_strength(&g, "anna").is_ok());
    }
}
