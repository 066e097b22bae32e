//! A stateful Kubernetes API server emulator for tests: real HTTP/JSON on 127.0.0.1 that the real
//! kube client and kube-runtime talk to, with the semantics they depend on (resourceVersions,
//! watches with history and bookmarks, server-side apply with managed fields, status
//! subresources, CRD schemas, finalizers and garbage collection, Status errors). What it claims
//! about Kubernetes is checked against a real kube-apiserver: the scenarios of
//! `tests/harness/tests/kube_api` run on both (`emulator::…`, `real_api_server::…`), all but
//! those of the emulator's own machinery (faults, outages, closed watches).
//!
//! Controllers a real control plane runs act here within the request that triggers them instead
//! of shortly after: the garbage collector, the namespace controller, kube-apiserver's CRD
//! controllers (a created CRD is answered unestablished, then accepted and Established; a
//! deleted one is answered Terminating, its instances go, then the CRD) and the ServiceAccount
//! controller (every active namespace has a `default` ServiceAccount, recreated when deleted).
//!
//! Not emulated: authentication/authorization (any token is accepted), admission webhooks, CEL
//! validation rules (`x-kubernetes-validations`: the error saying schema errors kept them from
//! being checked is given, the rules' own verdicts are not), dry-run (rejected with 400),
//! protobuf, CRD version conversion (objects are served in whichever version is asked for,
//! unchanged), consistent snapshots for paginated lists (later pages reflect the current
//! state), strategic merge patch (handled as a JSON merge patch), schema pruning of built-in
//! types, the garbage collector's deletion of objects whose owners never existed, and the
//! refusal of new instances while their CRD terminates. core/v1 and events.k8s.io/v1 Events are
//! stored separately, not as two views of one resource. Watch history per resource starts when
//! the resource is registered, but a CRD update does not restart it (a real server's watch
//! cache restarts: open watches end, older versions expire); bookmarks follow the resource's
//! own writes (a real watch cache also moves on with etcd progress notifications). Typed
//! objects leave out zero values a real server prints (a core Event's null timestamps and empty
//! `source`, …), TokenRequest answers carry no managedFields and their tokens are unsigned,
//! discovery lists verbs in its own order without storage version hashes, and malformed label
//! selectors and continue tokens are refused with messages of the emulator's own.
//!
//! kube's client retries 429/503/504 responses with backoff (up to 15 times), so tests that
//! inject those codes or call `set_unavailable` see delays unless they build their client with
//! `Config::default_retry = false`.

mod builtin;
mod controllers;
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
