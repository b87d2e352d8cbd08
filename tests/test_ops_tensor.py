"""The tensor family in whole nets: gradients through add_gradient_ops (unused Split parts, Concat
and Reshape without their second output, in-place uses refused), and the errors conformance cases
cannot show."""

from __future__ import annotations

import numpy as np
import pytest
from optest import check_against_finite_differences

from kaffa import Net, Workspace
from kaffa.errors import KaffaError, SchemaError, ShapeError


def _run(build, feeds: dict[str, np.ndarray], wrt: list[str] = (), loss: str | None = "loss"):
    """Run the net (with gradients of `loss` if `wrt`); return the workspace and gradient names."""
    net = Net("t")
    build(net)
    grads = net.add_gradient_ops({loss: "seed"}) if wrt else {}
    ws = Workspace()
    for k, v in feeds.items():
        ws.feed_blob(k, v)
    ws.feed_blob("seed", np.array(1.0))
    ws.run_net_once(net)
    return ws, grads


def test_a_chain_of_layout_ops_differentiates():
    rng = np.random.default_rng(0)

    def build(net):
        net.Gather(["emb", "ids"], "rows")  # [2, 3, 4]; id 1 twice: its gradient sums
        net.Tile("rows", "tiled", tiles=2, axis=-1)  # [2, 3, 8]
        net.Slice("tiled", "cut", starts=[0, 1, 2], ends=[-1, -1, 7])  # [2, 2, 5]
        net.ExpandDims("cut", "wide", dims=[0, 3])  # [1, 2, 2, 1, 5]
        net.Transpose("wide", "t", axes=[4, 2, 0, 1, 3])
        net.Squeeze("t", "sq", dims=[2, 4])  # [5, 2, 2]
        net.Flatten("sq", "flat")  # [5, 4]
        net.Concat(["flat", "w"], ["cat", "info"], axis=1)  # [5, 7]
        net.Split("cat", ["a", "b"], axis=1, split=[3, 4])
        net.Reshape("b", ["rb", "old"], shape=[-1])
        net.Copy("rb", "c")
        net.Mul(["c", "c"], "sq2")
        net.SumElements("sq2", "s1")
        net.Mul(["a", "a"], "sq3")
        net.SumElements("sq3", "s2")
        net.Add(["s1", "s2"], "loss")

    feeds = {"emb": rng.normal(size=(5, 3, 4)), "ids": np.array([1, 1]), "w": rng.normal(size=(5, 3))}
    check_against_finite_differences(build, feeds, ["emb", "w"], rtol=1e-6, atol=1e-8)


def test_unused_split_parts_get_zero_gradients():
    x = np.arange(12, dtype=np.float64).reshape(2, 6)

    def build(net):
        net.Split("x", ["a", "b", "c"], axis=1)  # only b reaches the loss
        net.SumElements("b", "loss")

    ws, grads = _run(build, {"x": x}, ["x"])
    g = ws.fetch_blob(grads["x"])
    assert g.dtype == np.float64  # the zeros take the part's dtype
    np.testing.assert_array_equal(g, [[0, 0, 1, 1, 0, 0]] * 2)


def test_concat_and_reshape_without_their_second_output_differentiate():
    rng = np.random.default_rng(1)

    def build(net):
        net.Concat(["x", "y"], "xy", axis=-2)  # no split_info: rebuilt from the inputs' shapes
        net.Reshape("xy", "r", shape=[0, -1])  # no old_shape: ResizeLike to the input
        net.Mul(["r", "r"], "r2")
        net.SumElements("r2", "loss")

    feeds = {"x": rng.normal(size=(2, 1, 3)), "y": rng.normal(size=(2, 4, 3))}
    check_against_finite_differences(build, feeds, ["x", "y"], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    "build",
    [
        lambda net: net.Reshape("x", "x", shape=[-1]),
        lambda net: net.Flatten("x", "x", axis=1),
    ],
    ids=["Reshape", "Flatten"],
)
def test_in_place_reshapes_that_lose_the_shape_refuse_to_differentiate(build):
    net = Net("t")
    build(net)
    net.SumElements("x", "loss")
    with pytest.raises(SchemaError, match="overwrites it in place"):
        net.add_gradient_ops(["loss"])


def test_in_place_reshape_with_old_shape_differentiates():
    def build(net):
        net.Reshape("x", ["x", "old"], shape=[-1])
        net.Mul(["x", "x"], "x2")
        net.SumElements("x2", "loss")

    x = np.arange(6, dtype=np.float64).reshape(2, 3)
    ws, grads = _run(build, {"x": x}, ["x"])
    np.testing.assert_array_equal(ws.fetch_blob(grads["x"]), 2 * x)


@pytest.mark.parametrize(
    ("op", "shape", "args", "message"),
    [
        ("Squeeze", (2, 3), {"dims": [1]}, r"dim 1 of input shape \[2, 3\] has size 3, not 1"),
        ("Squeeze", (1, 3), {"dims": [2]}, r"dims \[2\] are out of range for input shape \[1, 3\]"),
        ("ExpandDims", (2, 3), {"dims": [3]}, r"dims \[3\] are out of range for a rank-3 output"),
        ("Slice", (4, 5), {"starts": [3], "ends": [1]}, r"dim 0 of input shape \[4, 5\].*reversed range"),
        ("Slice", (4, 5), {"starts": [0, 0, 0], "ends": [1, 1, 1]}, r"3 entries for input shape \[4, 5\]"),
        ("Slice", (4, 5), {"starts": [0], "ends": [1, 2]}, "different lengths"),
        ("Slice", (4,), {"starts": [-7], "ends": [-1]}, r"start -7"),
        ("Tile", (4,), {"tiles": 0}, "tiles must be >= 1"),
        ("Tile", (4,), {"axis": 1}, "axis 1 is out of range"),
        ("Shape", (4,), {"axes": [1]}, "axes entry 1 is out of range"),
    ],
)
def test_shape_errors_name_the_shapes(op, shape, args, message):
    net = Net("t")
    getattr(net, op)("x", "y", **args)
    ws = Workspace()
    ws.feed_blob("x", np.zeros(shape, np.float32))
    with pytest.raises(ShapeError, match=message):
        ws.run_net_once(net)


@pytest.mark.parametrize("op", ["Squeeze", "ExpandDims"])
def test_squeeze_and_expand_dims_need_non_negative_dims(op):
    with pytest.raises(KaffaError, match=r"dims must be non-negative, got \[-1\]"):  # at op creation
        getattr(Net("t"), op)("x", "y", dims=[-1])
    with pytest.raises(KaffaError, match="at least one dim"):
        getattr(Net("t"), op)("x", "y", dims=[])


def _run_op(op, inputs, **args):
    net = Net("t")
    names = [f"in{i}" for i in range(len(inputs))]
    getattr(net, op)(names, "y", **args)
    ws = Workspace()
    for n, v in zip(names, inputs):
        ws.feed_blob(n, v)
    ws.run_net_once(net)
    return ws.fetch_blob("y")


def test_gather_and_sparse_to_dense_check_their_indices():
    data = np.zeros((3, 2), np.float32)
    with pytest.raises(ShapeError, match=r"indices must lie in \[0, 3\), got values in \[0, 3\]"):
        _run_op("Gather", [data, np.array([0, 3])])
    with pytest.raises(ShapeError, match="INDICES must be int32 or int64, got float32"):
        _run_op("Gather", [data, np.array([0.0], np.float32)])
    with pytest.raises(ShapeError, match="DATA is a scalar"):
        _run_op("Gather", [np.array(1.0, np.float32), np.array([0])])
    with pytest.raises(ShapeError, match=r"values shape \[3\] does not start with the indices shape \[2\]"):
        _run_op("SparseToDense", [np.array([0, 1]), np.zeros(3, np.float32)])
    with pytest.raises(ShapeError, match=r"indices must lie in \[0, 2\)"):
        _run_op("SparseToDense", [np.array([0, 2]), np.zeros(2, np.float32), np.zeros(2, np.float32)])


def test_slice_and_tile_take_their_parameters_as_inputs():
    x = np.arange(20, dtype=np.float32).reshape(4, 5)
    got = _run_op("Slice", [x, np.array([1, -3], np.int32), np.array([-1, -1], np.int32)])
    np.testing.assert_array_equal(got, x[1:, 3:])
    with pytest.raises(ShapeError, match="either as arguments or as inputs"):
        _run_op("Slice", [x, np.array([0]), np.array([1])], starts=[0], ends=[1])
    got = _run_op("Tile", [x, np.array([2]), np.array([1])])
    np.testing.assert_array_equal(got, np.tile(x, (1, 2)))


def test_resize_like_refuses_a_different_size():
    with pytest.raises(ShapeError, match=r"input shape \[2, 3\] \(6 elements\) cannot take the shape \[5\]"):
        _run_op("ResizeLike", [np.zeros((2, 3), np.float32), np.zeros(5, np.float32)])


def test_outputs_are_contiguous_and_never_alias_a_written_input():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4).transpose(2, 0, 1)  # not contiguous
    for op, args in [
        ("Slice", {"starts": [1], "ends": [3]}),
        ("ExpandDims", {"dims": [1]}),
        ("Tile", {"tiles": 2, "axis": 1}),
        ("ZerosLike", {}),
    ]:
        y = _run_op(op, [x], **args)
        assert y.flags.c_contiguous, op
    y = _run_op("Gather", [x, np.array(1)])  # a 0-d index: basic indexing
    assert y.flags.c_contiguous and y.shape == (2, 3)
    y = _run_op("Gather", [np.arange(4.0), np.array(2)])
    assert isinstance(y, np.ndarray) and y.shape == () and y == 2.0
