"""Writes torchvision's MobileNetV3-Small (random weights, eval mode) as ONNX with torch.onnx.

Usage: torchvision_export.py OUT.onnx   (Debian's python3-torchvision: torch 1.13, opset 13)
"""
import sys

import torch
import torchvision

torch.manual_seed(0)
model = torchvision.models.mobilenet_v3_small(weights=None).eval()
example = torch.rand(1, 3, 224, 224)
torch.onnx.export(model, example, sys.argv[1], opset_version=13, input_names=["image"], output_names=["logits"])
print(f"wrote {sys.argv[1]}: torch {torch.__version__}, torchvision {torchvision.__version__}")
