//! Ctrl-C / SIGTERM: the handler only records the signal; the loop finishes the current step,
//! writes a checkpoint and exits with 130 (SIGINT) or 143 (SIGTERM).
use std::sync::atomic::{AtomicI32, Ordering};

static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    RECEIVED.store(sig, Ordering::SeqCst);
}

/// Installs the handlers (idempotent).
pub fn install() {
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// The pending signal, if any: (name, exit code).
pub fn pending() -> Option<(&'static str, i32)> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        s if s == libc::SIGTERM => Some(("SIGTERM", 143)),
        _ => Some(("SIGINT", 130)),
    }
}
