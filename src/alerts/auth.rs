//! Authentication of inbound alert webhooks: pure functions over header
//! values and the raw body.
//!
//! | sender | mechanism | function |
//! |---|---|---|
//! | Alertmanager | `http_config.authorization` (Bearer) | [`verify_bearer`] |
//! | Alertmanager | `http_config.basic_auth` | [`verify_basic`] |
//! | Grafana | `X-Grafana-Alerting-Signature` HMAC | [`verify_grafana_signature`] |
//! | PagerDuty | `X-PagerDuty-Signature` HMAC list | [`verify_pagerduty_signature`] |
//! | generic | Bearer or Basic | [`verify_bearer`], [`verify_basic`] |
//!
//! Header values are passed as `Option<&str>` (`None` = header absent) so
//! the HTTP layer does the extraction and these functions stay testable.
//! Signatures must be checked over the *raw* body bytes, before parsing.
//!
//! Every secret comparison is constant-time: HMACs via
//! [`hmac::Mac::verify_slice`], tokens and passwords by comparing SHA-256
//! digests with [`subtle`], which also hides the expected length.
//!
//! [`AuthError::kind`] tells the route how to answer: [`AuthFailure::Missing`]
//! and [`AuthFailure::Malformed`] are client configuration mistakes (PagerDuty
//! recommends 400 so it stops redelivering), [`AuthFailure::Wrong`] is a
//! credential mismatch (401/403). Messages say what to configure and never
//! contain the expected secret.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Bytes in an HMAC-SHA256 tag (64 hex digits).
const HMAC_SHA256_LEN: usize = 32;

/// Grafana's default signature header name (configurable in Grafana).
pub const GRAFANA_SIGNATURE_HEADER: &str = "X-Grafana-Alerting-Signature";
/// PagerDuty's signature header name.
pub const PAGERDUTY_SIGNATURE_HEADER: &str = "X-PagerDuty-Signature";

/// Broad class of an [`AuthError`], for choosing the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// The credential or signature header is absent.
    Missing,
    /// It is present but unreadable (wrong scheme, bad hex/base64…).
    Malformed,
    /// It is well-formed but does not match the configured secret.
    Wrong,
}

/// Why a webhook request was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error(
        "missing Authorization header: configure the sender to send `Authorization: {expected_scheme} …` (Alertmanager: http_config.{alertmanager_setting})"
    )]
    MissingAuthorization {
        /// `Bearer` or `Basic`.
        expected_scheme: &'static str,
        /// Where Alertmanager configures it.
        alertmanager_setting: &'static str,
    },
    /// `Authorization` uses another scheme or has no credentials.
    #[error(
        "Authorization header must be `{expected_scheme} <credentials>`, got scheme {found:?}: check the sender's authorization type"
    )]
    WrongScheme {
        /// `Bearer` or `Basic`.
        expected_scheme: &'static str,
        /// The scheme received (the credentials are never echoed).
        found: String,
    },
    /// Basic credentials that are not base64 `user:password`.
    #[error("Basic credentials are not base64 of `username:password`: {reason}")]
    MalformedBasic {
        /// What is wrong.
        reason: &'static str,
    },
    /// The bearer token does not match.
    #[error(
        "wrong bearer token: the sender's token does not match rollbot's configured token for this webhook"
    )]
    WrongToken,
    /// The basic-auth username or password does not match.
    #[error(
        "wrong username or password: the sender's basic_auth does not match rollbot's configured credentials for this webhook"
    )]
    WrongBasicCredentials,
    /// A signature header is absent.
    #[error(
        "missing {header} header: enable signing on the sender with the same secret as rollbot, or disable signature checks for this webhook"
    )]
    MissingSignature {
        /// Header name.
        header: String,
    },
    /// The Grafana timestamp header is absent although rollbot expects one.
    #[error(
        "missing {header} header: rollbot expects a signed timestamp; set the same timestamp header name in Grafana's HMAC settings, or remove it from rollbot's"
    )]
    MissingTimestamp {
        /// Header name.
        header: String,
    },
    /// A signature header that cannot be decoded.
    #[error("malformed {header} header: {reason}")]
    MalformedSignature {
        /// Header name.
        header: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The signature does not match the body under the configured secret.
    #[error(
        "{header} does not match the request body: the signing secret differs between the sender and rollbot, or the body was altered in transit"
    )]
    WrongSignature {
        /// Header name.
        header: String,
    },
}

impl AuthError {
    /// Broad class, for choosing the HTTP status.
    #[must_use]
    pub fn kind(&self) -> AuthFailure {
        match self {
            AuthError::MissingAuthorization { .. }
            | AuthError::MissingSignature { .. }
            | AuthError::MissingTimestamp { .. } => AuthFailure::Missing,
            AuthError::WrongScheme { .. }
            | AuthError::MalformedBasic { .. }
            | AuthError::MalformedSignature { .. } => AuthFailure::Malformed,
            AuthError::WrongToken
            | AuthError::WrongBasicCredentials
            | AuthError::WrongSignature { .. } => AuthFailure::Wrong,
        }
    }
}

/// Constant-time equality that does not leak either length.
fn secret_eq(a: &[u8], b: &[u8]) -> bool {
    Sha256::digest(a).ct_eq(&Sha256::digest(b)).into()
}

/// Split `Authorization` into scheme (case-insensitive) and credentials.
fn credentials<'a>(
    authorization: Option<&'a str>,
    expected_scheme: &'static str,
    alertmanager_setting: &'static str,
) -> Result<&'a str, AuthError> {
    let header = authorization.ok_or(AuthError::MissingAuthorization {
        expected_scheme,
        alertmanager_setting,
    })?;
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let rest = rest.trim();
    if !scheme.eq_ignore_ascii_case(expected_scheme) || rest.is_empty() {
        return Err(AuthError::WrongScheme {
            expected_scheme,
            found: scheme.to_owned(),
        });
    }
    Ok(rest)
}

/// Check `Authorization: Bearer <token>` against `expected_token`.
///
/// # Errors
///
/// [`AuthError::MissingAuthorization`] without the header,
/// [`AuthError::WrongScheme`] for another scheme or an empty token,
/// [`AuthError::WrongToken`] for a different token.
pub fn verify_bearer(authorization: Option<&str>, expected_token: &str) -> Result<(), AuthError> {
    let token = credentials(authorization, "Bearer", "authorization.credentials")?;
    if secret_eq(token.as_bytes(), expected_token.as_bytes()) {
        Ok(())
    } else {
        Err(AuthError::WrongToken)
    }
}

/// Check `Authorization: Basic base64(user:password)`.
///
/// Both parts are always compared, so timing does not reveal which was wrong.
///
/// # Errors
///
/// [`AuthError::MissingAuthorization`] without the header,
/// [`AuthError::WrongScheme`] for another scheme, [`AuthError::MalformedBasic`]
/// for bad base64 / no colon, [`AuthError::WrongBasicCredentials`] on mismatch.
pub fn verify_basic(
    authorization: Option<&str>,
    expected_username: &str,
    expected_password: &str,
) -> Result<(), AuthError> {
    let encoded = credentials(authorization, "Basic", "basic_auth")?;
    let decoded = BASE64
        .decode(encoded)
        .map_err(|_| AuthError::MalformedBasic {
            reason: "invalid base64",
        })?;
    let colon = decoded
        .iter()
        .position(|&b| b == b':')
        .ok_or(AuthError::MalformedBasic {
            reason: "no ':' between username and password",
        })?;
    let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
    let user_ok = secret_eq(user, expected_username.as_bytes());
    let password_ok = secret_eq(password, expected_password.as_bytes());
    if user_ok & password_ok {
        Ok(())
    } else {
        Err(AuthError::WrongBasicCredentials)
    }
}

fn mac(secret: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC-SHA256 accepts keys of any length")
}

fn decode_hex_signature(header: &str, value: &str) -> Result<Vec<u8>, AuthError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(AuthError::MalformedSignature {
            header: header.to_owned(),
            reason: "empty value",
        });
    }
    hex::decode(value).map_err(|_| AuthError::MalformedSignature {
        header: header.to_owned(),
        reason: "not a hex-encoded HMAC-SHA256",
    })
}

/// How rollbot expects Grafana to sign (mirrors Grafana's HMAC settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrafanaSigning<'a> {
    /// Name of the signature header (default [`GRAFANA_SIGNATURE_HEADER`]),
    /// used in error messages.
    pub signature_header: &'a str,
    /// Name of the timestamp header when Grafana is configured with one;
    /// then the signed message is `timestamp + ":" + body`.
    pub timestamp_header: Option<&'a str>,
}

impl Default for GrafanaSigning<'_> {
    fn default() -> Self {
        GrafanaSigning {
            signature_header: GRAFANA_SIGNATURE_HEADER,
            timestamp_header: None,
        }
    }
}

/// Verify Grafana's webhook HMAC: lowercase hex HMAC-SHA256(secret, body),
/// or of `timestamp:body` when a timestamp header is configured.
///
/// `signature` and `timestamp` are the received header values (`None` when
/// absent); `timestamp` is ignored unless `signing.timestamp_header` is set.
/// Grafana defines no replay window, so none is enforced here.
///
/// # Errors
///
/// [`AuthError::MissingSignature`] / [`AuthError::MissingTimestamp`] when a
/// header is absent, [`AuthError::MalformedSignature`] when the signature is
/// not hex, [`AuthError::WrongSignature`] when it does not match.
pub fn verify_grafana_signature(
    secret: &[u8],
    signing: GrafanaSigning<'_>,
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
) -> Result<(), AuthError> {
    let header = signing.signature_header;
    let signature = signature.ok_or_else(|| AuthError::MissingSignature {
        header: header.to_owned(),
    })?;
    let mut mac = mac(secret);
    if let Some(ts_header) = signing.timestamp_header {
        let ts = timestamp.ok_or_else(|| AuthError::MissingTimestamp {
            header: ts_header.to_owned(),
        })?;
        mac.update(ts.trim().as_bytes());
        mac.update(b":");
    }
    mac.update(body);
    let given = decode_hex_signature(header, signature)?;
    mac.verify_slice(&given)
        .map_err(|_| AuthError::WrongSignature {
            header: header.to_owned(),
        })
}

/// Verify PagerDuty's `X-PagerDuty-Signature`: a comma-separated list of
/// `v1=<hex HMAC-SHA256(secret, body)>` (several during secret rotation).
/// The request is authentic if ANY well-formed `v1` entry matches; entries of
/// other versions, and `v1` entries that are not 64 hex digits, are skipped
/// so one damaged entry cannot hide a valid one.
///
/// # Errors
///
/// [`AuthError::MissingSignature`] without the header,
/// [`AuthError::MalformedSignature`] when it has no well-formed `v1=` entry,
/// [`AuthError::WrongSignature`] when none of the well-formed entries matches.
pub fn verify_pagerduty_signature(
    secret: &[u8],
    signature: Option<&str>,
    body: &[u8],
) -> Result<(), AuthError> {
    let header = PAGERDUTY_SIGNATURE_HEADER;
    let signature = signature.ok_or_else(|| AuthError::MissingSignature {
        header: header.to_owned(),
    })?;
    let mut expected = mac(secret);
    expected.update(body);
    let mut saw_v1 = false;
    let mut well_formed = 0usize;
    let mut matched = false;
    for entry in signature.split(',').map(str::trim) {
        let Some(hex_sig) = entry.strip_prefix("v1=") else {
            continue;
        };
        saw_v1 = true;
        let Ok(given) = decode_hex_signature(header, hex_sig) else {
            continue;
        };
        if given.len() != HMAC_SHA256_LEN {
            continue;
        }
        well_formed += 1;
        // Check every entry (no early exit) so timing does not reveal which one matched.
        matched |= expected.clone().verify_slice(&given).is_ok();
    }
    if matched {
        return Ok(());
    }
    if well_formed == 0 {
        return Err(AuthError::MalformedSignature {
            header: header.to_owned(),
            reason: if saw_v1 {
                "no `v1=` entry is a 64-digit hex HMAC-SHA256; check what signs the requests"
            } else {
                "no `v1=` signature in the list"
            },
        });
    }
    Err(AuthError::WrongSignature {
        header: header.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], msg: &[u8]) -> String {
        let mut m = mac(secret);
        m.update(msg);
        hex::encode(m.finalize().into_bytes())
    }

    #[test]
    fn bearer_good_missing_wrong_and_scheme() {
        assert_eq!(verify_bearer(Some("Bearer s3cret"), "s3cret"), Ok(()));
        assert_eq!(verify_bearer(Some("bearer  s3cret "), "s3cret"), Ok(()));
        let missing = verify_bearer(None, "s3cret").unwrap_err();
        assert_eq!(missing.kind(), AuthFailure::Missing);
        assert!(
            missing
                .to_string()
                .contains("http_config.authorization.credentials")
        );
        let wrong = verify_bearer(Some("Bearer nope"), "s3cret").unwrap_err();
        assert_eq!(wrong, AuthError::WrongToken);
        assert_eq!(wrong.kind(), AuthFailure::Wrong);
        // A prefix of the token is not the token.
        assert_eq!(
            verify_bearer(Some("Bearer s3cre"), "s3cret"),
            Err(AuthError::WrongToken)
        );
        let scheme = verify_bearer(Some("Basic czNjcmV0"), "s3cret").unwrap_err();
        assert_eq!(scheme.kind(), AuthFailure::Malformed);
        assert!(
            !scheme.to_string().contains("czNjcmV0"),
            "never echo credentials"
        );
        assert_eq!(
            verify_bearer(Some("Bearer "), "s3cret").unwrap_err().kind(),
            AuthFailure::Malformed
        );
    }

    #[test]
    fn basic_good_missing_wrong_malformed() {
        let header = format!("Basic {}", BASE64.encode("am:pa:ss"));
        assert_eq!(verify_basic(Some(&header), "am", "pa:ss"), Ok(()));
        let missing = verify_basic(None, "am", "pa:ss").unwrap_err();
        assert_eq!(missing.kind(), AuthFailure::Missing);
        assert!(missing.to_string().contains("basic_auth"));
        let wrong_pw = format!("Basic {}", BASE64.encode("am:nope"));
        assert_eq!(
            verify_basic(Some(&wrong_pw), "am", "pa:ss"),
            Err(AuthError::WrongBasicCredentials)
        );
        let wrong_user = format!("Basic {}", BASE64.encode("x:pa:ss"));
        assert_eq!(
            verify_basic(Some(&wrong_user), "am", "pa:ss"),
            Err(AuthError::WrongBasicCredentials)
        );
        assert_eq!(
            verify_basic(Some("Basic !!!"), "am", "pa:ss")
                .unwrap_err()
                .kind(),
            AuthFailure::Malformed
        );
        let no_colon = format!("Basic {}", BASE64.encode("ampass"));
        assert!(matches!(
            verify_basic(Some(&no_colon), "am", "pass"),
            Err(AuthError::MalformedBasic { .. })
        ));
        assert!(matches!(
            verify_basic(Some("Bearer x"), "am", "pass"),
            Err(AuthError::WrongScheme { .. })
        ));
    }

    #[test]
    fn grafana_signature_round_trip_and_errors() {
        let body = b"{}";
        let sig = sign(b"k", body);
        let signing = GrafanaSigning::default();
        assert_eq!(
            verify_grafana_signature(b"k", signing, Some(&sig), None, body),
            Ok(())
        );
        assert_eq!(
            verify_grafana_signature(b"k", signing, Some(&sig.to_uppercase()), None, body),
            Ok(())
        );
        assert!(matches!(
            verify_grafana_signature(b"k", signing, None, None, body),
            Err(AuthError::MissingSignature { .. })
        ));
        assert!(matches!(
            verify_grafana_signature(b"k", signing, Some("sha256=abc"), None, body),
            Err(AuthError::MalformedSignature { .. })
        ));
        assert!(matches!(
            verify_grafana_signature(b"other", signing, Some(&sig), None, body),
            Err(AuthError::WrongSignature { .. })
        ));
        let with_ts = GrafanaSigning {
            timestamp_header: Some("X-Ts"),
            ..signing
        };
        let err = verify_grafana_signature(b"k", with_ts, Some(&sig), None, body).unwrap_err();
        assert_eq!(
            err,
            AuthError::MissingTimestamp {
                header: "X-Ts".into()
            }
        );
        assert!(err.to_string().contains("X-Ts"));
    }

    #[test]
    fn pagerduty_any_v1_entry_matches() {
        let body = br#"{"event":{}}"#;
        let good = sign(b"new", body);
        let old = sign(b"old", body);
        let header = format!("v1={old}, v1={good}");
        assert_eq!(
            verify_pagerduty_signature(b"new", Some(&header), body),
            Ok(())
        );
        assert_eq!(
            verify_pagerduty_signature(b"old", Some(&header), body),
            Ok(())
        );
        assert!(matches!(
            verify_pagerduty_signature(b"third", Some(&header), body),
            Err(AuthError::WrongSignature { .. })
        ));
        let future = format!("v2=zz,v1={good}");
        assert_eq!(
            verify_pagerduty_signature(b"new", Some(&future), body),
            Ok(())
        );
        let err = verify_pagerduty_signature(b"new", Some("v2=abc"), body).unwrap_err();
        assert_eq!(err.kind(), AuthFailure::Malformed);
        assert_eq!(
            verify_pagerduty_signature(b"new", None, body)
                .unwrap_err()
                .kind(),
            AuthFailure::Missing
        );
        let tampered = br#"{"event":{ }}"#;
        assert!(matches!(
            verify_pagerduty_signature(b"new", Some(&header), tampered),
            Err(AuthError::WrongSignature { .. })
        ));
    }

    /// A malformed entry (not hex, empty, odd length) must not hide a valid
    /// one later in the list: PagerDuty sends several during secret rotation
    /// and the request is authentic if any of them matches.
    #[test]
    fn pagerduty_skips_malformed_entries() {
        let body = br#"{"event":{"event_type":"incident.triggered"}}"#;
        let good = sign(b"new", body);
        let other = sign(b"old", body);
        for header in [
            format!("v1=not-hex,v1={good}"),
            format!("v1=, v1={good}"),
            format!("v1=abc,v1={good}"),
            format!("v1=zz, v2=11, v1={other}, v1={good}"),
            format!("v1={good},v1=not-hex"),
            format!("v1={}, v1={good}", "a".repeat(10_000)),
        ] {
            assert_eq!(
                verify_pagerduty_signature(b"new", Some(&header), body),
                Ok(()),
                "{header}"
            );
        }
        // Only malformed v1 entries: nothing could match, a client mistake.
        for header in ["v1=not-hex", "v1=, v1=zz", "v1=abc"] {
            let err = verify_pagerduty_signature(b"new", Some(header), body).unwrap_err();
            assert_eq!(err.kind(), AuthFailure::Malformed, "{header}: {err}");
            assert!(
                err.to_string().contains(PAGERDUTY_SIGNATURE_HEADER),
                "{err}"
            );
        }
        // Malformed entries beside a well-formed wrong one: a wrong secret.
        let header = format!("v1=not-hex,v1={other}");
        assert!(matches!(
            verify_pagerduty_signature(b"new", Some(&header), body),
            Err(AuthError::WrongSignature { .. })
        ));
    }
}
