"""Build-time steps (not in the wheel): dataset -> package data, ImageNet weights + dataset -> model files."""
