//! Convolution and linear layers with PyTorch's default initialisation
//! (`kaiming_uniform_(a=√5)`: U(−1/√fan_in, 1/√fan_in) for weights and biases).
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct Conv2d {
    pub weight: Tensor,
    pub stride: i64,
    pub padding: i64,
    /// Weight standardisation (Qiao et al., arXiv:1903.10520): each filter is normalised to zero
    /// mean and unit variance over its fan-in before use.
    pub standardise: bool,
}

impl Conv2d {
    pub fn new(vs: nn::Path, cin: i64, cout: i64, k: i64, stride: i64, padding: i64, standardise: bool) -> Self {
        let bound = 1.0 / ((cin * k * k) as f64).sqrt();
        let weight = vs.var("weight", &[cout, cin, k, k], nn::Init::Uniform { lo: -bound, up: bound });
        Conv2d { weight, stride, padding, standardise }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let w = if self.standardise {
            let mean = self.weight.mean_dim([1i64, 2, 3].as_slice(), true, tch::Kind::Float);
            let var = self.weight.var_dim([1i64, 2, 3].as_slice(), false, true);
            (&self.weight - mean) / (var + 1e-5).sqrt()
        } else {
            self.weight.shallow_clone()
        };
        x.conv2d(&w, None::<Tensor>, [self.stride, self.stride], [self.padding, self.padding], [1, 1], 1)
    }
}

#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    pub fn new(vs: nn::Path, din: i64, dout: i64, bias: bool) -> Self {
        let bound = 1.0 / (din as f64).sqrt();
        let weight = vs.var("weight", &[dout, din], nn::Init::Uniform { lo: -bound, up: bound });
        let bias = bias.then(|| vs.var("bias", &[dout], nn::Init::Uniform { lo: -bound, up: bound }));
        Linear { weight, bias }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, self.bias.as_ref())
    }
}
