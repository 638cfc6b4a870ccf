"""dicomgate: the hospital-side gateway of the medical-insurance imaging cloud."""

__version__ = "0.1.0"
