use std::future::Future;
use std::time::Duration;

use harness::control_plane::{ControlPlane, User, audit, client_from_yaml};
use harness::env::Api as Backend;
use harness::kube_api::{ApiServer, Emulator};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, Config, Resource};
use serde_json::{Value, json};

/// How long a test waits for what a real cluster does asynchronously (the CRD controllers, the
/// garbage collector, the namespace controller), also on a loaded 2-core machine.
pub const ASYNC: Duration = Duration::from_secs(60);

pub async fn client(server: &ApiServer) -> Client {
    client_with(server, |_| {}).await
}

pub async fn client_with(server: &ApiServer, tweak: impl FnOnce(&mut Config)) -> Client {
    let kubeconfig =
        Kubeconfig::from_yaml(&server.kubeconfig_yaml("default")).expect("kubeconfig parses");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig accepted");
    let mut config = config;
    tweak(&mut config);
    Client::try_from(config).expect("client builds")
}

/// The emulator, for tests of its own machinery (faults, closed watches, outages).
pub async fn start() -> (ApiServer, Client) {
    let server = ApiServer::start().await.expect("server starts");
    let client = client(&server).await;
    (server, client)
}

enum Server {
    Emulated(ApiServer),
    Real(&'static ControlPlane),
}

/// A Kubernetes API for one test: the emulator, or the real kube-apiserver of this test
/// process ([`ControlPlane::shared`]), each with a namespace of the test's own and a client
/// without retries (as the operator builds its own), an administrator on the real server.
pub struct Cluster {
    pub client: Client,
    /// Created for this test: tests share the real server and run concurrently.
    pub ns: String,
    server: Server,
    /// Where the real server's audit log stood when the test started.
    audit_from: u64,
}

impl Cluster {
    pub async fn start(backend: Backend) -> Cluster {
        let (server, client, audit_from) = match backend {
            Backend::Emulator => {
                let server = ApiServer::start().await.expect("emulator starts");
                let client = client_from_yaml(&server.kubeconfig_yaml("default"))
                    .await
                    .expect("emulator client");
                (Server::Emulated(server), client, 0)
            }
            Backend::Real => {
                let cp = tokio::task::spawn_blocking(ControlPlane::shared)
                    .await
                    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
                let offset = std::fs::metadata(cp.audit_log()).map_or(0, |m| m.len());
                (Server::Real(cp), cp.client(User::Admin).await, offset)
            }
        };
        let ns = format!("kube-api-{:08x}", fastrand::u32(..));
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("namespace {ns}: {e}"));
        Cluster {
            client,
            ns,
            server,
            audit_from,
        }
    }

    pub fn is_real(&self) -> bool {
        matches!(self.server, Server::Real(_))
    }

    /// The emulator's state, for assertions about its own request log; `None` on a real server.
    pub fn emulator(&self) -> Option<Emulator> {
        match &self.server {
            Server::Emulated(s) => Some(s.state()),
            Server::Real(_) => None,
        }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// How many requests with this verb the test made on this resource in its namespace: the
    /// emulator's request log, or the real server's audit log.
    pub fn count(&self, verb: &str, resource: &str) -> usize {
        let records = match &self.server {
            Server::Emulated(s) => s.state().requests(),
            Server::Real(cp) => audit::read(&cp.audit_log(), self.audit_from).0,
        };
        records
            .iter()
            .filter(|r| {
                r.verb == verb
                    && r.resource == resource
                    && r.namespace.as_deref() == Some(self.ns.as_str())
            })
            .count()
    }

    /// Creates the CRD and waits until the server serves its resource.
    pub async fn install(&self, crd: &TestCrd) {
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        crds.create(&PostParams::default(), &crd.definition())
            .await
            .unwrap_or_else(|e| panic!("CRD {}: {e}", crd.name()));
        crd.await_served(&self.client).await;
    }
}

/// Waits up to [`ASYNC`] for `fut`, naming `what` when it does not end in time.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(ASYNC, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {ASYNC:?} waiting for {what}"))
}

/// Waits until the object `name` with this uid is gone.
pub async fn await_deleted<K>(api: &Api<K>, name: &str, uid: &str)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    within(
        &format!("{name} to be deleted"),
        await_condition(api.clone(), name, conditions::is_deleted(uid)),
    )
    .await
    .unwrap_or_else(|e| panic!("watch of {name}: {e}"));
}

/// Waits until the object `name` satisfies `cond`; returns it.
pub async fn await_object<K>(api: &Api<K>, name: &str, cond: impl Fn(&K) -> bool) -> K
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let found = within(
        &format!("{name} to reach the expected state"),
        await_condition(api.clone(), name, move |o: Option<&K>| o.is_some_and(&cond)),
    )
    .await
    .unwrap_or_else(|e| panic!("watch of {name}: {e}"));
    found.expect("the condition holds only for a present object")
}

/// A test CRD shaped like the operator's (defaults, enum, pattern, list types, a CEL rule, the
/// status subresource), in a group of its own so that tests sharing a real server never touch
/// the operator's CRDs or each other's.
pub struct TestCrd {
    pub group: String,
}

impl TestCrd {
    /// `tag` names the test: the group is `<tag>.kube-api.harness.test`.
    pub fn new(tag: &str) -> TestCrd {
        TestCrd {
            group: format!("{tag}.kube-api.harness.test"),
        }
    }

    pub fn name(&self) -> String {
        format!("ecrpublicpullsecrets.{}", self.group)
    }

    /// How `Invalid` messages name the kind.
    pub fn qualified_kind(&self) -> String {
        format!("EcrPublicPullSecret.{}", self.group)
    }

    pub fn api_version(&self) -> String {
        format!("{}/v1alpha1", self.group)
    }

    pub fn definition(&self) -> CustomResourceDefinition {
        serde_json::from_value(self.definition_json()).expect("a valid CRD")
    }

    pub fn definition_json(&self) -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": self.name()},
            "spec": {
                "group": self.group,
                "names": {"kind": "EcrPublicPullSecret", "plural": "ecrpublicpullsecrets", "singular": "ecrpublicpullsecret", "shortNames": ["epps"]},
                "scope": "Namespaced",
                "versions": [{
                    "name": "v1alpha1",
                    "served": true,
                    "storage": true,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": {
                        "type": "object",
                        "required": ["spec"],
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "secretName": {"type": "string", "minLength": 1, "maxLength": 253, "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", "nullable": true},
                                    "registries": {"type": "array", "default": ["public.ecr.aws"], "minItems": 1, "maxItems": 2, "x-kubernetes-list-type": "set",
                                        "items": {"type": "string", "enum": ["public.ecr.aws", "ecr-public.aws.com"]}},
                                    "refreshBefore": {"type": "string", "pattern": "^([0-9]+(\\.[0-9]+)?(h|m|s|ms))+$", "nullable": true,
                                        "x-kubernetes-validations": [{"rule": "duration(self) > duration('0s')"}]},
                                    "onExpiry": {"type": "string", "default": "RemoveAuth", "enum": ["RemoveAuth", "Keep"]},
                                    "secretTemplate": {"type": "object", "nullable": true, "properties": {
                                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                        "annotations": {"type": "object", "additionalProperties": {"type": "string"}}
                                    }}
                                }
                            },
                            "status": {
                                "type": "object",
                                "nullable": true,
                                "properties": {
                                    "conditions": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
                                        "items": {"type": "object", "required": ["type", "status"], "properties": {
                                            "type": {"type": "string"}, "status": {"type": "string"}, "reason": {"type": "string"},
                                            "message": {"type": "string"}, "lastTransitionTime": {"type": "string", "format": "date-time"},
                                            "observedGeneration": {"type": "integer", "minimum": 0}
                                        }}},
                                    "observedGeneration": {"type": "integer", "nullable": true},
                                    "secretName": {"type": "string", "nullable": true}
                                }
                            }
                        }
                    }}
                }]
            }
        })
    }

    pub fn resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(&self.group, "v1alpha1", "EcrPublicPullSecret"),
            "ecrpublicpullsecrets",
        )
    }

    pub fn api(&self, client: &Client, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), ns, &self.resource())
    }

    pub fn object(&self, name: &str, spec: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": self.api_version(),
            "kind": "EcrPublicPullSecret",
            "metadata": {"name": name},
            "spec": spec,
        }))
        .expect("valid DynamicObject")
    }

    /// Established, and its resource answering lists: right after it is established a real
    /// server can still answer 429 while the resource's storage initialises.
    pub async fn await_served(&self, client: &Client) {
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        within(
            &format!("CRD {} to be established", self.name()),
            await_condition(crds, &self.name(), conditions::is_crd_established()),
        )
        .await
        .unwrap_or_else(|e| panic!("watch of CRD {}: {e}", self.name()));
        let all: Api<DynamicObject> = Api::all_with(client.clone(), &self.resource());
        within(&format!("{} to be served", self.name()), async {
            while all.list(&ListParams::default().limit(1)).await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
    }
}

/// The Status of a failed call, which must be a `kube::Error::Api`.
pub fn status(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API Status error, got {other:?}"),
    }
}
