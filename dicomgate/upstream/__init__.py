"""Delivery to the imaging cloud: images by DICOMweb (STOW-RS, QIDO-RS), reports by REST.

The public surface: `Upstream`, the feature's objects (`app.features["upstream"]`).
The CLI's `push` passes its progress printer to `App.build`.
"""

from .feature import Upstream

__all__ = ["Upstream"]
