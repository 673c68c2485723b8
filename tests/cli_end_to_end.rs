//! The binary end to end: bad input gives one clear `error:` line and the right exit code; a
//! tiny BYOL run on real images goes pretrain → checkpoint → kNN/linear/embed/export; resume
//! equals an uninterrupted run bit for bit; the same seed gives the same loss curve; the export
//! loads into torchvision with identical features.
mod common;

use common::*;
use std::path::Path;

#[test]
fn bad_input_gives_one_clear_error_line() {
    let o = selfsup(&["data", "inspect", "folder:/no/such/dir"]);
    assert_clean_error(&o, 1, &["/no/such/dir", "no such folder"]);
    // clap's errors in one line, naming what is missing
    let o = selfsup(&["eval", "knn", "--checkpoint", "random"]);
    assert_clean_error(&o, 2, &["required arguments were not provided: --train <TRAIN>, --test <TEST> (see --help)"]);
    let o = selfsup(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("Usage: selfsup <COMMAND>"), "{}", stderr(&o));
    let o = selfsup(&["eval", "linear", "--checkpoint", "random", "--train", "synthetic:20", "--test", "synthetic:20@test", "--epochs", "0"]);
    assert_clean_error(&o, 2, &["--epochs must be at least 1"]);
    let o = selfsup(&["eval", "linear", "--checkpoint", "random", "--train", "synthetic:20", "--test", "synthetic:20@test", "--lr=0"]);
    assert_clean_error(&o, 2, &["--lr 0 must be a positive number"]);
    let o = selfsup(&["eval", "linear", "--checkpoint", "random", "--train", "synthetic:20", "--test", "synthetic:20@test", "--weight-decay=-1"]);
    assert_clean_error(&o, 2, &["--weight-decay -1 must be 0 or more"]);
    let o = selfsup(&["eval", "linear", "--checkpoint", "random", "--train", "synthetic:20", "--test", "synthetic:20@test", "--val-fraction", "1"]);
    assert_clean_error(&o, 2, &["--val-fraction 1 must be between 0 and 1"]);
    let o = selfsup(&["eval", "linear", "--checkpoint", "random", "--train", "synthetic:20", "--test", "synthetic:20@test", "--optimizer", "adam"]);
    assert_clean_error(&o, 2, &["adam", "adamw, sgd"]);
    let o = selfsup(&["data", "inspect", "bogus:/x"]);
    assert_clean_error(&o, 2, &["unknown kind `bogus`"]);
    let out = tempfile::tempdir().unwrap();
    let o = selfsup(&["train", "--out", out.path().to_str().unwrap(), "--set", "optim.lr=-1"]);
    assert_clean_error(&o, 2, &["optim.lr", "-1"]);
    let o = selfsup(&["train", "--out", out.path().to_str().unwrap(), "--set", "data.min_scale=2"]);
    assert_clean_error(&o, 2, &["data.min_scale"]);
    let o = selfsup(&["train", "--out", out.path().to_str().unwrap(), "--set", "train.epoch=3"]);
    assert_clean_error(&o, 2, &["unknown config key `train.epoch`", "train.epochs"]);
    // a value of the wrong type, in a config file or a --set: the file (or --set) and the key
    let bad_type = out.path().join("bad-type.toml");
    std::fs::write(&bad_type, "[train]\nepochs = \"ten\"\n").unwrap();
    let o = selfsup(&["train", "--out", out.path().to_str().unwrap(), "--config", bad_type.to_str().unwrap()]);
    assert_clean_error(&o, 2, &["bad-type.toml: `train.epochs` = \"ten\"", "expected usize"]);
    let o = selfsup(&["train", "--out", out.path().to_str().unwrap(), "--set", "eval.compare_random=maybe"]);
    assert_clean_error(&o, 2, &["--set eval.compare_random=maybe: `eval.compare_random` = \"maybe\"", "expected a boolean"]);
    let o = selfsup(&["train", "--out", out.path().to_str().unwrap(), "--set", "data.augment_on=\"tpu\""]);
    assert_clean_error(&o, 2, &["data.augment_on", "tpu", "cpu, gpu or split"]);
    // a CUDA check asked for on the CPU, or in skip mode
    let o = selfsup(&["train", "--data", "synthetic:64", "--batch", "16", "--out", out.path().join("sd").to_str().unwrap(), "--set", "train.sync_debug=true"]);
    assert_clean_error(&o, 2, &["train.sync_debug", "needs --device cuda"]);
    let o = selfsup(&["train", "--out", out.path().to_str().unwrap(), "--set", "train.sync_debug=true", "--set", "train.on_nonfinite=\"skip\""]);
    assert_clean_error(&o, 2, &["train.sync_debug", "skip mode"]);
    // a CUDA graph asked for on the CPU, or for a method whose step cannot be captured
    let o = selfsup(&["train", "--data", "synthetic:64", "--batch", "16", "--out", out.path().join("cg").to_str().unwrap(), "--set", "train.cuda_graph=true"]);
    assert_clean_error(&o, 2, &["train.cuda_graph", "needs --device cuda (got cpu)"]);
    let o = selfsup(&["train", "--method", "adco", "--out", out.path().to_str().unwrap(), "--set", "train.cuda_graph=true", "--device", "cuda"]);
    assert_clean_error(&o, 2, &["train.cuda_graph", "cannot capture adco's step", "byol, simsiam, simclr, supcon, mocov2"]);
    // a method that needs labels, on a flat (unlabelled) folder: named by the spec the user gave
    let flat = out.path().join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    for f in ["0000.jpg", "0001.jpg"] {
        std::fs::copy(common::cifar_tree().join("test/ship").join(f), flat.join(f)).unwrap();
    }
    let flat_spec = format!("folder:{}", flat.display());
    let o = selfsup(&["train", "--method", "supcon", "--data", &flat_spec, "--batch", "2", "--out", out.path().join("sc").to_str().unwrap()]);
    assert_clean_error(&o, 2, &[&format!("`data.train` = {flat_spec}:"), "supcon needs labelled training data"]);
    let o = selfsup(&["data", "preview", "synthetic:20", "--recipe", "nope", "--out", out.path().join("p.png").to_str().unwrap()]);
    assert_clean_error(&o, 2, &["data.recipe", "nope"]);
    assert!(!out.path().join("p.png").exists());
    let o = selfsup(&["eval", "knn", "--checkpoint", out.path().to_str().unwrap(), "--train", "synthetic:50", "--test", "synthetic:50@test"]);
    assert_clean_error(&o, 1, &["holds no loadable checkpoint"]);
}

#[test]
fn inspect_json_preview_png_and_bench_result_lines() {
    let o = selfsup(&["data", "inspect", &cifar_spec("test", 20), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert_eq!(text.trim().lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!((v["count"].as_u64(), v["classes"].as_u64(), v["height"].as_u64(), v["channels"].as_u64(), v["labelled"].as_bool()), (Some(200), Some(10), Some(32), Some(3), Some(true)));
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("grid.png");
    let o = selfsup(&["data", "preview", &cifar_spec("train", 5), "--recipe", "byol", "--samples", "4", "--out", png.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = selfsup::data::Image::decode_file(&png).unwrap();
    assert_eq!(img.width, 3 * 100 + 4);
    let o = selfsup(&["bench", "augment", "--data", &cifar_spec("test", 10), "--recipe", "byol", "--threads", "1", "--samples", "100"]);
    assert!(stdout(&o).starts_with("RESULT selfsup-augment"), "{}", stdout(&o));
    let o = selfsup(&["bench", "augment", "--data", &cifar_spec("test", 10), "--recipe", "byol-cifar", "--device", "cpu", "--batch", "50", "--samples", "100"]);
    assert!(stdout(&o).starts_with("RESULT selfsup-augment-batched") && stdout(&o).contains("samples=100"), "{}{}", stdout(&o), stderr(&o));
    // the step benchmarks: a RESULT line with a finite loss; the CUDA-graph experiment is refused
    // off CUDA with an error naming the flag (its replay is checked on a GPU, tests/cuda_graph.rs)
    let tiny = ["--device", "cpu", "--width", "8", "--hidden", "64", "--batch", "8", "--steps", "2", "--warmup", "3"];
    let o = selfsup(&[&["bench", "step"][..], &tiny, &["--count-ops"]].concat());
    let line = stdout(&o).lines().find(|l| l.starts_with("RESULT")).unwrap_or_default().to_string();
    let loss: f64 = line.split("final_loss=").nth(1).and_then(|v| v.trim().parse().ok()).unwrap_or(f64::NAN);
    assert!(o.status.success() && loss.is_finite(), "{}{}", stdout(&o), stderr(&o));
    // a ResNet-18 BYOL step (two views through online and target nets, backward, updates)
    // dispatches thousands of operators whatever the width; PyTorch's reference about 4,100
    let ops_per_step = |o: &std::process::Output| -> i64 { stdout(o).lines().find_map(|l| l.strip_prefix("ops_per_step=")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0) };
    let ops = ops_per_step(&o);
    assert!((2_000..20_000).contains(&ops), "ops_per_step {ops}: {}", stdout(&o));
    // --set reaches the benchmark's model: an encoder without BatchNorm dispatches fewer operators
    // (each of ResNet-18's 20 BN layers is gone, in both networks, forward and backward), and a
    // value out of range is refused naming its key
    let o = selfsup(&[&["bench", "step"][..], &tiny, &["--count-ops", "--set", "model.norm=\"none\""]].concat());
    let no_bn = ops_per_step(&o);
    assert!(o.status.success() && stdout(&o).contains("set=model.norm=\"none\"") && no_bn > 0 && no_bn < ops - 40, "{ops} vs {no_bn}: {}{}", stdout(&o), stderr(&o));
    let o = selfsup(&[&["bench", "step"][..], &tiny, &["--method", "mocov2", "--set", "mocov2.queue_size=0"]].concat());
    assert_clean_error(&o, 2, &["config field `mocov2.queue_size` = 0"]);
    let data = cifar_spec("test", 2);
    let o = selfsup(&[&["bench", "train", "--data", &data][..], &tiny].concat());
    assert!(o.status.success() && stdout(&o).contains("RESULT steps=2 "), "{}{}", stdout(&o), stderr(&o));
    let o = selfsup(&[&["bench", "train", "--data", &data][..], &tiny, &["--count-ops"]].concat());
    assert_clean_error(&o, 1, &["--count-ops is for bench step"]);
    for cmd in [&["bench", "step"][..], &["bench", "train", "--data", &data]] {
        let o = selfsup(&[cmd, &tiny, &["--cuda-graph"]].concat());
        assert_clean_error(&o, 1, &["--cuda-graph needs --device cuda (got --device cpu)"]);
    }
}

fn train_args(out: &Path, data: &str, epochs: usize, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = ["train", "--method", "byol", "--data", data, "--out", out.to_str().unwrap(), "--epochs", &epochs.to_string(), "--batch", "16", "--seed", "3", "--quiet"].iter().map(|s| s.to_string()).collect();
    with_sets(&mut a, &tiny_model_sets());
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn final_weights(run: &Path) -> Vec<u8> {
    let latest = std::fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    std::fs::read(run.join("checkpoints").join(latest.trim()).join("weights.safetensors")).unwrap()
}

#[test]
fn tiny_byol_run_pretrain_checkpoint_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let data = cifar_spec("train", 20);
    let o = run_owned(&train_args(&run, &data, 2, &["--json"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(summary["steps"].as_u64(), Some(2 * (200 / 16)));
    assert!(summary["final_loss"].as_f64().unwrap().is_finite());
    assert!(Path::new(summary["checkpoint"].as_str().unwrap()).join("weights.safetensors").exists());
    assert!(run.join("config.toml").exists());
    let l = losses(&run);
    assert_eq!(l.len(), 24);
    // BYOL's symmetric loss lies in [0, 8]
    assert!(l.iter().all(|v| (0.0..=8.0).contains(v)), "{l:?}");

    let test = cifar_spec("test", 10);
    let o = selfsup(&["eval", "knn", "--checkpoint", run.to_str().unwrap(), "--train", &data, "--test", &test, "--k", "20", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let top1 = v["knn_top1"].as_f64().unwrap();
    assert!(v["knn_top5"].as_f64().unwrap() >= top1);
    assert_eq!(v["k"].as_u64(), Some(20));
    // per class: ten test images of each of the ten classes, so their mean is the top-1
    let per_class: Vec<f64> = v["per_class_top1"].as_array().unwrap().iter().map(|a| a.as_f64().unwrap()).collect();
    assert_eq!(per_class.len(), 10);
    assert!((per_class.iter().sum::<f64>() / 10.0 - top1).abs() < 1e-9, "{per_class:?} vs {top1}");
    // two protocols on one pass of features: one line each, the same as each alone
    let o = selfsup(&["eval", "knn", "--checkpoint", run.to_str().unwrap(), "--train", &data, "--test", &test, "--k", "200,20", "--temperature", "0.1,0.07", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let both: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(both.len(), 2);
    let alone = selfsup(&["eval", "knn", "--checkpoint", run.to_str().unwrap(), "--train", &data, "--test", &test, "--k", "20", "--temperature", "0.07", "--json"]);
    assert_eq!(both[1], serde_json::from_str::<serde_json::Value>(stdout(&alone).trim()).unwrap());
    assert_eq!((both[0]["k"].as_u64(), both[0]["temperature"].as_f64()), (Some(200), Some(0.1)));
    let o = selfsup(&["eval", "linear", "--checkpoint", run.to_str().unwrap(), "--train", &data, "--test", &test, "--epochs", "300", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    // a linear probe fits its own 200 training features far better than chance (10%)
    assert!(v["linear_train_top1"].as_f64().unwrap() > 0.35, "{v}");
    assert_eq!(v["train_views"], "fixed");
    assert_eq!((v["optimizer"].as_str(), v["lr"].as_f64(), v["weight_decay"].as_f64(), v["features"].as_str()), (Some("adamw"), Some(0.01), Some(1e-4), Some("standardized")), "{v}");
    // SimCLR's / solo-learn's form: SGD with momentum on the raw features, its own defaults
    let sgd = |lr: &[&str]| {
        let mut a = vec!["eval", "linear", "--checkpoint", run.to_str().unwrap(), "--train", &data, "--test", &test, "--epochs", "300", "--optimizer", "sgd", "--features", "raw", "--json"];
        a.extend(lr);
        let o = selfsup(&a);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect::<Vec<serde_json::Value>>()
    };
    let v = sgd(&[]).remove(0);
    // several learning rates on one pass of features: one line each, each as the probe alone
    let two = sgd(&["--lr", "0.1,1"]);
    assert_eq!(two.len(), 2);
    assert_eq!(two[0], v);
    assert_eq!(two[1]["lr"].as_f64(), Some(1.0));
    assert_ne!(two[1]["linear_train_top1"], v["linear_train_top1"], "another lr, another probe");
    assert_eq!((v["optimizer"].as_str(), v["lr"].as_f64(), v["weight_decay"].as_f64(), v["features"].as_str()), (Some("sgd"), Some(0.1), Some(0.0), Some("raw")), "{v}");
    // solo-learn's step decay instead of the cosine: another probe, named in the JSON
    let step = sgd(&["--schedule", "step"]).remove(0);
    assert_eq!((step["schedule"].as_str(), v["schedule"].as_str()), (Some("step"), Some("cosine")));
    assert_ne!((&step["linear_train_top1"], &step["linear_top1"]), (&v["linear_train_top1"], &v["linear_top1"]), "another schedule, another probe");
    // (this tiny encoder's raw features are small, so 300 steps of SGD at 0.1 fit them less
    // than AdamW fits the standardised ones; still well over chance, 10%)
    assert!(v["linear_train_top1"].as_f64().unwrap() > 0.15, "{v}");
    // --augment: new seeded views every epoch (tests/math_references.rs and eval::features test
    // what they are); the same seed gives the same probe, the result is labelled
    let augmented = |seed: &str| {
        let o = selfsup(&["eval", "linear", "--checkpoint", run.to_str().unwrap(), "--train", &data, "--test", &test, "--epochs", "3", "--augment", "--seed", seed, "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_str::<serde_json::Value>(stdout(&o).trim()).unwrap()
    };
    let a = augmented("3");
    assert_eq!(a["train_views"], "augmented");
    assert_eq!(a, augmented("3"));
    // two probes see the same views: the first is the default probe's result
    let o = selfsup(&["eval", "linear", "--checkpoint", run.to_str().unwrap(), "--train", &data, "--test", &test, "--epochs", "3", "--augment", "--seed", "3", "--lr", "0.01,0.03", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!((lines.len(), &lines[0], lines[1]["lr"].as_f64()), (2, &a, Some(0.03)));
    // --val-fraction: the learning rate chosen on held-out training images (a quarter of each
    // class: 5 of 20), the test set read once, by the chosen probe retrained on every image
    let linear = |extra: &[&str]| {
        let mut a = vec!["eval", "linear", "--checkpoint", run.to_str().unwrap(), "--train", &data, "--test", &test, "--seed", "4", "--json"];
        a.extend(extra);
        let o = selfsup(&a);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect::<Vec<serde_json::Value>>()
    };
    for views in [&["--epochs", "100"][..], &["--epochs", "3", "--augment"]] {
        let lines = linear(&[views, &["--lr", "0.0003,0.01,3", "--val-fraction", "0.25"]].concat());
        assert_eq!(lines.len(), 4, "{lines:?}");
        let val: Vec<f64> = lines[..3].iter().map(|l| l["val_top1"].as_f64().unwrap()).collect();
        for l in &lines[..3] {
            assert_eq!((l["val_images"].as_u64(), l["fit_images"].as_u64(), l["val_fraction"].as_f64()), (Some(50), Some(150), Some(0.25)), "{l}");
            assert!(l.get("linear_top1").is_none(), "a validation line read the test set: {l}");
        }
        let best = (0..3).fold(0, |b, i| if val[i] > val[b] { i } else { b });
        let chosen = &lines[3];
        assert_eq!((chosen["lr"].as_f64(), chosen["val_top1"].as_f64(), chosen["selected_by"].as_str()), (lines[best]["lr"].as_f64(), Some(val[best]), Some("validation")), "{lines:?}");
        // the chosen probe retrained on every training image is the probe run alone at its lr
        let lr = chosen["lr"].to_string();
        let alone = linear(&[views, &["--lr", &lr]].concat()).remove(0);
        assert_eq!((&chosen["linear_top1"], &chosen["linear_train_top1"]), (&alone["linear_top1"], &alone["linear_train_top1"]), "{chosen} vs {alone}");
    }
    let emb = dir.path().join("emb.safetensors");
    let o = selfsup(&["embed", "--checkpoint", run.to_str().unwrap(), "--data", &test, "--out", emb.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let t = tch::Tensor::read_safetensors(&emb).unwrap();
    let feats = &t.iter().find(|(n, _)| n == "features").unwrap().1;
    assert_eq!(feats.size(), vec![100, 32]);
    // analyze measures each space through its own heads: encoder, + projector, + predictor
    let analyze = |space: &str, checkpoint: &str, sets: &[&str]| {
        let mut args: Vec<String> = ["analyze", "--checkpoint", checkpoint, "--data", &test, "--space", space, "--json"].map(String::from).to_vec();
        let mut all = tiny_model_sets();
        all.extend(sets.iter().map(|s| s.to_string()));
        with_sets(&mut args, &all);
        run_owned(&args)
    };
    let spaces: Vec<serde_json::Value> = ["encoder", "projector", "predictor"]
        .iter()
        .map(|space| {
            let o = analyze(space, run.to_str().unwrap(), &[]);
            assert!(o.status.success(), "{space}: {}", stderr(&o));
            serde_json::from_str(stdout(&o).trim()).unwrap()
        })
        .collect();
    for w in spaces.windows(2) {
        assert!(w[0]["z_std"].as_f64().is_some() && w[0]["z_std"] != w[1]["z_std"] && w[0]["effective_rank"] != w[1]["effective_rank"], "{w:?}");
    }
    // --recipe none: each image paired with itself, un-augmented (eval mode), so alignment is 0
    let o = run_owned(&[&["analyze", "--checkpoint", run.to_str().unwrap(), "--data", &test, "--space", "encoder", "--json", "--recipe", "none"].map(String::from)[..]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let plain: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(plain["alignment"].as_f64(), Some(0.0), "{plain}");
    assert!(spaces[0]["alignment"].as_f64().unwrap() > 0.0 && plain["uniformity"] != spaces[0]["uniformity"], "{plain} vs {}", spaces[0]);
    let o = run_owned(&[&["analyze", "--checkpoint", run.to_str().unwrap(), "--data", &test, "--recipe", "jpeg"].map(String::from)[..]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--recipe jpeg"), "{}", stderr(&o));
    // several networks side by side, on the same images and augmentations, with their spectra
    let png = dir.path().join("spectrum.png");
    let (ckpt, png_arg) = (run.to_str().unwrap(), png.to_str().unwrap());
    let pca = dir.path().join("pca.png");
    let mut args: Vec<String> = ["analyze", "--checkpoint", ckpt, "--checkpoint", "random", "--data", &test, "--space", "encoder", "--spectrum", png_arg, "--pca", pca.to_str().unwrap(), "--json"].map(String::from).to_vec();
    with_sets(&mut args, &tiny_model_sets());
    let o = run_owned(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2, "one line per network");
    assert_eq!(rows[0]["checkpoint"], ckpt);
    assert_eq!(rows[1]["checkpoint"], "random");
    for key in ["alignment", "uniformity", "z_std", "effective_rank", "batch_mean_cos"] {
        // equal up to float32 rounding (BLAS results may depend on buffer alignment)
        let (a, b) = (rows[0][key].as_f64().unwrap(), spaces[0][key].as_f64().unwrap());
        assert!((a - b).abs() <= 1e-4 * b.abs().max(1e-3), "{key}: the trained network measured alone ({b}) and beside another ({a})");
    }
    assert_ne!(rows[0]["effective_rank"], rows[1]["effective_rank"]);
    assert_eq!(&std::fs::read(&png).unwrap()[1..4], b"PNG");
    let csv = std::fs::read_to_string(png.with_extension("csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("network,k,eigenvalue,cumulative_variance"));
    let table: Vec<(String, usize, f64, f64)> = lines
        .map(|l| {
            let f: Vec<&str> = l.rsplitn(4, ',').collect(); // the name may hold commas
            (f[3].trim_matches('"').to_string(), f[2].parse().unwrap(), f[1].parse().unwrap(), f[0].parse().unwrap())
        })
        .collect();
    for (i, row) in rows.iter().enumerate() {
        let name = row["checkpoint"].as_str().unwrap();
        let mine: Vec<&(String, usize, f64, f64)> = table.iter().filter(|r| r.0 == name).collect();
        assert_eq!(mine.len(), 32, "{name}: one eigenvalue per encoder dimension");
        assert_eq!(row["dims"].as_u64(), Some(32));
        assert!(mine.iter().enumerate().all(|(k, r)| r.1 == k + 1 && r.2 >= 0.0), "{name}: ranks 1..=32, no negative eigenvalue");
        assert!(mine.windows(2).all(|w| w[0].2 >= w[1].2), "{name}: descending");
        assert!((mine[31].3 - 1.0).abs() < 1e-5, "{name}: all the variance");
        // unit vectors: the total variance is 1 − ‖mean‖², in (0, 1]
        let total: f64 = mine.iter().map(|r| r.2).sum();
        let reported = row["total_variance"].as_f64().unwrap();
        assert!((total - reported).abs() < 1e-4 * reported && reported > 0.0 && reported <= 1.0 + 1e-9, "{name}: total variance {reported} (CSV sum {total})");
        // the printed count of directions is where the cumulative share first reaches 99%
        let k99 = mine.iter().position(|r| r.3 >= 0.99 - 1e-6).unwrap() + 1;
        assert_eq!(row["dims_99pct_variance"].as_u64(), Some(k99 as u64), "network {i}");
        // --pca: one point per image, with its label; the coordinates on the two leading
        // components are centred and their variances are the two largest eigenvalues above
        let points: Vec<(i64, f64, f64)> = std::fs::read_to_string(pca.with_extension("csv"))
            .unwrap()
            .lines()
            .skip(1)
            .filter(|l| l.starts_with(&format!("\"{name}\",")))
            .map(|l| {
                let f: Vec<&str> = l.rsplitn(5, ',').collect();
                (f[2].parse().unwrap(), f[1].parse().unwrap(), f[0].parse().unwrap())
            })
            .collect();
        assert_eq!(points.len() as u64, row["images"].as_u64().unwrap(), "{name}");
        assert!(points.iter().all(|p| (0..10).contains(&p.0)), "{name}: CIFAR-10 labels");
        let n = points.len() as f64;
        for (k, coord) in [|p: &(i64, f64, f64)| p.1, |p: &(i64, f64, f64)| p.2].iter().enumerate() {
            let mean = points.iter().map(coord).sum::<f64>() / n;
            let var = points.iter().map(|p| (coord(p) - mean).powi(2)).sum::<f64>() / n;
            assert!(mean.abs() < 1e-6 && (var - mine[k].2).abs() < 1e-4 * mine[0].2, "{name}, PC {}: mean {mean}, variance {var} vs eigenvalue {}", k + 1, mine[k].2);
        }
    }
    assert_eq!(&std::fs::read(&pca).unwrap()[1..4], b"PNG");
    let mut args: Vec<String> = ["analyze", "--checkpoint", ckpt, "--data", &test, "--spectrum", "spectrum.svg"].map(String::from).to_vec();
    with_sets(&mut args, &tiny_model_sets());
    assert_clean_error(&run_owned(&args), 2, &["--spectrum spectrum.svg", ".png"]);
    // no predictor to measure: one clear error, for SimCLR and for BYOL without one
    for sets in [&["method=simclr"][..], &["byol.predictor=\"none\""]] {
        assert_clean_error(&analyze("predictor", "random", sets), 2, &["--space predictor", "has no predictor"]);
    }
    // the random-init baseline runs from config alone
    let mut args: Vec<String> = ["eval", "knn", "--checkpoint", "random", "--train", &data, "--test", &test, "--json"].iter().map(|s| s.to_string()).collect();
    with_sets(&mut args, &tiny_model_sets());
    let o = run_owned(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    // a second run into the same folder without --resume is refused
    let o = run_owned(&train_args(&run, &data, 2, &[]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--resume"));
}

#[test]
fn resume_equals_uninterrupted_and_seeds_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let data = cifar_spec("train", 12); // 120 images, batch 16 -> 7 steps per epoch
    let full = dir.path().join("full");
    let o = run_owned(&train_args(&full, &data, 2, &[]));
    assert!(o.status.success(), "{}", stderr(&o));
    let again = dir.path().join("again");
    let o = run_owned(&train_args(&again, &data, 2, &[]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(losses(&full), losses(&again), "same config and seed, same loss curve");
    assert_eq!(final_weights(&full), final_weights(&again));

    // interrupted mid-epoch after 5 of 14 steps, then resumed
    let parts = dir.path().join("parts");
    let mut first = train_args(&parts, &data, 2, &[]);
    first.extend(["--stop-after-steps".to_string(), "5".to_string()]);
    let o = run_owned(&first);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(losses(&parts).len(), 5);
    let o = run_owned(&train_args(&parts, &data, 2, &["--resume"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(losses(&parts), losses(&full));
    assert!(final_weights(&parts) == final_weights(&full), "resumed weights differ from the uninterrupted run");

    // a different seed gives a different curve (the comparison above can fail)
    let other = dir.path().join("other");
    let mut a = train_args(&other, &data, 1, &[]);
    a.extend(["--set".into(), "train.seed=4".into()]);
    assert!(run_owned(&a).status.success());
    assert_ne!(losses(&other)[..7], losses(&full)[..7]);
}

/// 24 synthetic images as lossless PNGs in class folders under `dir/png` (so selfsup and
/// torchvision see the same pixels), and their folder spec.
fn png_folder(dir: &Path) -> (std::path::PathBuf, String) {
    let images = dir.join("png");
    let ds = selfsup::data::open("synthetic:24@test").unwrap();
    for i in 0..ds.len() {
        let class = images.join(&ds.classes[ds.label(i).unwrap() as usize]);
        std::fs::create_dir_all(&class).unwrap();
        ds.image(i).unwrap().save_png(&class.join(format!("{i:03}.png"))).unwrap();
    }
    let spec = format!("folder:{}", images.display());
    (images, spec)
}

#[test]
fn export_loads_into_torchvision_with_identical_features() {
    let dir = tempfile::tempdir().unwrap();
    let (images, spec) = png_folder(dir.path());
    // BatchNorm; actnorm, bn-center and bn-scale exported as the BatchNorm that computes their map
    for norm in ["bn", "actnorm", "bn-center", "bn-scale"] {
        let run = dir.path().join(format!("run-{norm}"));
        let mut a: Vec<String> = ["train", "--data", &spec, "--out", run.to_str().unwrap(), "--epochs", "1", "--batch", "8", "--quiet"].iter().map(|s| s.to_string()).collect();
        with_sets(&mut a, &["model.width=64".into(), "projector.hidden=64".into(), "predictor.hidden=64".into(), "optim.name=sgd".into(), "optim.warmup_epochs=0".into(), format!("model.norm=\"{norm}\"")]);
        let o = run_owned(&a);
        assert!(o.status.success(), "{}", stderr(&o));
        let export = dir.path().join(format!("encoder-{norm}.safetensors"));
        let emb = dir.path().join(format!("emb-{norm}.safetensors"));
        assert!(selfsup(&["export", "--checkpoint", run.to_str().unwrap(), "--out", export.to_str().unwrap()]).status.success());
        assert!(selfsup(&["embed", "--checkpoint", run.to_str().unwrap(), "--data", &spec, "--out", emb.to_str().unwrap()]).status.success());
        let o = std::process::Command::new(python())
            .arg(root().join("tests/reference/torchvision_features.py"))
            .args([export.to_str().unwrap(), emb.to_str().unwrap(), images.to_str().unwrap(), "resnet18", "cifar"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{norm}: {}", stderr(&o));
        let line = stdout(&o);
        let diff: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(diff < 1e-5, "{norm}: {line}");
        // and read back: the exported file as `--checkpoint` gives the run's features
        let again = dir.path().join(format!("emb-{norm}-from-export.safetensors"));
        let o = selfsup(&["embed", "--checkpoint", export.to_str().unwrap(), "--data", &spec, "--out", again.to_str().unwrap()]);
        assert!(o.status.success(), "{norm}: {}", stderr(&o));
        assert!(stderr(&o).contains("torchvision resnet18, width 64, cifar stem"), "{}", stderr(&o));
        // (BatchNorm exactly; the others to rounding, as the BatchNorm that computes their map)
        let diff = max_abs_difference(&emb, &again);
        assert!(diff < 1e-6, "{norm}: the export read back gives other features ({diff})");
    }
}

fn max_abs_difference(a: &Path, b: &Path) -> f64 {
    let features = |p: &Path| tch::Tensor::read_safetensors(p).unwrap().into_iter().find(|(k, _)| k == "features").unwrap().1;
    let (a, b) = (features(a), features(b));
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

/// Another library's encoder read as `--checkpoint FILE`: torchvision ResNets of both block kinds
/// and all three stems, written by tests/reference/torchvision_model.py as solo-learn keeps them
/// (`backbone.` beside a classifier, a head and `momentum_backbone.`) and as lightly does
/// (numbered `nn.Sequential` children under `backbone.`, `backbone_momentum.`), in safetensors,
/// `torch.save`'s state dict and a Lightning checkpoint (with a pickled object of a class selfsup
/// cannot know), give torchvision's own features; solo-learn's padding-2 CIFAR stem needs
/// `model.stem=cifar-pad2` and gives other features without it; kNN and analyze take the file
/// too, and files that hold no usable ResNet are refused with the reason.
#[test]
fn torchvision_encoders_read_from_files_give_torchvision_features() {
    let dir = tempfile::tempdir().unwrap();
    let (images, spec) = png_folder(dir.path());
    for (arch, stem, form, container) in [("resnet18", "cifar", "named", "safetensors"), ("resnet50", "imagenet", "numbered", "pth"), ("resnet18", "cifar-pad2", "named", "ckpt")] {
        let name = format!("{arch}-{stem}");
        let model = dir.path().join(format!("{name}.{container}"));
        let reference = dir.path().join(format!("{name}-torchvision.safetensors"));
        let o = std::process::Command::new(python())
            .arg(root().join("tests/reference/torchvision_model.py"))
            .args([model.to_str().unwrap(), reference.to_str().unwrap(), images.to_str().unwrap(), arch, stem, form, container])
            .output()
            .unwrap();
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let within = if container == "ckpt" { "state_dict." } else { "" };
        let embed = |out: &Path, sets: &[&str]| {
            let mut args = vec!["embed", "--checkpoint", model.to_str().unwrap(), "--data", &spec, "--out", out.to_str().unwrap()];
            args.extend(sets);
            let o = selfsup(&args);
            assert!(o.status.success(), "{name}: {}", stderr(&o));
            stderr(&o)
        };
        let ours = dir.path().join(format!("{name}-selfsup.safetensors"));
        let pad2 = ["--set", "model.stem=\"cifar-pad2\""];
        let log = embed(&ours, if stem == "cifar-pad2" { &pad2 } else { &[] });
        assert!(log.contains(&format!("torchvision {arch}, width 64, {stem} stem")) && log.contains(&format!("under `{within}backbone.`")), "{log}");
        let not_read = if form == "named" { ["backbone.fc.* (2)", "projector.* (2)", "momentum_backbone.* ("] } else { ["numbered nn.Sequential", "projection_head.* (2)", "backbone_momentum.* ("] };
        assert!(not_read.iter().all(|s| log.contains(&format!("{within}{s}"))), "{log}");
        let diff = max_abs_difference(&reference, &ours);
        assert!(diff < 1e-5, "{name}: features differ from torchvision's by {diff}");
        // read at the default recipe's 32-pixel views, the ImageNet stem is noted
        assert_eq!(log.contains("note: an ImageNet-stem encoder") && log.contains("at 32×32 views"), stem == "imagenet", "{log}");
        if form == "numbered" {
            // `export` converts it to torchvision's plain names: torchvision loads the result
            // strictly and gives the same features
            let converted = dir.path().join(format!("{name}-converted.safetensors"));
            let o = selfsup(&["export", "--checkpoint", model.to_str().unwrap(), "--out", converted.to_str().unwrap()]);
            assert!(o.status.success(), "{}", stderr(&o));
            let o = std::process::Command::new(python())
                .arg(root().join("tests/reference/torchvision_features.py"))
                .args([converted.to_str().unwrap(), ours.to_str().unwrap(), images.to_str().unwrap(), arch, stem])
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", stderr(&o));
            let diff: f64 = stdout(&o).split_whitespace().nth(1).unwrap().parse().unwrap();
            assert!(diff < 1e-5, "{}", stdout(&o));
        }
        if stem == "cifar-pad2" {
            let unpadded = dir.path().join(format!("{name}-padding-1.safetensors"));
            assert!(embed(&unpadded, &[]).contains("need --set model.stem=cifar-pad2"));
            assert!(max_abs_difference(&reference, &unpadded) > 1e-3, "the stem's padding changes the features");
        }
    }
    let model = dir.path().join("resnet18-cifar.safetensors");
    let m = model.to_str().unwrap();
    let o = selfsup(&["eval", "knn", "--checkpoint", m, "--train", &spec, "--test", &spec, "--k", "1", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let knn: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(knn["knn_top1"].as_f64(), Some(1.0), "each test image is its own nearest reference: {knn}");
    let o = selfsup(&["analyze", "--checkpoint", m, "--data", &spec, "--space", "encoder", "--batch", "24", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = selfsup(&["analyze", "--checkpoint", m, "--data", &spec]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--space encoder"), "{}", stderr(&o));

    // refused, naming the file and the reason
    let features = dir.path().join("resnet18-cifar-selfsup.safetensors");
    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &std::fs::read(&model).unwrap()[..100]).unwrap();
    let not_zip = dir.path().join("legacy.pth");
    std::fs::write(&not_zip, b"\x80\x02not a zip archive").unwrap();
    for (file, reason) in [(&features, "holds no torchvision-named ResNet"), (&truncated, "unreadable safetensors file"), (&dir.path().join("none.safetensors"), "no such file"), (&not_zip, "not a zip-format torch.save file")] {
        let o = selfsup(&["eval", "knn", "--checkpoint", file.to_str().unwrap(), "--train", &spec, "--test", &spec]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(file.file_name().unwrap().to_str().unwrap()) && err.contains(reason) && err.lines().count() == 1, "{err}");
    }
}

/// `model.init`: a run started from an exported encoder begins with that encoder, online and
/// target (trained at a learning rate of 1e-12, its convolutions end equal to the file's to 1e-9,
/// while a run without it would start from its seed's random init), and files of another
/// architecture or a norm without BatchNorm's tensors are refused naming the key.
#[test]
fn model_init_starts_online_and_target_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = "synthetic:96";
    let first = dir.path().join("first");
    assert!(run_owned(&train_args(&first, data, 1, &[])).status.success());
    let file = dir.path().join("first.safetensors");
    assert!(selfsup(&["export", "--checkpoint", first.to_str().unwrap(), "--out", file.to_str().unwrap()]).status.success());
    let init = format!("model.init=\"{}\"", file.display());
    let second = dir.path().join("second");
    let o = run_owned(&train_args(&second, data, 1, &["--set", &init, "--set", "optim.lr=1e-12", "--set", "optim.weight_decay=0", "--set", "train.seed=7"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("encoder from") && stderr(&o).contains("torchvision resnet18, width 4"), "{}", stderr(&o));
    let exported: std::collections::HashMap<String, tch::Tensor> = tch::Tensor::read_safetensors(&file).unwrap().into_iter().collect();
    let latest = std::fs::read_to_string(second.join("checkpoints/latest")).unwrap();
    let saved: std::collections::HashMap<String, tch::Tensor> = tch::Tensor::read_safetensors(second.join("checkpoints").join(latest.trim()).join("weights.safetensors")).unwrap().into_iter().collect();
    let mut convs = 0;
    for (key, t) in &exported {
        if !key.contains("conv") && !key.contains("downsample.0") {
            continue; // BatchNorm statistics move with the batches
        }
        for branch in ["online", "target"] {
            let ours = &saved[&format!("{branch}.encoder.{key}")];
            let diff = (ours - t).abs().max().double_value(&[]);
            assert!(diff < 1e-9, "{branch}.encoder.{key} differs from the file by {diff}");
        }
        convs += 1;
    }
    assert_eq!(convs, 20, "a ResNet-18 has 20 convolutions");
    // per-device BatchNorm has BatchNorm's tensors: it starts from the file too
    let split = dir.path().join("split");
    let o = run_owned(&train_args(&split, data, 1, &["--set", &init, "--set", "optim.lr=1e-12", "--set", "model.norm=\"splitbn\"", "--set", "model.norm_splits=2"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let latest = std::fs::read_to_string(split.join("checkpoints/latest")).unwrap();
    let saved: std::collections::HashMap<String, tch::Tensor> = tch::Tensor::read_safetensors(split.join("checkpoints").join(latest.trim()).join("weights.safetensors")).unwrap().into_iter().collect();
    for key in ["conv1.weight", "layer4.1.conv2.weight"] {
        assert!((&saved[&format!("online.encoder.{key}")] - &exported[key]).abs().max().double_value(&[]) < 1e-9, "splitbn: {key}");
    }

    for (set, expected) in [("model.width=8", "holds a resnet18 of width 4"), ("model.norm=\"ln\"", "model.norm"), ("model.norm=\"bn-center\"", "model.norm")] {
        let o = run_owned(&train_args(&dir.path().join("refused"), data, 1, &["--set", &init, "--set", set]));
        assert_eq!(o.status.code(), Some(2), "{set}: {}", stderr(&o));
        assert!(stderr(&o).contains("model.init") && stderr(&o).contains(expected), "{set}: {}", stderr(&o));
    }
}

/// The online linear probe (`eval.online_probe`) in training: it never changes the method (the
/// loss curve is bit-identical with and without it), it is reported where it should be, its
/// tensors are in the checkpoint and a resumed run continues it exactly. (That it learns is
/// checked on features with a known Bayes accuracy in math_references.rs; this tiny encoder's
/// features hardly separate the classes.)
#[test]
fn the_online_probe_leaves_the_method_alone_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = "synthetic:320"; // ten classes, 20 steps per epoch at batch 16
    let eval = ["--set", "eval.test=\"synthetic:200@test\"", "--set", "eval.knn_every=1"];
    let probe = [&eval[..], &["--set", "eval.online_probe=true"]].concat();
    let without = dir.path().join("without");
    let o = run_owned(&train_args(&without, data, 3, &eval));
    assert!(o.status.success(), "{}", stderr(&o));
    let with = dir.path().join("with");
    let o = run_owned(&train_args(&with, data, 3, &probe));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(losses(&with), losses(&without), "the probe changed the method's loss curve");

    let records = selfsup::train::metrics::read(&with.join("metrics.jsonl")).unwrap();
    let series = |key: &str| -> Vec<f64> { records.iter().filter_map(|r| r.get(key).and_then(|v| v.as_f64())).collect() };
    let (train_top1, held_out) = (series("online_train_top1"), series("online_linear_top1"));
    assert_eq!(train_top1.len(), 60, "one training accuracy per logged step");
    assert_eq!(held_out.len(), 4, "one held-out accuracy per epoch and one at the end");
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(with.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["online_linear_top1"].as_f64(), held_out.last().copied(), "{summary}");
    assert!(series("online_probe_loss").iter().all(|l| l.is_finite() && *l > 0.0));
    let without_summary = std::fs::read_to_string(without.join("summary.json")).unwrap();
    assert!(!without_summary.contains("online_linear_top1"), "{without_summary}");
    let without_log = std::fs::read_to_string(without.join("metrics.jsonl")).unwrap();
    assert!(!without_log.contains("online"), "a run without the probe logs nothing of it");

    // interrupted after 7 steps, then resumed: the probe continues exactly
    let parts = dir.path().join("parts");
    let mut first = train_args(&parts, data, 3, &probe);
    first.extend(["--stop-after-steps".to_string(), "7".to_string()]);
    assert!(run_owned(&first).status.success());
    let mut again = train_args(&parts, data, 3, &probe);
    again.push("--resume".into());
    let o = run_owned(&again);
    assert!(o.status.success(), "{}", stderr(&o));
    let resumed = selfsup::train::metrics::read(&parts.join("metrics.jsonl")).unwrap();
    let resumed_top1: Vec<f64> = resumed.iter().filter_map(|r| r.get("online_train_top1").and_then(|v| v.as_f64())).collect();
    assert_eq!(resumed_top1, train_top1);
    assert!(final_weights(&parts) == final_weights(&with), "resumed weights (probe included) differ from the uninterrupted run");

    // unlabelled training data is refused up front, naming the key
    let flat = dir.path().join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    let ds = selfsup::data::open("synthetic:20").unwrap();
    for i in 0..ds.len() {
        ds.image(i).unwrap().save_png(&flat.join(format!("{i}.png"))).unwrap();
    }
    let o = run_owned(&train_args(&dir.path().join("unlabelled"), &format!("folder:{}", flat.display()), 1, &probe));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("eval.online_probe") && stderr(&o).contains("no labels"), "{}", stderr(&o));
}

/// `eval knn --neighbours`: with the test set as its own reference set every query's nearest
/// image is itself (cosine 1), the CSV's neighbours are the largest cosines of `embed`'s features
/// by a plain loop over every pair, and the picture holds each query beside that neighbour —
/// the same pixels — framed in the same-class colour.
#[test]
fn knn_neighbours_show_the_largest_cosines_and_their_images() {
    let dir = tempfile::tempdir().unwrap();
    let data = "synthetic:40@test";
    let png = dir.path().join("nb.png");
    let o = selfsup(&["eval", "knn", "--checkpoint", "random", "--set", "model.width=8", "--train", data, "--test", data, "--neighbours", png.to_str().unwrap(), "--queries", "5", "--show", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("5 test images, each beside its 4 nearest training images"), "{}", stderr(&o));
    let emb = dir.path().join("emb.safetensors");
    assert!(selfsup(&["embed", "--checkpoint", "random", "--set", "model.width=8", "--data", data, "--out", emb.to_str().unwrap()]).status.success());
    let tensors = tch::Tensor::read_safetensors(&emb).unwrap();
    let get = |k: &str| tensors.iter().find(|(n, _)| n == k).unwrap().1.shallow_clone();
    let (f, y) = (get("features").to_kind(tch::Kind::Double), Vec::<i64>::try_from(get("labels")).unwrap());
    let rows: Vec<Vec<f64>> = (0..f.size()[0]).map(|i| Vec::try_from(f.get(i)).unwrap()).collect();
    let csv = std::fs::read_to_string(dir.path().join("nb.csv")).unwrap();
    let lines: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(lines.len(), 5 * 4, "{csv}");
    let mut queries = Vec::new();
    for l in &lines {
        let (q, rank, j, cos): (usize, usize, usize, f64) = (l[0].parse().unwrap(), l[2].parse().unwrap(), l[3].parse().unwrap(), l[5].parse().unwrap());
        if !queries.contains(&q) {
            queries.push(q);
        }
        let mut all: Vec<(usize, f64)> = rows.iter().enumerate().map(|(k, r)| (k, r.iter().zip(&rows[q]).map(|(a, b)| a * b).sum())).collect();
        all.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap());
        assert_eq!(j, all[rank - 1].0, "query {q} rank {rank}: {csv}");
        assert!((cos - all[rank - 1].1).abs() < 1e-5, "query {q} rank {rank}");
        if rank == 1 {
            assert_eq!(j, q, "a query's nearest image in its own set is itself");
            assert!(cos > 0.99999);
        }
    }
    // one query per class, the first image of each
    let classes: Vec<i64> = queries.iter().map(|&q| y[q]).collect();
    assert_eq!(classes, (0..5).collect::<Vec<i64>>());
    assert!(queries.iter().all(|&q| (0..q).all(|i| y[i] != y[q])), "{queries:?}");
    // the picture: 5 rows of query + 4 neighbours, 64-pixel cells 4 apart
    let img = image::open(&png).unwrap().to_rgb8();
    assert_eq!((img.width(), img.height()), (5 * 68 + 4, 5 * 68 + 4));
    for r in 0..5u32 {
        let (top, query_left, first_left) = (4 + r * 68, 4, 4 + 68);
        for (dy, dx) in [(10, 10), (32, 40), (60, 5)] {
            assert_eq!(img.get_pixel(query_left + dx, top + dy), img.get_pixel(first_left + dx, top + dy), "row {r}: the nearest neighbour is the query's own image");
        }
        assert_eq!(img.get_pixel(first_left, top).0, [0, 160, 60], "row {r}: same class, green frame");
    }
    // not a PNG name: a usage error before any work
    let o = selfsup(&["eval", "knn", "--checkpoint", "random", "--train", data, "--test", data, "--neighbours", "nb.jpg"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
