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

impl Pass {
    /// Handles to the same tensors (after a replay they hold that step's values).
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
struct Captured {
    views: Vec<Tensor>,
    labels: Tensor,
    pass: Pass,
}

/// A training run's step graph: eager warm-up, then capture, then replays.
pub struct StepGraph {
    graph: CudaGraph,
    warmup_left: usize,
    captured: Option<Captured>,
}

impl StepGraph {
    /// A graph for a run on `device` (CUDA only), whose stream becomes the current one.
    pub fn new(device: Device) -> anyhow::Result<StepGraph> {
        let Device::Cuda(index) = device else {
            return Err(crate::Error::config("train.cuda_graph", true, format!("needs --device cuda (got {device:?})")).into());
        };
        let mut graph = CudaGraph::new(index)?;
        graph.enter()?;
        Ok(StepGraph { graph, warmup_left: WARMUP_STEPS, captured: None })
    }

    /// Whether the step is now replayed (the warm-up is over and the capture done).
    pub fn replaying(&self) -> bool {
        self.captured.is_some()
    }

    /// Runs one step's forward and backward on `views` and `labels`: `step` (forward, then
    /// backward into dropped gradients) eagerly during the warm-up, captured at the step after
    /// it, replayed from then on. The tensors returned after a capture are the graph's own:
    /// each replay rewrites them.
    pub fn forward_backward(&mut self, views: &[Tensor], labels: &Tensor, mut step: impl FnMut(&[Tensor], &Tensor) -> anyhow::Result<Pass>) -> anyhow::Result<Pass> {
        if self.warmup_left > 0 {
            self.warmup_left -= 1;
            return step(views, labels);
        }
        match &self.captured {
            None => {
                // the inputs the graph reads: this batch, copied into tensors of its own
                let inputs: Vec<Tensor> = views.iter().map(|v| v.copy()).collect();
                let labels = labels.copy();
                let pass = self.graph.capture(|| step(&inputs, &labels)).map_err(|e| e.context("train.cuda_graph: capturing the step failed (set it to false to train eagerly)"))?;
                self.captured = Some(Captured { views: inputs, labels, pass });
            }
            Some(c) => {
                anyhow::ensure!(c.views.len() == views.len(), "train.cuda_graph: the batch has {} views, the captured step {}", views.len(), c.views.len());
                tch::no_grad(|| -> anyhow::Result<()> {
                    for (dst, src) in c.views.iter().zip(views) {
                        anyhow::ensure!(dst.size() == src.size(), "train.cuda_graph: a view of shape {:?} where the captured step took {:?} (every batch must have the same shape)", src.size(), dst.size());
                        dst.shallow_clone().copy_(src);
                    }
                    c.labels.shallow_clone().copy_(labels);
                    Ok(())
                })?;
            }
        }
        self.graph.replay().map_err(|e| e.context("train.cuda_graph: replaying the step"))?;
        Ok(self.captured.as_ref().expect("captured").pass.handles())
    }
}
