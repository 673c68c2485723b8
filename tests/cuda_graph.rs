//! A BYOL training step captured as a CUDA graph and replayed (`selfsup bench step|train
//! --cuda-graph`) must train exactly as the same steps run eagerly. Capture records the step's
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
