//! `selfsup study FILE --out DIR` and `selfsup study report DIR`.
use selfsup::study::runner::StudyOptions;
use selfsup::study::{run_study, write_report_of, Comparisons, Selection};
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct StudyArgs {
    #[command(subcommand)]
    cmd: Option<StudyCmd>,
    /// Study file (TOML: base config, runs and/or grid, seeds); see studies/.
    file: Option<PathBuf>,
    /// Study folder: one sub-folder per run, results.csv, results.md and the plots.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override a key in every run (applied last), e.g. --set data.train=folder:…
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// The seeds, replacing the study file's `seeds` (e.g. --seeds 1,2,3 adds a third seed to a
    /// two-seed study; finished runs are skipped); ranges too: --seeds 1-10.
    #[arg(long, value_name = "N,N-M,...", value_parser = seed_list)]
    seeds: Option<SeedList>,
    /// Train only these runs or configurations (run names with or without `-seedN`), e.g.
    /// --only default-seed1 to retrain one run in a fresh folder; the report names the runs of the plan that have not started.
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    only: Vec<String>,
    /// No progress bars or per-epoch lines.
    #[arg(long)]
    quiet: bool,
    /// Train up to N runs at once, each in its own process (its output in RUN/job.log); with
    /// --devices, one per GPU. On a CPU give each run its share of the cores (--set
    /// train.threads=…).
    #[arg(long, default_value_t = 1, value_name = "N")]
    jobs: usize,
    /// Devices for the runs of --jobs, given in turn (train.device), e.g. --devices
    /// cuda:0,cuda:1,cuda:2,cuda:3 --jobs 4; with --nproc N, N per run (--nproc 2 --jobs 2: runs
    /// on cuda:0,1 and cuda:2,3).
    #[arg(long, value_delimiter = ',', value_name = "DEVICE,...")]
    devices: Vec<String>,
    /// Train every run as a data-parallel job of N processes (`selfsup launch --nproc N`; train.batch
    /// is per process, so the global batch is N × train.batch). Runs only probed use one process.
    #[arg(long, default_value_t = 1, value_name = "N")]
    nproc: usize,
    /// The process group of those jobs: auto, gloo or nccl (`selfsup launch --backend`).
    #[arg(long)]
    backend: Option<String>,
    /// (internal) This process is one run of a parallel study.
    #[arg(long, hide = true)]
    as_job: bool,
}

#[derive(clap::Subcommand)]
enum StudyCmd {
    /// Rebuild results.csv, results.md and the plots from a study folder's finished runs.
    Report {
        dir: PathBuf,
        /// The configuration (a run name without `-seedN`) every other one is compared with seed
        /// by seed; default: the study file's `baseline`.
        #[arg(long)]
        baseline: Option<String>,
        /// Also compare CONFIGURATION with REFERENCE seed by seed (repeat for more pairs), e.g.
        /// --compare simclr-b16 simclr-b64; replaces the study file's `compare` pairs.
        #[arg(long, num_args = 2, value_names = ["CONFIGURATION", "REFERENCE"], action = clap::ArgAction::Append)]
        compare: Vec<String>,
        /// Report only these runs or configurations (run names with or without `-seedN`), e.g.
        /// --only l2,batchnorm.
        #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
        only: Vec<String>,
        /// Report only the runs with these seeds (their `-seedN`), e.g. --seeds 1,2,3 (or 1-3) for
        /// the seeds every configuration has.
        #[arg(long, value_name = "N,N-M,...", value_parser = seed_list)]
        seeds: Option<SeedList>,
        /// Write the report (results.csv, results.md, the plots) into this folder instead of DIR,
        /// e.g. for a report of a selection beside the study's own.
        #[arg(long, value_name = "DIR")]
        to: Option<PathBuf>,
    },
}

/// A `--seeds` list: seeds and inclusive ranges (`1,2,5-9`).
#[derive(Clone, Debug)]
struct SeedList(Vec<u64>);

fn seed_list(list: &str) -> Result<SeedList, String> {
    selfsup::study::seeds::parse_seed_list(list).map(SeedList)
}

pub fn run(a: StudyArgs) -> anyhow::Result<()> {
    match (a.cmd, a.file, a.out) {
        (Some(StudyCmd::Report { dir, baseline, compare, only, seeds, to }), _, _) => {
            let to = to.unwrap_or_else(|| dir.clone());
            let pairs = (!compare.is_empty()).then(|| compare.chunks(2).map(|p| [p[0].clone(), p[1].clone()]).collect());
            let rows = write_report_of(&dir, &to, &Comparisons { baseline, pairs }, &Selection { only, seeds: seeds.map(|s| s.0) })?;
            println!("{} run(s); wrote {}", rows.len(), to.join("results.md").display());
            Ok(())
        }
        (None, Some(file), Some(out)) => {
            let command = std::env::args().map(|a| shell_word(&a)).collect::<Vec<_>>().join(" ");
            if a.jobs == 0 || a.nproc == 0 {
                return Err(selfsup::Error::usage("--jobs and --nproc must be at least 1").into());
            }
            if !a.devices.is_empty() && a.jobs < 2 && a.nproc < 2 {
                return Err(selfsup::Error::usage("--devices needs --jobs N or --nproc N (N > 1): the runs of one process train on train.device").into());
            }
            if let Some(b) = &a.backend {
                selfsup::backend::dist::Backend::parse(b).map_err(|_| selfsup::Error::usage(format!("--backend {b}: expected auto, gloo or nccl")))?;
            }
            let as_job = a.as_job;
            run_study(&file, &out, &StudyOptions { sets: a.set, quiet: a.quiet, command, seeds: a.seeds.map(|s| s.0), only: a.only, jobs: a.jobs, devices: a.devices, as_job, nproc: a.nproc, backend: a.backend })?;
            if !as_job {
                println!("wrote {}", out.join("results.md").display());
            }
            Ok(())
        }
        (None, Some(_), None) => Err(selfsup::Error::usage("selfsup study FILE needs --out DIR").into()),
        _ => Err(selfsup::Error::usage("usage: selfsup study FILE --out DIR [--set K=V] [--seeds N,N] [--only NAME] [--jobs N] [--nproc N] [--devices D,D], or selfsup study report DIR").into()),
    }
}

/// `word` as a POSIX shell reads it back: as is when it holds only characters no shell treats
/// specially, else in single quotes (an inner `'` written `'\''`), so the command recorded in a
/// study's report can be pasted into a shell.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:=@,+%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::shell_word;

    #[test]
    fn shell_words_come_back_from_a_shell_unchanged() {
        let words = ["selfsup", "--set", "data.train=folder:/tmp/cifar@train?per_class=300", "model.norm=\"bn\"", "a b", "it's", "", "$HOME", "x*"];
        let line = words.iter().map(|w| shell_word(w)).collect::<Vec<_>>().join(" ");
        // read back by a real shell: one word per line
        let out = std::process::Command::new("sh").arg("-c").arg(format!("for w in {line}; do printf '%s\\n' \"$w\"; done")).output().unwrap();
        let back: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(String::from).collect();
        assert_eq!(back, words, "{line}");
        assert_eq!(shell_word("--quiet"), "--quiet", "plain words stay unquoted");
    }
}
