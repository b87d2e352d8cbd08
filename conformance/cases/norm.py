"""Cases for SpatialBN, LRN, LayerNorm, Dropout.

SpatialBN in training (is_test=0) has five outputs, two of them written in place over inputs 3/4;
the runner names them after those inputs (the schema's enforce_inplace), so the updated running
statistics are compared like any other output.

Dropout in training is random: those cases are checked by ``_dropout_check`` (Y is X * scale where
the mask keeps and 0 elsewhere; the kept fraction is within 6 standard errors of 1 - ratio when there
are >= 10,000 elements). is_test cases are the identity, compared exactly, with gradients.
"""

from __future__ import annotations

import math

import numpy as np

from kaffa_conformance.cases import EXACT, RANDOM, REDUCTION, Case, cases, uniform

MIN_SAMPLES = 10_000
Z = 6.0  # standard errors allowed


# -- SpatialBN -------------------------------------------------------------------------------------
@cases("SpatialBN")
def spatial_bn(rng):
    def case(name, shape, train, order="NCHW", inplace=(), grad=None, **args):
        c = shape[1] if order == "NCHW" else shape[-1]
        x = uniform(rng, shape, -2, 2) + rng.uniform(-1, 1)  # off-centre, so the mean matters
        inputs = [
            x,
            uniform(rng, (c,), 0.5, 1.5),  # scale
            uniform(rng, (c,), -1, 1),  # bias
            uniform(rng, (c,), -0.5, 0.5),  # running mean
            uniform(rng, (c,), 0.5, 2.0),  # running var
        ]
        m = math.prod(shape) // c
        return Case(
            "SpatialBN",
            name,
            inputs,
            {"is_test": 0 if train else 1, "order": order, **args},
            num_outputs=5 if train else 1,
            op_class=REDUCTION,
            reduction=m,
            inplace=inplace,
            grad=grad,
        )

    return [
        case("test_nchw", (2, 3, 4, 5), False),
        case("test_nhwc", (2, 4, 5, 3), False, order="NHWC"),
        case("test_2d_epsilon", (5, 4), False, epsilon=1e-3),
        # Y over X (the in-place row is forward only; a gradient would need X).
        case("test_rank3_y_in_place", (2, 3, 3), False, inplace=[(0, 0)]),
        case("train_nchw", (2, 3, 4, 5), True),
        case("train_nhwc", (3, 2, 3, 4), True, order="NHWC"),
        case("train_2d", (6, 4), True),
        case("train_3d_spatial_args", (2, 3, 2, 3, 2), True, epsilon=1e-3, momentum=0.5),
        case("train_one_channel_batch1", (1, 1, 3, 3), True),
        case("train_two_values", (2, 3), True, momentum=0.0),
        case("train_odd_nhwc_rank3", (3, 5, 7), True, order="NHWC"),
    ]


# -- LRN -------------------------------------------------------------------------------------------
@cases("LRN")
def lrn(rng):
    def case(name, shape, num_outputs=2, **args):
        args.setdefault("alpha", 0.3)
        args.setdefault("beta", 0.75)
        return Case(
            "LRN",
            name,
            [uniform(rng, shape, -2, 2)],
            args,
            num_outputs=num_outputs,
            op_class=REDUCTION,
            reduction=args["size"],
        )

    return [
        case("nchw_size5", (2, 7, 3, 3), size=5),
        case("nhwc_size3", (2, 3, 4, 6), size=3, order="NHWC", alpha=0.2, beta=0.5, bias=2.0),
        case("y_only", (2, 4, 3, 2), num_outputs=1, size=3),
        case("y_only_nhwc", (1, 3, 2, 5), num_outputs=1, size=5, order="NHWC"),
        case("size1", (2, 3, 2, 2), size=1, alpha=1.0),
        case("window_wider_than_c", (2, 3, 2, 3), size=7, beta=1.5),
        case("alexnet_args", (1, 8, 3, 3), size=5, alpha=1e-4, beta=0.75, bias=1.0),
        case("caffe_defaults_identity", (2, 3, 2, 2), size=5, alpha=0.0, beta=0.0),
        case("rank2", (4, 6), size=3),
        case("rank5_odd", (1, 5, 2, 3, 1), size=3, bias=0.5),
    ]


# -- LayerNorm -------------------------------------------------------------------------------------
@cases("LayerNorm")
def layer_norm(rng):
    def case(name, shape, affine=False, **args):
        x = uniform(rng, shape, -2, 2) + rng.uniform(-1, 1)
        axis = args.get("axis", 1) % len(shape)
        d = math.prod(shape[axis:])
        inputs = [x]
        if affine:
            gshape = args.pop("gamma_shape", shape[axis:])
            inputs += [uniform(rng, gshape, 0.5, 1.5), uniform(rng, gshape, -1, 1)]
            args["elementwise_affine"] = 1
        return Case("LayerNorm", name, inputs, args, num_outputs=3, op_class=REDUCTION, reduction=d)

    return [
        case("2d", (3, 8)),
        case("3d_axis1", (2, 3, 4)),
        case("3d_axis2", (2, 3, 5), axis=2),
        case("axis_minus1", (2, 3, 4), axis=-1),
        case("axis0_one_row", (3, 4), axis=0),
        case("one_row", (1, 6)),
        case("one_column", (4, 1)),
        case("epsilon", (3, 5), epsilon=1e-3),
        case("affine_3d", (2, 3, 4), affine=True),
        case("affine_last_axis", (3, 2, 5), affine=True, axis=-1),
        case("affine_flat_gamma", (2, 3, 2), affine=True, gamma_shape=(6,)),
    ]


# -- Dropout ---------------------------------------------------------------------------------------
def _dropout_check(x_master: np.ndarray, with_mask: bool):
    def check(outputs, args, dtype):
        x = x_master.astype(dtype)
        y = outputs[0]
        problems = []
        if y.shape != x.shape or y.dtype != np.dtype(dtype):
            return [f"Y is {y.dtype}{list(y.shape)}, expected {np.dtype(dtype)}{list(x.shape)}"]
        if with_mask:
            mask = outputs[1]
            if mask.dtype != np.bool_ or mask.shape != x.shape:
                return [f"mask is {mask.dtype}{list(mask.shape)}, expected bool{list(x.shape)}"]
        else:
            mask = y != 0  # the inputs are nonzero
        ratio = args["ratio"]
        want = np.where(mask, x.astype(np.float64) / (1 - ratio), 0.0)
        eps = float(np.finfo(dtype).eps)
        err = np.abs(y.astype(np.float64) - want)
        if np.any(err > 2 * eps * np.abs(want)):
            problems.append(f"Y is not X * mask / (1 - ratio): max error {err.max():.3g}")
        n, kept = x.size, float(np.mean(mask))
        if ratio == 0 and kept != 1:
            problems.append(f"ratio 0 dropped {1 - kept:.3g} of the elements")
        if n >= MIN_SAMPLES:
            p = 1 - ratio
            if abs(kept - p) > Z * math.sqrt(p * (1 - p) / n):
                problems.append(f"kept {kept:.4f} of {n} elements, expected {p} (ratio {ratio})")
            # Rows and columns must be independent draws, not one mask repeated.
            flat = mask.reshape(mask.shape[0], -1)
            if flat.shape[0] > 1 and np.all(flat == flat[:1]):
                problems.append("every row has the same mask")
        return problems

    return check


@cases("Dropout")
def dropout(rng):
    def nonzero(shape):
        return uniform(rng, shape, 0.25, 2) * rng.choice([-1.0, 1.0], size=shape)

    def test(name, shape, num_outputs=1, **kw):
        return Case(
            "Dropout",
            name,
            [nonzero(shape)],
            {"is_test": 1, **kw.pop("args", {})},
            num_outputs=num_outputs,
            op_class=EXACT,
            grad=True,  # the identity: its gradient (DropoutGrad with is_test) is deterministic
            **kw,
        )

    def train(name, shape, ratio=None, num_outputs=2, **kw):
        x = nonzero(shape)
        args = {"is_test": 0} if ratio is None else {"is_test": 0, "ratio": ratio}
        return Case(
            "Dropout",
            name,
            [x],
            args,
            num_outputs=num_outputs,
            op_class=RANDOM,
            check=_dropout_check(x, num_outputs == 2),
            **kw,
        )

    return [
        test("is_test", (3, 4)),
        test("is_test_mask", (2, 3, 5), num_outputs=2, args={"ratio": 0.3}),
        test("is_test_inplace", (4, 6), inplace=[(0, 0)]),
        test("is_test_scalar", ()),
        train("train_default_half", (100, 120)),
        train("train_ratio_0.2", (50, 4, 50), ratio=0.2),
        train("train_ratio_0.9", (200, 60), ratio=0.9),
        train("train_ratio_0", (7, 5), ratio=0.0),
        train("train_no_mask", (120, 100), ratio=0.4, num_outputs=1),
        train("train_inplace", (100, 101), ratio=0.5, inplace=[(0, 0)]),
        train("train_small_odd", (3, 1, 5), ratio=0.5),
    ]
