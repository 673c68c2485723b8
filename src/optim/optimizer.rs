//! LARS, SGD with momentum and AdamW over named parameters, with state that can be saved and
//! restored exactly (for bit-identical resume).
//!
//! * LARS (You et al., 2017, arXiv:1708.03888; as used by BYOL/SimCLR): for each weight matrix,
//!   `d = g + wd·θ`, trust ratio `q = η‖θ‖/‖d‖` (1 if either norm is 0), `μ ← m·μ + q·d`,
//!   `θ ← θ − lr·μ`. Biases and normalisation parameters (1-D tensors) get neither weight decay
//!   nor adaptation (BYOL, arXiv:2006.07733, Appendix C).
//! * SGD: PyTorch's `torch.optim.SGD` with momentum (dampening 0): `d = g + wd·θ`,
//!   `μ ← m·μ + d`, `θ ← θ − lr·μ`.
//! * AdamW (Loshchilov & Hutter, arXiv:1711.05101): decoupled decay `θ ← θ(1 − lr·wd)`, then the
//!   bias-corrected Adam step.
use crate::error::Error;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tch::Tensor;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// lars | sgd | adamw
    pub name: String,
    /// Base learning rate before the linear scaling rule `lr × batch / 256`.
    pub lr: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    pub warmup_epochs: f64,
    /// LARS trust coefficient η.
    pub trust_coefficient: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Exclude biases and norm parameters (1-D tensors) from weight decay for sgd/adamw
    /// (LARS always excludes them).
    pub exclude_bias_norm: bool,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            name: "lars".into(),
            lr: 1.0,
            weight_decay: 1.5e-6,
            momentum: 0.9,
            warmup_epochs: 10.0,
            trust_coefficient: 0.001,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            exclude_bias_norm: true,
        }
    }
}

impl OptimConfig {
    pub fn validate(&self) -> Result<(), Error> {
        crate::config::check_one_of("optim.name", &self.name, &["lars", "sgd", "adamw"])?;
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::config("optim.lr", self.lr, "must be a positive finite number"));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(Error::config("optim.weight_decay", self.weight_decay, "must be >= 0"));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(Error::config("optim.momentum", self.momentum, "must lie in [0, 1)"));
        }
        if !(self.warmup_epochs >= 0.0) {
            return Err(Error::config("optim.warmup_epochs", self.warmup_epochs, "must be >= 0"));
        }
        if !(self.trust_coefficient > 0.0) {
            return Err(Error::config("optim.trust_coefficient", self.trust_coefficient, "must be > 0"));
        }
        for (f, v) in [("optim.beta1", self.beta1), ("optim.beta2", self.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return Err(Error::config(f, v, "must lie in [0, 1)"));
            }
        }
        if !(self.eps > 0.0) {
            return Err(Error::config("optim.eps", self.eps, "must be > 0"));
        }
        Ok(())
    }
}

/// How one parameter's learning rate follows the schedule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrRule {
    /// Multiplies the learning rate (e.g. a faster predictor).
    pub scale: f64,
    /// Stays at the peak (times `scale`) instead of following warm-up and decay: SimSiam's
    /// predictor with a constant learning rate (arXiv:2011.10566, §4.2 and Table 1, 68.1 vs 67.7).
    pub fixed: bool,
    /// No weight decay and no LARS trust ratio (as for biases and norms, whatever its shape): the
    /// online probe's classifier, which must learn at its own rate under any method's optimiser.
    pub plain: bool,
}

impl LrRule {
    /// The scheduled learning rate times `scale`.
    pub fn scaled(scale: f64) -> LrRule {
        LrRule { scale, fixed: false, plain: false }
    }

    /// The learning rate for this parameter at `lr`.
    pub fn at(&self, lr: LearningRate) -> f64 {
        self.scale * if self.fixed { lr.peak } else { lr.now }
    }
}

/// The learning rate of one step: the scheduled value and the schedule's peak.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LearningRate {
    pub now: f64,
    pub peak: f64,
}

impl LearningRate {
    /// A learning rate without a schedule (benchmarks, tests): now = peak = `lr`.
    pub fn constant(lr: f64) -> LearningRate {
        LearningRate { now: lr, peak: lr }
    }
}

/// One optimised tensor.
pub struct Param {
    pub name: String,
    pub tensor: Tensor,
    pub lr: LrRule,
    /// Weight decay (and, for LARS, trust-ratio adaptation) applies.
    pub decay: bool,
    state: Vec<Tensor>,
}

pub struct Optimizer {
    pub cfg: OptimConfig,
    pub params: Vec<Param>,
    /// Number of steps taken (AdamW bias correction).
    pub steps: i64,
}

impl Optimizer {
    /// `params`: (name, tensor, learning-rate rule). 1-D tensors are "bias/norm" parameters.
    pub fn new(cfg: &OptimConfig, params: Vec<(String, Tensor, LrRule)>) -> Self {
        let exclude = cfg.name == "lars" || cfg.exclude_bias_norm;
        let params = params
            .into_iter()
            .map(|(name, tensor, lr)| {
                let decay = !(lr.plain || (exclude && tensor.dim() <= 1));
                let slots = if cfg.name == "adamw" { 2 } else { 1 };
                let state = (0..slots).map(|_| tensor.zeros_like().detach()).collect();
                Param { name, tensor, lr, decay, state }
            })
            .collect();
        Optimizer { cfg: cfg.clone(), params, steps: 0 }
    }

    /// Drops every gradient (torch's `zero_grad(set_to_none=True)`, as `byol_step.py`): no
    /// kernel per parameter, and backward then hands each gradient over instead of adding it to
    /// zeros — 155 fewer operators per BYOL ResNet-18 step (`bench step --count-ops`: 4,184 →
    /// 4,029). A parameter the next loss does not reach keeps no gradient, so [`Optimizer::step`]
    /// leaves it alone, as torch.optim does.
    pub fn zero_grad(&mut self) -> anyhow::Result<()> {
        let tensors: Vec<Tensor> = self.params.iter().map(|p| p.tensor.shallow_clone()).collect();
        crate::backend::shim::grads_to_none(&tensors)
    }

    /// Whether every gradient is finite, as a boolean scalar on the parameters' device, computed
    /// there without a host read (see [`crate::backend::shim::foreach_all_finite`]).
    pub fn grads_finite_flag(&self) -> anyhow::Result<Tensor> {
        let grads: Vec<Tensor> = self.params.iter().map(|p| p.tensor.grad()).filter(|g| g.defined()).collect();
        let device = self.params.first().map(|p| p.tensor.device()).unwrap_or(tch::Device::Cpu);
        crate::backend::shim::foreach_all_finite(&grads, device)
    }

    /// Whether every gradient is finite, read back to the host (a synchronisation point on a GPU).
    pub fn grads_finite(&self) -> anyhow::Result<bool> {
        Ok(self.grads_finite_flag()?.int64_value(&[]) != 0)
    }

    /// One update at learning rate `lr` (already scheduled and batch-scaled; each parameter takes
    /// it through its [`LrRule`]), as multi-tensor operations: one call per group of parameters
    /// sharing their learning rate and decay flag (a few kernel launches per group, as
    /// `torch.optim`'s foreach paths). Parameters without a gradient are left alone.
    pub fn step(&mut self, lr: LearningRate) -> anyhow::Result<()> {
        let _guard = tch::no_grad_guard();
        self.steps += 1;
        let c = &self.cfg;
        // groups in first-seen order: (decay, learning rate) -> params, grads, one list per state slot
        type Group = ((bool, u64), Vec<Tensor>, Vec<Tensor>, Vec<Vec<Tensor>>);
        let mut groups: Vec<Group> = Vec::new();
        for p in &self.params {
            let g = p.tensor.grad();
            if !g.defined() {
                continue;
            }
            let key = (p.decay, p.lr.at(lr).to_bits());
            let i = match groups.iter().position(|gr| gr.0 == key) {
                Some(i) => i,
                None => {
                    groups.push((key, Vec::new(), Vec::new(), (0..p.state.len()).map(|_| Vec::new()).collect()));
                    groups.len() - 1
                }
            };
            groups[i].1.push(p.tensor.shallow_clone());
            groups[i].2.push(g);
            for (slot, s) in groups[i].3.iter_mut().zip(&p.state) {
                slot.push(s.shallow_clone());
            }
        }
        for ((decay, lr), params, grads, state) in groups {
            let wd = if decay { c.weight_decay } else { 0.0 };
            let lr = f64::from_bits(lr);
            if c.name == "adamw" {
                let t = self.steps as i32;
                crate::backend::shim::foreach_adamw(&params, &grads, &state[0], &state[1], lr, wd, c.beta1, c.beta2, c.eps, 1.0 - c.beta1.powi(t), 1.0 - c.beta2.powi(t))?;
            } else {
                let trust = if c.name == "lars" && decay { c.trust_coefficient } else { 0.0 };
                crate::backend::shim::foreach_sgd(&params, &grads, &state[0], lr, wd, c.momentum, trust)?;
            }
        }
        Ok(())
    }

    /// Named state tensors (`<param>#<slot>`) plus the step count, for checkpoints.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("__steps".to_string(), Tensor::from_slice(&[self.steps]))];
        for p in &self.params {
            for (i, s) in p.state.iter().enumerate() {
                out.push((format!("{}#{i}", p.name), s.shallow_clone()));
            }
        }
        out
    }

    /// Restores what [`Optimizer::state`] saved; every slot must be present with the same shape.
    pub fn load_state(&mut self, saved: &HashMap<String, Tensor>) -> anyhow::Result<()> {
        let _guard = tch::no_grad_guard();
        let steps = saved.get("__steps").ok_or_else(|| anyhow::anyhow!("optimiser state lacks its step count"))?;
        self.steps = steps.int64_value(&[0]);
        for p in &mut self.params {
            for (i, s) in p.state.iter_mut().enumerate() {
                let key = format!("{}#{i}", p.name);
                let v = saved.get(&key).ok_or_else(|| anyhow::anyhow!("optimiser state lacks `{key}`"))?;
                anyhow::ensure!(v.size() == s.size(), "optimiser state `{key}` has shape {:?}, expected {:?}", v.size(), s.size());
                s.copy_(v);
            }
        }
        Ok(())
    }
}

