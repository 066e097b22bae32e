//! moto's standalone server as the STS of the AWS identity tests, run from the venv that
//! `tests/chart/bootstrap.py DIR moto` installs (pinned in `tests/aws/requirements.txt`).
//!
//! What moto 5.2's STS does, as relied on here: AssumeRoleWithWebIdentity takes any token (it is
//! neither parsed nor verified) and needs no signature; AssumeRole takes any signature and does not
//! require the role to exist; both honour DurationSeconds (without bounds checks) and hand out
//! `ASIA…` keys that moto remembers, so GetCallerIdentity from such a key answers
//! `arn:aws:sts::<account>:assumed-role/<role>/<session>`. Every request is recorded (moto's
//! recorder), so a test can see the form fields the SDK actually sent.

use std::{
    collections::BTreeMap,
    fs::File,
    io,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use axum::http::{Method, StatusCode};
use base64::Engine as _;

use crate::{http_client, scratch::ScratchDir};

/// How long moto may take to import and bind; it takes 1–3 s, more on a loaded CI machine.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Runs moto's server on 127.0.0.1 with an OS-chosen port. A thread blocked on stdin ends the
/// process once the pipe closes, so moto cannot outlive the test process even if that one is
/// SIGKILLed before `Drop` runs.
const LAUNCHER: &str = r#"
import os, sys, threading
def exit_when_parent_gone():
    sys.stdin.buffer.read()
    os._exit(0)
threading.Thread(target=exit_when_parent_gone, daemon=True).start()
from moto.server import main
main(["-H", "127.0.0.1", "-p", "0"])
"#;

/// What werkzeug logs once the socket is bound; with port 0 it prints the port the OS chose, so
/// there is no window in which another process could take it (as with bind-drop-pass).
const BOUND_LINE: &str = " * Running on http://127.0.0.1:";

/// Installs (or checks) moto into `tools_dir` with `tests/chart/bootstrap.py` and returns the path
/// of `moto_server`. Tests pass `<target>/chart-tools`, shared with tests/chart.rs; the script
/// takes a lock and reinstalls only when the pins change. `$PYTHON` overrides `python3`.
pub fn install(tools_dir: &Path) -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .arg(root.join("tests/chart/bootstrap.py"))
        .arg(tools_dir)
        .arg("moto")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {python} (Python 3.11+ with venv is needed): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "installing moto from PyPI failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(tools_dir.join("moto/bin/moto_server"))
}

/// A running moto server. Killed when dropped.
pub struct Moto {
    child: Child,
    port: u16,
    dir: ScratchDir,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts moto from a venv, given its `bin/moto_server` or its `bin/python` (the server is
    /// always run by the venv's python, with the parent watchdog above). Waits until it answers.
    pub async fn start(program: impl AsRef<Path>) -> io::Result<Moto> {
        let program = program.as_ref();
        let is_python = program
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("python"));
        let python = if is_python {
            program.to_path_buf()
        } else {
            program.with_file_name("python")
        };
        if !python.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} is not a venv's python or bin/moto_server",
                    program.display()
                ),
            ));
        }
        let dir = ScratchDir::new("harness-moto")?;
        let log = File::create(dir.path().join("moto.log"))?;
        let child = Command::new(&python)
            .args(["-c", LAUNCHER])
            // The recorder is what `requests` reads; its default file is ./moto_recording, which
            // parallel servers would share.
            .env("MOTO_ENABLE_RECORDING", "true")
            .env("MOTO_RECORDER_FILEPATH", dir.path().join("recording.jsonl"))
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut moto = Moto {
            child,
            port: 0,
            dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        moto.port = moto.wait_for_port(deadline).await?;
        // Bound means answering, but resetting also creates the recording file that `requests`
        // downloads (moto answers 500 while it does not exist).
        loop {
            match moto.control("reset-recording").await {
                Ok(_) => return Ok(moto),
                Err(e) if Instant::now() >= deadline => return Err(moto.failed(&e.to_string())),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    async fn wait_for_port(&mut self, deadline: Instant) -> io::Result<u16> {
        loop {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            // Only a finished line: the read may catch werkzeug halfway through writing it.
            let line = log
                .split(BOUND_LINE)
                .nth(1)
                .and_then(|r| r.split_once('\n'));
            if let Some(port) = line.and_then(|(port, _)| port.trim().parse().ok()) {
                return Ok(port);
            }
            if let Some(status) = self.child.try_wait()? {
                return Err(self.failed(&format!("moto exited with {status}")));
            }
            if Instant::now() >= deadline {
                return Err(self.failed("moto did not bind within the start timeout"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn failed(&self, what: &str) -> io::Error {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let tail = &log[log.len().saturating_sub(4000)..];
        io::Error::other(format!(
            "{what}; moto log {}:\n{tail}",
            self.log_path().display()
        ))
    }

    async fn control(&self, what: &str) -> io::Result<String> {
        let url = format!("{}/moto-api/recorder/{what}", self.url());
        let method = if what == "download-recording" {
            Method::GET
        } else {
            Method::POST
        };
        let resp = http_client::call(method, &url, &[], "").await?;
        let body = String::from_utf8_lossy(resp.body()).into_owned();
        if resp.status() != StatusCode::OK {
            return Err(io::Error::other(format!(
                "{url}: {}: {body}",
                resp.status()
            )));
        }
        Ok(body)
    }

    /// Endpoint URL (`AWS_ENDPOINT_URL_STS`, or the in-repo STS's upstream).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// moto's stdout and stderr; kept after a panicking test.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("moto.log")
    }

    /// The form fields (query string and body) of every recorded request whose `Action` is
    /// `action`, oldest first: e.g. the `RoleArn`, `RoleSessionName`, `WebIdentityToken` and
    /// `DurationSeconds` of each AssumeRoleWithWebIdentity. `caller_arn`'s own calls are recorded
    /// too, as GetCallerIdentity.
    pub async fn requests(&self, action: &str) -> io::Result<Vec<BTreeMap<String, String>>> {
        let recording = self.control("download-recording").await?;
        let mut out = Vec::new();
        for line in recording.lines().filter(|l| !l.trim().is_empty()) {
            let entry: serde_json::Value = serde_json::from_str(line).map_err(io::Error::other)?;
            let body = entry["body"].as_str().unwrap_or_default();
            let body = if entry["body_encoded"].as_bool() == Some(true) {
                base64::engine::general_purpose::STANDARD
                    .decode(body)
                    .map_err(io::Error::other)?
            } else {
                body.as_bytes().to_vec()
            };
            let query = entry["url"]
                .as_str()
                .and_then(|u| u.split_once('?'))
                .map(|(_, q)| q);
            let fields: BTreeMap<String, String> =
                form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                    .chain(form_urlencoded::parse(&body))
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
            if fields.get("Action").map(String::as_str) == Some(action) {
                out.push(fields);
            }
        }
        Ok(out)
    }

    /// The SigV4 credential scope (`<access key>/<date>/<region>/<service>`) of every recorded
    /// AWS JSON request whose `X-Amz-Target` is `target` (ECR's protocol has no `Action` field),
    /// oldest first.
    pub async fn json_requests(&self, target: &str) -> io::Result<Vec<String>> {
        let recording = self.control("download-recording").await?;
        let mut out = Vec::new();
        for line in recording.lines().filter(|l| !l.trim().is_empty()) {
            let entry: serde_json::Value = serde_json::from_str(line).map_err(io::Error::other)?;
            let headers = entry["headers"].as_object().cloned().unwrap_or_default();
            let header = |name: &str| {
                let found = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name));
                found
                    .and_then(|(_, v)| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            if header("x-amz-target") != target {
                continue;
            }
            let auth = header("authorization");
            let scope = auth.split("Credential=").nth(1).unwrap_or_default();
            let scope = scope.split(',').next().unwrap_or_default();
            out.push(scope.trim_end_matches("/aws4_request").to_owned());
        }
        Ok(out)
    }

    /// Forgets the requests recorded so far.
    pub async fn clear_requests(&self) -> io::Result<()> {
        self.control("reset-recording").await.map(drop)
    }

    /// The ARN GetCallerIdentity returns for `access_key_id`: moto takes the identity from the
    /// SigV4 credential scope and checks no signature, so no secret is needed. A key moto did not
    /// issue answers as its default `arn:aws:sts::123456789012:user/moto`.
    pub async fn caller_arn(&self, access_key_id: &str) -> io::Result<String> {
        // A signed-looking request: an unsigned one would be routed to moto's S3 (ListBuckets).
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={access_key_id}/20240101/us-east-1/sts/aws4_request, \
             SignedHeaders=content-type;host, Signature=0000"
        );
        let headers = [
            ("authorization", auth.as_str()),
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
        ];
        let body = "Action=GetCallerIdentity&Version=2011-06-15";
        let resp =
            http_client::call(Method::POST, &format!("{}/", self.url()), &headers, body).await?;
        let text = String::from_utf8_lossy(resp.body());
        let arn = text
            .split_once("<Arn>")
            .and_then(|(_, rest)| rest.split_once("</Arn>"))
            .map(|(arn, _)| arn.to_owned());
        match arn {
            Some(arn) if resp.status() == StatusCode::OK => Ok(arn),
            _ => Err(io::Error::other(format!(
                "GetCallerIdentity: {}: {text}",
                resp.status()
            ))),
        }
    }
}
