"""Typed configuration schemas: the only shape a config takes inside the library."""

from __future__ import annotations

import dataclasses
import numbers
import typing
from dataclasses import dataclass, field
from typing import Any, List, Optional, Union

from lepton_jax.errors import UserError


@dataclass
class ModelConfig:
    name: str = "mlp"
    # Hidden layer widths for `mlp`.
    hidden: List[int] = field(default_factory=lambda: [256, 128])
    activation: str = "relu"
    # `mlp`: the share of each hidden layer's units zeroed at random in each training step
    # (inverted dropout; none at evaluation).
    dropout: float = 0.0


def model_label(m: ModelConfig) -> str:
    """The model in a few words, as run headers show it: `mlp 256-128 relu`, `lenet5`."""
    label = f"mlp {'-'.join(map(str, m.hidden))} {m.activation}" if m.name == "mlp" else m.name
    return label + (f" dropout {m.dropout:g}" if m.dropout else "")


@dataclass
class DataConfig:
    name: str = "digits"
    # Folder of the IDX files for `mnist`; the CSV file for `csv`.
    root: Optional[str] = None
    download: bool = False
    # `csv` only: the target column (default: the last column) and the task.
    target: Optional[str] = None
    task: str = "auto"
    # `csv` only: columns to one-hot encode (categories recorded for prediction).
    categorical: List[str] = field(default_factory=list)
    val_fraction: float = 0.1
    # Only for datasets without an official test split (digits, csv).
    test_fraction: float = 0.1
    split_seed: int = 0
    # Use only the first N training examples (quick experiments, tests).
    limit: Optional[int] = None
    normalize: bool = True
    # Regression only: train on targets standardized with training statistics; metrics and
    # predictions are in the target's own units.
    normalize_target: bool = True


@dataclass
class OptimConfig:
    name: str = "sgd"
    # Peak learning rate; the schedule scales it over training.
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    clip_norm: Optional[float] = None
    schedule: str = "cosine"
    warmup_epochs: float = 0.0


@dataclass
class TrainerConfig:
    epochs: int = 20
    batch_size: int = 64
    eval_batch_size: int = 2048
    eval_every_epochs: int = 1
    # 0 = off; otherwise evaluate every N steps as well.
    eval_every_steps: int = 0
    checkpoint_every_epochs: int = 5
    checkpoint_every_steps: int = 0
    keep_checkpoints: int = 3
    resume: bool = True
    # auto (a rich bar on a terminal or in Jupyter, nothing otherwise), rich, plain (a line
    # every 30 s, for logs), off.
    progress: str = "auto"
    # auto, single, jit, pmap.
    parallel: str = "auto"
    # How many local devices to train on (null: all).
    num_devices: Optional[int] = None
    # Steps fused into one device call (lax.scan): a positive integer, "epoch" or "auto".
    steps_per_call: str = "auto"
    # Persistent XLA compilation cache: "auto" (~/.cache/lepton_jax/xla), a folder, or "off".
    compilation_cache: str = "auto"
    # Metric returned to Hydra sweepers; "auto": val accuracy or val mse.
    monitor: str = "auto"
    # Early stopping: stop after this many evaluations in a row in which the monitored
    # validation metric did not improve by more than min_delta (0 = off).
    patience: int = 0
    min_delta: float = 0.0
    # End with the parameters of the best evaluation of `monitor` (a validation metric), not
    # the last step's: final metrics, result.json and Model.load use them.
    restore_best: bool = False


@dataclass
class LoggerConfig:
    name: str = "console"
    wandb_project: str = "lepton-jax"
    wandb_entity: Optional[str] = None
    # offline writes ./wandb/offline-run-*; "online" needs an account and network.
    wandb_mode: str = "offline"


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    seed: int = 0


MAX_SEED = 2**31 - 1  # the run's seed enters the jitted state init as an int32
SCHEDULES = ("constant", "cosine", "warmup_cosine", "one_cycle")
PROGRESS = ("auto", "rich", "plain", "off")
PARALLEL = ("auto", "single", "jit", "pmap")
TASKS = ("auto", "classification", "regression")
WANDB_MODES = ("offline", "online", "disabled")


def _choice(field_name: str, value: str, valid) -> None:
    if value not in valid:
        raise UserError(
            f"{field_name}={value!r} is not known; valid values: {', '.join(valid)}"
        )


def _positive(field_name: str, value, allow_zero: bool = False) -> None:
    bad = value < 0 if allow_zero else value <= 0
    if bad:
        bound = ">= 0" if allow_zero else "> 0"
        raise UserError(f"{field_name} ({value}) must be {bound}; pass a value {bound}")


# Fields parsed from text after the type check: the schema says str, Python may pass an int.
_ALSO_INT = {"trainer.steps_per_call"}


def _fits(value, kind) -> bool:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        return True
    if origin is Union:
        return any(_fits(value, a) for a in args)
    if kind is type(None):
        return value is None
    if origin in (list, List):
        return isinstance(value, (list, tuple)) and all(_fits(v, args[0]) for v in value)
    if kind is bool:
        return isinstance(value, bool) or type(value).__name__ == "bool_"  # numpy's bool
    if kind is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    return isinstance(value, kind)


def describe_type(kind) -> str:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Union:
        return " or ".join("None" if a is type(None) else describe_type(a) for a in args)
    if origin in (list, List):
        return "a list of " + {int: "integers", float: "numbers", str: "strings"}.get(
            args[0], describe_type(args[0]))
    return {bool: "True or False", int: "an integer", float: "a number", str: "a string"}.get(
        kind, getattr(kind, "__name__", str(kind)))


def native_value(value):
    """numpy scalars (a grid from `np.linspace`, a value read off an array) as Python's own
    numbers, lists of them as lists: OmegaConf and JSON take only those."""
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [native_value(v) for v in value]
    return value


def native(config):
    """A copy of a config dataclass with every value through `native_value`."""
    return dataclasses.replace(config, **{
        f.name: native(v) if dataclasses.is_dataclass(v) and not isinstance(v, type)
        else native_value(v) for f in dataclasses.fields(config)
        for v in [getattr(config, f.name)]})


def check_types(config, prefix: str = "") -> None:
    """Python callers (the notebook API, `fit`, `sweep`) skip Hydra's typed schema: a value
    of the wrong type (`lr="0.1"`, `epochs=2.5`, `val_fraction="test"`) is refused here with
    its field's name instead of failing deep inside training.

    Raises:
        UserError: naming the field, the value and the type it takes.
    """
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value, kind, name = getattr(config, f.name), hints[f.name], f"{prefix}{f.name}"
        if dataclasses.is_dataclass(kind):
            if not isinstance(value, kind):
                raise UserError(f"{name} is a {type(value).__name__}; pass a {kind.__name__}")
            check_types(value, f"{name}.")
        elif not (_fits(value, kind) or name in _ALSO_INT and _fits(value, int)):
            wanted = describe_type(kind) + (" or an integer" if name in _ALSO_INT else "")
            raise UserError(f"{name}={value!r} is not {wanted}; pass {wanted}")


def validate_data(data: DataConfig, prefix: str = "data.") -> DataConfig:
    """The checks a dataset's split settings need (also run when the notebook API builds a
    Dataset, before any file is read or split made); returns the config with native values."""
    data = native(data)
    check_types(data, prefix)
    for name in ("val_fraction", "test_fraction"):
        value = getattr(data, name)
        if not 0.0 <= value < 1.0:
            raise UserError(f"{prefix}{name} ({value}) must be in [0, 1)")
    if data.limit is not None:
        _positive(f"{prefix}limit", data.limit)
    if not 0 <= data.split_seed <= MAX_SEED:  # numpy's generator refused -1 with a traceback
        raise UserError(f"{prefix}split_seed ({data.split_seed}) must be in [0, {MAX_SEED}]; "
                        "pick a seed in that range")
    return data


def require_config(config, where: str) -> None:
    """`fit(dict, ...)` or `sweep(grid, config)` raised TypeError from dataclasses; a config
    is the typed `Config`."""
    if not isinstance(config, Config):
        swapped = " (a dict of dotted keys is the grid: sweep(config, grid))" \
            if isinstance(config, dict) and where == "sweep" else ""
        raise UserError(f"{where}'s config is a {type(config).__name__}; pass a "
                        f"lepton_jax.Config, e.g. Config(optim=OptimConfig(lr=0.1)){swapped}")


def validate(config: Config, data_given: bool = False) -> Config:
    """Checks every value a run depends on before any work starts.

    With `data_given` (arrays passed from Python), `data.name` need not name a loader.

    Raises:
        UserError: naming the first bad field, its constraint and the fix.
    """
    from lepton_jax.data import DATASETS
    from lepton_jax.models import MODELS, ACTIVATIONS
    from lepton_jax.optim import OPTIMIZERS

    config = native(config)
    check_types(config)
    if not 0 <= config.seed <= MAX_SEED:
        # JAX keys are 32-bit: larger seeds would be cut and collide with smaller ones.
        raise UserError(f"seed ({config.seed}) must be in [0, {MAX_SEED}]; pick a seed in "
                        "that range")
    _choice("model.name", config.model.name, sorted(MODELS))
    _choice("model.activation", config.model.activation, sorted(ACTIVATIONS))
    for width in config.model.hidden:
        _positive("model.hidden", width)
    if not 0.0 <= config.model.dropout < 1.0:
        raise UserError(f"model.dropout ({config.model.dropout}) must be in [0, 1): the share "
                        "of hidden units zeroed in each training step")
    if config.model.dropout and config.model.name != "mlp":
        raise UserError(f"model.dropout applies to model=mlp's hidden layers; "
                        f"model={config.model.name} has none to drop; set model.dropout=0")
    if config.model.name != "mlp":
        # Ignored otherwise: a sweep over them would train the same model under other names.
        own = ("its own fixed layers (ReLU)" if config.model.name == "lenet5"
               else "no hidden layers")
        for name in ("hidden", "activation"):
            value, default = getattr(config.model, name), getattr(ModelConfig(), name)
            if value != default:
                shown = "[" + ",".join(map(str, value)) + "]" if name == "hidden" else value
                raise UserError(f"model.{name}={shown} applies to model=mlp; "
                                f"model={config.model.name} has {own}; leave model.{name} at "
                                "its default, or use model=mlp")
    if not data_given:
        _choice("data.name", config.data.name, sorted(DATASETS))
    _choice("data.task", config.data.task, TASKS)
    config.data = validate_data(config.data)
    if not data_given:
        _check_dataset_fields(config.data)
    _choice("optim.name", config.optim.name, sorted(OPTIMIZERS))
    _positive("optim.lr", config.optim.lr)
    if not 0.0 <= config.optim.momentum < 1.0:
        raise UserError(f"optim.momentum ({config.optim.momentum}) must be in [0, 1)")
    if config.optim.nesterov and not config.optim.momentum:  # as other settings to no effect
        raise UserError("optim.nesterov=true has no effect with optim.momentum=0 (Nesterov's "
                        "look-ahead is along the momentum); set optim.momentum > 0, e.g. 0.9, "
                        "or optim.nesterov=false")
    _positive("optim.weight_decay", config.optim.weight_decay, allow_zero=True)
    if config.optim.clip_norm is not None:
        _positive("optim.clip_norm", config.optim.clip_norm)
    _choice("optim.schedule", config.optim.schedule, SCHEDULES)
    _positive("optim.warmup_epochs", config.optim.warmup_epochs, allow_zero=True)
    t = config.trainer
    _positive("trainer.epochs", t.epochs)
    _positive("trainer.batch_size", t.batch_size)
    _positive("trainer.eval_batch_size", t.eval_batch_size)
    _check_warmup(config.optim, t.epochs)
    for name in ("eval_every_epochs", "eval_every_steps", "checkpoint_every_epochs",
                 "checkpoint_every_steps"):
        _positive(f"trainer.{name}", getattr(t, name), allow_zero=True)
    _positive("trainer.keep_checkpoints", t.keep_checkpoints)
    _positive("trainer.patience", t.patience, allow_zero=True)
    _positive("trainer.min_delta", t.min_delta, allow_zero=True)
    for name, what in (("patience", "counts evaluations"),
                       ("restore_best", "keeps the best evaluation's parameters")):
        if getattr(t, name) and not (t.eval_every_epochs or t.eval_every_steps):
            raise UserError(f"trainer.{name} {what}, but trainer.eval_every_epochs and "
                            "trainer.eval_every_steps are both 0; set one of them")
    _choice("trainer.progress", t.progress, PROGRESS)
    _choice("trainer.parallel", t.parallel, PARALLEL)
    if t.num_devices is not None:
        _positive("trainer.num_devices", t.num_devices)
    steps_per_call(t)  # raises on a bad value
    if not t.compilation_cache.strip():
        # An empty path would put the cache in the working directory (a checkout, say).
        raise UserError("trainer.compilation_cache is empty; use auto (the user cache folder), "
                        "off, or a folder path")
    _choice("logger.name", config.logger.name, ("console", "wandb"))
    _choice("logger.wandb_mode", config.logger.wandb_mode, WANDB_MODES)
    return config


def _check_dataset_fields(data: DataConfig) -> None:
    """Refuses the settings `data.name`'s dataset would ignore (a CSV file's target, task
    and categorical columns; a test share where MNIST has its official test split), so that
    a run never trains on something other than what its config says."""
    default = DataConfig()
    if data.name != "csv":
        if data.target is not None:
            raise UserError(f"data.target={data.target} applies to data=csv; data={data.name} "
                            "has its own labels; leave data.target unset, or use data=csv")
        if data.categorical:
            raise UserError(f"data.categorical=[{','.join(data.categorical)}] applies to "
                            f"data=csv; data={data.name} has no named columns to one-hot "
                            "encode; leave data.categorical empty, or use data=csv")
        if data.task not in ("auto", "classification"):
            raise UserError(f"data.task={data.task}: data={data.name} is a classification "
                            "dataset (its labels are classes); set data.task=auto")
    if data.name == "mnist" and data.test_fraction != default.test_fraction:
        raise UserError(f"data.test_fraction={data.test_fraction:g}: data=mnist has its "
                        "official 10,000-image test split; leave data.test_fraction at "
                        f"{default.test_fraction:g} (data.val_fraction sets the validation "
                        "share)")


def _check_warmup(optim: OptimConfig, epochs: int) -> None:
    """A warm-up the schedule would ignore, or one that leaves warmup_cosine nothing to decay
    over, is refused (the step count is checked again once the epoch's steps are known)."""
    from lepton_jax.optim import WARMUP_SCHEDULES

    if not optim.warmup_epochs:
        return
    if optim.schedule not in WARMUP_SCHEDULES:
        why = ("starts at its peak" if optim.schedule == "cosine"
               else "rises to its peak over the first 30 % of training by itself")
        raise UserError(f"optim.warmup_epochs={optim.warmup_epochs:g} has no effect with "
                        f"optim.schedule={optim.schedule}, which {why}; warm up with "
                        "optim.schedule=warmup_cosine (or constant), or set "
                        "optim.warmup_epochs=0")
    if optim.schedule == "warmup_cosine" and optim.warmup_epochs >= epochs:
        raise UserError(f"optim.warmup_epochs={optim.warmup_epochs:g} is not less than "
                        f"trainer.epochs={epochs}: warmup_cosine needs epochs left to decay "
                        "over; warm up for fewer epochs or train for more")


def maximized(metric: str) -> bool:
    """Whether a higher value of `metric` is better (scores) or lower (losses, errors)."""
    return any(k in metric for k in ("accuracy", "precision", "recall", "f1", "r2"))


def monitor_name(monitor: str, task: str, has_val: bool) -> str:
    """The metric `trainer.monitor` names: `auto` is the validation accuracy (classification)
    or MSE (regression), on the test split when there is no validation split."""
    if monitor != "auto":
        return monitor
    split = "val" if has_val else "test"
    return f"{split}/accuracy" if task == "classification" else f"{split}/mse"


def monitored_name(result: dict, monitor: str, task: Optional[str]) -> Optional[str]:
    """The name of the metric a finished job's `monitor` holds: result.json's `monitored`;
    for a run from before it was recorded, `trainer.monitor` resolved as training did
    (`monitor_name`), on the splits the run reported."""
    if "monitored" in result or "monitor" not in result:
        return result.get("monitored")
    if task not in ("classification", "regression"):  # run.json without it: as reported
        scores = [name for split in ("val", "test") for name in result.get(split, {})]
        task = "classification" if "accuracy" in scores else "regression"
    return monitor_name(monitor, task, has_val="val" in result)


def steps_per_call(trainer: TrainerConfig) -> "int | str":
    """Parses trainer.steps_per_call: a positive int, or "epoch"/"auto" (resolved by the loop)."""
    value = str(trainer.steps_per_call).strip()
    if value in ("auto", "epoch"):
        return value
    try:
        k = int(value)
    except ValueError:
        raise UserError(
            f"trainer.steps_per_call={value!r} must be a positive integer, 'epoch' or 'auto'"
        ) from None
    if k < 1:
        raise UserError(f"trainer.steps_per_call ({k}) must be >= 1, 'epoch' or 'auto'")
    return k


def flat_dict(config: dict) -> dict:
    """A config dict as `to_dict` writes it, with dotted keys: {"optim.lr": ..., "seed": ...}."""
    flat = {}
    for section, values in config.items():
        if isinstance(values, dict):
            flat.update({f"{section}.{k}": v for k, v in values.items()})
        else:
            flat[section] = values
    return flat


def to_dict(config: Any) -> dict:
    """A plain-dict copy of a config dataclass (for logging and run files)."""
    return dataclasses.asdict(config)

