//! A stateful Kubernetes API server emulator for tests: real HTTP/JSON on 127.0.0.1 that the real
//! kube client and kube-runtime talk to, with the semantics they depend on (resourceVersions,
//! watches with history and bookmarks, server-side apply with managed fields, status
//! subresources, CRD schemas, finalizers and garbage collection, Status errors).
//!
//! Not emulated: authentication/authorization (any token is accepted), admission webhooks, CEL
//! validation rules (`x-kubernetes-validations`), dry-run (rejected with 400), protobuf, CRD
//! version conversion (objects are served in whichever version is asked for, unchanged),
//! consistent snapshots for paginated lists (later pages reflect the current state), strategic
//! merge patch (handled as a JSON merge patch), schema pruning of built-in types, and the
//! garbage collector's deletion of objects whose owners never existed. core/v1 and
//! events.k8s.io/v1 Events are stored separately, not as two views of one resource. Garbage
//! collection and namespace cleanup happen within the deleting request instead of shortly after.
//!
//! kube's client retries 429/503/504 responses with backoff (up to 15 times), so tests that
//! inject those codes or call `set_unavailable` see delays unless they build their client with
//! `Config::default_retry = false`.

mod builtin;
mod delete;
mod discovery;
mod emulator;
mod faults;
mod fieldset;
mod handlers;
mod http;
mod list;
mod managed;
mod meta;
mod patch;
mod registry;
mod route;
mod schema;
mod selector;
mod server;
mod shape;
mod ssa;
mod status;
mod store;
mod token;
mod watch;
mod write;

pub use emulator::Emulator;
pub use faults::{Fault, RequestRecord};
pub use server::ApiServer;
