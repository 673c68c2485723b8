//! ResNet-18/34/50 (He et al., "Deep Residual Learning for Image Recognition", 2016,
//! arXiv:1512.03385) with three stems: `imagenet` (7×7 conv stride 2 + 3×3 max-pool), `cifar`
//! (3×3 conv stride 1 padding 1, no max-pool) and `cifar-pad2` (the same padded by 2, solo-learn's
//! CIFAR stem: a 32-pixel image becomes 34×34 feature maps), a base-width multiplier for tiny CPU
//! runs, and the normalisation layer as a parameter. Parameter names match torchvision's
//! `resnet*` (`conv1`, `bn1`, `layerL.B.conv1`, `layerL.B.downsample.0`, …), so an export loads
//! there and torchvision-named files load here ([`crate::models::torchvision`]).
use crate::error::Error;
use crate::models::layers::Conv2d;
use crate::models::norm::{check_gn_groups, Norm, NormKind, DEFAULT_GN_GROUPS};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResNetConfig {
    /// resnet18 | resnet34 | resnet50
    pub arch: String,
    /// Base width (64 = standard).
    pub width: i64,
    /// cifar | cifar-pad2 | imagenet
    pub stem: String,
    pub norm: NormKind,
    /// Sub-batches for `splitbn`.
    pub norm_splits: i64,
    /// GroupNorm's groups for `gnws` (at most; see [`crate::models::norm::gn_groups`]).
    pub gn_groups: i64,
    /// An encoder file training starts from (`.safetensors` or `torch.save`'s; empty: random
    /// init), see [`crate::models::torchvision::start_from`].
    pub init: String,
}

impl Default for ResNetConfig {
    fn default() -> Self {
        ResNetConfig { arch: "resnet18".into(), width: 64, stem: "cifar".into(), norm: NormKind::Bn, norm_splits: 8, gn_groups: DEFAULT_GN_GROUPS, init: String::new() }
    }
}

impl ResNetConfig {
    /// (blocks per stage, bottleneck?)
    pub fn layout(&self) -> Result<([usize; 4], bool), Error> {
        crate::config::choose(
            "model.arch",
            &self.arch,
            &[("resnet18", ([2, 2, 2, 2], false)), ("resnet34", ([3, 4, 6, 3], false)), ("resnet50", ([3, 4, 6, 3], true))],
        )
    }

    pub fn validate(&self) -> Result<(), Error> {
        self.layout()?;
        crate::config::check_one_of("model.stem", &self.stem, &["cifar", "cifar-pad2", "imagenet"])?;
        if !(1..=1024).contains(&self.width) {
            return Err(Error::config("model.width", self.width, "must lie in 1..=1024"));
        }
        if !(1..=1024).contains(&self.norm_splits) {
            return Err(Error::config("model.norm_splits", self.norm_splits, "must lie in 1..=1024"));
        }
        check_gn_groups("model.gn_groups", self.gn_groups)?;
        Ok(())
    }

    /// The stem's weights' shape class: `cifar` and `cifar-pad2` hold the same tensors (they differ
    /// in padding only, which a state dict does not record).
    pub fn stem_weights(&self) -> &str {
        if self.stem == "cifar-pad2" { "cifar" } else { &self.stem }
    }

    /// Feature dimension of the pooled output.
    pub fn out_dim(&self) -> i64 {
        let bottleneck = self.arch == "resnet50";
        self.width * 8 * if bottleneck { 4 } else { 1 }
    }
}

#[derive(Debug)]
struct Block {
    convs: Vec<Conv2d>,
    norms: Vec<Norm>,
    downsample: Option<(Conv2d, Norm)>,
}

impl Block {
    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = x.shallow_clone();
        let last = self.convs.len() - 1;
        for (i, (c, n)) in self.convs.iter().zip(&self.norms).enumerate() {
            h = n.forward(&c.forward(&h), train);
            if i < last {
                h = h.relu();
            }
        }
        let shortcut = match &self.downsample {
            Some((c, n)) => n.forward(&c.forward(x), train),
            None => x.shallow_clone(),
        };
        (h + shortcut).relu()
    }
}

#[derive(Debug)]
pub struct ResNet {
    pub cfg: ResNetConfig,
    conv1: Conv2d,
    bn1: Norm,
    max_pool: bool,
    blocks: Vec<Block>,
}

impl ResNet {
    pub fn new(vs: nn::Path, cfg: &ResNetConfig) -> Result<ResNet, Error> {
        cfg.validate()?;
        let (layout, bottleneck) = cfg.layout()?;
        let ws = cfg.norm.weight_standardised();
        let norm = |p: nn::Path, c: i64| Norm::new(p, cfg.norm, c, cfg.norm_splits).with_gn_groups(cfg.gn_groups);
        let w = cfg.width;
        let (conv1, max_pool) = match cfg.stem.as_str() {
            "imagenet" => (Conv2d::new(&vs / "conv1", 3, w, 7, 2, 3, ws), true),
            "cifar-pad2" => (Conv2d::new(&vs / "conv1", 3, w, 3, 1, 2, ws), false),
            _ => (Conv2d::new(&vs / "conv1", 3, w, 3, 1, 1, ws), false),
        };
        let bn1 = norm(&vs / "bn1", w);
        let expansion = if bottleneck { 4 } else { 1 };
        let mut cin = w;
        let mut blocks = Vec::new();
        for (stage, &n) in layout.iter().enumerate() {
            let planes = w << stage;
            let lp = &vs / format!("layer{}", stage + 1);
            for b in 0..n {
                let bp = &lp / b;
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                let cout = planes * expansion;
                let (convs, norms) = if bottleneck {
                    // torchvision v1.5: the stride sits on the 3x3 conv
                    (
                        vec![
                            Conv2d::new(&bp / "conv1", cin, planes, 1, 1, 0, ws),
                            Conv2d::new(&bp / "conv2", planes, planes, 3, stride, 1, ws),
                            Conv2d::new(&bp / "conv3", planes, cout, 1, 1, 0, ws),
                        ],
                        vec![norm(&bp / "bn1", planes), norm(&bp / "bn2", planes), norm(&bp / "bn3", cout)],
                    )
                } else {
                    (
                        vec![Conv2d::new(&bp / "conv1", cin, planes, 3, stride, 1, ws), Conv2d::new(&bp / "conv2", planes, planes, 3, 1, 1, ws)],
                        vec![norm(&bp / "bn1", planes), norm(&bp / "bn2", planes)],
                    )
                };
                let downsample = (stride != 1 || cin != cout).then(|| {
                    let dp = &bp / "downsample";
                    (Conv2d::new(&dp / 0, cin, cout, 1, stride, 0, ws), norm(&dp / 1, cout))
                });
                blocks.push(Block { convs, norms, downsample });
                cin = cout;
            }
        }
        Ok(ResNet { cfg: cfg.clone(), conv1, bn1, max_pool, blocks })
    }

    /// The kind of the weights (float32, or float64 with `train.precision = "f64"`).
    pub fn kind(&self) -> tch::Kind {
        self.conv1.weight.kind()
    }

    pub fn out_dim(&self) -> i64 {
        self.cfg.out_dim()
    }

    /// `x: [N, 3, H, W]` → pooled features `[N, out_dim]`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = self.bn1.forward(&self.conv1.forward(x), train).relu();
        if self.max_pool {
            h = h.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        }
        for b in &self.blocks {
            h = b.forward(&h, train);
        }
        // [N, C, h, w] -> [N, C]
        h.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }
}
