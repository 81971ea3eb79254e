"""FocalCodec model modules (clean re-implementation with the upstream parameter names).

Nothing in this package knows about LibriTTS, YAML or SpeechBrain's Brain: it can be used on its own.

The models and their specs: docs/design.md; using a codec: docs/export.md.
"""

__version__ = "0.0.2+recipe"
"""The upstream ``focalcodec`` release whose API and checkpoints this package implements (0.0.2), with this
recipe's local version label."""
