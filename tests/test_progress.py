"""`trainer.progress`: what each mode shows, on a clock the test moves."""

import pytest

from lepton_jax import progress


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    return now


def test_plain_progress_prints_a_line_every_half_minute_for_logs(clock, capsys):
    """`trainer.progress=plain` (documented, and what the tests' CLI runs ask for) drew
    nothing at all; a long job in a log showed no sign of life between evaluations. It now
    prints a line every 30 s, with the time left from this process's rate (a resumed run
    starts part-way), and the end once it has printed any; a shorter run prints none."""
    bar = progress.StepProgress(total=1000, completed=200, mode="plain")
    for _ in range(8):  # 100 steps per 10 s: at 30 s, 300 done and 500 left, so 50 s
        clock[0] += 10
        bar.advance(100, info="epoch 1.00")
    bar.close()
    assert capsys.readouterr().err.splitlines() == [
        "train 500/1,000 steps (50%) · 0:30 elapsed · 0:50 left · epoch 1.00",
        "train 800/1,000 steps (80%) · 1:00 elapsed · 0:20 left · epoch 1.00",
        "train 1,000/1,000 steps (100%) · 1:20 elapsed"]
    short = progress.StepProgress(total=10, completed=0, mode="plain", description="population of 4")
    clock[0] += 5
    short.advance(10)
    short.close()
    assert capsys.readouterr().err == ""
    off = progress.StepProgress(total=10, completed=0, mode="off")
    clock[0] += 60
    off.advance(10)
    off.close()
    assert capsys.readouterr().err == ""
