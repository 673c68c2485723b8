//! Data-parallel training on torch's c10d (Gloo on localhost), checked against one process:
//! 2 ranks × 16 with synchronised BatchNorm follow the loss trajectory and reach the final weights
//! of 1 rank × 32 with plain BatchNorm (gradients all-reduced by c10d's Reducer while backward
//! runs, and the same again when they are all-reduced after it) (float64, so the comparison is not blurred by float32
//! rounding amplified by small-batch BN), the online probe included; per-rank BN does not, and
//! follows two-way split BN in one process instead. SimCLR with negatives gathered from
//! both ranks, MoCo v2's queue and AdCo's bank fed by both ranks give the single-process loss; `actnorm` initialises from the global batch, and `bn-center` / `bn-scale` take its moments. A killed rank makes the survivor exit with an error; a launch stopped by SIGTERM resumes to the uninterrupted result; a study trains each run as such a job.
mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tch::Tensor;

fn sets(method: &str, norm: &str) -> Vec<String> {
    let mut s = tiny_model_sets();
    s.extend(
        [
            format!("method=\"{method}\""),
            "train.precision=\"f64\"".into(),
            "optim.lr=0.05".into(),
            "data.recipe=\"none\"".into(),
            "data.crop_size=32".into(),
            "train.epochs=4".into(),
            "train.checkpoint_every=0".into(),
            "train.check_replicas_every=5".into(),
            format!("model.norm=\"{norm}\""),
            format!("projector.norm=\"{norm}\""),
            format!("predictor.norm=\"{norm}\""),
        ]
        .into_iter(),
    );
    s
}

fn train_args(out: &Path, batch: usize, sets: &[String]) -> Vec<String> {
    let data = cifar_spec("train", 16); // 160 images: 5 steps of 32 per epoch
    let mut a: Vec<String> = ["train", "--data", &data, "--out", out.to_str().unwrap(), "--quiet", "--batch", &batch.to_string()].map(String::from).to_vec();
    with_sets(&mut a, sets);
    a
}

fn launch(nproc: usize, args: Vec<String>) -> std::process::Output {
    launch_with(nproc, &[], args)
}

/// `launch --nproc N FLAGS -- ARGS`.
fn launch_args(nproc: usize, flags: &[&str], args: Vec<String>) -> Vec<String> {
    let mut all: Vec<String> = vec!["launch".into(), "--nproc".into(), nproc.to_string()];
    all.extend(flags.iter().map(|f| f.to_string()));
    all.push("--".into());
    all.extend(args);
    all
}

fn launch_with(nproc: usize, flags: &[&str], args: Vec<String>) -> std::process::Output {
    run_owned(&launch_args(nproc, flags, args))
}

fn summary(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap()
}


/// A tensor of a run's final checkpoint.
fn checkpoint_tensor(run: &Path, name: &str) -> Tensor {
    let latest = std::fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    let t = Tensor::read_safetensors(run.join("checkpoints").join(latest.trim()).join("weights.safetensors")).unwrap();
    t.into_iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{name} not in the checkpoint")).1
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// Largest difference over the online network's weights of two runs' final checkpoints.
fn weight_diff(a: &Path, b: &Path) -> f64 {
    let load = |run: &Path| -> Vec<(String, Tensor)> {
        let latest = std::fs::read_to_string(run.join("checkpoints/latest")).unwrap();
        let mut t = Tensor::read_safetensors(run.join("checkpoints").join(latest.trim()).join("weights.safetensors")).unwrap();
        t.retain(|(n, _)| n.starts_with("online.") && !n.contains("running") && !n.contains("num_batches"));
        t.sort_by(|x, y| x.0.cmp(&y.0));
        t
    };
    let (x, y) = (load(a), load(b));
    assert_eq!(x.len(), y.len());
    assert!(!x.is_empty());
    x.iter().zip(&y).map(|((n1, t1), (n2, t2))| {
        assert_eq!(n1, n2);
        (t1 - t2).abs().max().double_value(&[])
    }).fold(0.0, f64::max)
}

fn require_gloo() {
    assert!(selfsup::backend::dist::available(), "distributed support was not built: apt-get install libgloo-dev, then rebuild");
}

#[test]
fn syncbn_on_two_ranks_equals_batchnorm_on_one_and_per_rank_bn_equals_split_bn() {
    require_gloo();
    let dir = tempfile::tempdir().unwrap();
    let (one, sync, local, after) = (dir.path().join("one"), dir.path().join("sync"), dir.path().join("local"), dir.path().join("after"));
    // with the online probe: its BatchNorm takes the global batch's statistics and its logged
    // loss and accuracy are the global batch's, so it too trains as in one process
    let with_probe = |mut s: Vec<String>| {
        s.push("eval.online_probe=true".into());
        s
    };
    let o = run_owned(&train_args(&one, 32, &with_probe(sets("byol", "bn"))));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = launch(2, train_args(&sync, 16, &with_probe(sets("byol", "syncbn"))));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = launch(2, train_args(&local, 16, &sets("byol", "bn")));
    assert!(o.status.success(), "{}", stderr(&o));
    let (l1, ls, ll) = (losses(&one), losses(&sync), losses(&local));
    assert_eq!(l1.len(), 20, "20 steps logged");
    let d = max_diff(&l1, &ls);
    assert!(d < 1e-5, "syncbn 2×16 vs bn 1×32: loss differs by {d:e}");
    let w = weight_diff(&one, &sync);
    assert!(w < 1e-5, "final weights differ by {w:e}");
    for key in ["online_probe_loss", "online_train_top1"] {
        let (a, b) = (logged(&one, key), logged(&sync, key));
        assert_eq!(a.len(), 20, "{key} logged each step");
        let d = max_diff(&a, &b);
        assert!(d < 1e-5, "{key}: 2×16 vs 1×32 differ by {d:e}: {a:?} vs {b:?}");
    }
    for name in ["online.online_probe.linear.weight", "online.online_probe.norm.running_mean", "online.online_probe.norm.running_var"] {
        let d = (checkpoint_tensor(&one, name) - checkpoint_tensor(&sync, name)).abs().max().double_value(&[]);
        assert!(d < 1e-5, "{name}: 2×16 vs 1×32 differ by {d:e}");
    }
    // gradients all-reduced after backward instead of by c10d's Reducer during it: the same run
    let mut s_after = with_probe(sets("byol", "syncbn"));
    s_after.push("train.grad_sync=\"after\"".into());
    let o = launch(2, train_args(&after, 16, &s_after));
    assert!(o.status.success(), "{}", stderr(&o));
    let da = max_diff(&ls, &losses(&after));
    assert!(da < 1e-9, "gradients reduced during vs after backward: loss differs by {da:e}");
    let wa = weight_diff(&sync, &after);
    assert!(wa < 1e-9, "gradients reduced during vs after backward: final weights differ by {wa:e}");
    // per-rank statistics (16 rows) are a different model: the trajectories separate
    let dl = max_diff(&l1, &ll);
    assert!(dl > 1e-3, "per-rank bn should differ from global bn, but only by {dl:e}");
    // … and the model that two-way split BN trains in one process (what the studies of per-device
    // BN run on one machine): the same sub-batches, in the encoder, both heads and the target
    let split = dir.path().join("split");
    let mut s_split = sets("byol", "splitbn");
    s_split.push("model.norm_splits=2".into());
    let o = run_owned(&train_args(&split, 32, &s_split));
    assert!(o.status.success(), "{}", stderr(&o));
    let d = max_diff(&ll, &losses(&split));
    assert!(d < 1e-5, "per-rank bn 2×16 vs two-way split bn 1×32: loss differs by {d:e}");
    let w = weight_diff(&local, &split);
    assert!(w < 1e-5, "per-rank bn 2×16 vs two-way split bn 1×32: final weights differ by {w:e}");
    // only rank 0 wrote: one metrics line per step, one summary
    assert!(sync.join("summary.json").exists());
}

/// `launch --nproc 1 --backend gloo` forms a process group of one (how a user checks a machine's
/// NCCL setup before a larger job, `--backend nccl`): every collective runs — the weights'
/// broadcast, the gradient all-reduce, synchronised BN's statistics, the loss all-reduce — and, a
/// sum over one rank, changes nothing: the plain single process's losses and weights (float64; the
/// plain run's syncbn is ordinary BN). The summary names the group; an unusable backend is refused.
#[test]
fn a_named_backend_forms_a_group_of_one_that_changes_nothing() {
    require_gloo();
    let dir = tempfile::tempdir().unwrap();
    let (alone, group) = (dir.path().join("alone"), dir.path().join("group"));
    let mut s = sets("byol", "syncbn");
    s.push("train.epochs=2".into());
    let o = run_owned(&train_args(&alone, 32, &s));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = launch_with(1, &["--backend", "gloo"], train_args(&group, 32, &s));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(summary(&group)["process_group"], "gloo", "the run joined a Gloo group");
    assert_eq!(summary(&group)["processes"], 1);
    assert!(summary(&alone).get("process_group").is_none(), "a plain run is in no group");
    let (la, lg) = (losses(&alone), losses(&group));
    assert_eq!(la.len(), 10);
    let d = max_diff(&la, &lg);
    assert!(d < 1e-9, "group of one vs alone: loss differs by {d:e}");
    let w = weight_diff(&alone, &group);
    assert!(w < 1e-9, "final weights differ by {w:e}");

    // NCCL reduces GPU tensors: asked for on the CPU it is refused with the reason
    let o = launch_with(1, &["--backend", "nccl"], train_args(&dir.path().join("nccl"), 32, &s));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("nccl needs --device cuda"), "{}", stderr(&o));
    let o = launch_with(1, &["--backend", "mpi"], train_args(&dir.path().join("mpi"), 32, &s));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--backend mpi: expected auto, gloo or nccl"), "{}", stderr(&o));
}

#[test]
fn simclr_gathers_negatives_from_every_rank() {
    require_gloo();
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let mut s1 = sets("simclr", "bn");
    let mut s2 = sets("simclr", "syncbn");
    for s in [&mut s1, &mut s2] {
        // host reads (and the ranks' all-reduce of loss / stop / non-finite) every 3 steps and at
        // log steps, as on a GPU, instead of every step
        s.extend(["train.epochs=2", "train.log_every=2", "train.sync_every=3"].map(String::from));
    }
    let o = run_owned(&train_args(&one, 32, &s1));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = launch(2, train_args(&two, 16, &s2));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(losses(&two).len(), 5, "SimCLR: steps 2, 4, … 10 logged");
    let d = max_diff(&losses(&one), &losses(&two));
    assert!(d < 1e-5, "SimCLR 2×16 vs 1×32: loss differs by {d:e}");
    assert!(weight_diff(&one, &two) < 1e-5);
}

/// SupCon: the positives are the global batch's samples of the query's class, so the labels are
/// gathered beside the projections (in rank order, as the projections' rows); a rank that kept
/// only its own labels, or paired them with another rank's rows, would log other losses.
#[test]
fn supcon_gathers_labels_from_every_rank() {
    require_gloo();
    let dir = tempfile::tempdir().unwrap();
    let mut s1 = sets("supcon", "bn");
    let mut s2 = sets("supcon", "syncbn");
    for s in [&mut s1, &mut s2] {
        s.push("train.epochs=2".into());
    }
    two_ranks_follow_one_process(dir.path(), "supcon", &s1, &s2);
}

/// Trains 1 process × 32 with `single` and 2 ranks × 16 with `ranks` (2 epochs, 10 steps) in
/// `dir/<name>-one` and `dir/<name>-two`, checks that they log the same losses and end with the
/// same online weights (float64, 1e-5), and returns the two run folders.
fn two_ranks_follow_one_process(dir: &Path, name: &str, single: &[String], ranks: &[String]) -> (PathBuf, PathBuf) {
    let (one, two) = (dir.join(format!("{name}-one")), dir.join(format!("{name}-two")));
    let o = run_owned(&train_args(&one, 32, single));
    assert!(o.status.success(), "{name}: {}", stderr(&o));
    let o = launch(2, train_args(&two, 16, ranks));
    assert!(o.status.success(), "{name}: {}", stderr(&o));
    let (l1, l2) = (losses(&one), losses(&two));
    assert_eq!(l1.len(), 10, "{name}: 10 steps logged");
    let d = max_diff(&l1, &l2);
    assert!(d < 1e-5, "{name} 2×16 vs 1×32: loss differs by {d:e}");
    let w = weight_diff(&one, &two);
    assert!(w < 1e-5, "{name}: final weights differ by {w:e}");
    (one, two)
}

/// MoCo v2 and AdCo with the symmetric loss: the keys are gathered once per step, contrasted
/// (AdCo: the whole batch's keys are negatives), enqueued / written into the bank and used by the
/// bank's ascent in the same order as one process's; the queue and bank (96 rows, 64 keys a step)
/// wrap or fill within the run, so a wrong order or a missing rank's keys shows in the losses.
#[test]
fn momentum_contrast_on_two_ranks_equals_one_process() {
    require_gloo();
    let dir = tempfile::tempdir().unwrap();
    for (method, extra) in [("mocov2", ["mocov2.symmetric=true", "mocov2.queue_size=96"]), ("adco", ["adco.symmetric=true", "adco.bank_size=96"])] {
        let mut s1 = sets(method, "bn");
        let mut s2 = sets(method, "syncbn");
        for s in [&mut s1, &mut s2] {
            s.push("train.epochs=2".into());
            s.extend(extra.iter().map(|e| e.to_string()));
        }
        two_ranks_follow_one_process(dir.path(), method, &s1, &s2);
    }
}

/// MoCo's shuffling BN across ranks (arXiv:1911.05722 §3.3) with per-rank BN, for MoCo v2 and
/// AdCo: 2 ranks × 16 with `model.norm = "bn"` and `<method>.shuffle_bn` follow 1 process × 32
/// with two-way split BN and the shuffle within it — the same sub-batches for the query encoder
/// (each rank's 16 rows) and for the key encoder (the global batch read column by column: 8 rows
/// of each rank in each slice), so the same losses and final weights. The same ranks without the
/// shuffle normalise each key with its own query's sub-batch and separate from it. In one process
/// per-rank BN has nothing to shuffle: refused, naming the key.
#[test]
fn shuffling_bn_across_ranks_equals_shuffling_split_bn_in_one_process() {
    require_gloo();
    let dir = tempfile::tempdir().unwrap();
    for (method, queue) in [("mocov2", "mocov2.queue_size=96"), ("adco", "adco.bank_size=96")] {
        let with = |norm: &str, shuffle: bool| {
            let mut s = sets(method, norm);
            s.extend([format!("{method}.symmetric=true"), queue.into(), "model.norm_splits=2".into(), "train.epochs=2".into()]);
            s.push(format!("{method}.shuffle_bn={shuffle}"));
            s
        };
        let (one, _) = two_ranks_follow_one_process(dir.path(), &format!("{method}-shuffle"), &with("splitbn", true), &with("bn", true));
        let unshuffled = dir.path().join(format!("{method}-unshuffled"));
        let o = launch(2, train_args(&unshuffled, 16, &with("bn", false)));
        assert!(o.status.success(), "{}", stderr(&o));
        let d = max_diff(&losses(&one), &losses(&unshuffled));
        assert!(d > 1e-4, "{method}: keys normalised with their own query's rank should change the losses, but only by {d:e}");
        let o = run_owned(&train_args(&dir.path().join(format!("{method}-alone")), 32, &with("bn", true)));
        assert_clean_error(&o, 2, &[&format!("{method}.shuffle_bn"), "selfsup launch", "splitbn"]);
    }
}

/// `actnorm` (BatchNorm's first-batch statistics frozen into a learned affine map) initialises
/// from the global batch's statistics, so 2 ranks × 16 start from the same parameters as 1 × 32
/// and, with no batch statistics afterwards, follow its losses to its final weights.
#[test]
fn actnorm_initialises_from_the_global_batch_on_two_ranks() {
    require_gloo();
    let dir = tempfile::tempdir().unwrap();
    let mut s = sets("byol", "actnorm");
    s.push("train.epochs=2".into());
    let (_, two) = two_ranks_follow_one_process(dir.path(), "actnorm", &s, &s);
    let flag = checkpoint_tensor(&two, "online.encoder.bn1.initialised").double_value(&[0]);
    assert_eq!(flag, 1.0, "the checkpoint records the initialisation");
}

/// `bn-center` and `bn-scale` (BatchNorm's two halves, each kept alone) take the global batch's
/// moments in a data-parallel job, as `syncbn` does: 2 ranks × 16 follow 1 × 32's losses to its
/// final weights and running statistic, while the same norm on per-rank moments would not (the
/// per-rank check of `syncbn_on_two_ranks_equals_batchnorm_on_one_and_per_rank_bn_does_not`).
#[test]
fn batchnorm_halves_take_the_global_batch_on_two_ranks() {
    require_gloo();
    let dir = tempfile::tempdir().unwrap();
    for (norm, statistic) in [("bn-center", "running_mean"), ("bn-scale", "running_var")] {
        let mut s = sets("byol", norm);
        s.push("train.epochs=2".into());
        let (one, two) = two_ranks_follow_one_process(dir.path(), norm, &s, &s);
        for name in [format!("online.encoder.bn1.{statistic}"), format!("online.projector.layers0.norm.{statistic}")] {
            let (a, b) = (checkpoint_tensor(&one, &name), checkpoint_tensor(&two, &name));
            let d = (&a - &b).abs().max().double_value(&[]);
            assert!(d < 1e-5, "{norm}: {name} 2×16 vs 1×32 differ by {d:e}");
            let moved = (&a - a.ones_like() * if statistic == "running_var" { 1.0 } else { 0.0 }).abs().max().double_value(&[]);
            assert!(moved > 1e-3, "{norm}: {name} never left its initial value");
        }
    }
}

#[test]
fn a_killed_rank_makes_the_other_exit_with_an_error() {
    require_gloo();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut s = sets("byol", "syncbn");
    s.push("train.epochs=400".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let spawn = |rank: usize| {
        Command::new(bin())
            .args(train_args(&out, 16, &s))
            .env("SELFSUP_RANK", rank.to_string())
            .env("SELFSUP_WORLD_SIZE", "2")
            .env("SELFSUP_MASTER", format!("127.0.0.1:{port}"))
            .env("SELFSUP_DIST_TIMEOUT_S", "60")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut r0 = spawn(0);
    let mut r1 = spawn(1);
    // wait until training runs (rank 0 logs steps), then kill rank 1 outright
    let t = Instant::now();
    while losses_or_empty(&out).len() < 3 {
        assert!(t.elapsed() < Duration::from_secs(120), "training did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    r1.kill().unwrap();
    let _ = r1.wait();
    let killed_at = Instant::now();
    let status = loop {
        if let Some(s) = r0.try_wait().unwrap() {
            break s;
        }
        assert!(killed_at.elapsed() < Duration::from_secs(90), "rank 0 hangs after its peer died");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(r0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("error:") && err.contains("rank 0"), "{err}");
}

/// `selfsup launch` killed by SIGTERM (a scheduler ending the job) passes it to its ranks: they
/// agree on one step, rank 0 writes a checkpoint, the launcher exits 143, and the same command
/// with `--resume` continues the job to the end with the losses and final weights of an
/// uninterrupted one.
#[test]
fn a_launch_stopped_by_sigterm_resumes_to_the_uninterrupted_result() {
    require_gloo();
    let dir = tempfile::tempdir().unwrap();
    let (whole, cut) = (dir.path().join("whole"), dir.path().join("cut"));
    let mut s = sets("byol", "bn");
    s.extend(["train.epochs=16".into(), "train.checkpoint_every=1".into()]);
    let o = launch(2, train_args(&whole, 16, &s));
    assert!(o.status.success(), "{}", stderr(&o));
    let mut all = launch_args(2, &[], train_args(&cut, 16, &s));
    let child = Command::new(bin()).args(&all).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let t = Instant::now();
    while losses_or_empty(&cut).len() < 3 {
        assert!(t.elapsed() < Duration::from_secs(120), "training did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(143), "{err}");
    assert!(err.contains("interrupted by SIGTERM; checkpoint written"), "{err}");
    assert!(!cut.join("summary.json").exists(), "the job finished before the signal: make it longer");
    let stopped_at = losses(&cut).len();
    assert!(stopped_at < 80, "{stopped_at} of 80 steps before the signal took effect");
    all.push("--resume".into());
    let o = run_owned(&all);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("resuming from"), "{}", stderr(&o));
    let (lw, lc) = (losses(&whole), losses(&cut));
    assert_eq!(lw.len(), 80);
    assert_eq!(lc.len(), 80, "resumed run's log: {} steps", lc.len());
    let d = max_diff(&lw, &lc);
    assert!(d < 1e-9, "resumed vs uninterrupted: loss differs by {d:e} (stopped after step {stopped_at})");
    let w = weight_diff(&whole, &cut);
    assert!(w < 1e-9, "resumed vs uninterrupted: final weights differ by {w:e}");
}

/// `selfsup study --nproc 2` trains every run as a 2-process data-parallel job: each run's summary
/// says so, its losses and final weights are those of `selfsup launch --nproc 2 -- train --config
/// RUN/config.toml` (the run's own resolved config), rank 0 alone writes its probe, and the same
/// command again skips the finished runs. With `--jobs 2` two such jobs run at once, alike.
#[test]
fn a_study_trains_each_run_as_a_data_parallel_job() {
    require_gloo();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ddp.toml");
    let mut s = sets("byol", "syncbn");
    s.extend(["train.epochs=2".into(), "train.batch=16".into(), format!("data.train={:?}", cifar_spec("train", 16)), format!("eval.test={:?}", cifar_spec("test", 4))]);
    let set = s.iter().map(|x| format!("{x:?}")).collect::<Vec<_>>().join(", ");
    std::fs::write(&file, format!("name = \"ddp\"\nset = [{set}]\n[probe]\nepochs = 3\n[[runs]]\nname = \"sync\"\n[[runs]]\nname = \"local\"\nset = [\"model.norm=\\\"bn\\\"\", \"projector.norm=\\\"bn\\\"\", \"predictor.norm=\\\"bn\\\"\"]\n")).unwrap();
    let study = |out: &Path, extra: &[&str]| {
        let mut a: Vec<String> = ["study", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet", "--nproc", "2"].map(String::from).to_vec();
        a.extend(extra.iter().map(|x| x.to_string()));
        run_owned(&a)
    };
    let (one, two) = (dir.path().join("one-at-a-time"), dir.path().join("two-at-once"));
    let o = study(&one, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("sync: started, 2 processes"), "{}", stderr(&o));
    let o = study(&two, &["--jobs", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for run in ["sync", "local"] {
        let reference = dir.path().join(format!("launched-{run}"));
        let o = launch(2, vec!["train".into(), "--config".into(), one.join(run).join("config.toml").to_str().unwrap().into(), "--out".into(), reference.to_str().unwrap().into(), "--quiet".into()]);
        assert!(o.status.success(), "{}", stderr(&o));
        for out in [&one, &two] {
            let r = out.join(run);
            assert_eq!(summary(&r)["processes"], 2, "{}", r.display());
            let (l, lr) = (losses(&r), losses(&reference));
            assert_eq!(l.len(), 10, "{}", r.display()); // 160 images, 32 a step, 2 epochs
            let d = max_diff(&l, &lr);
            assert!(d < 1e-9, "{}: losses differ from the launched run's by {d:e}", r.display());
            let w = weight_diff(&r, &reference);
            assert!(w < 1e-9, "{}: final weights differ from the launched run's by {w:e}", r.display());
            let probe: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(r.join("linear.json")).unwrap()).unwrap();
            assert_eq!(probe["protocol"]["epochs"], 3, "{probe}");
            let log = std::fs::read_to_string(r.join("job.log")).unwrap();
            assert_eq!(log.matches(&format!("{run}: loss")).count(), 1, "one finished line (rank 0's): {log}");
        }
    }
    for out in [&one, &two] {
        let md = std::fs::read_to_string(out.join("results.md")).unwrap();
        assert!(md.contains("Every run trained data parallel on 2 processes"), "{md}");
    }
    // two ranks: syncbn's global statistics are not per-rank BN's (in one process they are equal)
    assert!(max_diff(&losses(&one.join("sync")), &losses(&one.join("local"))) > 1e-6);
    let o = study(&one, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("sync: finished, skipped") && stderr(&o).contains("local: finished, skipped"), "{}", stderr(&o));
}

fn losses_or_empty(run: &Path) -> Vec<f64> {
    if run.join("metrics.jsonl").exists() {
        losses(run)
    } else {
        vec![]
    }
}
