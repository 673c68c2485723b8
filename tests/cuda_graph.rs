//! A BYOL training step captured as a CUDA graph and replayed (`selfsup bench step|train
//! --cuda-graph`, and `train.cuda_graph` for forward and backward) must train exactly as the
//! same steps run eagerly. Capture records the step's
//! kernels without running them; each replay reruns them on the same memory, so a replay that
//! skipped the optimiser or the EMA update, read a stale input or wrote outside the graph's
//! tensors would make the losses after the capture drift from the eager run's. Same seed, same
//! batches: three eager warm-up steps, the capture, then replays fed by copying each batch into
//! the graph's input tensors. GPU only (`make gpu-tests`, run by bench/gpu.sh); without a GPU,
//! making a graph must fail with libtorch's message, not panic.
use selfsup::backend::dist::GradSync;
use selfsup::backend::shim::{self, CudaGraph};
use selfsup::methods::Method;
use selfsup::optim::{LearningRate, Optimizer};
use selfsup::train::step::{apply_update, GradCheck};
use tch::{Device, Kind, Tensor};

const STEPS: usize = 8;
const WARMUP: usize = 3;

fn model(device: Device) -> (Box<dyn Method>, Optimizer) {
    let sets: Vec<String> = [
        "method=\"byol\"",
        "model.width=8",
        "projector.hidden=64",
        "projector.out=32",
        "predictor.hidden=64",
        "predictor.out=32",
        "byol.tau_base=0.9",
        "byol.tau_schedule=\"constant\"",
        "optim.name=\"sgd\"",
        "train.batch=16",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let cfg = selfsup::config::load(None, &sets).unwrap();
    shim::manual_seed(7).unwrap();
    let method = selfsup::methods::build(&cfg, device).unwrap();
    let opt = Optimizer::new(&cfg.optim, method.parameters());
    (method, opt)
}

fn step(method: &mut dyn Method, opt: &mut Optimizer, views: &[Tensor], labels: &Tensor, k: usize) -> Tensor {
    let out = method.forward(views, labels).unwrap();
    apply_update(method, opt, &mut GradSync::Alone, &out.loss, LearningRate::constant(0.05), k, STEPS, GradCheck::Off).unwrap();
    out.loss
}

/// The same batches for both runs: two random 16 × 3 × 32 × 32 views per step.
fn batches(device: Device) -> Vec<Vec<Tensor>> {
    tch::manual_seed(11);
    (0..STEPS).map(|_| (0..2).map(|_| Tensor::randn([16, 3, 32, 32], (Kind::Float, Device::Cpu)).to_device(device)).collect()).collect()
}

fn online_params(method: &dyn Method) -> Vec<Tensor> {
    method.parameters().into_iter().map(|(_, t, _)| t.to_device(Device::Cpu)).collect()
}

#[test]
fn a_replayed_cuda_graph_trains_as_the_eager_steps_do() {
    if !tch::Cuda::is_available() {
        let err = CudaGraph::new(0).err().expect("a CUDA graph without a GPU");
        assert!(err.to_string().starts_with("libtorch: "), "{err}");
        eprintln!("no CUDA device: only the error without one is checked ({err})");
        return;
    }
    let device = Device::Cuda(0);
    let data = batches(device);
    let labels = Tensor::zeros([16], (Kind::Int64, device));

    let (mut eager, mut eager_opt) = model(device);
    let eager_losses: Vec<f64> = data.iter().enumerate().map(|(k, views)| step(eager.as_mut(), &mut eager_opt, views, &labels, k).double_value(&[])).collect();

    let (mut graphed, mut graphed_opt) = model(device);
    let initial = online_params(graphed.as_ref());
    let mut graph = CudaGraph::new(0).unwrap();
    graph.enter().unwrap();
    let mut losses: Vec<f64> = (0..WARMUP).map(|k| step(graphed.as_mut(), &mut graphed_opt, &data[k], &labels, k).double_value(&[])).collect();
    let mut inputs: Vec<Tensor> = data[WARMUP].iter().map(|v| v.copy()).collect();
    let loss = graph.capture(|| Ok(step(graphed.as_mut(), &mut graphed_opt, &inputs, &labels, WARMUP))).unwrap();
    graph.exit().unwrap();
    graph.replay().unwrap();
    losses.push(loss.double_value(&[]));
    for views in &data[WARMUP + 1..] {
        for (input, v) in inputs.iter_mut().zip(views) {
            input.copy_(v);
        }
        graph.replay().unwrap();
        losses.push(loss.double_value(&[]));
    }

    for (k, (a, b)) in eager_losses.iter().zip(&losses).enumerate() {
        assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "step {k}: eager loss {a}, graphed {b}");
    }
    // the replays changed the weights as the eager steps did (a replay without the update would
    // leave them at the capture's values and the later losses would drift apart as well)
    for (p, q) in online_params(eager.as_ref()).iter().zip(online_params(graphed.as_ref()).iter()) {
        let d = (p - q).abs().max().double_value(&[]);
        assert!(d <= 1e-4, "online weights differ by {d} after {STEPS} steps");
    }
    let moved: f64 = online_params(graphed.as_ref()).iter().zip(&initial).map(|(p, q)| (p - q).abs().max().double_value(&[])).fold(0.0, f64::max);
    assert!(moved > 1e-3, "the weights hardly moved from their initial values ({moved})");
}

/// A `selfsup train` run on 128 synthetic images (16 steps of batch 16), eager or with
/// `train.cuda_graph`: the metrics log's records, and whether the summary says it replayed.
fn training_run(method: &str, on_nonfinite: &str, probe: bool, graph: bool) -> (Vec<serde_json::Value>, bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut sets: Vec<String> = [
        format!("method=\"{method}\""),
        "data.train=\"synthetic:128\"".into(),
        "model.width=8".into(),
        "projector.hidden=64".into(),
        "projector.out=32".into(),
        "predictor.hidden=64".into(),
        "predictor.out=32".into(),
        "optim.name=\"sgd\"".into(),
        "optim.lr=0.2".into(),
        "optim.warmup_epochs=0.5".into(),
        "train.batch=16".into(),
        "train.epochs=2".into(),
        "train.seed=3".into(),
        "train.device=\"cuda\"".into(),
        "train.tf32=false".into(),
        "train.log_every=1".into(),
        "train.sync_every=1".into(),
        format!("train.on_nonfinite=\"{on_nonfinite}\""),
        format!("train.cuda_graph={graph}"),
        "data.workers=2".into(),
        "eval.knn_every=0".into(),
        "eval.compare_random=false".into(),
        format!("eval.online_probe={probe}"),
    ]
    .to_vec();
    if method == "mocov2" {
        // a queue the 16 steps' keys wrap around, so every loss after the first steps reads keys
        // the update half wrote
        sets.push("mocov2.queue_size=64".into());
    }
    let cfg = selfsup::config::load(None, &sets).unwrap();
    let summary = selfsup::train::train(&cfg, &selfsup::train::TrainOptions { out: dir.path().to_path_buf(), quiet: true, ..Default::default() }).unwrap();
    let log = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    (log.lines().map(|l| serde_json::from_str(l).unwrap()).collect(), summary.cuda_graph)
}

/// `train.cuda_graph`: forward and backward replayed, the optimiser (a warm-up then cosine
/// learning rate), τ's schedule and the checks eager after each replay. Each step's logged loss
/// (and the online probe's) must equal the eager run's: a replay that read a stale batch, kept
/// the capture step's gradients or missed the host-side schedules would drift from it. BYOL in
/// stop mode with the online probe; SimCLR in skip mode (gradients read before each update);
/// MoCo v2, whose queue the eager update half fills and the replayed forward reads (a queue
/// missing the replays' keys, or read stale, would change every later loss).
#[test]
fn a_training_run_with_train_cuda_graph_logs_the_eager_runs_losses() {
    if !tch::Cuda::is_available() {
        let err = selfsup::train::graph::StepGraph::<selfsup::train::graph::Pass>::new(Device::Cpu, "train.cuda_graph").err().expect("a step graph without a GPU");
        assert!(err.to_string().contains("train.cuda_graph") && err.to_string().contains("needs --device cuda"), "{err}");
        eprintln!("no CUDA device: only the error without one is checked ({err})");
        return;
    }
    for (method, mode, probe) in [("byol", "stop", true), ("simclr", "skip", false), ("mocov2", "stop", false)] {
        let (eager, eager_graphed) = training_run(method, mode, probe, false);
        let (graphed, replayed) = training_run(method, mode, probe, true);
        assert!(!eager_graphed && replayed, "{method}: summary.cuda_graph {eager_graphed} / {replayed}");
        let steps = |log: &[serde_json::Value], key: &str| -> Vec<(u64, f64)> { log.iter().filter(|r| r.get(key).map(|v| v.is_f64()).unwrap_or(false)).map(|r| (r["step"].as_u64().unwrap(), r[key].as_f64().unwrap())).collect() };
        let mut keys = vec!["loss", "lr"];
        if probe {
            keys.push("online_probe_loss");
        }
        for key in keys {
            let (a, b) = (steps(&eager, key), steps(&graphed, key));
            assert_eq!(a.len(), 16, "{method}: {key} logged at {} steps", a.len());
            assert_eq!(a.len(), b.len(), "{method}: {key}");
            for ((sa, va), (sb, vb)) in a.iter().zip(&b) {
                assert_eq!(sa, sb);
                assert!((va - vb).abs() <= 1e-3 * va.abs().max(1.0), "{method} step {sa}: eager {key} {va}, graphed {vb}");
            }
        }
        let replayed: Vec<f64> = steps(&graphed, "loss")[4..].iter().map(|(_, v)| *v).collect();
        let spread = replayed.iter().cloned().fold(f64::MIN, f64::max) - replayed.iter().cloned().fold(f64::MAX, f64::min);
        assert!(spread > 1e-4, "{method}: the replayed steps all logged the same loss {replayed:?}");
    }
}
