//! `selfsup study`: a tiny two-run study writes the CSV, the table and every plot; a study
//! restarted after an interruption skips finished runs and resumes the unfinished one; `study
//! report` rebuilds everything from the run folders.
mod common;
use common::*;

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
    let files = ["results.csv", "results.md", "knn_vs_epoch.png", "loss_vs_step.png", "z_std_vs_epoch.png", "alignment_uniformity.png"];
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
    // each row carries a kNN accuracy and the metrics
    let a = lines[1].split(',').collect::<Vec<_>>();
    assert!(a[4].parse::<f64>().is_ok() && a[7].parse::<f64>().is_ok(), "{}", lines[1]);

    // interrupt: run b lost its summary (killed after its last checkpoint); a is finished
    let a_summary = std::fs::read(out.join("a/summary.json")).unwrap();
    let a_mtime = std::fs::metadata(out.join("a/summary.json")).unwrap().modified().unwrap();
    std::fs::remove_file(out.join("b/summary.json")).unwrap();
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
}
