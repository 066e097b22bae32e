//! The README's YAML examples are what users paste first: each resource in them must be accepted
//! by the CRD as written (no field the schema would prune away, no value it rejects), and each
//! chart values example must name values the chart has. The resources are checked by the
//! emulator's schema handling and, as `real_api_server::…`, by the real kube-apiserver's.

use harness::{env::*, on_both_apis};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every YAML document in a ```yaml block of the README.
fn readme_documents() -> Vec<Value> {
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).expect("README.md");
    let mut docs = Vec::new();
    for block in readme.split("```yaml\n").skip(1) {
        let block = block.split("```").next().unwrap_or_default();
        for doc in block.split("\n---\n") {
            let value: Value = serde_yaml::from_str(doc)
                .unwrap_or_else(|e| panic!("README YAML does not parse: {e}\n{doc}"));
            // A values.yaml example says so in its first line.
            let value = if doc.trim_start().starts_with("# values.yaml") {
                serde_json::json!({"values.yaml": value})
            } else {
                value
            };
            docs.push(value);
        }
    }
    docs
}

/// Each path of `sent` is in `stored` with the same value (the server may add defaults).
fn missing_paths(sent: &Value, stored: &Value, path: &str, out: &mut Vec<String>) {
    match (sent, stored) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => missing_paths(v, w, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}")),
                }
            }
        }
        _ if sent == stored => {}
        _ => out.push(format!("{path} ({sent} became {stored})")),
    }
}

async fn every_resource_in_the_readme_is_accepted_by_the_crd_as_written(api: Api) {
    let env = Env::start_on(api).await;
    let mut checked = 0;
    for doc in readme_documents() {
        let (resource, namespaced) = match doc["kind"].as_str() {
            Some("EcrPublicPullSecret") => (CRS, true),
            Some("ClusterEcrPublicPullSecret") => (CLUSTER_CRS, false),
            Some("ServiceAccount") => ("serviceaccounts", true),
            _ => continue,
        };
        let ns = doc["metadata"]["namespace"].as_str().map(str::to_owned);
        if let Some(ns) = &ns {
            env.create_namespace(ns, &[]).await;
        }
        assert_eq!(
            namespaced,
            ns.is_some(),
            "namespace as the kind needs: {doc}"
        );
        let stored = env
            .k8s
            .create(resource, ns.as_deref(), doc.clone())
            .await
            .unwrap_or_else(|status| panic!("README example refused: {status}\n{doc}"));
        let mut missing = Vec::new();
        for part in ["spec", "metadata", "imagePullSecrets"] {
            if let Some(sent) = doc.get(part) {
                missing_paths(sent, &stored[part], part, &mut missing);
            }
        }
        assert!(
            missing.is_empty(),
            "README example loses {missing:?} when stored: {doc}"
        );
        env.k8s
            .delete(
                resource,
                ns.as_deref(),
                doc["metadata"]["name"].as_str().unwrap(),
            )
            .await
            .expect("delete");
        checked += 1;
    }
    assert!(checked >= 5, "found only {checked} README resources");
}

#[test]
fn every_chart_value_in_the_readme_exists_in_values_yaml() {
    let values: Value = serde_yaml::from_str(
        &std::fs::read_to_string(format!(
            "{ROOT}/charts/ecr-public-pull-secret-operator/values.yaml"
        ))
        .expect("values.yaml"),
    )
    .expect("values.yaml parses");
    let mut checked = 0;
    for doc in readme_documents() {
        let Some(example) = doc.get("values.yaml") else {
            continue;
        };
        let mut unknown = Vec::new();
        let mut walk = vec![(example, &values, String::new())];
        while let Some((e, v, path)) = walk.pop() {
            for (k, ev) in e.as_object().into_iter().flatten() {
                match v.get(k) {
                    Some(vv) if ev.is_object() => walk.push((ev, vv, format!("{path}.{k}"))),
                    Some(_) => {}
                    None => unknown.push(format!("{path}.{k}")),
                }
            }
        }
        assert!(
            unknown.is_empty(),
            "README names values the chart lacks: {unknown:?}"
        );
        checked += 1;
    }
    assert!(checked >= 1, "no values.yaml example found in the README");
}

on_both_apis!(every_resource_in_the_readme_is_accepted_by_the_crd_as_written);
