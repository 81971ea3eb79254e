"""A training script with a probe, for the multi-process tests (run it with torchrun like the script).

The script is ``$PROBE_SCRIPT`` (default ``train_quantizer``) and its Brain class ``$PROBE_BRAIN`` (default
``Quantization``). Every process writes ``<output_folder>/probe-<rank>.json``: a digest of the frozen
encoder's weights when training starts, the ids of the utterances it trained on in epoch 1, a digest of the
trained modules' weights after its first optimizer step, and the frozen encoder's digest again then.
"""

import hashlib
import importlib
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors' bytes in key order (names left out: DDP prefixes them)."""
    sha = hashlib.sha256()
    for value in state.values():
        sha.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return sha.hexdigest()


def probed(brain_class: type) -> type:
    """``brain_class`` writing the probe file at every training step."""

    class Probed(brain_class):
        def on_fit_start(self) -> None:
            super().on_fit_start()
            self.probe = {"encoder": digest(self.hparams.encoder.state_dict()), "ids": []}

        def fit_batch(self, batch):
            loss = super().fit_batch(batch)
            if self.hparams.epoch_counter.current == 1:
                self.probe["ids"].extend(batch.id)
            if "weights_after_step_1" not in self.probe:
                self.probe["weights_after_step_1"] = digest(self.modules.state_dict())
                self.probe["encoder_after_step_1"] = digest(self.hparams.encoder.state_dict())
            rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
            Path(self.hparams.output_folder, f"probe-{rank}.json").write_text(json.dumps(self.probe))
            return loss

    return Probed


if __name__ == "__main__":
    script = importlib.import_module(os.environ.get("PROBE_SCRIPT", "train_quantizer"))
    name = os.environ.get("PROBE_BRAIN", "Quantization")
    setattr(script, name, probed(getattr(script, name)))
    script.main(sys.argv[1:])
