"""Does the reward model earn its place in the loop? Experiments on scene worlds whose truth is known.

Run `.venv/bin/python bench/loop.py [--quick] [--seeds 3] [--only active shortcut cost]`. One JSON document
goes to stdout and bench/out/loop.json; progress goes to stderr. Every experiment states its goal (issues 3
and 14) and whether this run met it.

Every model here is trained and scored on the scene family's HELD-OUT variants (`rewardlab.scenes`): worlds
whose nouns, colour words, renderer, objects or style shortcut no choice of this code was tuned on. A
variant is a campaign nobody on the team built: its figures are the mean ± sd over seeds, per variant.

1. shortcut: per held-out variant and seed, a campaign of 1,500 items whose faithful answer carries the
   variant's style 85% of the time, 20% of prior labels flipped, no facts; default settings, with SFC and
   without ("plain"). Scored on 600 out-of-distribution items of the same variant where the faithful
   answer carries the style 15% of the time. Reports OOD accuracy, accuracy on counter-shortcut pairs
   (style points the wrong way), flipped-label recall in the top 25% by `noise_score`, the share of the
   *correct* counter-shortcut labels in that top 25%, and how many correct labels a DT2IT curation round
   would flip. Goals: SFC − plain ≥ +10 points; counter-shortcut ≥ 0.6; recall ≥ 0.7; ≤ 30%; 0 flips.
2. contrast: the same campaigns, SFC with and without the image-contrast and answer-swap pairs
   (`rewardlab.contrast`): what they add to counter-shortcut accuracy.
3. active: accuracy on a held-out split against the number of labels, labeling the most uncertain pairs
   first (ensemble entropy + mutual information) against labeling at random, from the same seed labels.
   Goal: reach random's final accuracy with at most half its labels, mean over seeds.
4. cost: retrain and rescore with 10k labeled of 100k pairs, embeddings cached, on this machine's cores;
   seconds and peak memory. Goal ≤ 60 s.
"""

from __future__ import annotations

import argparse
import hashlib
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
from rewardlab.curation import curation_round
from rewardlab.data import Dataset, Label
from rewardlab.features import Encoders, features_build
from rewardlab.labels import current_labels
from rewardlab.metrics import pairwise_accuracy
from rewardlab.pipeline import model_score, model_train
from rewardlab.readers import load_dataset
from rewardlab.scenes import HELD_OUT_VARIANTS, FamilyConfig
from rewardlab.scenes import write_package as family_write
from rewardlab.synthetic import SyntheticConfig, write_package

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
EXPERIMENTS = ("shortcut", "contrast", "active", "cost")
TOP_SHARE = 0.25  # noise_score's top quarter goes back to humans first


def log(message: str) -> None:
    print(f"[loop] {message}", file=sys.stderr, flush=True)


def package(config: SyntheticConfig | FamilyConfig) -> Dataset:
    """Write (once) and load a package of either generator; the file name records its settings."""
    digest = hashlib.sha256(repr(config).encode()).hexdigest()[:16]
    path = OUT / "data" / f"{type(config).__name__}-{config.n_items}-s{config.seed}-{digest}.zip"
    if not path.exists():  # written aside and renamed, so an interrupted run leaves no half package
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = family_write if isinstance(config, FamilyConfig) else write_package
        os.replace(writer(config, path.with_suffix(".part")), path)
    return load_dataset(path)


def truth(dataset: Dataset) -> list[str]:
    """The more hallucinated side of each pair, from the generator's record."""
    return ["a" if dataset.items[p.item].meta["truth"] == p.a_id else "b" for p in dataset.pairs]


def meta(dataset: Dataset, key: str) -> np.ndarray:
    """One generator record per pair, as a bool array."""
    return np.array([bool(dataset.items[p.item].meta[key]) for p in dataset.pairs])


def with_labels(dataset: Dataset, pairs: np.ndarray, answers: list[str]) -> Dataset:
    """A copy of `dataset` whose only labels are human answers on `pairs`."""
    labels = [Label(int(p), answers[p], 3, "human") for p in pairs]
    return replace(dataset, labels=labels)


def spread(values: list[float]) -> dict:
    """Mean and sample sd over seeds, with the values themselves."""
    array = np.array(values, dtype=float)
    sd = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return {"mean": round(float(array.mean()), 4), "sd": round(sd, 4), "values": [round(v, 4) for v in values]}


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.quick = args.quick
        self.seeds = list(range(args.seeds))
        self.variants = args.variants
        self.cache_dir = args.cache_dir
        self.encoders = Encoders.load(RunConfig().encoders)

    def features(self, dataset: Dataset):
        with EmbeddingCache(self.cache_dir) as cache:
            return features_build(dataset, self.encoders, cache, progress=False)

    def train(self, dataset: Dataset, features, **train) -> tuple:
        run = RunConfig(train=TrainConfig(**train))
        return model_train(dataset, run, features=features, progress=False)

    def shortcut(self) -> dict:
        """Per held-out variant and seed: SFC against plain, OOD and on counter-shortcut pairs; noise finding."""
        rows = self._arms({"plain": {"weighting": "none"}, "sfc": {}})
        return self._campaign_sizes() | self._shortcut_summary(rows)

    def contrast(self) -> dict:
        """What the contrast pairs add: SFC with and without them, in the shortcut experiment's campaigns."""
        rows = self._arms({"sfc_without_contrast": {"contrast_per_label": 0}, "sfc": {}})
        summary = {}
        for variant, arms in rows.items():
            summary[variant] = {
                arm: {key: spread([r[key] for r in runs]) for key in runs[0]} for arm, runs in arms.items()
            }
            pairs = zip(arms["sfc"], arms["sfc_without_contrast"], strict=True)
            gains = [100 * (a["counter_shortcut_accuracy"] - b["counter_shortcut_accuracy"]) for a, b in pairs]
            summary[variant]["counter_shortcut_points_added"] = spread(gains)
        return self._campaign_sizes() | {"variants": summary}

    def _campaign_sizes(self) -> dict:
        n, test_n = (600, 300) if self.quick else (1500, 600)
        return {"train_items": n, "ood_items": test_n, "seeds": self.seeds}

    def _arms(self, arms: dict[str, dict]) -> dict[str, dict[str, list[dict]]]:
        """Train each arm (TrainConfig fields over the defaults) on every variant's campaign, every seed.

        A campaign of `n` items whose faithful answer carries the variant's style 85% of the time, 20% of
        priors flipped, no facts; scored on `test_n` items where the style points the other way 85% of the time.
        """
        sizes = self._campaign_sizes()
        n, test_n = sizes["train_items"], sizes["ood_items"]
        rows: dict[str, dict[str, list[dict]]] = {}
        for seed in self.seeds:  # seeds outside, so an interrupted run has every variant at its first seeds
            for variant in self.variants:
                campaign = FamilyConfig(
                    n_items=n, seed=seed, variants=(variant,), style_p=0.85, prior_noise=0.2, facts=False
                )
                ood = FamilyConfig(n_items=test_n, seed=1000 + seed, variants=(variant,), style_p=0.15, facts=False)
                for arm, train in arms.items():
                    row = self._shortcut_run(package(campaign), package(ood), seed=seed, **train)
                    rows.setdefault(variant, {}).setdefault(arm, []).append(row)
                    log(f"{variant} seed {seed} {arm}: {row}")
        return rows

    def _shortcut_run(self, campaign: Dataset, ood: Dataset, *, seed: int, **train) -> dict:
        model, scores, metrics = self.train(campaign, self.features(campaign), seed=seed, **train)
        ood_scores = model_score(model, ood, self.features(ood))
        right = (ood_scores.p_a_better > 0.5) == (np.array(truth(ood)) == "b")
        counter = ~meta(ood, "faithful_styled")
        flipped, styled = meta(campaign, "prior_flipped"), meta(campaign, "faithful_styled")
        top = np.zeros(len(flipped), bool)
        top[np.argsort(-scores.noise_score, kind="stable")[: int(TOP_SHARE * len(flipped))]] = True
        correct_counter = ~styled & ~flipped
        label = current_labels(campaign, model.run.train)
        decisions = curation_round(scores, label, human=np.zeros(len(label), bool), gold=np.zeros(len(label), bool))
        return {
            "ood_accuracy": round(float(right.mean()), 4),
            "counter_shortcut_accuracy": round(float(right[counter].mean()), 4),
            "pro_shortcut_accuracy": round(float(right[~counter].mean()), 4),
            "flipped_recall_top_quarter": round(float(top[flipped].mean()), 4),
            "correct_counter_shortcut_in_top_quarter": round(float(top[correct_counter].mean()), 4),
            "correct_labels_flipped": int(((decisions == "flip") & ~flipped).sum()),
            "wrong_labels_flipped": int(((decisions == "flip") & flipped).sum()),
            "contrast_pairs": metrics["contrast_pairs"],
            "seconds": metrics["seconds"],
        }

    @staticmethod
    def _shortcut_summary(rows: dict[str, dict[str, list[dict]]]) -> dict:
        """Mean ± sd per variant and method, SFC's gain per seed, and the goals on every variant."""
        per_variant, met = {}, {}
        for variant, methods in rows.items():
            summary = {
                method: {key: spread([run[key] for run in runs]) for key in runs[0]} for method, runs in methods.items()
            }
            gains = [
                100 * (s["ood_accuracy"] - p["ood_accuracy"])
                for s, p in zip(methods["sfc"], methods["plain"], strict=True)
            ]
            summary["sfc_minus_plain_points"] = spread(gains)
            sfc = summary["sfc"]
            met[variant] = {
                "gain >= 10 points": summary["sfc_minus_plain_points"]["mean"] >= 10,
                "counter-shortcut >= 0.6": sfc["counter_shortcut_accuracy"]["mean"] >= 0.6,
                "flipped recall >= 0.7": sfc["flipped_recall_top_quarter"]["mean"] >= 0.7,
                "correct counter-shortcut in top quarter <= 0.3": (
                    sfc["correct_counter_shortcut_in_top_quarter"]["mean"] <= 0.3
                ),
                "no correct label flipped": max(sfc["correct_labels_flipped"]["values"]) == 0,
            }
            per_variant[variant] = summary
        return {"variants": per_variant, "met": met}

    def active(self) -> dict:
        """Uncertainty-first against random labeling, same seed labels, same held-out split, per seed."""
        pool_n, test_n = (800, 300) if self.quick else (2000, 600)
        budgets = [100, 200, 400] if self.quick else [100, 200, 300, 400, 600, 800]
        runs = []
        for seed in self.seeds:
            variant = self.variants[seed % len(self.variants)]
            pool = package(FamilyConfig(n_items=pool_n, seed=seed, variants=(variant,), facts=False))
            test = package(FamilyConfig(n_items=test_n, seed=1000 + seed, variants=(variant,), facts=False))
            curves = self._curves(pool, test, budgets, seed)
            runs.append({"variant": variant, "seed": seed, "curves": curves, **self._label_savings(curves)})
        ratios = [run["label_ratio"] for run in runs]
        reached = [r for r in ratios if r is not None]
        mean = round(float(np.mean(reached)), 3) if len(reached) == len(ratios) else None
        return {
            "pool": pool_n,
            "test": test_n,
            "runs": runs,
            "label_ratio": None if mean is None else spread(reached),
            "goal": "mean label_ratio <= 0.5 (uncertainty-first labels to reach random's final accuracy)",
            "met": mean is not None and mean <= 0.5,
        }

    def _curves(self, pool: Dataset, test: Dataset, budgets: list[int], seed: int) -> dict:
        pool_features, test_features = self.features(pool), self.features(test)
        answers, test_truth = truth(pool), truth(test)
        rng = np.random.default_rng(seed)
        seed_set = rng.choice(len(pool.pairs), budgets[0], replace=False)
        curves = {}
        for strategy in ("uncertainty", "random"):
            labeled, curve = seed_set.copy(), []
            for step in range(len(budgets)):
                data = with_labels(pool, labeled, answers)
                model, scores, _ = self.train(data, pool_features, curation="none", weighting="none", seed=seed)
                accuracy = pairwise_accuracy(model_score(model, test, test_features).p_a_better, test_truth)
                curve.append({"labels": int(len(labeled)), "accuracy": round(accuracy, 4)})
                log(f"active seed {seed} {strategy} {len(labeled)} labels: {accuracy:.3f}")
                if step + 1 < len(budgets):
                    labeled = self._acquire(strategy, labeled, scores, budgets[step + 1] - len(labeled), rng)
            curves[strategy] = curve
        return curves

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
        return {"random_final": target, "uncertainty_labels_to_match": needed, "label_ratio": ratio}

    def cost(self) -> dict:
        """Retrain + rescore with 10k labeled of 100k pairs, embeddings already cached."""
        total, labeled = (20_000, 2_000) if self.quick else (100_000, 10_000)
        data = package(SyntheticConfig(n_items=total, seed=41, facts=True, prior_noise=0.2))
        self.features(data)  # fills the cache once; every timed run below reads from it, as a retrain does
        rng = np.random.default_rng(0)
        keep = set(rng.choice(total, labeled, replace=False).tolist())
        data = replace(data, labels=[label for label in data.labels if label.pair in keep])
        rows, reference, first = {}, None, None
        # A loop retrain curates from the previous round's scores; the worker's also starts from its heads.
        for mode in ("first_run", "loop_retrain_fresh", "loop_retrain"):
            rss_before = _rss_mb()
            started = time.perf_counter()
            with EmbeddingCache(self.cache_dir) as cache:
                cached = features_build(data, self.encoders, cache, progress=False)
            encode_seconds = time.perf_counter() - started
            warm = first if mode == "loop_retrain" else None
            model, scores, metrics = model_train(
                data, RunConfig(), features=cached, reference_p=reference, warm_from=warm, progress=False
            )
            if mode == "first_run":
                first, reference = model, scores.p_a_better
            rows[mode] = {
                "seconds_total": round(time.perf_counter() - started, 2),
                "seconds_features_from_cache": round(encode_seconds, 2),
                "seconds_train_and_score": metrics["seconds"],
                "epochs": {name: len(h) for name, h in metrics["history"].items()},
                "peak_rss_mb": _rss_mb(),
                "rss_before_mb": rss_before,
                "scored_pairs": len(scores.p_a_better),
                "held_out_accuracy": metrics["labels"]["accuracy"],
                "warm_start": metrics["warm_start"],
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
    parser.add_argument("--seeds", type=int, default=3, help="seeds per variant")
    parser.add_argument("--variants", nargs="+", choices=HELD_OUT_VARIANTS, default=list(HELD_OUT_VARIANTS))
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
