"""Delivery to the imaging cloud: images by DICOMweb (STOW-RS, QIDO-RS), reports by REST.

The public surface: `Upstream`, the feature's objects (`app.features["upstream"]`).
The CLI's `push` passes its progress printer to `App.build`; `push --retry-rejected` and the
console's Re-send button both call `requeue_rejected`.
"""

from .feature import Upstream, requeue_rejected

__all__ = ["Upstream", "requeue_rejected"]
