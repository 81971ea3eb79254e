"""The listening report: one self-contained ``report.html`` that opens from ``file://`` with no network.

It shows the table (each figure with its interval), the paired comparisons, optional images (a run's
training curves), and one row per utterance with its scores (sortable by any of them: worst first in one
click) and, for the utterances whose audio was saved, a player and a mel spectrogram for the reference
and every model side by side. The scores are written into the page itself (a browser refuses to
``fetch`` a file next to a page opened from ``file://``); the audio stays where it was written and the
spectrogram PNGs go to ``report_files/`` beside the page, both referred to by relative paths, so the
folder can be moved or zipped as a whole.
"""

import html
import math
import os
from pathlib import Path
from string import Template
from urllib.parse import quote

from utils.evaluation.bootstrap import by_figure, intervals
from utils.evaluation.compare import Comparison, format_difference
from utils.evaluation.scoring import ModelScores
from utils.evaluation.spectrogram import can_draw, write_mel_images
from utils.evaluation.table import explain_intervals, figure_columns, format_figure

__all__ = ["write_report"]

TEMPLATE = Path(__file__).with_name("report_template.html")
FILES = "report_files"


def _link(path: Path, page: Path) -> str:
    """``path`` relative to the page's folder, as a URL."""
    return quote(Path(os.path.relpath(path, page.parent)).as_posix())


def _table(rows: list[ModelScores]) -> str:
    columns = figure_columns(rows)
    if not columns:
        return '<p class="note">No figures: no metric was computed (compute_metrics: False).</p>'
    head = "".join(f"<th>{html.escape(label)}</th>" for label in ["model", "token rate (Hz)", *columns])
    lines = []
    for row in rows:
        spreads = intervals(row.scores)
        rate = "—" if row.token_rate is None else f"{row.token_rate:.1f}"
        cells = [f'<td class="id">{html.escape(row.name)}</td>', f"<td>{rate}</td>"]
        cells += [f"<td>{format_figure(row.figures.get(c), spreads.get(c))}</td>" for c in columns]
        lines.append("<tr>" + "".join(cells) + "</tr>")
    counts = sorted({spread.n for spread in intervals(rows[0].scores).values()}) if rows else []
    sources = {label: source for row in rows for label, source in row.sources.items()}
    notes = [f"{html.escape(label)}: {html.escape(sources[label])}" for label in columns if label in sources]
    notes += [
        f"{html.escape(row.name)}: {html.escape(metric)} unavailable ({html.escape(why)})"
        for row in rows
        for metric, why in row.unavailable.items()
    ]
    return (
        f'<div class="scroll"><table id="results"><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}'
        f'</tbody></table></div><p class="note">{html.escape(explain_intervals(counts))}</p>'
        f'<p class="note">{"<br>".join(notes)}</p>'
    )


def _comparisons(comparisons: list[Comparison]) -> str:
    if not comparisons:
        return ""
    lines = []
    for c in comparisons:
        d = c.difference
        cells = [c.figure, f"{c.a} − {c.b}", *format_difference(d), str(d.n), c.verdict]
        lines.append("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("figure", "pair", "difference", "95 % interval", "n", "verdict"))
    return (
        "<h2>Paired comparisons</h2>"
        f'<table id="comparisons"><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}</tbody></table>'
    )


def _images(images: dict[str, Path], page: Path) -> str:
    parts = []
    for title, path in images.items():
        if path is not None:
            name = html.escape(title)
            parts.append(f'<h2>{name}</h2><img class="curves" src="{_link(path, page)}" alt="{name}">')
    return "".join(parts)


def _score_columns(rows: list[ModelScores]) -> list[tuple[ModelScores, str]]:
    """(row, figure) of every per-utterance figure, row by row."""
    return [(row, figure) for row in rows for figure in by_figure(row.scores)]


def _listen(clips: dict[str, Path], page: Path, number: int, draw: bool) -> str:
    """The cell of one utterance's players, each over its mel spectrogram (none without saved audio)."""
    pictures = write_mel_images(clips, page.parent / FILES, f"u{number}") if clips and draw else {}
    figures = []
    for label, wav in clips.items():
        picture = pictures.get(label)
        image = (
            f'<img src="{_link(picture, page)}" alt="mel spectrogram of {html.escape(label)}">'
            if picture
            else ""
        )
        figures.append(
            f'<figure class="clip"><figcaption>{html.escape(label)}</figcaption>'
            f'<audio controls preload="metadata" src="{_link(wav, page)}"></audio>{image}</figure>'
        )
    return f'<td class="listen"><div class="clips">{"".join(figures)}</div></td>'


def _utterance_rows(rows: list[ModelScores], audios: dict[str, dict[str, Path]], page: Path) -> list[str]:
    columns = _score_columns(rows)
    values = {(row.name, s.metric, s.id): s.value for row in rows for s in row.scores}
    ids = list(dict.fromkeys([s.id for row in rows for s in row.scores] + list(audios)))
    draw = can_draw()
    lines = []
    for number, utt_id in enumerate(ids):
        cells = [
            f'<td class="id">{html.escape(utt_id)}</td>',
            _listen(audios.get(utt_id, {}), page, number, draw),
        ]
        for row, figure in columns:
            value = values.get((row.name, figure, utt_id), math.nan)
            shown = "—" if math.isnan(value) else f"{value:.3f}"
            kind = ' class="undefined"' if math.isnan(value) else ""
            cells.append(f'<td{kind} data-value="{"NaN" if math.isnan(value) else repr(value)}">{shown}</td>')
        lines.append(f'<tr data-id="{html.escape(utt_id)}">' + "".join(cells) + "</tr>")
    return lines


def _utterances(rows: list[ModelScores], audios: dict[str, dict[str, Path]], page: Path) -> str:
    several = len(rows) > 1
    heads = ['<th class="id">utterance</th>', "<th>listen (mel spectrograms on the reference's scale)</th>"]
    for row, figure in _score_columns(rows):
        name = f"{row.name}: {figure}" if several else figure
        lower = "1" if row.lower_better.get(figure, False) else "0"
        name = html.escape(name)
        heads.append(
            f'<th class="sortable" data-lower-better="{lower}" title="sort, worst first">{name}</th>'
        )
    body = "".join(_utterance_rows(rows, audios, page))
    return (
        f'<div class="scroll"><table id="utterances"><thead><tr>{"".join(heads)}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def write_report(
    path: str | os.PathLike,
    title: str,
    rows: list[ModelScores],
    audios: dict[str, dict[str, Path]],
    comparisons: list[Comparison] = (),
    images: dict[str, Path | None] | None = None,
) -> Path:
    """Write the listening report (module docstring).

    Arguments
    ---------
    path : the page to write (``.../report.html``); ``report_files/`` is made beside it.
    title : its heading.
    rows : the table's rows, with their per-utterance scores and lower-is-better figures.
    audios : ``{utterance id: {label: WAV file}}`` for the utterances to listen to, the reference first.
    comparisons : paired comparisons to show (:func:`~utils.evaluation.compare.compare_all`).
    images : ``{title: PNG}`` shown under the table (e.g. the training curves); None entries are skipped.
    """
    page = Path(path)
    page.parent.mkdir(parents=True, exist_ok=True)
    note = "" if can_draw() else "(No mel spectrograms: matplotlib is not installed.)"
    intro = (
        f"{len(rows)} row(s); every figure with its interval, every utterance with its scores; "
        "the audio is what was scored (16-bit WAV)."
    )
    text = Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        title=html.escape(title),
        intro=html.escape(intro),
        table=_table(rows),
        comparisons=_comparisons(list(comparisons)),
        images=_images(images or {}, page),
        spectrogram_note=note,
        utterances=_utterances(rows, audios, page),
    )
    page.write_text(text, encoding="utf-8")
    return page
