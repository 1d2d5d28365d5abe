"""Hypothesis strategies for `Case`s, restricted to the features a variant declares.

Small composable pieces: one strategy per concern (geometry, batch-norm options, numerics), joined
by `cases`. Sizes stay small so one example runs in milliseconds, and every integer shrinks toward
the simplest legal value, so a failure is reported on a minimal configuration.
"""

from __future__ import annotations

import math

from hypothesis import assume
from hypothesis import strategies as st

from verify.case import GRAD_LAYOUTS, LAYOUTS, Case
from verify.dtypes import BASE_DTYPES, HALF_DTYPES
from verify.strategies import sizes
from verify.strategies.shared import BOOLEANS, choice, ints, shared
from verify.values import VALUE_FAMILIES

EPS_VALUES = (1e-3, 1e-5, 1e-1)

# Bound on N*C_in*H*W so a case stays in the millisecond range even in the oracle's perturbations.
MAX_INPUT_ELEMENTS = 2048


# Training twice as often as eval: it is where the statistics are computed.
_TRAINING = st.sampled_from((True, False, True))


@shared
@st.composite
def _pair(draw, values, enabled: bool, default: int):
    if not enabled:
        return (default, default)
    first = draw(values)
    square = draw(BOOLEANS)
    return (first, first) if square else (first, draw(values))


@shared
@st.composite
def geometry(
    draw,
    supports: frozenset,
    *,
    tier: str = "small",
    min_values_per_channel: int = 2,
    max_input_elements: int = MAX_INPUT_ELEMENTS,
):
    """Batch, channels, spatial size and conv parameters in size tier `tier`
    (`verify.strategies.sizes`). Returns a dict of Case fields.

    The output size is drawn first and the input size derived from it, so every geometry is legal
    and a tier's values per channel come out exactly as drawn."""
    if tier == sizes.INT32_TIER:
        return draw(sizes.int32_geometry())
    per_group = sizes.MAX_PER_GROUP[tier]
    if sizes.channel_boundaries(tier):
        boundaries = sizes.channel_boundaries(tier)
        out_channels = draw(sizes.channel_count(boundaries, past=tier in sizes.NETWORK_TIERS))
        group_choices = [g for g in (1, 2, 3, 4) if out_channels % g == 0]
        groups = draw(choice(tuple(group_choices))) if "groups" in supports else 1
        out_per_group = out_channels // groups
    else:
        groups = draw(ints(1, 3 if per_group == 3 else 2)) if "groups" in supports else 1
        out_per_group = draw(ints(1, per_group))
    in_per_group = draw(ints(1, per_group))
    kernel = draw(_pair(ints(1, 3), True, 1))
    stride = draw(_pair(ints(1, 3 if tier == "small" else 2), "stride" in supports, 1))
    dilation = draw(_pair(ints(1, 2), "dilation" in supports, 1))
    # Dilation does nothing along an axis whose kernel is 1 wide, and there it only reaches a
    # PyTorch 2.13 CPU convolution segfault (width 1, 1-wide kernel, stride 2, padding 1,
    # dilation 2, in float16, and bfloat16/float32 channels_last): keep such axes at 1.
    dilation = tuple(d if k > 1 else 1 for d, k in zip(dilation, kernel, strict=True))
    padding = draw(_pair(ints(0, 2), "padding" in supports, 0))
    if tier == "grid":
        batch, out_hw = draw(sizes.grid_layout())
    elif tier in sizes.REDUCTION_BOUNDARIES:
        batch, out_hw = draw(sizes.reduction_layout(tier))
    else:
        limit = {"small": 4, "channels": 2}.get(tier, 6)
        out_hw = (draw(ints(1, limit)), draw(ints(1, limit)))
        batch = draw(ints(1, sizes.MAX_BATCH[tier]))
    if tier in sizes.NETWORK_TIERS and tier != "channels":
        # Keep the input about as large as the output (the element bound): no stride or
        # dilation, and a 1-wide kernel along an axis of fewer than 8 outputs.
        stride = dilation = (1, 1)
        kernel = tuple(k if o >= 8 else 1 for k, o in zip(kernel, out_hw, strict=True))
    in_hw, legal_padding = [], []
    for o, k, s, d, p in zip(out_hw, kernel, stride, dilation, padding, strict=True):
        # The input that gives `o` outputs: (o - 1) s + d (k - 1) + 1 - 2 p, plus up to s - 1
        # columns the last stride leaves unread. Padding is capped so it stays at least 1 wide.
        unpadded = (o - 1) * s + d * (k - 1) + 1 + draw(ints(0, s - 1))
        p = min(p, (unpadded - 1) // 2)
        legal_padding.append(p)
        in_hw.append(unpadded - 2 * p)
    fields = dict(
        batch=batch,
        in_channels=in_per_group * groups,
        out_channels=out_per_group * groups,
        height=in_hw[0],
        width=in_hw[1],
        kernel=kernel,
        stride=stride,
        padding=tuple(legal_padding),
        dilation=dilation,
        groups=groups,
    )
    probe = Case(**fields)
    # Training needs two values per channel; raise the batch rather than reject the example.
    while probe.values_per_channel < min_values_per_channel:
        probe = probe.replace(batch=probe.batch + 1)
    if tier == "small":
        assume(probe.batch * probe.in_channels * probe.height * probe.width <= max_input_elements)
    if tier in sizes.NETWORK_TIERS:
        if _largest_tensor(probe) > sizes.MAX_NETWORK_ELEMENTS and probe.groups > 1:
            # Two groups of a long reduction pass the bound: one group instead.
            probe = probe.replace(
                groups=1,
                in_channels=probe.in_channels // probe.groups,
                out_channels=probe.out_channels // probe.groups,
            )
        assume(_largest_tensor(probe) <= sizes.MAX_NETWORK_ELEMENTS)
        fields.update(
            groups=probe.groups, in_channels=probe.in_channels, out_channels=probe.out_channels
        )
    return dict(fields, batch=probe.batch)


@st.composite
def _maybe_depthwise(draw, geo: dict, supports: frozenset, tier: str):
    """`geo` made depthwise (groups == in == out channels, at one of the tier's widths), where
    `groups` is declared and the case stays within its tier's element bound; shrinks to `geo`.
    Half the examples of the network tiers, a quarter of the wide tier's (three in four keep its
    channel counts with their groups)."""
    widths = sizes.depthwise_widths(tier) if "groups" in supports else ()
    if not widths:
        return geo
    if tier in sizes.NETWORK_TIERS:
        chosen = draw(BOOLEANS)
    else:
        chosen = draw(ints(0, 3)) == 3
    if not chosen:
        return geo
    width = draw(choice(widths))
    depthwise = dict(geo, groups=width, in_channels=width, out_channels=width)
    fits = tier not in sizes.NETWORK_TIERS or (
        _largest_tensor(Case(**depthwise)) <= sizes.MAX_NETWORK_ELEMENTS
    )
    return depthwise if fits else geo


def _largest_tensor(case: Case) -> int:
    """Values in the largest of x, the weight and the output."""
    return max(math.prod(case.x_shape), math.prod(case.weight_shape), math.prod(case.out_shape))


@shared
def momenta():
    """The usual 0.1, both extremes, and anything between."""
    return st.sampled_from([0.1, 0.0, 1.0]) | st.floats(0.0, 1.0)


@shared
@st.composite
def batch_norm_options(draw, supports: frozenset, *, training=None):
    """training, running stats, momentum, affine, eps. Returns a dict of Case fields."""
    has_stats = "running_stats" in supports
    if training is None:
        training = draw(_TRAINING) if has_stats else True
    running_stats = True if not training else (draw(BOOLEANS) if has_stats else False)
    momentum = draw(momenta()) if running_stats and training else 0.1
    return dict(
        training=training,
        running_stats=running_stats,
        momentum=momentum,
        affine="affine" in supports and draw(BOOLEANS),
        bias="bias" in supports and draw(BOOLEANS),
        eps=draw(choice(EPS_VALUES)),
    )


def eps_values(dtype: str) -> tuple:
    """1e-5 is below float16's normal range, and 1/eps-sized tutorial-form gradients of
    zero-variance channels then overflow it: half types draw eps >= 1e-3."""
    return EPS_VALUES if dtype not in HALF_DTYPES else tuple(e for e in EPS_VALUES if e >= 1e-3)


def dtypes_for(supports: frozenset) -> tuple:
    """float32/float64 always; half types only where declared."""
    return BASE_DTYPES + tuple(d for d in HALF_DTYPES if d in supports)


def value_families(values) -> tuple:
    """The families to sample from, "offset" twice: a large offset with a small spread is where
    the commonest real precision bug (a one-pass E[y^2] - E[y]^2 variance) shows, so it comes up
    in a quarter of the examples."""
    values = tuple(values)
    return values + (("offset",) if "offset" in values and len(values) > 1 else ())


@shared
@st.composite
def cases(
    draw,
    supports: frozenset,
    form: str,
    *,
    tier: str = "small",
    dtypes=None,
    layouts=LAYOUTS,
    values=VALUE_FAMILIES,
    training=None,
    device: str = "cpu",
    max_input_elements: int = MAX_INPUT_ELEMENTS,
):
    """A complete `Case` in size tier `tier` using only features in `supports` (plus always-on
    dtypes and layouts)."""
    bn = draw(batch_norm_options(supports, training=training))
    geo = draw(
        geometry(
            supports,
            tier=tier,
            min_values_per_channel=2 if bn["training"] else 1,
            max_input_elements=max_input_elements,
        )
    )
    dtype = draw(choice(tuple(dtypes or dtypes_for(supports))))
    if bn["eps"] not in eps_values(dtype):
        bn["eps"] = draw(choice(eps_values(dtype)))
    # Mixed precision (torch.autocast's layout): half activations, float32 batch-norm parameters.
    mixed = dtype in HALF_DTYPES and "autocast" in supports and draw(BOOLEANS)
    layout = draw(choice(_layouts_of(tier, tuple(layouts))))
    family = draw(choice(value_families(values)))
    seed = draw(ints(0, 2**32 - 1))
    geo = draw(_maybe_depthwise(geo, supports, tier))
    return Case(
        **geo,
        **bn,
        form=form,
        dtype=dtype,
        layout=layout,
        values=family,
        seed=seed,
        device=device,
        param_dtype="float32" if mixed else "",
    )


def _layouts_of(tier: str, layouts: tuple) -> tuple:
    """The crowd tier draws channels_last three times in five, and shrinks to it: many channels
    and many values together in channels_last is where NVIDIA/apex#1768's kernel broke."""
    if tier != "crowd" or "channels_last" not in layouts:
        return layouts
    return ("channels_last",) * 3 + tuple(v for v in layouts if v != "channels_last")


# Who requires grad in real training: everything; a network's first layer (not x); a frozen
# backbone (not the conv weight and bias); frozen batch-norm parameters; fine-tuning the batch
# norm only; the input alone (saliency maps, adversarial examples).
REQUIRES_GRAD_SUBSETS = (
    ("x", "weight", "bias", "bn_weight", "bn_bias"),
    ("weight", "bias", "bn_weight", "bn_bias"),
    ("x", "bn_weight", "bn_bias"),
    ("x", "weight", "bias"),
    ("bn_weight", "bn_bias"),
    ("x",),
    ("weight",),
)


@st.composite
def calling_contexts(draw, case: Case):
    """`case` with a drawn subset of inputs requiring grad and a drawn grad_out layout. Names
    of inputs the case does not have are dropped; a subset left empty falls back to x."""
    present = (
        {"x", "weight"}
        | ({"bias"} if case.bias else set())
        | ({"bn_weight", "bn_bias"} if case.affine else set())
    )
    subset = tuple(n for n in draw(choice(REQUIRES_GRAD_SUBSETS)) if n in present)
    return case.replace(requires_grad=subset or ("x",), grad_layout=draw(choice(GRAD_LAYOUTS)))
