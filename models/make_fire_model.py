"""Builds models/fire_colour.onnx, pitwall's default fire model (needs the `onnx` package).

Input  `frames`  [N, 3, H, W] float32, RGB in 0..1 (H and W free; pitwall feeds 128x128).
Output `heatmap` [N, 1, H, W] float32 in 0..1: per-pixel fire likelihood, smoothed.
Output `score`   [N, 1]       float32 in 0..1: the frame's fire score.

Per pixel, with k = 16 and s(x) = sigmoid(k * x):
    likelihood = s(r - 0.50) * s(g - b - 0.15) * s(r - g + 0.05) * s(r - b - 0.35)
that is: a bright red channel, more green than blue (yellow-orange, not magenta or pure red),
red at least about as strong as green, and a warm, saturated colour. The heatmap is that
likelihood averaged over 5x5 pixels; the score is the largest 9x9 average of the likelihood, so
a frame scores high only when a flame-coloured patch of about 9x9 model pixels or more exists.

Limits: it is a colour rule, not a learned detector. Orange/yellow objects (a sunset, a
high-visibility jacket, sodium street lights) score as fire; smoke, and fire seen as white
glare, do not. Plug in a trained YOLO export (`--fire-model yolo.onnx --fire-model-kind yolo`)
for real deployments.
"""
import sys

import onnx
from onnx import TensorProto, helper

K = 16.0


def const(name, value):
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(name + "_v", TensorProto.FLOAT, [], [value]))


def main(out):
    nodes = [
        const("k", K),
        helper.make_node("Split", ["frames"], ["r", "g", "b"], axis=1),
    ]

    def term(name, expr_inputs, offset):
        # s(k * (expr + offset)) where expr is a difference or a single channel.
        nodes.append(const(name + "_off", offset))
        if len(expr_inputs) == 2:
            nodes.append(helper.make_node("Sub", expr_inputs, [name + "_d"]))
            base = name + "_d"
        else:
            base = expr_inputs[0]
        nodes.append(helper.make_node("Add", [base, name + "_off"], [name + "_x"]))
        nodes.append(helper.make_node("Mul", [name + "_x", "k"], [name + "_kx"]))
        nodes.append(helper.make_node("Sigmoid", [name + "_kx"], [name]))
        return name

    bright = term("bright", ["r"], -0.50)
    nodes.append(helper.make_node("Sub", ["g", "b"], ["gb"]))
    warm = term("warm", ["gb"], -0.15)
    redder = term("redder", ["r", "g"], 0.05)
    saturated = term("saturated", ["r", "b"], -0.35)
    nodes += [
        helper.make_node("Mul", [bright, warm], ["p1"]),
        helper.make_node("Mul", ["p1", redder], ["p2"]),
        helper.make_node("Mul", ["p2", saturated], ["likelihood"]),
        helper.make_node("AveragePool", ["likelihood"], ["heatmap"], kernel_shape=[5, 5], pads=[2, 2, 2, 2], count_include_pad=0),
        helper.make_node("AveragePool", ["likelihood"], ["patches"], kernel_shape=[9, 9], pads=[4, 4, 4, 4], count_include_pad=0),
        helper.make_node("ReduceMax", ["patches"], ["score_4d"], axes=[2, 3], keepdims=1),
        helper.make_node("Flatten", ["score_4d"], ["score"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "fire_colour",
        [helper.make_tensor_value_info("frames", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [
            helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, ["N", 1, "H", "W"]),
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1]),
        ],
    )
    # Opset 17: ReduceMax still takes `axes` as an attribute; ONNX Runtime 1.16+ runs it.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pitwall")
    model.ir_version = 8
    model.doc_string = __doc__
    onnx.checker.check_model(model)
    onnx.save(model, out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "models/fire_colour.onnx")
