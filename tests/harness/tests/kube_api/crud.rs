use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::discovery::Discovery;
use serde_json::{Value, json};

use crate::common::{self, CR, cr, cr_api, start, status};

#[tokio::test]
async fn custom_resource_crud_with_status_subresource() {
    let (server, client) = start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(common::crd()).unwrap();
    let created = crds.create(&PostParams::default(), &crd).await.unwrap();
    // The create stores the CRD; the CRD controllers accept its names and establish it after.
    let conditions = created
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default();
    assert!(
        !conditions.iter().any(|c| c.type_ == "Established"),
        "{conditions:?}"
    );
    let established = crds
        .get(CR)
        .await
        .unwrap()
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default();
    assert!(
        established
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );

    let api = cr_api(&client, "default");
    let mut obj = cr("one", json!({}));
    obj.data["status"] = json!({"secretName": "ignored"});
    let one = api.create(&PostParams::default(), &obj).await.unwrap();
    assert_eq!(one.metadata.generation, Some(1));
    assert!(one.metadata.uid.is_some());
    assert_eq!(
        one.data["spec"]["registries"],
        json!(["public.ecr.aws"]),
        "schema default applied"
    );
    assert_eq!(one.data["spec"]["onExpiry"], json!("RemoveAuth"));
    assert!(one.data.get("status").is_none(), "create cannot set status");

    // Status writes change only status and leave generation alone.
    let mut with_status = one.clone();
    with_status.data["status"] = json!({"observedGeneration": 1, "secretName": "one"});
    with_status.data["spec"]["onExpiry"] = json!("Keep");
    let after_status = api
        .replace_status("one", &PostParams::default(), &with_status)
        .await
        .unwrap();
    assert_eq!(after_status.data["status"]["secretName"], json!("one"));
    assert_eq!(
        after_status.data["spec"]["onExpiry"],
        json!("RemoveAuth"),
        "status write ignores spec"
    );
    assert_eq!(after_status.metadata.generation, Some(1));

    // Main-resource writes ignore status and bump generation on spec changes only.
    let mut changed = after_status.clone();
    changed.data["spec"]["onExpiry"] = json!("Keep");
    changed.data["status"] = json!({"secretName": "nope"});
    let replaced = api
        .replace("one", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_eq!(replaced.metadata.generation, Some(2));
    assert_eq!(replaced.data["status"]["secretName"], json!("one"));
    let mut labelled = replaced.clone();
    labelled.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
    let labelled = api
        .replace("one", &PostParams::default(), &labelled)
        .await
        .unwrap();
    assert_eq!(
        labelled.metadata.generation,
        Some(2),
        "metadata changes keep generation"
    );

    let listed = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    api.delete("one", &DeleteParams::default()).await.unwrap();
    assert!(api.get_opt("one").await.unwrap().is_none());
    assert!(server.state().get(CR, Some("default"), "one").is_none());
}

#[tokio::test]
async fn schema_validation_and_pruning_match_the_real_messages() {
    let (server, client) = start().await;
    server.state().install_crd(common::crd()).unwrap();
    let api = cr_api(&client, "default");

    let err = api
        .create(
            &PostParams::default(),
            &cr("bad", json!({"registries": ["docker.io"]})),
        )
        .await
        .unwrap_err();
    let s = status(err);
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    // The schema has a CEL rule, which the server does not evaluate once a value is refused
    // outright: it says so.
    assert_eq!(
        s.message,
        "EcrPublicPullSecret.ecrpublic.pullsecrets.dev \"bad\" is invalid: [spec.registries[0]: Unsupported value: \"docker.io\": supported values: \"public.ecr.aws\", \"ecr-public.aws.com\", <nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation]"
    );
    let causes = s.details.unwrap().causes;
    assert_eq!(causes[0].field, "spec.registries[0]");
    assert_eq!(causes[0].reason, "FieldValueNotSupported");

    let err = api
        .create(
            &PostParams::default(),
            &cr("bad", json!({"refreshBefore": "soon", "registries": []})),
        )
        .await
        .unwrap_err();
    let s = status(err);
    assert!(
        s.message.contains(
            "spec.refreshBefore: Invalid value: \"soon\": spec.refreshBefore in body should match"
        ),
        "{}",
        s.message
    );
    assert!(s.message.contains("spec.registries: Invalid value: 0: spec.registries in body should have at least 1 items"), "{}", s.message);

    let mut missing_spec = cr("nospec", json!({}));
    missing_spec.data = json!({});
    let s = status(
        api.create(&PostParams::default(), &missing_spec)
            .await
            .unwrap_err(),
    );
    assert!(
        s.message.ends_with("is invalid: [spec: Required value, <nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation]"),
        "{}",
        s.message
    );

    // Unknown fields are pruned; CEL rules are not evaluated.
    let ok = api
        .create(&PostParams::default(), &cr("ok", json!({"bogus": 1, "refreshBefore": "1h", "secretTemplate": {"labels": {"x": "y"}, "extra": true}})))
        .await
        .unwrap();
    assert!(ok.data["spec"].get("bogus").is_none());
    assert!(ok.data["spec"]["secretTemplate"].get("extra").is_none());
    assert_eq!(ok.data["spec"]["secretTemplate"]["labels"]["x"], json!("y"));
}

#[tokio::test]
async fn errors_are_kube_api_statuses() {
    let (server, client) = start().await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let s = status(secrets.get("missing").await.unwrap_err());
    assert_eq!(
        (s.code, s.reason.as_str(), s.message.as_str()),
        (404, "NotFound", "secrets \"missing\" not found")
    );
    assert_eq!(s.details.unwrap().kind, "secrets");

    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}}))
            .unwrap();
    let created = secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    assert_eq!(created.type_.as_deref(), Some("Opaque"));
    assert_eq!(created.data.unwrap()["k"].0, b"v");
    let s = status(
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (s.code, s.reason.as_str(), s.message.as_str()),
        (409, "AlreadyExists", "secrets \"s\" already exists")
    );

    let bad: Secret = serde_json::from_value(json!({"metadata": {"name": "Bad_Name"}})).unwrap();
    let s = status(
        secrets
            .create(&PostParams::default(), &bad)
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    assert!(s.message.starts_with("Secret \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"), "{}", s.message);

    let docker: Secret = serde_json::from_value(json!({"metadata": {"name": "d"}, "type": "kubernetes.io/dockerconfigjson", "stringData": {"other": "x"}})).unwrap();
    let s = status(
        secrets
            .create(&PostParams::default(), &docker)
            .await
            .unwrap_err(),
    );
    assert!(
        s.message
            .contains("data[.dockerconfigjson]: Required value"),
        "{}",
        s.message
    );

    let elsewhere: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap();
    let s = status(
        elsewhere
            .create(&PostParams::default(), &cm)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (s.code, s.message.as_str()),
        (404, "namespaces \"nowhere\" not found")
    );

    // A stale resourceVersion is a precondition failure.
    let mut stale = secrets.get("s").await.unwrap();
    let mut fresh = stale.clone();
    fresh.metadata.labels = Some([("v".to_string(), "1".to_string())].into());
    let fresh = secrets
        .replace("s", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_ne!(
        fresh.metadata.resource_version,
        stale.metadata.resource_version
    );
    stale.metadata.labels = Some([("v".to_string(), "2".to_string())].into());
    let s = status(
        secrets
            .replace("s", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        s.message,
        "Operation cannot be fulfilled on secrets \"s\": the object has been modified; please apply your changes to the latest version and try again"
    );
    assert_eq!(server.state().count("update", "secrets"), 2);
}

#[tokio::test]
async fn generate_name_namespaces_discovery_and_token_requests() {
    let (server, client) = start().await;
    server.state().install_crd(common::crd()).unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    let name = created.metadata.name.unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let default = namespaces.get("default").await.unwrap();
    assert_eq!(default.status.unwrap().phase.as_deref(), Some("Active"));
    assert_eq!(
        default.metadata.labels.unwrap()["kubernetes.io/metadata.name"],
        "default"
    );

    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    assert!(
        discovery
            .groups()
            .any(|g| g.name() == "ecrpublic.pullsecrets.dev")
    );
    let aggregated = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .unwrap();
    let kinds: Vec<String> = aggregated
        .groups()
        .flat_map(|g| g.recommended_resources())
        .map(|(r, _)| r.kind)
        .collect();
    assert!(
        kinds.contains(&"EcrPublicPullSecret".to_string()) && kinds.contains(&"Secret".to_string()),
        "{kinds:?}"
    );

    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "op"}})).unwrap();
    sas.create(&PostParams::default(), &sa).await.unwrap();
    let request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"audiences": ["sts.amazonaws.com"]}});
    let token: Value = sas
        .create_subresource("token", "op", &PostParams::default(), &request)
        .await
        .unwrap();
    let jwt = token["status"]["token"].as_str().unwrap();
    let payload = jwt.split('.').nth(1).unwrap();
    use base64::Engine as _;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], json!("system:serviceaccount:default:op"));
    assert_eq!(claims["aud"], json!(["sts.amazonaws.com"]));
    assert!(token["status"]["expirationTimestamp"].is_string());
    let missing = sas
        .create_subresource::<Value, Value>("token", "nope", &PostParams::default(), &request)
        .await
        .unwrap_err();
    assert_eq!(status(missing).code, 404);
}

#[tokio::test]
async fn custom_resource_puts_are_conditional_and_crd_deletion_removes_the_type() {
    let (server, client) = start().await;
    let emu = server.state();
    emu.install_crd(common::crd()).unwrap();
    let api = cr_api(&client, "default");
    let created = api
        .create(&PostParams::default(), &cr("x", json!({})))
        .await
        .unwrap();
    let mut unconditional = created.clone();
    unconditional.metadata.resource_version = None;
    let s = status(
        api.replace("x", &PostParams::default(), &unconditional)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        s.message,
        "ecrpublicpullsecrets.ecrpublic.pullsecrets.dev \"x\" is invalid: metadata.resourceVersion: Invalid value: 0: must be specified for an update"
    );

    let waiter = {
        let emu = emu.clone();
        tokio::spawn(async move {
            emu.wait_until(std::time::Duration::from_secs(5), |e| {
                e.get(CR, Some("default"), "x").is_none()
            })
            .await
        })
    };
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.delete(CR, &DeleteParams::default()).await.unwrap();
    assert!(waiter.await.unwrap(), "instances go with their CRD");
    let s = status(api.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(s.code, 404);
}
