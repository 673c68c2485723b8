#!/usr/bin/env python3
"""Writes a torchvision ResNet as another library would save it, and its features of a PNG folder,
for `selfsup` to read the file and compare (the reverse of torchvision_features.py).

The weights are torchvision's initialisation with every BatchNorm's affine map and running
statistics drawn at random too, so eval-mode BatchNorm is not the identity. The state dict goes
under `backbone.` with the classifier `fc.*` kept, a `projector.` head beside it, and a second,
different ResNet under `momentum_backbone.` (as solo-learn's BYOL keeps its target): the reader
must take the shorter prefix and leave the rest. Features: `model.fc = Identity`, eval mode,
ToTensor + ImageNet Normalize, L2-normalised; written as `features` to FEATURES.
Usage: torchvision_model.py MODEL.safetensors FEATURES.safetensors IMAGE_DIR ARCH STEM"""
import sys
import torch, torchvision
import torchvision.transforms as T
from safetensors.torch import save_file

out, features_out, folder, arch, stem = sys.argv[1:6]


def resnet(seed):
    torch.manual_seed(seed)
    model = getattr(torchvision.models, arch)()
    if stem == "cifar":
        model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        model.maxpool = torch.nn.Identity()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0.0, 0.1)
            m.running_mean.normal_(0.0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
            m.num_batches_tracked.fill_(100)
    return model.eval()


online, momentum = resnet(0), resnet(1)
state = {f"backbone.{k}": v for k, v in online.state_dict().items()}
state.update({f"momentum_backbone.{k}": v for k, v in momentum.state_dict().items() if not k.startswith("fc.")})
state["projector.0.weight"] = torch.randn(16, online.fc.in_features)
save_file({k: v.contiguous() for k, v in state.items()}, out)

online.fc = torch.nn.Identity()
tf = T.Compose([T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
ds = torchvision.datasets.ImageFolder(folder, transform=tf)
x = torch.stack([ds[i][0] for i in range(len(ds))])
with torch.no_grad():
    f = torch.nn.functional.normalize(online(x), dim=1)
save_file({"features": f.contiguous()}, features_out)
print(f"WROTE {len(state)} tensors, features {tuple(f.shape)}")
