"""What the tests share: the recipe runner (training scripts through their real command line), parity
vectors and state-dict listings (``reference``), the checks every decoder passes (``decoders``), helpers
of the corpus, feature-cache, metric, run-folder and command-line tests, a local HTTP server, and the
probes (training scripts that record what a run did: ``python tests/helpers/ddp_probe.py``,
``step_probe.py``).

Test modules import them as ``from helpers.recipe_runner import ...`` (``tests/`` is on pytest's
``pythonpath``)."""
