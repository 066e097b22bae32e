//! What the in-repo API emulator claims about Kubernetes, driven by the real kube client and
//! kube-runtime: each scenario of Kubernetes behaviour runs on the emulator (`emulator::…`) and,
//! ignored unless asked for, on the real kube-apiserver (`real_api_server::…`, after
//! tests/cluster/build.sh); tests of the emulator's own machinery run on it alone.
#![recursion_limit = "256"]

mod common;
mod crud;
mod faults;
mod gc;
mod ssa;
mod watch;
