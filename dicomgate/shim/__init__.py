"""The HTTP endpoints the hospital PACS calls (spec 4.3-4.5): QR code, doctor login sync,
cross-hospital lookup, image deletion."""
