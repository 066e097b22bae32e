//! Talking to the Kubernetes API server, for every controller alike.
//!
//! - [`watch`]: the one watch builder; a resource read by several controllers is listed and
//!   watched once and its stream shared;
//! - [`cached_secret`]: what the Secret caches keep of a Secret;
//! - [`synced`]: the gate that opens once each watch has listed;
//! - [`memo`]: our own writes, remembered until the watch shows them;
//! - [`status`]: the status writer (server-side apply of the status subresource);
//! - [`events`]: Events through kube-runtime's `Recorder`;
//! - [`leader`]: leader election with a Lease.

pub mod cached_secret;
pub mod events;
pub mod leader;
pub mod memo;
pub mod status;
pub mod synced;
pub mod timeout;
pub mod watch;
