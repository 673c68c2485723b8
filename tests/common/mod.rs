//! Helpers shared by the integration tests.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The project venv's python (created by `make setup`).
pub fn python() -> PathBuf {
    let p = root().join(".venv/bin/python");
    assert!(p.exists(), "{} missing: run `make setup` first", p.display());
    p
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_selfsup"))
}

pub fn selfsup(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("run selfsup")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A failed run that exited with `code` and one `error:` line (no panic, no backtrace) naming
/// each of `needles`.
pub fn assert_clean_error(o: &Output, code: i32, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "exit code; stderr: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
    for n in needles {
        assert!(err.contains(n), "missing `{n}` in: {err}");
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The CIFAR-10 JPEG tree from ../shared/data, extracted once per test binary.
pub fn cifar_tree() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let tar = root().join("../shared/data/cifar10-jpeg.tar.gz");
        assert!(tar.exists(), "{} missing", tar.display());
        let dir = std::env::temp_dir().join(format!("selfsup-cifar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let st = Command::new("tar").arg("-xzf").arg(&tar).arg("-C").arg(&dir).status().expect("tar");
        assert!(st.success(), "extracting {}", tar.display());
        dir
    })
}

/// A small labelled CIFAR subset spec: the first `per_class` images of each class.
pub fn cifar_spec(split: &str, per_class: usize) -> String {
    format!("folder:{}@{split}?per_class={per_class}", cifar_tree().display())
}

pub fn tiny_model_sets() -> Vec<String> {
    [
        "model.width=4",
        "projector.hidden=32",
        "projector.out=16",
        "predictor.hidden=32",
        "predictor.out=16",
        "optim.name=sgd",
        "optim.lr=0.2",
        "optim.warmup_epochs=0",
        "train.threads=1",
        "data.workers=1",
        "train.log_every=1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

pub fn with_sets<'a>(args: &mut Vec<String>, sets: &[String]) {
    for s in sets {
        args.push("--set".into());
        args.push(s.clone());
    }
}

pub fn run_owned(args: &[String]) -> Output {
    Command::new(bin()).args(args).output().expect("run selfsup")
}

/// Plain `f64` matrices for the hand-written references.
pub mod plain {
    use rand::Rng;
    use rand_chacha::ChaCha8Rng;
    use tch::{Kind, Tensor};

    pub type Matrix = Vec<Vec<f64>>;

    pub fn rand_matrix(rng: &mut ChaCha8Rng, n: usize, d: usize) -> Matrix {
        (0..n).map(|_| (0..d).map(|_| rng.gen_range(-1.0..1.0)).collect()).collect()
    }

    pub fn to_tensor(m: &[Vec<f64>]) -> Tensor {
        let flat: Vec<f64> = m.iter().flatten().copied().collect();
        Tensor::from_slice(&flat).view([m.len() as i64, m[0].len() as i64]).to_kind(Kind::Float)
    }

    pub fn from_tensor(t: &Tensor) -> Matrix {
        let t = t.to_kind(Kind::Double).contiguous();
        let (n, d) = (t.size()[0] as usize, t.size()[1] as usize);
        let flat: Vec<f64> = Vec::<f64>::try_from(t.view([-1])).unwrap();
        (0..n).map(|i| flat[i * d..(i + 1) * d].to_vec()).collect()
    }

    pub fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    pub fn unit(v: &[f64]) -> Vec<f64> {
        let n = dot(v, v).sqrt().max(1e-12);
        v.iter().map(|x| x / n).collect()
    }

    pub fn units(m: &[Vec<f64>]) -> Matrix {
        m.iter().map(|v| unit(v)).collect()
    }

    pub fn max_abs_diff(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
        a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
    }
}

/// Every value of `key` in a run's metrics log (`metrics.jsonl`), in order; a line that is not
/// JSON fails the test.
pub fn logged(run: &Path, key: &str) -> Vec<f64> {
    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    log.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", run.display()))).filter_map(|v| v[key].as_f64()).collect()
}

/// A run's logged losses, in order.
pub fn losses(run: &Path) -> Vec<f64> {
    logged(run, "loss")
}
