"""Control flow: If, While, Do (semantics, errors, the If gradient), kaffa.subnet, ONNX If/Loop/Scan."""

from __future__ import annotations

import time

import numpy as np
import pytest

import kaffa
from kaffa import Workspace
from kaffa.core import create_operator
from kaffa.errors import ExecutionError, IterationLimitError, SchemaError, ShapeError
from kaffa.gradients import add_gradient_ops
from kaffa.proto import NetDef
from kaffa.subnet import SubnetRunner, backward_net, reads, writes
from kaffa_conformance.cases.control import net

F32 = np.float32


def _run(ws: Workspace, *ops, name: str = "main") -> None:
    n = NetDef(name=name)
    n.op.extend(ops)
    ws.run_net_once(n)


def _ws(**blobs) -> Workspace:
    ws = Workspace()
    for k, v in blobs.items():
        ws.feed_blob(k, v)
    return ws


# -- kaffa.subnet --------------------------------------------------------------------------------------
def test_reads_and_writes():
    body = net("b", ("Mul", ["x", "w"], ["t"]), ("Add", ["t", "b"], ["x"]), ("Relu", ["x"], ["y"]))
    assert reads(body) == ["x", "w", "b"]
    assert reads(body, bound=["w"]) == ["x", "b"]
    assert writes(body) == ["t", "x", "y"]


def test_subnet_runner_binds_by_position_and_by_name_and_keeps_nothing():
    body = net("b", ("Mul", ["x", "w"], ["t"]), ("Relu", ["t"], ["y"]))
    run = SubnetRunner(body, ["x", "w"], ["y"])
    x, w = np.array([1.0, -2.0], F32), np.array([3.0, 3.0], F32)
    (y,) = run(x, w)
    np.testing.assert_array_equal(y, [3.0, 0.0])
    out = run.run({"x": -x, "w": w}, ["t", "y"])
    np.testing.assert_array_equal(out["t"], [-3.0, 6.0])
    np.testing.assert_array_equal(out["y"], [0.0, 6.0])
    assert run._ws.blobs() == []  # the child workspace holds nothing between calls
    assert len(run._net._plans) == 1  # planned once across calls of one signature
    with pytest.raises(ExecutionError, match="did not produce blob 'nope'"):
        run.run({"x": x, "w": w}, ["nope"])


def test_backward_net_recomputes_and_zero_fills():
    body = net("b", ("Mul", ["x", "w"], ["y"]))
    grad, got = backward_net(body, ["x", "w", "u"], {"y": "gy"}, {"x": "gx", "w": "gw", "u": "gu"})
    assert got == {"x", "w"}
    run = SubnetRunner(grad, ["x", "w", "u", "gy"], ["gx", "gw", "gu"])
    x, w, u = np.array([2.0], F32), np.array([5.0], F32), np.array([7.0, 8.0], F32)
    gx, gw, gu = run(x, w, u, np.array([3.0], F32))
    assert gx[0] == 15.0 and gw[0] == 6.0
    np.testing.assert_array_equal(gu, [0.0, 0.0])


# -- If -----------------------------------------------------------------------------------------------
def _if_op(**kw):
    then = net("then", ("Mul", ["x", "w"], ["y"]))
    els = net("else", ("Sub", ["x", "w"], ["y"]))
    return create_operator("If", ["c", "x", "w"], ["y"], then_net=then, else_net=els, **kw)


@pytest.mark.parametrize("cond, want", [(True, 6.0), (False, -1.0)])
def test_if_runs_the_taken_branch(cond, want):
    ws = _ws(c=np.array(cond), x=np.full((2, 2), 2.0, F32), w=np.full((2, 2), 3.0, F32))
    _run(ws, _if_op())
    np.testing.assert_array_equal(ws.fetch_blob("y"), np.full((2, 2), want, F32))


def test_if_reruns_with_a_new_condition_without_replanning_the_outer_net():
    ws = _ws(c=np.array([True]), x=np.ones(3, F32), w=np.full(3, 4.0, F32))
    n = NetDef(name="main")
    n.op.append(_if_op())
    created = ws.create_net(n)
    created.run()
    assert ws.fetch_blob("y")[0] == 4.0
    ws.feed_blob("c", np.array([False]))
    created.run()
    assert ws.fetch_blob("y")[0] == -3.0


def test_if_without_else_passes_bound_inputs_through():
    then = net("then", ("Negative", ["x"], ["x"]))
    op = create_operator("If", ["c", "x"], ["x"], then_net=then)
    ws = _ws(c=np.array(False), x=np.array([1.0, 2.0], F32))
    _run(ws, op)
    np.testing.assert_array_equal(ws.fetch_blob("x"), [1.0, 2.0])
    ws.feed_blob("c", np.array(True))
    _run(ws, op)
    np.testing.assert_array_equal(ws.fetch_blob("x"), [-1.0, -2.0])


def test_if_refuses_unbound_reads_and_missing_outputs_at_creation():
    then = net("then", ("Mul", ["x", "secret"], ["y"]))
    ws = _ws(c=np.array(True), x=np.ones(2, F32), secret=np.ones(2, F32))
    n = NetDef(name="main")
    n.op.append(create_operator("If", ["c", "x"], ["y"], then_net=then, else_net=then))
    with pytest.raises(SchemaError, match=r"'secret'.*does not bind"):
        ws.create_net(n)
    n2 = NetDef(name="main2")
    n2.op.append(create_operator("If", ["c", "x"], ["z"], then_net=net("t", ("Relu", ["x"], ["y"]))))
    with pytest.raises(SchemaError):
        ws.create_net(n2)


def test_if_condition_must_be_one_bool():
    ws = _ws(c=np.array([1.0], F32), x=np.ones(2, F32), w=np.ones(2, F32))
    n = NetDef(name="main")
    n.op.append(_if_op())
    with pytest.raises(ShapeError, match="must be bool"):
        ws.create_net(n)
    ws.feed_blob("c", np.array([True, False]))
    with pytest.raises(ShapeError, match="one element"):
        ws.create_net(n)


def test_if_error_inside_a_branch_is_typed_and_leaves_the_workspace_unchanged():
    then = net("then", ("Mul", ["x", "w"], ["y"]))
    ws = _ws(c=np.array(True), x=np.ones((2, 3), F32), w=np.ones((4, 5), F32), y=np.zeros(1, F32))
    op = create_operator("If", ["c", "x", "w"], ["y"], then_net=then, else_net=then)
    with pytest.raises(kaffa.OperatorError, match="Mul"):
        _run(ws, op)
    np.testing.assert_array_equal(ws.fetch_blob("y"), [0.0])


# -- If gradient --------------------------------------------------------------------------------------
@pytest.mark.parametrize("cond", [True, False])
def test_if_gradient_is_the_taken_branch_gradient(cond):
    then = net("then", ("Mul", ["x", "w"], ["t"]), ("Relu", ["t"], ["y"]))
    els = net("else", ("Tanh", ["x"], ["y"]))
    fwd = create_operator("If", ["c", "x", "w"], ["y"], then_net=then, else_net=els)
    grad_ops, grads = add_gradient_ops([fwd], {"y": "y_grad"})
    assert [op.type for op in grad_ops] == ["If"]
    assert {"x", "w"} <= set(grads) and "c" not in grads
    rng = np.random.default_rng(0)
    x, w, gy = (rng.uniform(-1, 1, (3, 4)).astype(np.float64) for _ in range(3))
    ws = _ws(c=np.array(cond), x=x, w=w, y_grad=gy)
    _run(ws, fwd, *grad_ops)
    gx, gw = ws.fetch_blob(grads["x"]), ws.fetch_blob(grads["w"])
    if cond:
        mask = (x * w > 0).astype(np.float64)
        np.testing.assert_allclose(gx, gy * mask * w)
        np.testing.assert_allclose(gw, gy * mask * x)
    else:
        np.testing.assert_allclose(gx, gy * (1 - np.tanh(x) ** 2))
        np.testing.assert_array_equal(gw, np.zeros_like(w))  # the else branch does not read w


def test_if_conformance_covers_the_gradient():
    from kaffa_conformance import gradcheck
    from kaffa_conformance.cases import for_op

    cs = for_op("If")
    assert cs and all(gradcheck.wants_grad(c) for c in cs)


# -- While ----------------------------------------------------------------------------------------------
def _counter_loop(limit: float, **kw):
    body = net("body", ("Add", ["i", "one"], ["i"]), ("Mul", ["x", "two"], ["x"]), ("LT", ["i", "n"], ["c"]))
    return create_operator("While", ["c", "i", "one", "two", "n", "x"], ["x", "i"], loop_net=body, **kw)


def test_while_loops_until_the_condition_is_false():
    ws = _ws(c=np.array(True), i=np.array(0.0), one=np.array(1.0), two=np.array(2.0), n=np.array(5.0))
    ws.feed_blob("x", np.array([1.0, 3.0]))
    _run(ws, _counter_loop(5))
    np.testing.assert_array_equal(ws.fetch_blob("x"), [32.0, 96.0])
    assert float(ws.fetch_blob("i")) == 5.0


def test_while_cond_net_and_scan_blobs():
    cond_net = net("check", ("LT", ["i", "n"], ["c"]))
    body = net("body", ("Add", ["i", "one"], ["i"]), ("Add", ["x", "i"], ["x"]))
    op = create_operator(
        "While", ["c", "i", "one", "n", "x"], ["x", "xs"], loop_net=body, cond_net=cond_net, scan_blobs=["x"]
    )
    ws = _ws(c=np.array(False), i=np.array(0.0), one=np.array(1.0), n=np.array(3.0), x=np.array([0.0]))
    _run(ws, op)
    np.testing.assert_array_equal(ws.fetch_blob("x"), [6.0])
    np.testing.assert_array_equal(ws.fetch_blob("xs"), [[1.0], [3.0], [6.0]])


def test_while_past_max_iterations_raises_a_typed_error_fast():
    body = net("forever", ("Add", ["i", "one"], ["i"]))  # never touches the condition
    op = create_operator("While", ["c", "i", "one"], ["i"], loop_net=body, max_iterations=50)
    ws = _ws(c=np.array(True), i=np.array(0.0), one=np.array(1.0))
    start = time.perf_counter()
    with pytest.raises(IterationLimitError, match="max_iterations=50") as err:
        _run(ws, op)
    assert time.perf_counter() - start < 5
    assert err.value.limit == 50
    assert isinstance(err.value, ExecutionError)
    assert float(ws.fetch_blob("i")) == 0.0  # the failed run changed nothing


def test_while_exactly_max_iterations_is_allowed():
    ws = _ws(c=np.array(True), i=np.array(0.0), one=np.array(1.0), two=np.array(2.0), n=np.array(4.0))
    ws.feed_blob("x", np.array([1.0]))
    _run(ws, _counter_loop(4, max_iterations=4))
    assert float(ws.fetch_blob("i")) == 4.0


def test_while_is_not_differentiable():
    _ops, grads = add_gradient_ops([_counter_loop(3)], ["x"])
    assert set(grads) == {"x"}  # only the loss seed: no input of the While gets a gradient


# -- Do -------------------------------------------------------------------------------------------------
def test_do_with_bindings_and_a_nested_if():
    inner_if = create_operator(
        "If",
        ["c", "a"],
        ["b"],
        then_net=net("t", ("Relu", ["a"], ["b"])),
        else_net=net("e", ("Negative", ["a"], ["b"])),
    )
    body = NetDef(name="body")
    body.op.append(inner_if)
    body.op.append(create_operator("Add", ["b", "a"], ["out"]))
    op = create_operator(
        "Do", ["flag", "v"], ["r"], net=body, inner_blobs=["c", "a", "out"], outer_blobs_idx=[0, 1, 2]
    )
    ws = _ws(flag=np.array(False), v=np.array([1.0, -2.0]))
    _run(ws, op)
    np.testing.assert_array_equal(ws.fetch_blob("r"), [0.0, 0.0])
    ws.feed_blob("flag", np.array(True))
    _run(ws, op)
    np.testing.assert_array_equal(ws.fetch_blob("r"), [2.0, -2.0])
    assert not ws.has_blob("a") and not ws.has_blob("b")  # inner blobs stay in the child workspace


def test_bindings_are_checked():
    body = net("b", ("Relu", ["a"], ["out"]))
    with pytest.raises(kaffa.ArgumentError, match="same length"):
        create_operator("Do", ["v"], ["r"], net=body, inner_blobs=["a"], outer_blobs_idx=[0, 1])
    ws = _ws(v=np.ones(2))
    n = NetDef(name="main")
    n.op.append(
        create_operator("Do", ["v"], ["r"], net=body, inner_blobs=["a", "out"], outer_blobs_idx=[0, 5])
    )
    with pytest.raises(kaffa.ArgumentError, match="out of range"):
        ws.create_net(n)


# -- ONNX ---------------------------------------------------------------------------------------------
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


def _model(nodes, inputs, outputs, opset=13, inits=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _run_onnx(model, *feeds):
    import kaffa.onnx.backend as kb

    return kb.prepare(model).run(list(feeds))


def test_onnx_if_captures_outer_names():
    vi = helper.make_tensor_value_info
    then_g = helper.make_graph(
        [helper.make_node("Mul", ["x", "x"], ["t_out"])], "then", [], [vi("t_out", TensorProto.FLOAT, [3])]
    )
    else_g = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["e_out"])], "else", [], [vi("e_out", TensorProto.FLOAT, [3])]
    )
    node = helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)
    m = _model(
        [node],
        [vi("c", TensorProto.BOOL, []), vi("x", TensorProto.FLOAT, [3])],
        [vi("y", TensorProto.FLOAT, [3])],
    )
    from kaffa.onnx import import_model

    _, pred = import_model(m)
    (op,) = [o for o in pred.op if o.type == "If"]
    assert list(op.input) == ["c", "x"]  # the outer x the branches read is captured
    x = np.array([1.0, -2.0, 3.0], F32)
    np.testing.assert_array_equal(_run_onnx(m, np.array(True), x)[0], x * x)
    np.testing.assert_array_equal(_run_onnx(m, np.array(False), x)[0], -x)


def test_onnx_loop_with_trip_count_and_scan_output():
    vi = helper.make_tensor_value_info
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["acc_in", "step"], ["acc_out"]),
            helper.make_node("Identity", ["acc_out"], ["scan"]),
        ],
        "body",
        [
            vi("i", TensorProto.INT64, []),
            vi("cond_in", TensorProto.BOOL, []),
            vi("acc_in", TensorProto.FLOAT, [2]),
        ],
        [
            vi("cond_out", TensorProto.BOOL, []),
            vi("acc_out", TensorProto.FLOAT, [2]),
            vi("scan", TensorProto.FLOAT, [2]),
        ],
    )
    node = helper.make_node("Loop", ["M", "", "acc0"], ["acc", "scans"], body=body)
    m = _model(
        [node],
        [
            vi("M", TensorProto.INT64, []),
            vi("acc0", TensorProto.FLOAT, [2]),
            vi("step", TensorProto.FLOAT, [2]),
        ],
        [vi("acc", TensorProto.FLOAT, [2]), vi("scans", TensorProto.FLOAT, [None, 2])],
    )
    acc, scans = _run_onnx(m, np.array(3, np.int64), np.zeros(2, F32), np.array([1.0, 2.0], F32))
    np.testing.assert_array_equal(acc, [3.0, 6.0])
    np.testing.assert_array_equal(scans, [[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]])


def test_onnx_scan_reverse_and_axes():
    vi = helper.make_tensor_value_info
    body = helper.make_graph(
        [
            helper.make_node("Add", ["s_in", "x_t"], ["s_out"]),
            helper.make_node("Identity", ["s_out"], ["y_t"]),
        ],
        "body",
        [vi("s_in", TensorProto.FLOAT, [2]), vi("x_t", TensorProto.FLOAT, [2])],
        [vi("s_out", TensorProto.FLOAT, [2]), vi("y_t", TensorProto.FLOAT, [2])],
    )
    node = helper.make_node(
        "Scan",
        ["s0", "x"],
        ["s", "y"],
        body=body,
        num_scan_inputs=1,
        scan_input_axes=[1],
        scan_input_directions=[1],
        scan_output_axes=[1],
    )
    m = _model(
        [node],
        [vi("s0", TensorProto.FLOAT, [2]), vi("x", TensorProto.FLOAT, [2, 3])],
        [vi("s", TensorProto.FLOAT, [2]), vi("y", TensorProto.FLOAT, [2, 3])],
        opset=11,
    )
    x = np.arange(6, dtype=F32).reshape(2, 3)
    s, y = _run_onnx(m, np.zeros(2, F32), x)
    np.testing.assert_array_equal(s, x.sum(axis=1))
    want = np.cumsum(x[:, ::-1], axis=1)  # reversed scan over axis 1, outputs stacked on axis 1
    np.testing.assert_array_equal(y, want)


def test_onnx_node_suite_control_cases_pass():
    from kaffa_conformance.onnx_node_suite import load_cases, run_case

    cases, _ = load_cases(
        r"test_(if|scan9_sum|scan_sum|range_float_type_positive_delta_expanded|linear_attention_linear_expanded)$",
        modules=["if_", "scan", "rangeop", "linear_attention"],
    )
    assert len(cases) == 5
    for case in cases:
        result = run_case(case, "cpu")
        assert result.status == "pass", (case.name, result.kind, result.message)
