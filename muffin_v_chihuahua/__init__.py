"""Muffin or chihuahua: a photo classifier shipped as one wheel with its model and demo photos."""

__version__ = "0.1.0"
