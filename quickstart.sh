#!/usr/bin/env bash
# Install, then run the whole recipe on a small generated LibriTTS-layout sample with small models (CPU, minutes):
# data preparation, the quantizer stage, the decoder stage, the quantizer stage again with that decoder
# (end-to-end resynthesis), export to the official checkpoint format, and an evaluation table.
# Outputs go to results/quickstart/ (override with OUT=...).
#
#   bash quickstart.sh          # FocalCodec (the two stages above)
#   bash quickstart.sh stream   # FocalCodec-Stream: its five stages, export, streaming resynthesis and
#                               # evaluation (offline and streaming); outputs in results/quickstart_stream/
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

MODE=${1:-}
if [ -n "$MODE" ] && [ "$MODE" != stream ]; then
  echo "usage: bash quickstart.sh [stream]" >&2
  exit 2
fi
bash install.sh
PY=.venv/bin/python
export HF_HUB_OFFLINE=1  # the tiny settings use a random encoder: nothing to download

# FocalCodec-Stream: the five-stage chain of the README (docs/stream.md) with small models
# (hparams/tiny/stream/), each stage given the previous one's output folder; then export, a streaming
# resynthesis and the evaluation table
stream_quickstart() {
  local out=${OUT:-results/quickstart_stream}
  local data="$out/LibriTTS-sample" tiny=hparams/tiny/stream
  local split=(--train_split "[train-clean-100]")  # stages 2-5 default to LibriTTS-960; the sample has 100 only
  echo "[quickstart] 1/9 generating a small LibriTTS-layout corpus in $data"
  "$PY" -m utils.sample_corpus "$data"
  echo "[quickstart] 2/9 stage 1: causal WaveNeXt decoder, 24 kHz (independent of stages 2-5)"
  "$PY" train_decoder.py hparams/stream/wavenext.yaml --overrides_file $tiny/wavenext.yaml \
    --data_folder "$data" --output_folder "$out/wavenext"
  echo "[quickstart] 3/9 stage 2: causal positional embedding distilled from the teacher's"
  "$PY" train_posemb.py hparams/stream/conv_posemb.yaml --overrides_file $tiny/conv_posemb.yaml \
    --data_folder "$data" "${split[@]}" --output_folder "$out/conv_posemb"
  echo "[quickstart] 4/9 stage 3: causal encoder distilled layer by layer (from stage 2)"
  "$PY" train_encoder.py hparams/stream/wavlm.yaml --overrides_file $tiny/wavlm.yaml \
    --data_folder "$data" "${split[@]}" --output_folder "$out/wavlm" \
    --student_encoder_posemb_checkpoint "$out/conv_posemb"
  echo "[quickstart] 5/9 stage 4: causal compressor -> BSQ -> decompressor on the stage-3 encoder"
  "$PY" train_quantizer.py hparams/stream/bsq.yaml --overrides_file $tiny/bsq.yaml \
    --data_folder "$data" "${split[@]}" --output_folder "$out/bsq" \
    --encoder_checkpoint "$out/wavlm" --decoder_checkpoint "$out/wavenext"
  echo "[quickstart] 6/9 stage 5: joint fine-tuning against the teacher (from stage 4)"
  "$PY" train_joint.py hparams/stream/joint.yaml --overrides_file $tiny/joint.yaml \
    --data_folder "$data" "${split[@]}" --output_folder "$out/joint" \
    --quantizer_checkpoint "$out/bsq" --decoder_checkpoint "$out/wavenext"
  echo "[quickstart] 7/9 export: stages 5 and 1 -> one causal codec in the official format"
  "$PY" export_codec.py --quantizer "$out/joint" --decoder "$out/wavenext" --output "$out/exported" \
    --allow_random_encoder --overwrite
  echo "[quickstart] 8/9 streaming resynthesis of the test files, 80 ms chunk by chunk"
  "$PY" -m focalcodec.cli resynth "$data/test-clean" --model "$out/exported" --output "$out/resynth" --streaming
  echo "[quickstart] 9/9 evaluation table, offline and streaming (offline: DNSMOS and Resemblyzer stand in)"
  "$PY" evaluate_codec.py --data "$out/joint/save/test.json" --model tiny="$out/exported" \
    --output "$out/evaluation" --max_utterances 4 --streaming
  cat <<MSG
[quickstart] done. Outputs:
  $out/*/train_log.txt          each stage's losses per epoch (stage 3: each layer's distance to the teacher)
  $out/wavenext/audios/         stage 1: resynthesis (_hyp) next to the input (_ref), 24 kHz
  $out/joint/audios/epoch0002/  stage 5: tokens -> audio (_hyp), teacher features -> audio (_rec), input (_ref)
  $out/*/save/CKPT+*/           checkpoints (rerunning a command resumes from them)
  $out/*/parts.json             what each stage hands to the next (the run-folder contract)
  $out/exported/                the causal codec: config.json + model.safetensors (+ model.json)
  $out/resynth/                 the streamed resynthesis of the test files, 24 kHz
  $out/evaluation/results.md    the evaluation table, offline and streaming rows, with 95 % intervals
  $out/evaluation/report.html   the listening report: players, mel spectrograms, sortable scores
MSG
}

if [ "$MODE" = stream ]; then
  stream_quickstart
  exit 0
fi
OUT=${OUT:-results/quickstart}
DATA="$OUT/LibriTTS-sample"

echo "[quickstart] 1/6 generating a small LibriTTS-layout corpus in $DATA"
"$PY" -m utils.sample_corpus "$DATA"

echo "[quickstart] 2/6 quantizer stage (compressor -> BSQ -> decompressor)"
"$PY" train_quantizer.py hparams/bsq.yaml --overrides_file hparams/tiny/bsq.yaml \
  --data_folder "$DATA" --train_split "[train-clean-100]" --output_folder "$OUT/bsq"

echo "[quickstart] 3/6 decoder stage (Vocos + HiFi-GAN discriminators)"
"$PY" train_decoder.py hparams/vocos.yaml --overrides_file hparams/tiny/vocos.yaml \
  --data_folder "$DATA" --output_folder "$OUT/vocos"

echo "[quickstart] 4/6 the quantizer run again, with the trained decoder: its training is complete (it resumes"
echo "             from the last checkpoint), so it only tests, now writing whole-codec resynthesis"
"$PY" train_quantizer.py hparams/bsq.yaml --overrides_file hparams/tiny/bsq.yaml \
  --data_folder "$DATA" --train_split "[train-clean-100]" --output_folder "$OUT/bsq" \
  --decoder_checkpoint "$OUT/vocos"

echo "[quickstart] 5/6 export: the two stages -> one codec in the official format"
"$PY" export_codec.py --quantizer "$OUT/bsq" --decoder "$OUT/vocos" --output "$OUT/exported" \
  --allow_random_encoder --overwrite

echo "[quickstart] 6/6 evaluation table (offline: DNSMOS and Resemblyzer stand in for UTMOS and WavLM-SV)"
"$PY" evaluate_codec.py --data "$OUT/bsq/save/test.json" --model tiny="$OUT/exported" \
  --output "$OUT/evaluation" --max_utterances 4

cat <<MSG
[quickstart] done. Outputs:
  $OUT/bsq/train_log.txt        quantizer losses, code usage and entropy per epoch, test line
  $OUT/vocos/train_log.txt      decoder losses (D, mel, adversarial, feature matching)
  $OUT/vocos/audios/            decoder resynthesis (_hyp) next to the input (_ref)
  $OUT/bsq/audios/epoch0002/    whole codec: tokens -> audio (_hyp), features -> audio (_rec), input (_ref)
  $OUT/*/save/CKPT+*/           checkpoints (rerunning a command resumes from them)
  $OUT/*/training_curves.png    training curves; TensorBoard: .venv/bin/tensorboard --logdir $OUT
  $OUT/exported/                config.json + model.safetensors (+ model.json for the upstream package)
  $OUT/evaluation/results.md    the evaluation table, each figure with its 95 % interval (also results.csv)
  $OUT/evaluation/report.html   the listening report: open it in a browser (players, spectrograms, scores)
  $OUT/bsq/report.html          the quantizer run's test stage: its audio, scores and training curves
MSG
