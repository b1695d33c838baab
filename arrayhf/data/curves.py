"""CURVES-style images: 28×28 pictures of random smooth curves, generated on the host.

HF10's CURVES benchmark (Hinton & Salakhutdinov 2006) holds 28×28 images of curves drawn through
three random control points. This module generates images in that style from a seed, so no data
file is needed: each image is a cubic Bézier curve through four random control points, drawn with
a soft pen (intensity exp(−d² / 2σ²) of the distance d from a pixel centre to the curve, σ in
pixels), values in [0, 1]. The same seed gives the same images on every machine.
"""

from __future__ import annotations

import numpy as np

SIZE = 28

# HF10's CURVES autoencoder: logistic hidden layers, a linear 6-unit code, logistic output.
CURVES_SIZES = [784, 400, 200, 100, 50, 25, 6, 25, 50, 100, 200, 400, 784]
CURVES_HIDDEN = ["logistic"] * 5 + ["linear"] + ["logistic"] * 5


def curve_images(n_images: int, seed: int = 0, *, size: int = SIZE, pen: float = 0.8,
                 samples: int = 48, chunk: int = 256) -> np.ndarray:
    """``[n_images, size·size]`` float64 images of random Bézier curves (host numpy)."""
    if n_images < 1:
        raise ValueError(f"expected n_images >= 1, got {n_images}")
    rng = np.random.default_rng(seed)
    controls = rng.uniform(2.0, size - 3.0, size=(n_images, 4, 2))
    t = np.linspace(0.0, 1.0, samples)
    basis = np.stack([(1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3], axis=1)
    points = np.einsum("sk,nkd->nsd", basis, controls)              # [n, samples, 2]
    rows, cols = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5, indexing="ij")
    pixels = np.stack([rows.ravel(), cols.ravel()], axis=1)          # [size², 2]
    images = np.empty((n_images, size * size))
    for start in range(0, n_images, chunk):
        part = points[start:start + chunk]                           # [c, samples, 2]
        squared = ((pixels[None, :, None, :] - part[:, None, :, :]) ** 2).sum(-1)
        images[start:start + chunk] = np.exp(-squared.min(axis=2) / (2 * pen**2))
    return images
