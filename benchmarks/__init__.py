"""Speed measurements of the recipe (``python -m benchmarks.benchmark``) and the GPU check
(``python -m benchmarks.gpu_check``), built with the recipe's own code. Figures: docs/speed.md; method:
benchmarks/README.md."""
