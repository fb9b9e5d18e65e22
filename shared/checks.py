"""Argument checks for the course's library code (hand-written): integers, numbers, probabilities, choices,
tensor shapes and dtypes, each refused with a message that names the argument, what it must be, and what it got.

The lessons' export cells call these in one line each, so that a cell shows the idea it teaches and not
the bookkeeping around it. Every check returns nothing and raises `error` (ValueError unless a caller
passes its own error class, e.g. chapter 5's CheckpointError); a `hint` says, in parentheses, what a
good value looks like or where one comes from.
"""

import math
import numbers

__all__ = [
    "require_int", "require_positive_int", "require_positive_number", "require_probability", "require_choice",
    "require_shape", "require_same_shape", "require_dtype",
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

