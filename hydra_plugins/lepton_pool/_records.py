"""The sweep's memory: a manifest of finished jobs (for resume) and `summary.csv`."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import cloudpickle
import pandas as pd
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

COLUMNS = ["job", "overrides", "status", "metric", "duration_s", "node", "attempts", "dir"]


def job_key(overrides: Sequence[str]) -> str:
    """Jobs are the same job when their overrides are the same."""
    return json.dumps(list(overrides))


def metric_of(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


class Book:
    def __init__(self, sweep_dir: Path):
        self.sweep_dir = sweep_dir
        self.manifest = sweep_dir / ".pool" / "manifest.jsonl"
        self.summary = sweep_dir / "summary.csv"

    def finished(self) -> dict[str, dict]:
        """The last record of each job that completed, by job key."""
        records: dict[str, dict] = {}
        if self.manifest.exists():
            for line in self.manifest.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a crash
                    continue
                records[record["key"]] = record
        return {k: r for k, r in records.items() if r["status"] == "COMPLETED"}

    def record(self, row: dict, overrides: Sequence[str], value: Any) -> None:
        entry = {**row, "key": job_key(overrides)}
        try:
            json.dumps(value)
            entry["return"] = value
        except (TypeError, ValueError):
            entry["return_pickle"] = base64.b64encode(cloudpickle.dumps(value)).decode()
        self.manifest.parent.mkdir(parents=True, exist_ok=True)
        with open(self.manifest, "a") as f:
            f.write(json.dumps(entry) + "\n")

    @staticmethod
    def job_return(record: dict, overrides: Sequence[str], output_subdir: Optional[str]) -> JobReturn:
        """The JobReturn of a job finished in an earlier run of this sweep."""
        value = record.get("return")
        if "return_pickle" in record:
            value = cloudpickle.loads(base64.b64decode(record["return_pickle"]))
        snapshot = Path(record["dir"]) / (output_subdir or ".hydra")
        cfg = (OmegaConf.load(snapshot / "config.yaml")
               if (snapshot / "config.yaml").exists() else None)
        hydra_cfg = (OmegaConf.load(snapshot / "hydra.yaml")
                     if (snapshot / "hydra.yaml").exists() else None)
        return JobReturn(overrides=list(overrides), cfg=cfg, hydra_cfg=hydra_cfg,
                         working_dir=record["dir"], status=JobStatus.COMPLETED,
                         _return_value=value)

    def write_summary(self, rows: dict[int, dict]) -> pd.DataFrame:
        """Merges this launch's rows with earlier batches' (same sweep dir) into summary.csv."""
        table = {}
        if self.summary.exists():
            for row in pd.read_csv(self.summary, keep_default_na=False).to_dict("records"):
                table[int(row["job"])] = row
        table.update(rows)
        frame = pd.DataFrame([table[j] for j in sorted(table)], columns=COLUMNS)
        tmp = self.summary.with_suffix(".csv.tmp")
        frame.to_csv(tmp, index=False)
        os.replace(tmp, self.summary)
        return frame
