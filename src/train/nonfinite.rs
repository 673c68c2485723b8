//! Non-finite values seen during training, kept on the device so that the step needs no host
//! synchronisation: the first step whose loss or gradient was not finite is recorded by a few
//! scalar tensor operations and read back only where the host has to know (log lines,
//! checkpoints, evaluation, the end of an epoch; see `train.sync_every`). A checkpoint is written
//! only after such a read found nothing, so a non-finite step is never saved.
use tch::{Device, Kind, Tensor};

/// Why a step was not finite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonFinite {
    Loss,
    Gradient,
}

impl NonFinite {
    fn code(self) -> i64 {
        match self {
            NonFinite::Loss => 1,
            NonFinite::Gradient => 2,
        }
    }

    fn from_code(c: i64) -> Option<NonFinite> {
        match c {
            1 => Some(NonFinite::Loss),
            2 => Some(NonFinite::Gradient),
            _ => None,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            NonFinite::Loss => "non-finite loss",
            NonFinite::Gradient => "non-finite gradient",
        }
    }
}

/// The first non-finite step, on the device: `[step, code]` (int64), `[-1, 0]` while none.
pub struct NonFiniteWatch {
    first: Tensor,
}

impl NonFiniteWatch {
    pub fn new(device: Device) -> Self {
        NonFiniteWatch { first: Tensor::from_slice(&[-1i64, 0]).to_device(device) }
    }

    /// Records step `step` if `loss` is not finite (checked first) or `grads_finite` (a boolean
    /// scalar) is false, unless an earlier step is already recorded. Device operations only.
    pub fn record(&mut self, step: usize, loss: &Tensor, grads_finite: &Tensor) {
        tch::no_grad(|| {
            let device = self.first.device();
            let loss_bad = loss.detach().isfinite().logical_not().to_device(device);
            let grad_bad = grads_finite.logical_not().to_device(device);
            let code = loss_bad.to_kind(Kind::Int64) * NonFinite::Loss.code()
                + grad_bad.logical_and(&loss_bad.logical_not()).to_kind(Kind::Int64) * NonFinite::Gradient.code();
            let new = code.gt(0).logical_and(&self.first.get(0).lt(0));
            // a fill on the device, not a host-to-device copy (which would wait for the device)
            let here = Tensor::stack(&[Tensor::full([], step as i64, (Kind::Int64, device)), code], 0);
            self.first = here.where_self(&new, &self.first);
        })
    }

    /// The values as a float64 CPU pair `[step, code]`, to be read together with other scalars
    /// in one transfer (see [`NonFiniteWatch::decode`]).
    pub fn raw(&self) -> Tensor {
        self.first.to_kind(Kind::Double)
    }

    /// The first non-finite step and its cause from the two values [`NonFiniteWatch::raw`] gave.
    pub fn decode(step: f64, code: f64) -> Option<(usize, NonFinite)> {
        if step < 0.0 {
            return None;
        }
        NonFinite::from_code(code as i64).map(|k| (step as usize, k))
    }

    /// Reads the record back (a host synchronisation).
    pub fn read(&self) -> anyhow::Result<Option<(usize, NonFinite)>> {
        let v: Vec<f64> = Vec::<f64>::try_from(&self.raw().to_device(Device::Cpu))?;
        Ok(NonFiniteWatch::decode(v[0], v[1]))
    }
}
