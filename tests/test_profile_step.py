"""scripts/profile_step.py: the per-op table of the compiled training step."""

import pytest

from scripts.profile_step import describe_ops, innermost_events, op_table, profile


def test_innermost_events_skip_wrappers_markers_and_parents():
    """Hand-made trace: a loop wrapping two ops, one with an "end:" marker inside it, another
    thread's op, and a thread-pool record; only the three ops count."""
    x = dict(ph="X", pid=1)
    trace = {"traceEvents": [
        {**x, "tid": 1, "name": "while.2", "ts": 0, "dur": 100},
        {**x, "tid": 1, "name": "dot.1", "ts": 10, "dur": 30},
        {**x, "tid": 1, "name": "end: dot.1", "ts": 38, "dur": 2},
        {**x, "tid": 1, "name": "fusion.3", "ts": 50, "dur": 20},
        {**x, "tid": 2, "name": "dot.1", "ts": 0, "dur": 10},
        {**x, "tid": 2, "name": "ThreadpoolListener::Record", "ts": 5, "dur": 1e-6},
        {**x, "tid": 3, "name": "ThunkExecutor::Execute", "ts": 0, "dur": 90},
        {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/host:CPU"}},
    ]}
    assert sorted(e["name"] for e in innermost_events(trace)) == ["dot.1", "dot.1", "fusion.3"]
    table = op_table(trace, steps=2)
    assert [(r["op"], r["ms_per_step"], r["calls_per_step"]) for r in table] == \
        [("dot.1", 0.02, 1.0), ("fusion.3", 0.01, 0.5)]
    assert sum(r["share"] for r in table) == 1.0


def test_describe_ops_names_shape_opcode_and_dimension_numbers():
    hlo = "\n".join([
        '  %copy.3 = f32[8,512,512]{2,1,0} copy(%get-tuple-element.2), metadata={op_name="x"}',
        "  %dot.7 = f32[8,512,10]{2,1,0} dot(%a, %b), lhs_batch_dims={0}, "
        "lhs_contracting_dims={1}, rhs_batch_dims={0}, rhs_contracting_dims={1}, metadata={}",
        "  ROOT %fusion.2 = (f32[2]{0}, s32[]) fusion(%p), kind=kLoop, calls=%fused_computation",
        "  %convolution.1 = f32[128,24,24,6]{3,2,1,0} convolution(%x, %k), window={size=5x5}, "
        "dim_labels=b01f_01io->b01f, metadata={}",
    ])
    assert describe_ops(hlo) == {
        "copy.3": "f32[8,512,512] copy",
        "dot.7": "f32[8,512,10] dot lhs_batch_dims={0} lhs_contracting_dims={1} "
                 "rhs_batch_dims={0} rhs_contracting_dims={1}",
        "fusion.2": "(f32[2], s32[]) fusion kind=kLoop",
        "convolution.1": "f32[128,24,24,6] convolution dim_labels=b01f_01io->b01f",
    }


@pytest.mark.parametrize("members", [0, 3])
def test_mlp_step_profile_has_its_eight_matmuls_once_per_step(tmp_path, members):
    """MLP 784-512-512-10: three forward matmuls, three weight gradients and two input
    gradients (the input's own is never needed), each once per step in the traced calls;
    a vmapped population batches each over its members instead of repeating it."""
    table, (plain_ms, traced_ms), loss = profile("mlp", 32, 2, 3, tmp_path, members)
    dots = [r for r in table if r["op"].startswith("dot")]
    assert len(dots) == 8, [r["op"] for r in dots]
    assert all(r["calls_per_step"] == 1.0 for r in dots)
    # Each labelled from the compiled HLO: (members,) rows x features, a dot, its dimensions.
    lead = f"f32[{members}," if members else "f32["
    assert all(r["hlo"].startswith(lead) and " dot " in r["hlo"] and "contracting_dims" in r["hlo"]
               for r in dots), [r["hlo"] for r in dots]
    assert plain_ms > 0 and traced_ms > 0 and loss > 0
    assert sum(r["share"] for r in table) == pytest.approx(1.0)
