//! Online linear probe: a linear classifier trained *during* self-supervised training on the
//! detached encoder features of each batch's first view — solo-learn's "online linear" accuracy,
//! the protocol of the solo-learn reference numbers in SCIENCE.md, and the cheap progress signal
//! SCIENCE.md asks to be labelled "online" (it sees augmented views and a moving encoder, so it is
//! never the offline probe's number). The features are L2-normalised, as the frozen-encoder
//! evaluation extracts them, and pass a BatchNorm without affine parameters before the linear map
//! (MAE's linear-probing head, arXiv:2111.06377 §A.2), so their scale does not set the probe's
//! effective learning rate. In a data-parallel job that BatchNorm takes the global batch's
//! statistics (whatever `model.norm` is), so the probe trains as it would in one process.
//!
//! Its tensors live in the method's online store under `online_probe.`: the method's optimiser
//! trains them on its schedule, checkpoints hold them (so a resumed run continues the probe
//! exactly), and data-parallel ranks average their gradients with the rest. The features are
//! detached, so the probe never changes the encoder.
use crate::losses::l2_normalize;
use crate::models::norm::Norm;
use tch::nn::{self, Module, VarStore};
use tch::{Kind, Tensor};

pub struct OnlineProbe {
    norm: Norm,
    linear: nn::Linear,
}

impl OnlineProbe {
    /// Where its tensors live in the online store.
    pub const PREFIX: &'static str = "online_probe";

    /// Adds a probe from `in_dim` features to `classes` logits to `vs` (its first store, the
    /// online network's). Call before the optimiser is built and before the store is converted
    /// (precision, memory format) or broadcast, so the probe follows the rest.
    pub fn attach(vs: &VarStore, in_dim: i64, classes: i64) -> OnlineProbe {
        let root = vs.root() / Self::PREFIX;
        let norm = Norm::global_batch_statistics(&root / "norm", in_dim);
        let linear = nn::linear(&root / "linear", in_dim, classes, Default::default());
        OnlineProbe { norm, linear }
    }

    /// Logits of the probe for `features: [N, D]` (detached here; batch statistics when `train`).
    pub fn logits(&self, features: &Tensor, train: bool) -> Tensor {
        let x = l2_normalize(&features.detach());
        self.linear.forward(&self.norm.forward(&x, train))
    }

    /// The training term for one batch: (mean cross-entropy, number of correct top-1 predictions),
    /// both on the device (nothing is read back here).
    pub fn step_terms(&self, features: &Tensor, labels: &Tensor) -> (Tensor, Tensor) {
        let logits = self.logits(features, true);
        let loss = logits.to_kind(Kind::Float).cross_entropy_for_logits(labels);
        let correct = tch::no_grad(|| logits.argmax(1, false).eq_tensor(labels).sum(Kind::Float));
        (loss, correct)
    }

    /// Top-1 accuracy on held-out `features` (as [`crate::eval::extract_features`] gives them:
    /// L2-normalised, encoder in evaluation mode) with running statistics.
    pub fn accuracy(&self, features: &Tensor, labels: &Tensor) -> f64 {
        let device = self.linear.ws.device();
        tch::no_grad(|| {
            let x = features.to_device(device).to_kind(self.linear.ws.kind());
            let hits = self.logits(&x, false).argmax(1, false).eq_tensor(&labels.to_device(device));
            hits.to_kind(Kind::Float).mean(Kind::Float).double_value(&[])
        })
    }
}
