//! URL → what is addressed. Paths are parsed by segment because `/api/v1/namespaces/{x}` names
//! a namespace while `/api/v1/namespaces/{x}/secrets` lists secrets in one.

use std::collections::HashMap;
use std::sync::Arc;

use super::registry::{ResourceDef, key_of};
use super::store::Store;

pub enum Route {
    Version,
    CoreVersions,
    Groups,
    Group(String),
    Resources {
        group: String,
        version: String,
    },
    Resource(Target),
    /// Resource key (best guess) of an unknown resource, for the request log.
    Unknown(String),
    /// The same, in a group version the server does not serve at all: not an API path.
    NotServed(String),
}

pub struct Target {
    pub def: Arc<ResourceDef>,
    pub version: String,
    pub ns: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
}

pub fn parse(st: &Store, path: &str) -> Route {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["version"] => Route::Version,
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["api", v] => Route::Resources {
            group: String::new(),
            version: (*v).into(),
        },
        ["apis", g] => Route::Group((*g).into()),
        ["apis", g, v] => Route::Resources {
            group: (*g).into(),
            version: (*v).into(),
        },
        ["api", v, rest @ ..] => resource(st, "", v, rest),
        ["apis", g, v, rest @ ..] => resource(st, g, v, rest),
        _ => Route::Unknown(path.into()),
    }
}

fn resource(st: &Store, group: &str, version: &str, rest: &[&str]) -> Route {
    if !st.defs().any(|d| d.group == group && d.serves(version)) {
        let plural = match rest {
            ["namespaces", _, plural, ..] => plural,
            [plural, ..] => plural,
            [] => "",
        };
        return Route::NotServed(key_of(group, plural));
    }
    let lookup = |plural: &str| st.def(&key_of(group, plural)).filter(|d| d.serves(version));
    let to_owned = |s: Option<&&str>| s.map(|s| (*s).to_string());
    if rest.len() >= 3
        && rest[0] == "namespaces"
        && let Some(def) = lookup(rest[2]).filter(|d| d.namespaced)
    {
        if rest.len() > 5 {
            return Route::Unknown(def.key());
        }
        return Route::Resource(Target {
            def,
            version: version.into(),
            ns: Some(rest[1].into()),
            name: to_owned(rest.get(3)),
            sub: to_owned(rest.get(4)),
        });
    }
    let Some(plural) = rest.first() else {
        return Route::Unknown(String::new());
    };
    let Some(def) = lookup(plural) else {
        return Route::Unknown(key_of(group, plural));
    };
    // Namespaced objects are only addressed inside their namespace; `/secrets` is the
    // all-namespaces collection.
    if rest.len() > 3 || (def.namespaced && rest.len() > 1) {
        return Route::Unknown(def.key());
    }
    Route::Resource(Target {
        def,
        version: version.into(),
        ns: None,
        name: to_owned(rest.get(1)),
        sub: to_owned(rest.get(2)),
    })
}

pub fn query(raw: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub fn flag(q: &HashMap<String, String>, key: &str) -> bool {
    matches!(q.get(key).map(String::as_str), Some("true" | "1"))
}
