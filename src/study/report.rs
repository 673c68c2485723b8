//! The study report, rebuilt from the run folders alone (`selfsup study report DIR`):
//! `results.csv`, `results.md` (the table) and PNG plots — kNN vs epoch, loss vs step,
//! z-std vs epoch, the runs on the alignment–uniformity plane, for methods with a predictor
//! the z-std of its outputs vs epoch, and for runs evaluated on a held-out set the covariance
//! spectrum of their encoder features and its count of directions vs epoch. When the runs' epochs
//! hold different numbers of updates, kNN vs step as well; over seeds, each configuration's mean
//! kNN curve with its spread ([`crate::study::curves`]). Runs that log each part's relative update
//! get it per step; runs with external negatives (MoCo v2, AdCo) their share of the negative mass
//! and how close the hardest one is, per step. A planned run with no folder (never started: left
//! out by `study --only`, or not reached yet) is named in one sentence rather than shown as an
//! empty row; a started run that has no summary yet is shown, marked unfinished.
//!
//! Final representation metrics are the mean of the metrics lines of each run's last epoch
//! (projector outputs on training batches, as logged). A run counts as collapsed when its z-std is
//! under a tenth of 1/√d (d = projector.out), the healthy value for outputs spread on the sphere,
//! or when its outputs lie on one line (effective rank under [`ONE_LINE_RANK`]: a dead network whose
//! outputs are one direction or zero has a z-std above that bar but is collapsed all the same).
//! A study run over several seeds also gets each configuration's mean ± standard deviation
//! ([`crate::study::seeds`]): a second table and `results_by_configuration.csv`; and, over seeds
//! or with a baseline, each configuration against the baseline and its own random init, and each
//! `compare` pair's configuration against its reference, paired by seed
//! ([`crate::study::paired`]): a third table and `paired_differences.csv`.
use crate::backend::machine::Machine;
use crate::study::curves::{at_evaluations, knn_curve, mean_curves, mean_curves_csv, Axis};
use crate::study::machines::machines_paragraph;
use crate::study::plots::{interval_plot, line_plot, line_plot_scaled, line_plot_with_error_bars, scatter_plot, IntervalRow, Series, YScale};
use crate::study::runner::stopped_reason;
use crate::study::paired::{paired_differences, PairedDifference, SeedsNeeded, MAX_PLANNED_SEEDS};
use crate::study::seeds::{check_baseline, check_pair, format_seed_list, group_by_configuration, seed_of, select_by_name, SeedGroup, Spread};
use crate::train::checkpoint::write_atomic;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One row of the table.
#[derive(Clone, Debug, Default)]
pub struct RunRow {
    pub name: String,
    pub overrides: String,
    pub finished: bool,
    /// Whether the run has a folder: a run of the plan that never started (left out by
    /// `study --only`, or not reached yet) has none, and the report names it instead of showing it.
    pub started: bool,
    /// Why the run stopped early (it diverged), if it did.
    pub stopped: Option<String>,
    pub epochs_done: f64,
    /// The final value of each of the [`METRICS`] the run has, by key.
    pub values: BTreeMap<&'static str, f64>,
    pub dim: i64,
    pub minutes: Option<f64>,
    pub lines: Vec<Value>,
    pub steps_per_epoch: f64,
    /// The covariance spectrum of the held-out encoder features at the end of training.
    pub encoder_spectrum: Option<Vec<f64>>,
    /// The processor and CPU kernels (and GPU) the run was computed on ([`crate::backend::machine::Machine::key`];
    /// none for runs older than that record).
    pub machine: Option<String>,
    /// Data-parallel processes the run trained with (`summary.json`'s `processes`; 1 alone).
    pub processes: usize,
}

impl RunRow {
    /// The final value of the metric with key `key`, if the run has one.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.values.get(key).copied()
    }

    pub fn collapsed(&self) -> Option<bool> {
        let on_one_line = self.get("effective_rank").is_some_and(|r| r < ONE_LINE_RANK);
        self.get("z_std").map(|z| z < 0.1 / (self.dim.max(1) as f64).sqrt() || on_one_line)
    }
}

/// Effective rank under which a run's outputs count as lying on one line (1 = exactly one
/// direction; every run of the committed studies either collapsed by z-std with an effective rank
/// of 1.0–1.7 or kept 2.5 or more).
pub const ONE_LINE_RANK: f64 = 1.5;

/// Where a run's final value of a metric is read from (under the metric's key in each).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Source {
    /// `summary.json` (the evaluation at the end of training).
    Summary,
    /// `linear.json` (the linear probe).
    Linear,
    /// The mean of the last epoch's lines in `metrics.jsonl` (logged training batches).
    LastEpoch,
}

/// One final number of a run, as every table and CSV file of the report shows it.
pub struct Metric {
    /// CSV column, and the key the value is logged under in its [`Source`].
    pub key: &'static str,
    /// Markdown column title.
    pub title: &'static str,
    /// Decimals shown in Markdown.
    pub digits: usize,
    pub source: Source,
}

/// The report's metrics, in column order.
pub const METRICS: [Metric; 18] = [
    Metric { key: "knn_top1", title: "kNN top-1", digits: 4, source: Source::Summary },
    Metric { key: "knn_random_top1", title: "random-init kNN", digits: 4, source: Source::Summary },
    Metric { key: "linear_top1", title: "linear top-1", digits: 4, source: Source::Linear },
    Metric { key: "linear_random_top1", title: "random-init linear", digits: 4, source: Source::Linear },
    Metric { key: "online_linear_top1", title: "online linear top-1", digits: 4, source: Source::Summary },
    Metric { key: "encoder_dims_99pct", title: "dims for 99% var.", digits: 0, source: Source::Summary },
    Metric { key: "z_std", title: "z-std", digits: 4, source: Source::LastEpoch },
    Metric { key: "alignment", title: "alignment", digits: 3, source: Source::LastEpoch },
    Metric { key: "uniformity", title: "uniformity", digits: 3, source: Source::LastEpoch },
    Metric { key: "effective_rank", title: "eff. rank", digits: 1, source: Source::LastEpoch },
    Metric { key: "batch_mean_cos", title: "batch-mean cos", digits: 3, source: Source::LastEpoch },
    Metric { key: "pred_z_std", title: "pred. z-std", digits: 4, source: Source::LastEpoch },
    Metric { key: "pred_effective_rank", title: "pred. eff. rank", digits: 1, source: Source::LastEpoch },
    Metric { key: "pred_projection_cos", title: "pred.–proj. cos", digits: 3, source: Source::LastEpoch },
    Metric { key: "neg_share", title: "neg. share", digits: 4, source: Source::LastEpoch },
    Metric { key: "neg_cos_max", title: "hardest neg. cos", digits: 3, source: Source::LastEpoch },
    Metric { key: "neg_same_class_share", title: "same-class share", digits: 3, source: Source::LastEpoch },
    Metric { key: "neg_hardest_same_class", title: "hardest same class", digits: 3, source: Source::LastEpoch },
];

/// A metric's title in the report ([`METRICS`]), or its key when it has none.
fn metric_title(key: &str) -> &str {
    METRICS.iter().find(|m| m.key == key).map(|m| m.title).unwrap_or(key)
}

/// The metrics some row has a value of (Markdown tables leave out empty columns; CSV files keep
/// every column).
fn shown_metrics(rows: &[RunRow]) -> Vec<&'static Metric> {
    METRICS.iter().filter(|m| rows.iter().any(|r| r.get(m.key).is_some())).collect()
}

/// A JSON file, if it exists and parses.
pub(crate) fn read_json(p: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
}

fn metrics_lines(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn projector_dim(dir: &Path) -> i64 {
    std::fs::read_to_string(dir.join("config.toml"))
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| t.get("projector")?.get("out")?.as_integer())
        .unwrap_or(0)
}

/// Reads one run folder.
pub fn read_run(dir: &Path, name: &str, overrides: &str) -> RunRow {
    let summary = read_json(&dir.join("summary.json"));
    let linear = read_json(&dir.join("linear.json"));
    let lines = metrics_lines(dir);
    let training: Vec<&Value> = lines.iter().filter(|l| l.get("loss").is_some()).collect();
    let last_epoch = training.iter().filter_map(|l| l["epoch"].as_f64()).fold(f64::NAN, f64::max);
    let last: Vec<&&Value> = training.iter().filter(|l| l["epoch"].as_f64() == Some(last_epoch)).collect();
    let mean = |key: &str| -> Option<f64> {
        let v: Vec<f64> = last.iter().filter_map(|l| l[key].as_f64()).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let max_step = training.iter().filter_map(|l| l["step"].as_f64()).fold(0.0, f64::max);
    let steps_per_epoch = match &summary {
        Some(s) => s["steps"].as_f64().unwrap_or(0.0) / s["epochs"].as_f64().unwrap_or(1.0).max(1.0),
        None => max_step / (last_epoch + 1.0).max(1.0),
    }
    .max(1.0);
    let f = |v: &Option<Value>, k: &str| v.as_ref().and_then(|s| s[k].as_f64());
    let values = METRICS
        .iter()
        .filter_map(|m| {
            let v = match m.source {
                Source::Summary => f(&summary, m.key),
                Source::Linear => f(&linear, m.key),
                Source::LastEpoch => mean(m.key),
            };
            Some((m.key, v?))
        })
        .collect();
    RunRow {
        name: name.to_string(),
        overrides: overrides.to_string(),
        finished: summary.is_some(),
        started: dir.is_dir(),
        stopped: stopped_reason(dir),
        machine: summary.as_ref().and_then(|s| serde_json::from_value::<Machine>(s["machine"].clone()).ok()).map(|m| m.key()),
        processes: summary.as_ref().and_then(|s| s["processes"].as_u64()).unwrap_or(1) as usize,
        epochs_done: max_step / steps_per_epoch,
        values,
        dim: projector_dim(dir),
        minutes: f(&summary, "minutes"),
        steps_per_epoch,
        encoder_spectrum: summary.as_ref().and_then(|s| s["encoder_spectrum"].as_array()?.iter().map(Value::as_f64).collect()),
        lines,
    }
}

/// The runs of a study folder: in `study.json` order when present, else every sub-folder with a
/// `config.toml`, sorted.
pub fn read_runs(out: &Path) -> anyhow::Result<(Value, Vec<RunRow>)> {
    let study = read_json(&out.join("study.json")).unwrap_or(Value::Null);
    let mut rows = Vec::new();
    if let Some(runs) = study["runs"].as_array() {
        for r in runs {
            let name = r["name"].as_str().unwrap_or_default();
            let ov: Vec<String> = r["overrides"].as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default();
            rows.push(read_run(&out.join(name), name, &ov.join(" ")));
        }
    } else {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(out).map_err(|e| crate::Error::data(out, format!("cannot read study folder: {e}")))?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.join("config.toml").exists()).collect();
        dirs.sort();
        let differences = config_differences(&dirs);
        for (d, diff) in dirs.iter().zip(differences) {
            let name = d.file_name().unwrap().to_string_lossy().to_string();
            rows.push(read_run(d, &name, &diff));
        }
    }
    anyhow::ensure!(!rows.is_empty(), "{}: no runs found (expected study.json or run folders with config.toml)", out.display());
    Ok((study, rows))
}

/// For run folders without a study plan (ad-hoc `train --out` runs): what sets each run apart,
/// as overrides — the keys of its `config.toml` whose values are not the same in every run
/// (`method="simclr" model.width=8`), in the config's order. Empty when the runs agree, or for a
/// run whose config cannot be read.
pub fn config_differences(dirs: &[PathBuf]) -> Vec<String> {
    let leaves: Vec<Option<Vec<(String, toml::Value)>>> = dirs
        .iter()
        .map(|d| {
            let table: toml::Table = toml::from_str(&std::fs::read_to_string(d.join("config.toml")).ok()?).ok()?;
            // through the schema, so a key added since an older run was made reads as its default
            // there instead of as a difference
            let table = crate::config::overrides::from_table(table.clone()).ok().and_then(|c| toml::Table::try_from(&c).ok()).unwrap_or(table);
            Some(crate::config::overrides::leaf_values(&table))
        })
        .collect();
    let maps: Vec<BTreeMap<&str, &toml::Value>> = leaves.iter().flatten().map(|l| l.iter().map(|(k, v)| (k.as_str(), v)).collect()).collect();
    let mut differing: Vec<&str> = Vec::new();
    for (k, _) in leaves.iter().flatten().flatten() {
        if !differing.contains(&k.as_str()) && maps.iter().any(|m| m.get(k.as_str()) != maps[0].get(k.as_str())) {
            differing.push(k);
        }
    }
    leaves
        .iter()
        .map(|l| {
            let Some(l) = l else { return String::new() };
            l.iter().filter(|(k, _)| differing.contains(&k.as_str())).map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
        })
        .collect()
}

/// A CSV field in double quotes (inner quotes doubled).
pub fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}")).unwrap_or_else(|| "–".into())
}

const PLOTS: [(&str, &str); 4] = [("knn_vs_epoch.png", "kNN top-1 vs epoch"), ("loss_vs_step.png", "loss vs step"), ("z_std_vs_epoch.png", "z-std vs epoch"), ("alignment_uniformity.png", "runs on the alignment–uniformity plane")];
/// The fifth plot, for studies with a predictor (SCIENCE.md hypothesis 4: does the predictor's
/// "codebook" stay diverse?).
const PREDICTOR_PLOT: (&str, &str) = ("pred_z_std_vs_epoch.png", "z-std of the predictor's outputs vs epoch");

/// The covariance spectrum of each run's held-out encoder features at the end of training (from
/// summary.json), for studies whose runs evaluate on a held-out set; its CSV lies beside it.
const SPECTRUM_PLOT: (&str, &str) = ("encoder_spectrum.png", "covariance spectrum of the held-out encoder features");
/// The count of directions holding 99% of that variance at each kNN evaluation.
const DIMS_PLOT: (&str, &str) = ("encoder_dims_vs_epoch.png", "directions holding 99% of the held-out encoder features' variance vs epoch");
/// kNN against the update step, for runs whose epochs hold different numbers of updates.
const KNN_STEP_PLOT: (&str, &str) = ("knn_vs_step.png", "kNN top-1 vs step");
/// Each configuration's mean kNN curve over its seeds (against the step when
/// [`KNN_STEP_PLOT`] is drawn, else the epoch); its CSV lies beside it.
const KNN_MEAN_PLOT: (&str, &str) = ("knn_by_configuration.png", "kNN top-1 per configuration, mean ± sd over seeds");
/// For runs that log how hard their external negatives are (MoCo v2's queue, AdCo's bank:
/// [`crate::methods::momentum_contrast::NegativeStats`]), against the step.
const NEG_SHARE_PLOT: (&str, &str) = ("neg_share_vs_step.png", "the external negatives' share of the negative mass vs step");
const NEG_HARDEST_PLOT: (&str, &str) = ("neg_gap_vs_step.png", "how much closer than its positive each query's hardest external negative is, cos(q, hardest n) − cos(q, k⁺), vs step");

/// The parameter groups whose relative update `update_ratio_<group>` the runs log
/// ([`crate::train::update_norms`]; the online probe left out), in name order; each gets
/// `update_ratio_<group>_vs_step.png`.
fn update_groups(rows: &[RunRow]) -> Vec<String> {
    let mut groups = std::collections::BTreeSet::new();
    for l in rows.iter().flat_map(|r| &r.lines) {
        if let Some(obj) = l.as_object() {
            groups.extend(obj.keys().filter_map(|k| k.strip_prefix("update_ratio_")).filter(|g| *g != "online_probe").map(String::from));
        }
    }
    groups.into_iter().collect()
}

fn update_plot_file(group: &str) -> String {
    format!("update_ratio_{group}_vs_step.png")
}

/// Which finished runs trained data parallel (`selfsup study --nproc`, or ad-hoc `launch` runs),
/// and so on a global batch of processes × `train.batch`; none when every run trained alone.
fn processes_sentence(rows: &[RunRow]) -> Option<String> {
    let finished: Vec<&RunRow> = rows.iter().filter(|r| r.finished).collect();
    let parallel: Vec<&RunRow> = finished.iter().copied().filter(|r| r.processes > 1).collect();
    let counts: std::collections::BTreeSet<usize> = parallel.iter().map(|r| r.processes).collect();
    match (parallel.len(), counts.len()) {
        (0, _) => None,
        (n, 1) if n == finished.len() => Some(format!("Every run trained data parallel on {} processes (`selfsup launch`): its global batch is {} × `train.batch`.", parallel[0].processes, parallel[0].processes)),
        _ => Some(format!("Trained data parallel (the global batch is processes × `train.batch`): {}; the others in one process.", parallel.iter().map(|r| format!("{} ({} processes)", r.name, r.processes)).collect::<Vec<_>>().join(", "))),
    }
}

/// The report's words for the offline probe's protocol (study.json's `probe`, a
/// [`crate::eval::probe_selection::ProbeProtocol`]).
fn probe_sentence(p: &serde_json::Map<String, serde_json::Value>) -> String {
    let text = |k: &str| p.get(k).map(|v| v.as_str().map(String::from).unwrap_or_else(|| v.to_string())).unwrap_or_default();
    let lrs = text("lr");
    let lr = match p.get("val_fraction").and_then(|v| v.as_f64()) {
        Some(f) => format!("learning rate chosen from {lrs} on {:.0}% of each class's training images held out, then retrained on all", 100.0 * f),
        None if lrs == "[]" => "the optimiser's default learning rate".to_string(),
        None => format!("learning rate {lrs}"),
    };
    let views = if p.get("augment").and_then(|v| v.as_bool()) == Some(true) { "new augmented views every epoch" } else { "fixed views" };
    let random = if p.get("random_init").and_then(|v| v.as_bool()) == Some(true) { " random-init linear: the same probe of the run's random-init encoder (the random-init kNN's)." } else { "" };
    format!(" linear top-1: the offline linear probe on the frozen encoder ({}, {} features, {} schedule, {} epochs, {views}; {lr}) on the held-out set.{random}", text("optimizer"), text("features"), text("schedule"), text("epochs"))
}

/// The sentence naming the planned runs that have not started (no run folder: left out by
/// `study --only`, or not reached yet), which the tables and plots leave out; none when every run
/// has started.
fn not_started_sentence(names: &[&str]) -> Option<String> {
    match names {
        [] => None,
        [one] => Some(format!("Not started (no run folder), so not in the tables or plots: {one}.")),
        many => Some(format!("Not started (no run folder), so not in the tables or plots: {} runs ({}).", many.len(), many.join(", "))),
    }
}

/// Which of a study folder's runs a report shows (`selfsup study report --only … --seeds …`).
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Run or configuration names, as `selfsup study --only` takes them; empty: every run.
    pub only: Vec<String>,
    /// The runs whose `-seedN` is one of these (a run without that suffix is left out); none: every run.
    pub seeds: Option<Vec<u64>>,
}

impl Selection {
    fn is_everything(&self) -> bool {
        self.only.is_empty() && self.seeds.is_none()
    }

    /// The selected rows of `rows`, in their order; an error names a name or seed no run has.
    fn apply(&self, rows: Vec<RunRow>) -> Result<Vec<RunRow>, String> {
        let named: Vec<&RunRow> = select_by_name(&rows, |r| r.name.as_str(), &self.only, "--only")?;
        let kept: Vec<RunRow> = named.into_iter().filter(|r| self.seeds.as_ref().is_none_or(|s| seed_of(&r.name).is_some_and(|n| s.contains(&n)))).cloned().collect();
        if kept.is_empty() {
            let seeds = format_seed_list(self.seeds.as_deref().unwrap_or_default());
            return Err(format!("no run of the selection has seed {seeds} (seeds are read from the run names' -seedN)"));
        }
        Ok(kept)
    }

    /// The sentence that says what a partial report shows.
    fn sentence(&self, shown: usize, of: usize) -> String {
        let mut what = Vec::new();
        if !self.only.is_empty() {
            what.push(format!("--only {}", self.only.join(",")));
        }
        if let Some(s) = &self.seeds {
            what.push(format!("--seeds {}", format_seed_list(s)));
        }
        format!("This report shows {shown} of the study's {of} runs (`selfsup study report {}`); the tables, paired differences and plots are of those runs alone.", what.join(" "))
    }
}

/// Writes `results.csv`, `results.md` and the plots into the study folder, comparing seed by seed
/// as the study file asked (its `baseline` and `compare`, recorded in `study.json`).
pub fn write_report(out: &Path) -> anyhow::Result<Vec<RunRow>> {
    write_report_of(out, out, &Comparisons::default(), &Selection::default())
}

/// What a report compares seed by seed besides each configuration with its random init: every
/// configuration with `baseline` (else the study file's `baseline`), and `pairs`, each
/// `[configuration, reference]` (else the study file's `compare`).
#[derive(Clone, Debug, Default)]
pub struct Comparisons {
    pub baseline: Option<String>,
    pub pairs: Option<Vec<[String; 2]>>,
}

/// The report of the runs of the study folder `from` that `selection` picks, written into `to`
/// (created if missing; the run folders stay in `from`). A study file's `baseline` or `compare`
/// pair that the selection leaves out is dropped; those named in `comparisons` must be among the
/// selected runs.
pub fn write_report_of(from: &Path, to: &Path, comparisons: &Comparisons, selection: &Selection) -> anyhow::Result<Vec<RunRow>> {
    let (study, all) = read_runs(from)?;
    let of = all.len();
    let selected = selection.apply(all).map_err(|e| crate::Error::data(from, e))?;
    let (rows, not_started): (Vec<RunRow>, Vec<RunRow>) = selected.into_iter().partition(|r| r.started);
    let not_started: Vec<&str> = not_started.iter().map(|r| r.name.as_str()).collect();
    if rows.is_empty() {
        return Err(crate::Error::data(from, format!("no run to report: none of the {} selected runs has started (no run folder: {})", not_started.len(), not_started.join(", "))).into());
    }
    let names = || rows.iter().map(|r| r.name.as_str());
    // an explicit baseline or pair must be among the runs shown; the study file's are dropped when they are not
    let baseline = comparisons.baseline.as_deref();
    if let Some(b) = baseline {
        check_baseline(b, names()).map_err(|e| crate::Error::data(from, e))?;
    }
    let baseline = baseline.or_else(|| study["baseline"].as_str().filter(|b| check_baseline(b, names()).is_ok()));
    let pairs: Vec<[String; 2]> = match &comparisons.pairs {
        Some(pairs) => {
            for p in pairs {
                check_pair(p, names()).map_err(|e| crate::Error::data(from, e))?;
            }
            pairs.clone()
        }
        None => serde_json::from_value::<Vec<[String; 2]>>(study["compare"].clone()).unwrap_or_default().into_iter().filter(|p| check_pair(p, names()).is_ok()).collect(),
    };
    std::fs::create_dir_all(to).map_err(|e| crate::Error::data(to, format!("cannot create the report folder: {e}")))?;
    let out = to;
    let keys: Vec<&str> = METRICS.iter().map(|m| m.key).collect();
    let mut csv = format!("run,overrides,finished,epochs,{},collapsed,minutes,stopped,machine\n", keys.join(","));
    let cell = |v: Option<f64>| v.map(|x| format!("{x}")).unwrap_or_default();
    for r in &rows {
        let values: Vec<String> = METRICS.iter().map(|m| cell(r.get(m.key))).collect();
        let collapsed = r.collapsed().map(|b| b.to_string()).unwrap_or_default();
        let stopped = r.stopped.as_deref().map(quoted).unwrap_or_default();
        let machine = r.machine.as_deref().map(quoted).unwrap_or_default();
        let _ = writeln!(csv, "{},{},{},{:.2},{},{},{},{stopped},{machine}", r.name, quoted(&r.overrides), r.finished, r.epochs_done, values.join(","), collapsed, cell(r.minutes));
    }
    write_atomic(&out.join("results.csv"), csv.as_bytes())?;

    let mut md = format!("# Study: {}\n\n", study["name"].as_str().unwrap_or("(unnamed)"));
    if let Some(d) = study["description"].as_str().filter(|d| !d.is_empty()) {
        let _ = writeln!(md, "{d}\n");
    }
    if let Some(c) = study["command"].as_str().filter(|c| !c.is_empty()) {
        let _ = writeln!(md, "Command: `{c}`\n");
    }
    if !selection.is_everything() {
        let _ = writeln!(md, "{}\n", selection.sentence(rows.len(), of));
    }
    if let Some(line) = not_started_sentence(&not_started) {
        let _ = writeln!(md, "{line}\n");
    }
    if let Some(line) = processes_sentence(&rows) {
        let _ = writeln!(md, "{line}\n");
    }
    let _ = write!(md, "kNN: the config's protocol on the held-out set; z-std, alignment, uniformity, effective rank and batch-mean cosine: mean over the last epoch's logged training batches (projector outputs, L2-normalised). Collapsed: z-std < 0.1/√d (1/√d in brackets: outputs spread on the sphere) or effective rank < {ONE_LINE_RANK} (every output on one line, or zero).");
    let shown = shown_metrics(&rows);
    let with_predictor = shown.iter().any(|m| m.key.starts_with("pred_"));
    if with_predictor {
        md.push_str(" pred.: the same for the predictor's outputs; pred.–proj. cos: mean cosine of each prediction with its own projection (1 = the predictor keeps every direction).");
    }
    if shown.iter().any(|m| m.key == "encoder_dims_99pct") {
        md.push_str(" dims for 99% var.: how many directions hold 99% of the variance of the held-out encoder features (L2-normalised, as kNN sees them; of d = the encoder's width), from the covariance spectrum plotted below (dimensional collapse, Jing et al. 2022) — read it with the plot: around a collapsed point the little variance left is noise spread over many directions, and that run's line lies far below the others.");
    }
    let with_negatives = shown.iter().any(|m| m.key == "neg_share");
    if with_negatives {
        md.push_str(" neg. share: the external negatives' (MoCo v2's queue, AdCo's bank) share of the InfoNCE denominator's negative mass, the batch's other keys holding the rest (1 without them); hardest neg. cos: each query's largest cosine with one of them, averaged over the queries.");
    }
    if shown.iter().any(|m| m.key == "neg_same_class_share") {
        md.push_str(" same-class share: the share of the queue's InfoNCE mass held by keys of the query's own class (false negatives; about 1/C for C balanced classes when the queue ignores class); hardest same class: how often the query's hardest queue key has its class (MoCo v2 on labelled data).");
    }
    if let Some(p) = study["probe"].as_object().filter(|_| shown.iter().any(|m| m.key == "linear_top1")) {
        md.push_str(&probe_sentence(p));
    }
    if shown.iter().any(|m| m.key == "online_linear_top1") {
        md.push_str(" online linear top-1: the online probe (`eval.online_probe`, trained during pre-training on augmented views) on the held-out set — not the offline linear probe.");
    }
    md.push_str("\n\n");
    let titles: Vec<&str> = shown.iter().map(|m| m.title).collect();
    let _ = writeln!(md, "| run | overrides | epochs | {} | collapsed | minutes |\n|{}", titles.join(" | "), "---|".repeat(titles.len() + 5));
    for r in &rows {
        let values: Vec<String> = shown
            .iter()
            .map(|m| {
                let v = opt(r.get(m.key), m.digits);
                match m.key {
                    "z_std" if r.dim > 0 && r.get("z_std").is_some() => format!("{v} ({:.3})", 1.0 / (r.dim as f64).sqrt()),
                    _ => v,
                }
            })
            .collect();
        let overrides = if r.overrides.is_empty() { "–" } else { &r.overrides };
        let unfinished = match (r.finished, &r.stopped) {
            (true, _) => "",
            (false, Some(_)) => " (**diverged**)",
            (false, None) => " (unfinished)",
        };
        let collapsed = r.collapsed().map(|b| if b { "**yes**" } else { "no" }).unwrap_or("–");
        let _ = writeln!(md, "| {} | `{overrides}` | {:.1}{unfinished} | {} | {collapsed} | {} |", r.name, r.epochs_done, values.join(" | "), opt(r.minutes, 1));
    }
    md.push('\n');
    let stopped: Vec<String> = rows.iter().filter_map(|r| Some(format!("- {}: {}", r.name, r.stopped.as_deref()?))).collect();
    if !stopped.is_empty() {
        let _ = writeln!(md, "Runs that diverged (a non-finite loss or gradient stopped them):\n\n{}\n", stopped.join("\n"));
    }
    if let Some(text) = machines_paragraph(&rows) {
        md.push_str(&text);
    }
    let over_seeds = match group_by_configuration(&rows) {
        Some(groups) => {
            write_seed_table(out, &mut md, &groups, &shown)?;
            true
        }
        // a single-seed study (also one rebuilt after its seeds were removed): no such table
        None => {
            remove_if_present(&out.join(SEED_CSV))?;
            false
        }
    };
    let paired = paired_differences(&rows, baseline, &pairs);
    let with_paired = (over_seeds || baseline.is_some() || !pairs.is_empty()) && !paired.is_empty();
    match with_paired {
        true => {
            write_paired_table(out, &mut md, &paired, baseline, &pairs)?;
            let _ = writeln!(md, "![{}]({})\n", PAIRED_PLOT.1, PAIRED_PLOT.0);
            paired_plot(&out.join(PAIRED_PLOT.0), &paired)?;
        }
        false => {
            remove_if_present(&out.join(PAIRED_CSV))?;
            remove_if_present(&out.join(PAIRED_PLOT.0))?;
        }
    }
    let axis = Axis::for_runs(&rows);
    let spectra: Vec<(String, Vec<f64>)> = rows.iter().filter_map(|r| Some((r.name.clone(), r.encoder_spectrum.clone()?))).collect();
    let with_spectra = !spectra.is_empty();
    let extra = [(axis == Axis::Step, &KNN_STEP_PLOT), (over_seeds, &KNN_MEAN_PLOT), (with_predictor, &PREDICTOR_PLOT), (with_spectra, &SPECTRUM_PLOT), (with_spectra, &DIMS_PLOT), (with_negatives, &NEG_SHARE_PLOT), (with_negatives, &NEG_HARDEST_PLOT)];
    for (file, title) in PLOTS.iter().chain(extra.iter().filter(|e| e.0).map(|e| e.1)) {
        let _ = writeln!(md, "![{title}]({file})\n");
    }
    let groups = update_groups(&rows);
    for g in &groups {
        let _ = writeln!(md, "![relative update of the {g}'s parameters per step, ‖Δθ‖/‖θ‖, vs step]({})\n", update_plot_file(g));
    }
    write_atomic(&out.join("results.md"), md.as_bytes())?;

    let series = |f: &dyn Fn(&RunRow) -> Vec<(f64, f64)>| -> Vec<Series> { rows.iter().map(|r| (r.name.clone(), f(r))).collect() };
    line_plot(&out.join(PLOTS[0].0), "kNN top-1 vs epoch (epoch 0: random init)", "epoch", "kNN top-1", &series(&|r| knn_curve(r, Axis::Epoch)))?;
    match axis {
        Axis::Step => line_plot(&out.join(KNN_STEP_PLOT.0), "kNN top-1 vs step (step 0: random init)", "step", "kNN top-1", &series(&|r| knn_curve(r, Axis::Step)))?,
        Axis::Epoch => remove_if_present(&out.join(KNN_STEP_PLOT.0))?,
    }
    let mean_png = out.join(KNN_MEAN_PLOT.0);
    match over_seeds {
        true => {
            let curves = mean_curves(&rows, |r| knn_curve(r, axis));
            write_atomic(&mean_png.with_extension("csv"), mean_curves_csv(&curves, axis, "knn_top1").as_bytes())?;
            let means: Vec<Series> = curves.iter().map(|c| (format!("{} ({} seed{})", c.name, c.runs, if c.runs == 1 { "" } else { "s" }), c.points.iter().map(|p| (p.0, p.1.mean)).collect())).collect();
            let sds: Vec<Vec<f64>> = curves.iter().map(|c| c.points.iter().map(|p| p.1.sd).collect()).collect();
            let title = format!("kNN top-1 vs {} per configuration, mean ± sd over seeds ({0} 0: random init)", axis.key());
            line_plot_with_error_bars(&mean_png, &title, axis.key(), "kNN top-1", &means, &sds)?;
        }
        false => {
            for p in [mean_png.clone(), mean_png.with_extension("csv")] {
                remove_if_present(&p)?;
            }
        }
    }
    // a logged metric against the step
    let per_step = |key: &str| series(&|r| r.lines.iter().filter_map(|l| Some((l["step"].as_f64()?, l[key].as_f64()?))).collect());
    line_plot(&out.join(PLOTS[1].0), "training loss vs step", "step", "loss", &per_step("loss"))?;
    // a logged metric against the (fractional) epoch of its step
    let per_epoch = |key: &str| series(&|r| r.lines.iter().filter_map(|l| Some((l["step"].as_f64()? / r.steps_per_epoch, l[key].as_f64()?))).collect());
    line_plot(&out.join(PLOTS[2].0), "z-std of projector outputs vs epoch", "epoch", "z-std", &per_epoch("z_std"))?;
    match with_predictor {
        true => line_plot(&out.join(PREDICTOR_PLOT.0), PREDICTOR_PLOT.1, "epoch", "z-std of predictions", &per_epoch("pred_z_std"))?,
        false => remove_if_present(&out.join(PREDICTOR_PLOT.0))?,
    }
    match with_spectra {
        true => {
            crate::analysis::spectrum::write_spectra(&out.join(SPECTRUM_PLOT.0), "covariance spectrum of the held-out encoder features (end of training)", &spectra)?;
            // the count at every kNN evaluation: dimensional collapse as it happens
            let dims = series(&|r| at_evaluations(r, "encoder_dims_99pct", Axis::Epoch));
            line_plot(&out.join(DIMS_PLOT.0), DIMS_PLOT.1, "epoch", "directions holding 99% of the variance", &dims)?;
        }
        false => {
            for p in [out.join(SPECTRUM_PLOT.0), out.join(SPECTRUM_PLOT.0).with_extension("csv"), out.join(DIMS_PLOT.0)] {
                remove_if_present(&p)?;
            }
        }
    }
    for g in &groups {
        let ratio = per_step(&format!("update_ratio_{g}"));
        line_plot_scaled(&out.join(update_plot_file(g)), &format!("relative update of the {g} per step, ‖Δθ‖/‖θ‖"), "step", "‖Δθ‖/‖θ‖", &ratio, YScale::Log10)?;
    }
    match with_negatives {
        true => {
            line_plot(&out.join(NEG_SHARE_PLOT.0), "external negatives' share of the negative mass vs step", "step", "share", &per_step("neg_share"))?;
            // how much closer to the query the hardest negative is than the positive (> 0: closer)
            let gap = series(&|r| r.lines.iter().filter_map(|l| Some((l["step"].as_f64()?, l["neg_cos_max"].as_f64()? - l["pos_cos"].as_f64()?))).collect());
            line_plot_scaled(&out.join(NEG_HARDEST_PLOT.0), "hardest external negative's cosine minus the positive's (mean over queries) vs step", "step", "cos(q, hardest n) − cos(q, k⁺)", &gap, YScale::Linear)?;
        }
        false => {
            for p in [NEG_SHARE_PLOT.0, NEG_HARDEST_PLOT.0] {
                remove_if_present(&out.join(p))?;
            }
        }
    }
    let plane: Vec<(String, f64, f64)> = rows.iter().filter_map(|r| Some((r.name.clone(), r.get("uniformity")?, r.get("alignment")?))).collect();
    scatter_plot(&out.join(PLOTS[3].0), "alignment vs uniformity (lower-left is better)", "uniformity  log E exp(-2‖z_i − z_j‖²)", "alignment  E‖z − z'‖²", &plane)?;
    Ok(rows)
}

const SEED_CSV: &str = "results_by_configuration.csv";
const PAIRED_CSV: &str = "paired_differences.csv";
/// The paired table drawn: each comparison's mean Δ, its 95% interval and the per-seed Δ.
const PAIRED_PLOT: (&str, &str) = ("paired_differences.png", "paired differences: mean Δ (dot), 95% interval (bar) and each seed's Δ (circles) per configuration and reference; a bar clear of the dashed 0 line is a difference the seeds establish");

/// [`PAIRED_PLOT`]: one row per comparison, in the table's order, coloured by metric.
fn paired_plot(path: &Path, diffs: &[PairedDifference]) -> anyhow::Result<()> {
    let mut metrics: Vec<&'static str> = Vec::new();
    for d in diffs {
        if !metrics.contains(&d.metric) {
            metrics.push(d.metric);
        }
    }
    let rows: Vec<IntervalRow> = diffs
        .iter()
        .map(|d| IntervalRow {
            label: format!("{} − {}", d.configuration, d.reference),
            mean: d.spread.mean,
            ci: d.ci95,
            values: d.per_seed.iter().map(|p| p.1).collect(),
            group: metrics.iter().position(|m| *m == d.metric).unwrap_or(0),
        })
        .collect();
    interval_plot(path, "paired differences, by seed (mean, 95% CI, seeds)", "Δ = configuration − reference", &rows, &metrics.iter().map(|m| metric_title(m).to_string()).collect::<Vec<_>>())
}

/// The paired comparisons ([`crate::study::paired`]) as a Markdown table appended to `md`, and
/// `paired_differences.csv`.
fn write_paired_table(out: &Path, md: &mut String, diffs: &[PairedDifference], baseline: Option<&str>, pairs: &[[String; 2]]) -> anyhow::Result<()> {
    let against = match baseline {
        Some(b) => format!("with the baseline `{b}`'s run of the same seed (same initialisation, same data order) and "),
        None => String::new(),
    };
    let also = match pairs.is_empty() {
        true => String::new(),
        false => {
            let listed: Vec<String> = pairs.iter().map(|[c, r]| format!("`{c}` against `{r}`")).collect();
            format!("; and {} (`compare`), each with the reference's run of the same seed", listed.join(", "))
        }
    };
    let _ = writeln!(
        md,
        "Paired by seed: each configuration compared {against}with its own random-init encoder{also}. Δ = configuration − reference, per seed (seed: Δ); the mean Δ's 95% confidence interval is Student's t with n − 1 degrees of freedom (mean ± t·sd/√n; none for one seed); ahead: seeds with Δ > 0; seeds for 80% power: how many seeds would give that interval an 80% chance of excluding 0 were the measured mean and spread the true ones (a planning figure: the spread of two or three seeds is itself rough; – without spread, >{MAX_PLANNED_SEEDS} past the count).\n"
    );
    let _ = writeln!(md, "| configuration | metric | reference | seeds | Δ per seed | mean Δ | 95% CI | ahead | seeds for 80% power |\n|---|---|---|---|---|---|---|---|---|");
    let mut csv = String::from("configuration,metric,reference,seeds,seed,per_seed,mean,sd,ci95_low,ci95_high,ahead,seeds_for_80pct_power\n");
    let signed = |x: f64| format!("{x:+.4}");
    for d in diffs {
        let title = metric_title(d.metric);
        let per_seed: Vec<String> = d.per_seed.iter().map(|p| match p.0 {
            Some(seed) => format!("{seed}: {}", signed(p.1)),
            None => signed(p.1),
        }).collect();
        let ci = d.ci95.map(|(lo, hi)| format!("[{}, {}]", signed(lo), signed(hi))).unwrap_or_else(|| "–".into());
        let n = d.per_seed.len();
        let (plan_md, plan_csv) = match d.seeds_for_80pct_power {
            SeedsNeeded::Seeds(k) => (k.to_string(), k.to_string()),
            SeedsNeeded::Over => (format!(">{MAX_PLANNED_SEEDS}"), "inf".to_string()),
            SeedsNeeded::Unknown => ("–".to_string(), String::new()),
        };
        let _ = writeln!(md, "| {} | {title} | {} | {n} | {} | {} | {ci} | {}/{n} | {plan_md} |", d.configuration, d.reference, per_seed.join(", "), signed(d.spread.mean), d.ahead);
        let raw: Vec<String> = d.per_seed.iter().map(|p| p.1.to_string()).collect();
        let seeds: Vec<String> = d.per_seed.iter().map(|p| p.0.map(|s| s.to_string()).unwrap_or_default()).collect();
        let (lo, hi) = d.ci95.map(|(l, h)| (l.to_string(), h.to_string())).unwrap_or_default();
        let _ = writeln!(csv, "{},{},{},{n},{},{},{},{},{lo},{hi},{},{plan_csv}", quoted(&d.configuration), d.metric, quoted(&d.reference), quoted(&seeds.join(";")), quoted(&raw.join(";")), d.spread.mean, d.spread.sd, d.ahead);
    }
    md.push('\n');
    write_atomic(&out.join(PAIRED_CSV), csv.as_bytes())
}

fn remove_if_present(p: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(crate::Error::data(p, format!("cannot remove a stale report file: {e}")).into()),
        _ => Ok(()),
    }
}

/// The across-seeds table (appended to `md`, with the `shown` metrics) and
/// `results_by_configuration.csv` (every metric's mean and sd).
fn write_seed_table(out: &Path, md: &mut String, groups: &[SeedGroup], shown: &[&Metric]) -> anyhow::Result<()> {
    md.push_str("Across seeds: each configuration's finished runs, mean ± sample standard deviation.\n\n");
    let titles: Vec<&str> = shown.iter().map(|m| m.title).collect();
    let _ = writeln!(md, "| configuration | seeds | {} | collapsed |\n|{}", titles.join(" | "), "---|".repeat(titles.len() + 3));
    let columns: Vec<String> = METRICS.iter().flat_map(|m| [format!("{}_mean", m.key), format!("{}_sd", m.key)]).collect();
    let mut csv = format!("configuration,seeds,{},collapsed\n", columns.join(","));
    for g in groups {
        let values: Vec<String> = shown.iter().map(|m| Spread::show(g.spread(m.key), m.digits)).collect();
        let _ = writeln!(md, "| {} | {} | {} | {}/{} |", g.name, g.runs, values.join(" | "), g.collapsed, g.runs);
        let cells: Vec<String> = g.spreads.iter().flat_map(|s| match s {
            Some(s) if s.n == 1 => [s.mean.to_string(), String::new()],
            Some(s) => [s.mean.to_string(), s.sd.to_string()],
            None => [String::new(), String::new()],
        }).collect();
        let _ = writeln!(csv, "{},{},{},{}", g.name, g.runs, cells.join(","), g.collapsed);
    }
    md.push('\n');
    write_atomic(&out.join(SEED_CSV), csv.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(z_std: f64, effective_rank: Option<f64>) -> RunRow {
        let mut values: BTreeMap<&'static str, f64> = [("z_std", z_std)].into();
        if let Some(r) = effective_rank {
            values.insert("effective_rank", r);
        }
        RunRow { values, dim: 100, ..Default::default() }
    }

    #[test]
    fn data_parallel_runs_are_named_with_their_processes() {
        use super::{processes_sentence, RunRow};
        let run = |name: &str, processes: usize, finished: bool| RunRow { name: name.into(), processes, finished, ..Default::default() };
        assert_eq!(processes_sentence(&[run("a", 1, true), run("b", 1, true)]), None);
        assert_eq!(processes_sentence(&[run("a", 4, true), run("b", 4, true), run("c", 0, false)]).unwrap(), "Every run trained data parallel on 4 processes (`selfsup launch`): its global batch is 4 × `train.batch`.");
        assert_eq!(processes_sentence(&[run("a", 2, true), run("b", 1, true)]).unwrap(), "Trained data parallel (the global batch is processes × `train.batch`): a (2 processes); the others in one process.");
    }

    #[test]
    fn ad_hoc_runs_are_told_apart_by_the_config_keys_that_differ() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let d = dir.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("config.toml"), text).unwrap();
            d
        };
        let a = write("a", "method = \"byol\"\n[model]\nwidth = 4\n[train]\nepochs = 2\n");
        let b = write("b", "method = \"simclr\"\n[model]\nwidth = 4\n[train]\nepochs = 2\n");
        let c = write("c", "method = \"byol\"\n[model]\nwidth = 8\n[train]\nepochs = 2\n");
        let broken = write("d", "method = = 1\n");
        assert_eq!(config_differences(&[a.clone(), b.clone(), c.clone(), broken]), ["method=\"byol\" model.width=4", "method=\"simclr\" model.width=4", "method=\"byol\" model.width=8", ""]);
        // runs that agree, or one run alone: nothing sets them apart
        assert_eq!(config_differences(&[a.clone(), a.clone()]), ["", ""]);
        assert_eq!(config_differences(&[b]), [""]);
        // a key only one run sets is compared with the other's default: a difference when it is
        // not the default (0 for train.seed), none when it is (an older run, made before a key
        // existed, reads as its default)
        let e = write("e", "method = \"byol\"\n[model]\nwidth = 4\n[train]\nepochs = 2\nseed = 7\n");
        assert_eq!(config_differences(&[a.clone(), e]), ["train.seed=0", "train.seed=7"]);
        let f = write("f", "method = \"byol\"\n[model]\nwidth = 4\ninit = \"\"\n[train]\nepochs = 2\nseed = 0\n");
        assert_eq!(config_differences(&[a, f]), ["", ""]);
    }

    #[test]
    fn collapse_is_a_low_z_std_or_outputs_on_one_line() {
        // d = 100: the z-std bar is 0.1/√100 = 0.01
        assert_eq!(row(0.05, Some(8.0)).collapsed(), Some(false));
        assert_eq!(row(0.005, Some(8.0)).collapsed(), Some(true));
        assert_eq!(row(0.005, None).collapsed(), Some(true));
        // a dead network: some outputs zero, the rest one direction — z-std above the bar
        assert_eq!(row(0.019, Some(1.0006)).collapsed(), Some(true));
        assert_eq!(row(0.019, Some(2.5)).collapsed(), Some(false));
        assert_eq!(row(0.019, None).collapsed(), Some(false));
    }
}
