"""Command line: `python -m rewardlab train|score|eval`, the contract other programs use (issue 3).

    python -m rewardlab train DATA --out MODEL_DIR [--weighting sfc|none] [--curation entropy|none]
                                   [--labels prior|human|all] [--seed N]
    python -m rewardlab score MODEL_DIR DATA --out SCORES.jsonl
    python -m rewardlab eval MODEL_DIR DATA

DATA is an import package (zip, folder, .jsonl, .json array or .parquet) or a `reward` / `annotations` export.
Results go to stdout as JSON, progress bars to stderr; a bad file or model is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rewardlab.artifacts import Artifact, ArtifactError
from rewardlab.config import CURATIONS, LABEL_SETS, WEIGHTINGS, EncoderConfig, ModelConfig, RunConfig, TrainConfig
from rewardlab.data import DataError, Dataset
from rewardlab.labels import current_labels
from rewardlab.metrics import metrics_compute
from rewardlab.pipeline import TrainedHeads, model_load, model_score_pairs, model_train
from rewardlab.readers import load_dataset
from rewardlab.scoring import Scores

if TYPE_CHECKING:
    from rewardlab.vlm.reward_model import TrainedVLM

DEFAULT_CACHE = Path.home() / ".cache" / "rewardlab"
EXIT_USAGE = 2


def default_device() -> str:
    """REWARDLAB_DEVICE, else cuda when torch sees a GPU, else cpu (API.md)."""
    import torch

    return os.environ.get("REWARDLAB_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")


def _print(payload: dict[str, Any]) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True))


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a run's metrics (the full set, with curves, is in the artifact)."""
    labels = metrics["labels"]
    keys = ("accuracy", "n", "ece", "log_loss", "text_only_accuracy", "accuracy_by_qtype")
    summary = {key: labels.get(key) for key in keys}
    if "gold" in metrics:
        summary["gold_accuracy"] = metrics["gold"]["accuracy"]
    return summary


def cmd_train(args: argparse.Namespace) -> None:
    train = TrainConfig(
        seed=args.seed,
        weighting=args.weighting,
        curation=args.curation,
        labels=args.labels,
        prior_trust=args.prior_trust,
        max_epochs=args.max_epochs,
        contrast_per_label=args.contrast_per_label,
        contrast_weight=args.contrast_weight,
        device=args.device or default_device(),
    )
    run = RunConfig(
        EncoderConfig(text=args.text_encoder, image=args.image_encoder), ModelConfig(members=args.members), train
    )
    with load_dataset(args.data) as dataset:
        _, _, metrics = model_train(dataset, run, out=args.out, cache_dir=args.cache_dir, progress=not args.quiet)
    _print(
        {
            "model": str(args.out),
            "seconds": metrics["seconds"],
            "curated": metrics["curated"],
            "held_out": _summary(metrics),
        }
    )


@contextmanager
def _scored(args: argparse.Namespace) -> Iterator[tuple[TrainedHeads | TrainedVLM, Artifact, Dataset, Scores]]:
    """Load MODEL_DIR and DATA and score every pair; DATA stays open inside the block."""
    model, artifact = model_load(args.model, device=args.device or default_device())
    with load_dataset(args.data) as dataset:
        scores = model_score_pairs(model, dataset, cache_dir=args.cache_dir, progress=not args.quiet)
        yield model, artifact, dataset, scores


def cmd_score(args: argparse.Namespace) -> None:
    with _scored(args) as (_, artifact, dataset, scores), open(args.out, "w", encoding="utf-8") as out:
        for index, pair in enumerate(dataset.pairs):
            row = {"external_id": dataset.items[pair.item].external_id, "pair": [pair.a_id, pair.b_id]}
            row |= scores.row(index) | {"model": artifact.sha256[:12]}
            out.write(json.dumps(row) + "\n")
    _print({"scores": str(args.out), "pairs": len(dataset.pairs), "model": artifact.sha256})


def cmd_eval(args: argparse.Namespace) -> None:
    with _scored(args) as (model, artifact, dataset, scores):
        metrics = metrics_compute(dataset, scores, current_labels(dataset, model.run.train))
    _print({"model": artifact.sha256, **metrics})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rewardlab", description=__doc__.split("\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("REWARDLAB_CACHE_DIR", DEFAULT_CACHE)),
        help="embedding cache (default $REWARDLAB_CACHE_DIR or ~/.cache/rewardlab)",
    )
    common.add_argument("--device", help="cpu or cuda (default $REWARDLAB_DEVICE, else cuda when available)")
    common.add_argument("--quiet", action="store_true", help="no progress bars")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", parents=[common], help="train a reward model on DATA's labels")
    train.add_argument("data", type=Path, metavar="DATA")
    train.add_argument("--out", type=Path, required=True, metavar="MODEL_DIR")
    train.add_argument("--weighting", choices=WEIGHTINGS, default="sfc")
    train.add_argument("--curation", choices=CURATIONS, default="entropy")
    train.add_argument("--labels", choices=LABEL_SETS, default="all")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--prior-trust", type=float, default=TrainConfig.prior_trust)
    train.add_argument("--max-epochs", type=int, default=TrainConfig.max_epochs)
    train.add_argument(
        "--contrast-per-label",
        type=int,
        default=TrainConfig.contrast_per_label,
        help="image-contrast and answer-swap pairs per label, each kind (0: none)",
    )
    train.add_argument("--contrast-weight", type=float, default=TrainConfig.contrast_weight)
    train.add_argument("--members", type=int, default=ModelConfig.members, help="ensemble size = number of folds")
    train.add_argument("--text-encoder", default=os.environ.get("REWARDLAB_TEXT_ENCODER") or EncoderConfig.text)
    train.add_argument("--image-encoder", default=os.environ.get("REWARDLAB_IMAGE_ENCODER") or EncoderConfig.image)
    train.set_defaults(handler=cmd_train)

    score = commands.add_parser("score", parents=[common], help="write one JSON row of scores per pair")
    score.add_argument("model", type=Path, metavar="MODEL_DIR")
    score.add_argument("data", type=Path, metavar="DATA")
    score.add_argument("--out", type=Path, required=True, metavar="SCORES.jsonl")
    score.set_defaults(handler=cmd_score)

    evaluate = commands.add_parser("eval", parents=[common], help="print metrics against DATA's labels")
    evaluate.add_argument("model", type=Path, metavar="MODEL_DIR")
    evaluate.add_argument("data", type=Path, metavar="DATA")
    evaluate.set_defaults(handler=cmd_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], None] = args.handler
    try:
        handler(args)
    except (DataError, ArtifactError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0
