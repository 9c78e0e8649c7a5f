//! Thin: parse the command line, run the library, map errors to exit codes
//! (2: invalid input, including usage errors from clap; 1: the batch system or runtime failed).

use clap::Parser;

fn main() {
    let cli = rdask::cli::Cli::parse();
    let code = match rdask::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}
