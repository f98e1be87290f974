//! Secrets: password hashes, tokens and session ids, and the one-way hashes
//! that are all smolchat stores of them.
//!
//! - Passwords are hashed with Argon2id (RustCrypto `argon2`, the
//!   parameters OWASP recommends: 19 MiB, 2 passes, 1 lane) into a PHC
//!   string with its own random salt. Verifying takes tens of milliseconds
//!   and 19 MiB by design, so callers run it off the executor, a bounded
//!   number at a time.
//! - Tokens and session ids are 32 random bytes from the operating system
//!   (`getrandom`), shown once in Base64url; only their BLAKE2b-256 hash is
//!   kept. A 256-bit random secret needs no slow hash: nobody can guess it,
//!   so a fast lookup by hash is as safe as a password hash is for a
//!   password.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64ct::{Base64UrlUnpadded, Encoding};
use blake2::{Blake2b, Digest};

/// A token's visible prefix, so one is recognisable in a config file.
pub const TOKEN_PREFIX: &str = "sc_";

/// BLAKE2b with a 256-bit output.
type Blake2b256 = Blake2b<blake2::digest::consts::U32>;

/// The stored form of a token or session id.
pub type SecretHash = [u8; 32];

fn argon2() -> Argon2<'static> {
    // 19 MiB, 2 passes, 1 lane: OWASP's recommendation for Argon2id.
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password into a PHC string (`$argon2id$v=19$...`).
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| format!("no randomness: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// A hash of a password nobody knows: verifying against it costs what a
/// real check costs, so an unknown user takes as long as a wrong password.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let mut pw = [0u8; 32];
        let _ = getrandom::getrandom(&mut pw);
        hash_password(&Base64UrlUnpadded::encode_string(&pw)).unwrap_or_default()
    })
}

/// Whether `password` matches the PHC string `hash`. A malformed hash
/// matches nothing (and costs a decoy check, so it is not faster).
pub fn verify_password(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => {
            if let Ok(decoy) = PasswordHash::new(decoy_hash()) {
                let _ = argon2().verify_password(password.as_bytes(), &decoy);
            }
            false
        }
    }
}

/// 32 random bytes in Base64url, with `prefix`.
pub fn new_secret(prefix: &str) -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    Ok(format!(
        "{prefix}{}",
        Base64UrlUnpadded::encode_string(&bytes)
    ))
}

/// The stored hash of a token or session id.
///
/// # Examples
///
/// ```
/// use smolchat::accounts::secret::hash_secret;
///
/// assert_eq!(hash_secret("sc_abc"), hash_secret("sc_abc"));
/// assert_ne!(hash_secret("sc_abc"), hash_secret("sc_abd"));
/// ```
pub fn hash_secret(secret: &str) -> SecretHash {
    Blake2b256::digest(secret.as_bytes()).into()
}

/// A short, public name for a token: the start of its hash, in Base64url.
/// Listing and removing tokens uses it; it reveals nothing of the token.
pub fn token_id(hash: &SecretHash) -> String {
    Base64UrlUnpadded::encode_string(&hash[..TOKEN_ID_LEN / 4 * 3])
}

/// The length of a [`token_id`]: six bytes of the hash in Base64url.
pub const TOKEN_ID_LEN: usize = 8;

/// Decodes the `user:password` of an `Authorization: Basic` value.
///
/// # Examples
///
/// ```
/// use smolchat::accounts::secret::basic_credentials;
///
/// assert_eq!(basic_credentials("YW5hOnMzY3JldA=="), Some(("ana".into(), "s3cret".into())));
/// assert_eq!(basic_credentials("!!"), None);
/// ```
pub fn basic_credentials(value: &str) -> Option<(String, String)> {
    let bytes = base64ct::Base64::decode_vec(value.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_and_a_wrong_one_does_not() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password(&h, "correct horse"));
        assert!(!verify_password(&h, "correct horse "));
        assert!(!verify_password("not a hash", "correct horse"));
        assert_ne!(h, hash_password("correct horse").unwrap(), "salted");
    }

    #[test]
    fn secrets_are_long_random_and_prefixed() {
        let a = new_secret(TOKEN_PREFIX).unwrap();
        let b = new_secret(TOKEN_PREFIX).unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("sc_"));
        assert_eq!(a.len(), 3 + 43, "32 bytes of Base64url");
        assert_eq!(token_id(&hash_secret(&a)).len(), TOKEN_ID_LEN);
    }
}
