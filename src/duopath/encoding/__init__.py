"""Stage 3, feature extraction: the tile-encoder registry and (``extract``) slide -> zarr features."""

from duopath.encoding.registry import (
    ENCODERS,
    Encoder,
    EncoderError,
    EncoderSpec,
    file_fingerprint,
    load_encoder,
)

__all__ = ["ENCODERS", "Encoder", "EncoderError", "EncoderSpec", "file_fingerprint", "load_encoder"]
