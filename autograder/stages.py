"""Locate the five pool stages of VGG11 in a trace: where "the feature map after pool k" is.

With the expected eight convolutions, pool k belongs to the stretch between the last convolution
of block k and the first convolution of block k+1 (for pool 5, the first Linear layer). The feature
map after pool k is the output of the last max- or average-pool in that stretch. Adaptive pools do
not count: ``AdaptiveAvgPool2d((7, 7))`` can make a missing pool's shape look right, and global
pooling before the classifier is a classifier matter. When the block has no such pool, the stage
shows the unpooled feature map that reaches the first adaptive pool or leaves the block. With another number of
convolutions, blocks cannot be told apart, so the k-th pooling op stands for pool k.
"""

from dataclasses import dataclass

from . import reference

_SPATIAL_POOLS = {"maxpool", "avgpool", "adaptive_avgpool", "adaptive_maxpool"}


@dataclass
class Stage:
    """Pool ``block`` (1-based): the op whose output is the feature map after it, if any."""

    block: int
    op_index: int | None
    shape: tuple | None
    pooled: bool


def _is_pool(op):
    return op.kind in _SPATIAL_POOLS and op.in_shape != op.out_shape


def _stage_in_range(block, ops, start, stop):
    pools = [i for i in range(start, stop) if _is_pool(ops[i]) and not ops[i].kind.startswith("adaptive")]
    if pools:
        return Stage(block, pools[-1], ops[pools[-1]].out_shape, True)
    adaptive = [i for i in range(start, stop) if ops[i].kind.startswith("adaptive")]
    stop = adaptive[0] if adaptive else stop
    four_d = [i for i in range(start, stop) if ops[i].out_shape is not None and len(ops[i].out_shape) == 4]
    if four_d:
        return Stage(block, four_d[-1], ops[four_d[-1]].out_shape, False)
    if adaptive:
        return Stage(block, None, ops[adaptive[0]].in_shape, False)
    return Stage(block, None, None, False)


def pool_stages(ops):
    """Return one ``Stage`` per expected pool, in order."""
    convs = [i for i, op in enumerate(ops) if op.kind == "conv"]
    ends = reference.block_ends()
    if len(convs) != len(reference.conv_names()):
        pools = [i for i, op in enumerate(ops) if _is_pool(op) and not op.kind.startswith("adaptive")]
        return [Stage(k + 1, pools[k], ops[pools[k]].out_shape, True) if k < len(pools)
                else Stage(k + 1, None, None, False) for k in range(len(ends))]

    linears = [i for i, op in enumerate(ops) if op.kind == "linear"]
    stages = []
    for block, last_conv in enumerate(ends, start=1):
        start = convs[last_conv] + 1
        if last_conv + 1 < len(convs):
            stop = convs[last_conv + 1]
        else:
            stop = next((i for i in linears if i > start), len(ops))
        stages.append(_stage_in_range(block, ops, start, stop))
    return stages
