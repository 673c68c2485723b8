//! Faults are boring: signals write a checkpoint, kill -9 loses only the work since the last
//! checkpoint (and resume then equals an uninterrupted run), non-finite losses stop cleanly,
//! broken checkpoints fall back to older ones, a full disk leaves the previous checkpoint intact,
//! and a lock keeps two runs out of one folder.
mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn args(out: &Path, epochs: usize, extra: &[&str]) -> Vec<String> {
    args_on("synthetic:160", out, epochs, extra)
}

fn args_on(data: &str, out: &Path, epochs: usize, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = ["train", "--data", data, "--out", out.to_str().unwrap(), "--epochs", &epochs.to_string(), "--batch", "16", "--seed", "5", "--quiet"].iter().map(|s| s.to_string()).collect();
    with_sets(&mut a, &tiny_model_sets());
    a.extend(["--set".to_string(), "train.checkpoint_every=1".to_string()]);
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn weights_of_latest(run: &Path) -> Vec<u8> {
    let name = std::fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    std::fs::read(run.join("checkpoints").join(name.trim()).join("weights.safetensors")).unwrap()
}

fn wait_for(cond: impl Fn() -> bool, what: &str) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < Duration::from_secs(120), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn metrics_lines(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl")).map(|s| s.lines().count()).unwrap_or(0)
}

#[test]
fn signals_checkpoint_then_exit_130_or_143() {
    for (sig, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let child = Command::new(bin()).args(args(&run, 50, &[])).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        wait_for(|| metrics_lines(&run) >= 3, "three logged steps");
        unsafe { libc::kill(child.id() as i32, sig) };
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{err}");
        assert!(err.contains("interrupted") && err.contains("checkpoint written"), "{err}");
        let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("checkpoints").join(std::fs::read_to_string(run.join("checkpoints/latest")).unwrap().trim()).join("state.json")).unwrap()).unwrap();
        assert!(state["step"].as_u64().unwrap() >= 3);
        assert!(selfsup::train::checkpoint::open(&run).is_ok());
        assert!(!run.join(".lock").exists(), "lock released");
    }
}

#[test]
fn kill_9_then_resume_equals_uninterrupted() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full");
    // 40 steps per epoch: enough time to kill it between two checkpoints
    assert!(run_owned(&args_on("synthetic:640", &full, 3, &[])).status.success());
    let run = dir.path().join("killed");
    let mut child = Command::new(bin()).args(args_on("synthetic:640", &run, 3, &[])).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // after the first epoch's checkpoint and a few more steps, kill without warning
    wait_for(|| run.join("checkpoints/latest").exists() && metrics_lines(&run) >= 45, "first checkpoint");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(run.join(".lock").exists(), "kill -9 leaves a stale lock behind");
    let o = run_owned(&args_on("synthetic:640", &run, 3, &["--resume"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("at step 40") || stderr(&o).contains("at step 80"), "{}", stderr(&o));
    assert!(weights_of_latest(&run) == weights_of_latest(&full), "resumed weights differ");
}

/// `train.checkpoint_every_steps`: checkpoints within epochs, so a `kill -9` loses at most that
/// many steps, and `--resume` from the middle of an epoch equals the uninterrupted run.
#[test]
fn step_checkpoints_bound_what_a_kill_loses_and_resume_mid_epoch_exactly() {
    let dir = tempfile::tempdir().unwrap();
    // 40 steps per epoch, a checkpoint every 15 steps and at each epoch's end
    let every = ["--set", "train.checkpoint_every_steps=15", "--set", "train.keep_checkpoints=20"];
    let full = dir.path().join("full");
    assert!(run_owned(&args_on("synthetic:640", &full, 3, &every)).status.success());
    let mut steps: Vec<u64> = std::fs::read_dir(full.join("checkpoints"))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str().and_then(|n| n.strip_prefix("ckpt-")).map(|n| n.parse().unwrap()))
        .collect();
    steps.sort();
    assert_eq!(steps, [15, 30, 40, 45, 60, 75, 80, 90, 105, 120], "every 15 steps and at each epoch's end");
    let run = dir.path().join("killed");
    let mut child = Command::new(bin()).args(args_on("synthetic:640", &run, 3, &every)).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for(|| run.join("checkpoints/latest").exists(), "the first checkpoint");
    child.kill().unwrap();
    child.wait().unwrap();
    let o = run_owned(&args_on("synthetic:640", &run, 3, &[&["--resume"][..], &every[..]].concat()));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(["at step 15", "at step 30"].iter().any(|s| stderr(&o).contains(s)), "resumed within the first epoch: {}", stderr(&o));
    assert!(weights_of_latest(&run) == weights_of_latest(&full), "resumed weights differ");
}

#[test]
fn non_finite_loss_stops_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    assert!(run_owned(&args(&run, 1, &[])).status.success());
    let good = weights_of_latest(&run);
    let o = run_owned(&args(&run, 3, &["--resume", "--set", "optim.lr=1e30"]));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("non-finite") && err.contains("at step") && err.contains("ckpt-00000010"), "{err}");
    assert!(weights_of_latest(&run) == good, "the last good checkpoint was overwritten");
    // skip mode counts the skipped steps instead
    let run2 = dir.path().join("skip");
    let o = run_owned(&args(&run2, 1, &["--set", "optim.lr=1e30", "--set", "train.on_nonfinite=skip", "--json"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert!(v["skipped_steps"].as_u64().unwrap() > 0, "{v}");
}

/// The step an error message names ("non-finite ... at step N ..."; not the "resuming ... at step" line).
fn step_named(err: &str) -> usize {
    let err = &err[err.find("non-finite").unwrap_or(0)..];
    let rest = &err[err.find("at step ").unwrap_or_else(|| panic!("no step in {err}")) + 8..];
    rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

#[test]
fn a_non_finite_step_read_back_later_is_named_exactly_and_never_saved() {
    // reading the device-side record every 7 steps (as on a GPU) instead of every step finds the
    // same first non-finite step, logs nothing after it, and leaves the last good checkpoint
    let dir = tempfile::tempdir().unwrap();
    let mut named = vec![];
    for every in ["1", "7"] {
        let run = dir.path().join(format!("every{every}"));
        assert!(run_owned(&args(&run, 1, &[])).status.success());
        let good = weights_of_latest(&run);
        let o = run_owned(&args(&run, 3, &["--resume", "--set", "optim.lr=1e30", "--set", &format!("train.sync_every={every}"), "--set", "train.log_every=10"]));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains("non-finite") && err.contains("ckpt-00000010"), "{err}");
        assert!(weights_of_latest(&run) == good, "sync_every={every}: the last good checkpoint was overwritten");
        let step = step_named(&err);
        // found by the first read after it: a multiple of sync_every, a log step (10) or an epoch end (10 steps)
        let sync = every.parse::<usize>().unwrap();
        let read_at = (step + 1..).find(|n| n % sync == 0 || n % 10 == 0).unwrap();
        match err.find("read back after step ") {
            Some(i) => assert_eq!(step_named(&format!("non-finite at step {}", &err[i + 21..])), read_at, "{err}"),
            None => assert_eq!(read_at, step + 1, "{err}"),
        }
        for line in std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(loss) = v.get("loss") {
                assert!(loss.as_f64().map(f64::is_finite).unwrap_or(false) && v["step"].as_u64().unwrap() as usize <= step, "logged after the bad step {step}: {line}");
            }
        }
        named.push(step);
    }
    assert_eq!(named[0], named[1], "the deferred read names another step");
}

#[test]
fn a_truncated_checkpoint_falls_back_to_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    assert!(run_owned(&args(&run, 2, &[])).status.success());
    let latest = std::fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    assert_eq!(latest.trim(), "ckpt-00000020");
    let w = run.join("checkpoints/ckpt-00000020/weights.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
    let loaded = selfsup::train::checkpoint::load_latest_good(&run).unwrap().unwrap();
    assert_eq!(loaded.state.step, 10);
    let o = run_owned(&args(&run, 2, &["--resume"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("skipping checkpoint") && stderr(&o).contains("resuming from") && stderr(&o).contains("at step 10"), "{}", stderr(&o));
    // a resume whose config does not fit the checkpoint fails, naming the tensor, and leaves the
    // folder's config.toml describing its checkpoints
    let config_before = std::fs::read_to_string(run.join("config.toml")).unwrap();
    let o = run_owned(&args(&run, 3, &["--resume", "--set", "model.width=8"]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("restoring") && stderr(&o).contains("has shape [") && stderr(&o).contains("the model ["), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(run.join("config.toml")).unwrap(), config_before);
}

#[test]
fn a_full_disk_errors_without_damaging_the_previous_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    assert!(run_owned(&args(&run, 1, &[])).status.success());
    let good = weights_of_latest(&run);
    // file-size limit below one checkpoint; SIGXFSZ ignored so writes fail with EFBIG
    let cmd = format!("trap '' XFSZ; ulimit -f {}; exec \"$0\" \"$@\"", good.len() / 1024 / 2);
    let o = Command::new("bash").arg("-c").arg(cmd).arg(bin()).args(args(&run, 2, &["--resume"])).output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("writing checkpoint") && err.contains("previous checkpoint is intact"), "{err}");
    assert!(weights_of_latest(&run) == good);
    assert_eq!(selfsup::train::checkpoint::load_latest_good(&run).unwrap().unwrap().state.step, 10);
}

#[test]
fn the_lock_refuses_a_second_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    // this test process is alive: its pid in the lock means "in use"
    std::fs::write(run.join(".lock"), std::process::id().to_string()).unwrap();
    let o = run_owned(&args(&run, 1, &[]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("another run") && stderr(&o).contains(&std::process::id().to_string()), "{}", stderr(&o));
    assert!(!run.join("checkpoints").exists());
}

/// `selfsup study --jobs 2` killed by SIGTERM passes it to its runs: each writes a checkpoint and
/// stops, the study exits 143 saying so, and the same command resumes both runs to the end.
#[test]
fn a_parallel_study_passes_sigterm_to_its_runs_and_the_same_command_resumes_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("two.toml");
    std::fs::write(&file, "name = \"two\"\nset = [\"train.epochs=15\", \"train.batch=16\", \"data.train=\\\"synthetic:160\\\"\", \"eval.knn_every=0\", \"eval.compare_random=false\", \"train.checkpoint_every=1\", \"train.threads=1\"]\n[[runs]]\nname = \"a\"\n[[runs]]\nname = \"b\"\nset = [\"train.seed=2\"]\n").unwrap();
    let out = dir.path().join("out");
    let mut a: Vec<String> = ["study", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet", "--jobs", "2"].map(String::from).to_vec();
    with_sets(&mut a, &tiny_model_sets());
    let child = Command::new(bin()).args(&a).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for(|| metrics_lines(&out.join("a")) >= 3 && metrics_lines(&out.join("b")) >= 3, "three logged steps of both runs");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(143), "{err}");
    assert!(err.contains("study interrupted by SIGTERM") && err.contains("the same command resumes them"), "{err}");
    for run in ["a", "b"] {
        let log = std::fs::read_to_string(out.join(run).join("job.log")).unwrap();
        assert!(log.contains("interrupted by SIGTERM; checkpoint written"), "{run}: {log}");
        assert!(!out.join(run).join("summary.json").exists(), "{run} finished before the signal: make the runs longer");
    }
    let o = run_owned(&a);
    assert!(o.status.success(), "{}", stderr(&o));
    for run in ["a", "b"] {
        assert!(out.join(run).join("summary.json").exists(), "{run} not finished");
        let log = std::fs::read_to_string(out.join(run).join("job.log")).unwrap();
        assert!(log.contains("(resuming)") && log.contains("interrupted by SIGTERM"), "{run} was not resumed, or its log lost the first attempt: {log}");
    }
}
