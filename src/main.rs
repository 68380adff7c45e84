#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    certgate::cli::main()
}
