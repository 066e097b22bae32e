//! Publishing Events through kube-runtime's `Recorder`, for both kinds.
//!
//! A note is a status message (never a token). events.k8s.io/v1 refuses a note over 1 KiB, and a
//! message that quotes an AWS or admission error can be longer: the note is cut to fit rather
//! than the Event being lost to a 422.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client,
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use tracing::warn;

use crate::crd::MANAGER;

/// The API server's limit on `note`, in bytes.
const MAX_NOTE_BYTES: usize = 1024;

/// `note` cut to the API server's limit on a character boundary, marked with an ellipsis.
pub fn bounded_note(mut note: String) -> String {
    if note.len() <= MAX_NOTE_BYTES {
        return note;
    }
    const MORE: &str = "…";
    let mut end = MAX_NOTE_BYTES - MORE.len();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    note.truncate(end);
    note.push_str(MORE);
    note
}

/// Publishes Events for one kind, as this operator reported by this pod.
///
/// kube-runtime's `Recorder` keeps every Event it published for six minutes, so that a repeat
/// (same object, type and reason) becomes a `series` count on the first Event instead of a new
/// one. That is what Warnings need: a failing resource retried with backoff says so once, with
/// a count. Normal Events announce one write of one Secret and are not repeated within minutes;
/// kept, they would cost a cached Event per resource after a cold start of thousands (and a
/// scan of all of them per publish). So Warnings go through one long-lived `Recorder` and
/// Normal Events through a fresh one each, which keeps nothing.
#[derive(Clone)]
pub struct Publisher {
    client: Client,
    reporter: Reporter,
    warnings: Recorder,
}

impl Publisher {
    pub fn new(client: Client, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance,
        };
        let warnings = Recorder::new(client.clone(), reporter.clone());
        Self {
            client,
            reporter,
            warnings,
        }
    }

    /// Publishes an Event; a failure is logged, never fatal to the reconcile.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(bounded_note(note)),
            action: "Reconcile".into(),
            secondary: None,
        };
        let published = match type_ {
            EventType::Warning => self.warnings.publish(&event, regarding).await,
            EventType::Normal => {
                let once = Recorder::new(self.client.clone(), self.reporter.clone());
                once.publish(&event, regarding).await
            }
        };
        if let Err(e) = published {
            warn!(error = %e, "could not publish event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_cut_to_the_api_limit_on_a_character_boundary() {
        assert_eq!(bounded_note("short".into()), "short");
        let exact = "a".repeat(MAX_NOTE_BYTES);
        assert_eq!(bounded_note(exact.clone()), exact);
        // Multi-byte characters straddling the limit.
        let long = "é".repeat(MAX_NOTE_BYTES);
        let cut = bounded_note(long);
        assert!(cut.len() <= MAX_NOTE_BYTES, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert!(cut.trim_end_matches('…').chars().all(|c| c == 'é'));
    }
}
