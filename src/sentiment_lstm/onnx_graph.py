"""Build the ONNX graph of a :class:`~sentiment_lstm.model.SentimentLSTM`.

The graph is written node by node from the trained weights rather than
traced, so that it can be laid out for inference:

* The first layer's input projection is folded into the embedding. A token's
  embedding ``e`` only ever enters the network as ``W_ih e + b_ih + b_hh``,
  so the graph stores that product for every vocabulary entry (a table of
  ``vocab_size x 4 * hidden_dim``) and looks rows up instead of multiplying.
  On rt-polarity's default model this removes half of the matrix work.
* Each direction steps through time with an ONNX ``Scan`` whose body is the
  LSTM cell: one matrix product with the recurrent weights, the gates and
  the new cell and hidden state. In the first layer the body takes the step's
  token ids and looks up their table rows itself, so the rows of one step
  are read while they are still in the cache, and the rows of a whole batch
  are never written out.
* Time runs along axis 0 (``[sequence, batch, ...]``), the layout ``Scan``
  iterates over.

Padding never reaches a review's score, as in the PyTorch module: the
forward direction's state is read at each review's last token, and the
backward direction reads each review reversed within its own length. When
only the last state of one layer is pooled and the table is folded, the
reviews are instead aligned to end at the last step, so that each ``Scan``
returns just its final state. The steps before a review then leave the state
at exactly zero. The
export in :mod:`sentiment_lstm.export` compares this graph's probabilities
with the PyTorch module's before it keeps the file.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sentiment_lstm.model import SentimentLSTM

# When the folded table would exceed this many bytes per direction, the graph
# keeps the embedding and multiplies by the input weights at run time instead.
# The table has 4 * hidden_dim columns, so it is 4 times the size of a
# default embedding: 14-27 MiB for rt-polarity's vocabulary, but 136 MiB for
# 5 merged networks (500 units in all) over 17,000 words.
MAX_FOLDED_TABLE_BYTES = 128 * 2**20


class _Graph:
    """Nodes and initializers of a graph under construction, with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def constant(self, stem: str, value: np.ndarray) -> str:
        name = self.name(stem)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def int64(self, stem: str, *values: int) -> str:
        return self.constant(stem, np.asarray(values, dtype=np.int64))

    def node(self, op: str, inputs: list[str], stem: str, **attributes) -> str:
        (output,) = self.nodes_with_outputs(op, inputs, [stem], **attributes)
        return output

    def nodes_with_outputs(
        self, op: str, inputs: list[str], stems: list[str], **attributes
    ) -> list[str]:
        outputs = [self.name(stem) for stem in stems]
        self.nodes.append(
            helper.make_node(op, inputs, outputs, name=self.name(op), **attributes)
        )
        return outputs


def build_onnx_model(
    module: SentimentLSTM,
    *,
    input_ids: str,
    input_lengths: str,
    output: str,
    opset: int,
) -> onnx.ModelProto:
    """Return the ONNX model of an eval-mode network with softmax on top.

    Args:
        module: The trained network. Dropout is left out, as in eval mode.
        input_ids: Name of the int64 ``[batch, sequence]`` token id input.
        input_lengths: Name of the int64 ``[batch]`` length input.
        output: Name of the float32 ``[batch, num_classes]`` output.
        opset: ONNX opset of the graph; 17 or later.

    Raises:
        ValueError: If ``opset`` is below 17.
    """
    if opset < 17:
        raise ValueError(f"invalid opset {opset}: the graph needs opset 17 or later")
    config = module.config
    weights = {
        name: tensor.detach().cpu().numpy().astype(np.float32)
        for name, tensor in module.state_dict().items()
    }
    graph = _Graph()
    hidden = config.hidden_dim

    # sizes and indices, all int64
    shape = graph.node("Shape", [input_ids], "shape")
    batch_1d = graph.node(
        "Slice", [shape, graph.int64("0", 0), graph.int64("1", 1)], "batch"
    )
    seq_1d = graph.node(
        "Slice", [shape, graph.int64("1", 1), graph.int64("2", 2)], "seq"
    )
    batch = graph.node("Squeeze", [batch_1d, graph.int64("axis", 0)], "batch_scalar")
    seq = graph.node("Squeeze", [seq_1d, graph.int64("axis", 0)], "seq_scalar")
    int_one = graph.constant("one", np.asarray(1, dtype=np.int64))
    int_zero = graph.constant("zero", np.asarray(0, dtype=np.int64))
    # lengths below 1 count as 1 and above the padded width as the width
    lengths = graph.node("Max", [input_lengths, int_one], "lengths_min")
    lengths = graph.node("Min", [lengths, seq], "lengths")
    rows = graph.node("Range", [int_zero, batch, int_one], "rows")
    steps = graph.node("Range", [int_zero, seq, int_one], "steps")
    steps_column = graph.node("Unsqueeze", [steps, graph.int64("axis", 1)], "steps_col")
    lengths_row = graph.node(
        "Unsqueeze", [lengths, graph.int64("axis", 0)], "lengths_row"
    )
    ids = graph.node("Transpose", [input_ids], "ids_time_major", perm=[1, 0])

    # With one layer and the last state pooled, a direction needs only its
    # state after each review's last token. The reviews are then aligned to
    # end at the last step, and the steps before a review read an all-zero
    # row added to the gate table. From a zero state that row gives the cell
    # input tanh(0) = 0, so the state stays exactly zero until the review
    # begins, and the Scan's final state is each review's own. The graph then
    # keeps no per-step outputs.
    final_only = (
        config.num_layers == 1
        and config.pooling == "last"
        and _folded_table_bytes(weights, "forward_layers.0", zero_rows=1)
        <= MAX_FOLDED_TABLE_BYTES
    )
    # Names of the values that only one of the two layouts computes.
    inside = last_flat = reverse_flat = aligned_inside = checked_ids = ""
    if final_only:
        # [sequence, batch]: whether step t is inside the aligned review,
        # which starts at step sequence - length
        start_row = graph.node("Sub", [seq, lengths_row], "start_row")
        aligned_inside = graph.node(
            "Not", [graph.node("Less", [steps_column, start_row], "before")], "aligned"
        )
        # A lookup of the vocabulary's own indices makes ids behave as with
        # the vocabulary's rows alone: an id out of range fails the run, even
        # in the padding, and a negative one counts from the end. So no id
        # reaches the zero row.
        vocabulary_size = weights["embedding.weight"].shape[0]
        checked_ids = graph.node(
            "Gather",
            [graph.constant("vocabulary_ids", np.arange(vocabulary_size)), ids],
            "checked_ids",
            axis=0,
        )
    else:
        # flat index of each review's last step in a [sequence * batch] layout
        last_step = graph.node("Sub", [lengths, int_one], "last_step")
        last_flat = graph.node(
            "Add",
            [graph.node("Mul", [last_step, batch], "last_offset"), rows],
            "last_flat",
        )
        # [sequence, batch]: whether a step is inside the review
        inside = graph.node("Less", [steps_column, lengths_row], "inside")
        if config.bidirectional:
            # step t of a review of length n reads step n - 1 - t; padding stays
            mirrored = graph.node(
                "Sub",
                [graph.node("Sub", [lengths_row, int_one], "last_row"), steps_column],
                "mirrored",
            )
            reverse_steps = graph.node(
                "Where", [inside, mirrored, steps_column], "reverse"
            )
            reverse_flat = graph.node(
                "Add",
                [graph.node("Mul", [reverse_steps, batch], "reverse_offset"), rows],
                "reverse_flat",
            )

    zeros_shape = graph.node(
        "Concat", [batch_1d, graph.int64("hidden", hidden)], "state_shape", axis=0
    )
    zero_state = graph.node(
        "ConstantOfShape",
        [zeros_shape],
        "zero_state",
        value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]),
    )

    def reorder_steps(values: str, width: int, stem: str) -> str:
        """Gather [sequence, batch, width] values by ``reverse_flat``."""
        flat = graph.node(
            "Reshape", [values, graph.int64("flat", -1, width)], stem + "_flat"
        )
        return graph.node("Gather", [flat, reverse_flat], stem, axis=0)

    def aligned_ids(reversed_: bool) -> str:
        """Return [sequence, batch] token ids of reviews that end at the last step.

        Steps before a review read the zero row after the vocabulary's rows.
        The backward direction reads each review from its last token, which is
        the padded ids reversed in time.
        """
        if reversed_:
            source = graph.node(
                "Slice",
                [
                    checked_ids,
                    graph.int64("start", -1),
                    graph.int64("end", np.iinfo(np.int64).min),
                    graph.int64("axis", 0),
                    graph.int64("step", -1),
                ],
                "ids_reversed",
            )
        else:
            # step t reads token t - (sequence - length)
            shifted = graph.node(
                "Max",
                [graph.node("Sub", [steps_column, start_row], "shifted"), int_zero],
                "shifted_min",
            )
            flat_index = graph.node(
                "Add",
                [graph.node("Mul", [shifted, batch], "shifted_offset"), rows],
                "aligned_flat",
            )
            source = graph.node(
                "Gather",
                [
                    graph.node(
                        "Reshape", [checked_ids, graph.int64("flat", -1)], "ids_flat"
                    ),
                    flat_index,
                ],
                "ids_aligned",
                axis=0,
            )
        zero_row = graph.constant("zero_row", np.asarray(vocabulary_size, np.int64))
        return graph.node("Where", [aligned_inside, source, zero_row], "steps_ids")

    def run_direction(steps: str, table: np.ndarray | None, lstm_weights: str) -> str:
        """Run one direction's Scan over token ids with a table, else over gates.

        Returns the ``[sequence, batch, hidden]`` outputs, or with
        ``final_only`` the ``[batch, hidden]`` state after the last step.
        """
        recurrent = weights[f"{lstm_weights}.weight_hh_l0"]
        body = _cell_body(
            recurrent.T.copy(), hidden, graph.name("cell"), table, final_only
        )
        outputs = graph.nodes_with_outputs(
            "Scan",
            [zero_state, zero_state, steps],
            ["h_last", "c_last"] + ([] if final_only else ["outputs"]),
            body=body,
            num_scan_inputs=1,
        )
        return outputs[0] if final_only else outputs[2]

    def input_gates(
        layer: int, lstm_weights: str, inputs: str, reversed_: bool
    ) -> tuple[str, np.ndarray | None]:
        """Return what a direction's Scan steps over, and its gate table if any.

        With a folded table the Scan takes ``[sequence, batch]`` token ids;
        otherwise it takes ``[sequence, batch, 4 * hidden]`` input gates.
        """
        if final_only:
            return aligned_ids(reversed_), _gate_table(weights, lstm_weights, 1)
        w_ih = weights[f"{lstm_weights}.weight_ih_l0"]
        bias = (
            weights[f"{lstm_weights}.bias_ih_l0"]
            + weights[f"{lstm_weights}.bias_hh_l0"]
        )
        if layer == 0:
            token_ids = inputs
            if reversed_:
                flat_ids = graph.node(
                    "Reshape", [inputs, graph.int64("flat", -1)], "ids_flat"
                )
                token_ids = graph.node(
                    "Gather", [flat_ids, reverse_flat], "ids_reversed", axis=0
                )
            embedding = weights["embedding.weight"]
            if _folded_table_bytes(weights, lstm_weights) <= MAX_FOLDED_TABLE_BYTES:
                return token_ids, _gate_table(weights, lstm_weights, 0)
            vectors = graph.node(
                "Gather",
                [graph.constant("embedding", embedding), token_ids],
                "vectors",
                axis=0,
            )
        else:
            vectors = inputs
            if reversed_:
                vectors = reorder_steps(inputs, w_ih.shape[1], "inputs_reversed")
        product = graph.node(
            "MatMul", [vectors, graph.constant("w_ih", w_ih.T.copy())], "input_product"
        )
        return graph.node("Add", [product, graph.constant("bias", bias)], "gates"), None

    # recur: outputs [sequence, batch, hidden] per direction, or with
    # final_only the [batch, hidden] final states
    layer_input = ids
    forward_outputs = backward_outputs = ""
    for layer in range(config.num_layers):
        forward_outputs = run_direction(
            *input_gates(layer, f"forward_layers.{layer}", layer_input, False),
            f"forward_layers.{layer}",
        )
        if not config.bidirectional:
            layer_input = forward_outputs
            continue
        # the backward direction's outputs, in its own reversed step order
        backward_outputs = run_direction(
            *input_gates(layer, f"backward_layers.{layer}", layer_input, True),
            f"backward_layers.{layer}",
        )
        if layer + 1 < config.num_layers or config.pooling != "last":
            layer_input = graph.node(
                "Concat",
                [
                    forward_outputs,
                    reorder_steps(backward_outputs, hidden, "backward_in_time"),
                ],
                "layer_output",
                axis=2,
            )

    # pool: [batch, output_dim]
    if config.pooling == "last":
        parts = [forward_outputs] + ([backward_outputs] if config.bidirectional else [])
        if final_only:
            # each direction's Scan returned its final states
            finals = parts
        else:
            finals = []
            for part in parts:
                flat = graph.node(
                    "Reshape", [part, graph.int64("flat", -1, hidden)], "outputs_flat"
                )
                finals.append(
                    graph.node("Gather", [flat, last_flat], "final_state", axis=0)
                )
        pooled = (
            finals[0]
            if len(finals) == 1
            else graph.node("Concat", finals, "pooled", axis=1)
        )
    else:
        outputs = layer_input
        mask = graph.node("Unsqueeze", [inside, graph.int64("axis", 2)], "mask")
        if config.pooling == "mean":
            masked = graph.node(
                "Mul",
                [
                    outputs,
                    graph.node("Cast", [mask], "mask_float", to=TensorProto.FLOAT),
                ],
                "masked",
            )
            summed = graph.node(
                "ReduceSum", [masked, graph.int64("axis", 0)], "summed", keepdims=0
            )
            count = graph.node(
                "Cast",
                [
                    graph.node(
                        "Unsqueeze", [lengths, graph.int64("axis", 1)], "count_column"
                    )
                ],
                "count",
                to=TensorProto.FLOAT,
            )
            pooled = graph.node("Div", [summed, count], "pooled")
        else:
            lowest = graph.constant(
                "minus_infinity", np.asarray(-np.inf, dtype=np.float32)
            )
            masked = graph.node("Where", [mask, outputs, lowest], "masked")
            pooled = graph.node("ReduceMax", [masked], "pooled", axes=[0], keepdims=0)

    # classify
    logits = graph.node(
        "Add",
        [
            graph.node(
                "MatMul",
                [
                    pooled,
                    graph.constant(
                        "classifier_weight", weights["classifier.weight"].T.copy()
                    ),
                ],
                "scores",
            ),
            graph.constant("classifier_bias", weights["classifier.bias"]),
        ],
        "logits",
    )
    nodes = graph.nodes + [
        helper.make_node("Softmax", [logits], [output], name="Softmax", axis=1)
    ]
    onnx_graph = helper.make_graph(
        nodes,
        "sentiment_lstm",
        [
            helper.make_tensor_value_info(
                input_ids, TensorProto.INT64, ["batch", "sequence"]
            ),
            helper.make_tensor_value_info(input_lengths, TensorProto.INT64, ["batch"]),
        ],
        [
            helper.make_tensor_value_info(
                output, TensorProto.FLOAT, ["batch", config.num_classes]
            )
        ],
        graph.initializers,
    )
    opset_imports = [helper.make_opsetid("", opset)]
    model = helper.make_model(onnx_graph, opset_imports=opset_imports)
    # make_model sets the newest IR version of the installed onnx package
    # (14 in onnx 1.23), which ONNX Runtime releases before 1.23 reject. The
    # graph needs only the lowest IR version of its opset (8 for opset 17).
    model.ir_version = helper.find_min_ir_version_for(opset_imports)
    return model


def _folded_table_bytes(
    weights: dict[str, np.ndarray], lstm_weights: str, zero_rows: int = 0
) -> int:
    """Return the size of a first-layer direction's gate table with ``zero_rows``."""
    rows = weights["embedding.weight"].shape[0] + zero_rows
    return rows * weights[f"{lstm_weights}.weight_ih_l0"].shape[0] * 4


def _gate_table(
    weights: dict[str, np.ndarray], lstm_weights: str, zero_rows: int
) -> np.ndarray:
    """Return a first-layer direction's input gates of every token id.

    Row ``i`` is ``W_ih e_i + b_ih + b_hh`` for the embedding ``e_i``,
    computed in float64 with the biases summed in float32. ``zero_rows``
    rows of zeros follow the vocabulary's rows.
    """
    w_ih = weights[f"{lstm_weights}.weight_ih_l0"]
    bias = weights[f"{lstm_weights}.bias_ih_l0"] + weights[f"{lstm_weights}.bias_hh_l0"]
    embedding = weights["embedding.weight"].astype(np.float64)
    table = embedding @ w_ih.T.astype(np.float64) + bias
    zeros = np.zeros((zero_rows, table.shape[1]))
    return np.concatenate([table, zeros]).astype(np.float32)


def _cell_body(
    recurrent_t: np.ndarray,
    hidden: int,
    name: str,
    table: np.ndarray | None,
    final_only: bool = False,
) -> onnx.GraphProto:
    """Build the Scan body of one LSTM step, from h, c and the step to h, c, h.

    ``recurrent_t`` is the transposed ``weight_hh`` of shape
    ``[hidden, 4 * hidden]``, gates in PyTorch's order: input, forget, cell,
    output. With a gate ``table`` the step is a ``[batch]`` vector of token
    ids whose rows are the input gates; without one it is the
    ``[batch, 4 * hidden]`` input gates. With ``final_only`` the body returns
    only h and c, and the Scan has no per-step output.
    """
    initializers = [
        numpy_helper.from_array(recurrent_t.astype(np.float32), "recurrent_t")
    ]
    nodes = []
    if table is None:
        step = _float_matrix("step_gates", 4 * hidden)
    else:
        step = helper.make_tensor_value_info("step_ids", TensorProto.INT64, ["batch"])
        initializers.append(numpy_helper.from_array(table, "gate_table"))
        nodes.append(
            helper.make_node(
                "Gather", ["gate_table", "step_ids"], ["step_gates"], axis=0
            )
        )
    nodes += [
        helper.make_node("MatMul", ["h", "recurrent_t"], ["recurrent"]),
        helper.make_node("Add", ["recurrent", "step_gates"], ["gates"]),
        helper.make_node("Split", ["gates"], ["i_in", "f_in", "g_in", "o_in"], axis=1),
        helper.make_node("Sigmoid", ["i_in"], ["i"]),
        helper.make_node("Sigmoid", ["f_in"], ["f"]),
        helper.make_node("Tanh", ["g_in"], ["g"]),
        helper.make_node("Sigmoid", ["o_in"], ["o"]),
        helper.make_node("Mul", ["f", "c"], ["kept"]),
        helper.make_node("Mul", ["i", "g"], ["added"]),
        helper.make_node("Add", ["kept", "added"], ["c_next"]),
        helper.make_node("Tanh", ["c_next"], ["c_squashed"]),
        helper.make_node("Mul", ["o", "c_squashed"], ["h_next"]),
    ]
    outputs = [_float_matrix("h_next", hidden), _float_matrix("c_next", hidden)]
    if not final_only:
        nodes.append(helper.make_node("Identity", ["h_next"], ["output"]))
        outputs.append(_float_matrix("output", hidden))
    return helper.make_graph(
        nodes,
        name,
        [_float_matrix("h", hidden), _float_matrix("c", hidden), step],
        outputs,
        initializers,
    )


def _float_matrix(name: str, width: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", width])
