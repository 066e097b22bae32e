//! What a test can see of the operator besides the API: its logs, captured in this process, and
//! the check that no token ever shows up there, in an Event or in a status.

use super::{CLUSTER_CRS, CRS, EVENTS, Env, base64_auth};

/// Captured log output of this test process (tracing at debug level), for leak checks.
pub fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

static LOGS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs a debug-level subscriber that records every log line (once per process).
pub fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug,hyper=info,tower=info,aws_smithy_runtime=info,aws_smithy_http_client=info,rustls=info")
            .with_writer(|| LogWriter)
            .with_ansi(false)
            .try_init();
    });
}

/// Every place a token could leak to, as one string: logs, Events and CR statuses.
pub fn observable_text(env: &Env) -> String {
    let mut out = logs();
    for ev in env.k8s.list(EVENTS, None) {
        out.push_str(&ev.to_string());
    }
    for cr in env
        .k8s
        .list(CRS, None)
        .into_iter()
        .chain(env.k8s.list(CLUSTER_CRS, None))
    {
        out.push_str(&cr["status"].to_string());
    }
    out
}

/// Asserts that no password or auth string issued by the fake appears anywhere observable.
pub fn assert_no_token_leak(env: &Env) {
    let text = observable_text(env);
    let passwords = env.ecr.issued_passwords();
    assert!(
        !passwords.is_empty(),
        "the test issued no token, so the leak check would be vacuous"
    );
    for pw in passwords {
        assert!(
            !text.contains(&pw),
            "a token password appears in logs, events or status"
        );
        let auth = base64_auth(&pw);
        assert!(
            !text.contains(&auth),
            "a token auth string appears in logs, events or status"
        );
    }
}
