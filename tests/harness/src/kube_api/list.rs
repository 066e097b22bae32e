//! LIST: selectors, `limit`/`continue` paging, and the metadata-only (`PartialObjectMetadata`)
//! rendering kube's `metadata_watcher` asks for.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::registry::ResourceDef;
use super::selector::Selectors;
use super::status::ApiError;
use super::store::Store;

pub struct ListQuery {
    pub selectors: Selectors,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

/// How an object leaves the server: in the requested version, or as PartialObjectMetadata.
pub fn render(obj: &Value, def: &ResourceDef, version: &str, metadata_only: bool) -> Value {
    if metadata_only {
        return json!({
            "apiVersion": "meta.k8s.io/v1",
            "kind": "PartialObjectMetadata",
            "metadata": obj["metadata"],
        });
    }
    let api_version = def.api_version(version);
    let mut out = obj.clone();
    if out["apiVersion"].as_str() != Some(api_version.as_str()) {
        out["apiVersion"] = json!(api_version);
    }
    out
}

/// An object as an item of a list: typed lists of built-in types carry kind and apiVersion only
/// on the list; custom resources are stored and listed with theirs.
pub fn item(obj: &Value, def: &ResourceDef, version: &str, metadata_only: bool) -> Value {
    let mut item = render(obj, def, version, metadata_only);
    if !def.custom
        && !metadata_only
        && let Some(m) = item.as_object_mut()
    {
        m.remove("kind");
        m.remove("apiVersion");
    }
    item
}

fn encode_token(rv: u64, ns: &str, name: &str) -> String {
    let raw = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{ns}/{name}\u{0}")});
    base64::engine::general_purpose::STANDARD.encode(raw.to_string())
}

fn decode_token(token: &str) -> Result<(u64, String, String), ApiError> {
    let bad = || ApiError::bad_request(format!("continue key is not valid: {token}"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let rv = v["rv"].as_u64().ok_or_else(bad)?;
    let start = v["start"]
        .as_str()
        .ok_or_else(bad)?
        .trim_end_matches('\u{0}');
    let (ns, name) = start.split_once('/').ok_or_else(bad)?;
    Ok((rv, ns.to_string(), name.to_string()))
}

pub fn list(
    st: &Store,
    def: &ResourceDef,
    version: &str,
    ns: Option<&str>,
    q: &ListQuery,
    metadata_only: bool,
) -> Result<Value, ApiError> {
    let (list_rv, after) = match &q.continue_token {
        Some(t) if !t.is_empty() => {
            let (rv, ns, name) = decode_token(t)?;
            (rv, Some((ns, name)))
        }
        _ => (st.rv, None),
    };
    let resource = def.key();
    let limit = q.limit.filter(|l| *l > 0);
    let mut items = Vec::new();
    let mut last = None;
    let mut remaining = 0usize;
    for obj in st.list(&resource, ns) {
        let pos = (
            obj["metadata"]["namespace"].as_str().unwrap_or_default(),
            obj["metadata"]["name"].as_str().unwrap_or_default(),
        );
        if let Some((a_ns, a_name)) = &after
            && (pos.0, pos.1) <= (a_ns.as_str(), a_name.as_str())
        {
            continue;
        }
        if !q.selectors.matches(&obj) {
            continue;
        }
        if limit.is_some_and(|l| items.len() >= l) {
            remaining += 1;
            continue;
        }
        last = Some((pos.0.to_string(), pos.1.to_string()));
        items.push(item(&obj, def, version, metadata_only));
    }
    let mut meta = Map::new();
    meta.insert("resourceVersion".into(), json!(list_rv.to_string()));
    if remaining > 0
        && let Some((ns, name)) = last
    {
        meta.insert("continue".into(), json!(encode_token(list_rv, &ns, &name)));
        meta.insert("remainingItemCount".into(), json!(remaining));
    }
    let (kind, api_version) = if metadata_only {
        (
            "PartialObjectMetadataList".to_string(),
            "meta.k8s.io/v1".to_string(),
        )
    } else {
        (def.list_kind.clone(), def.api_version(version))
    };
    Ok(json!({
        "kind": kind,
        "apiVersion": api_version,
        "metadata": meta,
        "items": items,
    }))
}
