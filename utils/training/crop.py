"""Random training crops of encoder features with the waveform samples they stand for, and the decoder
stage's crop settings (``segment_size_feats`` frames of ``generator_hop_length`` samples)."""

import torch

from utils.feature_cache.layout import min_crop_samples

__all__ = ["cached_crop", "crop_seconds", "random_feature_crop"]


def random_feature_crop(
    feats: torch.Tensor, sig: torch.Tensor, lens: torch.Tensor, num_frames: int, hop_length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop ``num_frames`` feature frames per item, and the matching ``num_frames * hop_length`` samples.

    With ``L`` padded frames, item b's usable frames are
    ``clamp(ceil(L * lens[b]), num_frames, L)``; the start frame is uniform over the valid starts; frame
    ``i`` of the crop covers samples ``[i * hop, (i + 1) * hop)`` of the waveform crop. Waveform indices
    past the end repeat the last (padded) sample.

    Arguments
    ---------
    feats : (B, L, D) features of the padded batch.
    sig : (B, N) padded waveforms.
    lens : (B,) relative lengths.
    num_frames : crop length ``S`` in frames.
    hop_length : samples per frame.

    Returns
    -------
    feats_crop : (B, S, D)
    sig_crop : (B, S * hop_length)
    """
    batch_size, total_frames, dim = feats.shape
    if total_frames < num_frames:
        raise ValueError(f"cannot crop {num_frames} frames from a batch of {total_frames} frames")
    valid = torch.ceil(total_frames * lens).long().clamp(min=num_frames, max=total_frames)
    max_start = valid - num_frames
    start = (torch.rand(batch_size, device=feats.device) * (max_start + 1)).long()

    frames = start[:, None] + torch.arange(num_frames, device=feats.device)
    feats_crop = feats.gather(1, frames[..., None].expand(-1, -1, dim))

    samples = start[:, None] * hop_length + torch.arange(num_frames * hop_length, device=sig.device)
    sig_crop = sig.gather(1, samples.clamp(max=sig.shape[1] - 1))
    return feats_crop, sig_crop


def crop_seconds(hparams: dict) -> float:
    """Shortest training utterance that holds a whole crop of encoder frames (shorter ones are dropped).

    Counted in samples at the encoder's rate (16 kHz), whatever the rate of the target audio: a 150-frame
    crop needs 48080 samples at 16 kHz (3.005 s), which hold the 72000 samples of its 24 kHz target."""
    if hparams["segment_size_feats"] is None:
        return 0.0
    samples = min_crop_samples(
        hparams["segment_size_feats"], hparams["encoder_kernel_sizes"], hparams["encoder_strides"]
    )
    return samples / hparams["encoder"].sample_rate


def cached_crop(hparams: dict) -> tuple[int, int] | None:
    """With the feature cache, training crops (frames, hop) read alone unless ``crop_reads`` is off."""
    if hparams["segment_size_feats"] is None or not hparams["crop_reads"]:
        return None
    return hparams["segment_size_feats"], hparams["generator_hop_length"]
