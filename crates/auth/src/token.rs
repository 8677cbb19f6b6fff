//! Signed tokens: ES256 (ECDSA P-256) JSON Web Tokens for access tokens and OpenID
//! Connect ID tokens, the server's key pairs, and their public half as a JWKS document
//! (what clients and resource servers verify with). Keys are generated here and kept by
//! the caller (the database), newest first, so that a rotated key still verifies the
//! tokens it signed until they expire.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::{AuthError, random};

/// A signing key pair (PKCS#8 DER private key) with its key id.
#[derive(Clone)]
pub struct KeyPair {
    pub kid: String,
    pub pkcs8: Vec<u8>,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyPair({}, private key hidden)", self.kid) // never log the private key
    }
}

impl KeyPair {
    pub fn generate() -> Result<KeyPair, AuthError> {
        let doc = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .and_then(|k| k.to_pkcs8v1())
            .map_err(|e| AuthError::Crypto(e.to_string()))?;
        Ok(KeyPair { kid: random::readable(12)?, pkcs8: doc.as_ref().to_vec() })
    }

    /// The uncompressed public point (`04 || x || y`).
    fn public_point(&self) -> Result<Vec<u8>, AuthError> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &self.pkcs8)
            .map_err(|e| AuthError::Crypto(e.to_string()))?;
        Ok(pair.public_key().as_ref().to_vec())
    }
}

/// Signs with the newest key, verifies with any of them.
pub struct Signer {
    keys: Vec<(KeyPair, Vec<u8>)>,
}

impl Signer {
    /// `keys` newest first; at least one.
    pub fn new(keys: Vec<KeyPair>) -> Result<Signer, AuthError> {
        if keys.is_empty() {
            return Err(AuthError::Crypto("no signing key".into()));
        }
        let keys = keys.into_iter().map(|k| k.public_point().map(|p| (k, p))).collect::<Result<_, _>>()?;
        Ok(Signer { keys })
    }

    /// A signed JWT of `claims`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, AuthError> {
        let (key, _) = self.keys.first().ok_or_else(|| AuthError::Crypto("no signing key".into()))?;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(&key.pkcs8))
            .map_err(|e| AuthError::Crypto(e.to_string()))
    }

    /// Verify signature, expiry (no leeway beyond 30 s), issuer and audience.
    pub fn verify<T: DeserializeOwned>(&self, token: &str, issuer: &str, audience: &str) -> Result<T, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::InvalidToken(e.to_string()))?;
        if header.alg != Algorithm::ES256 {
            return Err(AuthError::InvalidToken(format!("algorithm {:?} is not accepted", header.alg)));
        }
        let (_, public) = self
            .keys
            .iter()
            .find(|(k, _)| header.kid.as_deref() == Some(k.kid.as_str()))
            .ok_or_else(|| AuthError::InvalidToken("signed with an unknown key".into()))?;
        let mut v = Validation::new(Algorithm::ES256);
        v.leeway = 30;
        v.set_issuer(&[issuer]);
        v.set_audience(&[audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<T>(token, &DecodingKey::from_ec_der(public), &v)
            .map(|d| d.claims)
            .map_err(|e| AuthError::InvalidToken(e.to_string()))
    }

    /// The public keys as a JWK Set.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .map(|(k, p)| {
                let (x, y) = p.get(1..).map_or((&[][..], &[][..]), |xy| xy.split_at(xy.len() / 2));
                json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": k.kid,
                    "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)})
            })
            .collect();
        json!({ "keys": keys })
    }
}

/// Claims of a client assertion (RFC 7523, SMART Backend Services).
#[derive(serde::Deserialize)]
struct AssertionClaims {
    jti: String,
    exp: u64,
}

/// Algorithms a client may sign its assertions with (SMART requires RS384 and ES384).
const ASSERTION_ALGORITHMS: [Algorithm; 4] = [Algorithm::RS384, Algorithm::ES384, Algorithm::RS256, Algorithm::ES256];

/// The issuer (`iss` = `sub`) a client assertion claims, read before it is verified, to
/// find the client's keys.
pub fn assertion_issuer(assertion: &str) -> Option<String> {
    let payload = assertion.split('.').nth(1)?;
    let v: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    v.get("iss").and_then(Value::as_str).map(str::to_string)
}

/// Verify a client assertion signed with one of the client's registered public keys:
/// signature, `iss` = `sub` = the client, `aud` = our token endpoint, expiry at most five
/// minutes ahead. Returns its `jti` and `exp` (the caller refuses a `jti` seen before).
pub fn verify_assertion(
    jwks: &Value,
    assertion: &str,
    client_id: &str,
    token_url: &str,
    now: u64,
) -> Result<(String, u64), AuthError> {
    let bad = |m: &str| AuthError::InvalidToken(format!("client assertion: {m}"));
    let header = jsonwebtoken::decode_header(assertion).map_err(|e| bad(&e.to_string()))?;
    if !ASSERTION_ALGORITHMS.contains(&header.alg) {
        return Err(bad(&format!("algorithm {:?} is not accepted (RS384, ES384)", header.alg)));
    }
    let set: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(jwks.clone()).map_err(|_| bad("the client's registered key set is unreadable"))?;
    let jwk = match &header.kid {
        Some(kid) => set.find(kid),
        None if set.keys.len() == 1 => set.keys.first(),
        None => None,
    }
    .ok_or_else(|| bad("signed with a key the client has not registered"))?;
    if matches!(jwk.algorithm, jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)) {
        return Err(bad("shared-secret keys are not accepted"));
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(&e.to_string()))?;
    let mut v = Validation::new(header.alg);
    v.leeway = 30;
    v.set_issuer(&[client_id]);
    v.sub = Some(client_id.to_string());
    v.set_audience(&[token_url]);
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud", "jti"]);
    let claims = jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &v).map_err(|e| bad(&e.to_string()))?.claims;
    if claims.exp > now + 300 + 30 {
        return Err(bad("exp is more than five minutes ahead"));
    }
    Ok((claims.jti, claims.exp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Claims {
        iss: String,
        sub: String,
        aud: String,
        exp: u64,
        scope: String,
    }

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    }

    fn claims(exp: u64) -> Claims {
        Claims {
            iss: "https://mk".into(),
            sub: "anna".into(),
            aud: "https://mk/fhir".into(),
            exp,
            scope: "openid".into(),
        }
    }

    #[test]
    fn sign_verify_and_rotate() {
        let old = KeyPair::generate().unwrap();
        let signer = Signer::new(vec![old.clone()]).unwrap();
        let t = signer.sign(&claims(now() + 300)).unwrap();
        assert_eq!(
            signer.verify::<Claims>(&t, "https://mk", "https://mk/fhir").unwrap(),
            claims(now() + 300).with_exp(&t)
        );
        // a newer key signs; the old one still verifies what it signed
        let rotated = Signer::new(vec![KeyPair::generate().unwrap(), old]).unwrap();
        assert!(rotated.verify::<Claims>(&t, "https://mk", "https://mk/fhir").is_ok());
        assert_eq!(rotated.jwks()["keys"].as_array().unwrap().len(), 2);
        // a key we do not have, another audience or issuer, expiry, tampering
        let stranger = Signer::new(vec![KeyPair::generate().unwrap()]).unwrap();
        assert!(stranger.verify::<Claims>(&t, "https://mk", "https://mk/fhir").is_err());
        assert!(signer.verify::<Claims>(&t, "https://mk", "https://other/fhir").is_err());
        assert!(signer.verify::<Claims>(&t, "https://evil", "https://mk/fhir").is_err());
        let expired = signer.sign(&claims(now() - 120)).unwrap();
        assert!(signer.verify::<Claims>(&expired, "https://mk", "https://mk/fhir").is_err());
        let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(now() + 9999)).unwrap());
        assert!(signer.verify::<Claims>(&parts.join("."), "https://mk", "https://mk/fhir").is_err());
        assert!(!format!("{:?}", signer.keys[0].0).contains(&format!("{:?}", signer.keys[0].0.pkcs8)));
    }

    impl Claims {
        fn with_exp(mut self, token: &str) -> Claims {
            let payload = token.split('.').nth(1).unwrap();
            let v: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
            self.exp = v["exp"].as_u64().unwrap();
            self
        }
    }
}
