"""An exported program as plain JSON, read back without running any code that the file could carry.

The student's kernel hands its model to the grader as a ``torch.export`` program (see ``handin``), and
a separate process judges it (see ``judge``). ``torch.export.load`` cannot read such a file safely:
it falls back to unpickling weights and custom objects, it parses symbolic shapes with
``sympy.sympify``, and a node may name any function under ``torch``. So the program travels as the
JSON graph that ``torch.export`` serializes, without weights, and ``load_program`` accepts it only when

- every node calls an ``aten`` operator (or ``operator.getitem``), and none that reads files or prints;
- every shape is a plain integer (no symbolic expressions) and there are no range constraints;
- the inputs are the user input, parameters, buffers and tensor constants, and no custom objects.

Parameters and buffers come back on the ``meta`` device with their shapes, dtypes and
``requires_grad``, because the checks give the graph reference weights of their own. Tensor
constants, which the graph may use, travel as lists of numbers.

The shapes written in the document are claims. ``propagate_shapes`` runs the graph on ``meta``
tensors for an input that the judge chooses and replaces every node's shape with the computed one,
within budgets of operations and memory, so that the checks read what the graph computes.
"""

import json
import re

import torch
from torch._export.serde.serialize import SerializedArtifact, deserialize, serialize
from torch.export.graph_signature import InputKind
from torch.utils.flop_counter import FlopCounterMode

# Largest tensor constant that travels as a list of numbers, all constants of a program together,
# and the largest program document.
MAX_CONSTANT_ELEMENTS = 100_000
MAX_TOTAL_CONSTANT_ELEMENTS = 200_000
MAX_DOCUMENT_BYTES = 20_000_000

# Budgets of one forward pass of a handed-in program. VGG11 takes about 15 GFLOP per 224x224 image
# (FlopCounterMode counts a multiply-add as 2) and about 60 call nodes in train mode.
MAX_NODES = 1_000
MAX_FLOP_PER_SAMPLE = 50e9
MAX_OUTPUT_BYTES = 2 * 2**30

_ATEN_TARGET = re.compile(r"^torch\.ops\.aten\.(?P<packet>[A-Za-z0-9_]+)\.[A-Za-z0-9_]+$")
_OTHER_TARGETS = {"_operator.getitem"}
# aten operators with effects outside their tensors.
_DENIED_PACKETS = {"from_file", "_print"}
# Argument forms that deserialization turns into code: sympy expressions, custom objects,
# nested graphs and operator references.
_DENIED_ARGUMENTS = {
    "as_expr", "as_sym_int", "as_sym_ints", "as_sym_bool", "as_sym_bools", "as_sym_float",
    "as_sym_floats", "as_custom_obj", "as_graph", "as_operator",
}
_INPUT_KINDS = {"user_input", "parameter", "buffer", "tensor_constant"}

# dtype names that a tensor constant may have, as torch.dtype -> name.
_DTYPES = {
    torch.float32: "float32", torch.float64: "float64", torch.float16: "float16", torch.bfloat16: "bfloat16",
    torch.int64: "int64", torch.int32: "int32", torch.int16: "int16", torch.int8: "int8",
    torch.uint8: "uint8", torch.bool: "bool",
}
_DTYPE_BY_NAME = {name: dtype for dtype, name in _DTYPES.items()}


class UnsafeProgram(ValueError):
    """The program document is malformed or contains something that ``load_program`` does not accept."""


def dump_program(program):
    """Return a JSON-ready dict of ``program``: its serialized graph and its tensor constants."""
    document = json.loads(serialize(program).exported_program)
    constants = {name: _dump_tensor(name, value) for name, value in program.constants.items()}
    return {"graph": document, "constants": constants}


def _dump_tensor(name, tensor):
    if not isinstance(tensor, torch.Tensor) or tensor.dtype not in _DTYPES:
        raise UnsafeProgram(f"constant {name}: only tensors of plain dtypes can be handed in")
    if tensor.numel() > MAX_CONSTANT_ELEMENTS:
        raise UnsafeProgram(f"constant {name} has {tensor.numel()} elements (limit {MAX_CONSTANT_ELEMENTS})")
    if tensor.is_meta:
        values = None
    else:
        values = tensor.detach().cpu().reshape(-1).tolist()
    return {"dtype": _DTYPES[tensor.dtype], "shape": list(tensor.shape), "values": values}


def load_program(document):
    """Check ``document`` (from ``dump_program``) and return the ``ExportedProgram`` it describes.

    Raises ``UnsafeProgram`` for anything outside the accepted form; nothing in the document runs.
    """
    if not isinstance(document, dict) or not isinstance(document.get("graph"), dict):
        raise UnsafeProgram("not a program document")
    graph_document = json.loads(json.dumps(document["graph"]))  # a private copy to clean
    if len(json.dumps(graph_document)) > MAX_DOCUMENT_BYTES:
        raise UnsafeProgram("program document too large")
    _check_graph(graph_document)

    graph = graph_document["graph_module"]["graph"]
    for node in graph["nodes"]:
        node["metadata"] = {}  # stack traces and module paths: not needed, and parsed on load
    graph_document["graph_module"]["metadata"] = {}
    graph_document["guards_code"] = []

    state_dict, constant_names = _meta_state(graph_document)
    constants = _load_constants(document.get("constants") or {}, constant_names)
    artifact = SerializedArtifact(json.dumps(graph_document).encode(), state_dict, constants, b"")
    try:
        return deserialize(artifact)
    except Exception as error:  # noqa: BLE001 - any malformed document is reported the same way
        raise UnsafeProgram(f"cannot rebuild the program: {type(error).__name__}: {error}") from error


def _check_graph(graph_document):
    try:
        graph = graph_document["graph_module"]["graph"]
        nodes = graph["nodes"]
        specs = graph_document["graph_module"]["signature"]["input_specs"]
    except (KeyError, TypeError) as error:
        raise UnsafeProgram(f"missing field {error}") from error
    if graph_document.get("range_constraints"):
        raise UnsafeProgram("symbolic shapes are not accepted")
    for node in nodes:
        target = node.get("target") if isinstance(node, dict) else None
        match = _ATEN_TARGET.match(target or "")
        if target in _OTHER_TARGETS:
            continue
        if not match or match.group("packet") in _DENIED_PACKETS or "file" in match.group("packet"):
            raise UnsafeProgram(f"operator not accepted: {str(target)[:80]}")
    for spec in specs:
        kinds = set(spec) if isinstance(spec, dict) else set()
        if len(kinds) != 1 or not kinds <= _INPUT_KINDS:
            raise UnsafeProgram(f"input not accepted: {sorted(kinds)}")
    denied = _find_keys(graph_document["graph_module"], _DENIED_ARGUMENTS)
    if denied:
        raise UnsafeProgram(f"argument form not accepted: {denied}")


def _find_keys(value, keys):
    """Return the first key of ``keys`` found anywhere in nested dicts and lists, else None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, inner in item.items():
                if key in keys:
                    return key
                stack.append(inner)
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _meta_state(graph_document):
    """Return (state_dict of meta tensors, names of tensor constants) from the graph's signature."""
    graph = graph_document["graph_module"]["graph"]
    tensor_values = graph.get("tensor_values", {})
    state_dict, constant_names = {}, {}
    for spec in graph_document["graph_module"]["signature"]["input_specs"]:
        (kind, body), = spec.items()
        if kind == "user_input":
            continue
        name = body["arg"]["name"]
        meta = tensor_values.get(name)
        if not isinstance(meta, dict):
            raise UnsafeProgram(f"no tensor description for input {name}")
        if kind == "tensor_constant":
            constant_names[body["tensor_constant_name"]] = meta
            continue
        if kind == "buffer" and not body.get("persistent", True):
            constant_names[body["buffer_name"]] = meta  # torch.export keeps these with the constants
            continue
        tensor = _meta_tensor(meta)
        fqn = body["parameter_name"] if kind == "parameter" else body["buffer_name"]
        if kind == "parameter":
            tensor = torch.nn.Parameter(tensor, requires_grad=bool(meta.get("requires_grad")))
        state_dict[fqn] = tensor
    return state_dict, constant_names


def _meta_tensor(meta):
    try:
        sizes = [int(size["as_int"]) for size in meta["sizes"]]
        dtype = _serialized_dtype(meta["dtype"])
    except (KeyError, TypeError, ValueError) as error:
        raise UnsafeProgram(f"tensor description not accepted: {error}") from error
    return torch.empty(sizes, dtype=dtype, device="meta")


def _serialized_dtype(code):
    from torch._export.serde.serialize import _SERIALIZE_TO_TORCH_DTYPE  # noqa: PLC0415

    for serialized, dtype in _SERIALIZE_TO_TORCH_DTYPE.items():
        if int(serialized) == int(code):
            return dtype
    raise ValueError(f"dtype {code}")


def _load_constants(documents, names):
    constants = {}
    total = sum(_declared_elements(documents.get(name)) for name in names)
    if total > MAX_TOTAL_CONSTANT_ELEMENTS:
        raise UnsafeProgram(f"constants have {total} elements together (limit {MAX_TOTAL_CONSTANT_ELEMENTS})")
    for name in names:
        item = documents.get(name)
        if not isinstance(item, dict) or item.get("dtype") not in _DTYPE_BY_NAME:
            raise UnsafeProgram(f"constant {name} missing or of another dtype")
        shape = [int(size) for size in item.get("shape", [])]
        dtype = _DTYPE_BY_NAME[item["dtype"]]
        if item.get("values") is None:
            constants[name] = torch.empty(shape, dtype=dtype, device="meta")
            continue
        tensor = torch.tensor(item["values"], dtype=dtype)
        if tensor.numel() > MAX_CONSTANT_ELEMENTS or tensor.numel() != torch.Size(shape).numel():
            raise UnsafeProgram(f"constant {name}: values do not match the shape {shape}")
        constants[name] = tensor.reshape(shape)
    return constants


def _declared_elements(item):
    """Return the number of elements of a constant's document, from its shape."""
    if not isinstance(item, dict) or not isinstance(item.get("shape"), list):
        return 0
    try:
        return torch.Size(int(size) for size in item["shape"]).numel()
    except (TypeError, ValueError) as error:
        raise UnsafeProgram(f"invalid constant shape: {item['shape']!r:.80}") from error


def propagate_shapes(program, input_shape):
    """Run ``program`` on ``meta`` tensors for a float32 input of ``input_shape`` and store each node's
    computed value in ``node.meta["val"]``, in place of the shapes that the document claims.

    Raises ``UnsafeProgram`` when the program takes another input, fails on that input, or exceeds
    ``MAX_NODES``, ``MAX_FLOP_PER_SAMPLE`` per sample or ``MAX_OUTPUT_BYTES`` of node outputs.
    """
    nodes = list(program.graph.nodes)
    if sum(node.op == "call_function" for node in nodes) > MAX_NODES:
        raise UnsafeProgram(f"more than {MAX_NODES} operations")
    user_inputs = [spec for spec in program.graph_signature.input_specs if spec.kind == InputKind.USER_INPUT]
    if len(user_inputs) != 1:
        raise UnsafeProgram(f"{len(user_inputs)} user inputs, expected 1")

    args = []
    for spec in program.graph_signature.input_specs:
        if spec.kind == InputKind.USER_INPUT:
            args.append(torch.empty(input_shape, device="meta"))
        elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER) and spec.target in program.state_dict:
            args.append(torch.empty_like(program.state_dict[spec.target], device="meta"))
        else:
            args.append(torch.empty_like(program.constants[spec.target], device="meta"))

    interpreter = _MetaInterpreter(program.graph_module, garbage_collect_values=False)
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            interpreter.run(*args)
    except Exception as error:  # noqa: BLE001 - any failure of the graph on its input is reported the same way
        raise UnsafeProgram(f"the program failed on an input of shape {tuple(input_shape)}: "
                            f"{type(error).__name__}: {str(error)[:200]}") from error

    flop_limit = MAX_FLOP_PER_SAMPLE * input_shape[0]
    if counter.get_total_flops() > flop_limit:
        raise UnsafeProgram(f"{counter.get_total_flops():.3g} floating-point operations (limit {flop_limit:.3g})")
    output_bytes = 0
    for node, value in interpreter.env.items():
        node.meta["val"] = value
        for tensor in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(tensor, torch.Tensor):
                output_bytes += tensor.numel() * tensor.element_size()
    if output_bytes > MAX_OUTPUT_BYTES:
        raise UnsafeProgram(f"node outputs take {output_bytes} bytes (limit {MAX_OUTPUT_BYTES})")


class _MetaInterpreter(torch.fx.Interpreter):
    """Run a graph with every ``device`` argument set to ``meta``, so that it creates no real tensors."""

    def call_function(self, target, args, kwargs):
        if "device" in kwargs:
            kwargs = {**kwargs, "device": torch.device("meta")}
        return super().call_function(target, args, kwargs)
