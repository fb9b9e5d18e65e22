"""Argument checks for the course's library code (hand-written): integers, numbers, probabilities, choices,
tensor shapes and dtypes, each refused with a message that names the argument, what it must be, and what it got;
and the two checks the GPT model runs on everything it is given: its config, and the token ids of each call.

The lessons' export cells call these in one line each, so that a cell shows the idea it teaches and not
the bookkeeping around it. Every check returns nothing and raises `error` (ValueError unless a caller
passes its own error class, e.g. chapter 5's CheckpointError); a `hint` says, in parentheses, what a
good value looks like or where one comes from.
"""

import math
import numbers

import torch

__all__ = [
    "require_int", "require_positive_int", "require_positive_number", "require_probability", "require_choice",
    "require_shape", "require_same_shape", "require_dtype", "require_state_dict", "check_gpt_config",
    "check_token_ids",
]


def _say(name, what, hint, got):
    """The one message format of every check: `<name> must be <what> (<hint>), got <got>`."""
    return f"{name} must be {what}{f' ({hint})' if hint else ''}, got {got}"


def _is_int(value):
    # bool is a subclass of int, but True as a count or a size is a mistake, never an intention.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def require_int(name, value, minimum=None, maximum=None, *, allow_none=False, hint="", error=ValueError):
    """`value` must be an integer (not a bool) in [minimum, maximum] (either bound may be None); with
    allow_none, None is accepted too."""
    if allow_none and value is None:
        return
    if minimum is not None and maximum is not None:
        what = f"an integer from {minimum} to {maximum}"
    elif minimum is not None:
        what = f"an integer >= {minimum}"
    elif maximum is not None:
        what = f"an integer <= {maximum}"
    else:
        what = "an integer"
    if allow_none:
        what = f"None or {what}"
    if not _is_int(value) or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise error(_say(name, what, hint, repr(value)))


def require_positive_int(name, value, *, allow_none=False, hint="", error=ValueError):
    """`value` must be an integer >= 1 (not a bool); with allow_none, None is accepted too."""
    require_int(name, value, minimum=1, allow_none=allow_none, hint=hint, error=error)


def require_positive_number(name, value, *, hint="", error=ValueError):
    """`value` must be a finite real number > 0 (an int or a float, not a bool)."""
    if not _is_real(value) or not math.isfinite(value) or value <= 0:
        raise error(_say(name, "a positive number", hint, repr(value)))


def require_probability(name, value, *, hint="", error=ValueError):
    """`value` must be a real number from 0 to 1, both included (not a bool)."""
    if not _is_real(value) or not 0 <= value <= 1:  # NaN fails both comparisons
        raise error(_say(name, "a number from 0 to 1", hint, repr(value)))


def require_choice(name, value, choices, *, hint="", error=ValueError):
    """`value` must be one of `choices` (any collection; a dict offers its keys)."""
    if value not in choices:
        raise error(_say(name, f"one of {sorted(choices, key=repr)}", hint, repr(value)))


def _shape_text(shape):
    """(1, 'tokens') -> '(1, tokens)': numbers are sizes, names stand for any size."""
    return "(" + ", ".join(str(size) for size in shape) + ("," if len(shape) == 1 else "") + ")"


def require_shape(name, tensor, shape, *, hint="", error=ValueError):
    """`tensor` must have `shape`: a tuple whose ints are exact sizes and whose strings (e.g. "tokens") stand for
    any size."""
    actual = tuple(tensor.shape)
    fits = len(actual) == len(shape) and all(isinstance(want, str) or want == got for want, got in zip(shape, actual))
    if not fits:
        raise error(_say(name, f"of shape {_shape_text(shape)}", hint, _shape_text(actual)))


def require_same_shape(tensors, *, ndim=None, nonempty=False, hint="", error=ValueError):
    """The tensors of the dict `tensors` ({name: tensor}) must all have one shape, with `ndim` dimensions when given,
    and at least one element with nonempty."""
    shapes = {name: tuple(tensor.shape) for name, tensor in tensors.items()}
    first = next(iter(shapes.values()))
    fits = (len(set(shapes.values())) == 1 and (ndim is None or len(first) == ndim)
            and (not nonempty or math.prod(first) > 0))
    if not fits:
        names = ", ".join(list(shapes)[:-1]) + " and " + list(shapes)[-1] if len(shapes) > 1 else list(shapes)[0]
        what = (f"{ndim}-D tensors" if ndim is not None else "tensors") + " with the same shape"
        what += ", not empty" if nonempty else ""
        raise error(_say(names, what, hint, "shapes " + ", ".join(f"{n} {_shape_text(s)}" for n, s in shapes.items())))


def require_dtype(name, tensor, dtype, *, hint="", error=ValueError):
    """`tensor` must hold elements of `dtype` (e.g. torch.bool)."""
    if tensor.dtype != dtype:
        raise error(_say(name, f"a {dtype} tensor", hint, str(tensor.dtype)))


def require_state_dict(tensors, expected, source, *, label=repr, hint="", error=ValueError):
    """`tensors` ({name: tensor}, weights read from `source`) must hold exactly the names of the state dict
    `expected` (what the model holds; tensors on the meta device will do), each of the same shape: the one check
    every loader of weights runs before it copies anything. `label(name)` names a tensor in a message (e.g. as
    the file calls it); `hint` says what to do."""
    advice = f" ({hint})" if hint else ""
    missing = [name for name in expected if name not in tensors]
    if missing:
        raise error(f"{source} lacks {len(missing)} of the model's tensors, e.g. {label(missing[0])}: it is "
                    f"incomplete, or was saved from a different architecture{advice}")
    unexpected = [name for name in tensors if name not in expected]
    if unexpected:
        count = f"{len(unexpected)} tensor" + ("s" if len(unexpected) > 1 else "")
        raise error(f"{source} holds {count} the model has no place for, e.g. "
                    f"{label(unexpected[0])}: it was saved from a different architecture{advice}")
    for name, want in expected.items():
        if tensors[name].shape != want.shape:
            raise error(f"{source}: tensor {label(name)} has shape {_shape_text(tensors[name].shape)} but the model "
                        f"expects {_shape_text(want.shape)}: it comes from a model of another size or "
                        f"configuration{advice}")


def check_gpt_config(cfg, choices):
    """Raise a ValueError that says what is wrong with a GPTConfig: a switch outside its `choices` ({field:
    allowed values}), a size below 1, widths that do not divide into heads, or settings that do not fit together."""
    for name, allowed in choices.items():
        if getattr(cfg, name) not in allowed:
            raise ValueError(f"{name}={getattr(cfg, name)!r} is not one of {allowed}")
    for name in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers", "kv_heads", "per_head_dim"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(cfg, name)}")
    if cfg.head_dim is None and cfg.emb_dim % cfg.n_heads != 0:
        raise ValueError(f"emb_dim ({cfg.emb_dim}) must be divisible by n_heads ({cfg.n_heads}), or head_dim must be set")
    if cfg.n_heads % cfg.kv_heads != 0:
        raise ValueError(f"n_heads ({cfg.n_heads}) must be a multiple of n_kv_heads ({cfg.kv_heads}): "
                         "each key/value head serves the same number of query heads")
    if cfg.position == "rope" and cfg.per_head_dim % 2 != 0:
        raise ValueError(f"rotary embeddings turn features in pairs: head_dim must be even, got {cfg.per_head_dim}")
    if cfg.rope_scaling is not None:
        expected = {"factor", "low_freq_factor", "high_freq_factor", "original_context_length"}
        if cfg.position != "rope":
            raise ValueError("rope_scaling only applies to position='rope'")
        if not isinstance(cfg.rope_scaling, dict) or set(cfg.rope_scaling) != expected:
            raise ValueError(f"rope_scaling must be a dict with exactly the keys {sorted(expected)}, got {cfg.rope_scaling!r}")
    if cfg.ffn == "moe" and not 1 <= cfg.n_experts_per_token <= cfg.n_experts:
        raise ValueError(f"n_experts_per_token ({cfg.n_experts_per_token}) must be between 1 and "
                         f"n_experts ({cfg.n_experts})")
    require_positive_int("pad_vocab_multiple", cfg.pad_vocab_multiple)


def check_token_ids(idx, vocab_size, check_values=True, start=0, context_length=None):
    """Raise a ValueError that says what is wrong unless idx is a (batch, tokens) tensor of ids in [0, vocab_size)
    that fits, after `start` positions already cached, in `context_length` (when given).

    check_values=False skips the range check: reading the ids' values makes the CPU wait for a GPU and
    splits a compiled graph, so the model checks values only on the CPU (see GPTModel.check_input).
    """
    if not isinstance(idx, torch.Tensor) or idx.dim() != 2:
        shape = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
        hint = " (use ids.unsqueeze(0) for a single sequence)" if isinstance(idx, torch.Tensor) and idx.dim() == 1 else ""
        raise ValueError(f"expected token ids of shape (batch, tokens), got {shape}{hint}")
    if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
        raise ValueError(f"token ids must be integers, got dtype {idx.dtype}")
    if idx.shape[0] == 0 or idx.shape[1] == 0:
        raise ValueError(f"empty input of shape {tuple(idx.shape)}: need at least one token per sequence")
    if check_values:
        low, high = idx.min().item(), idx.max().item()
        if low < 0 or high >= vocab_size:
            raise ValueError(f"token id {low if low < 0 else high} is outside the vocabulary [0, {vocab_size})")
    if context_length is not None and start + idx.shape[1] > context_length:
        where = f" ({start} cached + {idx.shape[1]} new)" if start else ""
        raise ValueError(f"{start + idx.shape[1]} positions{where} exceed the context length {context_length}; "
                         f"crop the input to its last {context_length} tokens")
