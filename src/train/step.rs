//! The update half of a training step, shared by the trainer and `selfsup bench step`:
//! backward → optimiser → method hook (EMA), in that fixed order.
use crate::methods::Method;
use crate::optim::Optimizer;
use tch::Tensor;

/// Backpropagates `loss`, applies the optimiser with `lr`, then the method's post-step work for
/// step `step` of `total`. Returns the scalars the hook logs (e.g. `tau`).
pub fn apply_update(method: &mut dyn Method, opt: &mut Optimizer, loss: &Tensor, lr: f64, step: usize, total: usize) -> anyhow::Result<Vec<(&'static str, f64)>> {
    opt.zero_grad();
    loss.backward();
    opt.step(lr);
    method.after_step(step, total)
}
