"""The real clients on snapshots downloaded over the API (issue 17): TRL's trainers, mDPO's collator, LLaMA-Factory.

Each test labels a campaign in PostgreSQL, asks for a snapshot over the REST API, writes it as the other export
tests do (`export_snapshot_run`, the worker task's body), downloads it, unzips it into a folder of its own and
reads it the way the client's docs show, with the process's working directory elsewhere, as a user's is. The
models are tiny random ones of the real architectures, written to a temporary directory and loaded from it;
nothing may leave the machine (`offline`).
"""

from __future__ import annotations

import io
import math
import re
import socket
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from datasets import load_dataset
from PIL import Image as PILImage

from annotate.models import Item
from annotate.services.exports import export_snapshot_run
from rewardlab.vlm.tiny import tiny_vlm_write
from tests.rewardlab.tiny import write_tiny_reward_model
from tests.test_exports import label, make_item, textured_image

# A tiny campaign: one pair per item, each item its own image; which side is worse, and how strongly.
LABELED = [
    ("scene-0", ("two red balls .", "three red balls ."), "b", 3),
    ("scene-1", ("a blue cube .", "a green cube ."), "a", 4),
    ("scene-2", ("one small circle .", "no circle ."), "b", 1),
    ("scene-3", ("the square is orange .", "the square is purple ."), "a", 2),
]
PARQUET_SHARD = re.compile(r"data/(train|test)-\d{5}-of-\d{5}\.parquet")
LOOPBACK = ("127.0.0.1", "::1", "localhost")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Refuse every connection off this machine, so a model, processor or dataset reaching for the Hub fails."""
    connect = socket.socket.connect

    def loopback_only(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:
            raise OSError(f"The trainer tests must run offline; something tried to reach {address}")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)


@pytest.fixture(scope="session")
def tiny_idefics3(tmp_path_factory) -> Path:
    return tiny_vlm_write(tmp_path_factory.mktemp("models") / "idefics3-lm", causal_lm=True)


@pytest.fixture(scope="session")
def tiny_reward_model(tmp_path_factory) -> Path:
    return write_tiny_reward_model(tmp_path_factory.mktemp("models") / "llama-reward")


@pytest.fixture
def labeled(campaign) -> dict[str, tuple[str, str]]:
    """Label LABELED in the campaign; return (chosen, rejected) text by external_id."""
    expected = {}
    for index, (external_id, texts, worse, strength) in enumerate(LABELED):
        (pair,) = make_item(campaign, external_id, textured_image(index), texts)
        label(pair, "ann1", worse, strength)
        expected[external_id] = texts if worse == "b" else texts[::-1]
    return expected


@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    """Run the rest of the test from a directory that is not the snapshot's."""
    directory = tmp_path / "elsewhere"
    directory.mkdir()
    monkeypatch.chdir(directory)
    return directory


def downloaded(api_as, campaign, folder: Path, fmt: str, **body) -> Path:
    """Ask for a snapshot over the API, write it as the worker does, download it and unzip it into `folder`."""
    researcher = api_as("res")
    request = {"format": fmt, "filters": {"test_share": 0.0}, **body}
    created = researcher.post(f"/api/v1/campaigns/{campaign.pk}/exports/", request, format="json")
    assert created.status_code == 202, created.json()
    snapshot = export_snapshot_run(snapshot_id=created.json()["id"])
    assert snapshot.status == "succeeded", snapshot.error
    download = researcher.get(f"/api/v1/exports/{snapshot.pk}/download/")
    assert download.status_code == 200
    with zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))) as archive:
        archive.extractall(folder)
    return folder


def hub_dataset(folder: Path, cache: Path):
    """Load a parquet snapshot as the Hub's dataset repositories load, after checking the layout's contract."""
    files = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    assert (folder / "data").is_dir(), f"not a Hub dataset repository, no data/ folder: {files[:8]}"
    shards = [path.relative_to(folder).as_posix() for path in (folder / "data").iterdir()]
    assert shards and all(PARQUET_SHARD.fullmatch(shard) for shard in shards), shards
    card = (folder / "README.md").read_text()
    assert card.startswith("---\n"), "the dataset card opens with a YAML header"
    header = yaml.safe_load(card.removeprefix("---\n").split("\n---\n", 1)[0])
    infos = header["dataset_info"] if isinstance(header["dataset_info"], list) else [header["dataset_info"]]
    assert header["configs"] and all(info["features"] for info in infos), header
    return load_dataset(str(folder), split="train", cache_dir=str(cache))


def parameters(model) -> dict[str, torch.Tensor]:
    return {name: parameter.detach().clone() for name, parameter in model.named_parameters()}


def assert_trained(trainer, before: dict[str, torch.Tensor]) -> None:
    """One step ran with a finite loss and moved the weights."""
    result = trainer.train()
    assert trainer.state.global_step == 1 and math.isfinite(result.training_loss), trainer.state.log_history
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(before[name], after[name].detach()) for name in before), "no weight changed"


def one_step(config_class, output: Path):
    """TRL's config for one CPU step of two rows, writing nothing but `output`."""
    return config_class(
        output_dir=str(output), per_device_train_batch_size=2, max_steps=1, learning_rate=1e-2,
        use_cpu=True, bf16=False, save_strategy="no", report_to="none", logging_steps=1,
    )  # fmt: skip


@pytest.mark.django_db
def test_dpo_trainer_trains_a_tiny_idefics3_on_a_parquet_trl_dpo_snapshot_from_another_directory(
    campaign, labeled, api_as, tiny_idefics3, tmp_path, elsewhere
):
    """TRL 1.16's DPOTrainer on `load_dataset(<folder>)`: images embedded in the parquet decode to PIL images, so
    the vision collator needs no path; with the JSONL zip it fails here with "Incorrect image source"."""
    from transformers import AutoProcessor, Idefics3ForConditionalGeneration
    from trl import DPOConfig, DPOTrainer

    folder = downloaded(api_as, campaign, tmp_path / "snapshot", "trl-dpo", container="parquet")
    dataset = hub_dataset(folder, tmp_path / "hf")
    assert len(dataset) == len(LABELED)
    assert all(isinstance(image, PILImage.Image) for images in dataset["images"] for image in images)
    model = Idefics3ForConditionalGeneration.from_pretrained(tiny_idefics3)
    processor = AutoProcessor.from_pretrained(tiny_idefics3)
    before = parameters(model)

    trainer = DPOTrainer(
        model=model, args=one_step(DPOConfig, tmp_path / "dpo"), train_dataset=dataset, processing_class=processor
    )

    assert_trained(trainer, before)


@pytest.mark.django_db
def test_reward_trainer_trains_on_a_parquet_reward_snapshot_with_its_margin_and_renders_question_and_answer_apart(
    campaign, labeled, api_as, tiny_reward_model, tmp_path, elsewhere
):
    """TRL's RewardTrainer tokenizes `prompt + chosen` (trl/trainer/reward_trainer.py, `tokenize_fn`): strings
    are concatenated as they are ("…square?The square is orange."), messages go through the model's chat
    template, which keeps the turns apart. So `reward` rows are conversational; the collator passes `margin` on
    to the loss."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer
    from trl.data_utils import is_conversational

    folder = downloaded(api_as, campaign, tmp_path / "snapshot", "reward", container="parquet")
    dataset = hub_dataset(folder, tmp_path / "hf")
    for row in dataset:
        assert is_conversational(row), row
        answers = tuple(messages[-1]["content"] for messages in (row["chosen"], row["rejected"]))
        assert answers == labeled[row["external_id"]]
    model = AutoModelForSequenceClassification.from_pretrained(tiny_reward_model)
    tokenizer = AutoTokenizer.from_pretrained(tiny_reward_model)
    before = parameters(model)

    trainer = RewardTrainer(
        model=model, args=one_step(RewardConfig, tmp_path / "rm"), train_dataset=dataset, processing_class=tokenizer
    )

    margins = torch.tensor(dataset["margin"])
    assert margins.max() > 0, "a strength gives a margin"
    batch = next(iter(trainer.get_train_dataloader()))
    assert len(batch["margin"]) == 2 and all(torch.isclose(margins, margin).any() for margin in batch["margin"])
    first = dataset[0]
    tokens = tokenizer.convert_ids_to_tokens(trainer.train_dataset[0]["chosen_ids"])
    turn = tokens.index("assistant")
    question, answer = first["prompt"][-1]["content"], first["chosen"][-1]["content"]
    assert tokens[turn - 1] == question[-1] and tokens[turn + 2] == answer.split()[0].lower(), tokens
    assert_trained(trainer, before)


# mDPO's Bunny conversation (bunny/bunny_utils/conversation.py, `conv_bunny`; data/sample_data.json's prompts).
BUNNY_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


@pytest.mark.django_db
def test_an_mdpo_snapshot_gives_what_mdpos_collator_reads(campaign, labeled, api_as, tmp_path, monkeypatch):
    """mDPO's contract, from github.com/luka-group/mDPO at ec316ce8aba5f87be9a79f999005aad3248ba745:

    - bunny/run_mdpo_bunny.py, `train`: `datasets.load_dataset('json', data_files=..., split="train")`;
    - bunny/data_collator_bunny_phi.py, lines 104-110 (`__call__`): each row's `prompt`, `chosen`, `rejected`
      and `img_path`; lines 20-23: `chosen`/`rejected` go to the tokenizer as strings, `prompt` to
      `tokenizer_image_token`; line 95: `Image.open(img_path)`, relative to the working directory;
    - bunny/bunny_utils/util/mm_utils.py, lines 44-45: `tokenizer_image_token` splits the prompt on `<image>`;
    - bunny/bunny_utils/conversation.py, `conv_bunny`, and data/sample_data.json: the prompt is
      "<system> USER: <image>\\n<question> ASSISTANT:".
    """
    folder = downloaded(api_as, campaign, tmp_path / "snapshot", "mdpo")
    monkeypatch.chdir(folder)  # mDPO opens img_path as it is: run from the snapshot's folder
    dataset = load_dataset("json", data_files="train.jsonl", split="train", cache_dir=str(tmp_path / "hf"))

    assert len(dataset) == len(LABELED)
    for row in dataset:
        prompt, chosen, rejected, img_path = row["prompt"], row["chosen"], row["rejected"], row["img_path"]
        assert isinstance(prompt, str) and isinstance(chosen, str) and isinstance(rejected, str), row
        assert (chosen, rejected) == labeled[row["external_id"]]
        before, after = prompt.split("<image>")
        assert before == f"{BUNNY_SYSTEM} USER: " and after.endswith(" ASSISTANT:"), prompt
        assert after.removesuffix(" ASSISTANT:") == f"\nWhat is in {row['external_id']}?"
        assert not Path(img_path).is_absolute(), img_path
        item = Item.objects.select_related("image").get(campaign=campaign, external_id=row["external_id"])
        with PILImage.open(img_path) as image, PILImage.open(item.image.file.path) as original:
            assert image.tobytes() == original.tobytes(), "img_path is the item's own image, not the corrupted one"
