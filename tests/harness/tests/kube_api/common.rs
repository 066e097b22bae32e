use harness::kube_api::ApiServer;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::{Value, json};

pub const CR: &str = "ecrpublicpullsecrets.ecrpublic.pullsecrets.dev";

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

pub async fn start() -> (ApiServer, Client) {
    let server = ApiServer::start().await.expect("server starts");
    let client = client(&server).await;
    (server, client)
}

/// A CRD shaped like the operator's: defaults, enum, pattern, list types, status subresource.
pub fn crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CR},
        "spec": {
            "group": "ecrpublic.pullsecrets.dev",
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

pub fn cr_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            "ecrpublic.pullsecrets.dev",
            "v1alpha1",
            "EcrPublicPullSecret",
        ),
        "ecrpublicpullsecrets",
    )
}

pub fn cr_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &cr_resource())
}

pub fn cr(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "ecrpublic.pullsecrets.dev/v1alpha1",
        "kind": "EcrPublicPullSecret",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("valid DynamicObject")
}

/// The Status of a failed call, which must be a `kube::Error::Api`.
pub fn status(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API Status error, got {other:?}"),
    }
}
