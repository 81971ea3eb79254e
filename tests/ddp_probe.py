"""``train_quantizer.py`` with a probe, for the multi-process test (run it with torchrun like the script).

Every process writes ``<output_folder>/probe-<rank>.json``: a digest of the frozen encoder's weights when
training starts, the ids of the utterances it trained on in epoch 1, and a digest of the trained modules'
weights after its first optimizer step.
"""

import hashlib
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import train_quantizer


def digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors' bytes in key order (names left out: DDP prefixes them)."""
    sha = hashlib.sha256()
    for value in state.values():
        sha.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return sha.hexdigest()


class ProbedQuantization(train_quantizer.Quantization):
    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.probe = {"encoder": digest(self.hparams.encoder.state_dict()), "ids": []}

    def fit_batch(self, batch):
        loss = super().fit_batch(batch)
        if self.hparams.epoch_counter.current == 1:
            self.probe["ids"].extend(batch.id)
        if "weights_after_step_1" not in self.probe:
            self.probe["weights_after_step_1"] = digest(self.modules.state_dict())
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        Path(self.hparams.output_folder, f"probe-{rank}.json").write_text(json.dumps(self.probe))
        return loss


if __name__ == "__main__":
    train_quantizer.Quantization = ProbedQuantization
    train_quantizer.main(sys.argv[1:])
