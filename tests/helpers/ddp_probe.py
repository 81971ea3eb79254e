"""A training script with a probe: run it like the script (``python tests/helpers/ddp_probe.py hparams.yaml
...``, or with torchrun), naming the script in ``$PROBE_SCRIPT`` (default ``train_quantizer``).

Whatever Brain class the script gives ``train_and_test`` is probed. Every process writes
``<output_folder>/probe-<rank>.json``: a digest of the frozen encoder's weights when training starts (and of
every module's then, ``modules_at_start``), the ids of the utterances it trained on in epoch 1, a digest of
the trained modules' weights after its first optimizer step, the frozen encoder's digest again then, and
the loss of every test batch (``test_losses``).
"""

import hashlib
import importlib
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors' bytes in key order (names left out: DDP prefixes them)."""
    sha = hashlib.sha256()
    for value in state.values():
        sha.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return sha.hexdigest()


def probed(brain_class: type) -> type:
    """``brain_class`` writing the probe file at every training step and every test batch."""
    import speechbrain as sb

    class Probed(brain_class):
        def on_fit_start(self) -> None:
            super().on_fit_start()
            self.probe = {"encoder": digest(self.hparams.encoder.state_dict()), "ids": [], "test_losses": []}
            frozen = {name: getattr(self.hparams, name, None) for name in ("encoder", "decoder")}
            modules = {
                **self.modules,
                **{name: module for name, module in frozen.items() if module is not None},
            }
            self.probe["modules_at_start"] = {
                name: digest(module.state_dict()) for name, module in modules.items()
            }

        def fit_batch(self, batch):
            loss = super().fit_batch(batch)
            if self.hparams.epoch_counter.current == 1:
                self.probe["ids"].extend(batch.id)
            if "weights_after_step_1" not in self.probe:
                self.probe["weights_after_step_1"] = digest(self.modules.state_dict())
                self.probe["encoder_after_step_1"] = digest(self.hparams.encoder.state_dict())
            self.write_probe()
            return loss

        def evaluate_batch(self, batch, stage):
            loss = super().evaluate_batch(batch, stage)
            if stage == sb.Stage.TEST:
                self.probe["test_losses"].append(float(loss))
                self.write_probe()
            return loss

        def write_probe(self) -> None:
            rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
            Path(self.hparams.output_folder, f"probe-{rank}.json").write_text(json.dumps(self.probe))

    return Probed


if __name__ == "__main__":
    script = importlib.import_module(os.environ.get("PROBE_SCRIPT", "train_quantizer"))
    train_and_test = script.train_and_test
    script.train_and_test = lambda brain_class, *args, **kwargs: train_and_test(
        probed(brain_class), *args, **kwargs
    )
    script.main(sys.argv[1:])
