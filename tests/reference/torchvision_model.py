#!/usr/bin/env python3
"""Writes a torchvision ResNet as another library would save it, and its features of a PNG folder,
for `selfsup` to read the file and compare (the reverse of torchvision_features.py).

The weights are torchvision's initialisation with every BatchNorm's affine map and running
statistics drawn at random too, so eval-mode BatchNorm is not the identity. STEM: imagenet, cifar
(3x3 conv stride 1 padding 1, no max-pool) or cifar-pad2 (solo-learn's: padding 2). The module
saved is a method's, as `state_dict()` gives it (an OrderedDict with `_metadata`). FORM:
- named: solo-learn's layout — the ResNet under `backbone.` with its classifier `fc`, a
  `projector`, and a second ResNet under `momentum_backbone.`;
- numbered: lightly's — `nn.Sequential(*list(resnet.children())[:-1])` under `backbone.` (keys
  `backbone.0.weight`, `backbone.4.0.conv1.weight`, ...), a `projection_head`, and the momentum
  copy under `backbone_momentum.`.
CONTAINER: safetensors (`save_file`), pth (`torch.save(state_dict)`) or ckpt (Lightning's: the
state dict under `state_dict` beside an epoch and a pickled object of a class of this script).
The reader must take the shorter prefix and leave the rest. Features: the ResNet without `fc`,
eval mode, ToTensor + ImageNet Normalize, L2-normalised; written as `features` to FEATURES.
Usage: torchvision_model.py MODEL FEATURES.safetensors IMAGE_DIR ARCH STEM FORM CONTAINER"""
import sys
import torch, torchvision
import torchvision.transforms as T
from safetensors.torch import save_file

out, features_out, folder, arch, stem, form, container = sys.argv[1:8]


def resnet(seed):
    torch.manual_seed(seed)
    model = getattr(torchvision.models, arch)()
    if stem.startswith("cifar"):
        model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 2 if stem == "cifar-pad2" else 1, bias=False)
        model.maxpool = torch.nn.Identity()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0.0, 0.1)
            m.running_mean.normal_(0.0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
            m.num_batches_tracked.fill_(100)
    return model.eval()


class Settings:
    """A hyper-parameter object, as Lightning pickles one into its checkpoints."""
    def __init__(self):
        self.lr = 0.1


online, momentum = resnet(0), resnet(1)
method = torch.nn.Module()
if form == "named":
    method.backbone, method.momentum_backbone = online, momentum
    method.projector = torch.nn.Linear(online.fc.in_features, 16)
else:
    children = lambda m: torch.nn.Sequential(*list(m.children())[:-1])
    method.backbone, method.backbone_momentum = children(online), children(momentum)
    method.projection_head = torch.nn.Linear(online.fc.in_features, 16)
state = method.state_dict()
if container == "safetensors":
    save_file({k: v.contiguous() for k, v in state.items()}, out)
elif container == "pth":
    torch.save(state, out)
else:
    torch.save({"epoch": 3, "global_step": 300, "state_dict": state, "hyper_parameters": Settings()}, out)

online.fc = torch.nn.Identity()
tf = T.Compose([T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
ds = torchvision.datasets.ImageFolder(folder, transform=tf)
x = torch.stack([ds[i][0] for i in range(len(ds))])
with torch.no_grad():
    f = torch.nn.functional.normalize(online(x), dim=1)
save_file({"features": f.contiguous()}, features_out)
print(f"WROTE {len(state)} tensors, features {tuple(f.shape)}")
