"""Unit tests of shared/checks.py: what each check accepts, what it refuses, and what its message says."""

import math

import numpy as np
import pytest
import torch

from shared.checks import (
    require_choice,
    require_dtype,
    require_int,
    require_positive_int,
    require_positive_number,
    require_probability,
    require_same_shape,
    require_shape,
    require_state_dict,
)


class CustomError(ValueError):
    pass


@pytest.mark.parametrize("value", [1, 7, np.int64(3), 10**12])
def test_positive_int_accepts_integers_from_one(value):
    require_positive_int("steps", value)


@pytest.mark.parametrize("value", [0, -1, True, False, 1.0, "3", None])
def test_positive_int_refuses_bools_floats_and_small_numbers(value):
    with pytest.raises(ValueError, match=rf"^steps must be an integer >= 1, got {value!r}$".replace("(", r"\(")):
        require_positive_int("steps", value)


def test_none_is_accepted_only_when_allowed_and_the_message_says_so():
    require_positive_int("num_batches", None, allow_none=True)
    with pytest.raises(ValueError, match=r"num_batches must be None or an integer >= 1, got 0"):
        require_positive_int("num_batches", 0, allow_none=True)


def test_int_ranges_and_hints():
    require_int("epochs", 0, 0, 2)
    require_int("epochs", 2, 0, 2)
    with pytest.raises(ValueError, match=r"^epochs must be an integer from 0 to 2 \(the recipe has 2 left\), got 3$"):
        require_int("epochs", 3, 0, 2, hint="the recipe has 2 left")
    with pytest.raises(ValueError, match=r"^k must be an integer <= 5, got 6$"):
        require_int("k", 6, maximum=5)
    with pytest.raises(ValueError, match=r"^k must be an integer, got 'a'$"):
        require_int("k", "a")


def test_a_caller_can_choose_the_error_class():
    with pytest.raises(CustomError, match="width"):
        require_positive_int("width", -2, error=CustomError)


@pytest.mark.parametrize("value", [0.1, 3, 1e-9])
def test_positive_number_accepts_finite_positive_reals(value):
    require_positive_number("beta", value)


@pytest.mark.parametrize("value", [0, -0.5, math.inf, math.nan, True, "0.1", None])
def test_positive_number_refuses_zero_infinity_nan_bools_and_strings(value):
    with pytest.raises(ValueError, match=r"^beta must be a positive number \(0.1 is usual\), got "):
        require_positive_number("beta", value, hint="0.1 is usual")


@pytest.mark.parametrize("value", [0, 0.5, 1, 1.0])
def test_probability_accepts_zero_to_one(value):
    require_probability("p", value)


@pytest.mark.parametrize("value", [-0.1, 1.01, math.nan, True, "0.5"])
def test_probability_refuses_the_rest(value):
    with pytest.raises(ValueError, match=r"^p must be a number from 0 to 1, got "):
        require_probability("p", value)


def test_choice_lists_the_choices_and_takes_a_dict_keys():
    require_choice("kind", "llama", {"llama": 1, "qwen3": 2})
    with pytest.raises(CustomError, match=r"^kind must be one of \['llama', 'qwen3'\] \(known models\), got 'gpt2'$"):
        require_choice("kind", "gpt2", {"qwen3": 2, "llama": 1}, hint="known models", error=CustomError)
    with pytest.raises(ValueError, match=r"one of \['a', None\], got 'b'"):  # mixed types still list in a stable order
        require_choice("x", "b", [None, "a"])


def test_shape_with_named_sizes():
    require_shape("idx", torch.zeros(1, 5), (1, "tokens"))
    with pytest.raises(ValueError, match=r"^idx must be of shape \(1, tokens\) \(one sequence\), got \(2, 5\)$"):
        require_shape("idx", torch.zeros(2, 5), (1, "tokens"), hint="one sequence")
    with pytest.raises(ValueError, match=r"got \(5,\)$"):
        require_shape("idx", torch.zeros(5), (1, "tokens"))
    with pytest.raises(ValueError, match=r"^w must be of shape \(4,\), got \(3,\)$"):
        require_shape("w", torch.zeros(3), (4,))


def test_same_shape_names_every_tensor_and_its_shape():
    require_same_shape({"a": torch.zeros(3), "b": torch.ones(3)}, ndim=1, nonempty=True)
    with pytest.raises(ValueError, match=r"^a and b must be 1-D tensors with the same shape, got shapes a \(3,\), b \(4,\)$"):
        require_same_shape({"a": torch.zeros(3), "b": torch.zeros(4)}, ndim=1)
    with pytest.raises(ValueError, match=r"^a, b and c must be 1-D tensors with the same shape, not empty"):
        require_same_shape({"a": torch.zeros(0), "b": torch.zeros(0), "c": torch.zeros(0)}, ndim=1, nonempty=True)
    with pytest.raises(ValueError, match=r"^ids and mask must be 2-D tensors with the same shape"):
        require_same_shape({"ids": torch.zeros(2, 3), "mask": torch.zeros(2, 4)}, ndim=2)
    with pytest.raises(ValueError, match=r"got shapes x \(3,\)$"):
        require_same_shape({"x": torch.zeros(3)}, ndim=2)


def test_state_dict_check_names_what_is_missing_left_over_or_of_another_shape():
    expected = {"w": torch.zeros(2, 3, device="meta"), "b": torch.zeros(3, device="meta")}  # shapes are what count
    require_state_dict({"w": torch.ones(2, 3), "b": torch.ones(3)}, expected, "a.pt")
    with pytest.raises(CustomError, match=r"^a\.pt lacks 1 of the model's tensors, e\.g\. 'b': it is incomplete"):
        require_state_dict({"w": torch.ones(2, 3)}, expected, "a.pt", error=CustomError)
    with pytest.raises(ValueError, match=r"^a\.pt holds 2 tensors the model has no place for, e\.g\. 'x'"):
        require_state_dict({"w": torch.ones(2, 3), "b": torch.ones(3), "x": torch.ones(1), "y": torch.ones(1)},
                           expected, "a.pt")
    with pytest.raises(ValueError, match=r"^a\.pt: tensor <w> has shape \(3, 2\) but the model expects \(2, 3\): .*"
                                         r"\(build the model from its config\)$"):
        require_state_dict({"w": torch.ones(3, 2), "b": torch.ones(3)}, expected, "a.pt",
                           label=lambda name: f"<{name}>", hint="build the model from its config")


def test_dtype():
    require_dtype("mask", torch.zeros(2, dtype=torch.bool), torch.bool)
    with pytest.raises(ValueError, match=r"^mask must be a torch.bool tensor \(True on the answer\), got torch.float32$"):
        require_dtype("mask", torch.zeros(2), torch.bool, hint="True on the answer")
