"""Delivery to the imaging cloud: images by DICOMweb (STOW-RS, QIDO-RS), reports by REST."""
