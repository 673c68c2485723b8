#!/usr/bin/env python3
"""Independent reference for the augmentation ops: torchvision's own functional ops applied to
the fixed image the Rust test writes. Prints one JSON object of flat float lists."""
import json, sys
import torch
import torchvision.transforms.v2.functional as F

src = json.load(open(sys.argv[1]))
h, w = src["height"], src["width"]
img = torch.tensor(src["planar"], dtype=torch.float32).view(3, h, w)
out = {
    "brightness": F.adjust_brightness(img, src["brightness"]),
    "contrast": F.adjust_contrast(img, src["contrast"]),
    "saturation": F.adjust_saturation(img, src["saturation"]),
    "hue": F.adjust_hue(img, src["hue"]),
    "grayscale": F.rgb_to_grayscale(img, num_output_channels=3),
    "solarize": F.solarize(img, threshold=src["threshold"]),
    "blur": F.gaussian_blur(img, kernel_size=[src["kernel"], src["kernel"]], sigma=[src["sigma"], src["sigma"]]),
    "hflip": F.horizontal_flip(img),
}
u8 = torch.tensor(src["u8"], dtype=torch.uint8).view(h, w, 3).permute(2, 0, 1)
# antialiased bilinear resize of a crop, as RandomResizedCrop does on tensors
top, left, ch, cw, size = src["crop"]
out["resized_crop"] = F.resized_crop(u8.float() / 255.0, top, left, ch, cw, [size, size], antialias=True)
print(json.dumps({k: v.flatten().tolist() for k, v in out.items()}))
