//! TokenRequest (`POST .../serviceaccounts/{name}/token`): an unsigned JWT with the claims the
//! real token issuer puts in, for code that only decodes the payload.

use base64::Engine as _;
use serde_json::{Value, json};

use super::status::{ApiError, FieldError};

const DEFAULT_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

pub fn issue(sa: &Value, request: &Value) -> Result<Value, ApiError> {
    let ns = sa["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = sa["metadata"]["name"].as_str().unwrap_or_default();
    let expiration = request["spec"]["expirationSeconds"]
        .as_i64()
        .unwrap_or(3600);
    if expiration < 600 {
        return Err(ApiError::invalid_as(
            "authentication.k8s.io",
            "TokenRequest",
            "",
            &[FieldError::invalid(
                "spec.expirationSeconds",
                &json!(expiration),
                "may not specify a duration less than 10 minutes",
            )],
        ));
    }
    let audiences: Vec<Value> = match request["spec"]["audiences"].as_array() {
        Some(a) if !a.is_empty() => a.clone(),
        _ => vec![json!(DEFAULT_AUDIENCE)],
    };
    let now = chrono::Utc::now();
    let exp = now + chrono::Duration::seconds(expiration);
    let claims = json!({
        "aud": audiences,
        "exp": exp.timestamp(),
        "iat": now.timestamp(),
        "nbf": now.timestamp(),
        "iss": DEFAULT_AUDIENCE,
        "jti": super::meta::new_uid(),
        "sub": format!("system:serviceaccount:{ns}:{name}"),
        "kubernetes.io": {
            "namespace": ns,
            "serviceaccount": {"name": name, "uid": sa["metadata"]["uid"]},
        },
    });
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = json!({"alg": "RS256", "kid": "kube-api-emulator"});
    let token = format!(
        "{}.{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string()),
        b64.encode("unsigned")
    );
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "uid": sa["metadata"]["uid"], "creationTimestamp": super::meta::now_rfc3339()},
        "spec": {
            "audiences": audiences,
            "expirationSeconds": expiration,
            "boundObjectRef": request["spec"]["boundObjectRef"],
        },
        "status": {
            "token": token,
            "expirationTimestamp": exp.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        },
    }))
}
