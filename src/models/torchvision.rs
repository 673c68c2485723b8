//! torchvision's ResNet state dict: the encoder written under its keys (`selfsup export`), and an
//! encoder read back from any file that uses them — a torchvision model, a solo-learn backbone,
//! lightly's `nn.Sequential` of the ResNet's children (numbered keys, renamed), or an export of
//! ours, in safetensors or `torch.save`'s format ([`crate::models::torch_file`]) — so that other
//! libraries' encoders are measured with the same kNN, linear probe and analysis. Our parameter
//! names are torchvision's under `encoder.` ([`crate::models::resnet`]).
use crate::error::Error;
use crate::models::resnet::ResNetConfig;
use std::collections::HashMap;
use std::path::Path;
use tch::nn::VarStore;
use tch::Tensor;

/// The encoder variables of `online` under torchvision's keys (`encoder.` dropped), plus the
/// `num_batches_tracked` buffers torchvision's BatchNorm keeps, so `load_state_dict` is strict;
/// `actnorm` layers become BatchNorms computing the same map.
pub fn to_torchvision(online: &VarStore) -> Vec<(String, Tensor)> {
    let mut out: Vec<(String, Tensor)> = online
        .variables()
        .into_iter()
        .filter_map(|(n, t)| n.strip_prefix("encoder.").map(|k| (k.to_string(), t.detach().to_device(tch::Device::Cpu).contiguous())))
        .collect();
    // an `actnorm` layer y = w·x + b is torchvision's BatchNorm in eval mode with running mean 0
    // and running variance 1 − ε: (x − 0)/√(1 − ε + ε)·w + b
    let actnorms: Vec<String> = out.iter().filter_map(|(k, _)| k.strip_suffix(".initialised").map(String::from)).collect();
    out.retain(|(k, _)| !k.ends_with(".initialised"));
    for layer in actnorms {
        let scale = out.iter().find(|(k, _)| *k == format!("{layer}.weight")).map(|(_, t)| t.shallow_clone()).expect("actnorm scale");
        out.push((format!("{layer}.running_mean"), scale.zeros_like()));
        out.push((format!("{layer}.running_var"), scale.full_like(1.0 - crate::models::norm::EPS)));
    }
    // `bn-center` keeps a running mean only and `bn-scale` a running variance only: the missing
    // one as variance 1 − ε (no division) or mean 0 (no subtraction) gives BatchNorm's eval map
    let has = |out: &[(String, Tensor)], k: &str| out.iter().any(|(n, _)| n == k);
    let halves: Vec<(String, &str, f64)> = out
        .iter()
        .filter_map(|(k, _)| {
            let (layer, missing, value) = match k.strip_suffix(".running_mean") {
                Some(l) => (l, "running_var", 1.0 - crate::models::norm::EPS),
                None => (k.strip_suffix(".running_var")?, "running_mean", 0.0),
            };
            (!has(&out, &format!("{layer}.{missing}"))).then(|| (layer.to_string(), missing, value))
        })
        .collect();
    for (layer, missing, value) in halves {
        let like = out.iter().find(|(k, _)| k.starts_with(&format!("{layer}.running_"))).map(|(_, t)| t.shallow_clone()).expect("running statistic");
        out.push((format!("{layer}.{missing}"), like.full_like(value)));
    }
    let bns: Vec<String> = out.iter().filter_map(|(k, _)| k.strip_suffix(".running_mean").map(String::from)).collect();
    for bn in bns {
        out.push((format!("{bn}.num_batches_tracked"), Tensor::from(0i64)));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The top-level modules of torchvision's ResNet before its classifier `fc`.
const RESNET_PARTS: [&str; 6] = ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"];

/// The file names read as encoders: safetensors, and what Python's `torch.save` writes.
pub const ENCODER_FILE_EXTENSIONS: [&str; 4] = ["safetensors", "pt", "pth", "ckpt"];

fn is_safetensors(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "safetensors")
}

/// A BatchNorm ResNet read from a torchvision-named state dict.
pub struct TorchvisionResNet {
    /// The architecture its shapes describe (BatchNorm, `arch`, `width`, `stem`).
    pub model: ResNetConfig,
    /// The key prefix it was found under (`""`, `backbone.`, `module.encoder.`, …).
    pub prefix: String,
    /// Its tensors by torchvision key, prefix removed (`num_batches_tracked` left out).
    pub tensors: HashMap<String, Tensor>,
    /// Keys of the file not read: a classifier (`fc.*`), heads, other prefixes' tensors.
    pub ignored: Vec<String>,
    /// Other prefixes under which the file holds a ResNet too (a momentum copy, say).
    pub other_prefixes: Vec<String>,
    /// Whether its children were numbered (`nn.Sequential`, lightly's backbone) and renamed.
    pub numbered: bool,
}

/// torchvision's ResNet children as `nn.Sequential(*list(resnet.children())[:-1])` — lightly's
/// backbone — numbers them: conv1, bn1, relu, maxpool, layer1 … layer4, avgpool.
const NUMBERED_CHILDREN: [(&str, &str); 6] = [("0", "conv1"), ("1", "bn1"), ("4", "layer1"), ("5", "layer2"), ("6", "layer3"), ("7", "layer4")];

/// Renames the numbered children of every such `nn.Sequential` in the file (a prefix `P` with
/// `P0.weight`, `P1.running_mean` and `P4.0.conv1.weight`) to torchvision's names; returns the
/// renamed state dict and those prefixes.
fn named_children(all: HashMap<String, Tensor>) -> (HashMap<String, Tensor>, Vec<String>) {
    let numbered: Vec<String> = all
        .keys()
        .filter_map(|k| k.strip_suffix("4.0.conv1.weight"))
        .filter(|p| (p.is_empty() || p.ends_with('.')) && all.contains_key(&format!("{p}0.weight")) && all.contains_key(&format!("{p}1.running_mean")))
        .map(String::from)
        .collect();
    if numbered.is_empty() {
        return (all, numbered);
    }
    let renamed = all
        .into_iter()
        .map(|(k, t)| {
            for p in &numbered {
                if let Some(rest) = k.strip_prefix(p.as_str()) {
                    let (child, tail) = rest.split_once('.').unwrap_or((rest, ""));
                    if let Some((_, name)) = NUMBERED_CHILDREN.iter().find(|(n, _)| *n == child) {
                        return (format!("{p}{name}.{tail}"), t);
                    }
                }
            }
            (k, t)
        })
        .collect();
    (renamed, numbered)
}

/// Reads a torchvision-named ResNet from a safetensors file, or from a file of Python's
/// `torch.save` (`.pt`, `.pth`, `.ckpt`: a state dict, or a checkpoint holding one — keys of nested
/// dictionaries are joined with dots, so Lightning's `state_dict.backbone.` is a prefix like any
/// other). The prefix is found, not given: every `P` with `Pconv1.weight` and
/// `Players1.0.conv1.weight`; where several hold a ResNet (solo-learn keeps `backbone.` and
/// `momentum_backbone.`) the shortest is read, and it must have `Pbn1.running_mean`. The
/// architecture comes from the shapes: the stem from conv1's kernel (3×3: the CIFAR stem, stride 1
/// without max-pool, padding 1 unless the caller knows better — solo-learn pads by 2,
/// `cifar-pad2`; 7×7: ImageNet's), the width from conv1's output channels, the depth from the
/// blocks per stage and whether they are bottlenecks (`conv3`).
pub fn read(path: &Path) -> Result<TorchvisionResNet, Error> {
    if !path.is_file() {
        return Err(Error::data(path, "no such file"));
    }
    let all = if is_safetensors(path) {
        Tensor::read_safetensors(path).map_err(|e| Error::data(path, format!("unreadable safetensors file: {e}")))?
    } else {
        crate::models::torch_file::read(path)?
    };
    let (all, numbered) = named_children(all.into_iter().collect());
    let mut prefixes: Vec<String> = all
        .keys()
        .filter_map(|k| k.strip_suffix("conv1.weight"))
        .filter(|p| p.is_empty() || p.ends_with('.'))
        .filter(|p| all.contains_key(&format!("{p}layer1.0.conv1.weight")))
        .map(String::from)
        .collect();
    prefixes.sort_by_key(|p| (p.len(), p.clone()));
    let Some(prefix) = prefixes.first().cloned() else {
        return Err(Error::data(path, "holds no torchvision-named ResNet (no `conv1.weight` beside `layer1.0.conv1.weight`, under any prefix)"));
    };
    if !all.contains_key(&format!("{prefix}bn1.running_mean")) {
        return Err(Error::data(path, format!("`{prefix}bn1.running_mean` missing: only ResNets with torchvision's BatchNorm (running statistics) can be read")));
    }
    let key = |k: &str| format!("{prefix}{k}");
    let conv1 = all[&key("conv1.weight")].size();
    if conv1.len() != 4 || conv1[1] != 3 {
        return Err(Error::data(path, format!("`{}` has shape {conv1:?}: expected [width, 3, k, k] (RGB input)", key("conv1.weight"))));
    }
    let stem = match conv1[2] {
        3 => "cifar",
        7 => "imagenet",
        k => return Err(Error::data(path, format!("`{}` is a {k}×{k} convolution: selfsup's stems are 3×3 (CIFAR) and 7×7 (ImageNet)", key("conv1.weight")))),
    };
    let bottleneck = all.contains_key(&key("layer1.0.conv3.weight"));
    let blocks: Vec<usize> = (1..=4).map(|l| (0..).take_while(|b| all.contains_key(&key(&format!("layer{l}.{b}.conv1.weight")))).count()).collect();
    let mut model = ResNetConfig { width: conv1[0], stem: stem.into(), ..Default::default() };
    let arch = ["resnet18", "resnet34", "resnet50"].into_iter().find(|a| {
        model.arch = a.to_string();
        model.layout().map(|(b, bn)| b.as_slice() == blocks.as_slice() && bn == bottleneck).unwrap_or(false)
    });
    if arch.is_none() {
        let kind = if bottleneck { "bottleneck" } else { "basic" };
        return Err(Error::data(path, format!("a ResNet of {kind} blocks {blocks:?} per stage: selfsup builds resnet18 (basic [2, 2, 2, 2]), resnet34 (basic [3, 4, 6, 3]) and resnet50 (bottleneck [3, 4, 6, 3])")));
    }
    model.validate().map_err(|e| Error::data(path, format!("the ResNet it holds does not fit selfsup: {e}")))?;
    let mut tensors = HashMap::new();
    let mut ignored = Vec::new();
    for (k, t) in all {
        if k.ends_with("num_batches_tracked") {
            continue;
        }
        let part = |name: &str| RESNET_PARTS.contains(&name.split('.').next().unwrap_or(""));
        match k.strip_prefix(&prefix) {
            Some(name) if part(name) && !prefixes[1..].iter().any(|p| k.starts_with(p.as_str())) => {
                tensors.insert(name.to_string(), t);
            }
            _ => ignored.push(k),
        }
    }
    ignored.sort();
    Ok(TorchvisionResNet { model, numbered: numbered.contains(&prefix), prefix, tensors, ignored, other_prefixes: prefixes[1..].to_vec() })
}

impl TorchvisionResNet {
    /// A state dict does not record padding: a 3×3 stem read as `cifar` takes the configured
    /// stem's padding when that is `cifar-pad2` (solo-learn's); any other stem stays as read.
    pub fn with_padding_of(mut self, configured: &ResNetConfig) -> Self {
        if self.model.stem == configured.stem_weights() {
            self.model.stem = configured.stem.clone();
        }
        self
    }

    /// Copies the file's tensors into every `encoder.*` variable of `online` (cast to its dtype and
    /// device); a variable without a tensor of its shape is an error naming the key, and a ResNet
    /// tensor that no variable takes is one too (the file holds a variant, e.g. with SE blocks).
    pub fn load_into(&self, online: &VarStore, path: &Path) -> Result<(), Error> {
        let _g = tch::no_grad_guard();
        let vars = online.variables();
        let mut used = 0;
        for (name, var) in &vars {
            let Some(key) = name.strip_prefix("encoder.") else { continue };
            let t = self.tensors.get(key).ok_or_else(|| Error::data(path, format!("lacks `{}{key}`, which a {} has", self.prefix, self.model.arch)))?;
            if t.size() != var.size() {
                return Err(Error::data(path, format!("`{}{key}` has shape {:?}; a {} of width {} needs {:?}", self.prefix, t.size(), self.model.arch, self.model.width, var.size())));
            }
            var.shallow_clone().copy_(t);
            used += 1;
        }
        if used < self.tensors.len() {
            let mut extra: Vec<&String> = self.tensors.keys().filter(|k| !vars.contains_key(&format!("encoder.{k}"))).collect();
            extra.sort();
            return Err(Error::data(path, format!("`{}{}` is not part of a torchvision {} ({} such tensors)", self.prefix, extra[0], self.model.arch, extra.len())));
        }
        Ok(())
    }

    /// One line for the log: what was read and what was left, by module (`backbone.fc.*`).
    pub fn describe(&self, path: &Path) -> String {
        let mut s = format!("{}: torchvision {}, width {}, {} stem, BatchNorm", path.display(), self.model.arch, self.model.width, self.model.stem);
        if self.model.stem.starts_with("cifar") {
            s.push_str(&format!(" (a state dict does not record padding: {}; solo-learn's CIFAR models need --set model.stem=cifar-pad2)", if self.model.stem == "cifar" { "padding 1 taken" } else { "padding 2, as set" }));
        }
        if !self.prefix.is_empty() {
            s.push_str(&format!(", under `{}`", self.prefix));
        }
        if self.numbered {
            s.push_str(" (numbered nn.Sequential children, lightly's backbone, read as conv1, bn1, layer1-4)");
        }
        let mut groups: Vec<(String, usize)> = Vec::new();
        for k in &self.ignored {
            let group = match self.other_prefixes.iter().find(|p| k.starts_with(p.as_str())) {
                Some(p) => format!("{p}*"),
                None => {
                    // by module: under the prefix (`backbone.fc.*`), else beside it (`projector.*`,
                    // `state_dict.projector.*` for a prefix `state_dict.backbone.`)
                    let parent = self.prefix.trim_end_matches('.').rsplit_once('.').map(|(p, _)| format!("{p}.")).unwrap_or_default();
                    let head = [self.prefix.as_str(), parent.as_str()].into_iter().find(|h| k.starts_with(h)).unwrap_or("");
                    let rest = &k[head.len()..];
                    format!("{head}{}.*", rest.split('.').next().unwrap_or(rest))
                }
            };
            match groups.iter_mut().find(|(g, _)| *g == group) {
                Some((_, n)) => *n += 1,
                None => groups.push((group, 1)),
            }
        }
        if !groups.is_empty() {
            let listed: Vec<String> = groups
                .iter()
                .map(|(g, n)| if self.other_prefixes.iter().any(|p| g.starts_with(p.as_str())) { format!("{g} ({n}, another ResNet)") } else { format!("{g} ({n})") })
                .collect();
            s.push_str(&format!("; not read: {}", listed.join(", ")));
        }
        s
    }
}

/// `model.init`: the encoder of `model.init`'s file copied into the online encoder of `stores[0]`
/// and into every other store's `encoder.*` (BYOL's target, MoCo's and AdCo's key encoder start
/// equal to the online one). The file must hold the configured architecture; `model.norm` must
/// keep BatchNorm's parameters and statistics. Returns the line to log.
pub fn start_from(model: &ResNetConfig, stores: &[(&'static str, &VarStore)]) -> Result<String, Error> {
    use crate::models::NormKind;
    let path = Path::new(&model.init);
    let file = read(path)?.with_padding_of(model);
    let (f, c) = (&file.model, model);
    if (f.arch.as_str(), f.width, f.stem.as_str()) != (c.arch.as_str(), c.width, c.stem.as_str()) {
        return Err(Error::config(
            "model.init",
            &model.init,
            format!("holds a {} of width {} with the {} stem; the config builds a {} of width {} with the {} stem (set model.arch, model.width and model.stem to the file's)", f.arch, f.width, f.stem, c.arch, c.width, c.stem),
        ));
    }
    if !matches!(c.norm, NormKind::Bn | NormKind::Splitbn | NormKind::Syncbn) {
        return Err(Error::config("model.init", &model.init, "holds BatchNorm layers: it needs model.norm = \"bn\", \"splitbn\" or \"syncbn\""));
    }
    let online = stores[0].1;
    file.load_into(online, path)?;
    let from = online.variables();
    tch::no_grad(|| {
        for (_, vs) in &stores[1..] {
            for (name, mut t) in vs.variables() {
                if let (true, Some(v)) = (name.starts_with("encoder."), from.get(&name)) {
                    t.copy_(v);
                }
            }
        }
    });
    Ok(format!("encoder from {}", file.describe(path)))
}
