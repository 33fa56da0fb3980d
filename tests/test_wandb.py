"""The wandb logger, offline: the run file written locally holds the metrics we logged."""

import dataclasses
import json
import struct

import pytest

from lepton_jax import (Config, DataConfig, LoggerConfig, ModelConfig, OptimConfig,
                        TrainerConfig, fit)
from lepton_jax.population import fit_population

BLOCK = 32 * 1024
HEADER = 7  # ":W&B" + version (first block); each chunk: crc u32, length u16, type u8


def read_wandb_records(path):
    """Yields protobuf Records from a wandb LevelDB-style run log."""
    from wandb.proto import wandb_internal_pb2 as pb

    raw = path.read_bytes()
    assert raw[:4] == b":W&B"
    pos, pending = HEADER, b""
    while pos + HEADER <= len(raw):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos:pos + HEADER])
        data = raw[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:
            continue
        pending += data
        if kind in (1, 4):  # FULL or LAST chunk ends a record
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


CONFIG = Config(model=ModelConfig(hidden=[32]), data=DataConfig(name="digits"),
                trainer=TrainerConfig(epochs=2, batch_size=64, progress="off"),
                logger=LoggerConfig(name="wandb"))


def _assert_run_holds_its_metrics(run_dir):
    """The run dir's one offline wandb run logged what its metrics.jsonl holds."""
    files = list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1, list(run_dir.rglob("*"))
    logged, names = {}, set()
    for record in read_wandb_records(files[0]):
        if record.WhichOneof("record_type") == "history":
            items = {"/".join(i.nested_key) or i.key: json.loads(i.value_json)
                     for i in record.history.item}
            logged[items["_step"]] = items
        elif record.WhichOneof("record_type") == "run":
            names.add(record.run.display_name)
    assert names == {run_dir.name}
    expected = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in expected if "val/accuracy" in r]
    assert len(evals) == 2
    for r in evals:
        assert logged[r["step"]]["val/accuracy"] == pytest.approx(r["val/accuracy"])
        assert logged[r["step"]]["train/loss"] == pytest.approx(r["train/loss"])


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def test_offline_run_holds_logged_metrics(tmp_path, offline):
    fit(CONFIG, tmp_path / "run")
    _assert_run_holds_its_metrics(tmp_path / "run")


def test_each_population_member_logs_its_own_wandb_run(tmp_path, offline):
    """A vectorized sweep with logger=wandb gives every member its own run, as its standalone
    job would have, all logging at the same time."""
    configs = [dataclasses.replace(CONFIG, seed=s, optim=OptimConfig(lr=lr))
               for lr, s in [(0.02, 0), (0.1, 1), (0.05, 2)]]
    dirs = [tmp_path / f"member{i}" for i in range(3)]
    fit_population(configs, dirs)
    for d in dirs:
        _assert_run_holds_its_metrics(d)
    # Each logged its own values, not a neighbour's.
    losses = [json.loads((d / "metrics.jsonl").read_text().splitlines()[0])["train/loss"]
                  for d in dirs]
    assert len(set(losses)) == 3
