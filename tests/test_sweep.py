"""`lepton_jax.sweep` from Python: one job dir per point, results equal standalone runs."""

import json

import pytest

from lepton_jax import Config, ModelConfig, TrainerConfig, fit, sweep
from lepton_jax.errors import UserError


def _base():
    return Config(model=ModelConfig(hidden=[32]),
                  trainer=TrainerConfig(epochs=1, progress="off", num_devices=1))


def test_sweep_rows_match_standalone_runs(tmp_path):
    df = sweep(_base(), {"optim.lr": [0.02, 0.1], "seed": [0, 1]}, workdir=tmp_path / "s")
    assert len(df) == 4 and set(df["status"]) == {"done"}
    assert sorted(zip(df["optim.lr"], df["seed"], strict=True)) == \
        [(0.02, 0), (0.02, 1), (0.1, 0), (0.1, 1)]
    config = _base()
    config.optim.lr, config.seed = 0.1, 1
    alone = fit(config, tmp_path / "alone")
    row = df[(df["optim.lr"] == 0.1) & (df["seed"] == 1)].iloc[0]
    assert row["val/accuracy"] == alone["val"]["accuracy"]
    job = json.loads((tmp_path / "s" / str(row.name) / "result.json").read_text())
    assert job["val"]["loss"] == alone["val"]["loss"]


@pytest.mark.parametrize("grid,message", [
    ({"optim.lrr": [0.1]}, "sweep grid key 'optim.lrr' is not a config field; optim has: name, "
                           "lr, momentum, nesterov, weight_decay, clip_norm, schedule"),
    ({"optimizer.lr": [0.1]}, "sweep grid key 'optimizer.lr' is not a config field; the config "
                              "has: model, data, optim, trainer, logger, seed"),
    ({"seed.x": [1]}, "sweep grid key 'seed.x' is not a config field; seed is a value, not a "
                      "group of fields"),
    ({"optim.lr": []}, "sweep grid value for 'optim.lr' is empty; give at least one value"),
    ({"optim.lr": 0.1}, "sweep grid value for 'optim.lr' must be a list of values"),
    ({"optim.lr": [0.1, "fast"]}, "sweep grid value optim.lr='fast' does not fit the config: "
                                  "Value 'fast' of type 'str' could not be converted to Float"),
    # A group, as `model=mlp,lenet5` on the command line: OmegaConf's "str is not a subclass
    # of ModelConfig" had said nothing of the fix.
    ({"model": ["mlp", "lenet5"]}, "sweep grid key 'model' is a group of fields (name, hidden, "
                                   "activation, dropout); set one of them, such as model.name"),
])
def test_sweep_rejects_bad_grids_before_work(tmp_path, grid, message):
    with pytest.raises(UserError) as info:
        sweep(_base(), {"seed": [0, 1], **grid}, workdir=tmp_path)
    assert message in str(info.value)
    assert not list(tmp_path.iterdir())


def test_a_grid_value_listed_twice_is_warned_of(tmp_path, capsys):
    """{"optim.lr": [0.1, 0.1]} trained the same job twice without a word; as on the command
    line, a warning line says so, and the sweep goes on."""
    df = sweep(_base(), {"optim.lr": [0.1, 0.1]}, workdir=tmp_path)
    assert len(df) == 2
    assert ("warning: sweep grid {'optim.lr': [0.1, 0.1]} lists 0.1 twice: the sweep trains "
            "that value's jobs more than once\n") in capsys.readouterr().err


def test_trainer_overrides_name_themselves_in_errors():
    from lepton_jax import Dataset, Model, Trainer

    data = Dataset.from_arrays([[0.0, 1.0], [1.0, 0.0]] * 8, [0, 1] * 8)
    with pytest.raises(UserError, match="override key 'trainer.epochz' is not a config field; "
                                        "trainer has: epochs, batch_size"):
        Trainer(Model.mlp(hidden=[4]), data, overrides=["trainer.epochz=3"])
    with pytest.raises(UserError, match="override value trainer.epochs='abc' does not fit"):
        Trainer(Model.mlp(hidden=[4]), data, overrides=["trainer.epochs=abc"])


def test_sweep_records_failed_points(tmp_path):
    df = sweep(_base(), {"optim.lr": [-1.0, 0.05]}, workdir=tmp_path)
    assert list(df["status"]) == ["failed", "done"]
    assert "optim.lr (-1.0) must be > 0" in df.iloc[0]["error"]


def test_sweep_rows_name_the_step_whose_parameters_restore_best_kept(tmp_path):
    config = _base()
    config.trainer.epochs, config.trainer.restore_best = 4, True
    df = sweep(config, {"optim.lr": [0.05, 0.5]}, workdir=tmp_path, vectorize=True)
    for job, row in df.iterrows():
        result = json.loads((tmp_path / str(job) / "result.json").read_text())
        assert row["best_step"] == result["best"]["step"]
        assert row["val/loss"] == result["val"]["loss"]


@pytest.mark.slow
def test_sweep_through_the_pool_launcher_matches_in_process(tmp_path):
    grid = {"optim.lr": [0.02, 0.1], "seed": [0, 1]}
    here = sweep(_base(), grid, workdir=tmp_path / "here")
    pool = sweep(_base(), grid, workdir=tmp_path / "pool", launcher="pool",
                 launcher_options={"slots": 2, "progress": "false"})
    assert (tmp_path / "pool" / "summary.csv").exists()
    assert list(pool.index) == list(here.index) == [0, 1, 2, 3]
    assert pool[["optim.lr", "seed", "status"]].equals(here[["optim.lr", "seed", "status"]])
    for column in ("monitor", "val/loss", "test/accuracy"):
        assert pool[column].to_numpy() == pytest.approx(here[column].to_numpy(), rel=1e-5)
    assert set(pool["node"].str.rsplit("/", n=1).str[-1]) == {"slot0", "slot1"}
    with pytest.raises(UserError, match="already holds a sweep"):
        sweep(_base(), grid, workdir=tmp_path / "pool", launcher="pool")


def test_numpy_grids_become_python_numbers():
    """A grid built with numpy (np.linspace, np.arange) sweeps like a list of floats/ints."""
    import numpy as np

    from lepton_jax.sweep import grid_points, with_overrides

    points = grid_points({"optim.lr": np.linspace(0.02, 0.1, 2), "seed": np.arange(2)})
    assert points == [{"optim.lr": 0.02, "seed": 0}, {"optim.lr": 0.02, "seed": 1},
                      {"optim.lr": 0.1, "seed": 0}, {"optim.lr": 0.1, "seed": 1}]
    assert {type(v) for p in points for v in p.values()} == {float, int}
    config = with_overrides(_base(), {"optim.lr": np.float32(0.5), "seed": np.int64(3)})
    assert (config.optim.lr, config.seed) == (0.5, 3) and type(config.seed) is int
