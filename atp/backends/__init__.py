"""Compute backends for domain algorithms (DL layer: these may import torch)."""
