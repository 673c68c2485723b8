//! `selfsup study`: a tiny two-run study writes the CSV, the table and every plot; a study
//! restarted after an interruption skips finished runs and resumes the unfinished one; `study
//! report` rebuilds everything from the run folders.
mod common;
use common::*;
use selfsup::study::paired::{seeds_for_power, SeedsNeeded};

const STUDY: &str = r#"
name = "tiny"
description = "two tiny runs"
set = ["train.epochs=2", "train.batch=16", "data.train=\"synthetic:64\"", "eval.test=\"synthetic:40@test\"", "eval.knn_every=1", "eval.knn_k=5", "eval.compare_random=true", "train.checkpoint_every=1"]
[[runs]]
name = "a"
[[runs]]
name = "b"
set = ["byol.predictor=\"none\""]
"#;

fn study(args: &[String]) -> std::process::Output {
    let mut all = vec!["study".to_string()];
    all.extend(args.iter().cloned());
    with_sets(&mut all, &tiny_model_sets());
    run_owned(&all)
}

#[test]
fn tiny_study_writes_table_and_plots_and_resumes_without_redoing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tiny.toml");
    std::fs::write(&file, STUDY).unwrap();
    let out = dir.path().join("out");
    let args = vec![file.to_str().unwrap().to_string(), "--out".into(), out.to_str().unwrap().into(), "--quiet".into()];
    let o = study(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let files = ["results.csv", "results.md", "knn_vs_epoch.png", "loss_vs_step.png", "z_std_vs_epoch.png", "alignment_uniformity.png", "pred_z_std_vs_epoch.png", "encoder_spectrum.png", "encoder_dims_vs_epoch.png", "update_ratio_encoder_vs_step.png", "update_ratio_predictor_vs_step.png", "update_ratio_projector_vs_step.png"];
    for f in files {
        let p = out.join(f);
        assert!(p.exists() && std::fs::metadata(&p).unwrap().len() > 100, "{f} missing or empty");
    }
    for f in &files[2..] {
        let bytes = std::fs::read(out.join(f)).unwrap();
        assert_eq!(&bytes[1..4], b"PNG", "{f} is not a PNG");
    }
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[1].starts_with("a,") && lines[2].starts_with("b,\"byol.predictor"), "{csv}");
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("| a |") && md.contains("| b |") && md.contains("collapsed"), "{md}");
    // each part's relative update per step, one plot per part the runs log (run b has no predictor)
    for part in ["encoder", "predictor", "projector"] {
        assert!(md.contains(&format!("(update_ratio_{part}_vs_step.png)")), "{md}");
    }
    // BYOL has no external negatives: no negatives' columns or plots
    assert!(!md.contains("neg. share") && !md.contains("same-class share") && !out.join("neg_share_vs_step.png").exists() && !out.join("neg_gap_vs_step.png").exists(), "{md}");
    // each row carries a kNN accuracy and the metrics
    let column = |name: &str| lines[0].split(',').position(|c| c == name).unwrap_or_else(|| panic!("no `{name}` column: {}", lines[0]));
    let a = lines[1].split(',').collect::<Vec<_>>();
    assert!(a[column("knn_top1")].parse::<f64>().is_ok() && a[column("z_std")].parse::<f64>().is_ok(), "{}", lines[1]);

    // the held-out encoder features' covariance spectrum: in the summary, counted in the table,
    // plotted; checked against the same features written by `embed` (trace and Frobenius norm of
    // their covariance by plain loops)
    assert!(md.contains("dims for 99% var.") && md.contains("(encoder_spectrum.png)") && md.contains("(encoder_dims_vs_epoch.png)"), "{md}");
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("a/summary.json")).unwrap()).unwrap();
    let eig: Vec<f64> = summary["encoder_spectrum"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert!(eig.windows(2).all(|w| w[0] >= w[1]) && eig[eig.len() - 1] >= 0.0, "{eig:?}");
    let total: f64 = eig.iter().sum();
    let k99 = eig.iter().scan(0.0, |held, v| { *held += v; Some(*held) }).position(|held| held >= 0.99 * total * (1.0 - 1e-12)).unwrap() + 1;
    assert_eq!(summary["encoder_dims_99pct"].as_u64(), Some(k99 as u64));
    assert_eq!(a[column("encoder_dims_99pct")], k99.to_string(), "{}", lines[1]);
    let emb = dir.path().join("a.safetensors");
    let o = run_owned(&["embed".into(), "--checkpoint".into(), out.join("a").to_str().unwrap().into(), "--data".into(), "synthetic:40@test".into(), "--out".into(), emb.to_str().unwrap().into()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let t = tch::Tensor::read_safetensors(&emb).unwrap();
    let f = &t.iter().find(|(n, _)| n == "features").unwrap().1;
    let (n, d) = (f.size()[0] as usize, f.size()[1] as usize);
    assert_eq!(eig.len(), d, "one eigenvalue per encoder dimension");
    let rows: Vec<Vec<f64>> = (0..n).map(|i| (0..d).map(|j| f.double_value(&[i as i64, j as i64])).collect()).collect();
    let mean: Vec<f64> = (0..d).map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n as f64).collect();
    let cov = |a: usize, b: usize| rows.iter().map(|r| (r[a] - mean[a]) * (r[b] - mean[b])).sum::<f64>() / n as f64;
    let trace: f64 = (0..d).map(|j| cov(j, j)).sum();
    let frob2: f64 = (0..d).flat_map(|a| (0..d).map(move |b| (a, b))).map(|(a, b)| cov(a, b).powi(2)).sum();
    assert!((total - trace).abs() < 1e-6 * trace, "sum of eigenvalues {total} vs trace {trace}");
    let sq: f64 = eig.iter().map(|v| v * v).sum();
    assert!((sq - frob2).abs() < 1e-6 * frob2, "sum of squared eigenvalues {sq} vs ‖C‖_F² {frob2}");
    let per_epoch: Vec<u64> = std::fs::read_to_string(out.join("a/metrics.jsonl")).unwrap().lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["encoder_dims_99pct"].as_u64()).collect();
    assert_eq!(per_epoch.len(), 3, "at each of the 2 kNN evaluations and the final one");

    // the machine each run was computed on: the processor's name as /proc/cpuinfo gives it, and
    // the CPU kernels as PyTorch itself reports them (torch.backends.cpu), in the summary, the
    // CSV and one line of the report (both runs on this machine)
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string()).unwrap_or_else(|| "unknown".into());
    let torch = std::process::Command::new(python()).args(["-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"]).output().unwrap();
    let capability = stdout(&torch).trim().to_string();
    assert!(!capability.is_empty(), "{}", stderr(&torch));
    let machine = &summary["machine"];
    assert_eq!((machine["cpu"].as_str(), machine["cpu_capability"].as_str(), machine["threads"].as_u64(), machine["device"].as_str()), (Some(cpu.as_str()), Some(capability.as_str()), Some(1), Some("cpu")), "{machine}");
    assert!(md.contains(&format!("Computed on: {cpu} ({capability}): the processor and its CPU kernels.")), "{md}");
    assert!(lines[1].ends_with(&format!(",\"{cpu} ({capability})\"")), "{}", lines[1]);

    // interrupt: run b lost its summary (killed after its last checkpoint); a is finished
    let a_summary = std::fs::read(out.join("a/summary.json")).unwrap();
    let a_mtime = std::fs::metadata(out.join("a/summary.json")).unwrap().modified().unwrap();
    std::fs::remove_file(out.join("b/summary.json")).unwrap();
    std::fs::remove_file(out.join("results.csv")).unwrap();
    // a run that started and has no summary is shown, marked unfinished
    let o = run_owned(&["study".into(), "report".into(), out.to_str().unwrap().into()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.lines().any(|l| l.starts_with("| b |") && l.contains("(unfinished)")) && !md.contains("Not started"), "{md}");
    std::fs::remove_file(out.join("results.csv")).unwrap();
    let o = study(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("a: finished, skipped"), "{err}");
    assert!(err.contains("b (resuming)"), "{err}");
    assert_eq!(std::fs::read(out.join("a/summary.json")).unwrap(), a_summary);
    assert_eq!(std::fs::metadata(out.join("a/summary.json")).unwrap().modified().unwrap(), a_mtime, "run a was redone");
    assert!(out.join("b/summary.json").exists() && out.join("results.csv").exists());

    // report alone rebuilds the table and plots
    for f in files {
        std::fs::remove_file(out.join(f)).unwrap();
    }
    let o = run_owned(&["study".into(), "report".into(), out.to_str().unwrap().into()]);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in files {
        assert!(out.join(f).exists(), "report did not rebuild {f}");
    }
}

#[test]
fn seeds_and_only_add_seeds_and_retrain_single_runs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tiny.toml");
    std::fs::write(&file, STUDY).unwrap();
    let args = |out: &std::path::Path, extra: &[&str]| {
        let mut a = vec![file.to_str().unwrap().to_string(), "--out".into(), out.to_str().unwrap().into(), "--quiet".into()];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    // the study file has no seeds: --seeds 1,2 makes two runs of each configuration; --only b
    // trains b's two and leaves a's, which the report names as not started instead of showing
    // them as empty rows
    let out = dir.path().join("out");
    let o = study(&args(&out, &["--seeds", "1,2", "--only", "b"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("--only: 2 of the study's 4 runs (b-seed1, b-seed2)") && err.contains("[1/2] b-seed1") && err.contains("[2/2] b-seed2"), "{err}");
    assert!(!out.join("a-seed1").exists() && !out.join("a-seed2").exists(), "a was trained");
    for (run, seed) in [("b-seed1", 1), ("b-seed2", 2)] {
        let cfg: toml::Value = toml::from_str(&std::fs::read_to_string(out.join(run).join("config.toml")).unwrap()).unwrap();
        assert_eq!(cfg["train"]["seed"].as_integer(), Some(seed), "{run}");
        assert_eq!(cfg["byol"]["predictor"].as_str(), Some("none"), "{run} lost its own override");
    }
    assert_ne!(losses(&out.join("b-seed1")), losses(&out.join("b-seed2")), "two seeds, one loss curve");
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let finished: Vec<(&str, &str)> = csv.lines().skip(1).map(|l| (l.split(',').next().unwrap(), if l.contains(",true,") { "true" } else { "false" })).collect();
    assert_eq!(finished, [("b-seed1", "true"), ("b-seed2", "true")], "{csv}");
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("Not started (no run folder), so not in the tables or plots: 2 runs (a-seed1, a-seed2).") && !md.contains("| a-seed"), "{md}");
    let study_json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("study.json")).unwrap()).unwrap();
    assert_eq!(study_json["seeds"], serde_json::json!([1, 2]));

    // a run name selects one run; finished runs are not redone
    let b1 = std::fs::read(out.join("b-seed1/summary.json")).unwrap();
    let o = study(&args(&out, &["--seeds", "1,2", "--only", "a-seed2,b-seed1"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("b-seed1: finished, skipped") && err.contains("[1/2] a-seed2") && !out.join("a-seed1").exists() && out.join("a-seed2/summary.json").exists(), "{err}");
    assert_eq!(std::fs::read(out.join("b-seed1/summary.json")).unwrap(), b1);
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("Not started (no run folder), so not in the tables or plots: a-seed1.") && md.contains("| a-seed2 |"), "{md}");
    // a report of runs none of which has started is an error naming them
    let o = run_owned(&["study".into(), "report".into(), out.to_str().unwrap().into(), "--only".into(), "a-seed1".into(), "--to".into(), dir.path().join("a1").to_str().unwrap().into()]);
    let err = stderr(&o);
    assert!(!o.status.success() && err.contains("none of the 1 selected runs has started (no run folder: a-seed1)"), "{err}");

    // one run retrained alone in a fresh folder repeats its loss curve exactly
    let again = dir.path().join("again");
    let o = study(&args(&again, &["--seeds", "1,2", "--only", "b-seed2"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(losses(&again.join("b-seed2")), losses(&out.join("b-seed2")));

    // a name that is neither a run nor a configuration: a usage error naming the configurations
    let o = study(&args(&dir.path().join("none"), &["--only", "c"]));
    let err = stderr(&o);
    assert!(o.status.code() == Some(2) && err.contains("--only c") && err.contains("configurations: a, b"), "{err}");
    assert!(!dir.path().join("none").join("a").exists());
}

#[test]
fn seeds_on_the_command_line_replace_the_files_and_keep_run_names() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("two.toml");
    std::fs::write(&file, "name = \"two\"\nseeds = [1, 2]\n[[runs]]\nname = \"a\"\n").unwrap();
    let names = |seeds: Option<&[u64]>| {
        let (_, runs) = selfsup::study::plan(&file, &[], seeds).unwrap();
        runs.iter().map(|r| (r.name.clone(), r.config.train.seed)).collect::<Vec<_>>()
    };
    assert_eq!(names(None), [("a-seed1".to_string(), 1), ("a-seed2".to_string(), 2)]);
    assert_eq!(names(Some(&[1, 2, 3]))[2], ("a-seed3".to_string(), 3));
    // one seed from the command line on a multi-seed study keeps the -seedN folder name
    assert_eq!(names(Some(&[3])), [("a-seed3".to_string(), 3)]);
    // a one-seed file keeps its plain name; two seeds from the command line name the runs apart
    std::fs::write(&file, "name = \"one\"\nseeds = [7]\n[[runs]]\nname = \"a\"\n").unwrap();
    assert_eq!(names(None), [("a".to_string(), 7)]);
    assert_eq!(names(Some(&[5])), [("a".to_string(), 5)]);
    assert_eq!(names(Some(&[7, 8])), [("a-seed7".to_string(), 7), ("a-seed8".to_string(), 8)]);
}

#[test]
fn study_file_errors_name_the_file_and_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "name = \"x\"\n[[runs]]\nname = \"r\"\nset = [\"byol.tau_bas=0.5\"]\n").unwrap();
    let o = run_owned(&["study".into(), file.to_str().unwrap().into(), "--out".into(), dir.path().join("o").to_str().unwrap().into()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("study run `r`") && e.contains("tau_base"), "{e}");
    std::fs::write(&file, "name = \"x\"\nbogus = 1\n").unwrap();
    let o = run_owned(&["study".into(), file.to_str().unwrap().into(), "--out".into(), dir.path().join("o").to_str().unwrap().into()]);
    let e = stderr(&o);
    assert!(e.contains("bad.toml") && e.contains("bogus"), "{e}");
    // a baseline must be one of the study's configurations (run names without `-seedN`)
    std::fs::write(&file, "name = \"x\"\nseeds = [1, 2]\nbaseline = \"default\"\n[[runs]]\nname = \"a\"\n[[runs]]\nname = \"b\"\n").unwrap();
    let o = run_owned(&["study".into(), file.to_str().unwrap().into(), "--out".into(), dir.path().join("o").to_str().unwrap().into()]);
    let e = stderr(&o);
    assert!(o.status.code() == Some(1) && e.contains("bad.toml") && e.contains("baseline `default` is not a configuration of this study (configurations: a, b)"), "{e}");
    // so must both sides of a `compare` pair, and they must differ
    for (pair, needle) in [("[\"a\", \"c\"]", "compare [\"a\", \"c\"]: `c` is not a configuration of this study (configurations: a, b)"), ("[\"b\", \"b\"]", "compare [\"b\", \"b\"]: a configuration compared with itself")] {
        std::fs::write(&file, format!("name = \"x\"\nseeds = [1, 2]\ncompare = [{pair}]\n[[runs]]\nname = \"a\"\n[[runs]]\nname = \"b\"\n")).unwrap();
        let o = run_owned(&["study".into(), file.to_str().unwrap().into(), "--out".into(), dir.path().join("o").to_str().unwrap().into()]);
        let e = stderr(&o);
        assert!(o.status.code() == Some(1) && e.contains("bad.toml") && e.contains(needle), "{pair}: {e}");
    }
    assert!(!dir.path().join("o").exists(), "a refused study created its folder");
}

/// A study's `[probe]` table: every run gets the offline probe of that protocol — the learning
/// rate chosen on held-out training images — exactly as `eval linear` with the same flags and the
/// run's seed gives it; the report says which protocol; a changed protocol re-probes the finished
/// runs without retraining them; a list of learning rates without a hold-out, or an unknown key,
/// is refused naming the file and the key.
#[test]
fn a_study_probes_every_run_by_its_probe_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("probe.toml");
    let (train, test) = ("synthetic:80", "synthetic:40@test");
    let write_with = |epochs: usize, random_init: bool| {
        std::fs::write(&file, format!("name = \"probe\"\nbaseline = \"a\"\nset = [\"train.epochs=1\", \"train.batch=16\", \"train.seed=3\", \"data.train=\\\"{train}\\\"\", \"eval.test=\\\"{test}\\\"\", \"eval.knn_every=0\"]\n[probe]\noptimizer = \"sgd\"\nfeatures = \"raw\"\nschedule = \"step\"\nlr = [0.01, 1.0]\nval_fraction = 0.25\nepochs = {epochs}\nrandom_init = {random_init}\n[[runs]]\nname = \"a\"\n[[runs]]\nname = \"b\"\nset = [\"byol.predictor=\\\"linear\\\"\"]\n")).unwrap();
    };
    let write = |epochs: usize| write_with(epochs, true);
    write(20);
    let out = dir.path().join("out");
    let args = vec![file.to_str().unwrap().to_string(), "--out".into(), out.to_str().unwrap().into(), "--quiet".into()];
    let o = study(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let linear = |run: &str| serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(out.join(run).join("linear.json")).unwrap()).unwrap();
    let cli_probe = |checkpoint: &[&str], epochs: &str, seed: &str| {
        let mut a: Vec<String> = ["eval", "linear", "--train", train, "--test", test, "--optimizer", "sgd", "--features", "raw", "--schedule", "step", "--lr", "0.01,1", "--val-fraction", "0.25", "--epochs", epochs, "--seed", seed, "--json"].map(String::from).to_vec();
        a.extend(checkpoint.iter().map(|c| c.to_string()));
        let o = run_owned(&a);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_str::<serde_json::Value>(stdout(&o).lines().last().unwrap()).unwrap()
    };
    let by_cli = |run: &str, epochs: &str| cli_probe(&["--checkpoint", out.join(run).to_str().unwrap()], epochs, "3");
    for run in ["a", "b"] {
        let (v, cli) = (linear(run), by_cli(run, "20"));
        assert_eq!(cli["selected_by"], "validation");
        let mut trained_probe = v.clone();
        for key in ["protocol", "random_init", "linear_random_top1"] {
            trained_probe.as_object_mut().unwrap().remove(key);
        }
        assert_eq!(trained_probe, cli, "{run}: linear.json differs from eval linear's line");
        assert_eq!(v["protocol"]["val_fraction"].as_f64(), Some(0.25), "{v}");
        // the random-init encoder (the random-init kNN's: the run's config, seed 3 + 1), probed alike
        let config = out.join(run).join("config.toml");
        let random = cli_probe(&["--checkpoint", "random", "--config", config.to_str().unwrap()], "20", "4");
        assert_eq!(v["random_init"], random, "{run}: the random-init probe differs from eval linear --checkpoint random --seed 4");
        assert_eq!(v["linear_random_top1"], random["linear_top1"]);
        let other_seed = cli_probe(&["--checkpoint", "random", "--config", config.to_str().unwrap()], "20", "3");
        assert_ne!(v["random_init"], other_seed, "{run}: seeds 3 and 4 give the same random-init probe: the comparison cannot tell them apart");
    }
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|c| *c == "linear_top1").unwrap();
    let row_a: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(row_a[col].parse::<f64>().unwrap(), linear("a")["linear_top1"].as_f64().unwrap(), "{csv}");
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("linear top-1: the offline linear probe on the frozen encoder (sgd, raw features, step schedule, 20 epochs, fixed views; learning rate chosen from [0.01,1.0] on 25% of each class's training images held out"), "{md}");
    assert!(md.contains("random-init linear: the same probe of the run's random-init encoder") && md.contains("| a | linear top-1 | random init | 1 |"), "{md}");
    // another protocol: the runs are probed again, not retrained
    let metrics = std::fs::read_to_string(out.join("a/metrics.jsonl")).unwrap();
    write(7);
    let o = study(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(out.join("a/metrics.jsonl")).unwrap(), metrics, "run a was retrained");
    assert_eq!(linear("a")["epochs"].as_u64(), Some(7));
    assert_eq!(linear("a")["linear_top1"], by_cli("a", "7")["linear_top1"]);
    // a linear.json from before random-init probes (none, and no `random_init` in its protocol):
    // the trained probe is kept (a marker value set in it stays), the random-init probe is added
    let mut old = linear("a");
    for key in ["random_init", "linear_random_top1"] {
        old.as_object_mut().unwrap().remove(key);
    }
    old["protocol"].as_object_mut().unwrap().remove("random_init");
    old["linear_top1"] = 0.123.into();
    std::fs::write(out.join("a/linear.json"), old.to_string()).unwrap();
    let o = study(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(linear("a")["linear_top1"].as_f64(), Some(0.123), "the trained probe was redone");
    assert_eq!(linear("a")["random_init"], cli_probe(&["--checkpoint", "random", "--config", out.join("a/config.toml").to_str().unwrap()], "7", "4"), "{}", linear("a"));
    // `random_init = false`: the random-init probes already made are dropped (the trained ones
    // kept, nothing retrained), and the report no longer shows them
    write_with(7, false);
    let o = study(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    for run in ["a", "b"] {
        let v = linear(run);
        assert!(v.get("random_init").is_none() && v.get("linear_random_top1").is_none(), "{run}: {v}");
    }
    assert_eq!(linear("a")["linear_top1"].as_f64(), Some(0.123), "the trained probe was redone");
    assert_eq!(std::fs::read_to_string(out.join("a/metrics.jsonl")).unwrap(), metrics, "run a was retrained");
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(!md.contains("random-init linear") && !md.contains("| a | linear top-1 | random init |"), "{md}");
    // asked for again after the run's checkpoints were deleted (its summary, metrics and probe
    // kept): the random-init probe needs the run's config alone, not its trained weights
    std::fs::remove_dir_all(out.join("a/checkpoints")).unwrap();
    write_with(7, true);
    let o = study(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(linear("a")["linear_top1"].as_f64(), Some(0.123), "the trained probe was redone");
    assert_eq!(linear("a")["random_init"], cli_probe(&["--checkpoint", "random", "--config", out.join("a/config.toml").to_str().unwrap()], "7", "4"), "{}", linear("a"));
    // refused before anything runs
    for (table, needle) in [("[probe]\nlr = [0.1, 1.0]\n", "probe.lr gives 2 learning rates: set probe.val_fraction"), ("[probe]\nval_fraction = 1.5\n", "probe.val_fraction 1.5 must be between 0 and 1"), ("[probe]\nlearning_rate = 0.1\n", "learning_rate")] {
        std::fs::write(&file, format!("name = \"x\"\n{table}")).unwrap();
        let o = run_owned(&["study".into(), file.to_str().unwrap().into(), "--out".into(), dir.path().join("o").to_str().unwrap().into()]);
        let e = stderr(&o);
        assert!(o.status.code() == Some(1) && e.contains("probe.toml") && e.contains(needle), "{table}: {e}");
        assert!(!dir.path().join("o").join("run").exists());
    }
}

/// A run folder as training leaves it, written by hand: the config's projector width, a summary,
/// one metrics line per epoch (with the predictor metrics when `pred_cos` is given, the external
/// negatives' (share, hardest cosine, same-class share) when `negatives` is, the last epoch's
/// share doubled, the hardest negative of the query's class 15% of the time) and the kNN
/// evaluation after the second epoch.
fn fake_run(dir: &std::path::Path, knn: f64, z_std: f64, alignment: f64, pred_cos: Option<f64>, negatives: Option<(f64, f64, f64)>) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.toml"), "method = \"byol\"\n[projector]\nout = 100\n").unwrap();
    let summary = format!(r#"{{"knn_top1": {knn}, "knn_random_top1": 0.25, "steps": 20, "epochs": 2, "minutes": 1.0}}"#);
    std::fs::write(dir.join("summary.json"), summary).unwrap();
    let mut lines = String::new();
    for (epoch, step) in [(0, 10), (1, 20)] {
        let pred = pred_cos.map(|c| format!(r#", "pred_z_std": 0.05, "pred_effective_rank": 3.0, "pred_projection_cos": {c}"#)).unwrap_or_default();
        let neg = negatives
            .map(|(share, hardest, same)| format!(r#", "pos_cos": 0.7, "neg_cos_mean": 0.1, "neg_cos_max": {hardest}, "neg_share": {}, "neg_same_class_share": {same}, "neg_hardest_same_class": 0.15"#, share * (1 + epoch) as f64))
            .unwrap_or_default();
        lines += &format!(r#"{{"epoch": {epoch}, "step": {step}, "loss": 1.0, "z_std": {z_std}, "alignment": {alignment}, "uniformity": -2.0, "effective_rank": 5.0, "batch_mean_cos": 0.5{pred}{neg}}}"#);
        lines += "\n";
    }
    lines += &format!("{{\"epoch\": 2, \"step\": 20, \"knn_top1\": {knn}}}\n");
    std::fs::write(dir.join("metrics.jsonl"), lines).unwrap();
}

#[test]
fn runs_over_seeds_are_summarised_per_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    // configuration "a" over three seeds, "b" over two (both collapsed: z-std under 0.1/√100)
    // only "a" has a predictor (its predictions' cosine with the projections 0.9, 0.8, 0.7)
    let a = [(0.30, 0.08, 0.5, 0.9), (0.36, 0.09, 0.7, 0.8), (0.33, 0.07, 0.6, 0.7)];
    for (s, &(knn, z, al, cos)) in a.iter().enumerate() {
        fake_run(&out.join(format!("a-seed{}", s + 1)), knn, z, al, Some(cos), None);
    }
    // only "b" has external negatives: final shares (last epoch: doubled) 0.2 and 0.4
    fake_run(&out.join("b-seed1"), 0.20, 0.001, 0.0, None, Some((0.1, 0.8, 0.11)));
    fake_run(&out.join("b-seed2"), 0.22, 0.003, 0.0, None, Some((0.2, 0.6, 0.13)));
    let o = run_owned(&["study".into(), "report".into(), out.to_str().unwrap().into()]);
    assert!(o.status.success(), "{}", stderr(&o));

    // independent arithmetic: mean and sample standard deviation (n − 1)
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let sd = |v: &[f64]| (v.iter().map(|x| (x - mean(v)).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt();
    let knn_a = [0.30, 0.36, 0.33];
    let csv = std::fs::read_to_string(out.join("results_by_configuration.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    let col = |name: &str| rows[0].iter().position(|h| *h == name).unwrap_or_else(|| panic!("no column {name}: {csv}"));
    assert_eq!(rows.len(), 3, "{csv}");
    assert_eq!((rows[1][0], rows[1][col("seeds")]), ("a", "3"), "{csv}");
    let num = |r: usize, c: &str| rows[r][col(c)].parse::<f64>().unwrap();
    assert!((num(1, "knn_top1_mean") - mean(&knn_a)).abs() < 1e-9, "{csv}");
    assert!((num(1, "knn_top1_sd") - sd(&knn_a)).abs() < 1e-9, "{csv}");
    assert!((num(1, "alignment_mean") - 0.6).abs() < 1e-9 && (num(1, "z_std_sd") - 0.01).abs() < 1e-9, "{csv}");
    assert!((num(2, "knn_top1_mean") - 0.21).abs() < 1e-9, "{csv}");
    assert_eq!((rows[1][col("collapsed")], rows[2][col("collapsed")]), ("0", "2"), "{csv}");
    assert!((num(1, "pred_projection_cos_mean") - 0.8).abs() < 1e-9 && (num(1, "pred_projection_cos_sd") - 0.1).abs() < 1e-9, "{csv}");
    assert_eq!(rows[2][col("pred_projection_cos_mean")], "", "b has no predictor: {csv}");
    assert!((num(2, "neg_share_mean") - 0.3).abs() < 1e-9 && (num(2, "neg_cos_max_mean") - 0.7).abs() < 1e-9, "{csv}");
    assert_eq!(rows[1][col("neg_share_mean")], "", "a has no external negatives: {csv}");
    assert!((num(2, "neg_same_class_share_mean") - 0.12).abs() < 1e-9 && (num(2, "neg_hardest_same_class_mean") - 0.15).abs() < 1e-9, "{csv}");

    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    let line = format!("| a | 3 | {:.4} ± {:.4} |", mean(&knn_a), sd(&knn_a));
    assert!(md.contains("Across seeds") && md.contains(&line), "expected `{line}` in\n{md}");
    assert!(md.contains("| 2/2 |"), "{md}");
    // the predictor column is shown (a has values); the linear column is not (no run has one)
    assert!(md.contains("pred.–proj. cos") && !md.contains("linear top-1"), "{md}");
    assert!(md.contains("(pred_z_std_vs_epoch.png)") && out.join("pred_z_std_vs_epoch.png").exists(), "{md}");
    assert!(md.contains("neg. share") && md.contains("| b-seed2 |") && md.contains("| 0.4000 | 0.600 | 0.130 | 0.150 |"), "{md}");
    assert!(md.contains("same-class share") && md.contains("hardest same class"), "{md}");
    for plot in ["neg_share_vs_step.png", "neg_gap_vs_step.png"] {
        assert!(md.contains(&format!("({plot})")) && out.join(plot).exists(), "{plot}: {md}");
    }

    // each configuration's mean kNN curve: random init (0.25 in every run) at epoch 0, the
    // evaluation at epoch 2; every run's epoch holds 10 updates, so no kNN-vs-step plot
    let curves = std::fs::read_to_string(out.join("knn_by_configuration.csv")).unwrap();
    let lines: Vec<&str> = curves.lines().collect();
    assert_eq!(lines[0], "configuration,seeds,epoch,knn_top1_mean,knn_top1_sd", "{curves}");
    assert!(lines[1].starts_with("\"a\",3,0,0.25,0"), "{curves}");
    let a2: Vec<f64> = lines[2].split(',').skip(3).map(|v| v.parse().unwrap()).collect();
    assert!(lines[2].starts_with("\"a\",3,2,") && (a2[0] - mean(&knn_a)).abs() < 1e-9 && (a2[1] - sd(&knn_a)).abs() < 1e-9, "{curves}");
    assert_eq!(lines.len(), 5, "{curves}");
    assert!(md.contains("(knn_by_configuration.png)") && out.join("knn_by_configuration.png").exists(), "{md}");
    assert!(!md.contains("(knn_vs_step.png)") && !out.join("knn_vs_step.png").exists(), "{md}");

    // b's epochs hold four times the updates (a larger dataset, say): the curves go against the step
    for run in ["b-seed1", "b-seed2"] {
        std::fs::write(out.join(run).join("summary.json"), r#"{"knn_top1": 0.2, "knn_random_top1": 0.25, "steps": 80, "epochs": 2, "minutes": 1.0}"#).unwrap();
    }
    let o = run_owned(&["study".into(), "report".into(), out.to_str().unwrap().into()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("(knn_vs_step.png)") && out.join("knn_vs_step.png").exists(), "{md}");
    let curves = std::fs::read_to_string(out.join("knn_by_configuration.csv")).unwrap();
    assert!(curves.starts_with("configuration,seeds,step,") && curves.contains("\"a\",3,20,"), "{curves}");

    // rebuilt from one seed per configuration: no seed table, and the old CSV is not left behind
    for run in ["a-seed2", "a-seed3", "b-seed2"] {
        std::fs::remove_dir_all(out.join(run)).unwrap();
    }
    let o = run_owned(&["study".into(), "report".into(), out.to_str().unwrap().into()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(!md.contains("Across seeds") && !out.join("results_by_configuration.csv").exists(), "{md}");
    assert!(!md.contains("(knn_by_configuration.png)") && !out.join("knn_by_configuration.png").exists() && !out.join("knn_by_configuration.csv").exists(), "{md}");
}

/// Every configuration against the baseline's run of the same seed and against its own random
/// init: the per-seed differences, their mean and its 95% interval (Student's t), by hand.
#[test]
fn configurations_are_compared_with_the_baseline_seed_by_seed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    // every fake run's random-init kNN is 0.25; "x" has a fourth seed the baseline lacks
    let base = [0.28, 0.33, 0.29];
    let x = [0.30, 0.32, 0.31, 0.40];
    for (s, knn) in base.iter().enumerate() {
        fake_run(&out.join(format!("default-seed{}", s + 1)), *knn, 0.08, 0.5, None, None);
    }
    for (s, knn) in x.iter().enumerate() {
        fake_run(&out.join(format!("x-seed{}", s + 1)), *knn, 0.08, 0.5, None, None);
    }
    let report = |extra: &[&str]| {
        let mut args = vec!["study".to_string(), "report".into(), out.to_str().unwrap().into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        run_owned(&args)
    };
    let o = report(&["--baseline", "nope"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("baseline `nope` is not a configuration of this study (configurations: default, x)"), "{}", stderr(&o));
    let o = report(&["--baseline", "default"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let sd = |v: &[f64]| (v.iter().map(|x| (x - mean(v)).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt();
    // x − default over the seeds both have (1–3); t₀.₉₇₅ with 2 degrees of freedom in closed form
    let d: Vec<f64> = (0..3).map(|i| x[i] - base[i]).collect();
    let t2 = 0.95 / (2.0f64 * 0.975 * 0.025).sqrt();
    let half = t2 * sd(&d) / 3f64.sqrt();
    // x against its random init over its four seeds; t₀.₉₇₅ with 3 degrees of freedom (tables)
    let g: Vec<f64> = x.iter().map(|k| k - 0.25).collect();
    let half_g = 3.182446305284263 * sd(&g) / 2.0;

    let csv = std::fs::read_to_string(out.join("paired_differences.csv")).unwrap();
    let rows: Vec<Vec<String>> = csv.lines().map(|l| l.split(',').map(|c| c.trim_matches('"').to_string()).collect()).collect();
    assert_eq!(rows[0].join(","), "configuration,metric,reference,seeds,seed,per_seed,mean,sd,ci95_low,ci95_high,ahead,seeds_for_80pct_power", "{csv}");
    let find = |c: &str, r: &str| rows.iter().find(|row| row[0] == c && row[2] == r).unwrap_or_else(|| panic!("no row {c} vs {r}: {csv}"));
    let num = |row: &Vec<String>, i: usize| row[i].parse::<f64>().unwrap();
    let xd = find("x", "default");
    assert_eq!((xd[1].as_str(), xd[3].as_str(), xd[4].as_str(), xd[10].as_str()), ("knn_top1", "3", "1;2;3", "2"), "{csv}");
    let per_seed: Vec<f64> = xd[5].split(';').map(|v| v.parse().unwrap()).collect();
    assert!(per_seed.iter().zip(&d).all(|(a, b)| (a - b).abs() < 1e-12), "{csv}");
    assert!((num(xd, 6) - mean(&d)).abs() < 1e-12 && (num(xd, 7) - sd(&d)).abs() < 1e-12, "{csv}");
    assert!((num(xd, 8) - (mean(&d) - half)).abs() < 1e-9 && (num(xd, 9) - (mean(&d) + half)).abs() < 1e-9, "{csv}");
    // the seeds for 80% power from the measured mean and sd (the rule itself: tests/math_references.rs)
    let SeedsNeeded::Seeds(plan) = seeds_for_power(mean(&d), sd(&d), 0.8) else { panic!("d = mean/sd ≈ 0.58 needs some seeds") };
    assert_eq!(xd[11], plan.to_string(), "{csv}");
    let xr = find("x", "random init");
    assert_eq!((xr[3].as_str(), xr[4].as_str(), xr[10].as_str()), ("4", "1;2;3;4", "4"), "{csv}");
    assert!((num(xr, 6) - mean(&g)).abs() < 1e-12 && (num(xr, 9) - (mean(&g) + half_g)).abs() < 1e-9, "{csv}");
    assert!(find("default", "random init")[3] == "3" && !rows.iter().any(|r| r[0] == "default" && r[2] == "default"), "{csv}");

    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    let line = format!("| x | kNN top-1 | default | 3 | 1: +0.0200, 2: -0.0100, 3: +0.0200 | {:+.4} | [{:+.4}, {:+.4}] | 2/3 | {plan} |", mean(&d), mean(&d) - half, mean(&d) + half);
    assert!(md.contains("Paired by seed") && md.contains(&line), "expected `{line}` in\n{md}");
    assert!(md.contains("(paired_differences.png)") && out.join("paired_differences.png").exists(), "{md}");

    // without a baseline the random-init comparisons stay (several seeds); with one seed per
    // configuration and no baseline the table and its CSV go
    let o = report(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = std::fs::read_to_string(out.join("paired_differences.csv")).unwrap();
    assert!(csv.contains("\"x\",knn_top1,\"random init\"") && !csv.contains("\"default\",3"), "{csv}");
    for run in ["default-seed2", "default-seed3", "x-seed2", "x-seed3", "x-seed4"] {
        std::fs::remove_dir_all(out.join(run)).unwrap();
    }
    let o = report(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!out.join("paired_differences.csv").exists() && !std::fs::read_to_string(out.join("results.md")).unwrap().contains("Paired by seed"));
    assert!(!out.join("paired_differences.png").exists(), "a stale paired plot stays");
}

/// The study file's `compare` pairs (here each method at batch 16 against itself at batch 64,
/// beside the baseline `a16`): each pair's per-seed differences and mean, by hand; `--compare`
/// replaces them; a selection keeps the pairs it shows both sides of; a pair naming no
/// configuration, or one configuration twice, is refused.
#[test]
fn compare_pairs_are_compared_seed_by_seed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("study");
    let knn = [("a16", [0.30, 0.34, 0.31]), ("b16", [0.36, 0.33, 0.40]), ("a64", [0.29, 0.35, 0.27]), ("b64", [0.33, 0.36, 0.35])];
    for (config, values) in &knn {
        for (s, k) in values.iter().enumerate() {
            fake_run(&out.join(format!("{config}-seed{}", s + 1)), *k, 0.08, 0.5, None, None);
        }
    }
    // ["b64", "a16"] repeats the baseline comparison and is shown once
    let pairs = serde_json::json!([["a16", "a64"], ["b16", "b64"], ["b64", "a16"]]);
    std::fs::write(out.join("study.json"), serde_json::json!({"name": "pairs", "baseline": "a16", "compare": pairs}).to_string()).unwrap();
    let report = |extra: &[&str]| {
        let mut args = vec!["study".to_string(), "report".into(), out.to_str().unwrap().into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        run_owned(&args)
    };
    let rows_of = |d: &std::path::Path| -> Vec<Vec<String>> {
        std::fs::read_to_string(d.join("paired_differences.csv")).unwrap().lines().skip(1).map(|l| l.split(',').map(|c| c.trim_matches('"').to_string()).collect()).collect()
    };
    let knn_of = |c: &str| knn.iter().find(|k| k.0 == c).unwrap().1;
    // the mean of the per-seed differences c − r, and the per-seed list as the CSV writes it
    let expect = |rows: &[Vec<String>], c: &str, r: &str| {
        let matching: Vec<&Vec<String>> = rows.iter().filter(|row| row[0] == c && row[1] == "knn_top1" && row[2] == r).collect();
        assert_eq!(matching.len(), 1, "{c} vs {r}: {rows:?}");
        let d: Vec<f64> = knn_of(c).iter().zip(knn_of(r)).map(|(x, y)| x - y).collect();
        let per_seed: Vec<f64> = matching[0][5].split(';').map(|v| v.parse().unwrap()).collect();
        assert!(per_seed.iter().zip(&d).all(|(a, b)| (a - b).abs() < 1e-12), "{c} vs {r}: {rows:?}");
        assert!((matching[0][6].parse::<f64>().unwrap() - d.iter().sum::<f64>() / 3.0).abs() < 1e-12, "{c} vs {r}: {rows:?}");
        assert_eq!(matching[0][10], d.iter().filter(|x| **x > 0.0).count().to_string(), "{c} vs {r}: ahead");
    };
    let o = report(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = rows_of(&out);
    for (c, r) in [("b16", "a16"), ("a64", "a16"), ("b64", "a16"), ("a16", "a64"), ("b16", "b64")] {
        expect(&rows, c, r);
    }
    assert!(!rows.iter().any(|r| r[2] == "b16" || (r[0] == "b16" && r[2] == "a64")), "{rows:?}");
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("; and `a16` against `a64`, `b16` against `b64`, `b64` against `a16` (`compare`)"), "{md}");

    // --compare replaces the file's pairs
    let o = report(&["--compare", "b16", "a64", "--compare", "a64", "b64"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = rows_of(&out);
    expect(&rows, "b16", "a64");
    expect(&rows, "a64", "b64");
    assert!(!rows.iter().any(|r| r[0] == "b16" && r[2] == "b64"), "{rows:?}");

    // a selection of a16 and a64: the baseline and the a-pair stay, the b-pair is dropped
    let sub = dir.path().join("a");
    let o = report(&["--only", "a16,a64", "--to", sub.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = rows_of(&sub);
    expect(&rows, "a16", "a64");
    expect(&rows, "a64", "a16");
    assert!(!rows.iter().any(|r| r[0].starts_with('b') || r[2].starts_with('b')), "{rows:?}");

    for (args, needle) in [
        (vec!["--compare", "a16", "nope"], "compare [\"a16\", \"nope\"]: `nope` is not a configuration of this study (configurations: a16, a64, b16, b64)"),
        (vec!["--compare", "a16", "a16"], "a configuration compared with itself"),
        (vec!["--only", "a16,a64", "--compare", "b16", "a16"], "`b16` is not a configuration of this study (configurations: a16, a64)"),
    ] {
        let o = report(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
    let o = report(&["--compare", "a16"]);
    assert_eq!(o.status.code(), Some(2), "--compare takes two names: {}", stderr(&o));
}

/// `study report --only … --seeds … --to DIR2`: a report of some of a study's runs, written beside
/// the study's own; its tables and paired differences are of those runs alone, it says so, a study
/// file's baseline it leaves out is dropped, and names or seeds no run has are errors.
#[test]
fn a_report_of_a_selection_shows_those_runs_alone() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("study");
    let knn = [("default", vec![0.28, 0.33, 0.29]), ("x", vec![0.30, 0.32, 0.31, 0.40]), ("y", vec![0.26, 0.27])];
    let mut planned = Vec::new();
    for (config, values) in &knn {
        for (s, k) in values.iter().enumerate() {
            let name = format!("{config}-seed{}", s + 1);
            fake_run(&out.join(&name), *k, 0.08, 0.5, None, None);
            planned.push(serde_json::json!({"name": name, "overrides": [format!("train.seed={}", s + 1)]}));
        }
    }
    std::fs::write(out.join("study.json"), serde_json::json!({"name": "sel", "baseline": "default", "runs": planned}).to_string()).unwrap();
    let report = |extra: &[&str]| {
        let mut args = vec!["study".to_string(), "report".into(), out.to_str().unwrap().into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        run_owned(&args)
    };
    let csv_rows = |d: &std::path::Path, file: &str| -> Vec<Vec<String>> {
        std::fs::read_to_string(d.join(file)).unwrap().lines().skip(1).map(|l| l.split(',').map(|c| c.trim_matches('"').to_string()).collect()).collect()
    };

    // x and y at seeds 1–2: four runs; the baseline `default` is not among them, so it is dropped
    let sub = dir.path().join("xy");
    let o = report(&["--only", "x,y", "--seeds", "1,2", "--to", sub.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let names: Vec<String> = csv_rows(&sub, "results.csv").iter().map(|r| r[0].clone()).collect();
    assert_eq!(names, ["x-seed1", "x-seed2", "y-seed1", "y-seed2"]);
    assert!(!out.join("results.csv").exists() && !out.join("results.md").exists(), "the study's own report was written");
    let md = std::fs::read_to_string(sub.join("results.md")).unwrap();
    assert!(md.contains("This report shows 4 of the study's 9 runs (`selfsup study report --only x,y --seeds 1,2`)"), "{md}");
    let paired = csv_rows(&sub, "paired_differences.csv");
    let x_random = paired.iter().find(|r| r[0] == "x" && r[2] == "random init").expect("x vs its random init");
    assert_eq!((x_random[3].as_str(), x_random[4].as_str()), ("2", "1;2"), "x's seeds 3 and 4 counted: {paired:?}");
    let mean: f64 = (0.30 + 0.32) / 2.0 - 0.25;
    assert!((x_random[6].parse::<f64>().unwrap() - mean).abs() < 1e-12, "{paired:?}");
    assert!(!paired.iter().any(|r| r[2] == "default"), "{paired:?}");
    assert!(sub.join("knn_vs_epoch.png").exists() && sub.join("paired_differences.png").exists());

    // default and x at seeds 1–3 (a range): the study's baseline is kept, over those seeds only
    let dx = dir.path().join("dx");
    let o = report(&["--only", "default,x", "--seeds", "1-3", "--to", dx.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let paired = csv_rows(&dx, "paired_differences.csv");
    let x_default = paired.iter().find(|r| r[0] == "x" && r[2] == "default").expect("x vs default");
    let d = [0.30 - 0.28, 0.32 - 0.33, 0.31 - 0.29];
    assert_eq!(x_default[4], "1;2;3");
    assert!((x_default[6].parse::<f64>().unwrap() - d.iter().sum::<f64>() / 3.0).abs() < 1e-12, "{paired:?}");
    let x_random = paired.iter().find(|r| r[0] == "x" && r[2] == "random init").unwrap();
    assert_eq!(x_random[4], "1;2;3", "x's seed 4 counted: {paired:?}");

    // a run name selects that run alone
    let one = dir.path().join("one");
    assert!(report(&["--only", "y-seed2", "--to", one.to_str().unwrap()]).status.success());
    assert_eq!(csv_rows(&one, "results.csv").iter().map(|r| r[0].clone()).collect::<Vec<_>>(), ["y-seed2"]);

    // refused: a name or seed no run has, and an explicit baseline outside the selection
    let refused = dir.path().join("refused");
    for (args, needle) in [
        (vec!["--only", "nope"], "--only nope: no run or configuration of this study has that name (configurations: default, x, y)"),
        (vec!["--seeds", "9"], "no run of the selection has seed 9"),
        (vec!["--only", "x", "--baseline", "default"], "baseline `default` is not a configuration of this study (configurations: x)"),
    ] {
        let mut a = args.clone();
        a.extend(["--to", refused.to_str().unwrap()]);
        let o = report(&a);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
        assert!(!refused.exists(), "{args:?}: a refused report created its folder");
    }
}

/// A run that diverges is the study's result for that configuration, not its end: the next run
/// trains, the report says which run diverged and why, and a rerun skips it.
#[test]
fn a_diverging_run_is_reported_and_the_study_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tiny.toml");
    let text = r#"
name = "diverge"
set = ["train.epochs=1", "train.batch=16", "data.train=\"synthetic:160\"", "eval.test=\"synthetic:20@test\"", "eval.knn_k=5"]
[[runs]]
name = "blows-up"
set = ["optim.weight_decay=1e30"]
[[runs]]
name = "fine"
"#;
    std::fs::write(&file, text).unwrap();
    let out = dir.path().join("out");
    let args = vec![file.to_str().unwrap().to_string(), "--out".into(), out.to_str().unwrap().into(), "--quiet".into()];
    let o = study(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("blows-up: diverged: non-finite") && err.contains("1 of 2 runs diverged"), "{err}");
    assert!(out.join("fine/summary.json").exists() && !out.join("blows-up/summary.json").exists());
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert!(rows[0].ends_with(",stopped,machine"), "{csv}");
    // the diverged run: its reason, and no machine (it wrote no summary)
    assert!(rows[1].starts_with("blows-up,") && rows[1].contains(",false,") && rows[1].contains("non-finite") && rows[1].ends_with("\","), "{csv}");
    // the finished one: no reason, then its machine
    assert!(rows[2].starts_with("fine,") && rows[2].contains(",,\"") && rows[2].ends_with(")\""), "the finished run has no stop reason: {csv}");
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("(**diverged**)") && md.contains("Runs that diverged") && md.contains("- blows-up: non-finite"), "{md}");
    // a run that diverged before its first log line (as BYOL without loss normalisation does) has
    // no metrics, and its row shows none — not the 1/√d reference beside an empty z-std
    std::fs::write(out.join("blows-up/metrics.jsonl"), "").unwrap();
    let o = run_owned(&["study".into(), "report".into(), out.to_str().unwrap().into()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    let row = md.lines().find(|l| l.starts_with("| blows-up |")).expect("the diverged run's row");
    assert!(row.contains("(**diverged**) | – |") && !row.contains("– ("), "{row}");

    // a rerun skips the diverged run instead of training it again
    let o = study(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("blows-up: diverged in an earlier attempt, skipped") && err.contains("fine: finished, skipped"), "{err}");
}

/// `--jobs 2`: the runs train two at a time, each in its own process, and end exactly as in a
/// sequential study (the same loss curves, the same table); each run's output is in its
/// `job.log`; the report and study.json are the parent's. A run that diverges is reported as in a
/// sequential study; one that fails does not stop the others, and the study then exits with the
/// failed run's code, naming it and its log.
#[test]
fn parallel_jobs_train_every_run_as_a_sequential_study_does() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tiny.toml");
    let text = r#"
name = "tiny-jobs"
set = ["train.epochs=1", "train.batch=16", "data.train=\"synthetic:64\"", "eval.test=\"synthetic:40@test\"", "eval.knn_k=5", "train.threads=1"]
seeds = [1, 2]
[[runs]]
name = "a"
[[runs]]
name = "b"
set = ["byol.predictor=\"none\""]
[[runs]]
name = "blows-up"
set = ["optim.weight_decay=1e30"]
"#;
    std::fs::write(&file, text).unwrap();
    let args = |out: &std::path::Path, extra: &[&str]| {
        let mut a = vec![file.to_str().unwrap().to_string(), "--out".into(), out.to_str().unwrap().into(), "--quiet".into()];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let (seq, par) = (dir.path().join("seq"), dir.path().join("par"));
    let o = study(&args(&seq, &[]));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = study(&args(&par, &["--jobs", "2"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    for run in ["a-seed1", "a-seed2", "b-seed1", "b-seed2"] {
        assert!(err.contains(&format!("{run}: started")) && err.contains(&format!("{run}: loss")), "{run}: {err}");
        assert_eq!(losses(&par.join(run)), losses(&seq.join(run)), "{run}: the parallel run's loss curve");
        assert!(!losses(&par.join(run)).is_empty());
        let log = std::fs::read_to_string(par.join(run).join("job.log")).unwrap();
        assert!(log.contains(&format!("[1/1] {run}")), "{run}'s log: {log}");
    }
    assert!(err.contains("blows-up-seed1: diverged: non-finite") && err.contains("2 of 6 runs diverged"), "{err}");
    // the same table, but for each run's minutes and machine
    let table = |out: &std::path::Path| -> Vec<String> {
        let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
        let header: Vec<String> = csv.lines().next().unwrap().split(',').map(String::from).collect();
        let keep = |c: &str| !["minutes", "machine"].contains(&c);
        csv.lines().map(|l| l.split(',').zip(&header).filter(|(_, h)| keep(h)).map(|(v, _)| v).collect::<Vec<_>>().join(",")).collect()
    };
    // (a quoted field may hold commas: compare only rows whose split lines up, i.e. all here)
    assert_eq!(table(&par), table(&seq));
    let study_json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(par.join("study.json")).unwrap()).unwrap();
    assert!(study_json["command"].as_str().unwrap().contains("--jobs 2"), "{study_json}");

    // a run that fails: the other finishes, the study exits with its code and names it
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, text.replace("optim.weight_decay=1e30", "data.train=\\\"folder:/no/such/folder\\\"")).unwrap();
    let failing = dir.path().join("failing");
    let o = study(&[broken.to_str().unwrap().into(), "--out".into(), failing.to_str().unwrap().into(), "--quiet".into(), "--jobs".into(), "2".into(), "--only".into(), "a-seed1,blows-up-seed1".into()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("study run `blows-up-seed1` failed: ") && err.contains("/no/such/folder") && err.contains("job.log"), "{err}");
    assert!(failing.join("a-seed1/summary.json").exists(), "the other run finished: {err}");
    let o = study(&args(&dir.path().join("bad"), &["--jobs", "0"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
