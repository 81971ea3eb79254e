"""Command-line FocalCodec: audio files -> token files -> audio.

    python -m focalcodec.cli encode speech/ --model lucadellalib/focalcodec_50hz --output toks --batch_size 8
    python -m focalcodec.cli decode tokens/ --model lucadellalib/focalcodec_50hz --output decoded/
    python -m focalcodec.cli resynth speech/ --model my_codec --output resynthesized/ --device cuda
    python -m focalcodec.cli resynth speech/ --model lucadellalib/focalcodec_50hz_2k_causal --output out/ \
        --streaming

Inputs are files or folders (searched recursively); the output folder mirrors the input folders. Audio of
any sample rate and channel count is read with soundfile, averaged to mono and resampled to the codec's
input rate (both stated on the console), by background threads (``--workers``). ``encode`` writes
``<name>.toks.pt``, a ``torch.save``d dict:

* ``toks``: (T,) int64 tokens in ``[0, codebook_size)``;
* ``sample_rate``, ``num_samples``, ``channels``: the original file's rate, length and channel count;
* ``token_rate`` (Hz), ``codebook_size``, ``model`` (the ``--model`` argument) and ``config`` (the codec's
  ``to_config()``).

``decode`` writes ``<name>.wav`` at the codec's output rate with the original duration; ``resynth`` does
both at once (same result as ``encode`` then ``decode``). A causal model's input is zero-padded to whole
chunks (80 ms for the released models), as a stream's last chunk is. Unreadable files are skipped and listed
at the end, after the throughput; the exit status is 0 when every file was processed, 3 when some were
skipped, 1 when none was processed, 2 for usage errors (docs/export.md).

``--batch_size N`` (``encode``, ``resynth``): files sorted by length, the encoder run on zero-padded batches
(with relative lengths that mask each file's frames exactly), the compressor per file, and a file whose
latents come within ``SIGN_MARGIN`` of a sign flip encoded again on its own: in float32 the tokens never
depend on batching. ``decode`` batches files of identical token length only (the decoder's global context
would see padding). ``--precision bfloat16`` (or ``float16`` on CUDA) autocasts the model: faster on GPUs,
with tokens that may differ from float32's.

``onnx`` writes a codec as an ONNX file (``--streaming``: a causal model's streaming step, states as inputs
and outputs; ``--int8``: int8 weights) and checks it against PyTorch on ONNX Runtime
(``focalcodec.onnx_runtime`` runs it; an int8 model's distance from PyTorch is reported, not checked)::

    python -m focalcodec.cli onnx --model lucadellalib/focalcodec_50hz_2k_causal --output s.onnx --streaming

``--streaming`` (causal models) codes each file chunk by chunk with carried state, as a live stream, and
prints the latency of each chunk (p50 / p95 / max) and the real-time factor; ``--realtime`` also paces the
stream (each chunk coded once it would have arrived). The files written equal the offline command's. With
``--batch_size N`` (``encode``, ``resynth``) up to N files stream at once as concurrent sessions, one batched
step per chunk (``focalcodec.sessions``), the latency timing each step; ``--int8`` codes the audio with the
streaming step's int8 model on ONNX Runtime (exported at start; an approximation of the float model).
"""

from focalcodec.cli.command import main
from focalcodec.cli.files import EXIT_ALL_FAILED, EXIT_SOME_FAILED, EXIT_USAGE, TOKEN_SUFFIX, load_tokens

__all__ = ["EXIT_ALL_FAILED", "EXIT_SOME_FAILED", "EXIT_USAGE", "TOKEN_SUFFIX", "load_tokens", "main"]
