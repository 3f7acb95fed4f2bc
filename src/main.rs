//! `drover`: run batch jobs described in JDL on an elastic fleet of workers.
//! One binary: the CLI for people, the controller and the worker agent.

mod api;
mod archive;
mod blobs;
mod cli;
mod client;
mod clock;
mod config;
mod fleet;
mod frontend;
mod ids;
mod metrics;
mod runtime;
mod store;
mod worker;

fn main() -> std::process::ExitCode {
    cli::main()
}
