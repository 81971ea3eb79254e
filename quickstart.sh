#!/usr/bin/env bash
# Install, then run the whole recipe on a small generated LibriTTS-layout sample with small models (CPU, minutes):
# data preparation, the quantizer stage, the decoder stage, and the quantizer stage again with that decoder
# (end-to-end resynthesis). Outputs go to results/quickstart/ (override with OUT=...).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

bash install.sh
PY=.venv/bin/python
OUT=${OUT:-results/quickstart}
DATA="$OUT/LibriTTS-sample"
export HF_HUB_OFFLINE=1  # the tiny settings use a random encoder: nothing to download

echo "[quickstart] 1/4 generating a small LibriTTS-layout corpus in $DATA"
"$PY" -m utils.sample_corpus "$DATA"

echo "[quickstart] 2/4 quantizer stage (compressor -> BSQ -> decompressor)"
"$PY" train_quantizer.py hparams/bsq.yaml --overrides_file hparams/tiny/bsq.yaml \
  --data_folder "$DATA" --train_split "[train-clean-100]" --output_folder "$OUT/bsq"

echo "[quickstart] 3/4 decoder stage (Vocos + HiFi-GAN discriminators)"
"$PY" train_decoder.py hparams/vocos.yaml --overrides_file hparams/tiny/vocos.yaml \
  --data_folder "$DATA" --output_folder "$OUT/vocos"

echo "[quickstart] 4/4 quantizer stage with the trained decoder: whole-codec resynthesis"
"$PY" train_quantizer.py hparams/bsq.yaml --overrides_file hparams/tiny/bsq.yaml \
  --data_folder "$DATA" --train_split "[train-clean-100]" --output_folder "$OUT/codec" \
  --decoder_checkpoint "$OUT/vocos"

cat <<MSG
[quickstart] done. Outputs:
  $OUT/bsq/train_log.txt        quantizer losses, code usage and entropy per epoch, test line
  $OUT/vocos/train_log.txt      decoder losses (D, mel, adversarial, feature matching)
  $OUT/vocos/audios/            decoder resynthesis (_hyp) next to the input (_ref)
  $OUT/codec/audios/            whole codec: tokens -> audio (_hyp), features -> audio (_rec), input (_ref)
  $OUT/*/save/CKPT+*/           checkpoints (rerunning a command resumes from them)
MSG
