"""FocalCodec model modules (clean re-implementation with the upstream parameter names).

Nothing in this package knows about LibriTTS, YAML or SpeechBrain's Brain: it can be used on its own.
"""
