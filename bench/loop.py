"""Does the reward model earn its place in the loop? Four experiments on synthetic data whose truth is known.

Run `.venv/bin/python bench/loop.py [--quick] [--only active noise shortcut cost]`. One JSON document goes
to stdout and bench/out/loop.json; progress goes to stderr. Every experiment states its goal from issue 3
and whether this run met it.

1. active: accuracy on a held-out split against the number of labels, labeling the most uncertain pairs
   first (ensemble entropy + mutual information) against labeling at random, from the same seed set.
   Goal: reach random's final accuracy with at most half its labels.
2. noise: 20% of prior labels flipped; the share of flipped pairs among the top 25% by `noise_score`
   (out-of-fold). Goal ≥ 0.7 (chance 0.25). Run with and without facts (Fact-RLHF).
3. shortcut: the faithful answer is the verbose one in 85% of training pairs and 15% of an
   out-of-distribution split; OOD accuracy with SFC weighting against plain training (goal ≥ +10 points),
   and the AUC of `shortcut_score` for the pairs whose style gives the answer away (goal ≥ 0.9).
4. cost: retrain and rescore with 10k labeled of 100k pairs, embeddings cached, on this machine's cores;
   seconds and peak memory. Goal ≤ 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from rewardlab.cache import EmbeddingCache
from rewardlab.config import RunConfig, TrainConfig
from rewardlab.data import Dataset, Label, load_dataset
from rewardlab.features import Encoders, features_build
from rewardlab.metrics import pairwise_accuracy, roc_auc
from rewardlab.pipeline import model_score, model_train
from rewardlab.synthetic import SyntheticConfig, write_package

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
EXPERIMENTS = ("active", "noise", "shortcut", "cost")


def log(message: str) -> None:
    print(f"[loop] {message}", file=sys.stderr, flush=True)


def package(config: SyntheticConfig) -> Dataset:
    """Write (once) and load a synthetic package; the file name records its settings."""
    name = f"syn-{config.n_items}-s{config.seed}-f{int(config.facts)}-v{config.verbose_p}-n{config.prior_noise}.zip"
    path = OUT / "data" / name
    if not path.exists():  # written aside and renamed, so an interrupted run leaves no half package
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(write_package(config, path.with_suffix(".part")), path)
    return load_dataset(path)


def truth(dataset: Dataset) -> list[str]:
    """The more hallucinated side of each pair, from the generator's record."""
    return ["a" if dataset.items[p.item].meta["truth"] == p.a_id else "b" for p in dataset.pairs]


def with_labels(dataset: Dataset, pairs: np.ndarray, answers: list[str]) -> Dataset:
    """A copy of `dataset` whose only labels are human answers on `pairs`."""
    labels = [Label(int(p), answers[p], 3, "human") for p in pairs]
    return replace(dataset, labels=labels)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.quick = args.quick
        self.cache_dir = args.cache_dir
        self.encoders = Encoders.load(RunConfig().encoders)

    def features(self, dataset: Dataset):
        with EmbeddingCache(self.cache_dir) as cache:
            return features_build(dataset, self.encoders, cache, progress=True)

    def train(self, dataset: Dataset, features, **train) -> tuple:
        run = RunConfig(train=TrainConfig(**train))
        return model_train(dataset, run, features=features, progress=False)

    def active(self) -> dict:
        """Uncertainty-first against random labeling, same seed labels, same held-out split."""
        pool_n, test_n = (1200, 400) if self.quick else (3000, 1000)
        budgets = [100, 200, 400, 800] if self.quick else [150, 300, 450, 600, 900, 1200, 1800]
        pool = package(SyntheticConfig(n_items=pool_n, seed=11, facts=False))
        test = package(SyntheticConfig(n_items=test_n, seed=12, facts=False))
        pool_features, test_features = self.features(pool), self.features(test)
        answers, test_truth = truth(pool), truth(test)
        rng = np.random.default_rng(0)
        seed_set = rng.choice(pool_n, budgets[0], replace=False)
        curves = {}
        for strategy in ("uncertainty", "random"):
            labeled, curve = seed_set.copy(), []
            for step in range(len(budgets)):
                data = with_labels(pool, labeled, answers)
                model, scores, _ = self.train(data, pool_features, curation="none", weighting="none")
                accuracy = pairwise_accuracy(model_score(model, test, test_features).p_a_better, test_truth)
                curve.append({"labels": int(len(labeled)), "accuracy": round(accuracy, 4)})
                log(f"active {strategy} {len(labeled)} labels: {accuracy:.3f}")
                if step + 1 < len(budgets):
                    labeled = self._acquire(strategy, labeled, scores, budgets[step + 1] - len(labeled), rng)
            curves[strategy] = curve
        return {"pool": pool_n, "test": test_n, "curves": curves, **self._label_savings(curves)}

    @staticmethod
    def _acquire(strategy: str, labeled: np.ndarray, scores, count: int, rng) -> np.ndarray:
        unlabeled = np.setdiff1d(np.arange(len(scores.entropy)), labeled)
        if strategy == "random":
            chosen = rng.choice(unlabeled, count, replace=False)
        else:  # BALD-style: entropy of the mean plus what the members disagree on
            value = scores.entropy[unlabeled] + scores.mutual_info[unlabeled]
            chosen = unlabeled[np.argsort(-value, kind="stable")[:count]]
        return np.concatenate([labeled, chosen])

    @staticmethod
    def _label_savings(curves: dict) -> dict:
        """Fewest labels at which uncertainty-first reaches random's final accuracy (linear interpolation)."""
        target = curves["random"][-1]
        points = curves["uncertainty"]
        needed = None
        for before, after in zip([None, *points[:-1]], points, strict=True):
            if after["accuracy"] >= target["accuracy"]:
                if before is None or after["accuracy"] == before["accuracy"]:
                    needed = after["labels"]
                else:
                    share = (target["accuracy"] - before["accuracy"]) / (after["accuracy"] - before["accuracy"])
                    needed = round(before["labels"] + share * (after["labels"] - before["labels"]))
                break
        ratio = None if needed is None else round(needed / target["labels"], 3)
        return {
            "random_final": target,
            "uncertainty_labels_to_match": needed,
            "label_ratio": ratio,
            "goal": "label_ratio <= 0.5",
            "met": ratio is not None and ratio <= 0.5,
        }

    def noise(self) -> dict:
        """Share of flipped prior labels in the top quarter by out-of-fold noise_score."""
        n = 1000 if self.quick else 3000
        results = {}
        for facts in (True, False):
            data = package(SyntheticConfig(n_items=n, seed=21, facts=facts, prior_noise=0.2))
            _, scores, metrics = self.train(data, self.features(data), labels="prior")
            flipped = np.array([bool(data.items[p.item].meta["prior_flipped"]) for p in data.pairs])
            top = np.argsort(-scores.noise_score, kind="stable")[: len(flipped) // 4]
            share = float(flipped[top].mean())
            results["with_facts" if facts else "without_facts"] = {
                "flipped": int(flipped.sum()),
                "share_flipped_in_top_quarter": round(share, 4),
                "recall_of_flipped_in_top_quarter": round(float(flipped[top].sum() / flipped.sum()), 4),
                "auc_noise_score": round(roc_auc(scores.noise_score, flipped), 4),
                "accuracy_vs_truth": round(pairwise_accuracy(scores.p_a_better, truth(data)), 4),
                "met": share >= 0.7,
            }
            log(f"noise facts={facts}: {share:.3f}")
        return {"items": n, "prior_noise": 0.2, "goal": "share >= 0.7 (chance 0.25)", **results}

    def shortcut(self) -> dict:
        """OOD accuracy of SFC against plain training, and how well shortcut_score finds shortcut pairs."""
        n, test_n = (1200, 400) if self.quick else (3000, 1000)
        train = package(SyntheticConfig(n_items=n, seed=31, facts=False, verbose_p=0.85, prior_noise=0.0))
        ood = package(SyntheticConfig(n_items=test_n, seed=32, facts=False, verbose_p=0.15, prior_noise=0.0))
        train_features, ood_features = self.features(train), self.features(ood)
        ood_truth = truth(ood)
        results = {}
        for weighting in ("none", "sfc"):
            model, train_scores, _ = self.train(train, train_features, weighting=weighting, curation="none")
            ood_scores = model_score(model, ood, ood_features)
            results[weighting] = {
                "ood_accuracy": round(pairwise_accuracy(ood_scores.p_a_better, ood_truth), 4),
                "in_distribution_accuracy": round(pairwise_accuracy(train_scores.p_a_better, truth(train)), 4),
                "text_only_ood_accuracy": round(pairwise_accuracy(ood_scores.text_only_p_a_better, ood_truth), 4),
            }
            log(f"shortcut {weighting}: {results[weighting]}")
        verbose_wins = np.array([bool(train.items[p.item].meta["faithful_verbose"]) for p in train.pairs])
        auc = roc_auc(train_scores.shortcut_score, verbose_wins)
        gain = results["sfc"]["ood_accuracy"] - results["none"]["ood_accuracy"]
        return {
            "train_items": n,
            "ood_items": test_n,
            **results,
            "ood_gain_points": round(100 * gain, 2),
            "shortcut_score_auc": round(auc, 4),
            "goal": "gain >= +10 points; AUC >= 0.9",
            "met": {"gain": gain >= 0.10, "auc": auc >= 0.9},
        }

    def cost(self) -> dict:
        """Retrain + rescore with 10k labeled of 100k pairs, embeddings already cached."""
        total, labeled = (20_000, 2_000) if self.quick else (100_000, 10_000)
        data = package(SyntheticConfig(n_items=total, seed=41, facts=True, prior_noise=0.2))
        self.features(data)  # fills the cache once; every timed run below reads from it, as a retrain does
        rng = np.random.default_rng(0)
        keep = set(rng.choice(total, labeled, replace=False).tolist())
        data = replace(data, labels=[label for label in data.labels if label.pair in keep])
        rows, reference = {}, None
        for mode in ("first_run", "loop_retrain"):  # a loop retrain curates from the previous round's scores
            rss_before = _rss_mb()
            started = time.perf_counter()
            with EmbeddingCache(self.cache_dir) as cache:
                cached = features_build(data, self.encoders, cache, progress=False)
            encode_seconds = time.perf_counter() - started
            _, scores, metrics = model_train(data, RunConfig(), features=cached, reference_p=reference, progress=False)
            reference = scores.p_a_better
            rows[mode] = {
                "seconds_total": round(time.perf_counter() - started, 2),
                "seconds_features_from_cache": round(encode_seconds, 2),
                "seconds_train_and_score": metrics["seconds"],
                "epochs": {name: len(h) for name, h in metrics["history"].items()},
                "peak_rss_mb": _rss_mb(),
                "rss_before_mb": rss_before,
                "scored_pairs": len(scores.p_a_better),
                "held_out_accuracy": metrics["labels"]["accuracy"],
            }
            log(f"cost {mode}: {rows[mode]}")
        return {
            "pairs": total,
            "labeled": labeled,
            "threads": torch.get_num_threads(),
            **rows,
            "goal": "loop_retrain seconds_total <= 60",
            "met": rows["loop_retrain"]["seconds_total"] <= 60,
        }


def _rss_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--only", nargs="+", choices=EXPERIMENTS, default=list(EXPERIMENTS))
    parser.add_argument("--cache-dir", type=Path, default=OUT / "cache")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    bench = Bench(args)
    report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__}}
    for name in args.only:
        started = time.perf_counter()
        report[name] = getattr(bench, name)() | {"bench_seconds": round(time.perf_counter() - started, 1)}
    OUT.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2)
    (OUT / ("loop-quick.json" if args.quick else "loop.json")).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
