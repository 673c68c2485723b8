//! The part every method shares: encoder → projector (a "branch" of the Siamese network), and an
//! exponential-moving-average copy of it (BYOL's target, MoCo's and AdCo's key encoder).
use crate::config::Config;
use crate::models::{copy_shared_variables, Mlp, ResNet};
use crate::optim::ema::ema_update;
use std::sync::atomic::{AtomicBool, Ordering};
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
        let projector = Mlp::new(root / "projector", encoder.out_dim(), &cfg.projector, cfg.model.norm_splits);
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
    /// `actnorm` layers as (the copy's, the online branch's) `[weight, bias, initialised]`.
    data_init: Vec<([Tensor; 3], [Tensor; 3])>,
    /// Every `actnorm` layer of the copy holds its initialisation (checked once, then cached).
    data_init_done: AtomicBool,
}

impl MomentumBranch {
    /// A branch with `online`'s architecture, initialised to an exact copy of `online`'s weights.
    pub fn copy_of(online: &VarStore, cfg: &Config, device: Device) -> anyhow::Result<MomentumBranch> {
        let mut vs = VarStore::new(device);
        let branch = Branch::new(&vs.root(), cfg)?;
        copy_shared_variables(&vs, online);
        let src = online.variables();
        let dst = vs.variables();
        vs.freeze();
        let mut names: Vec<&String> = dst.keys().filter(|n| src.get(*n).map(|t| t.requires_grad()).unwrap_or(false)).collect();
        names.sort();
        let targets = names.iter().map(|n| dst[*n].shallow_clone()).collect();
        let sources = names.iter().map(|n| src[*n].shallow_clone()).collect();
        let mut layers: Vec<&str> = dst.keys().filter_map(|n| n.strip_suffix(".initialised")).filter(|l| src.contains_key(&format!("{l}.initialised"))).collect();
        layers.sort();
        let parts = |vars: &std::collections::HashMap<String, Tensor>, l: &str| ["weight", "bias", "initialised"].map(|p| vars[&format!("{l}.{p}")].shallow_clone());
        let data_init = layers.iter().map(|l| (parts(&dst, l), parts(&src, l))).collect();
        Ok(MomentumBranch { vs, branch, targets, sources, data_init, data_init_done: AtomicBool::new(false) })
    }

    /// Gives every `actnorm` layer of the copy that has not been initialised the scale, shift and
    /// flag the online branch's layer already holds — the copy starts as an exact copy of the online
    /// branch, data-dependent initialisation included, whatever batch it sees first (MoCo's key
    /// encoder sees the other view). A layer whose online twin is not initialised yet is left to
    /// initialise from its own first batch. One host read per call until every layer is done; a
    /// resumed run finds them done in its checkpoint and copies nothing.
    fn adopt_online_initialisation(&self) {
        if self.data_init.is_empty() || self.data_init_done.load(Ordering::Relaxed) {
            return;
        }
        // the copy's flags, then the online branch's: one read
        let flags: Vec<&Tensor> = self.data_init.iter().map(|(c, _)| &c[2]).chain(self.data_init.iter().map(|(_, o)| &o[2])).collect();
        let flags: Vec<f64> = Vec::try_from(Tensor::cat(&flags, 0).to_kind(tch::Kind::Double)).expect("actnorm flags");
        let (copy_flags, online_flags) = flags.split_at(self.data_init.len());
        let mut done = true;
        tch::no_grad(|| {
            for (((copy, online), c), o) in self.data_init.iter().zip(copy_flags).zip(online_flags) {
                if *c == 0.0 && *o == 1.0 {
                    for (dst, src) in copy.iter().zip(online) {
                        dst.shallow_clone().copy_(src);
                    }
                } else if *c == 0.0 {
                    done = false;
                }
            }
        });
        self.data_init_done.store(done, Ordering::Relaxed);
    }

    /// One EMA step with decay `tau` (τ = 1 leaves the copy fixed).
    pub fn update(&self, tau: f64) -> anyhow::Result<()> {
        ema_update(&self.targets, &self.sources, tau)
    }

    /// Forward without recording a graph (stop-gradient).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.adopt_online_initialisation();
        tch::no_grad(|| self.branch.forward(x)).detach()
    }
}
