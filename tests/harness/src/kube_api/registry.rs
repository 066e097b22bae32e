//! The resource types the emulator serves: the built-ins registered at start and the ones CRDs add.

use std::collections::BTreeMap;

use serde_json::Value;

pub const CRD_KEY: &str = "customresourcedefinitions.apiextensions.k8s.io";
pub const NAMESPACES: &str = "namespaces";

#[derive(Debug, Clone, PartialEq)]
pub struct ResourceDef {
    /// Empty for the core group.
    pub group: String,
    /// Served versions, preferred first.
    pub versions: Vec<String>,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    /// Defined by a CRD: schema-driven validation and generation tracking.
    pub custom: bool,
    pub status_subresource: bool,
    /// `openAPIV3Schema` per served version.
    pub schemas: BTreeMap<String, Value>,
}

impl ResourceDef {
    fn builtin(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        ResourceDef {
            group: group.into(),
            versions: vec![version.into()],
            plural: plural.into(),
            singular: kind.to_ascii_lowercase(),
            kind: kind.into(),
            list_kind: format!("{kind}List"),
            namespaced,
            short_names: Vec::new(),
            custom: false,
            status_subresource: false,
            schemas: BTreeMap::new(),
        }
    }

    /// The resource key used throughout the public API: `plural` or `plural.group`.
    pub fn key(&self) -> String {
        key_of(&self.group, &self.plural)
    }

    /// How messages name the resource (`secrets`, `leases.coordination.k8s.io`).
    pub fn group_resource(&self) -> String {
        self.key()
    }

    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    pub fn preferred_version(&self) -> &str {
        self.versions.first().map(String::as_str).unwrap_or("v1")
    }

    pub fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }

    /// Only types whose strategy sets `metadata.generation` get one (CRs and CRDs among ours).
    pub fn tracks_generation(&self) -> bool {
        self.custom || self.key() == CRD_KEY
    }

    /// Whether a delete answers with the deleted object rather than a Status (the store's
    /// `ReturnDeletedObject`).
    pub fn returns_deleted_object(&self) -> bool {
        !self.custom && self.group.is_empty() && self.plural == "serviceaccounts"
    }

    pub fn schema(&self, version: &str) -> Option<&Value> {
        self.schemas.get(version)
    }
}

pub fn key_of(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

pub fn builtins() -> Vec<ResourceDef> {
    let mut crd = ResourceDef::builtin(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
    );
    crd.short_names = vec!["crd".into(), "crds".into()];
    crd.status_subresource = true;
    let mut ns = ResourceDef::builtin("", "v1", NAMESPACES, "Namespace", false);
    ns.short_names = vec!["ns".into()];
    ns.status_subresource = true;
    let mut sa = ResourceDef::builtin("", "v1", "serviceaccounts", "ServiceAccount", true);
    sa.short_names = vec!["sa".into()];
    let mut cm = ResourceDef::builtin("", "v1", "configmaps", "ConfigMap", true);
    cm.short_names = vec!["cm".into()];
    let mut ev = ResourceDef::builtin("", "v1", "events", "Event", true);
    ev.short_names = vec!["ev".into()];
    let mut ev2 = ResourceDef::builtin("events.k8s.io", "v1", "events", "Event", true);
    ev2.short_names = vec!["ev".into()];
    vec![
        ns,
        ResourceDef::builtin("", "v1", "secrets", "Secret", true),
        cm,
        sa,
        ev,
        ev2,
        ResourceDef::builtin("coordination.k8s.io", "v1", "leases", "Lease", true),
        crd,
    ]
}

/// Reads the served shape of a CRD object; errors are field errors against the CRD itself.
pub fn from_crd(crd: &Value) -> Result<ResourceDef, Vec<(String, String)>> {
    let mut errs = Vec::new();
    let spec = &crd["spec"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let group = text(&spec["group"]);
    let names = &spec["names"];
    let plural = text(&names["plural"]);
    let kind = text(&names["kind"]);
    if group.is_empty() {
        errs.push(("spec.group".into(), "Required value".into()));
    }
    if plural.is_empty() {
        errs.push(("spec.names.plural".into(), "Required value".into()));
    }
    if kind.is_empty() {
        errs.push(("spec.names.kind".into(), "Required value".into()));
    }
    let expected = format!("{plural}.{group}");
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    if errs.is_empty() && name != expected {
        errs.push((
            "metadata.name".into(),
            format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    let namespaced = match spec["scope"].as_str() {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        other => {
            errs.push((
                "spec.scope".into(),
                format!(
                    "Unsupported value: {:?}: supported values: \"Cluster\", \"Namespaced\"",
                    other.unwrap_or("")
                ),
            ));
            true
        }
    };
    let mut versions = Vec::new();
    let mut schemas = BTreeMap::new();
    let mut status_subresource = false;
    let mut storage = None;
    for v in spec["versions"].as_array().into_iter().flatten() {
        let vname = text(&v["name"]);
        if !v["served"].as_bool().unwrap_or(false) {
            continue;
        }
        if v["storage"].as_bool().unwrap_or(false) {
            storage = Some(vname.clone());
        }
        if v["subresources"]["status"].is_object() {
            status_subresource = true;
        }
        if let Some(schema) = v["schema"]["openAPIV3Schema"].as_object() {
            schemas.insert(vname.clone(), Value::Object(schema.clone()));
        }
        versions.push(vname);
    }
    if versions.is_empty() {
        errs.push((
            "spec.versions".into(),
            "Invalid value: \"null\": must have exactly one version marked as storage version"
                .into(),
        ));
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    // kube-apiserver prefers the highest-priority served version; the storage one is a fine proxy.
    if let Some(storage) = storage
        && let Some(pos) = versions.iter().position(|v| *v == storage)
    {
        let v = versions.remove(pos);
        versions.insert(0, v);
    }
    let short_names = names["shortNames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect();
    Ok(ResourceDef {
        group,
        versions,
        singular: names["singular"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| kind.to_ascii_lowercase()),
        list_kind: names["listKind"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| format!("{kind}List")),
        plural,
        kind,
        namespaced,
        short_names,
        custom: true,
        status_subresource,
        schemas,
    })
}
