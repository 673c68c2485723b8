//! One run per output folder: `OUT/.lock` holds the owner's pid; a second run refuses while that
//! process lives, and takes over a lock left by a dead one.
use crate::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct RunLock {
    path: PathBuf,
}

fn alive(pid: i32) -> bool {
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

impl RunLock {
    pub fn acquire(dir: &Path) -> anyhow::Result<RunLock> {
        let path = dir.join(".lock");
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    write!(f, "{}", std::process::id())?;
                    return Ok(RunLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse::<i32>().ok()).unwrap_or(0);
                    if alive(owner) && owner != std::process::id() as i32 {
                        return Err(Error::usage(format!("{}: another run (pid {owner}) is using this output folder", dir.display())).into());
                    }
                    std::fs::remove_file(&path).ok(); // stale: its owner is gone
                }
                Err(e) => return Err(Error::data(&path, format!("cannot create lock file: {e}")).into()),
            }
        }
        Err(Error::data(&path, "cannot take the lock").into())
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        std::fs::remove_file(&self.path).ok();
    }
}
