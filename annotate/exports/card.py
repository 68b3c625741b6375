"""The dataset card (README.md) of a snapshot .zip: its files and fields, counts, agreement, how labels were made.

The card is written last, from counts kept while the rows streamed by (`Summary`), and holds nothing that
changes between two runs of the same snapshot, so it is part of the snapshot's identical bytes.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from annotate.exports.formats import FORMATS, Format
from annotate.exports.labels import Verdict
from annotate.models import ExportSnapshot
from annotate.quality.agreement import Alpha


@dataclass
class Summary:
    """What went into a snapshot, counted as rows were written."""

    rows: Counter = field(default_factory=Counter)  # per split
    pairs: int = 0
    sources: Counter = field(default_factory=Counter)
    methods: Counter = field(default_factory=Counter)
    choices: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)  # pairs (or labels) left out, per reason
    agreement_total: float = 0.0
    images: int = 0
    corrupted: int = 0
    alpha_choice: Alpha | None = None
    alpha_strength: Alpha | None = None

    def add_pair(self, verdict: Verdict) -> None:
        """Count a pair that gave rows (for `annotations`: a pair whose labels are exported)."""
        self.pairs += 1
        self.sources[verdict.source] += 1
        self.methods[verdict.method] += 1
        self.choices[verdict.more_hallucinated or "tie"] += 1
        self.agreement_total += verdict.agreement

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def _alpha(alpha: Alpha | None) -> str:
    if alpha is None or alpha.value is None:
        return "undefined (too few pairs with two or more labels that disagree)"
    return f"{alpha.value:.3f} over {alpha.pairs} pairs with two or more labels"


def _counts(counter: Counter) -> str:
    return ", ".join(f"{key}: {count}" for key, count in sorted(counter.items(), key=str)) or "none"


def _files(fmt: Format, files: dict[str, list[str]], summary: Summary) -> list[str]:
    lines = [f"- `{names[0]}`: {summary.rows[split]} rows ({split} split)" for split, names in files.items()]
    lines.append(f"- `images/`: {summary.images} images, each stored once and named by its SHA-256")
    if fmt.corrupted:
        lines.append(f"- `corrupted/`: {summary.corrupted} corrupted images, one per row (`corrupted_images`)")
    if fmt.name == "llamafactory":
        lines.append("- `dataset_info.json`: LLaMA-Factory's entries for these files (`dataset_dir` = this folder)")
    return lines


def _parquet_files(files: dict[str, list[str]], summary: Summary, *, images: bool) -> list[str]:
    lines = [
        f"- `data/{split}-*.parquet`: {summary.rows[split]} rows in {len(names)} shard(s) ({split} split)"
        for split, names in files.items()
    ]
    if images:
        lines.append('- images are in the rows, as `Image` features (`{"bytes", "path"}`): no image files')
    else:
        lines.append("- exported without images: image columns hold the image's path in the campaign's snapshots")
    return lines


def _loading(files: dict[str, list[str]]) -> list[str]:
    data_files = ", ".join(f'"{split}": "{names[0]}"' for split, names in files.items())
    return [
        "```python",
        "from datasets import load_dataset",
        f'dataset = load_dataset("json", data_files={{{data_files}}})',
        "```",
        "Image paths are relative to this folder; make them absolute before casting them to `datasets.Image()`.",
    ]


def _parquet_loading(columns: dict[str, str]) -> list[str]:
    json_text = [f"`{name}`" for name in ("facts", "meta", "spans") if name in columns]
    return [
        "```python",
        "from datasets import load_dataset",
        'dataset = load_dataset("path/to/this/folder")  # the folder this README.md is in, from any directory',
        "```",
        "The YAML header above names the splits and features; image columns decode to PIL images. "
        f"In Parquet {', '.join(json_text)} are JSON text (`json.loads`): their keys vary from row to row.",
        "The folder is laid out as a Hugging Face dataset repository and can be uploaded to the Hub as it is.",
    ]


# What each trainer reads of a format, and what it leaves.
USAGE = {
    "reward": [
        "TRL's `RewardTrainer` reads `prompt`, `chosen` and `rejected`, conversational: it applies the model's "
        "chat template, which separates the question from the answer, and `margin`, which it subtracts in its "
        "Bradley–Terry loss. It ignores `weight` (weigh the loss yourself to use it), `images` (its model reads "
        "text only) and every other column.",
    ],
    "mdpo": [
        "mDPO's code (luka-group/mDPO) reads `img_path`, `prompt` (Bunny template), `chosen` and `rejected`; "
        "it opens `img_path` relative to the working directory, so run it in this folder. A DPO trainer built "
        'on TRL reads the messages instead: `dataset.remove_columns(["prompt", "chosen", "rejected"])'
        '.rename_columns({"prompt_messages": "prompt", "chosen_messages": "chosen", '
        '"rejected_messages": "rejected"})`.',
    ],
}


def _usage(fmt: Format) -> list[str]:
    if fmt.name not in USAGE:
        return []
    return ["## Training", *USAGE[fmt.name], ""]


def render(snapshot: ExportSnapshot, summary: Summary, files: dict[str, list[str]]) -> str:
    """Return the README.md of a snapshot whose rows and images are written (`files`: split -> its files)."""
    fmt = FORMATS[snapshot.format]
    if snapshot.container == ExportSnapshot.Container.PARQUET:
        listed = _parquet_files(files, summary, images=snapshot.filters.get("images", True))
        loading = _parquet_loading(fmt.columns)
    else:
        listed, loading = _files(fmt, files, summary), _loading(files)
    settings = snapshot.campaign_settings
    margins = settings.get("margins", [])
    mean_agreement = summary.agreement_total / summary.pairs if summary.pairs else None
    run = f"run {snapshot.model_run_id}" if snapshot.model_run_id else "none (no scores; every SFC weight is 1)"
    lines = [
        f"# RewardLab snapshot {snapshot.pk}: {snapshot.campaign.name}, format `{snapshot.format}`",
        "",
        f"Campaign {snapshot.campaign_id}, labels up to {snapshot.cutoff['at']} (annotation id "
        f"{snapshot.cutoff['annotation']}, prior label id {snapshot.cutoff['prior']}, pair id "
        f"{snapshot.cutoff['pair']}). Immutable: later labels never change this file. Code version "
        f"{snapshot.code_version}.",
        "",
        "## Files",
        *listed,
        "",
        "## Loading",
        *loading,
        "",
        *_usage(fmt),
        "## Fields",
        "| column | meaning |",
        "| --- | --- |",
        *(f"| `{name}` | {meaning} |" for name, meaning in fmt.columns.items()),
        "",
        "## Counts",
        f"- rows: {summary.total_rows} ({_counts(summary.rows)}), from {summary.pairs} pairs",
        f"- label of the pairs: {_counts(summary.choices)}",
        f"- label sources: {_counts(summary.sources)}",
        f"- left out: {_counts(summary.skipped)}",
        "",
        "## Agreement",
        f"- mean agreement of the exported pairs: {'n/a' if mean_agreement is None else f'{mean_agreement:.3f}'}",
        f"- Krippendorff's alpha of the human labels (nominal, on the choice): {_alpha(summary.alpha_choice)}",
        f"- Krippendorff's alpha of the human labels (ordinal, on the signed strength): "
        f"{_alpha(summary.alpha_strength)}",
        "",
        "## How the labels were made",
        "Annotators compared two answers to one image and question and named the more hallucinated one "
        "(`a`, `b`, `both`, `neither`) with a strength; the other answer is the chosen one. Each pair's label "
        "is, in order: a gold pair's known answer; else the consensus of its human labels up to the cutoff "
        "(Dawid–Skene weighted by annotator reliability once the campaign has enough overlapping labels, "
        "plain majority before, no label on a tie); else, when prior labels count, the majority of its "
        "prior labels, weighted by the prior trust.",
        f"- decided by: {_counts(summary.methods)}",
        f"- margin per strength 1..{len(margins)}: {margins}; prior trust: {settings.get('prior_trust')}",
        f"- model run: {run}",
        f"- filters: `{json.dumps(snapshot.filters, sort_keys=True)}`",
        f"- campaign settings: `{json.dumps(settings, sort_keys=True)}`",
        "",
    ]
    return "\n".join(lines)
