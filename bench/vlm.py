"""VLM reward model throughput: pairs per second for training and scoring, and peak memory.

Run with `.venv/bin/python bench/vlm.py [--items 128] [--batch-size 4] [--epochs 1]`. It prints one JSON
document on stdout (progress on stderr) and writes it to bench/out/vlm.json.

With REWARDLAB_VLM naming a local model directory (e.g. SmolVLM-256M-Instruct, an Idefics3), it measures that
model on `--device` (default: cuda when available, in bfloat16). Without it, a tiny random Idefics3 is written to
a scratch folder (`rewardlab.vlm.tiny`): a CPU smoke run whose figures show the pipeline's own overheads
(processor, batching, the K-fold loop), not a real model's speed.

What it does, top to bottom:
1. synthetic scenes with prior labels (`rewardlab.synthetic`), `--items` pairs, written once to the scratch folder;
2. per variant (gradient checkpointing on, then off), one `rewardlab.pipeline.model_train` run with the VLM
   backend, the function a GPU worker calls: the text-only twin, K members, scoring every pair. Each variant
   runs in a fresh child interpreter, so a CPU's peak RSS is that variant's own (it cannot be reset);
3. per variant, the run's meter: pairs per second for the twin's training, the multimodal training and the
   scoring (a scored pair is K members x both ensembles), peak memory (`torch.cuda.max_memory_allocated` on a
   GPU, peak RSS on a CPU); `ratios` compare checkpointing off with on, within this run.

Timings are wall-clock on a possibly shared machine; compare the ratios of one run, not figures across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import machine_info, result_publish  # noqa: E402

OUT = ROOT / "bench" / "out"
VARIANTS = {"checkpointing": True, "no_checkpointing": False}  # name → gradient_checkpointing
METER_KEYS = (
    "train_text_only_pairs_per_second",
    "train_multimodal_pairs_per_second",
    "score_pairs_per_second",
    "peak_memory_bytes",
    "peak_memory_kind",
)
MIB = 1024 * 1024
TINY_THREADS = 1


def log(message: str) -> None:
    print(f"[bench-vlm] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=128, help="synthetic scenes, one labeled pair each (default 128)")
    parser.add_argument("--batch-size", type=int, default=4, help="pairs per step (default 4)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of the multimodal members (default 1)")
    parser.add_argument("--members", type=int, default=2, help="folds K (default 2)")
    parser.add_argument("--no-lora", action="store_true", help="train every weight instead of LoRA adapters")
    parser.add_argument(
        "--device", default=None, help="cpu or cuda (default: REWARDLAB_DEVICE, else cuda if available)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1 for the tiny model)")
    parser.add_argument("--out", type=Path, default=OUT / "vlm.json")
    # Internal: one variant, measured in a child interpreter (see `child_main`).
    parser.add_argument("--child", type=json.loads, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def child_main(spec: dict) -> None:
    """Train and score one variant; print the run's throughput report as JSON on stdout."""
    import torch

    from rewardlab.pipeline import model_train
    from rewardlab.readers import load_dataset
    from rewardlab.vlm.config import VLMConfig, VLMRunConfig, vlm_train_config

    torch.manual_seed(0)
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    vlm = VLMConfig(
        model_dir=spec["model_dir"],
        members=spec["members"],
        lora=spec["lora"],
        gradient_checkpointing=spec["gradient_checkpointing"],
    )
    train = vlm_train_config(device=spec["device"], batch_size=spec["batch_size"], max_epochs=spec["epochs"])
    with load_dataset(spec["data"]) as dataset:
        started = time.perf_counter()
        _, _, metrics = model_train(dataset, VLMRunConfig(vlm, train), progress=False)
    report = {key: metrics["vlm"][key] for key in METER_KEYS}
    report |= {"seconds": round(time.perf_counter() - started, 2), "held_out_accuracy": metrics["labels"]["accuracy"]}
    print(json.dumps(report))


def run_child(spec: dict) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"variant {spec['variant']} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def default_device() -> str:
    import torch

    return os.environ.get("REWARDLAB_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    if args.child:
        child_main(args.child)
        return None
    from rewardlab.synthetic import SyntheticConfig, write_package

    scratch = Path(tempfile.mkdtemp(prefix="rewardlab-bench-vlm-"))
    try:
        model_dir = os.environ.get("REWARDLAB_VLM") or ""
        threads = args.threads
        if not model_dir:
            # Matrices this small gain nothing from a second thread, and on a busy two-core machine its
            # spin-waits made a run ten times slower (2.8 s against 26 s for 48 pairs).
            threads = threads or TINY_THREADS
            from rewardlab.vlm.tiny import tiny_vlm_write

            model_dir = str(tiny_vlm_write(scratch / "tiny-idefics3"))
            log(f"REWARDLAB_VLM is not set: a tiny random Idefics3 in {model_dir}")
        data = write_package(SyntheticConfig(n_items=args.items, seed=7, prior_noise=0.1), scratch / "scenes.zip")
        common = {
            "model_dir": model_dir,
            "data": str(data),
            "device": args.device or default_device(),
            "members": args.members,
            "lora": not args.no_lora,
            "batch_size": args.batch_size,
            "epochs": args.epochs,
            "threads": threads,
        }
        variants = {}
        for name, checkpointing in VARIANTS.items():
            log(f"{name}: training and scoring {args.items} pairs on {common['device']}")
            variants[name] = run_child({**common, "variant": name, "gradient_checkpointing": checkpointing})
            log(f"{name}: {variants[name]}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    on, off = variants["checkpointing"], variants["no_checkpointing"]
    result = {
        "bench": "vlm",
        "machine": machine_info() | {"load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "model": "tiny random Idefics3" if not os.environ.get("REWARDLAB_VLM") else model_dir,
        "note": "wall-clock on a possibly shared machine; compare the ratios within this run",
        "setup": {key: common[key] for key in ("device", "members", "lora", "batch_size", "epochs", "threads")}
        | {"pairs": args.items, "text_only_epochs": 1},
        "variants": variants,
        "peak_memory_mib": {name: round(v["peak_memory_bytes"] / MIB, 1) for name, v in variants.items()},
        "ratios": {
            "train_speed_without_over_with_checkpointing": _ratio(
                off["train_multimodal_pairs_per_second"], on["train_multimodal_pairs_per_second"]
            ),
            "peak_memory_without_over_with_checkpointing": _ratio(off["peak_memory_bytes"], on["peak_memory_bytes"]),
            "score_over_train_speed": _ratio(on["score_pairs_per_second"], on["train_multimodal_pairs_per_second"]),
        },
    }
    result_publish(result, args.out)
    return result


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


if __name__ == "__main__":
    main()
