//! The request log and injected failures, both about HTTP requests only.

/// One HTTP request as routed.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    /// get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    /// Resource key (`secrets`, `leases.coordination.k8s.io`), or the path for discovery and
    /// other non-resource requests (`/version`, `/apis`).
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    pub field_manager: Option<String>,
    /// apply, merge, json or strategic, for PATCH.
    pub patch_type: Option<String>,
    /// The response status; 0 while the request is still being handled.
    pub code: u16,
    pub user_agent: Option<String>,
    /// The authenticated user (a real API server's audit log; the emulator has no users).
    pub user: Option<String>,
    /// Order of arrival (unique per emulator).
    pub seq: u64,
}

/// Fails the next `times` requests matching every `Some` filter with a Status of `code` (the
/// reason the real server pairs with it, e.g. 500 InternalError, 409 Conflict, 429
/// TooManyRequests).
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub verb: Option<String>,
    pub resource: Option<String>,
    pub subresource: Option<String>,
    pub code: u16,
    pub times: usize,
}

impl Fault {
    /// Fails the next `times` requests of `verb` on `resource`.
    pub fn on(verb: &str, resource: &str, code: u16, times: usize) -> Self {
        Fault {
            verb: Some(verb.into()),
            resource: Some(resource.into()),
            subresource: None,
            code,
            times,
        }
    }

    /// Fails the next `times` requests, whatever they are.
    pub fn any(code: u16, times: usize) -> Self {
        Fault {
            verb: None,
            resource: None,
            subresource: None,
            code,
            times,
        }
    }

    /// Restricts the fault to a subresource such as `status`.
    pub fn subresource(mut self, sub: &str) -> Self {
        self.subresource = Some(sub.into());
        self
    }

    fn matches(&self, rec: &RequestRecord) -> bool {
        self.verb.as_ref().is_none_or(|v| *v == rec.verb)
            && self.resource.as_ref().is_none_or(|r| *r == rec.resource)
            && self
                .subresource
                .as_ref()
                .is_none_or(|s| Some(s) == rec.subresource.as_ref())
    }
}

/// Consumes one use of the first fault matching `rec`, returning its code.
pub fn take(faults: &mut Vec<Fault>, rec: &RequestRecord) -> Option<u16> {
    let i = faults.iter().position(|f| f.times > 0 && f.matches(rec))?;
    let code = faults[i].code;
    faults[i].times -= 1;
    if faults[i].times == 0 {
        faults.remove(i);
    }
    Some(code)
}
