"""Inference on new slides with a trained histology-only student (``duopath predict``)."""
