//! The API server's audit log read as a request log, in the shape of the emulator's
//! [`RequestRecord`]s, so one test can count a backend's requests either way.
//!
//! Each request appears twice: at `RequestReceived`, written before the request is served (so
//! any change a test has observed is already logged, as in the emulator's log-on-arrival), and at
//! `ResponseComplete` with the status code. Records come in arrival order with the code of the
//! completion, or 0 while the request is still being handled.

use std::{collections::HashMap, io::Read, path::Path};

use serde_json::Value;

use crate::kube_api::RequestRecord;

/// Records of the audit log from byte `offset` on, with the offset its end had when read (pass
/// it next time to read only what came since). A partly written last line is left for later.
pub fn read(path: &Path, offset: u64) -> (Vec<RequestRecord>, u64) {
    let mut text = Vec::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        use std::io::Seek;
        if file.seek(std::io::SeekFrom::Start(offset)).is_ok() {
            let _ = file.read_to_end(&mut text);
        }
    }
    let complete = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let text = String::from_utf8_lossy(&text[..complete]);
    (records(&text), offset + complete as u64)
}

/// Parses audit events (JSON lines) into request records.
pub fn records(text: &str) -> Vec<RequestRecord> {
    let mut out: Vec<RequestRecord> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let id = event["auditID"].as_str().unwrap_or_default().to_string();
        let code = event["responseStatus"]["code"]
            .as_u64()
            .and_then(|c| u16::try_from(c).ok());
        match event["stage"].as_str() {
            Some("RequestReceived") => {
                by_id.insert(id, out.len());
                let seq = out.len() as u64;
                out.push(record(&event, seq));
            }
            // A completion whose arrival came before `offset` belongs to an earlier read.
            Some("ResponseComplete" | "Panic") => {
                if let Some(&i) = by_id.get(&id) {
                    out[i].code = code.unwrap_or(0);
                }
            }
            _ => {}
        }
    }
    out
}

fn record(event: &Value, seq: u64) -> RequestRecord {
    let s = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    let obj = &event["objectRef"];
    let uri = event["requestURI"].as_str().unwrap_or_default();
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let resource = match (s(&obj["resource"]), s(&obj["apiGroup"])) {
        (Some(r), Some(g)) => format!("{r}.{g}"),
        (Some(r), None) => r,
        (None, _) => path.to_string(),
    };
    let field_manager = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "fieldManager")
        .map(|(_, v)| v.into_owned());
    RequestRecord {
        verb: s(&event["verb"]).unwrap_or_default(),
        resource,
        namespace: s(&obj["namespace"]),
        name: s(&obj["name"]),
        subresource: s(&obj["subresource"]),
        field_manager,
        // Not in an audit event at Metadata level; tests read managedFields instead.
        patch_type: None,
        code: 0,
        user_agent: s(&event["userAgent"]),
        user: s(&event["user"]["username"]),
        seq,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_joined_with_their_completion_in_arrival_order() {
        let log = r#"{"kind":"Event","stage":"RequestReceived","auditID":"a","verb":"patch","requestURI":"/api/v1/namespaces/ns/secrets/s?fieldManager=op&force=true","user":{"username":"epps-operator"},"userAgent":"kube-rs","objectRef":{"resource":"secrets","namespace":"ns","name":"s","apiVersion":"v1"}}
{"kind":"Event","stage":"RequestReceived","auditID":"b","verb":"get","requestURI":"/apis/coordination.k8s.io/v1/namespaces/ns/leases/l","user":{"username":"x"},"objectRef":{"resource":"leases","namespace":"ns","name":"l","apiGroup":"coordination.k8s.io"}}
{"kind":"Event","stage":"ResponseComplete","auditID":"a","verb":"patch","responseStatus":{"code":200}}
{"kind":"Event","stage":"RequestReceived","auditID":"c","verb":"get","requestURI":"/version","user":{"username":"x"}}
"#;
        let r = records(log);
        assert_eq!(r.len(), 3);
        assert_eq!(
            (r[0].verb.as_str(), r[0].resource.as_str(), r[0].code),
            ("patch", "secrets", 200)
        );
        assert_eq!(r[0].field_manager.as_deref(), Some("op"));
        assert_eq!(r[0].user.as_deref(), Some("epps-operator"));
        assert_eq!(r[1].resource, "leases.coordination.k8s.io");
        assert_eq!(r[1].code, 0, "not completed yet");
        assert_eq!(r[2].resource, "/version");
    }

    #[test]
    fn a_partly_written_line_is_left_for_the_next_read() {
        let dir = std::env::temp_dir().join(format!("audit-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.log");
        let full = r#"{"stage":"RequestReceived","auditID":"a","verb":"get","requestURI":"/x"}"#;
        std::fs::write(&path, format!("{full}\n{{\"stage\":\"Req")).unwrap();
        let (r, offset) = read(&path, 0);
        assert_eq!((r.len(), offset), (1, full.len() as u64 + 1));
        let (r, _) = read(&path, offset);
        assert!(r.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
