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

/// How often the watch cache sends a watcher a bookmark; it also sends one 2 s before the
/// watch's deadline, so that the client resumes from a recent version.
const BOOKMARK_FREQUENCY: Duration = Duration::from_secs(60);
const BOOKMARK_BEFORE_DEADLINE: Duration = Duration::from_secs(2);
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
    /// The version the watch started from: a bookmark is sent only for a newer one.
    start_rv: u64,
    /// When the next bookmark is due; `None` without bookmarks or when none is due any more.
    next_bookmark: Option<Instant>,
}

/// The watch cache's schedule (`nextBookmarkTime`): a minute from now, or 2 s before the
/// deadline if that comes first; none once that moment has passed.
fn next_bookmark(now: Instant, deadline: Instant) -> Option<Instant> {
    let at = (now + BOOKMARK_FREQUENCY).min(deadline.checked_sub(BOOKMARK_BEFORE_DEADLINE)?);
    (at >= now).then_some(at)
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
    let mut start_rv = requested.unwrap_or_default();
    let rx = {
        let mut st = emu.store();
        if requested.is_none() || q.send_initial_events {
            start_rv = st.resource_rv(&resource);
        }
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
    let deadline = now + q.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let state = WatchState {
        emu: emu.clone(),
        filter,
        pending,
        rx,
        deadline,
        start_rv,
        next_bookmark: next_bookmark(now, deadline).filter(|_| q.bookmarks),
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
                        return Some((Ok(line), st));
                    }
                }
                None => return None,
            },
            _ = tokio::time::sleep_until(st.deadline) => return None,
            _ = sleep_until_some(st.next_bookmark), if st.next_bookmark.is_some() => {
                // Under the lock every event up to the resource's current version is already
                // in our channel, so the bookmark can claim that version without skipping any.
                let store = st.emu.store();
                while let Ok(ev) = rx.try_recv() {
                    if let Some(line) = st.filter.event(&ev) {
                        st.pending.push_back(line);
                    }
                }
                // Like the watch cache, only a version newer than the watch's start is worth
                // a bookmark (one the client has not seen through this watch yet).
                let rv = store.resource_rv(&st.filter.def.key());
                if rv > st.start_rv {
                    st.pending.push_back(st.filter.bookmark(rv, false));
                }
                drop(store);
                st.next_bookmark = next_bookmark(Instant::now(), st.deadline);
            }
        }
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
