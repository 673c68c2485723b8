#!/usr/bin/env python3
"""Independent PyTorch check of BYOL's first steps with several normalisations in the encoder and
heads, at the CPU reference recipe (width-16 CIFAR ResNet-18 of ../shared/bench/byol_step.py, heads
128->512->128, batch 64, SGD momentum 0.9 wd 5e-4, lr 0.1 cosine to 0 and tau_base 0.9 cosine to 1 over
--total steps, 276 = byol-norm's 6 epochs of 46):
  bn       BatchNorm everywhere (BYOL as published);
  none     BatchNorm in the encoder, none in the projector and predictor;
  actnorm  every BatchNorm replaced by an affine map initialised from the first batch's BN statistics
           (scale 1/sqrt(var + eps), shift -mean/sqrt(var + eps)) and then learned, with no batch
           statistics (arXiv:2010.10241's data-dependent initialisation; selfsup's `actnorm`);
  ln       LayerNorm everywhere (over C, H, W for maps, with per-channel affine; over features in
           the heads);
  gnws     GroupNorm (32 groups, or the largest divisor of the channels below that) everywhere,
           with weight-standardised convolutions (arXiv:1903.10520; BYOL's arXiv:2010.10241);
  bn-center  BatchNorm in the encoder; in the heads the batch mean subtracted, no division by the
           std, then the affine map (selfsup's `bn-center`);
  bn-scale BatchNorm in the encoder; in the heads division by the batch std (biased, + eps), no
           mean subtracted, then the affine map (selfsup's `bn-scale`).
Prints, per step, the loss and the online projections' z-std (mean per-dimension std of the
L2-normalised batch; about 1/sqrt(128) = 0.088 when spread, 0 when collapsed) and their mean cosine
to the batch mean: what `selfsup train --set train.log_every=1` logs as loss / z_std / batch_mean_cos.
Usage: byol_first_steps.py --data CIFAR_TRAIN_DIR --norm bn|none|actnorm|ln|gnws|bn-center|bn-scale [--steps 20 --total 276 --seed 1]"""
import argparse, copy, math, os, sys
import torch, torchvision, torch.nn as nn, torch.nn.functional as F
import torchvision.transforms as T

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../../shared/bench"))
from byol_step import ResNet18Cifar  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--data", required=True); ap.add_argument("--norm", default="bn", choices=["bn", "none", "actnorm", "ln", "gnws", "bn-center", "bn-scale"])
ap.add_argument("--steps", type=int, default=20); ap.add_argument("--total", type=int, default=276)
ap.add_argument("--seed", type=int, default=1)
a = ap.parse_args()
torch.set_num_threads(1); torch.manual_seed(a.seed)


def groups(channels):
    return next(g for g in range(min(32, channels), 0, -1) if channels % g == 0)


class HalfBatchNorm(nn.Module):
    """One half of BatchNorm's standardisation over the batch (training mode only), then gamma, beta."""
    def __init__(self, features, center):
        super().__init__()
        self.center = center
        self.weight = nn.Parameter(torch.ones(features)); self.bias = nn.Parameter(torch.zeros(features))

    def forward(self, x):
        y = x - x.mean(0, keepdim=True) if self.center else x / (x.var(0, unbiased=False, keepdim=True) + 1e-5).sqrt()
        return y * self.weight + self.bias


def vector_norm(hidden):
    if a.norm in ("bn-center", "bn-scale"):
        return [HalfBatchNorm(hidden, a.norm == "bn-center")]
    return {"none": [], "ln": [nn.LayerNorm(hidden)], "gnws": [nn.GroupNorm(groups(hidden), hidden)]}.get(a.norm, [nn.BatchNorm1d(hidden)])


def mlp(din, hidden, dout):
    return nn.Sequential(nn.Linear(din, hidden), *vector_norm(hidden), nn.ReLU(), nn.Linear(hidden, dout))


class WSConv2d(nn.Conv2d):
    """A convolution whose filters are standardised (zero mean, unit variance over the fan-in)."""
    def forward(self, x):
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
        return F.conv2d(x, (w - mean) / (var + 1e-5).sqrt(), None, self.stride, self.padding)


def swap_encoder_norms(module):
    """BatchNorm2d -> GroupNorm(1) (ln) or GroupNorm(32) with weight-standardised convolutions (gnws)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            c = child.num_features
            setattr(module, name, nn.GroupNorm(1 if a.norm == "ln" else groups(c), c))
        elif isinstance(child, nn.Conv2d) and a.norm == "gnws":
            ws = WSConv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride, child.padding, bias=False)
            ws.weight.data.copy_(child.weight.data)
            setattr(module, name, ws)
        else:
            swap_encoder_norms(child)


class Affine(nn.Module):
    """y = w*x + b per channel, initialised from a batch's mean and (biased) variance."""
    def __init__(self, mean, var, eps):
        super().__init__()
        s = (var + eps).rsqrt()
        self.w, self.b = nn.Parameter(s.clone()), nn.Parameter(-mean * s)

    def forward(self, x):
        shape = (1, -1, 1, 1) if x.dim() == 4 else (1, -1)
        return x * self.w.view(shape) + self.b.view(shape)


aug = T.Compose([T.RandomResizedCrop(32, scale=(0.08, 1.0)), T.RandomHorizontalFlip(),
                 T.RandomApply([T.ColorJitter(0.2, 0.2, 0.1, 0.05)], p=0.8), T.RandomGrayscale(0.2), T.ToTensor(),
                 T.Normalize((0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261))])
ds = torchvision.datasets.ImageFolder(a.data, transform=lambda img: (aug(img), aug(img)))
dl = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True, drop_last=True, num_workers=0)
enc = ResNet18Cifar(width=16)
if a.norm in ("ln", "gnws"):
    swap_encoder_norms(enc)
online = nn.Sequential(enc, mlp(enc.out_dim, 512, 128))
pred = mlp(128, 512, 128)
batches = iter(dl)
if a.norm == "actnorm":
    (x1, _), _ = next(batches)
    norms = [m for m in list(online.modules()) + list(pred.modules()) if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    stats = {}

    def keep(m, inp, out):
        x = inp[0].transpose(0, 1).reshape(inp[0].shape[1], -1)
        stats[m] = (x.mean(1), x.var(1, unbiased=False))
    hooks = [m.register_forward_hook(keep) for m in norms]
    with torch.no_grad():
        pred(online(x1))
    for h in hooks:
        h.remove()

    def swap(module):
        for name, child in module.named_children():
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(module, name, Affine(*stats[child], child.eps))
            else:
                swap(child)
    swap(online); swap(pred)
target = copy.deepcopy(online)
for p in target.parameters():
    p.requires_grad_(False)
opt = torch.optim.SGD(list(online.parameters()) + list(pred.parameters()), lr=0.1, momentum=0.9, weight_decay=5e-4)
reg = lambda p, z: 2 - 2 * F.cosine_similarity(p, z, dim=-1).mean()
for step in range(a.steps):
    (x1, x2), _ = next(batches)
    cosine = (math.cos(math.pi * step / a.total) + 1) / 2
    tau = 1 - (1 - 0.9) * cosine
    for g in opt.param_groups:
        g["lr"] = 0.1 * cosine
    z_online = online(x1)
    p1, p2 = pred(z_online), pred(online(x2))
    with torch.no_grad():
        t1, t2 = target(x1), target(x2)
    loss = reg(p1, t2) + reg(p2, t1)
    opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad():
        for po, pt in zip(online.parameters(), target.parameters()):
            pt.mul_(tau).add_((1 - tau) * po)
        zn = F.normalize(z_online, dim=1)
        cos = F.cosine_similarity(zn, zn.mean(0, keepdim=True)).mean().item()
    print(f"{a.norm} step {step + 1} loss {loss.item():.4f} z_std {zn.std(0).mean().item():.5f} batch_mean_cos {cos:.3f}", flush=True)
