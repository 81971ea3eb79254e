"""dWER and dCER: differential word/character error rates (intelligibility of resynthesised speech).

Whisper transcribes both the hypothesis (codec output) and the reference (input) audio; the reference
transcript serves as ground truth. As in the original recipe:

* the model is ``openai/whisper-small`` (any Whisper checkpoint or local ``save_pretrained`` folder can
  replace it), decoding is greedy with English transcription forced and timestamps off;
* transcripts are normalised with Whisper's English text normaliser (lower case, punctuation removed,
  spellings and numbers standardised; the spelling table is the tokenizer's ``normalizer.json``);
* the error rates are **corpus-level**: total edits (substitutions + deletions + insertions) over all
  utterances divided by the total number of reference words (characters), × 100;
* Whisper's feature extractor pads or trims every clip to 30 s, so **audio beyond 30 s is not
  transcribed** (the same for hypothesis and reference, so both lose the same tail).

Other languages (``language``, a Whisper language code): transcription is forced in that language and the
transcripts are normalised by Whisper's basic normaliser (lower case, brackets and punctuation removed, no
spelling table). In languages written without spaces between words (Chinese, Japanese, Thai, Lao,
Burmese, Khmer, Tibetan, Cantonese: :data:`CHARACTER_LANGUAGES`) words are not defined, so by default only
**dCER** is reported, over the characters with whitespace removed (``character_level`` overrides the
default either way).

Text is split on whitespace, so an empty transcript has zero words (a non-empty hypothesis against it
counts only insertions); characters are those of the words joined by single spaces (the space counts).
Items are cut to their true lengths before transcription (docs/deviations.md #16).
"""

import logging
import os
from dataclasses import dataclass

import jiwer
import torch

from utils.metrics.common import (
    METRIC_SAMPLE_RATE,
    LazyModel,
    ModelMetric,
    UtteranceScore,
    load_hf_pretrained,
    paired_items,
)

__all__ = ["CHARACTER_LANGUAGES", "DWER", "WHISPER_SOURCE", "ErrorCounts", "error_counts"]

logger = logging.getLogger(__name__)

WHISPER_SOURCE = "openai/whisper-small"
# Whisper language codes of scripts written without spaces between words: scored by characters only
CHARACTER_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "my", "km", "bo", "yue"})


@dataclass
class ErrorCounts:
    """Edit counts of one transcript pair (words or characters)."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    reference_length: int = 0

    @property
    def edits(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    def __add__(self, other: "ErrorCounts") -> "ErrorCounts":
        return ErrorCounts(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.reference_length + other.reference_length,
        )

    def __str__(self) -> str:
        return (
            f"{self.rate():.2f}% [{self.edits} / {self.reference_length}: {self.substitutions} sub, "
            f"{self.deletions} del, {self.insertions} ins]"
        )

    def rate(self) -> float:
        """Edits over reference length in percent (0 when both are 0, inf for edits without reference)."""
        if self.reference_length == 0:
            return 0.0 if self.edits == 0 else float("inf")
        return 100.0 * self.edits / self.reference_length


def error_counts(hyp_words: list[str], ref_words: list[str], chars: bool = False) -> ErrorCounts:
    """Levenshtein edit counts (jiwer) of a hypothesis against a reference, on words or characters."""
    hyp, ref = " ".join(hyp_words), " ".join(ref_words)
    if chars:
        output = jiwer.process_characters(ref, hyp)
        reference_length = len(ref)
    else:
        output = jiwer.process_words(ref, hyp)
        reference_length = len(ref_words)
    return ErrorCounts(output.substitutions, output.deletions, output.insertions, reference_length)


def _load_whisper(label: str, source: str, cache_dir: str | None):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    kwargs = {"cache_dir": cache_dir} if cache_dir else {}
    processor = load_hf_pretrained(label, WhisperProcessor.from_pretrained, source, **kwargs)
    model = load_hf_pretrained(label, WhisperForConditionalGeneration.from_pretrained, source, **kwargs)
    return processor, model.eval()


class DWER(ModelMetric):
    """Corpus-level dWER and dCER (%) between Whisper transcripts of hypothesis and reference audio.

    Arguments
    ---------
    sample_rate : sampling rate of the signals passed to ``append`` (resampled to 16 kHz).
    source : Whisper hub id or local ``save_pretrained`` folder (model and processor files).
    cache_dir : Hugging Face cache folder (default: the usual HF cache).
    language : the forced transcription language, a Whisper code (the original forces English ``"en"``,
        whose transcripts get Whisper's English normaliser; other languages get its basic normaliser).
    character_level : score characters only, without whitespace (only dCER is reported); default: for the
        languages written without spaces (:data:`CHARACTER_LANGUAGES`).
    model, processor : an already-built Whisper model and processor (skip loading).

    ``summarize()`` gives ``{"dWER": %, "dCER": %}`` (``{"dCER": %}`` at character level); per-utterance
    transcripts and error counts are kept in ``self.utterances`` and written by ``write_stats``.
    """

    lower_is_better = True

    def __init__(
        self,
        sample_rate: int = 16000,
        source: str = WHISPER_SOURCE,
        cache_dir: str | None = None,
        language: str = "en",
        character_level: bool | None = None,
        model=None,
        processor=None,
    ) -> None:
        self.sample_rate = sample_rate
        self.name = self.label = "dWER"
        self.language = language
        self.character_level = language in CHARACTER_LANGUAGES if character_level is None else character_level
        ready = (processor, model) if model is not None and processor is not None else None
        self.loader = LazyModel(lambda: _load_whisper(self.name, source, cache_dir), source, ready)
        self.model_id = source
        self._normalizer = None
        self.clear()

    def clear(self) -> None:
        """Forget all transcripts and counts."""
        self.utterances: list[dict] = []
        self.words = ErrorCounts()
        self.chars = ErrorCounts()

    @property
    def num_scored(self) -> int:
        """The number of transcript pairs scored since the last ``clear``."""
        return len(self.utterances)

    def load(self, device: torch.device | str = "cpu"):
        """Load Whisper now (otherwise on the first ``append``); raises MetricUnavailableError."""
        processor, model = self.loader.get()
        model.to(device)
        return processor, model

    def normalizer(self, processor):
        """Whisper's English text normaliser with the tokenizer's spelling table (other languages: Whisper's
        basic normaliser)."""
        from transformers.models.whisper.english_normalizer import BasicTextNormalizer, EnglishTextNormalizer

        if self._normalizer is None and self.language != "en":
            self._normalizer = BasicTextNormalizer()
        if self._normalizer is None:
            spelling = getattr(processor.tokenizer, "english_spelling_normalizer", None)
            if spelling is None:
                logger.warning(
                    f"{self.model_id} has no normalizer.json: British/American spellings are not unified "
                    "before scoring dWER (openai/whisper-small has it)"
                )
            self._normalizer = EnglishTextNormalizer(spelling or {})
        return self._normalizer

    @torch.no_grad()
    def transcribe(self, items: list[torch.Tensor], device: torch.device | str = "cpu") -> list[str]:
        """Greedy Whisper transcripts of 16 kHz 1-D signals, in one batch (texts are not normalised)."""
        processor, model = self.load(device)
        features = processor.feature_extractor(
            [item.cpu().numpy() for item in items], sampling_rate=METRIC_SAMPLE_RATE, return_tensors="pt"
        ).input_features.to(device, next(model.parameters()).dtype)
        kwargs = {}
        if getattr(model.generation_config, "lang_to_id", None):  # multilingual checkpoint
            kwargs = {"language": self.language, "task": "transcribe"}
        tokens = model.generate(features, return_timestamps=False, num_beams=1, do_sample=False, **kwargs)
        return processor.batch_decode(tokens, skip_special_tokens=True)

    def append(
        self, ids: list[str], hyp: torch.Tensor, ref: torch.Tensor, lens: torch.Tensor | None = None
    ) -> None:
        """Transcribe and score a batch.

        Arguments
        ---------
        ids : utterance ids, one per item.
        hyp : (B, N) resynthesised signals at ``sample_rate``.
        ref : (B, N) reference signals at ``sample_rate``.
        lens : (B,) relative lengths (shared by hyp and ref), or None when nothing is padded.
        """
        items = paired_items(hyp, ref, lens, self.sample_rate)
        texts = self.transcribe(items, hyp.device)
        self.add_transcripts(ids, texts[: len(ids)], texts[len(ids) :])

    def add_transcripts(self, ids: list[str], hyp_texts: list[str], ref_texts: list[str]) -> None:
        """Normalise and score raw transcripts (what ``append`` does after transcription)."""
        processor, _ = self.loader.get()
        normalize = self.normalizer(processor)
        self.add_normalized(ids, [normalize(t) for t in hyp_texts], [normalize(t) for t in ref_texts])

    def add_normalized(self, ids: list[str], hyp_texts: list[str], ref_texts: list[str]) -> None:
        """Score already-normalised transcripts (whitespace-separated words; the characters other than
        whitespace at character level)."""
        for utt_id, hyp_text, ref_text in zip(ids, hyp_texts, ref_texts, strict=True):
            hyp_words, ref_words = hyp_text.split(), ref_text.split()
            if self.character_level:  # the characters are the tokens: one count serves both
                hyp_words, ref_words = list("".join(hyp_words)), list("".join(ref_words))
                words = chars = error_counts(hyp_words, ref_words)
            else:
                words = error_counts(hyp_words, ref_words)
                chars = error_counts(hyp_words, ref_words, chars=True)
            self.words += words
            self.chars += chars
            self.utterances.append(
                {
                    "id": utt_id,
                    "hyp": " ".join(hyp_words),
                    "ref": " ".join(ref_words),
                    "words": words,
                    "chars": chars,
                }
            )

    def summarize(self, field: str | None = None) -> dict[str, float] | float:
        """``{"dWER": %, "dCER": %}`` (corpus level; ``{"dCER": %}`` at character level); ``field`` picks one
        ("error_rate" = dWER, or dCER at character level)."""
        stats = {"dCER": self.chars.rate()} if self.character_level else {"dWER": self.words.rate()}
        stats.setdefault("dCER", self.chars.rate())
        if field is None:
            return stats
        aliases = {"error_rate": "dCER" if self.character_level else "dWER", "WER": "dWER", "CER": "dCER"}
        return stats[aliases.get(field, field)]

    def utterance_scores(self) -> list[UtteranceScore]:
        """Each utterance's rates (%), weighted by its reference length (words, characters), so that the
        weighted mean is the corpus-level rate; NaN (left out) for an empty reference transcript."""
        rows = []
        for label, counts in (("dWER", "words"), ("dCER", "chars")):
            if label not in self.summarize():
                continue
            for utt in self.utterances:
                length = utt[counts].reference_length
                rate = utt[counts].rate() if length else float("nan")
                rows.append(UtteranceScore(utt["id"], label, rate, float(length)))
        return rows

    def write_stats(self, file) -> None:
        """Write the summary and every utterance's transcripts and error counts.

        ``file`` is a path or an open text stream.
        """
        if isinstance(file, str | os.PathLike):
            with open(file, "w", encoding="utf-8") as stream:
                self.write_stats(stream)
            return
        normaliser = "English" if self.language == "en" else "basic"
        words = "characters only, no whitespace" if self.character_level else "words and characters"
        file.write(
            ("" if self.character_level else f"dWER {self.words}\n") + f"dCER {self.chars}\n"
            f"ASR: {self.model_id} (greedy, forced '{self.language}' transcription, no timestamps, Whisper "
            f"{normaliser} normaliser, {words}; audio beyond 30 s is not transcribed)\n"
            f"reference = ASR transcript of the reference audio; {len(self.utterances)} utterances\n"
        )
        file.write("=" * 80 + "\n")
        for utt in self.utterances:
            rates = (
                f"dCER {utt['chars']}"
                if self.character_level
                else f"dWER {utt['words']}, dCER {utt['chars']}"
            )
            file.write(f"{utt['id']}: {rates}\n  hyp: {utt['hyp']}\n  ref: {utt['ref']}\n")
