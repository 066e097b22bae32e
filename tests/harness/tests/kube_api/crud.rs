use harness::env::Api as Backend;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use kube::discovery::Discovery;
use serde_json::{Value, json};

use crate::common::{Cluster, TestCrd, await_deleted, await_object, status, within};

async fn custom_resource_crud_with_status_subresource(backend: Backend) {
    let k = Cluster::start(backend).await;
    let crd = TestCrd::new("crud");
    let crds: Api<CustomResourceDefinition> = Api::all(k.client.clone());
    let created = crds
        .create(&PostParams::default(), &crd.definition())
        .await
        .unwrap();
    // The create stores the CRD; the CRD controllers accept its names and establish it after.
    let conditions = created
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default();
    assert!(
        !conditions.iter().any(|c| c.type_ == "Established"),
        "{conditions:?}"
    );
    crd.await_served(&k.client).await;
    let established = crds.get(&crd.name()).await.unwrap().status.unwrap();
    for condition in ["NamesAccepted", "Established"] {
        assert!(
            established
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == condition && c.status == "True"),
            "{condition}: {established:?}"
        );
    }
    assert_eq!(
        established.accepted_names.map(|n| n.kind).as_deref(),
        Some("EcrPublicPullSecret")
    );
    assert_eq!(established.stored_versions, Some(vec!["v1alpha1".into()]));

    let api = crd.api(&k.client, &k.ns);
    let mut obj = crd.object("one", json!({}));
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
    // Custom resources are listed with their kind, as they are stored.
    assert_eq!(
        listed.items[0].types.as_ref().map(|t| t.kind.as_str()),
        Some("EcrPublicPullSecret")
    );
    let deleted = api.delete("one", &DeleteParams::default()).await.unwrap();
    let gone = deleted.right().expect("a Success Status");
    assert!(gone.is_success(), "{gone:?}");
    let details = gone.details.unwrap();
    assert_eq!(
        (details.name.as_str(), details.kind.as_str()),
        ("one", "ecrpublicpullsecrets")
    );
    assert!(api.get_opt("one").await.unwrap().is_none());
}

async fn schema_validation_and_pruning_match_the_real_messages(backend: Backend) {
    let k = Cluster::start(backend).await;
    let crd = TestCrd::new("schema");
    k.install(&crd).await;
    let api = crd.api(&k.client, &k.ns);

    let err = api
        .create(
            &PostParams::default(),
            &crd.object("bad", json!({"registries": ["docker.io"]})),
        )
        .await
        .unwrap_err();
    let s = status(err);
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    // The schema has a CEL rule, which the server does not evaluate once a value is refused
    // outright: it says so.
    assert_eq!(
        s.message,
        format!(
            "{} \"bad\" is invalid: [spec.registries[0]: Unsupported value: \"docker.io\": supported values: \"public.ecr.aws\", \"ecr-public.aws.com\", <nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation]",
            crd.qualified_kind()
        )
    );
    let causes = s.details.unwrap().causes;
    assert_eq!(causes[0].field, "spec.registries[0]");
    assert_eq!(causes[0].reason, "FieldValueNotSupported");
    assert_eq!(
        (causes[1].field.as_str(), causes[1].reason.as_str()),
        ("<nil>", "FieldValueInvalid")
    );

    // A value of the wrong type is refused for its type and for the enum.
    let s = status(
        api.create(
            &PostParams::default(),
            &crd.object("bad", json!({"onExpiry": 5})),
        )
        .await
        .unwrap_err(),
    );
    let causes: Vec<(String, String)> = s
        .details
        .unwrap()
        .causes
        .into_iter()
        .map(|c| (c.field, c.reason))
        .collect();
    assert_eq!(
        causes,
        [
            ("spec.onExpiry", "FieldValueTypeInvalid"),
            ("spec.onExpiry", "FieldValueNotSupported"),
            ("<nil>", "FieldValueInvalid")
        ]
        .map(|(f, r)| (f.to_string(), r.to_string()))
    );
    assert!(
        s.message.contains(
            "spec.onExpiry: Invalid value: \"integer\": spec.onExpiry in body must be of type string: \"integer\""
        ),
        "{}",
        s.message
    );

    let err = api
        .create(
            &PostParams::default(),
            &crd.object("bad", json!({"refreshBefore": "soon", "registries": []})),
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

    let mut missing_spec = crd.object("nospec", json!({}));
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

    // Unknown fields are pruned.
    let ok = api
        .create(&PostParams::default(), &crd.object("ok", json!({"bogus": 1, "refreshBefore": "1h", "secretTemplate": {"labels": {"x": "y"}, "extra": true}})))
        .await
        .unwrap();
    assert!(ok.data["spec"].get("bogus").is_none());
    assert!(ok.data["spec"]["secretTemplate"].get("extra").is_none());
    assert_eq!(ok.data["spec"]["secretTemplate"]["labels"]["x"], json!("y"));

    // CEL rules (`x-kubernetes-validations`) are the real server's only: the emulator does not
    // evaluate them (see "Not emulated" in harness::kube_api).
    if k.is_real() {
        let s = status(
            api.create(
                &PostParams::default(),
                &crd.object("zero", json!({"refreshBefore": "0s"})),
            )
            .await
            .unwrap_err(),
        );
        assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
        assert!(
            s.message
                .contains("failed rule: duration(self) > duration('0s')"),
            "{}",
            s.message
        );
    }
}

async fn errors_are_kube_api_statuses(backend: Backend) {
    let k = Cluster::start(backend).await;
    let secrets: Api<Secret> = k.api();
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
    // Built-in types are listed without kind and apiVersion on each item.
    let request = http::Request::get(format!("/api/v1/namespaces/{}/secrets", k.ns))
        .body(Vec::new())
        .unwrap();
    let listed: Value = k.client.request(request).await.unwrap();
    assert_eq!(listed["kind"], "SecretList");
    assert!(
        listed["items"][0].get("kind").is_none() && listed["items"][0].get("apiVersion").is_none(),
        "{listed}"
    );
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

    let elsewhere: Api<ConfigMap> = Api::namespaced(k.client.clone(), &format!("{}-none", k.ns));
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap();
    let s = status(
        elsewhere
            .create(&PostParams::default(), &cm)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (s.code, s.message),
        (404, format!("namespaces \"{}-none\" not found", k.ns))
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
    assert_eq!(k.count("update", "secrets"), 2);

    // Delete preconditions are checked first, and name the kind.
    let uid = fresh.metadata.uid.unwrap();
    let stale_uid = "00000000-0000-0000-0000-000000000000";
    let precondition = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(stale_uid.into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let s = status(secrets.delete("s", &precondition).await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        s.message,
        format!(
            "Operation cannot be fulfilled on Secret \"s\": the UID in the precondition ({stale_uid}) does not match the UID in record ({uid}). The object might have been deleted and then recreated"
        )
    );
    // A Secret's delete answers with a Success Status naming it.
    let gone = secrets
        .delete("s", &DeleteParams::default())
        .await
        .unwrap()
        .right()
        .expect("a Success Status");
    let details = gone.details.unwrap();
    assert_eq!(
        (details.name.as_str(), details.kind.as_str(), details.uid),
        ("s", "secrets", uid)
    );
}

async fn generate_name_namespaces_discovery_and_token_requests(backend: Backend) {
    let k = Cluster::start(backend).await;
    let crd = TestCrd::new("discovery");
    k.install(&crd).await;
    let cms: Api<ConfigMap> = k.api();
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    let name = created.metadata.name.unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");

    let namespaces: Api<Namespace> = Api::all(k.client.clone());
    for ns in ["default", k.ns.as_str()] {
        let namespace = namespaces.get(ns).await.unwrap();
        assert_eq!(namespace.status.unwrap().phase.as_deref(), Some("Active"));
        assert_eq!(
            namespace.metadata.labels.unwrap()["kubernetes.io/metadata.name"],
            ns
        );
        assert_eq!(
            namespace.spec.unwrap().finalizers,
            Some(vec!["kubernetes".to_string()])
        );
    }

    // Only the groups this test looks at: other tests add and remove CRDs meanwhile.
    let discovery = Discovery::new(k.client.clone())
        .filter(&["", &crd.group])
        .run()
        .await
        .unwrap();
    assert!(discovery.groups().any(|g| g.name() == crd.group));
    let aggregated = Discovery::new(k.client.clone())
        .filter(&["", &crd.group])
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

    let sas: Api<ServiceAccount> = k.api();
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
    assert_eq!(
        claims["sub"],
        json!(format!("system:serviceaccount:{}:op", k.ns))
    );
    assert_eq!(claims["aud"], json!(["sts.amazonaws.com"]));
    assert!(token["status"]["expirationTimestamp"].is_string());
    let missing = sas
        .create_subresource::<Value, Value>("token", "nope", &PostParams::default(), &request)
        .await
        .unwrap_err();
    assert_eq!(status(missing).code, 404);
    let short = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 60}});
    let s = status(
        sas.create_subresource::<Value, Value>("token", "op", &PostParams::default(), &short)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (s.code, s.message.as_str()),
        (
            422,
            "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"
        )
    );

    // ServiceAccounts' deletes answer with the object.
    let deleted = sas.delete("op", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        deleted.left().and_then(|sa| sa.metadata.name).as_deref(),
        Some("op")
    );
    // Every namespace has its `default` ServiceAccount (kube-controller-manager's ServiceAccount
    // controller), which comes back when deleted.
    let default = await_object(&sas, "default", |_| true).await;
    let old_uid = default.metadata.uid.unwrap();
    sas.delete("default", &DeleteParams::default())
        .await
        .unwrap();
    await_object(&sas, "default", |sa| {
        sa.metadata.uid.as_deref() != Some(old_uid.as_str())
    })
    .await;
}

async fn custom_resource_puts_are_conditional_and_crd_deletion_removes_the_type(backend: Backend) {
    let k = Cluster::start(backend).await;
    let crd = TestCrd::new("deletion");
    k.install(&crd).await;
    let api = crd.api(&k.client, &k.ns);
    let created = api
        .create(&PostParams::default(), &crd.object("x", json!({})))
        .await
        .unwrap();
    let mut unconditional = created.clone();
    unconditional.metadata.resource_version = None;
    let s = status(
        api.replace("x", &PostParams::default(), &unconditional)
            .await
            .unwrap_err(),
    );
    // The store words it with the resource where the kind would be.
    assert_eq!(
        s.message,
        format!(
            "{} \"x\" is invalid: metadata.resourceVersion: Invalid value: 0: must be specified for an update",
            crd.name()
        )
    );
    let details = s.details.unwrap();
    assert_eq!(
        (details.group.as_str(), details.kind.as_str()),
        (crd.group.as_str(), "ecrpublicpullsecrets")
    );

    let crds: Api<CustomResourceDefinition> = Api::all(k.client.clone());
    let uid = crds.get(&crd.name()).await.unwrap().metadata.uid.unwrap();
    // The CRD stays, terminating, until its instances are gone.
    let terminating = crds
        .delete(&crd.name(), &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .expect("the CRD, marked for deletion");
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(
        terminating.metadata.finalizers,
        Some(vec![
            "customresourcecleanup.apiextensions.k8s.io".to_string()
        ])
    );
    let conditions = terminating.status.unwrap().conditions.unwrap_or_default();
    let cleanup = conditions
        .iter()
        .find(|c| c.type_ == "Terminating")
        .unwrap();
    assert_eq!(
        (cleanup.status.as_str(), cleanup.reason.as_deref()),
        ("True", Some("InstanceDeletionPending"))
    );
    await_deleted(&crds, &crd.name(), &uid).await;
    // The real server stops serving the type when its CRD handler has seen the deletion, a
    // moment after the CRD object is gone; there is nothing to watch for that but the list.
    let gone = within("the type to stop being served", async {
        loop {
            match api.list(&ListParams::default()).await {
                Err(e) => break e,
                Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    })
    .await;
    assert_eq!(status(gone).code, 404);
    // The instances went with their CRD: a new CRD of the same name starts empty.
    k.install(&crd).await;
    assert!(
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "instances go with their CRD"
    );
}

harness::on_both_apis!(
    custom_resource_crud_with_status_subresource,
    schema_validation_and_pruning_match_the_real_messages,
    errors_are_kube_api_statuses,
    generate_name_namespaces_discovery_and_token_requests,
    custom_resource_puts_are_conditional_and_crd_deletion_removes_the_type,
);
