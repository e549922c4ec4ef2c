//! JSON Web Tokens: the compact JWS serialization, its signature, and the registered claims.
//!
//! A JWT (RFC 7519) sent as a bearer token is a JWS in compact serialization (RFC 7515 section
//! 7.1): three base64url segments without padding, joined by dots.
//!
//! ```text
//!   eyJhbGciOi...   .   eyJzdWIiOi...   .   SflKxwRJSM...
//!   BASE64URL(header)   BASE64URL(claims)   BASE64URL(signature)
//!   \_____________ signing input _______/
//!
//!   header  {"alg":"RS256","kid":"2024-05","typ":"JWT"}      RFC 7515 section 4.1
//!   claims  {"sub":"u1","iss":"...","aud":"...","exp":1716000000}   RFC 7519 section 4.1
//! ```
//!
//! The order of checks is the defence (RFC 8725, JWT best current practice):
//!
//! 1. **Size first.** A token over `max_token_bytes` is refused before it is decoded.
//! 2. **Shape.** Exactly three segments (five would be a JWE, RFC 7516, which is not accepted),
//!    strict base64url without padding (RFC 7515 section 2), a header that is a JSON object.
//!    A header repeating a member the gateway reads (`alg`, `kid`, `crit`, ...) is malformed
//!    and refused (RFC 7515 section 4 lets a parser either refuse it or take the last one;
//!    refusing leaves no doubt which `alg` counts).
//! 3. **The algorithm, before any crypto.** `alg: none` is refused always (RFC 8725 section
//!    3.2); any other `alg` must be on the gateway's allowlist (section 3.1), *and* it must be
//!    the one algorithm the chosen key verifies. The key's algorithm comes from the key set,
//!    never from the token: an RSA public key is never used as an HMAC secret (the
//!    algorithm-confusion attack, section 2.1). `jku`, `x5u` and `jwk` in the header are
//!    ignored: a token never chooses its own key (section 3.10). A `crit` header is refused,
//!    as RFC 7515 section 4.1.11 requires of extensions we do not understand. `typ`, when
//!    present, must say `JWT` or `at+jwt` (section 3.11, RFC 9068).
//! 4. **The signature** (RFC 7518 section 3): HS256 is HMAC-SHA-256 with an `oct` key
//!    (compared in constant time by ring); RS256 is RSASSA-PKCS1-v1_5 with SHA-256 and a
//!    modulus of at least 2048 bits (section 3.3); ES256 is ECDSA P-256 with SHA-256 and the
//!    signature is the fixed 64 bytes `R || S` (section 3.4), not DER.
//! 5. **The claims, only once the signature holds.** `exp` is required (a gateway credential
//!    that never expires can never be revoked) and the token is expired from `exp + leeway`
//!    on (RFC 7519 section 4.1.4: "the current time MUST be before"); it is not yet valid while
//!    `now + leeway < nbf` (section 4.1.5) or `now + leeway < iat`. NumericDates may carry a
//!    fraction (section 2). `iss` must equal one accepted issuer (section 4.1.1) and `aud`, a
//!    string or an array of strings, must contain one accepted audience (section 4.1.3).
//!
//! Every failure is a [`JwtError`] whose message is fixed and safe to show a client: it never
//! quotes the token or says how far parsing got.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::jwks::{Jwk, KeyMaterial};

/// Length of an ES256 signature: `R || S`, 32 bytes each (RFC 7518 section 3.4).
const ES256_SIGNATURE_BYTES: usize = 64;

/// The algorithms the gateway verifies (RFC 7518 section 3.1 names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// HMAC with SHA-256, a shared secret.
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// ECDSA with P-256 and SHA-256.
    Es256,
}

impl Algorithm {
    /// The algorithm a JWA name stands for; names are case-sensitive (RFC 7515 section 4.1.1).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "HS256" => Some(Algorithm::Hs256),
            "RS256" => Some(Algorithm::Rs256),
            "ES256" => Some(Algorithm::Es256),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Hs256 => "HS256",
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
        }
    }
}

/// Why a token was refused. The messages are the `error_description` a client sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("token too large")]
    TooLarge,
    #[error("malformed token")]
    Malformed,
    #[error("unsecured tokens (alg none) are not accepted")]
    Unsecured,
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    #[error("algorithm not allowed for this key")]
    KeyAlgorithmMismatch,
    #[error("unsupported token type")]
    UnsupportedType,
    #[error("unsupported critical header")]
    CriticalHeader,
    #[error("token has no key id")]
    MissingKeyId,
    #[error("unknown key id")]
    UnknownKeyId,
    #[error("signature does not verify")]
    BadSignature,
    #[error("malformed claims")]
    MalformedClaims,
    #[error("token has no expiry")]
    MissingExpiry,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token issued in the future")]
    IssuedInFuture,
    #[error("issuer not accepted")]
    WrongIssuer,
    #[error("audience not accepted")]
    WrongAudience,
    #[error("claim cannot be forwarded as a header")]
    ClaimNotForwardable,
}

/// The JOSE header members the gateway reads (RFC 7515 section 4.1); the rest are ignored.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

/// A token whose shape and algorithm passed, its signature not yet checked.
#[derive(Debug)]
pub(crate) struct Compact<'a> {
    pub alg: Algorithm,
    pub kid: Option<String>,
    /// `BASE64URL(header) . BASE64URL(claims)`, what the signature covers.
    signing_input: &'a str,
    payload: &'a str,
    signature: Vec<u8>,
}

/// Steps 1 to 3 of the module doc: size, shape, and the algorithm against `allowed`.
pub(crate) fn parse<'a>(
    token: &'a str,
    max_bytes: usize,
    allowed: &[Algorithm],
) -> Result<Compact<'a>, JwtError> {
    if token.len() > max_bytes {
        return Err(JwtError::TooLarge);
    }
    let mut segments = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(JwtError::Malformed);
    };
    let header_json = decode_segment(header)?;
    let raw: RawHeader = serde_json::from_slice(&header_json).map_err(|_| JwtError::Malformed)?;
    if raw.alg.eq_ignore_ascii_case("none") {
        return Err(JwtError::Unsecured);
    }
    let alg = Algorithm::from_name(&raw.alg)
        .filter(|alg| allowed.contains(alg))
        .ok_or(JwtError::AlgorithmNotAllowed)?;
    if raw.crit.is_some() {
        return Err(JwtError::CriticalHeader);
    }
    if let Some(typ) = &raw.typ
        && !is_jwt_type(typ)
    {
        return Err(JwtError::UnsupportedType);
    }
    let signature = decode_segment(signature)?;
    // The payload is decoded only after the signature verifies, but its alphabet is checked
    // now so that every malformed token fails the same way, before any crypto.
    if payload.is_empty() || !payload.bytes().all(is_base64url_byte) {
        return Err(JwtError::Malformed);
    }
    Ok(Compact {
        alg,
        kid: raw.kid,
        signing_input: &token[..header.len() + 1 + payload.len()],
        payload,
        signature,
    })
}

/// `JWT`, `at+jwt` (RFC 9068 section 2.1), with or without the `application/` prefix, any case
/// (RFC 7515 section 4.1.9).
fn is_jwt_type(typ: &str) -> bool {
    let typ = typ.to_ascii_lowercase();
    let typ = typ.strip_prefix("application/").unwrap_or(&typ);
    typ == "jwt" || typ == "at+jwt"
}

fn is_base64url_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Strict base64url without padding: `=`, `+`, `/`, whitespace and non-canonical trailing bits
/// are all refused.
fn decode_segment(segment: &str) -> Result<Vec<u8>, JwtError> {
    if segment.is_empty() {
        return Err(JwtError::Malformed);
    }
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwtError::Malformed)
}

impl Compact<'_> {
    /// Step 4: the signature, with `key`, which must be the key's one algorithm.
    pub(crate) fn verify(&self, key: &Jwk) -> Result<(), JwtError> {
        if key.alg != self.alg {
            return Err(JwtError::KeyAlgorithmMismatch);
        }
        let message = self.signing_input.as_bytes();
        let verified = match &key.material {
            KeyMaterial::Oct(secret) => ring::hmac::verify(secret, message, &self.signature),
            KeyMaterial::Rsa(components) => {
                components.verify(&RSA_PKCS1_2048_8192_SHA256, message, &self.signature)
            }
            KeyMaterial::Ec(point) => {
                if self.signature.len() != ES256_SIGNATURE_BYTES {
                    return Err(JwtError::BadSignature);
                }
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, &self.signature)
            }
        };
        verified.map_err(|_| JwtError::BadSignature)
    }

    /// The claims set, a JSON object (RFC 7519 section 7.2 step 10). Call after [`verify`].
    ///
    /// [`verify`]: Compact::verify
    pub(crate) fn claims(&self) -> Result<Map<String, Value>, JwtError> {
        let json = decode_segment(self.payload)?;
        match serde_json::from_slice(&json) {
            Ok(Value::Object(claims)) => Ok(claims),
            _ => Err(JwtError::MalformedClaims),
        }
    }
}

/// Step 5: what the registered claims must say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClaimRules {
    /// Accepted `iss`; empty: not checked.
    pub issuers: Vec<String>,
    /// `aud` must contain one of these; empty: not checked.
    pub audiences: Vec<String>,
    pub leeway_s: u64,
}

impl ClaimRules {
    pub(crate) fn check(
        &self,
        claims: &Map<String, Value>,
        now_unix_s: u64,
    ) -> Result<(), JwtError> {
        let now = now_unix_s as f64;
        let leeway = self.leeway_s as f64;
        let exp = numeric_date(claims.get("exp"))?.ok_or(JwtError::MissingExpiry)?;
        if now >= exp + leeway {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = numeric_date(claims.get("nbf"))?
            && now + leeway < nbf
        {
            return Err(JwtError::NotYetValid);
        }
        if let Some(iat) = numeric_date(claims.get("iat"))?
            && now + leeway < iat
        {
            return Err(JwtError::IssuedInFuture);
        }
        if !self.issuers.is_empty() {
            let iss = claims.get("iss").and_then(Value::as_str);
            if !iss.is_some_and(|iss| self.issuers.iter().any(|accepted| accepted == iss)) {
                return Err(JwtError::WrongIssuer);
            }
        }
        if !self.audiences.is_empty() && !self.audience_accepted(claims.get("aud"))? {
            return Err(JwtError::WrongAudience);
        }
        Ok(())
    }

    /// The times at which the time claims of `claims` hold, leeway included. `check` must
    /// have passed: then the times are numbers and `exp` is present.
    pub(crate) fn validity(&self, claims: &Map<String, Value>) -> Validity {
        let leeway = self.leeway_s as f64;
        let date = |name| numeric_date(claims.get(name)).ok().flatten();
        let starts = [date("nbf"), date("iat")]
            .into_iter()
            .flatten()
            .fold(f64::NEG_INFINITY, f64::max);
        Validity {
            from: starts - leeway,
            until: date("exp").map_or(f64::NEG_INFINITY, |exp| exp + leeway),
        }
    }

    /// `aud` is one string or an array of strings (RFC 7519 section 4.1.3).
    fn audience_accepted(&self, aud: Option<&Value>) -> Result<bool, JwtError> {
        let accepted = |aud: &str| self.audiences.iter().any(|a| a == aud);
        match aud {
            None => Ok(false),
            Some(Value::String(aud)) => Ok(accepted(aud)),
            Some(Value::Array(auds)) => {
                let mut found = false;
                for aud in auds {
                    let aud = aud.as_str().ok_or(JwtError::MalformedClaims)?;
                    found |= accepted(aud);
                }
                Ok(found)
            }
            Some(_) => Err(JwtError::MalformedClaims),
        }
    }
}

/// When a token's time claims hold: from `from` (`nbf` and `iat` less the leeway) until
/// `until` (`exp` plus the leeway), the same comparisons as [`ClaimRules::check`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Validity {
    from: f64,
    until: f64,
}

impl Validity {
    pub(crate) fn holds_at(&self, now_unix_s: u64) -> bool {
        let now = now_unix_s as f64;
        now >= self.from && now < self.until
    }
}

/// A NumericDate (RFC 7519 section 2): seconds since the epoch, possibly fractional.
fn numeric_date(value: Option<&Value>) -> Result<Option<f64>, JwtError> {
    match value {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_f64().map(Some).ok_or(JwtError::MalformedClaims),
        Some(_) => Err(JwtError::MalformedClaims),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ALL: [Algorithm; 3] = [Algorithm::Hs256, Algorithm::Rs256, Algorithm::Es256];

    fn segment(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    fn token_with_header(header: Value) -> String {
        format!("{}.{}.c2ln", segment(&header), segment(&json!({"exp": 1})))
    }

    #[test]
    fn shape_is_strict() {
        let good = token_with_header(json!({"alg": "HS256"}));
        assert!(parse(&good, 8192, &ALL).is_ok());
        let (head, rest) = good.split_once('.').expect("has dots");
        let cases = [
            "".to_owned(),
            "a.b".to_owned(),
            format!("{good}.x.y"),
            format!("{head}.{rest}="),
            format!("{head}=.{rest}"),
            format!("{head}.{rest}+"),
            format!("{}.{rest}", URL_SAFE_NO_PAD.encode("not json")),
            format!("{}.{rest}", URL_SAFE_NO_PAD.encode("[1,2]")),
            format!("{head}..c2ln"),
            format!("{head}.e30."),
            token_with_header(json!({"alg": 256})),
            token_with_header(json!({"kid": "k"})),
            // A repeated member: which `alg` would count is exactly the doubt to avoid.
            format!(
                "{}.{rest}",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","alg":"RS256"}"#)
            ),
        ];
        for token in cases {
            assert_eq!(
                parse(&token, 8192, &ALL).map(|_| ()),
                Err(JwtError::Malformed),
                "{token}"
            );
        }
    }

    #[test]
    fn size_is_checked_before_decoding() {
        let token = "!".repeat(300);
        assert_eq!(
            parse(&token, 299, &ALL).map(|_| ()),
            Err(JwtError::TooLarge)
        );
        assert_eq!(
            parse(&token, 300, &ALL).map(|_| ()),
            Err(JwtError::Malformed)
        );
    }

    #[test]
    fn algorithm_is_checked_before_the_key() {
        for alg in ["none", "None", "NONE"] {
            let token = token_with_header(json!({"alg": alg}));
            assert_eq!(
                parse(&token, 8192, &ALL).map(|_| ()),
                Err(JwtError::Unsecured)
            );
        }
        for alg in ["HS512", "rs256", "PS256", "EdDSA"] {
            let token = token_with_header(json!({"alg": alg}));
            assert_eq!(
                parse(&token, 8192, &ALL).map(|_| ()),
                Err(JwtError::AlgorithmNotAllowed)
            );
        }
        let token = token_with_header(json!({"alg": "HS256"}));
        let allowed = [Algorithm::Rs256];
        assert_eq!(
            parse(&token, 8192, &allowed).map(|_| ()),
            Err(JwtError::AlgorithmNotAllowed)
        );
    }

    #[test]
    fn typ_and_crit_headers() {
        for typ in ["JWT", "jwt", "at+jwt", "application/at+JWT"] {
            let token = token_with_header(json!({"alg": "ES256", "typ": typ}));
            assert!(parse(&token, 8192, &ALL).is_ok(), "{typ}");
        }
        let token = token_with_header(json!({"alg": "ES256", "typ": "JOSE+JSON"}));
        assert_eq!(
            parse(&token, 8192, &ALL).map(|_| ()),
            Err(JwtError::UnsupportedType)
        );
        let token = token_with_header(json!({"alg": "ES256", "crit": ["exp"], "exp": 1}));
        assert_eq!(
            parse(&token, 8192, &ALL).map(|_| ()),
            Err(JwtError::CriticalHeader)
        );
    }

    fn rules(leeway_s: u64) -> ClaimRules {
        ClaimRules {
            issuers: vec!["https://issuer.test".into()],
            audiences: vec!["orders".into(), "billing".into()],
            leeway_s,
        }
    }

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("claims are an object"),
        }
    }

    fn base() -> Value {
        json!({"iss": "https://issuer.test", "aud": "orders", "exp": 1000})
    }

    #[test]
    fn exp_with_leeway_edges() {
        let rules = rules(60);
        let c = claims(base());
        assert_eq!(rules.check(&c, 1059), Ok(()));
        assert_eq!(
            rules.check(&c, 1060),
            Err(JwtError::Expired),
            "exactly exp + leeway"
        );
        let strict = ClaimRules {
            leeway_s: 0,
            ..rules.clone()
        };
        assert_eq!(strict.check(&c, 999), Ok(()));
        assert_eq!(
            strict.check(&c, 1000),
            Err(JwtError::Expired),
            "exactly exp"
        );
        let fractional =
            claims(json!({"exp": 1000.5, "iss": "https://issuer.test", "aud": "orders"}));
        assert_eq!(strict.check(&fractional, 1000), Ok(()));
        assert_eq!(strict.check(&fractional, 1001), Err(JwtError::Expired));
    }

    #[test]
    fn nbf_and_iat_with_leeway_edges() {
        let rules = rules(60);
        let mut value = base();
        value["exp"] = json!(5000);
        value["nbf"] = json!(2000);
        let c = claims(value.clone());
        assert_eq!(rules.check(&c, 1940), Ok(()), "exactly nbf - leeway");
        assert_eq!(rules.check(&c, 1939), Err(JwtError::NotYetValid));
        value["nbf"] = json!(0);
        value["iat"] = json!(2000);
        let c = claims(value);
        assert_eq!(rules.check(&c, 1940), Ok(()));
        assert_eq!(rules.check(&c, 1939), Err(JwtError::IssuedInFuture));
    }

    #[test]
    fn validity_agrees_with_the_time_checks() {
        let mut cases = vec![base()];
        let mut with = base();
        with["exp"] = json!(5000.5);
        with["nbf"] = json!(2000);
        with["iat"] = json!(2500);
        cases.push(with.clone());
        with["iat"] = json!(1500.25);
        cases.push(with);
        for leeway in [0, 60] {
            let rules = rules(leeway);
            for case in &cases {
                let c = claims(case.clone());
                let validity = rules.validity(&c);
                for now in (0..6000)
                    .step_by(7)
                    .chain([939, 940, 999, 1000, 1059, 1060])
                {
                    let by_check = rules.check(&c, now).is_ok();
                    assert_eq!(
                        validity.holds_at(now),
                        by_check,
                        "{case} at {now}, leeway {leeway}"
                    );
                }
            }
        }
    }

    #[test]
    fn exp_is_required_and_dates_are_numbers() {
        let rules = rules(0);
        let mut value = base();
        value.as_object_mut().map(|c| c.remove("exp"));
        assert_eq!(
            rules.check(&claims(value.clone()), 1),
            Err(JwtError::MissingExpiry)
        );
        value["exp"] = json!("1000");
        assert_eq!(
            rules.check(&claims(value), 1),
            Err(JwtError::MalformedClaims)
        );
    }

    #[test]
    fn issuer_must_match_exactly() {
        let rules = rules(0);
        for iss in [
            json!("https://issuer.test/"),
            json!("https://evil.test"),
            json!(["https://issuer.test"]),
        ] {
            let mut value = base();
            value["iss"] = iss;
            assert_eq!(rules.check(&claims(value), 1), Err(JwtError::WrongIssuer));
        }
        let mut value = base();
        value.as_object_mut().map(|c| c.remove("iss"));
        assert_eq!(rules.check(&claims(value), 1), Err(JwtError::WrongIssuer));
        let unchecked = ClaimRules {
            issuers: vec![],
            ..rules
        };
        let mut value = base();
        value["iss"] = json!("anyone");
        assert_eq!(unchecked.check(&claims(value), 1), Ok(()));
    }

    #[test]
    fn audience_as_string_or_array() {
        let rules = rules(0);
        let cases = [
            (json!("billing"), Ok(())),
            (json!(["other", "billing"]), Ok(())),
            (json!("other"), Err(JwtError::WrongAudience)),
            (json!([]), Err(JwtError::WrongAudience)),
            (json!(["other", 5]), Err(JwtError::MalformedClaims)),
            (json!({"aud": "orders"}), Err(JwtError::MalformedClaims)),
        ];
        for (aud, expected) in cases {
            let mut value = base();
            value["aud"] = aud.clone();
            assert_eq!(rules.check(&claims(value), 1), expected, "{aud}");
        }
        let mut value = base();
        value.as_object_mut().map(|c| c.remove("aud"));
        assert_eq!(rules.check(&claims(value), 1), Err(JwtError::WrongAudience));
    }
}
