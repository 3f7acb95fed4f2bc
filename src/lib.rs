//! drover: run batch jobs described in JDL on an elastic fleet of workers.
//!
//! The library behind the `drover` binary: the controller's runtime, its HTTP
//! API, the store, blob and fleet backends, the worker agent and the frontend.
//! The decisions themselves live in the `reconcilers` crate; this crate carries
//! them out.

pub mod api;
pub mod archive;
pub mod auth;
pub mod aws;
pub mod blobs;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod fleet;
pub mod frontend;
pub mod hints;
pub mod ids;
pub mod jdl_file;
#[cfg(feature = "aws")]
pub mod metadata;
pub mod metrics;
pub mod runtime;
pub mod store;
pub mod worker;
