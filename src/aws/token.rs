//! An ECR authorization token: decoding and validation at the AWS boundary.
//!
//! ECR Public (and private ECR alike) returns `authorizationToken = base64("AWS:<password>")` and `expiresAt` (epoch seconds,
//! normally 12 h ahead). Nothing reaches a Secret before [`Token::from_response`] has checked it:
//! an expired or malformed token is worse than none, because the kubelet sends it and gets 403
//! instead of pulling anonymously. Token material is never printed: `Debug` is redacted.

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};

use crate::Error;

/// Tokens claiming to live longer than this are treated as malformed (the real lifetime is 12 h).
const MAX_LIFETIME: Duration = Duration::days(7);

/// A validated ECR Public authorization token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    auth: String,
    password: String,
    /// When the token stops working.
    pub expires_at: DateTime<Utc>,
    /// When the operator received it (start of its lifetime, for schedule math).
    pub issued_at: DateTime<Utc>,
    /// A private token's account, from its `proxyEndpoint`: whose registry it names by default.
    pub account: Option<String>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("expires_at", &self.expires_at)
            .field("issued_at", &self.issued_at)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// Validates what GetAuthorizationToken returned. `now` is the time of the response; it is
    /// truncated to whole seconds, like `expiresAt`, so that the schedule computed from the
    /// Secret's annotations after a restart is exactly the one computed from memory.
    pub fn from_response(
        authorization_token: Option<&str>,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Token, Error> {
        let auth = authorization_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::InvalidToken("no authorizationToken in the response".into()))?;
        let expires_at =
            expires_at.ok_or_else(|| Error::InvalidToken("no expiresAt in the response".into()))?;
        let password = password_of(auth)?;
        if expires_at <= now {
            return Err(Error::InvalidToken(format!(
                "expiresAt {} is not in the future",
                expires_at.to_rfc3339()
            )));
        }
        if expires_at - now > MAX_LIFETIME {
            return Err(Error::InvalidToken(format!(
                "expiresAt {} is implausibly far in the future",
                expires_at.to_rfc3339()
            )));
        }
        let issued_at = DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
        Ok(Token {
            auth: auth.trim().to_owned(),
            password,
            expires_at,
            issued_at,
            account: None,
        })
    }

    /// A token a Secret already holds (its `auth` value and the times its annotations say), to
    /// be written again beside fresh ones. Its form is checked; its times are what they are:
    /// whether an expired one stays is `onExpiry`'s decision.
    pub fn held(
        auth: &str,
        issued_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        account: Option<String>,
    ) -> Result<Token, Error> {
        Ok(Token {
            password: password_of(auth)?,
            auth: auth.trim().to_owned(),
            expires_at,
            issued_at,
            account,
        })
    }

    /// The token with the account its `proxyEndpoint` named.
    pub fn with_account(mut self, account: Option<String>) -> Token {
        self.account = account;
        self
    }

    /// The base64 `auth` value for a docker config entry.
    pub fn auth(&self) -> &str {
        &self.auth
    }

    /// The password part, for the docker config's `password` field.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Total lifetime from issue to expiry.
    pub fn lifetime(&self) -> Duration {
        self.expires_at - self.issued_at
    }
}

/// The password in `auth` = base64 of `AWS:<password>`.
fn password_of(auth: &str) -> Result<String, Error> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| Error::InvalidToken("authorizationToken is not valid base64".into()))?;
    let decoded = String::from_utf8(decoded)
        .map_err(|_| Error::InvalidToken("authorizationToken is not UTF-8".into()))?;
    match decoded.split_once(':') {
        Some(("AWS", password)) if !password.is_empty() => Ok(password.to_owned()),
        Some((_, _)) => Err(Error::InvalidToken(
            "authorizationToken is not of the form AWS:<password>".into(),
        )),
        None => Err(Error::InvalidToken(
            "authorizationToken has no ':' separator".into(),
        )),
    }
}

/// Test-only constructor used by unit tests across modules.
#[cfg(test)]
pub(crate) fn test_token(password: &str, issued_at: DateTime<Utc>, lifetime: Duration) -> Token {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{password}"));
    Token::from_response(Some(&auth), Some(issued_at + lifetime), issued_at).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn accepts_a_well_formed_token() {
        let t = Token::from_response(
            Some(&b64("AWS:s3cr3t")),
            Some(now() + Duration::hours(12)),
            now(),
        )
        .unwrap();
        assert_eq!(t.password(), "s3cr3t");
        assert_eq!(t.auth(), b64("AWS:s3cr3t"));
        assert_eq!(t.lifetime(), Duration::hours(12));
    }

    #[test]
    fn never_accepts_tokens_that_would_break_pulls() {
        let later = Some(now() + Duration::hours(12));
        let cases = [
            (Some("%%%not-base64".to_string()), later),
            (Some(b64("no-colon-here")), later),
            (Some(b64("root:pw")), later),
            (Some(b64("AWS:")), later),
            (Some(String::new()), later),
            (None, later),
            (Some(b64("AWS:pw")), None),
            (Some(b64("AWS:pw")), Some(now() - Duration::seconds(1))),
            (Some(b64("AWS:pw")), Some(now())),
            (Some(b64("AWS:pw")), Some(now() + Duration::days(365))),
        ];
        for (token, expires) in cases {
            let err = Token::from_response(token.as_deref(), expires, now()).unwrap_err();
            assert_eq!(err.label(), "InvalidToken");
        }
    }

    #[test]
    fn issue_time_is_whole_seconds_like_the_annotations() {
        let at = now() + Duration::milliseconds(700);
        let t = Token::from_response(Some(&b64("AWS:pw")), Some(now() + Duration::hours(12)), at)
            .unwrap();
        assert_eq!(t.issued_at, now());
    }

    #[test]
    fn debug_output_never_contains_the_secret() {
        let t = test_token("hunter2-password", now(), Duration::hours(12));
        let printed = format!("{t:?}");
        assert!(!printed.contains("hunter2"));
        assert!(!printed.contains(t.auth()));
    }

    #[test]
    fn error_messages_never_echo_the_token() {
        let err =
            Token::from_response(Some(&b64("root:topsecret")), Some(now()), now()).unwrap_err();
        assert!(!err.to_string().contains("topsecret"));
    }
}
