//! `selfsup study --jobs N`: up to N of a study's runs at once, each in its own process — one per
//! GPU with `--devices cuda:0,cuda:1,…`, or several on a many-core CPU. Every run is the child
//! `selfsup study FILE --out DIR --only RUN --as-job` with the parent's `--seeds` and `--set`
//! (and `train.device` set to the device of its slot: `--devices` in turn), so it trains exactly
//! as in a sequential study (its own process, its own seed); its output is appended to
//! `DIR/RUN/job.log`.
//! The parent prints a line as each run starts and ends and rewrites the report after each. A run
//! that fails does not stop the others: no new run starts, the running ones finish, and the study
//! ends with an error naming the run and its log. Ctrl-C reaches every run (SIGTERM is passed on):
//! each writes a checkpoint and stops, and the same command resumes them.
//! With `--nproc N` every run is a data-parallel job of N processes: the child is
//! `selfsup launch --nproc N [--backend B] -- study FILE --out DIR --only RUN --as-job …` (each rank
//! runs the study's one run; rank 0 writes its files), and `--devices` gives each run N devices in
//! turn ([`slot_devices`]). A run only probed (trained before) is not launched: one process probes.
use crate::study::runner::{finished_line, minutes_left, run_label, stopped_reason, trained, StudyOptions};
use crate::study::spec::PlannedRun;
use crate::study::write_report;
use std::path::Path;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The log of a run trained by a child process, in its folder.
pub const JOB_LOG: &str = "job.log";

/// The child's command line (after the executable) for `run`: `selfsup study FILE --out DIR
/// --only RUN --as-job --quiet`, the parent's seeds and overrides, then the device.
pub fn child_args(file: &Path, out: &Path, run: &str, opts: &StudyOptions, device: Option<&str>) -> Vec<String> {
    let mut a: Vec<String> = vec!["study".into(), file.display().to_string(), "--out".into(), out.display().to_string(), "--only".into(), run.into(), "--as-job".into(), "--quiet".into()];
    if let Some(seeds) = &opts.seeds {
        a.push("--seeds".into());
        a.push(crate::study::seeds::format_seed_list(seeds));
    }
    for s in &opts.sets {
        a.push("--set".into());
        a.push(s.clone());
    }
    if let Some(d) = device {
        a.push("--set".into());
        a.push(format!("train.device=\"{d}\""));
    }
    a
}

/// Where a slot's run trains: `train.device` and, for a data-parallel run on chosen GPUs, the
/// `CUDA_VISIBLE_DEVICES` its processes see.
#[derive(Debug, Default, PartialEq)]
pub struct SlotDevices {
    pub device: Option<String>,
    pub visible: Option<String>,
}

/// The devices of the run in slot `slot`: with one process per run, `devices` in turn (each run's
/// `train.device`); with `nproc` > 1, `nproc` of them per run in turn, given as
/// `CUDA_VISIBLE_DEVICES` (through the parent's own `visible` list, when it has one) with
/// `train.device = "cuda"`, so rank r trains on the r-th of them. Errors name the flag.
pub fn slot_devices(devices: &[String], nproc: usize, slot: usize, visible: Option<&str>) -> Result<SlotDevices, String> {
    if devices.is_empty() {
        return Ok(SlotDevices::default());
    }
    if nproc <= 1 {
        return Ok(SlotDevices { device: Some(devices[slot % devices.len()].clone()), visible: None });
    }
    if !devices.len().is_multiple_of(nproc) {
        return Err(format!("--devices gives {} device(s), not a multiple of --nproc {nproc} (each run takes {nproc})", devices.len()));
    }
    let parent: Option<Vec<&str>> = visible.filter(|v| !v.trim().is_empty()).map(|v| v.split(',').map(str::trim).collect());
    let groups = devices.len() / nproc;
    let group = &devices[(slot % groups) * nproc..(slot % groups + 1) * nproc];
    let mut seen = Vec::new();
    for d in group {
        let index: usize = d.strip_prefix("cuda:").and_then(|i| i.parse().ok()).ok_or_else(|| format!("--devices {d}: with --nproc each device must be cuda:INDEX"))?;
        let id = match &parent {
            Some(p) => p.get(index).ok_or_else(|| format!("--devices {d}: CUDA_VISIBLE_DEVICES={} shows only {} device(s)", p.join(","), p.len()))?.to_string(),
            None => index.to_string(),
        };
        seen.push(id);
    }
    Ok(SlotDevices { device: Some("cuda".into()), visible: Some(seen.join(",")) })
}

/// The command that trains (or probes) `run` in a slot: this binary's `study … --only RUN
/// --as-job`, under `selfsup launch --nproc N` when `launch` (a data-parallel run that still has
/// to train).
fn job_command(exe: &Path, file: &Path, out: &Path, run: &str, opts: &StudyOptions, place: &SlotDevices, launch: bool) -> Command {
    let mut c = Command::new(exe);
    if launch {
        c.args(["launch".to_string(), "--nproc".into(), opts.nproc.max(1).to_string()]);
        if let Some(b) = &opts.backend {
            c.args(["--backend", b]);
        }
        c.arg("--");
    }
    c.args(child_args(file, out, run, opts, place.device.as_deref()));
    if let Some(v) = &place.visible {
        c.env("CUDA_VISIBLE_DEVICES", v);
    }
    c
}

struct Job {
    child: Child,
    name: String,
    at: String,
    started: Instant,
    /// One line of the study's progress display: the run's last logged epoch, step and loss.
    bar: ProgressBar,
    epochs: usize,
    /// The run had finished training before (it is only probed): not counted in the time left.
    probe_only: bool,
}

/// The last complete line of a run's `metrics.jsonl` that logs a training step (read from the
/// file's end: the log of a long run is large).
fn last_logged_step(dir: &Path) -> Option<serde_json::Value> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(dir.join("metrics.jsonl")).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(16384))).ok()?;
    let mut tail = String::new();
    f.read_to_string(&mut tail).ok()?;
    tail.lines().rev().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).find(|v| v["loss"].is_number() && v["step"].is_number())
}

impl Job {
    /// Shows the run's progress: `epoch e/E  step s  loss l`.
    fn show_progress(&self, dir: &Path) {
        if let Some(v) = last_logged_step(dir) {
            let epoch = v["epoch"].as_u64().unwrap_or(0) + 1;
            self.bar.set_message(format!("epoch {epoch}/{}  step {}  loss {:.4}", self.epochs, v["step"], v["loss"].as_f64().unwrap_or(f64::NAN)));
        }
    }
}

/// Trains `runs` (the ones not finished or stopped, in plan order) with up to `opts.jobs` child
/// processes at once. Returns the names of the runs that diverged.
pub fn run_in_parallel(file: &Path, out: &Path, opts: &StudyOptions, runs: &[(usize, &PlannedRun)], total: usize) -> anyhow::Result<Vec<String>> {
    let exe = std::env::current_exe()?;
    for d in &opts.devices {
        crate::backend::parse_device(d).map_err(|e| crate::Error::usage(format!("--devices {d}: {e}")))?;
    }
    let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    let jobs = opts.jobs.max(1);
    let places = (0..jobs).map(|slot| slot_devices(&opts.devices, opts.nproc, slot, visible.as_deref())).collect::<Result<Vec<_>, _>>().map_err(crate::Error::usage)?;
    note_threads(runs, opts);
    crate::train::signals::install();
    // one line per running run on a terminal (none with --quiet); the start and end lines above them
    let bars = MultiProgress::with_draw_target(if opts.quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() });
    let say = |line: String| {
        if bars.is_hidden() {
            eprintln!("{line}");
        } else {
            let _ = bars.println(line);
        }
    };
    let (mut shown, mut run_secs, mut finished, mut ended) = (Instant::now(), 0f64, 0usize, false);
    let mut queue: std::collections::VecDeque<&(usize, &PlannedRun)> = runs.iter().collect();
    let mut slots: Vec<Option<Job>> = (0..jobs).map(|_| None).collect();
    let (mut diverged, mut failures, mut forwarded) = (Vec::new(), Vec::new(), false);
    loop {
        let stopping = crate::train::signals::pending().is_some() || !failures.is_empty();
        for (slot, job) in slots.iter_mut().enumerate() {
            if job.is_some() || stopping {
                continue;
            }
            let Some((i, run)) = queue.pop_front() else { break };
            let dir = out.join(&run.name);
            std::fs::create_dir_all(&dir).map_err(|e| crate::Error::data(&dir, format!("cannot create run folder: {e}")))?;
            // appended to: a resumed run's log keeps what the interrupted attempt printed
            let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(JOB_LOG)).map_err(|e| crate::Error::data(dir.join(JOB_LOG), e.to_string()))?;
            let probe_only = trained(&dir);
            let launch = opts.launched() && !probe_only;
            let child = job_command(&exe, file, out, &run.name, opts, &places[slot], launch)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .map_err(|e| anyhow::anyhow!("cannot start study run `{}`: {e}", run.name))?;
            let at = run_label(*i, total, &run.name);
            let on = match &places[slot] {
                SlotDevices { visible: Some(v), .. } => format!(" on CUDA devices {v}"),
                SlotDevices { device: Some(d), .. } => format!(" on {d}"),
                _ => String::new(),
            };
            let ranks = if launch { format!(", {} processes", opts.nproc.max(1)) } else { String::new() };
            say(format!("{at}: started{on}{ranks} (log: {})", dir.join(JOB_LOG).display()));
            let bar = bars.add(ProgressBar::new_spinner());
            bar.set_style(ProgressStyle::with_template("{spinner} {prefix}  {msg}  {elapsed}").unwrap());
            bar.set_prefix(run.name.clone());
            *job = Some(Job { child, name: run.name.clone(), at, started: Instant::now(), bar, epochs: run.config.train.epochs, probe_only });
        }
        if slots.iter().all(|j| j.is_none()) && (queue.is_empty() || stopping) {
            break;
        }
        crate::train::signals::pass_on_sigterm(&mut forwarded, slots.iter().flatten().map(|j| j.child.id()));
        let show = shown.elapsed() > Duration::from_secs(1);
        if show {
            shown = Instant::now();
        }
        for job in slots.iter_mut() {
            let Some(j) = job else { continue };
            let Some(status) = j.child.try_wait()? else {
                if show && !bars.is_hidden() {
                    j.show_progress(&out.join(&j.name));
                    j.bar.tick();
                }
                continue;
            };
            bars.remove(&j.bar);
            let dir = out.join(&j.name);
            let minutes = j.started.elapsed().as_secs_f64() / 60.0;
            if let Some(reason) = stopped_reason(&dir) {
                say(format!("{}: diverged: {reason}", j.at));
                diverged.push(j.name.clone());
            } else if status.success() && j.probe_only {
                let l = crate::study::report::read_json(&dir.join("linear.json")).unwrap_or_default();
                say(format!("{}: linear probe top-1 {:.4}", j.at, l["linear_top1"].as_f64().unwrap_or(f64::NAN)));
            } else if status.success() {
                let s = crate::study::report::read_json(&dir.join("summary.json")).unwrap_or_default();
                say(finished_line(&j.at, s["final_loss"].as_f64().unwrap_or(f64::NAN), s["knn_top1"].as_f64(), minutes));
            } else {
                let code = status.code().unwrap_or(1);
                say(format!("{}: exited with code {code} after {minutes:.1} min; see {}", j.at, dir.join(JOB_LOG).display()));
                failures.push((j.name.clone(), code, last_error_line(&dir.join(JOB_LOG))));
            }
            write_report(out)?;
            if !j.probe_only {
                run_secs += j.started.elapsed().as_secs_f64();
                finished += 1;
            }
            *job = None;
            ended = true;
        }
        // the time left from the runs that trained (runs only probed take a minute or so)
        if std::mem::take(&mut ended) && !stopping && finished > 0 {
            let elapsed: Vec<f64> = slots.iter().flatten().filter(|j| !j.probe_only).map(|j| j.started.elapsed().as_secs_f64()).collect();
            let per_run = run_secs / finished as f64;
            let queued = queue.iter().filter(|(_, r)| !trained(&out.join(&r.name))).count();
            let left = elapsed.len() + queued;
            if left > 0 {
                let when = minutes_left(parallel_time_left(per_run, &elapsed, queued, jobs) / 60.0);
                say(format!("study: {when} left for {left} run(s), {jobs} at once, at {:.1} min per run so far", per_run / 60.0));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Some((name, code)) = crate::train::signals::pending() {
        return Err(crate::Error::Exit { code, message: format!("study interrupted by {name}: every running run wrote a checkpoint; the same command resumes them") }.into());
    }
    if let Some((name, code, line)) = failures.first() {
        let more = if failures.len() > 1 { format!(" (and {} more)", failures.len() - 1) } else { String::new() };
        return Err(crate::Error::Exit { code: *code, message: format!("study run `{name}` failed{more}: {line} (log: {})", out.join(name).join(JOB_LOG).display()) }.into());
    }
    Ok(diverged)
}

/// Seconds until the last run ends if every run takes `per_run` seconds: the running runs (each
/// `elapsed` seconds in) finish first, then each of `queued` runs starts in the slot that frees
/// first, `jobs` slots in all.
fn parallel_time_left(per_run: f64, elapsed: &[f64], queued: usize, jobs: usize) -> f64 {
    let mut free: Vec<f64> = elapsed.iter().map(|e| (per_run - e).max(0.0)).collect();
    free.resize(jobs.max(elapsed.len()), 0.0);
    for _ in 0..queued {
        let first = free.iter_mut().min_by(|a, b| a.total_cmp(b)).expect("at least one slot");
        *first += per_run;
    }
    free.into_iter().fold(0.0, f64::max)
}

/// The log's last `error:` line (what the child printed on failing), or its last line.
fn last_error_line(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines.iter().rev().find(|l| l.starts_with("error:")).or(lines.last()).map(|l| l.trim_start_matches("error: ").to_string()).unwrap_or_else(|| "no output".into())
}

/// On the CPU, processes at once (runs × `--nproc`) × torch threads each over the machine's cores
/// slows every run; say so.
fn note_threads(runs: &[(usize, &PlannedRun)], opts: &StudyOptions) {
    let Some((_, run)) = runs.first() else { return };
    let on_cpu = opts.devices.is_empty() && !run.config.train.device.starts_with("cuda");
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let threads = if run.config.train.threads == 0 { cores } else { run.config.train.threads };
    let processes = opts.jobs.max(1).min(runs.len()) * opts.nproc.max(1);
    if on_cpu && processes * threads > cores {
        eprintln!("note: {processes} processes at once × train.threads {threads} = {} threads on {cores} cores; --set train.threads={} gives each its share", processes * threads, (cores / processes).max(1));
    }
}

#[cfg(test)]
mod tests {
    use super::{parallel_time_left, slot_devices, SlotDevices};

    #[test]
    fn each_slot_gets_its_devices_in_turn() {
        let d: Vec<String> = ["cuda:0", "cuda:1", "cuda:2", "cuda:3"].map(String::from).to_vec();
        let one = |device: &str| SlotDevices { device: Some(device.into()), visible: None };
        let group = |v: &str| SlotDevices { device: Some("cuda".into()), visible: Some(v.into()) };
        // one process per run: a device each, in turn
        assert_eq!(slot_devices(&d, 1, 1, None).unwrap(), one("cuda:1"));
        assert_eq!(slot_devices(&d, 1, 5, None).unwrap(), one("cuda:1"));
        // two processes per run: two devices each, in turn, as the visible list
        assert_eq!(slot_devices(&d, 2, 0, None).unwrap(), group("0,1"));
        assert_eq!(slot_devices(&d, 2, 1, None).unwrap(), group("2,3"));
        assert_eq!(slot_devices(&d, 2, 2, None).unwrap(), group("0,1"));
        // the parent's own CUDA_VISIBLE_DEVICES: cuda:i is its i-th entry
        assert_eq!(slot_devices(&d, 2, 1, Some("4,5,6,7")).unwrap(), group("6,7"));
        assert_eq!(slot_devices(&d, 4, 0, Some("")).unwrap(), group("0,1,2,3"));
        // no devices: the config's
        assert_eq!(slot_devices(&[], 2, 3, None).unwrap(), SlotDevices::default());
        // refused, naming the flag
        assert!(slot_devices(&d, 3, 0, None).unwrap_err().contains("not a multiple of --nproc 3"));
        assert!(slot_devices(&["cpu".into(), "cuda:1".into()], 2, 0, None).unwrap_err().contains("--devices cpu"));
        assert!(slot_devices(&d, 2, 1, Some("4,5")).unwrap_err().contains("shows only 2"));
    }

    #[test]
    fn the_time_left_fills_the_slots_as_they_free() {
        // runs of 10 s: two running, 9 s and 2 s in, none queued: the later one ends in 8 s
        assert_eq!(parallel_time_left(10.0, &[9.0, 2.0], 0, 2), 8.0);
        // one running 9 s in, one queued, two slots: the queued one starts now in the free slot
        assert_eq!(parallel_time_left(10.0, &[9.0], 1, 2), 10.0);
        // three queued on two idle slots: two rounds
        assert_eq!(parallel_time_left(10.0, &[], 3, 2), 20.0);
        // a run past the mean counts as ending now
        assert_eq!(parallel_time_left(10.0, &[12.0], 1, 1), 10.0);
    }
}
