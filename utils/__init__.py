"""What the recipe's scripts share, as packages in dependency order (each imports only those before it):
``corpus`` (preparation), ``metrics``, ``runs`` (the run folder), ``evaluation``, ``feature_cache``,
``training`` (the SpeechBrain runtime and the stages' Brains). See docs/design.md."""
