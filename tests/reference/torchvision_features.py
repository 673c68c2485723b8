#!/usr/bin/env python3
"""Loads `selfsup export` output into torchvision's ResNet (CIFAR stem swapped in when asked),
computes L2-normalised features of a PNG folder with plain ToTensor+Normalize preprocessing,
and prints the max abs difference to the features `selfsup embed` wrote.
Usage: torchvision_features.py EXPORT.safetensors EMBED.safetensors IMAGE_DIR ARCH STEM"""
import sys
import torch, torchvision
import torchvision.transforms as T
from safetensors.torch import load_file

export, embed, folder, arch, stem = sys.argv[1:6]
model = getattr(torchvision.models, arch)()
if stem == "cifar":
    model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = torch.nn.Identity()
model.fc = torch.nn.Identity()
state = load_file(export)
missing, unexpected = model.load_state_dict(state, strict=True), None
model.eval()
tf = T.Compose([T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
ds = torchvision.datasets.ImageFolder(folder, transform=tf)
x = torch.stack([ds[i][0] for i in range(len(ds))])
with torch.no_grad():
    f = torch.nn.functional.normalize(model(x), dim=1)
ours = load_file(embed)["features"]
print(f"MAXDIFF {(f - ours).abs().max().item():.3e} N {len(ds)}")
