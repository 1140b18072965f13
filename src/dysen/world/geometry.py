"""Exact geometry of the four shapes: inside tests for the renderer, corner points for the boxes.

Every shape is centred on its position and inscribed in a circle of radius r (``vocab.SIZES``): a
circle; an axis-aligned square (half side r/√2); an equilateral triangle pointing up; a regular
five-pointed star pointing up (inner radius r·cos72°/cos36°). A rotation by ``angle`` radians turns
the shape clockwise on screen about its centre. Screen coordinates: x right, y down.
"""

from __future__ import annotations

import math

import numpy as np

STAR_INNER = math.cos(math.radians(72)) / math.cos(math.radians(36))
"""Inner / outer radius of a regular pentagram (0.382)."""

SYMMETRY: dict[str, float] = {"square": math.pi / 2, "triangle": 2 * math.pi / 3, "star": 2 * math.pi / 5}
"""Rotation that maps each polygon onto itself (the circle has every symmetry, so none is listed)."""


def _unit_polygon(shape: str) -> np.ndarray:
    """Corner points of the unrotated shape of radius 1 in screen axes (y down), float64 [K, 2]."""
    if shape == "square":
        angles, radii = np.pi / 4 + np.arange(4) * np.pi / 2, np.ones(4)
    elif shape == "triangle":
        angles, radii = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3, np.ones(3)
    elif shape == "star":
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5  # tips at even indices, inner corners at odd ones
        radii = np.where(np.arange(10) % 2 == 0, 1.0, STAR_INNER)
    else:
        raise ValueError(f"{shape!r} has no corners")
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)  # [K, 2]


_POLYGONS = {shape: _unit_polygon(shape) for shape in SYMMETRY}


def bounds(shape: str, x: float, y: float, r: float, angle: float) -> tuple[float, float, float, float]:
    """The tight axis-aligned box ``(x0, y0, x1, y1)`` of a shape centred at ``(x, y)``, in the units of ``r``."""
    if shape == "circle":
        return x - r, y - r, x + r, y + r
    cos, sin = math.cos(angle), math.sin(angle)
    corners = _POLYGONS[shape] @ np.array([[cos, sin], [-sin, cos]]) * r  # [K, 2], rotated clockwise on screen
    low, high = corners.min(axis=0), corners.max(axis=0)  # [2], [2]
    return x + float(low[0]), y + float(low[1]), x + float(high[0]), y + float(high[1])


def inside(shape: str, dx: np.ndarray, dy: np.ndarray, r: float, angle: float) -> np.ndarray:
    """Whether the points at offsets ``(dx, dy)`` from the centre lie in the shape (bool, broadcast shape)."""
    cos, sin = math.cos(angle), math.sin(angle)
    u = (cos * dx + sin * dy) / r  # undo the clockwise rotation, scale to radius 1; u right
    v = (sin * dx - cos * dy) / r  # v up
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= math.sqrt(0.5)
    if shape == "triangle":  # three half-planes at the inradius 1/2, outward normals down, up-right, up-left
        return (v >= -0.5) & (0.866025 * u + 0.5 * v <= 0.5) & (-0.866025 * u + 0.5 * v <= 0.5)
    if shape == "star":
        return _inside_star(u, v)
    raise ValueError(f"unknown shape {shape!r}")


def _inside_star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test of the unit star: fold every point into the half-sector between a tip and an inner corner."""
    sector = 2 * math.pi / 5
    phi = np.mod(np.arctan2(v, u) - math.pi / 2, sector)
    phi = np.minimum(phi, sector - phi)  # in [0, 36°]: 0 on a tip's axis, 36° on an inner corner's
    rho = np.hypot(u, v)
    px, py = rho * np.cos(phi), rho * np.sin(phi)
    ex, ey = STAR_INNER * math.cos(sector / 2) - 1.0, STAR_INNER * math.sin(sector / 2)  # tip (1, 0) -> inner corner
    return ex * py - ey * (px - 1.0) >= 0.0  # on the centre's side of the tip-to-corner edge
