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

/// The recorder both kinds publish through: this operator, as reported by this pod.
pub fn recorder(client: Client, instance: Option<String>) -> Recorder {
    let reporter = Reporter {
        controller: MANAGER.into(),
        instance,
    };
    Recorder::new(client, reporter)
}

/// Publishes an Event; a failure is logged, never fatal to the reconcile.
pub async fn publish(
    recorder: &Recorder,
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
    if let Err(e) = recorder.publish(&event, regarding).await {
        warn!(error = %e, "could not publish event");
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
