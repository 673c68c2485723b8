//! Runs a study's runs one after another, each in `OUT/<run>/`. A run whose `summary.json` exists
//! is finished and skipped; one with checkpoints but no summary was interrupted and is resumed.
//! A run that diverges (a non-finite loss or gradient) is an outcome, not the study's end: the
//! reason goes to `OUT/<run>/stopped.json`, the report shows it, the next run starts, and a later
//! `selfsup study` skips it (delete that file to retry). Any other error stops the study.
//! The report is rewritten after every run, so a long study shows partial results.
//! `--only` trains a subset (by run or configuration name); the others are left as they are and
//! stay in the plan: the report shows those that ran and names those that never started. `--jobs N` trains up to N runs at once,
//! each in its own process, and `--nproc N` each run as an N-process data-parallel job
//! ([`crate::study::jobs`]).
use crate::eval::probe_selection::{probe_encoder, ProbeLine, ProbeProtocol};
use crate::study::report::read_json;
use crate::study::spec::PlannedRun;
use crate::study::{plan, write_report};
use crate::train::checkpoint::{candidates, write_atomic};
use crate::train::trainer::{eval_sets, load_method};
use crate::train::{train, TrainOptions};
use serde_json::json;
use std::path::Path;

/// Options of `selfsup study`.
#[derive(Clone, Debug, Default)]
pub struct StudyOptions {
    /// Overrides applied to every run, last.
    pub sets: Vec<String>,
    pub quiet: bool,
    /// The command line, recorded in the report.
    pub command: String,
    /// Replaces the study file's `seeds` ([`crate::study::plan`]).
    pub seeds: Option<Vec<u64>>,
    /// Train only the runs with these names or configuration names (a run name without its
    /// `-seedN`); empty: every run.
    pub only: Vec<String>,
    /// Runs trained at once, each in its own process ([`crate::study::jobs`]); 0 or 1: one after
    /// another in this process.
    pub jobs: usize,
    /// Devices given to the parallel runs in turn (`train.device`); empty: the config's.
    pub devices: Vec<String>,
    /// This process is one run of a parallel study: no study.json, no report (the parent writes
    /// them).
    pub as_job: bool,
    /// Processes per run: each run a data-parallel job (`selfsup launch --nproc N`) when > 1.
    pub nproc: usize,
    /// `launch --backend` for those jobs (a process group even with `nproc` 1 when given).
    pub backend: Option<String>,
}

impl StudyOptions {
    /// Runs train under `selfsup launch` ([`crate::study::jobs`]).
    pub fn launched(&self) -> bool {
        self.nproc > 1 || self.backend.is_some()
    }
}

/// This process writes the run's files: it is alone, or rank 0 of its data-parallel job (read
/// from the launcher's environment, which the process group's rank comes from, so it holds before
/// that group forms).
fn writes_files() -> bool {
    std::env::var(crate::backend::dist::ENV_RANK).map_or(true, |r| r == "0")
}

/// The planned runs asked for by `only`, in plan order (all of them when it is empty). A name
/// that is neither a run's nor a configuration's is an error that lists the configurations.
pub fn selected<'a>(runs: &'a [PlannedRun], only: &[String]) -> anyhow::Result<Vec<&'a PlannedRun>> {
    crate::study::seeds::select_by_name(runs, |r| r.name.as_str(), only, "--only").map_err(|e| crate::Error::usage(e).into())
}

pub fn run_study(file: &Path, out: &Path, opts: &StudyOptions) -> anyhow::Result<()> {
    let (spec, runs) = plan(file, &opts.sets, opts.seeds.as_deref())?;
    let asked = selected(&runs, &opts.only)?;
    std::fs::create_dir_all(out).map_err(|e| crate::Error::data(out, format!("cannot create study folder: {e}")))?;
    let plan_json = json!({
        "name": spec.name,
        "description": spec.description,
        "file": file.display().to_string(),
        "command": opts.command,
        "sets": opts.sets,
        "baseline": spec.baseline,
        "compare": spec.compare,
        "seeds": spec.seeds,
        "probe": spec.probe_protocol(),
        "processes_per_run": opts.nproc.max(1),
        "runs": runs.iter().map(|r| json!({"name": r.name, "overrides": r.overrides})).collect::<Vec<_>>(),
    });
    if !opts.as_job {
        write_atomic(&out.join("study.json"), serde_json::to_string_pretty(&plan_json)?.as_bytes())?;
        if asked.len() < runs.len() {
            eprintln!("--only: {} of the study's {} runs ({}); the others are left as they are", asked.len(), runs.len(), asked.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", "));
        }
    }
    let mut diverged = Vec::new();
    let probe = spec.probe_protocol();
    let done = |dir: &Path| trained(dir) && probe.as_ref().is_none_or(|p| probed(dir, p));
    let mut to_train = Vec::new();
    for (i, run) in asked.iter().enumerate() {
        let dir = out.join(&run.name);
        let at = run_label(i, asked.len(), &run.name);
        if done(&dir) {
            eprintln!("{at}: finished, skipped");
        } else if let Some(reason) = stopped_reason(&dir) {
            eprintln!("{at}: diverged in an earlier attempt, skipped (delete {} to retry): {reason}", dir.join(STOPPED).display());
            diverged.push(run.name.clone());
        } else {
            to_train.push((i, *run));
        }
    }
    let parallel = (opts.jobs > 1 || opts.launched()) && !opts.as_job;
    if parallel {
        diverged.extend(crate::study::jobs::run_in_parallel(file, out, opts, &to_train, asked.len())?);
    }
    let sequential = if parallel { &[][..] } else { &to_train[..] };
    // the time left from the runs that train (runs only probed take a minute or so)
    let mut left = sequential.iter().filter(|(_, r)| !trained(&out.join(&r.name))).count();
    let (mut trained_runs, mut trained_secs) = (0usize, 0f64);
    for &(i, run) in sequential {
        let dir = out.join(&run.name);
        let at = run_label(i, asked.len(), &run.name);
        let started = std::time::Instant::now();
        let probe_only = trained(&dir);
        let trained = if probe_only { true } else { train_run(run, &dir, &at, opts)? };
        if !writes_files() {
            continue; // another rank of a data-parallel run: rank 0 probes and reports
        }
        if !trained {
            diverged.push(run.name.clone());
        } else if let Some(protocol) = probe.as_ref().filter(|p| !probed(&dir, p)) {
            let top1 = probe_run(&dir, &run.config, protocol)?;
            eprintln!("{at}: linear probe top-1 {top1:.4}");
        }
        if !opts.as_job {
            write_report(out)?;
        }
        if probe_only {
            continue;
        }
        trained_runs += 1;
        trained_secs += started.elapsed().as_secs_f64();
        left = left.saturating_sub(1);
        if let Some(line) = time_left(trained_runs, trained_secs, left) {
            eprintln!("{line}");
        }
    }
    if opts.as_job {
        return Ok(());
    }
    write_report(out)?;
    if !diverged.is_empty() {
        eprintln!("{} of {} runs diverged ({}); the report shows why", diverged.len(), asked.len(), diverged.join(", "));
    }
    Ok(())
}

/// The study's progress after a run: with `runs` runs trained in `secs` seconds (this
/// invocation) and `left` still to train, the time left at their mean pace ("about 12 min left
/// for 5 runs"). None when nothing is left.
fn time_left(runs: usize, secs: f64, left: usize) -> Option<String> {
    if left == 0 || runs == 0 {
        return None;
    }
    let when = minutes_left(secs / runs as f64 * left as f64 / 60.0);
    Some(format!("study: {when} left for {left} run(s), at this invocation's {:.1} min per run", secs / runs as f64 / 60.0))
}

/// A time left for the progress lines: "under a minute" or "about N min".
pub(crate) fn minutes_left(minutes: f64) -> String {
    if minutes < 1.0 { "under a minute".to_string() } else { format!("about {minutes:.0} min") }
}

/// A run's label in the progress lines: `[i/n] name` (`i` from 0).
pub(crate) fn run_label(i: usize, total: usize, name: &str) -> String {
    format!("[{}/{}] {name}", i + 1, total)
}

/// The run has finished training (`summary.json`); the study may still have to probe it.
pub(crate) fn trained(dir: &Path) -> bool {
    dir.join("summary.json").exists()
}

/// What a run's `linear.json` (`read`, if there is one) must change under `protocol`: the trained
/// encoder's probe (missing, or made by another protocol) and the random-init encoder's (asked for
/// and missing — or not asked for and present, to be dropped).
fn probe_needs(read: Option<&serde_json::Value>, protocol: &ProbeProtocol) -> (bool, bool) {
    // the protocol as it decides the trained probe (whether the random init is probed too does not)
    let decides = |p: &serde_json::Value| {
        let mut p = p.clone();
        p.as_object_mut().map(|o| o.remove("random_init"));
        p
    };
    let wanted = serde_json::to_value(protocol).unwrap_or_default();
    let trained = !read.is_some_and(|v| decides(&v["protocol"]) == decides(&wanted));
    let random = match protocol.random_init {
        true => trained || !read.is_some_and(|v| v["linear_random_top1"].is_number()),
        false => read.is_some_and(|v| v.get("random_init").is_some()),
    };
    (trained, random)
}

/// The run's `linear.json` is as `protocol` asks: everything it asks for, and no random-init probe
/// it does not ask for.
fn probed(dir: &Path, protocol: &ProbeProtocol) -> bool {
    probe_needs(read_json(&dir.join("linear.json")).as_ref(), protocol) == (false, false)
}

/// The test-scored line of `eval linear`'s probe of `encoder` by `protocol` (the one chosen on
/// held-out training images when the protocol has a `val_fraction`), split and views drawn with
/// `seed`.
fn test_scored_probe(encoder: &crate::models::resnet::ResNet, cfg: &crate::config::Config, sets: &crate::train::trainer::EvalSets, device: tch::Device, protocol: &ProbeProtocol, seed: u64) -> anyhow::Result<serde_json::Value> {
    let mut result = None;
    probe_encoder(encoder, cfg, sets.train.clone(), sets.test.clone(), device, protocol, seed, |line| {
        if !matches!(line, ProbeLine::Validation(..)) {
            result = Some(line.to_json(protocol));
        }
    })?;
    Ok(result.expect("a protocol ends in one test-scored probe"))
}

/// The offline probe of a trained run's encoder by `protocol` (held-out split and augmented views
/// drawn with the run's `train.seed`), written to `linear.json`: `eval linear --json`'s line of
/// the test-scored probe — the one chosen on held-out training images when the protocol has a
/// `val_fraction` — and the protocol; with `random_init`, the same for the run's random-init
/// encoder under `random_init` (its top-1 also as `linear_random_top1`). A probe already there by
/// the same protocol is kept. Returns the trained encoder's test top-1.
fn probe_run(dir: &Path, config: &crate::config::Config, protocol: &ProbeProtocol) -> anyhow::Result<f64> {
    let device = crate::backend::parse_device(&config.train.device)?;
    let before = read_json(&dir.join("linear.json"));
    let (redo, random) = probe_needs(before.as_ref(), protocol);
    let make_random = random && protocol.random_init;
    // the run as it trained (its `config.toml`); its weights are read only when the trained probe is redone
    let cfg = crate::config::overrides::load(Some(&dir.join(crate::train::checkpoint::CONFIG)), &[])?;
    let sets = if redo || make_random { Some(eval_sets(&cfg)?) } else { None };
    let mut v = match before {
        Some(v) if !redo => v,
        _ => test_scored_probe(load_method(dir, device)?.1.encoder(), &cfg, sets.as_ref().expect("loaded to probe"), device, protocol, cfg.train.seed)?,
    };
    v["protocol"] = serde_json::to_value(protocol)?;
    let o = v.as_object_mut().expect("a probe line is an object");
    if make_random {
        // the random-init kNN's encoder, probed as `eval linear --checkpoint random --seed S+1`
        let seed = cfg.train.seed.wrapping_add(1);
        let r = test_scored_probe(crate::train::trainer::random_method(&cfg, seed, device)?.encoder(), &cfg, sets.as_ref().expect("loaded to probe"), device, protocol, seed)?;
        o.insert("linear_random_top1".into(), r["linear_top1"].clone());
        o.insert("random_init".into(), r);
    } else if !protocol.random_init {
        o.remove("linear_random_top1");
        o.remove("random_init");
    }
    write_atomic(&dir.join("linear.json"), v.to_string().as_bytes())?;
    Ok(v["linear_top1"].as_f64().unwrap_or(f64::NAN))
}

/// The progress line of a finished run: `[i/n] name: loss L, kNN K, M min`.
pub(crate) fn finished_line(at: &str, final_loss: f64, knn_top1: Option<f64>, minutes: f64) -> String {
    format!("{at}: loss {final_loss:.4}, kNN {}, {minutes:.1} min", knn_top1.map(|k| format!("{k:.4}")).unwrap_or("-".into()))
}

/// Trains (or resumes) one run into `dir`. Returns false when it diverged, having recorded why in
/// [`STOPPED`]; any other error ends the study, naming the run.
fn train_run(run: &PlannedRun, dir: &Path, at: &str, opts: &StudyOptions) -> anyhow::Result<bool> {
    let resume = !candidates(dir).is_empty();
    eprintln!("{at}{}: {}", if resume { " (resuming)" } else { "" }, run.overrides.join(" "));
    match train(&run.config, &TrainOptions { out: dir.to_path_buf(), resume, quiet: opts.quiet, stop_after_steps: None }) {
        Ok(s) => {
            if writes_files() {
                eprintln!("{}", finished_line(at, s.final_loss, s.knn_top1, s.minutes));
            }
            Ok(true)
        }
        Err(e) => match e.downcast_ref::<crate::Error>() {
            Some(crate::Error::Diverged(reason)) => {
                if writes_files() {
                    eprintln!("{at}: diverged: {reason}");
                    write_atomic(&dir.join(STOPPED), json!({"reason": reason}).to_string().as_bytes())?;
                }
                Ok(false)
            }
            _ => Err(e.context(format!("study run `{}`", run.name))),
        },
    }
}

/// The file in a run folder that records why the run stopped early.
pub const STOPPED: &str = "stopped.json";

/// Why the run in `dir` stopped early, if it did (see [`STOPPED`]).
pub fn stopped_reason(dir: &Path) -> Option<String> {
    read_json(&dir.join(STOPPED))?["reason"].as_str().map(String::from)
}

#[cfg(test)]
mod tests {
    use super::time_left;

    #[test]
    fn time_left_is_the_mean_pace_times_the_runs_left() {
        // 3 runs in 6 minutes: 2 min per run, 5 left = 10 min
        assert_eq!(time_left(3, 360.0, 5).unwrap(), "study: about 10 min left for 5 run(s), at this invocation's 2.0 min per run");
        assert_eq!(time_left(2, 30.0, 1).unwrap(), "study: under a minute left for 1 run(s), at this invocation's 0.2 min per run");
        assert_eq!(time_left(4, 100.0, 0), None);
        assert_eq!(time_left(0, 0.0, 3), None);
    }
}
