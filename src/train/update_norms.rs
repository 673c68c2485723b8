//! How far one optimiser step moves each part of the network: per parameter group (the name's
//! first component: `encoder`, `projector`, `predictor`, `online_probe`) the gradient norm ‖g‖
//! and the relative update ‖θ′ − θ‖ / ‖θ‖, each over the group's tensors taken as one vector.
//!
//! The relative update is the quantity LARS fixes (You, Gitman & Ginsburg 2017, arXiv:1708.03888,
//! Eq. 6: each layer's step is `lr · η · ‖w‖ / ‖∇L(w)‖ · ∇L(w)`, so ‖Δw‖/‖w‖ = lr·η whatever
//! the gradient's scale), where SGD's step is proportional to the gradient. Logged on the
//! trainer's metrics steps, it shows whether a collapsed head — near-zero gradients — still moves
//! (docs/studies/byol-norm-lars). Measuring costs one copy of the parameters and a few host
//! reads, on logged steps only.
use crate::optim::Optimizer;
use tch::{Kind, Tensor};

/// The parameters and gradient norms of one step, taken before the optimiser moves them.
pub struct BeforeUpdate {
    /// (group, its parameters as (the live tensor, a copy from before the step), ‖g‖ over its
    /// gradients as a scalar tensor)
    groups: Vec<(String, Vec<(Tensor, Tensor)>, Tensor)>,
}

/// The group a parameter belongs to: its name up to the first `.`.
fn group_of(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

/// √(Σ ‖tᵢ‖²) over `ts` (non-empty), in float64, as a scalar on their device: nothing is read.
fn joint_norm(ts: &[Tensor]) -> Tensor {
    let squares: Vec<Tensor> = ts.iter().map(|t| t.to_kind(Kind::Double).square().sum(Kind::Double)).collect();
    Tensor::stack(&squares, 0).sum(Kind::Double).sqrt()
}

impl BeforeUpdate {
    /// Copies the parameters that have a gradient (those the step will move) and measures the
    /// gradients, grouped in first-seen order — on the device, without a host read (it runs
    /// inside `train.sync_debug`'s window).
    pub fn take(opt: &Optimizer) -> BeforeUpdate {
        let _guard = tch::no_grad_guard();
        let mut order: Vec<(String, Vec<(Tensor, Tensor)>, Vec<Tensor>)> = Vec::new();
        for p in &opt.params {
            let g = p.tensor.grad();
            if !g.defined() {
                continue;
            }
            let group = group_of(&p.name);
            let i = match order.iter().position(|(n, _, _)| n == group) {
                Some(i) => i,
                None => {
                    order.push((group.to_string(), vec![], vec![]));
                    order.len() - 1
                }
            };
            order[i].1.push((p.tensor.shallow_clone(), p.tensor.detach().copy()));
            order[i].2.push(g);
        }
        BeforeUpdate { groups: order.into_iter().map(|(n, params, grads)| { let gn = joint_norm(&grads); (n, params, gn) }).collect() }
    }

    /// After the step: `grad_norm_<group>` and `update_ratio_<group>` for every group, as
    /// metrics fields (read back: a host synchronisation).
    pub fn fields(&self) -> Vec<(String, f64)> {
        let _guard = tch::no_grad_guard();
        let mut out = Vec::new();
        for (group, params, grad_norm) in &self.groups {
            let before: Vec<Tensor> = params.iter().map(|(_, b)| b.shallow_clone()).collect();
            let deltas: Vec<Tensor> = params.iter().map(|(now, b)| now.to_kind(Kind::Double) - b.to_kind(Kind::Double)).collect();
            let weight = joint_norm(&before).double_value(&[]);
            let ratio = if weight > 0.0 { joint_norm(&deltas).double_value(&[]) / weight } else { 0.0 };
            out.push((format!("grad_norm_{group}"), grad_norm.double_value(&[])));
            out.push((format!("update_ratio_{group}"), ratio));
        }
        out
    }
}
