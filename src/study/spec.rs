//! The study file:
//!
//! ```toml
//! name = "byol-ema-predictor"
//! description = "BYOL Table 5: is the EMA target / the predictor needed?"
//! base = "../configs/byol-cifar-cpu-reference.toml"   # relative to this file
//! set = ["train.epochs=4"]                             # applied to every run
//! seeds = [1]                                          # > 1 seed: one run per seed, "-seedN" names
//! linear = false                                       # also an offline linear probe per run
//! baseline = "default"                                 # compared with every other run, seed by seed
//! compare = [["a-b16", "a-b64"]]                       # more [configuration, reference] pairs, seed by seed
//! [probe]                                              # the probe's protocol (implies linear):
//! optimizer = "sgd"                                    #   eval linear's flags as keys (epochs,
//! features = "raw"                                     #   optimizer, lr, weight_decay, batch,
//! lr = [0.1, 1, 5]                                     #   features, schedule, augment,
//! val_fraction = 0.2                                   #   val_fraction); several lr need one
//! random_init = true                                  # also probe the random-init encoder
//! [[runs]]
//! name = "default"
//! [[runs]]                                             # a run may name its own `base`
//! name = "no-predictor"
//! set = ["byol.predictor=\"none\""]
//! [grid]                                               # every combination, for every run
//! "train.batch" = [32, 64]
//! ```
//! Overrides on the command line (`selfsup study FILE --set …`) apply to every run, last;
//! `--seeds 1,2,3` replaces the file's `seeds` (to add seeds to a study without editing it).
use crate::config::{load, Config};
use crate::eval::probe_selection::ProbeProtocol;
use crate::error::Error;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StudySpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Base config file, relative to the study file.
    pub base: Option<String>,
    #[serde(default)]
    pub set: Vec<String>,
    #[serde(default)]
    pub seeds: Vec<u64>,
    #[serde(default)]
    pub linear: bool,
    /// The offline probe's protocol (`eval linear`'s settings); implies `linear`.
    pub probe: Option<ProbeProtocol>,
    /// The configuration (a run name without its `-seedN`) the report compares every other one
    /// with, seed by seed ([`crate::study::paired`]).
    pub baseline: Option<String>,
    /// More comparisons seed by seed, each `[configuration, reference]` (e.g. each method at
    /// batch 16 against itself at batch 64, beside the baseline's comparisons).
    #[serde(default)]
    pub compare: Vec<[String; 2]>,
    #[serde(default)]
    pub runs: Vec<RunSpec>,
    #[serde(default)]
    pub grid: BTreeMap<String, Vec<toml::Value>>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    pub name: String,
    /// This run's own base config (relative to the study file), replacing the study's.
    pub base: Option<String>,
    #[serde(default)]
    pub set: Vec<String>,
}

impl StudySpec {
    /// The offline probe each run gets, if any: `[probe]`, or the default protocol with
    /// `linear = true`.
    pub fn probe_protocol(&self) -> Option<ProbeProtocol> {
        self.probe.clone().or_else(|| self.linear.then(ProbeProtocol::default))
    }
}

/// One run of a study, fully resolved.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedRun {
    pub name: String,
    /// The overrides that distinguish this run (study-wide ones excluded).
    pub overrides: Vec<String>,
    #[serde(skip)]
    pub config: Config,
}

/// Reads a study file and resolves every run's config (all validated before anything runs).
/// `seeds`, when given, replaces the file's `seeds`. Runs are named `-seedN` when either list
/// holds more than one seed, so a run keeps its folder whichever seeds are asked for.
pub fn plan(path: &Path, cli_sets: &[String], seeds: Option<&[u64]>) -> anyhow::Result<(StudySpec, Vec<PlannedRun>)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::data(path, format!("cannot read study file: {e}")))?;
    let mut spec: StudySpec = toml::from_str(&text).map_err(|e| Error::data(path, format!("invalid study file: {}", e.to_string().trim())))?;
    let suffixed = spec.seeds.len() > 1 || seeds.is_some_and(|s| s.len() > 1);
    if let Some(s) = seeds {
        spec.seeds = s.to_vec();
    }
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let study_base: Option<PathBuf> = spec.base.as_ref().map(|b| dir.join(b));
    let runs = if spec.runs.is_empty() { vec![RunSpec { name: String::new(), base: None, set: vec![] }] } else { spec.runs.clone() };
    let mut combos: Vec<(String, Vec<String>)> = vec![(String::new(), vec![])];
    for (key, values) in &spec.grid {
        if values.is_empty() {
            return Err(Error::data(path, format!("grid key `{key}` has no values")).into());
        }
        let short = key.rsplit('.').next().unwrap_or(key);
        let mut next = Vec::new();
        for (name, sets) in &combos {
            for v in values {
                let shown = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let name = if name.is_empty() { format!("{short}={shown}") } else { format!("{name},{short}={shown}") };
                let mut sets = sets.clone();
                sets.push(format!("{key}={v}"));
                next.push((name, sets));
            }
        }
        combos = next;
    }
    let seeds: Vec<Option<u64>> = if suffixed { spec.seeds.iter().map(|s| Some(*s)).collect() } else { vec![spec.seeds.first().copied()] };
    let mut planned = Vec::new();
    for run in &runs {
        for (gname, gsets) in &combos {
            for seed in &seeds {
                let mut name = [run.name.as_str(), gname.as_str()].iter().filter(|s| !s.is_empty()).cloned().collect::<Vec<_>>().join("-");
                let mut overrides: Vec<String> = run.set.iter().chain(gsets).cloned().collect();
                if let Some(s) = seed {
                    overrides.push(format!("train.seed={s}"));
                    if suffixed {
                        name = format!("{name}-seed{s}");
                    }
                }
                if name.is_empty() {
                    name = "run".into();
                }
                let name: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.=,".contains(c) { c } else { '_' }).collect();
                let mut sets = spec.set.clone();
                sets.extend(overrides.iter().cloned());
                if let Some(s) = seed {
                    sets.push(format!("train.seed={s}"));
                }
                sets.extend(cli_sets.iter().cloned());
                let base = run.base.as_ref().map(|b| dir.join(b)).or_else(|| study_base.clone());
                let config = load(base.as_deref(), &sets).map_err(|e| anyhow::anyhow!("study run `{name}`: {e}"))?;
                planned.push(PlannedRun { name, overrides, config });
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for r in &planned {
        anyhow::ensure!(seen.insert(r.name.clone()), "study {}: two runs are named `{}`", path.display(), r.name);
    }
    if let Some(b) = &spec.baseline {
        crate::study::seeds::check_baseline(b, planned.iter().map(|r| r.name.as_str())).map_err(|e| Error::data(path, e))?;
    }
    for pair in &spec.compare {
        crate::study::seeds::check_pair(pair, planned.iter().map(|r| r.name.as_str())).map_err(|e| Error::data(path, e))?;
    }
    if let Some(p) = &spec.probe {
        p.validate(|field| format!("probe.{field}")).map_err(|e| Error::data(path, e.to_string()))?;
        if p.lr.len() > 1 && p.val_fraction.is_none() {
            return Err(Error::data(path, format!("probe.lr gives {} learning rates: set probe.val_fraction to choose among them on held-out training images (a study keeps one probe per run)", p.lr.len())).into());
        }
    }
    Ok((spec, planned))
}
