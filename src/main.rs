//! `drover`: the CLI for people, the controller and the worker agent, in one binary.

fn main() -> std::process::ExitCode {
    drover::cli::main()
}
