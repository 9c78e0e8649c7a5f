//! Thin: parse the command line, run the library, map errors to exit codes
//! (2: invalid input, including usage errors from clap; 1: the batch system or runtime failed).

use clap::Parser;

/// The commands: private to this binary (the library's API is `rdask`, not its flags).
mod cli;

fn main() {
    let cli = cli::Cli::parse();
    let code = match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}
