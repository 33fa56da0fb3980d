"""Hydra glue: the ConfigStore schemas and DictConfig -> Config conversion."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import typing
from pathlib import Path
from typing import Optional

from hydra.core.config_store import ConfigStore
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from lepton_jax.config import Config
from lepton_jax.errors import UserError, misspelt, os_reason, repeated


def register_configs() -> None:
    """Stores the typed schema; config.yaml lists it first, so YAML values are type-checked
    and unknown keys rejected before any work."""
    ConfigStore.instance().store(name="base_config", node=Config)


def to_config(cfg: DictConfig) -> Config:
    """The one place a DictConfig becomes the library's dataclass. A key the schema lacks
    is refused: Hydra lets `+optim.lrr=0.1` add one, and the dataclass would drop it."""
    extra = unknown_keys(cfg, Config)
    if extra:
        from lepton_jax.sweep import check_key

        try:
            check_key(Config(), extra[0], source="config")
        except UserError as e:
            raise UserError(f"{e} (a +key=value override cannot add a field: it would be "
                            "ignored)") from None
    config = OmegaConf.to_object(cfg)
    _paths_from_launch_dir(config)
    return config


def _paths_from_launch_dir(config: Config) -> None:
    """With `hydra.job.chdir=true` the job runs in its output dir; relative paths given on the
    command line (data.root, a compilation cache folder) still mean the folder it was launched
    from, as they do without it."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    if not HydraConfig.initialized():
        return
    launched = get_original_cwd()
    if os.path.realpath(launched) == os.path.realpath(os.getcwd()):
        return
    if config.data.root and not os.path.isabs(os.path.expanduser(config.data.root)) \
            and "://" not in config.data.root:
        config.data.root = os.path.join(launched, config.data.root)
    cache = config.trainer.compilation_cache
    if cache not in ("auto", "off") and not os.path.isabs(os.path.expanduser(cache)):
        config.trainer.compilation_cache = os.path.join(launched, cache)


def unknown_keys(cfg: DictConfig, schema: type, prefix: str = "") -> list[str]:
    """The dotted keys of `cfg` that name no field of the dataclass `schema`."""
    hints = typing.get_type_hints(schema)
    fields = {f.name for f in dataclasses.fields(schema)}
    extra = []
    for key in cfg.keys():
        if key not in fields:
            extra.append(f"{prefix}{key}")
        elif dataclasses.is_dataclass(hints[key]) and isinstance(cfg[key], DictConfig):
            extra += unknown_keys(cfg[key], hints[key], f"{prefix}{key}.")
    return extra


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


class ConsoleHandler(logging.StreamHandler):
    """Hydra's console handler, writing to `sys.stdout` as it is at each record: the live
    progress bar (rich) replaces it to print lines above the bar, and a handler that kept
    the original stream glued a warning logged during training to the bar's line."""

    def __init__(self, stream=None):  # Hydra's default config passes ext://sys.stdout
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        pass


class SweeperDirectionCheck(Callback):
    """A multirun whose sweeper optimizes in the direction opposite to the metric the jobs
    return is refused before any job runs: Optuna's sweeper minimizes by default, so a
    study of `trainer.monitor=auto` (the validation accuracy of a classifier) without
    `hydra.sweeper.direction=maximize` would search for the worst learning rate."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        message = direction_mismatch(config)
        if message:
            fail(message)


def direction_mismatch(config: DictConfig) -> str:
    """The error for `hydra.sweeper.direction` against `trainer.monitor`, or "" when they
    agree or the direction cannot be known here (a CSV's task detected from its values, a
    multi-objective study)."""
    direction = OmegaConf.select(config, "hydra.sweeper.direction", default=None)
    if isinstance(direction, (list, tuple)) or OmegaConf.is_list(direction):
        direction = direction[0] if len(direction) == 1 else None
    direction = getattr(direction, "name", direction)  # Optuna's `Direction` enum or a str
    if direction not in ("minimize", "maximize"):
        return ""
    from lepton_jax.config import maximized, monitor_name

    monitor = str(OmegaConf.select(config, "trainer.monitor", default="auto"))
    said = f"trainer.monitor={monitor}"
    if monitor == "auto":
        task = "classification" if config.data.name in ("digits", "mnist") else config.data.task
        if task not in ("classification", "regression"):
            return ""
        monitor = monitor_name("auto", task, True)
        said += f", which is {monitor} here"
    wanted = "maximize" if maximized(monitor) else "minimize"
    if direction == wanted:
        return ""
    better = "higher" if wanted == "maximize" else "lower"
    return (f"hydra.sweeper.direction={direction}, but each job returns {said}, for which "
            f"{better} is better: the study would search for the worst configs; set "
            f"hydra.sweeper.direction={wanted}")


class ReportHint(Callback):
    """After a multirun, one line naming the command that tables its results: Hydra's basic
    launcher ends a sweep with the last job's done line, and nothing said how the jobs
    compare or where to look."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        import shlex

        sweep_dir = Path(config.hydra.sweep.dir)
        finished = sum(1 for _ in sweep_dir.glob("*/result.json"))
        if finished > 1:
            logging.getLogger(__name__).info(
                f"{finished} finished jobs in {sweep_dir}; `lepton-jax report "
                f"{shlex.quote(str(sweep_dir))}` groups them over seeds, names the best "
                "config and plots them")


class OutputDirCheck(Callback):
    """Checks that the run (or sweep) directory can be created before Hydra creates it, so
    that one it cannot (a path through a file, no permission) is one error line instead of
    Hydra's traceback. It leaves nothing behind: a multirun refused before it starts (a bad
    launcher option) leaves no empty sweep dir."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        # Absolute: with hydra.job.chdir=true the job runs inside the run dir.
        _start.new_dirs = [p.absolute() for p in _make_dir("hydra.run.dir", config.hydra.run.dir)]
        subdir = config.hydra.output_subdir
        _start.hydra_dir = Path(config.hydra.run.dir, subdir).absolute() if subdir else None
        _start.kept = {f: f.read_bytes() for f in _start.hydra_dir.glob("*")
                       if f.is_file()} if _start.hydra_dir and _start.hydra_dir.is_dir() else None
        _start.log = Path(config.hydra.run.dir, "train.log").absolute()
        _start.log_existed = _start.log.exists()
        _start.run_json = _stamp(Path(config.hydra.run.dir, "run.json"))

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        _make_dir("hydra.sweep.dir", config.hydra.sweep.dir)


class _RunStart:
    """What a run's start found, so that a run refused before training can undo what the
    start wrote: the folders it created (its run dir first, then parents such as
    outputs/<date>), and an existing run dir's Hydra snapshot (`.hydra/`'s files)."""

    new_dirs: list[Path] = []
    hydra_dir: Optional[Path] = None
    kept: Optional[dict[Path, bytes]] = None  # None: there was no snapshot folder
    log: Optional[Path] = None  # the job log Hydra writes in the run dir
    log_existed = False
    run_json: Optional[tuple] = None  # run.json's stamp: `fit` rewrites it as training starts


def _stamp(path: Path) -> Optional[tuple]:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


_start = _RunStart()


def discard_refused_run() -> None:
    """Undoes what the start of a run refused before training wrote. A run dir it created
    goes, when it holds only what Hydra wrote there (`.hydra/`, `train.log`), with the
    parents created with it that are left empty: each refused command left an
    `outputs/<date>/<time>` that looked like a run. In a run dir that existed (a resumed
    run's), Hydra's snapshot is put back as it was: the refused overrides had replaced the
    run's own in `.hydra/overrides.yaml`. Once training has started (`fit` has written
    run.json), as in a run that diverged, nothing is undone."""
    import shutil

    if _start.log is None or _stamp(_start.log.parent / "run.json") != _start.run_json:
        return  # training started (a run that diverged): what it wrote stays
    run_dir = _start.new_dirs[0] if _start.new_dirs else None
    if run_dir is not None and (not run_dir.is_dir() or {p.name for p in run_dir.iterdir()}
                                - {".hydra", "train.log"}):
        return
    for handler in logging.getLogger().handlers[:]:  # Hydra's train.log handler
        if isinstance(handler, logging.FileHandler) and \
                Path(handler.baseFilename) == _start.log:
            handler.close()
            logging.getLogger().removeHandler(handler)
    if run_dir is None:  # the run dir was there: only what this start added or changed
        if not _start.log_existed:
            _start.log.unlink(missing_ok=True)
        hydra_dir = _start.hydra_dir
        if hydra_dir is None or not hydra_dir.is_dir():
            return
        if _start.kept is None:
            shutil.rmtree(hydra_dir, ignore_errors=True)
            return
        for f in hydra_dir.glob("*"):
            if f.is_file() and f not in _start.kept:
                f.unlink()
        for f, content in _start.kept.items():
            f.write_bytes(content)
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    for parent in _start.new_dirs[1:]:
        try:
            parent.rmdir()
        except OSError:  # something else is in it
            break


def _make_dir(key: str, folder: str) -> list[Path]:
    """Creates and removes `folder` to see that it can be made; returns the folders that
    did not exist, innermost first."""
    path = Path(folder)
    if path.exists() and not path.is_dir():
        fail(f"{key}={folder} is a file, not a directory; choose another directory with "
             f"{key}=...")
    missing = [p for p in (path, *path.parents) if not p.exists()]  # innermost first
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fail(f"{key}={folder} cannot be created ({os_reason(e, folder)}); choose another "
             f"directory with {key}=...")
    for made in missing:  # Hydra creates them again when the run or sweep starts
        try:
            made.rmdir()
        except OSError:  # something was written there meanwhile: it stays
            break
    return missing


_CONF = Path(__file__).parent / "conf"
_GROUPS = ("model", "data", "optim", "trainer", "logger", "experiment")
_PLUGIN_GROUPS = ("hydra/launcher", "hydra/sweeper")
_SEARCH_FLAGS = ("--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn")


def check_overrides(args: list[str]) -> None:
    """Refuses command-line overrides that choose no option of a config group, name no
    config field or give one a value of the wrong type, with one line, before Hydra composes
    the config. Hydra's own messages took 7-12 lines with its config search path, and for
    `optim.lrr=0.1` advised `+optim.lrr=0.1`, which `to_config` then refuses.

    With another config directory or search path (whose groups may hold more), and for
    overrides Hydra's grammar rejects, Hydra's own checks stay in charge.
    """
    if any(a.split("=")[0] in _SEARCH_FLAGS or a.startswith("hydra.searchpath") for a in args):
        return
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep

    try:
        overrides = OverridesParser.create().parse_overrides(
            [a for a in args if "=" in a and not a.startswith("-")])
    except Exception:  # noqa: BLE001 - Hydra words its own grammar errors
        return
    plugins = {o.key_or_group: o.value() for o in overrides
               if o.key_or_group in _PLUGIN_GROUPS and isinstance(o.value(), str)}
    for o in overrides:  # a preset's launcher or sweeper (digits_lr_sweep chooses the pool)
        if o.key_or_group == "experiment" and isinstance(o.value(), str):
            for group, choice in _preset_plugins(o.value()).items():
                plugins.setdefault(group, choice)
    for o in overrides:
        key = o.key_or_group
        if o.is_delete() or o.package is not None:
            continue
        if key in _PLUGIN_GROUPS:
            _check_choices(key, [o.value()], _plugin_options(key))
            continue
        plugin = "/".join(key.split(".")[:2])  # hydra.launcher.x -> hydra/launcher
        if plugin in plugins and not o.is_add():
            _check_plugin_key(plugin, plugins[plugin], key)
            continue
        if key.startswith("hydra"):
            continue
        if o.is_sweep_override() and not isinstance(o.value(), ChoiceSweep):
            values = []  # a range, glob or Optuna interval: its sweeper samples it
        else:
            values = list(o.sweep_iterator()) if o.is_sweep_override() else [o.value()]
        # (A sampling sweeper such as Optuna's draws from a choice: a repeat trains no job twice.)
        twice = repeated(o.input_line, values) if plugins.get("hydra/sweeper", "basic") == \
            "basic" else ""
        if twice:
            print(twice, file=sys.stderr)
        if key in _GROUPS:
            _check_choices(key, values)
        elif not o.is_add():  # `+key=value` is refused by `to_config`, with its reason
            _check_field(key, values, o.input_line)


def _preset_plugins(name: str) -> dict:
    """The Hydra plugins an experiment preset chooses in its defaults list
    (`override /hydra/launcher: pool`)."""
    path = _CONF / "experiment" / f"{name}.yaml"
    try:
        defaults = OmegaConf.load(path).get("defaults") or []
    except Exception:  # noqa: BLE001 - no such preset: refused by name, or left to Hydra
        return {}
    chosen = {}
    for item in defaults:
        for key, value in (item.items() if OmegaConf.is_dict(item) else ()):
            group = str(key).removeprefix("override ").strip().lstrip("/")
            if group in _PLUGIN_GROUPS and isinstance(value, str):
                chosen[group] = value
    return chosen


def _plugin_store() -> ConfigStore:
    """Hydra's config store once the installed plugins have registered their configs (Hydra
    scans them once per process; its run reuses the scan)."""
    from hydra.core.plugins import Plugins

    Plugins.instance()
    return ConfigStore.instance()


def _plugin_options(group: str) -> list[str]:
    """The options of a Hydra plugin group (`hydra/launcher`: basic, joblib, pool, ...)."""
    return sorted(name.removesuffix(".yaml") for name in _plugin_store().list(group)
                  if name.endswith(".yaml"))


def _check_plugin_key(group: str, choice: str, key: str) -> None:
    """`hydra.launcher.vectorise=true` with `hydra/launcher=pool` chosen on the command line:
    a key the chosen plugin's config lacks."""
    try:
        node = _plugin_store().load(f"{group}/{choice}.yaml").node
    except Exception:  # noqa: BLE001 - not a stored config: Hydra reports it
        return
    parts = key.split(".")[2:]
    for i, part in enumerate(parts):
        if not OmegaConf.is_dict(node) or node._is_missing() or node._is_none() or \
                not node.keys():
            return  # a value, or a mapping of any keys (Optuna's `params`): Hydra checks it
        names = [k for k in node.keys() if k not in ("_target_", "defaults")]
        if part not in names:
            where = ".".join(key.split(".")[:2 + i])
            fail(f"{where}.{part} is not an option of {group}={choice}; {where} takes: "
                 f"{', '.join(names) or 'no options'}{misspelt(part, names)}")
        node = node._get_node(part)


def _check_choices(group: str, values: list, options: Optional[list] = None) -> None:
    if options is None:
        options = sorted(p.stem for p in (_CONF / group).glob("*.yaml"))
    for value in values:
        if isinstance(value, str) and value not in options:
            fail(f"{group}={value} is not one of the {group} options: {', '.join(options)}"
                 f"{misspelt(value, options)}")


def _check_field(key: str, values: list, written: str) -> None:
    from omegaconf.errors import OmegaConfBaseException

    from lepton_jax.config import describe_type
    from lepton_jax.sweep import check_key

    try:
        check_key(Config(), key, source="override")
    except UserError as e:
        fail(str(e))
    kind, node = Config, None
    for part in key.split("."):
        node, kind = kind, typing.get_type_hints(kind)[part]
    checked = OmegaConf.structured(node)
    for value in values:
        if isinstance(value, str) and "${" in value:  # an interpolation: resolved later
            continue
        try:
            OmegaConf.update(checked, key.rsplit(".", 1)[-1], value, merge=True)
        except OmegaConfBaseException:
            wanted = describe_type(kind)
            fail(f"{written}: {value!r} is not {wanted}; pass {wanted}")
