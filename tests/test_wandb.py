"""The wandb logger, offline: the run file written locally holds the metrics we logged."""

import json
import struct

import pytest

from lepton_jax import Config, DataConfig, LoggerConfig, ModelConfig, TrainerConfig, fit

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


def test_offline_run_holds_logged_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = Config(model=ModelConfig(hidden=[32]), data=DataConfig(name="digits"),
                    trainer=TrainerConfig(epochs=2, batch_size=64, progress="off"),
                    logger=LoggerConfig(name="wandb"))
    fit(config, tmp_path)
    files = list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1, list(tmp_path.rglob("*"))
    logged = {}
    for record in read_wandb_records(files[0]):
        if record.WhichOneof("record_type") == "history":
            items = {"/".join(i.nested_key) or i.key: json.loads(i.value_json)
                     for i in record.history.item}
            logged[items["_step"]] = items
    expected = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in expected if "val/accuracy" in r]
    assert len(evals) == 2
    for r in evals:
        assert logged[r["step"]]["val/accuracy"] == pytest.approx(r["val/accuracy"])
        assert logged[r["step"]]["train/loss"] == pytest.approx(r["train/loss"])
