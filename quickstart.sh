#!/usr/bin/env bash
# Install, then run the whole recipe on a small generated LibriTTS-layout sample with small models (CPU, minutes):
# data preparation, the quantizer stage, the decoder stage, the quantizer stage again with that decoder
# (end-to-end resynthesis), export to the official checkpoint format, and an evaluation table.
# Outputs go to results/quickstart/ (override with OUT=...).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

bash install.sh
PY=.venv/bin/python
OUT=${OUT:-results/quickstart}
DATA="$OUT/LibriTTS-sample"
export HF_HUB_OFFLINE=1  # the tiny settings use a random encoder: nothing to download

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
  $OUT/evaluation/results.md    the evaluation table (also results.csv)
MSG
