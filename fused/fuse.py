"""Turn a model's Conv2d -> BatchNorm2d pairs into memory-saving `FusedConvBN2d` layers.

`fuse_conv_bn(model)` returns a **new** model (a deep copy; the argument is left untouched, pass
`inplace=True` to modify it instead) in which every legal pair is replaced: the `Conv2d` becomes a
`FusedConvBN2d(form="standard")` holding the conv's and the batch norm's parameters and buffers,
and the `BatchNorm2d` becomes an `nn.Identity`, so the model's class, methods, attributes and
module paths are kept and its `forward` runs unchanged. The fused model computes the same numbers
as the original in training and in eval mode.

How pairs are found:

1. `torch.fx` symbolic tracing of the module: a `Conv2d` call whose only user is a `BatchNorm2d`
   call taking it as its sole input is a pair. A conv whose output is used anywhere else, or a
   module called more than once, is left alone. (A module also registered under a second name
   stays there unchanged, sharing its parameters and buffers with the fused layer.)
2. When a module cannot be traced (data-dependent control flow, ...), its children are handled
   one by one: in a plain `nn.Sequential`, a `Conv2d` child immediately followed by a
   `BatchNorm2d` child is a pair; every child is then fused recursively in the same way.

A pair is skipped when fusion would change the numbers or is not expressible: a subclass of
Conv2d/BatchNorm2d (QAT, lazy modules not yet initialised, ...), `padding_mode != "zeros"`,
asymmetric `padding="same"`, `num_features != out_channels`, mismatched dtypes or devices, or
forward hooks on either module.

State dicts: the fused model records `_convbn_key_map` (unfused key -> fused key, e.g.
`"layer1.bn1.running_mean" -> "layer1.conv1.running_mean"`); `load_unfused_state_dict(model, sd)`
loads a state dict saved from the unfused model, and `unfused_state_dict(model)` goes the other way.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
import torch.fx
from torch import nn

from fused.layer import FusedConvBN2d

__all__ = ["fuse_conv_bn", "load_unfused_state_dict", "unfused_state_dict", "KEY_MAP_ATTR"]

KEY_MAP_ATTR = "_convbn_key_map"


def fuse_conv_bn(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Replace each Conv2d immediately followed by BatchNorm2d with a `FusedConvBN2d`.

    Returns a fused deep copy of `model` (or `model` itself, modified, with `inplace=True`). The
    fused layers take over the very Parameter and buffer objects of the (copied) pair, including
    `requires_grad`, the batch norm's `eps`, `momentum` (None too), `affine`,
    `track_running_stats` and training flag. See the module docstring for the rules.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"fuse_conv_bn expects an nn.Module, got {type(model).__name__}")
    if not inplace:
        model = copy.deepcopy(model)
    before = _keys_by_tensor(model)
    _fuse_module(model)
    after = _keys_by_tensor(model)

    key_map = {}  # keys of the model as given -> keys now
    for ident, keys in before.items():
        targets = after.get(ident, [])
        for key in keys:
            if targets and key not in targets:
                key_map[key] = targets[0]
    previous = getattr(model, KEY_MAP_ATTR, None)
    if previous:  # fused before: compose, so the keys of the original model still map
        key_map = {**key_map, **{orig: key_map.get(mid, mid) for orig, mid in previous.items()}}
    setattr(model, KEY_MAP_ATTR, key_map)
    return model


def load_unfused_state_dict(model: nn.Module, state_dict, strict: bool = True):
    """Load into a fused model a state dict saved from the model before `fuse_conv_bn`.

    Keys are renamed with the model's `_convbn_key_map`; `strict` and the result are those of
    `nn.Module.load_state_dict`.
    """
    key_map = getattr(model, KEY_MAP_ATTR, None)
    if key_map is None:
        raise ValueError("model has no conv-bn key map: it was not produced by fuse_conv_bn")
    translated = OrderedDict((key_map.get(k, k), v) for k, v in state_dict.items())
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:
        translated._metadata = metadata
    return model.load_state_dict(translated, strict=strict)


def unfused_state_dict(model: nn.Module):
    """The fused model's state dict under the keys the unfused model used."""
    key_map = getattr(model, KEY_MAP_ATTR, None)
    if key_map is None:
        raise ValueError("model has no conv-bn key map: it was not produced by fuse_conv_bn")
    inverse = {}
    for old, new in key_map.items():
        inverse.setdefault(new, old)
    return OrderedDict((inverse.get(k, k), v) for k, v in model.state_dict().items())


# --- finding pairs --------------------------------------------------------------------------


def _keys_by_tensor(model):
    keys = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        keys.setdefault(id(tensor), []).append(key)
    return keys


def _fuse_module(module: nn.Module) -> None:
    if isinstance(module, (FusedConvBN2d, nn.Conv2d, nn.BatchNorm2d, nn.Identity)):
        return
    try:
        graph = torch.fx.Tracer().trace(module)
    except Exception:  # noqa: BLE001 - any tracing failure means: fall back to the children
        graph = None
    if graph is not None:
        for conv_name, bn_name in _pairs_from_graph(module, graph):
            _replace_pair(module, conv_name, bn_name)
        return
    if type(module) is nn.Sequential:
        children = list(module.named_children())
        i = 0
        while i + 1 < len(children):
            (conv_name, conv), (bn_name, bn) = children[i], children[i + 1]
            if _fusable(conv, bn):
                _replace_pair(module, conv_name, bn_name)
                i += 2
            else:
                i += 1
    for _, child in list(module.named_children()):
        _fuse_module(child)


def _pairs_from_graph(root, graph):
    modules = dict(root.named_modules())
    calls = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls.setdefault(id(modules.get(node.target)), []).append(node)
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        conv = modules.get(node.target)
        if not isinstance(conv, nn.Conv2d) or len(node.users) != 1:
            continue
        (user,) = node.users
        if user.op != "call_module" or user.args != (node,) or user.kwargs:
            continue
        bn = modules.get(user.target)
        if not _fusable(conv, bn):
            continue
        if len(calls[id(conv)]) != 1 or len(calls[id(bn)]) != 1:
            continue  # a module called twice would be fused for one call and not the other
        pairs.append((node.target, user.target))
    return pairs


def _conv_padding(conv):
    """The conv's padding as a pair of ints, or None when it has no symmetric equivalent."""
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return (0, 0)
        total = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size, strict=True)]
        if any(t % 2 for t in total):
            return None  # "same" with an even dilated kernel pads asymmetrically
        return tuple(t // 2 for t in total)
    return tuple(conv.padding)


def _fusable(conv, bn) -> bool:
    if type(conv) is not nn.Conv2d or type(bn) is not nn.BatchNorm2d:
        return False
    if conv.padding_mode != "zeros" or _conv_padding(conv) is None:
        return False
    if bn.num_features != conv.out_channels:
        return False
    if conv._forward_hooks or conv._forward_pre_hooks or bn._forward_hooks or bn._forward_pre_hooks:
        return False
    if bn.track_running_stats and (bn.running_mean is None or bn.running_var is None):
        return False
    w = conv.weight
    for t in (conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var):
        if t is not None and (t.dtype != w.dtype or t.device != w.device):
            return False
    return True


def _replace_pair(root, conv_name, bn_name):
    conv = root.get_submodule(conv_name)
    bn = root.get_submodule(bn_name)
    w = conv.weight
    fused = FusedConvBN2d(
        conv.in_channels,
        conv.out_channels,
        tuple(conv.kernel_size),
        stride=tuple(conv.stride),
        padding=_conv_padding(conv),
        dilation=tuple(conv.dilation),
        groups=conv.groups,
        bias=conv.bias is not None,
        eps=bn.eps,
        momentum=bn.momentum,
        affine=bn.affine,
        track_running_stats=bn.track_running_stats,
        form="standard",
        device=w.device,
        dtype=w.dtype,
    )
    with torch.no_grad():
        # Take over the very objects (identity, requires_grad, sharing with other modules).
        fused.weight = conv.weight
        if conv.bias is not None:
            fused.bias = conv.bias
        if bn.affine:
            fused.bn_weight = bn.weight
            fused.bn_bias = bn.bias
        if bn.track_running_stats:
            fused.running_mean = bn.running_mean
            fused.running_var = bn.running_var
            if bn.num_batches_tracked is not None:
                fused.num_batches_tracked = bn.num_batches_tracked
    fused.train(bn.training)
    _set_submodule(root, conv_name, fused)
    _set_submodule(root, bn_name, nn.Identity())


def _set_submodule(root, name, module):
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, module)
