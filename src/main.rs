//! The `certgate` command: argument parsing and the subcommands, each a thin layer over the
//! library. The demo's throwaway PKI is linked here, never into the library.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
