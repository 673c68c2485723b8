//! The `selfsup` command line. Errors print one `error:` line; exit code 2 for usage/config
//! errors, 1 for runtime errors, 130/143 after Ctrl-C/SIGTERM (with a checkpoint written).
fn main() {
    let code = match selfsup_cli::run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            selfsup::error::exit_code(&e)
        }
    };
    std::process::exit(code);
}

#[path = "cli/mod.rs"]
mod selfsup_cli;
