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

/// Whether a repeat of an Event is counted on the first one.
///
/// kube-runtime's `Recorder` keeps every Event it published for six minutes, so that a repeat
/// (same object, type and reason) becomes a `series` count on the first Event instead of a new
/// one. That is worth it only for what can repeat within minutes; kept for Events that come for
/// every resource at once, it would hold one cached Event per resource after a cold start of
/// thousands (and scan all of them on each publish).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeats {
    /// It may come again within minutes (a failure retried with backoff, spec edits in a row):
    /// the repeat is counted on the first Event.
    Counted,
    /// It comes again after hours if ever (a first write, a rotation), and for every resource
    /// at once: nothing is kept.
    Rare,
}

/// Publishes Events for one kind, as this operator reported by this pod.
#[derive(Clone)]
pub struct Publisher {
    client: Client,
    reporter: Reporter,
    /// For [`Repeats::Counted`]: long-lived, it keeps what it published.
    counted: Recorder,
}

impl Publisher {
    pub fn new(client: Client, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance,
        };
        let counted = Recorder::new(client.clone(), reporter.clone());
        Self {
            client,
            reporter,
            counted,
        }
    }

    /// Publishes an Event; a failure is logged, never fatal to the reconcile.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
        repeats: Repeats,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(bounded_note(note)),
            action: "Reconcile".into(),
            secondary: None,
        };
        let published = match repeats {
            Repeats::Counted => self.counted.publish(&event, regarding).await,
            // A Recorder of its own, dropped with all it would have kept.
            Repeats::Rare => {
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
