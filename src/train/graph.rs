//! `train.cuda_graph`: the forward and backward half of every training step captured once as a
//! CUDA graph and replayed, so that the host issues one launch where it dispatched some 3,900
//! operators (a BYOL ResNet-18 step at batch 512 with bf16 is bound by that dispatch on an H200,
//! docs/benchmarks.md). What follows the backward — the gradient check, the optimiser, the EMA —
//! runs eagerly after each replay ([`crate::train::step::update`]), so the learning rate, τ and
//! the step number stay host-side schedules, as in an eager run.
//!
//! The order is torch.cuda.graph's whole-network recipe (PyTorch docs, "CUDA Graphs"): a few
//! eager steps on a side stream settle cuDNN's algorithm choice and the lazy allocations; the
//! gradients are dropped, so the captured backward writes them (in the graph's memory) instead
//! of adding to them; the capture records the next step without running it, and a replay runs
//! it. Every later step copies its batch into the captured input tensors and replays. Everything
//! the run does (warm-up, replays, updates, evaluations) stays on the graph's stream.
use crate::backend::shim::CudaGraph;
use crate::methods::StepOutput;
use tch::{Device, Tensor};

/// Eager steps before the capture (torch's recipe uses 3 on a side stream).
pub const WARMUP_STEPS: usize = 3;

/// The methods whose forward pass can be captured: no host reads, no random numbers, tensors of
/// fixed shape, and state changed only in place by the update half (MoCo v2's queue and its
/// pointer live on the device). AdCo is not: its bank's rows in use, a host count, grow while it
/// fills, and so does the shape the forward reads.
pub const CAPTURABLE_METHODS: [&str; 5] = ["byol", "simsiam", "simclr", "supcon", "mocov2"];

/// What the forward and backward half of a step leaves for the update half.
pub struct Pass {
    pub out: StepOutput,
    /// The online probe's (loss, correct predictions), when one trains.
    pub probe: Option<(Tensor, Tensor)>,
}

/// What a captured step returns, handed out again after each replay as new handles to the same
/// tensors (which the replay has rewritten).
pub trait Handles {
    fn handles(&self) -> Self;
}

impl Handles for Tensor {
    fn handles(&self) -> Tensor {
        self.shallow_clone()
    }
}

impl Handles for Pass {
    fn handles(&self) -> Pass {
        let s = |v: &[Tensor]| v.iter().map(|t| t.shallow_clone()).collect();
        let o = &self.out;
        Pass {
            out: StepOutput { loss: o.loss.shallow_clone(), embeddings: s(&o.embeddings), predictions: s(&o.predictions), features: o.features.shallow_clone() },
            probe: self.probe.as_ref().map(|(a, b)| (a.shallow_clone(), b.shallow_clone())),
        }
    }
}

/// The captured step and its input tensors.
struct Captured<T> {
    views: Vec<Tensor>,
    labels: Tensor,
    out: T,
}

/// A run's step graph: eager warm-up, then capture, then replays. `T` is what the captured work
/// returns: [`Pass`] for `train.cuda_graph` (forward and backward), the loss for `selfsup bench
/// train --cuda-graph` (the whole step, update included, at its constant learning rate).
pub struct StepGraph<T: Handles> {
    graph: CudaGraph,
    /// The setting that asked for the graph, named in errors.
    setting: &'static str,
    warmup_left: usize,
    captured: Option<Captured<T>>,
}

impl<T: Handles> StepGraph<T> {
    /// A graph for a run on `device` (CUDA only), whose stream becomes the current one;
    /// `setting` (`train.cuda_graph`, `--cuda-graph`) is named in its errors.
    pub fn new(device: Device, setting: &'static str) -> anyhow::Result<StepGraph<T>> {
        let Device::Cuda(index) = device else {
            anyhow::bail!("{setting} needs --device cuda (got {device:?})");
        };
        let mut graph = CudaGraph::new(index)?;
        graph.enter()?;
        Ok(StepGraph { graph, setting, warmup_left: WARMUP_STEPS, captured: None })
    }

    /// Whether the step is now replayed (the warm-up is over and the capture done).
    pub fn replaying(&self) -> bool {
        self.captured.is_some()
    }

    /// Runs one step's work on `views` and `labels`: `step` eagerly during the warm-up, captured
    /// at the step after it (on copies of that batch, the graph's inputs), replayed from then on
    /// with each batch copied into those inputs. `step` must leave the gradients dropped before
    /// its backward, so that the captured backward writes them rather than adding to them. The
    /// tensors returned after a capture are the graph's own: each replay rewrites them.
    pub fn step(&mut self, views: &[Tensor], labels: &Tensor, mut step: impl FnMut(&[Tensor], &Tensor) -> anyhow::Result<T>) -> anyhow::Result<T> {
        if self.warmup_left > 0 {
            self.warmup_left -= 1;
            return step(views, labels);
        }
        let setting = self.setting;
        match &self.captured {
            None => {
                let inputs: Vec<Tensor> = views.iter().map(|v| v.copy()).collect();
                let labels = labels.copy();
                let out = self.graph.capture(|| step(&inputs, &labels)).map_err(|e| e.context(format!("{setting}: capturing the step failed (turn it off to run eagerly)")))?;
                self.captured = Some(Captured { views: inputs, labels, out });
            }
            Some(c) => {
                anyhow::ensure!(c.views.len() == views.len(), "{setting}: the batch has {} views, the captured step {}", views.len(), c.views.len());
                tch::no_grad(|| -> anyhow::Result<()> {
                    for (dst, src) in c.views.iter().zip(views) {
                        anyhow::ensure!(dst.size() == src.size(), "{setting}: a view of shape {:?} where the captured step took {:?} (every batch must have the same shape)", src.size(), dst.size());
                        dst.shallow_clone().copy_(src);
                    }
                    c.labels.shallow_clone().copy_(labels);
                    Ok(())
                })?;
            }
        }
        self.graph.replay().map_err(|e| e.context(format!("{setting}: replaying the step")))?;
        Ok(self.captured.as_ref().expect("captured").out.handles())
    }
}
