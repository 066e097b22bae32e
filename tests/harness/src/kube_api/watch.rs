//! WATCH streams: newline-delimited events from a registration made under the store lock, so no
//! write falls between the initial state (or the history replay) and the live feed.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::emulator::Emulator;
use super::list::render;
use super::registry::ResourceDef;
use super::selector::Selectors;
use super::status::ApiError;
use super::store::{Event, EventType};

/// Idle interval between bookmarks when the client allows them.
const BOOKMARK_EVERY: Duration = Duration::from_secs(5);
/// The real server picks 30-60 minutes when the client sets no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

pub struct WatchQuery {
    pub resource_version: Option<String>,
    pub timeout: Option<Duration>,
    pub bookmarks: bool,
    pub send_initial_events: bool,
    pub selectors: Selectors,
    pub metadata_only: bool,
}

struct Filter {
    def: Arc<ResourceDef>,
    version: String,
    selectors: Selectors,
    metadata_only: bool,
}

impl Filter {
    fn line(&self, ty: &str, obj: &Value) -> Bytes {
        let mut out = serde_json::to_vec(&json!({
            "type": ty,
            "object": render(obj, &self.def, &self.version, self.metadata_only),
        }))
        .unwrap_or_default();
        out.push(b'\n');
        Bytes::from(out)
    }

    /// The event as this watcher sees it: objects entering or leaving its selector appear as
    /// ADDED or DELETED, like the watch cache reports them.
    fn event(&self, ev: &Event) -> Option<Bytes> {
        let now = self.selectors.matches(&ev.object);
        let before = ev.prev.as_deref().map(|p| self.selectors.matches(p));
        let ty = match ev.ty {
            EventType::Added => now.then_some("ADDED"),
            EventType::Modified => match (before.unwrap_or(false), now) {
                (true, true) => Some("MODIFIED"),
                (false, true) => Some("ADDED"),
                (true, false) => Some("DELETED"),
                (false, false) => None,
            },
            EventType::Deleted => before.unwrap_or(now).then_some("DELETED"),
        };
        ty.map(|t| self.line(t, &ev.object))
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let (kind, api_version) = if self.metadata_only {
            (
                "PartialObjectMetadata".to_string(),
                "meta.k8s.io/v1".to_string(),
            )
        } else {
            (self.def.kind.clone(), self.def.api_version(&self.version))
        };
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let mut out = serde_json::to_vec(&json!({
            "type": "BOOKMARK",
            "object": {"kind": kind, "apiVersion": api_version, "metadata": metadata},
        }))
        .unwrap_or_default();
        out.push(b'\n');
        Bytes::from(out)
    }
}

struct WatchState {
    emu: Emulator,
    filter: Filter,
    pending: VecDeque<Bytes>,
    rx: Option<mpsc::UnboundedReceiver<Arc<Event>>>,
    deadline: Instant,
    bookmarks: bool,
    next_bookmark: Instant,
}

/// Opens a watch; the returned stream ends on timeout, `close_watches`, or after an ERROR event.
pub fn open(
    emu: &Emulator,
    def: Arc<ResourceDef>,
    version: &str,
    ns: Option<&str>,
    q: WatchQuery,
) -> Result<impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static, ApiError> {
    let filter = Filter {
        def: def.clone(),
        version: version.to_string(),
        selectors: q.selectors,
        metadata_only: q.metadata_only,
    };
    let resource = def.key();
    let requested = match q.resource_version.as_deref() {
        None | Some("") | Some("0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?,
        ),
    };
    let mut pending = VecDeque::new();
    let rx = {
        let mut st = emu.store();
        match requested.filter(|_| !q.send_initial_events) {
            None => {
                for obj in st.list(&resource, ns) {
                    if filter.selectors.matches(&obj) {
                        pending.push_back(filter.line("ADDED", &obj));
                    }
                }
                if q.send_initial_events {
                    pending.push_back(filter.bookmark(st.rv, true));
                }
                Some(st.subscribe(&resource, ns))
            }
            Some(rv) => match st.events_since(&resource, ns, rv) {
                Ok(events) => {
                    pending.extend(events.iter().filter_map(|e| filter.event(e)));
                    Some(st.subscribe(&resource, ns))
                }
                Err(oldest) => {
                    let status =
                        ApiError::expired(format!("too old resource version: {rv} ({oldest})"));
                    let mut line =
                        serde_json::to_vec(&json!({"type": "ERROR", "object": status.to_value()}))
                            .unwrap_or_default();
                    line.push(b'\n');
                    pending.push_back(Bytes::from(line));
                    None
                }
            },
        }
    };
    let now = Instant::now();
    let state = WatchState {
        emu: emu.clone(),
        filter,
        pending,
        rx,
        deadline: now + q.timeout.unwrap_or(DEFAULT_TIMEOUT),
        bookmarks: q.bookmarks,
        next_bookmark: now + BOOKMARK_EVERY,
    };
    Ok(futures::stream::unfold(state, next))
}

async fn next(mut st: WatchState) -> Option<(Result<Bytes, Infallible>, WatchState)> {
    loop {
        if let Some(line) = st.pending.pop_front() {
            return Some((Ok(line), st));
        }
        let rx = st.rx.as_mut()?;
        tokio::select! {
            biased;
            ev = rx.recv() => match ev {
                Some(ev) => {
                    if let Some(line) = st.filter.event(&ev) {
                        st.next_bookmark = Instant::now() + BOOKMARK_EVERY;
                        return Some((Ok(line), st));
                    }
                }
                None => return None,
            },
            _ = tokio::time::sleep_until(st.deadline) => return None,
            _ = tokio::time::sleep_until(st.next_bookmark), if st.bookmarks => {
                // Under the lock every event up to the current resourceVersion is already in
                // our channel, so the bookmark can claim that version without skipping any.
                let store = st.emu.store();
                while let Ok(ev) = rx.try_recv() {
                    if let Some(line) = st.filter.event(&ev) {
                        st.pending.push_back(line);
                    }
                }
                st.pending.push_back(st.filter.bookmark(store.rv, false));
                drop(store);
                st.next_bookmark = Instant::now() + BOOKMARK_EVERY;
            }
        }
    }
}
