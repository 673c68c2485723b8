//! The `selfsup` command line. Errors print one `error:` line; exit code 2 for usage/config
//! errors, 1 for runtime errors, 130/143 after Ctrl-C/SIGTERM (with a checkpoint written).
fn main() {
    // a panic (a bug, or a peer process dying inside a collective) still ends in one `error:` line
    std::panic::set_hook(Box::new(|info| {
        let msg = info.payload().downcast_ref::<String>().cloned().or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
        let at = info.location().map(|l| format!(" ({}:{})", l.file(), l.line())).unwrap_or_default();
        eprintln!("error: internal failure: {msg}{at}");
    }));
    let code = match selfsup_cli::run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            selfsup::error::exit_code(&e)
        }
    };
    selfsup::backend::dist::shutdown();
    std::process::exit(code);
}

#[path = "cli/mod.rs"]
mod selfsup_cli;
