"""ONNX translators onto the preprocess family (see kaffa.ops.preprocess): Unique, TfIdfVectorizer,
ImageDecoder."""

from __future__ import annotations

from kaffa.onnx.importer import Context, Node, translator, unsupported


@translator("Unique")
def _unique(ctx: Context, node: Node) -> None:
    # kaffa's outputs are positional: name the ones ONNX leaves out (those before a used one).
    last = max(k for k, o in enumerate(node.outputs) if o) if any(node.outputs) else 0
    outs = [
        o or ctx.temp(f"{node.outputs[0] or 'unique'}_out{k}") for k, o in enumerate(node.outputs[: last + 1])
    ]
    axis = node.attr("axis")
    ctx.op(
        "Unique",
        node.inputs[:1],
        outs,
        axis=None if axis is None else int(axis),
        sorted=int(node.attr("sorted", 1)),
    )


@translator("TfIdfVectorizer")
def _tfidf(ctx: Context, node: Node) -> None:
    if node.attr("pool_strings"):
        raise unsupported("pool_strings (kaffa has no string tensors; pool_int64s is supported)")
    ctx.op(
        "TfIdfVectorizer",
        node.inputs[:1],
        node.outputs[:1],
        min_gram_length=int(node.attr("min_gram_length")),
        max_gram_length=int(node.attr("max_gram_length")),
        max_skip_count=int(node.attr("max_skip_count")),
        mode=node.attr("mode"),
        ngram_counts=[int(v) for v in node.attr("ngram_counts", [])],
        ngram_indexes=[int(v) for v in node.attr("ngram_indexes", [])],
        pool_int64s=[int(v) for v in node.attr("pool_int64s", [])],
        weights=[float(v) for v in node.attr("weights", [])] or None,
    )


@translator("ImageDecoder")
def _image_decoder(ctx: Context, node: Node) -> None:
    ctx.op("ImageDecoder", node.inputs[:1], node.outputs[:1], pixel_format=node.attr("pixel_format", "RGB"))
