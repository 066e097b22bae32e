//! The HTTP entry point: routing, latency, outage and fault injection, the request log, and
//! rendering results as JSON responses.

use std::collections::HashMap;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use serde_json::Value;

use super::discovery;
use super::emulator::Emulator;
use super::faults::RequestRecord;
use super::handlers;
use super::route::{self, Route, Target};
use super::status::ApiError;

const MAX_BODY: usize = 64 * 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub emu: Emulator,
    pub addr: String,
}

/// What a handler produced.
pub enum Reply {
    Json(u16, Value),
    /// Aggregated discovery needs its own content type.
    Typed(u16, &'static str, Value),
    /// What the server's mux answers for a path no API serves.
    NotFoundPage,
    Stream(Body),
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Self {
        Reply::Json(e.code, e.to_value())
    }
}

impl Reply {
    fn code(&self) -> u16 {
        match self {
            Reply::Json(c, _) | Reply::Typed(c, _, _) => *c,
            Reply::Stream(_) => 200,
            Reply::NotFoundPage => 404,
        }
    }

    fn into_response(self) -> Response {
        let (code, content_type, body) = match self {
            Reply::Json(code, v) => (code, "application/json", Body::from(v.to_string())),
            Reply::Typed(code, ct, v) => (code, ct, Body::from(v.to_string())),
            Reply::Stream(body) => (200, "application/json", body),
            Reply::NotFoundPage => (
                404,
                "text/plain; charset=utf-8",
                Body::from("404 page not found\n"),
            ),
        };
        Response::builder()
            .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
            .header(header::CONTENT_TYPE, content_type)
            .body(body)
            .unwrap_or_default()
    }
}

/// Everything a verb handler needs from the request.
pub struct Req {
    pub method: Method,
    pub headers: HeaderMap,
    pub query: HashMap<String, String>,
    pub body: bytes::Bytes,
}

impl Req {
    pub fn accept_has(&self, needle: &str) -> bool {
        self.headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains(needle))
    }

    pub fn content_type(&self) -> String {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_string()
    }

    pub fn user_agent(&self) -> Option<String> {
        self.headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    }

    /// `fieldManager`, else the user agent's product name, as the apiserver derives it.
    pub fn manager(&self) -> String {
        if let Some(m) = self.query.get("fieldManager").filter(|m| !m.is_empty()) {
            return m.clone();
        }
        self.user_agent()
            .and_then(|ua| ua.split('/').next().map(String::from))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".into())
    }
}

pub fn verb_of(method: &Method, t: &Target, query: &HashMap<String, String>) -> &'static str {
    match (method.as_str(), t.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if route::flag(query, "watch") => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

fn patch_type(content_type: &str) -> Option<String> {
    let t = if content_type.starts_with("application/apply-patch") {
        "apply"
    } else if content_type.starts_with("application/merge-patch+json") {
        "merge"
    } else if content_type.starts_with("application/json-patch+json") {
        "json"
    } else if content_type.starts_with("application/strategic-merge-patch+json") {
        "strategic"
    } else {
        return None;
    };
    Some(t.into())
}

pub async fn handle(State(app): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, MAX_BODY).await.unwrap_or_default();
    let req = Req {
        method: parts.method,
        headers: parts.headers,
        query: route::query(parts.uri.query()),
        body,
    };
    let path = parts.uri.path().to_string();
    if let Some(d) = app.emu.latency() {
        tokio::time::sleep(d).await;
    }
    let route = route::parse(&app.emu.store(), &path);
    let mut rec = RequestRecord {
        verb: "get".into(),
        resource: path.clone(),
        namespace: None,
        name: None,
        subresource: None,
        field_manager: req.query.get("fieldManager").cloned(),
        patch_type: None,
        code: 0,
        user_agent: req.user_agent(),
        // Any token is accepted: there are no users to tell apart.
        user: None,
        seq: 0,
    };
    if let Route::Resource(t) = &route {
        rec.verb = verb_of(&req.method, t, &req.query).into();
        rec.resource = t.def.key();
        rec.namespace = t.ns.clone();
        rec.name = t.name.clone();
        rec.subresource = t.sub.clone();
    } else if let Route::Unknown(key) | Route::NotServed(key) = &route
        && !key.is_empty()
        && !key.starts_with('/')
    {
        rec.resource = key.clone();
    }
    if req.method == Method::PATCH {
        rec.patch_type = patch_type(&req.content_type());
    }
    // Logged before it takes effect: whoever sees the effect also finds the request in the log.
    let unavailable = app.emu.is_unavailable();
    let fault = if unavailable {
        None
    } else {
        app.emu.take_fault(&rec)
    };
    let seq = app.emu.record(rec);
    let reply = if unavailable {
        ApiError::unavailable().into()
    } else if let Some(code) = fault {
        ApiError::injected(code).into()
    } else {
        dispatch(&app, route, &req)
    };
    app.emu.set_code(seq, reply.code());
    reply.into_response()
}

fn dispatch(app: &AppState, route: Route, req: &Req) -> Reply {
    if req.method != Method::GET && !matches!(route, Route::Resource(_)) {
        return ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )
        .into();
    }
    let aggregated = req.accept_has("as=APIGroupDiscoveryList");
    let defs = || app.emu.store().defs().cloned().collect::<Vec<_>>();
    match route {
        Route::Version => Reply::Json(200, discovery::version()),
        Route::CoreVersions if aggregated => Reply::Typed(
            200,
            discovery::AGGREGATED_CONTENT_TYPE,
            discovery::aggregated(&defs(), true),
        ),
        Route::CoreVersions => Reply::Json(200, discovery::core_versions(&app.addr)),
        Route::Groups if aggregated => Reply::Typed(
            200,
            discovery::AGGREGATED_CONTENT_TYPE,
            discovery::aggregated(&defs(), false),
        ),
        Route::Groups => Reply::Json(200, discovery::group_list(&defs())),
        Route::Group(g) => match discovery::group(&defs(), &g) {
            Some(doc) => Reply::Json(200, doc),
            None => Reply::NotFoundPage,
        },
        Route::Resources { group, version } => {
            match discovery::resource_list(&defs(), &group, &version) {
                Some(doc) => Reply::Json(200, doc),
                None => Reply::NotFoundPage,
            }
        }
        Route::Unknown(_) => ApiError::no_route().into(),
        Route::NotServed(_) => Reply::NotFoundPage,
        Route::Resource(t) => handlers::resource(&app.emu, t, req),
    }
}
