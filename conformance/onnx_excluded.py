"""The ONE list of onnx node test cases the ONNX node suite (``kaffa_conformance.onnx_node_suite``)
skips, each with the scope decision behind it.

An entry is a regular expression, matched with ``re.fullmatch`` against the test name
(``test_relu``, ``test_softmax_axis_0_expanded``), and a reason. Only deliberate scope decisions
belong here: element types kaffa only stores (no arithmetic on them), non-tensor values, string
processing, training-only and non-default-domain ops, outputs defined by one RNG's stream. A case
that merely fails (a missing translator, an integer dtype kaffa lacks, a wrong result) stays a
failure. ``tests/test_onnx_node_suite.py`` checks that every entry still matches a test.
"""

from __future__ import annotations

import re

__all__ = ["EXCLUDED", "excluded_reason"]

_STORAGE_ONLY = (
    "bfloat16 arithmetic: kaffa holds, serializes and casts bfloat16 (an ml_dtypes storage type) but its "
    "kernels compute in float16/32/64 only"
)

EXCLUDED: dict[str, str] = {
    # -- element types kaffa stores but does not compute in --------------------------------------------
    # bfloat16, float8, float4 and 2/4-bit integers are storage types (ml_dtypes): kaffa holds,
    # serializes, casts, quantizes and dequantizes them, so the Cast/CastLike/QuantizeLinear/
    # DequantizeLinear cases on them run. Arithmetic on them (these bfloat16 cases) does not.
    r"test_.*(bfloat16|_bf16).*": _STORAGE_ONLY,
    # -- values that are not tensors ----------------------------------------------------------------
    r"test_(sequence|split_to_sequence)_.*": "sequence values: kaffa blobs are tensors",
    r"test_(identity_sequence|if_seq|loop13_seq|loop16_seq_none)": "sequence values: kaffa blobs are tensors",
    r"test_(optional_.*|identity_opt|if_opt)": "optional values: kaffa blobs are tensors",
    # -- strings --------------------------------------------------------------------------------------
    r"test_(string_concat|string_split|strnormalizer|regex_full_match).*": (
        "string processing ops: kaffa computes on numeric tensors"
    ),
    r"test_equal_string.*": "string tensors: kaffa computes on numeric tensors",
    # -- other domains ---------------------------------------------------------------------------------
    r"test_ai_onnx_ml_.*": "ai.onnx.ml domain (classical ML: trees, label encoders): not imported",
    r"test_(adagrad|adam|momentum|nesterov_momentum).*": (
        "ai.onnx.preview.training domain: optimizer steps are training, kaffa imports for inference"
    ),
    r"test_flexattention.*": "ai.onnx.preview domain: not a standard op yet",
    # -- random outputs --------------------------------------------------------------------------------
    r"test_bernoulli.*": "random output: the expected values are one numpy RNG stream",
    r"test_training_dropout(_default)?(_mask)?": (
        "random dropout mask (ratio > 0, training mode): the expected values are one numpy RNG stream"
    ),
}

_COMPILED = [(re.compile(pattern), reason) for pattern, reason in EXCLUDED.items()]


def excluded_reason(test_name: str) -> str | None:
    """Why ``test_name`` is skipped, or None if it runs."""
    for pattern, reason in _COMPILED:
        if pattern.fullmatch(test_name):
            return reason
    return None
