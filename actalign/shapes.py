"""The world of generated shapes: one vocabulary and one renderer for the demo videos and the toy model.

A scene is one coloured shape of some size at some position on a plain
background, with pixel noise. The demo draws its events with this renderer
and ``toy-shapes`` learns from images drawn with it, so both speak the same
words for the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 205, 40),
    "orange": (245, 130, 30),
    "purple": (140, 60, 190),
    "pink": (245, 140, 200),
    "cyan": (60, 210, 220),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring")
SIZES: dict[str, tuple[float, float]] = {"small": (0.17, 0.22), "large": (0.27, 0.34)}
"""Radius as a fraction of the image side, by size word."""
POSITIONS: dict[str, tuple[float, float]] = {
    "centre": (0.5, 0.5),
    "left": (0.27, 0.5),
    "right": (0.73, 0.5),
    "top": (0.5, 0.27),
    "bottom": (0.5, 0.73),
}
"""Centre (x, y) as fractions of the image side, by position word."""
BACKGROUNDS: dict[str, int] = {"grey": 128, "white": 235, "black": 20}
"""Grey level of each plain background."""


@dataclass(frozen=True)
class Scene:
    """One shape on a background; ``radius`` and ``centre`` are fractions of the image side."""

    colour: str
    shape: str
    radius: float = 0.3
    centre: tuple[float, float] = (0.5, 0.5)
    background: str = "grey"
    noise: float = 3.5  # standard deviation of the pixel noise, in grey levels
    tint: tuple[int, int, int] = (0, 0, 0)  # a small per-scene colour shift of the shape
    shade: int = 0  # a small shift of the background's grey level


def shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, radius: float | np.ndarray) -> np.ndarray:
    """Boolean mask of ``shape`` centred at dx = dy = 0 (arrays broadcast: one radius per scene is fine)."""
    if shape == "circle":
        return dx**2 + dy**2 <= radius**2
    if shape == "square":
        half = radius * 0.85
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    if shape == "triangle":  # apex up, base at the bottom
        top, bottom = -radius, radius * 0.8
        return (dy >= top) & (dy <= bottom) & (np.abs(dx) <= (dy - top) * 0.62)
    if shape == "ring":
        distance = dx**2 + dy**2
        return (distance <= radius**2) & (distance >= (radius * 0.6) ** 2)
    if shape == "cross":
        arm = radius * 0.33
        inside = (np.abs(dx) <= radius) & (np.abs(dy) <= radius)
        return inside & ((np.abs(dx) <= arm) | (np.abs(dy) <= arm))
    if shape == "star":  # five points: radius varies with the angle between the tips and the notches
        angle = np.arctan2(dx, -dy)
        wave = np.abs(((angle * 5 / (2 * np.pi)) % 1.0) - 0.5) * 2  # 1 at a tip, 0 at a notch
        return np.sqrt(dx**2 + dy**2) <= radius * (0.45 + 0.55 * wave)
    raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def render(scenes: list[Scene], size: int, rng: np.random.Generator, supersample: int = 1) -> np.ndarray:
    """uint8 (len(scenes), size, size, 3) images of ``scenes``.

    ``supersample`` draws at that many times the size and averages down, for
    anti-aliased edges like those of a downscaled video frame.
    """
    side = size * supersample
    ys, xs = (np.mgrid[0:side, 0:side].astype(np.float32) + 0.5) / side
    n = len(scenes)
    images = np.empty((n, side, side, 3), dtype=np.float32)
    images[:] = np.array([BACKGROUNDS[scene.background] + scene.shade for scene in scenes], dtype=np.float32).reshape(n, 1, 1, 1)
    fills = np.clip(np.array([COLOURS[s.colour] for s in scenes]) + np.array([s.tint for s in scenes]), 0, 255)
    centres = np.array([scene.centre for scene in scenes], dtype=np.float32).reshape(n, 2, 1, 1)
    radii = np.array([scene.radius for scene in scenes], dtype=np.float32).reshape(n, 1, 1)
    shapes = np.array([scene.shape for scene in scenes])
    for shape in set(shapes.tolist()):
        group = np.flatnonzero(shapes == shape)
        masks = shape_mask(shape, xs - centres[group, 0], ys - centres[group, 1], radii[group])
        images[group] = np.where(masks[..., None], fills[group].reshape(-1, 1, 1, 3), images[group])
    if supersample > 1:
        images = images.reshape(n, size, supersample, size, supersample, 3).mean(axis=(2, 4))
    noise = np.array([scene.noise for scene in scenes], dtype=np.float32).reshape(-1, 1, 1, 1)
    images += rng.standard_normal(images.shape, dtype=np.float32) * noise
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)
