//! The chart's RBAC as the API server holds it: grants (verb × resource, with the resource name a
//! rule is limited to), the requests of the audit log that used each, taking one grant away from a
//! live Role or ClusterRole and putting it back, and what the authorizer answers meanwhile.

use std::{collections::BTreeSet, fmt, time::Duration};

use harness::kube_api::RequestRecord;
use k8s_openapi::api::{
    authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec},
    rbac::v1::{ClusterRole, PolicyRule, Role},
};
use kube::{
    Api, Client,
    api::{PostParams, ResourceExt},
};
use serde_json::Value;

/// One permission: a verb on a resource (`plural` or `plural/subresource`) of an API group,
/// possibly for one object only.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    pub group: String,
    pub resource: String,
    pub verb: String,
    pub name: Option<String>,
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let group = if self.group.is_empty() {
            String::new()
        } else {
            format!(".{}", self.group)
        };
        let (plural, sub) = match self.resource.split_once('/') {
            Some((p, s)) => (p, format!("/{s}")),
            None => (self.resource.as_str(), String::new()),
        };
        write!(f, "{} {plural}{group}{sub}", self.verb)?;
        if let Some(name) = &self.name {
            write!(f, " ({name} only)")?;
        }
        Ok(())
    }
}

/// Every grant of some rules (one per group × resource × verb × name).
pub fn grants(rules: &[PolicyRule]) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for rule in rules {
        assert!(
            rule.non_resource_urls.is_none(),
            "a non-resource rule: {rule:?}"
        );
        let names: Vec<Option<String>> = match &rule.resource_names {
            Some(names) if !names.is_empty() => names.iter().cloned().map(Some).collect(),
            _ => vec![None],
        };
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    for name in &names {
                        out.insert(Grant {
                            group: group.clone(),
                            resource: resource.clone(),
                            verb: verb.clone(),
                            name: name.clone(),
                        });
                    }
                }
            }
        }
    }
    out
}

/// The same permissions as `rules` but `removed`, one rule per grant.
fn without(rules: &[PolicyRule], removed: &Grant) -> Vec<PolicyRule> {
    grants(rules)
        .into_iter()
        .filter(|g| g != removed)
        .map(|g| PolicyRule {
            api_groups: Some(vec![g.group]),
            resources: Some(vec![g.resource]),
            verbs: vec![g.verb],
            resource_names: g.name.map(|n| vec![n]),
            non_resource_urls: None,
        })
        .collect()
}

/// The grants a request needed: its verb on its resource, and `create` too for a patch that
/// created the object (server-side apply of a new object, answered 201).
pub fn used_by(record: &RequestRecord) -> Vec<Grant> {
    // The audit log's resource is `plural.group` or `plural` (core), or a path for a
    // non-resource request, which no rule of the chart covers.
    if record.resource.starts_with('/') {
        return Vec::new();
    }
    let (plural, group) = record
        .resource
        .split_once('.')
        .unwrap_or((record.resource.as_str(), ""));
    let resource = match &record.subresource {
        Some(sub) => format!("{plural}/{sub}"),
        None => plural.to_string(),
    };
    let grant = |verb: &str| Grant {
        group: group.to_string(),
        resource: resource.clone(),
        verb: verb.to_string(),
        name: record.name.clone(),
    };
    let mut out = vec![grant(&record.verb)];
    if record.verb == "patch" && record.code == 201 {
        out.push(grant("create"));
    }
    out
}

/// Whether `grant` (as a rule states it) allows what `needed` (as a request used it) asks for.
pub fn covers(grant: &Grant, needed: &Grant) -> bool {
    grant.group == needed.group
        && grant.resource == needed.resource
        && grant.verb == needed.verb
        && (grant.name.is_none() || grant.name == needed.name)
}

/// A Role or ClusterRole of the release, as the manifest names it.
#[derive(Debug, Clone)]
pub struct RoleRef {
    pub namespace: Option<String>,
    pub name: String,
}

impl RoleRef {
    /// The Roles and ClusterRoles among a release's objects.
    pub fn of(manifest: &[Value]) -> Vec<RoleRef> {
        manifest
            .iter()
            .filter(|o| o["kind"] == "Role" || o["kind"] == "ClusterRole")
            .map(|o| RoleRef {
                namespace: (o["kind"] == "Role")
                    .then(|| o["metadata"]["namespace"].as_str().expect("ns").to_string()),
                name: o["metadata"]["name"].as_str().expect("name").to_string(),
            })
            .collect()
    }

    pub async fn rules(&self, admin: &Client) -> Vec<PolicyRule> {
        match &self.namespace {
            Some(ns) => Api::<Role>::namespaced(admin.clone(), ns)
                .get(&self.name)
                .await
                .expect("read Role")
                .rules
                .unwrap_or_default(),
            None => Api::<ClusterRole>::all(admin.clone())
                .get(&self.name)
                .await
                .expect("read ClusterRole")
                .rules
                .unwrap_or_default(),
        }
    }

    /// Replaces the live rules (RBAC applies a change at once; see [`wait_authorized`]).
    pub async fn set_rules(&self, admin: &Client, rules: Vec<PolicyRule>) {
        match &self.namespace {
            Some(ns) => {
                let api = Api::<Role>::namespaced(admin.clone(), ns);
                let mut role = api.get(&self.name).await.expect("read Role");
                role.rules = Some(rules);
                api.replace(&role.name_any(), &PostParams::default(), &role)
                    .await
                    .expect("replace Role");
            }
            None => {
                let api = Api::<ClusterRole>::all(admin.clone());
                let mut role = api.get(&self.name).await.expect("read ClusterRole");
                role.rules = Some(rules);
                api.replace(&role.name_any(), &PostParams::default(), &role)
                    .await
                    .expect("replace ClusterRole");
            }
        }
    }

    /// Takes `grant` out of this role's rules; returns the rules to put back.
    pub async fn remove(&self, admin: &Client, grant: &Grant) -> Vec<PolicyRule> {
        let original = self.rules(admin).await;
        self.set_rules(admin, without(&original, grant)).await;
        original
    }
}

/// What the authorizer answers for `user` (a ServiceAccount) asking for `grant` in `namespace`
/// (`None`: cluster-wide).
pub async fn authorized(
    admin: &Client,
    (sa_ns, sa): (&str, &str),
    grant: &Grant,
    namespace: Option<&str>,
) -> bool {
    let (resource, subresource) = match grant.resource.split_once('/') {
        Some((r, s)) => (r.to_string(), Some(s.to_string())),
        None => (grant.resource.clone(), None),
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!("system:serviceaccount:{sa_ns}:{sa}")),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{sa_ns}"),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                group: Some(grant.group.clone()),
                resource: Some(resource),
                subresource,
                verb: Some(grant.verb.clone()),
                namespace: namespace.map(str::to_owned),
                name: grant.name.clone(),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SubjectAccessReview>::all(admin.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("SubjectAccessReview");
    answer.status.is_some_and(|s| s.allowed)
}

/// Waits until the authorizer answers `allowed` for the grant: the RBAC authorizer follows
/// Roles through a watch, so a change takes effect a moment after it is written.
pub async fn wait_authorized(
    admin: &Client,
    sa: (&str, &str),
    grant: &Grant,
    namespace: Option<&str>,
    allowed: bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while authorized(admin, sa, grant, namespace).await != allowed {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the authorizer still answers {} for {grant} 10 s after the change",
            !allowed
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
