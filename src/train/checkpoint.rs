//! Checkpoints: `OUT/checkpoints/ckpt-<step>/` holding `weights.safetensors` (every variable
//! of every store, prefixed by store name, plus optimiser state under `optim.`), `state.json`
//! and the resolved `config.toml`. Each is written to a temporary folder, fsynced and renamed into
//! place; then the manifest `OUT/checkpoints/latest` is replaced atomically. A checkpoint that
//! fails to load is reported and the next older one is used.
use crate::error::Error;
use crate::optim::Optimizer;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::{Device, Tensor};

pub const WEIGHTS: &str = "weights.safetensors";
pub const STATE: &str = "state.json";
pub const CONFIG: &str = "config.toml";
pub const MANIFEST: &str = "latest";

/// Loop position and counters saved with the weights.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    /// Optimiser steps completed.
    pub step: usize,
    pub total_steps: usize,
    pub epochs: usize,
    pub batches_per_epoch: usize,
    /// Steps skipped because of non-finite values.
    pub skipped_steps: usize,
    pub last_loss: f64,
    pub method: String,
}

/// Writes `bytes` to `path` through a temporary file, fsync and rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        std::fs::remove_file(&tmp).ok();
        return Err(Error::data(path, format!("cannot write: {e}")).into());
    }
    Ok(())
}

fn fsync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        f.sync_all().ok();
    }
}

/// Every variable of the stores (`<prefix>.<name>`) and the optimiser state (`optim.<name>`),
/// on the CPU.
pub fn collect_tensors(stores: &[(&str, &VarStore)], opt: Option<&Optimizer>) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    for (prefix, vs) in stores {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        out.extend(vars.into_iter().map(|(n, t)| (format!("{prefix}.{n}"), t.detach().to_device(Device::Cpu).contiguous())));
    }
    if let Some(opt) = opt {
        out.extend(opt.state().into_iter().map(|(n, t)| (format!("optim.{n}"), t.detach().to_device(Device::Cpu).contiguous())));
    }
    out
}

/// The folder of the checkpoint for `step` in a run folder.
pub fn checkpoint_dir(run_dir: &Path, step: usize) -> PathBuf {
    run_dir.join("checkpoints").join(format!("ckpt-{step:08}"))
}

/// Saves a checkpoint for `state.step` and prunes all but the newest `keep`.
pub fn save(run_dir: &Path, stores: &[(&str, &VarStore)], opt: &Optimizer, state: &TrainState, config_toml: &str, keep: usize) -> anyhow::Result<PathBuf> {
    let ckdir = run_dir.join("checkpoints");
    std::fs::create_dir_all(&ckdir).map_err(|e| Error::data(&ckdir, format!("cannot create: {e}")))?;
    let final_dir = checkpoint_dir(run_dir, state.step);
    let name = final_dir.file_name().unwrap().to_string_lossy().to_string();
    let tmp_dir = ckdir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| -> anyhow::Result<()> {
        if tmp_dir.exists() {
            std::fs::remove_dir_all(&tmp_dir)?;
        }
        std::fs::create_dir_all(&tmp_dir)?;
        let tensors = collect_tensors(stores, Some(opt));
        let weights = tmp_dir.join(WEIGHTS);
        Tensor::write_safetensors(&tensors, &weights).map_err(|e| Error::data(&weights, format!("cannot write: {e}")))?;
        std::fs::File::open(&weights)?.sync_all()?;
        write_atomic(&tmp_dir.join(STATE), serde_json::to_string_pretty(state)?.as_bytes())?;
        write_atomic(&tmp_dir.join(CONFIG), config_toml.as_bytes())?;
        fsync_dir(&tmp_dir);
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir)?;
        }
        std::fs::rename(&tmp_dir, &final_dir)?;
        fsync_dir(&ckdir);
        write_atomic(&ckdir.join(MANIFEST), name.as_bytes())?;
        fsync_dir(&ckdir);
        Ok(())
    })();
    if let Err(e) = result {
        std::fs::remove_dir_all(&tmp_dir).ok();
        return Err(e.context(format!("writing checkpoint {} failed; the previous checkpoint is intact", final_dir.display())));
    }
    prune(&ckdir, keep, &name);
    Ok(final_dir)
}

fn list(ckdir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(ckdir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir() && p.file_name().and_then(|n| n.to_str()).map(|n| n.starts_with("ckpt-")).unwrap_or(false)).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn prune(ckdir: &Path, keep: usize, newest: &str) {
    let all = list(ckdir);
    let n = all.len();
    for p in all.into_iter().take(n.saturating_sub(keep)) {
        if p.file_name().and_then(|n| n.to_str()) != Some(newest) {
            std::fs::remove_dir_all(p).ok();
        }
    }
}

/// A checkpoint read from disk.
pub struct Loaded {
    pub dir: PathBuf,
    pub tensors: HashMap<String, Tensor>,
    pub state: TrainState,
    pub config_toml: String,
}

/// Reads one checkpoint folder completely (any missing or corrupt part is an error).
pub fn read(dir: &Path) -> anyhow::Result<Loaded> {
    let weights = dir.join(WEIGHTS);
    let tensors: HashMap<String, Tensor> = Tensor::read_safetensors(&weights).map_err(|e| Error::data(&weights, format!("unreadable checkpoint weights: {e}")))?.into_iter().collect();
    let state_path = dir.join(STATE);
    let state: TrainState = serde_json::from_str(&std::fs::read_to_string(&state_path).map_err(|e| Error::data(&state_path, format!("cannot read: {e}")))?)
        .map_err(|e| Error::data(&state_path, format!("corrupt checkpoint state: {e}")))?;
    let cfg_path = dir.join(CONFIG);
    let config_toml = std::fs::read_to_string(&cfg_path).map_err(|e| Error::data(&cfg_path, format!("cannot read: {e}")))?;
    Ok(Loaded { dir: dir.to_path_buf(), tensors, state, config_toml })
}

/// Candidate checkpoints of a run, best first: the manifest's, then the others newest first.
pub fn candidates(run_dir: &Path) -> Vec<PathBuf> {
    let ckdir = run_dir.join("checkpoints");
    let mut all = list(&ckdir);
    all.reverse();
    if let Ok(name) = std::fs::read_to_string(ckdir.join(MANIFEST)) {
        let named = ckdir.join(name.trim());
        all.retain(|p| p != &named);
        if named.is_dir() {
            all.insert(0, named);
        }
    }
    all
}

/// The newest loadable checkpoint of a run, warning about (and skipping) broken ones.
pub fn load_latest_good(run_dir: &Path) -> anyhow::Result<Option<Loaded>> {
    for dir in candidates(run_dir) {
        match read(&dir) {
            Ok(l) => return Ok(Some(l)),
            Err(e) => eprintln!("warning: skipping checkpoint {}: {e:#}", dir.display()),
        }
    }
    Ok(None)
}

/// Resolves `--checkpoint PATH`: a run folder (its newest good checkpoint) or a checkpoint folder.
pub fn open(path: &Path) -> anyhow::Result<Loaded> {
    if path.join(WEIGHTS).exists() {
        return read(path);
    }
    if !path.exists() {
        return Err(Error::data(path, "no such checkpoint or run folder").into());
    }
    load_latest_good(path)?.ok_or_else(|| Error::data(path, "holds no loadable checkpoint").into())
}

/// Copies saved values into every variable of `vs` (names `<prefix>.<name>`).
pub fn restore_store(vs: &VarStore, prefix: &str, tensors: &HashMap<String, Tensor>) -> anyhow::Result<()> {
    let _g = tch::no_grad_guard();
    for (name, mut var) in vs.variables() {
        let key = format!("{prefix}.{name}");
        let saved = tensors.get(&key).ok_or_else(|| anyhow::anyhow!("checkpoint lacks `{key}` (different model config?)"))?;
        anyhow::ensure!(saved.size() == var.size(), "checkpoint `{key}` has shape {:?}, the model {:?}", saved.size(), var.size());
        var.copy_(saved);
    }
    Ok(())
}

/// Optimiser state saved under `optim.`.
pub fn optimizer_state(tensors: &HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    tensors.iter().filter_map(|(k, v)| k.strip_prefix("optim.").map(|n| (n.to_string(), v.shallow_clone()))).collect()
}
