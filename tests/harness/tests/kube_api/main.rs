//! The kube API emulator driven by the real kube client and kube-runtime.
#![recursion_limit = "256"]

mod common;
mod crud;
mod faults;
mod gc;
mod ssa;
mod watch;
