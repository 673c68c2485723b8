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

/// Passes a received SIGTERM on to the child processes `children` (process ids), once: `sent`
/// records that a signal was handled. A terminal's Ctrl-C already reaches the whole process group,
/// so SIGINT is not passed on (`selfsup launch`'s ranks, `selfsup study --jobs`'s runs).
pub fn pass_on_sigterm(sent: &mut bool, children: impl IntoIterator<Item = u32>) {
    let Some((_, code)) = pending() else { return };
    if *sent {
        return;
    }
    if code == 143 {
        for pid in children {
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
    }
    *sent = true;
}
