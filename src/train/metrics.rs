//! `metrics.jsonl`: one JSON object per logged step or evaluation, appended and flushed.
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct MetricsLog {
    path: PathBuf,
}

impl MetricsLog {
    /// Opens the log; when resuming at `keep_up_to_step`, drops lines logged after that step
    /// (they belong to work lost since the checkpoint and will be logged again).
    pub fn open(dir: &Path, keep_up_to_step: Option<usize>) -> anyhow::Result<MetricsLog> {
        let path = dir.join("metrics.jsonl");
        match keep_up_to_step {
            Some(step) if path.exists() => {
                let text = std::fs::read_to_string(&path)?;
                let kept: Vec<&str> = text
                    .lines()
                    .filter(|l| serde_json::from_str::<Value>(l).ok().and_then(|v| v.get("step").and_then(Value::as_u64)).map(|s| s as usize <= step).unwrap_or(false))
                    .collect();
                crate::train::checkpoint::write_atomic(&path, (kept.join("\n") + if kept.is_empty() { "" } else { "\n" }).as_bytes())?;
            }
            Some(_) => {}
            None => {
                std::fs::write(&path, b"")?;
            }
        }
        Ok(MetricsLog { path })
    }

    pub fn write(&self, record: &Value) -> anyhow::Result<()> {
        let mut f = std::fs::OpenOptions::new().append(true).create(true).open(&self.path)?;
        writeln!(f, "{record}")?;
        Ok(())
    }
}

/// Reads every record of a metrics log.
pub fn read(path: &Path) -> anyhow::Result<Vec<Value>> {
    Ok(std::fs::read_to_string(path)?.lines().filter(|l| !l.trim().is_empty()).map(serde_json::from_str).collect::<Result<_, _>>()?)
}
