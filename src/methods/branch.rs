//! The part every method shares: encoder → projector (a "branch" of the Siamese network), and an
//! exponential-moving-average copy of it (BYOL's target, MoCo's and AdCo's key encoder).
use crate::config::Config;
use crate::models::{Mlp, ResNet};
use crate::optim::ema::ema_update;
use tch::nn::{self, VarStore};
use tch::{Device, Tensor};

/// Encoder → projector.
pub struct Branch {
    pub encoder: ResNet,
    pub projector: Mlp,
}

impl Branch {
    /// Builds `encoder.*` and `projector.*` under `root` from `model` / `projector` config.
    pub fn new(root: &nn::Path, cfg: &Config) -> anyhow::Result<Branch> {
        let encoder = ResNet::new(root / "encoder", &cfg.model)?;
        let projector = Mlp::new(root / "projector", encoder.out_dim(), &cfg.projector);
        Ok(Branch { encoder, projector })
    }

    /// Projector output `[N, projector.out]` (training mode: batch statistics).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_with_features(x).1
    }

    /// (encoder features `[N, encoder.out_dim]`, projector output), training mode.
    pub fn forward_with_features(&self, x: &Tensor) -> (Tensor, Tensor) {
        let h = self.encoder.forward(x, true);
        let z = self.projector.forward(&h, true);
        (h, z)
    }
}

/// A frozen copy of an online branch whose trainable weights follow an EMA of the online ones,
/// `θ_t ← τ·θ_t + (1 − τ)·θ_o` (BYOL Eq. 1; MoCo Eq. 2). Buffers (BN running statistics) are
/// copied once and then kept by the copy itself.
pub struct MomentumBranch {
    pub vs: VarStore,
    pub branch: Branch,
    targets: Vec<Tensor>,
    sources: Vec<Tensor>,
}

impl MomentumBranch {
    /// A branch with `online`'s architecture, initialised to an exact copy of `online`'s weights.
    pub fn copy_of(online: &VarStore, cfg: &Config, device: Device) -> anyhow::Result<MomentumBranch> {
        let mut vs = VarStore::new(device);
        let branch = Branch::new(&vs.root(), cfg)?;
        let src = online.variables();
        let dst = vs.variables();
        tch::no_grad(|| {
            for (name, t) in &dst {
                if let Some(v) = src.get(name) {
                    t.shallow_clone().copy_(v);
                }
            }
        });
        vs.freeze();
        let mut names: Vec<&String> = dst.keys().filter(|n| src.get(*n).map(|t| t.requires_grad()).unwrap_or(false)).collect();
        names.sort();
        let targets = names.iter().map(|n| dst[*n].shallow_clone()).collect();
        let sources = names.iter().map(|n| src[*n].shallow_clone()).collect();
        Ok(MomentumBranch { vs, branch, targets, sources })
    }

    /// One EMA step with decay `tau` (τ = 1 leaves the copy fixed).
    pub fn update(&self, tau: f64) -> anyhow::Result<()> {
        ema_update(&self.targets, &self.sources, tau)
    }

    /// Forward without recording a graph (stop-gradient).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        tch::no_grad(|| self.branch.forward(x)).detach()
    }
}
