"""A training script whose Brain records every batch, for the original-mode tests (run it like the script).

The script is ``$PROBE_SCRIPT`` (default ``train_quantizer``); whatever Brain class it gives
``train_and_test`` records. It trains with one torch thread, as the original's reference run did, and stops
(exit status 0) after ``$PROBE_RECORDS`` batches if set. Written in ``<output_folder>``, in the format of the
original's records (tests/data/original-recipe/README.md):

* ``steps.jsonl``: one line per train/valid/test batch, in run order: ``stage``, ``epoch``, ``step``,
  ``ids``, ``loss`` (what ``fit_batch``/``evaluate_batch`` returned), the loss terms (``rec_loss`` and
  ``aux_loss`` as tracked; ``G_terms``/``D_terms``: the HiFi-GAN loss modules' dicts), ``grad_norm`` (the
  total norm SpeechBrain's step clips, before clipping: a float per optimizer, one float for one),
  ``grad_norm_f64`` (float64 norm of each optimizer's gradients as it steps), ``lr`` (train), ``sig`` (input
  checksum) and ``rng_after`` (torch RNG fingerprint after the batch).
* ``weights_sha256.json``: ``{"init": ..., "final": ...}``, the sha256 of each trained module's state dict
  after ``on_fit_start`` and after the last epoch (before the test stage loads the best checkpoint).
"""

import hashlib
import importlib
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the keys in sorted order, each as key, dtype name, shape tuple and raw bytes (the
    reference's definition)."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def rng_fingerprint() -> str:
    """md5[:12] of torch's CPU random state."""
    return hashlib.md5(torch.random.get_rng_state().numpy().tobytes()).hexdigest()[:12]


def signal_checksum(batch) -> list:
    """[padded shape, float64 sum, float64 sum of |x|, relative lengths to 6 decimals] of ``batch.sig``."""
    sig, lens = batch.sig
    return [
        list(sig.shape),
        float(sig.double().sum()),
        float(sig.double().abs().sum()),
        [round(float(length), 6) for length in lens],
    ]


def float64_norm(optimizer: torch.optim.Optimizer) -> float:
    """The float64 norm of the gradients an optimizer holds."""
    grads = [
        p.grad.double() for group in optimizer.param_groups for p in group["params"] if p.grad is not None
    ]
    if not grads:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(grad) for grad in grads])))


def recording(brain_class: type) -> type:
    """``brain_class`` writing the records above."""

    class Recording(brain_class):
        def on_fit_start(self) -> None:
            super().on_fit_start()
            self.record: dict = {}
            self.records_file = Path(self.hparams.output_folder) / "steps.jsonl"
            self.records_file.write_text("")
            for optimizer in self.optimizers_dict.values():
                optimizer.register_step_pre_hook(self._record_step)
            for name in ("generator_loss", "discriminator_loss"):
                if hasattr(self.hparams, name):
                    getattr(self.hparams, name).register_forward_hook(self._record_terms(name[0].upper()))
            self.weights = {"init": self._weights()}
            self._write_weights()
            self.records_left = int(os.environ.get("PROBE_RECORDS", "0")) or None

        def _write_weights(self) -> None:
            path = Path(self.hparams.output_folder) / "weights_sha256.json"
            path.write_text(json.dumps(self.weights, indent=1))

        def _weights(self) -> dict[str, str]:
            return {name: state_dict_sha256(module.state_dict()) for name, module in self.modules.items()}

        def _record_step(self, optimizer, args, kwargs) -> None:
            self.record.setdefault("grad_norm_f64", []).append(float64_norm(optimizer))

        def _record_terms(self, prefix: str):
            def hook(module, args, output) -> None:
                self.record[f"{prefix}_terms"] = {key: float(value) for key, value in output.items()}

            return hook

        def freeze_optimizers(self, optimizers: dict) -> dict:
            """Called by SpeechBrain's step before it unscales and clips: the norm it will clip."""
            norms = []
            for optimizer in optimizers.values():
                grads = [p.grad for p in optimizer.param_groups[0]["params"] if p.grad is not None]
                norms.append(float(torch.nn.utils.get_total_norm(grads)))
            self.record["grad_norm"] = norms[0] if len(norms) == 1 else norms
            return super().freeze_optimizers(optimizers)

        def track(self, **values) -> None:
            self.record.update({name: float(value) for name, value in values.items()})
            super().track(**values)

        def _write(self, stage: str, epoch: int | None, batch, loss: torch.Tensor) -> None:
            record = {"stage": stage, "epoch": epoch, "step": self.step, "ids": list(batch.id)}
            record.update(
                loss=float(loss), **self.record, sig=signal_checksum(batch), rng_after=rng_fingerprint()
            )
            if stage == "train":
                record["lr"] = [
                    group["lr"] for opt in self.optimizers_dict.values() for group in opt.param_groups
                ]
            with self.records_file.open("a") as stream:
                stream.write(json.dumps(record) + "\n")
            self.record = {}
            if self.records_left is not None:
                self.records_left -= 1
                if self.records_left == 0:
                    raise SystemExit(0)  # enough batches: the run stops here

        def fit_batch(self, batch) -> torch.Tensor:
            loss = super().fit_batch(batch)
            self._write("train", self.hparams.epoch_counter.current, batch, loss)
            return loss

        def evaluate_batch(self, batch, stage) -> torch.Tensor:
            loss = super().evaluate_batch(batch, stage)
            epoch = None if stage.name == "TEST" else self.hparams.epoch_counter.current
            self._write(stage.name.lower(), epoch, batch, loss)
            return loss

        def fit(self, *args, **kwargs) -> None:
            super().fit(*args, **kwargs)
            self.weights["final"] = self._weights()
            self._write_weights()

    return Recording


if __name__ == "__main__":
    torch.set_num_threads(1)
    script = importlib.import_module(os.environ.get("PROBE_SCRIPT", "train_quantizer"))
    train_and_test = script.train_and_test
    script.train_and_test = lambda brain_class, *args, **kwargs: train_and_test(
        recording(brain_class), *args, **kwargs
    )
    script.main(sys.argv[1:])
