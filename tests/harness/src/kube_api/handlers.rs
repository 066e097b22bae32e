//! One function per verb on a resource endpoint.

use axum::body::Body;
use serde_json::{Value, json};

use super::delete::{self, DeleteOptions, Deleted};
use super::emulator::Emulator;
use super::http::{Reply, Req, verb_of};
use super::list::{self, ListQuery, render};
use super::managed::Ownership;
use super::patch;
use super::route::{Target, flag};
use super::selector::{FieldSelector, LabelSelector, Selectors};
use super::status::ApiError;
use super::store::ObjKey;
use super::token;
use super::watch::{self, WatchQuery};
use super::write::{self, Write};

pub fn resource(emu: &Emulator, t: Target, req: &Req) -> Reply {
    match run(emu, &t, req) {
        Ok(reply) => reply,
        Err(e) => e.into(),
    }
}

fn run(emu: &Emulator, t: &Target, req: &Req) -> Result<Reply, ApiError> {
    match t.sub.as_deref() {
        None => {}
        Some("status") if t.def.status_subresource && t.name.is_some() => {}
        Some("token") if t.def.key() == "serviceaccounts" && t.name.is_some() => {
            return match req.method.as_str() {
                "POST" => token_request(emu, t, req),
                _ => Err(ApiError::method_not_allowed(
                    "the server does not allow this method on the requested resource",
                )),
            };
        }
        Some(_) => return Err(ApiError::no_route()),
    }
    if req.query.contains_key("dryRun") {
        // Running a write without persisting it is not emulated; failing loudly beats
        // silently persisting what the client meant to be a dry run.
        return Err(ApiError::bad_request(
            "dryRun is not supported by the kube API emulator",
        ));
    }
    let verb = verb_of(&req.method, t, &req.query);
    match verb {
        "get" => get(emu, t, req),
        "list" => list_objects(emu, t, req),
        "watch" => watch_objects(emu, t, req),
        "create" if t.name.is_none() => create(emu, t, req),
        "update" if t.name.is_some() => update(emu, t, req),
        "patch" if t.name.is_some() => patch::patch(emu, t, req),
        "delete" if t.sub.is_none() => delete_object(emu, t, req),
        "deletecollection" => delete_collection(emu, t, req),
        _ => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
    }
}

pub fn key(t: &Target) -> ObjKey {
    ObjKey::new(
        &t.def.key(),
        t.ns.as_deref().filter(|_| t.def.namespaced),
        t.name.as_deref().unwrap_or_default(),
    )
}

fn metadata_only(req: &Req) -> bool {
    req.accept_has("as=PartialObjectMetadata")
}

pub fn body_json(req: &Req) -> Result<Value, ApiError> {
    if req.body.is_empty() {
        return Err(ApiError::bad_request("the body of the request was empty"));
    }
    serde_json::from_slice(&req.body).map_err(|e| {
        ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
    })
}

/// The object as this request should see it.
pub fn out(t: &Target, req: &Req, obj: &Value) -> Value {
    render(obj, &t.def, &t.version, metadata_only(req))
}

fn get(emu: &Emulator, t: &Target, req: &Req) -> Result<Reply, ApiError> {
    let name = t.name.as_deref().unwrap_or_default();
    let obj = emu
        .store()
        .get(&key(t))
        .ok_or_else(|| ApiError::not_found(&t.def, name))?;
    Ok(Reply::Json(200, out(t, req, &obj)))
}

fn selectors(t: &Target, req: &Req) -> Result<Selectors, ApiError> {
    let label = match req.query.get("labelSelector").filter(|s| !s.is_empty()) {
        Some(s) => Some(LabelSelector::parse(s).map_err(ApiError::bad_request)?),
        None => None,
    };
    let field = match req.query.get("fieldSelector").filter(|s| !s.is_empty()) {
        Some(s) => Some(
            FieldSelector::parse(&t.def.key(), t.def.custom, s).map_err(ApiError::bad_request)?,
        ),
        None => None,
    };
    Ok(Selectors { label, field })
}

fn list_objects(emu: &Emulator, t: &Target, req: &Req) -> Result<Reply, ApiError> {
    // `resourceVersion=0` is answered from the watch cache, which ignores `limit` and returns
    // everything in one response (kube-apiserver 1.34 still does, cache snapshots or not: see
    // the real-server run of `paging_with_limit_and_continue`): clients that ask for "any"
    // version must be ready for the whole list at once, and a benchmark must see it.
    let from_cache = req.query.get("resourceVersion").map(String::as_str) == Some("0");
    let q = ListQuery {
        selectors: selectors(t, req)?,
        limit: req
            .query
            .get("limit")
            .and_then(|l| l.parse().ok())
            .filter(|_| !from_cache),
        continue_token: req.query.get("continue").cloned(),
    };
    let doc = list::list(
        &emu.store(),
        &t.def,
        &t.version,
        t.ns.as_deref(),
        &q,
        req.accept_has("as=PartialObjectMetadataList"),
    )?;
    Ok(Reply::Json(200, doc))
}

fn watch_objects(emu: &Emulator, t: &Target, req: &Req) -> Result<Reply, ApiError> {
    let q = WatchQuery {
        resource_version: req.query.get("resourceVersion").cloned(),
        timeout: req
            .query
            .get("timeoutSeconds")
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|s| *s > 0)
            .map(std::time::Duration::from_secs),
        bookmarks: flag(&req.query, "allowWatchBookmarks"),
        send_initial_events: flag(&req.query, "sendInitialEvents"),
        selectors: selectors(t, req)?,
        metadata_only: metadata_only(req),
    };
    let stream = watch::open(emu, t.def.clone(), &t.version, t.ns.as_deref(), q)?;
    Ok(Reply::Stream(Body::from_stream(stream)))
}

fn write_ctx<'a>(t: &'a Target, ownership: Ownership) -> Write<'a> {
    Write {
        def: &t.def,
        version: &t.version,
        ns: t.ns.as_deref(),
        sub: t.sub.as_deref(),
        ownership,
    }
}

fn create(emu: &Emulator, t: &Target, req: &Req) -> Result<Reply, ApiError> {
    let body = body_json(req)?;
    let w = write_ctx(
        t,
        Ownership::Update {
            manager: req.manager(),
        },
    );
    let stored = write::create(&mut emu.store(), &w, body)?;
    Ok(Reply::Json(201, out(t, req, &stored)))
}

fn update(emu: &Emulator, t: &Target, req: &Req) -> Result<Reply, ApiError> {
    let body = body_json(req)?;
    let w = write_ctx(
        t,
        Ownership::Update {
            manager: req.manager(),
        },
    );
    let name = t.name.as_deref().unwrap_or_default();
    write::require_resource_version(&t.def, name, &body)?;
    let outcome = write::update(&mut emu.store(), &w, name, body)?;
    Ok(Reply::Json(200, out(t, req, outcome.object())))
}

fn delete_reply(t: &Target, req: &Req, deleted: &Deleted) -> Reply {
    match deleted {
        Deleted::Pending(obj) => Reply::Json(200, out(t, req, obj)),
        // A Success Status, except from the stores with `ReturnDeletedObject` (ServiceAccounts
        // among ours), which answer with the object.
        Deleted::Gone(obj) if t.def.returns_deleted_object() => Reply::Json(200, out(t, req, obj)),
        Deleted::Gone(obj) => {
            let mut details = json!({"name": obj["metadata"]["name"], "kind": t.def.plural, "uid": obj["metadata"]["uid"]});
            if !t.def.group.is_empty() {
                details["group"] = json!(t.def.group);
            }
            Reply::Json(
                200,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
            )
        }
    }
}

fn delete_options(req: &Req) -> DeleteOptions {
    let mut opts = if req.body.is_empty() {
        DeleteOptions::default()
    } else {
        DeleteOptions::from_body(&serde_json::from_slice(&req.body).unwrap_or(Value::Null))
    };
    if req.query.get("propagationPolicy").map(String::as_str) == Some("Orphan") {
        opts.orphan = true;
    }
    opts
}

fn delete_object(emu: &Emulator, t: &Target, req: &Req) -> Result<Reply, ApiError> {
    let deleted = delete::delete(&mut emu.store(), &t.def, &key(t), &delete_options(req))?;
    Ok(delete_reply(t, req, &deleted))
}

fn delete_collection(emu: &Emulator, t: &Target, req: &Req) -> Result<Reply, ApiError> {
    let sel = selectors(t, req)?;
    let opts = delete_options(req);
    let mut st = emu.store();
    let mut items = Vec::new();
    for obj in st.list(&t.def.key(), t.ns.as_deref()) {
        if !sel.matches(&obj) {
            continue;
        }
        let k = ObjKey::new(
            &t.def.key(),
            obj["metadata"]["namespace"].as_str(),
            obj["metadata"]["name"].as_str().unwrap_or_default(),
        );
        match delete::delete(&mut st, &t.def, &k, &opts) {
            Ok(Deleted::Gone(o) | Deleted::Pending(o)) => {
                items.push(list::item(&o, &t.def, &t.version, metadata_only(req)))
            }
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Reply::Json(
        200,
        json!({
            "kind": t.def.list_kind,
            "apiVersion": t.def.api_version(&t.version),
            "metadata": {"resourceVersion": st.rv.to_string()},
            "items": items,
        }),
    ))
}

fn token_request(emu: &Emulator, t: &Target, req: &Req) -> Result<Reply, ApiError> {
    let body = if req.body.is_empty() {
        json!({})
    } else {
        body_json(req)?
    };
    let name = t.name.as_deref().unwrap_or_default();
    let sa = emu
        .store()
        .get(&key(t))
        .ok_or_else(|| ApiError::not_found(&t.def, name))?;
    Ok(Reply::Json(201, token::issue(&sa, &body)?))
}
