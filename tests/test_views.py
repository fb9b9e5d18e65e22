"""shared/views.py: attention heatmaps and the explorer (chapter 3); attention maps of a whole GPT, the habits of
its heads, and embedding neighbours and projections (chapter 5's Tiny Shakespeare companion)."""

import math

import matplotlib
import pytest
import torch

from shared.views import attention_maps, head_habits, nearest_tokens, plot_head_grid, project_2d, query_figure

matplotlib.use("Agg")


@pytest.mark.parametrize("position", ["absolute", "rope"])
def test_attention_maps_reproduce_what_each_attention_layer_computes(tiny_model, position):
    model = tiny_model(position=position, n_layers=3).eval()
    ids = torch.randint(0, model.cfg.vocab_size, (1, 9), generator=torch.Generator().manual_seed(0))
    maps = attention_maps(model, ids)
    assert maps.shape == (3, model.cfg.n_heads, 9, 9)
    assert torch.allclose(maps.sum(-1), torch.ones(3, model.cfg.n_heads, 9))
    assert torch.all(maps.triu(diagonal=1) == 0), "no query attends to a later key"
    # weights @ values, merged and projected, must be the layer's own output on the same input
    inputs = []
    hook = model.trf_blocks[1].att.register_forward_pre_hook(lambda m, args: inputs.append(args[0]))
    with torch.no_grad():
        model(ids)
    hook.remove()
    att = model.trf_blocks[1].att
    values = att.split_heads(att.W_value(inputs[0]))
    rebuilt = att.out_proj(att.merge_heads(maps[1].unsqueeze(0) @ values))
    with torch.no_grad():
        assert torch.allclose(rebuilt, att(inputs[0]), atol=1e-6)
    assert not any(block.att._forward_pre_hooks for block in model.trf_blocks), "its hooks are removed"


def test_attention_maps_leave_the_mode_and_want_one_sequence(tiny_model):
    model = tiny_model(drop_rate=0.5).train()
    ids = torch.zeros(1, 5, dtype=torch.long)
    first, second = attention_maps(model, ids), attention_maps(model, ids)
    assert torch.equal(first, second), "no dropout while measuring"
    assert model.training
    with pytest.raises(ValueError, match=r"shape \(1, tokens\)"):
        attention_maps(model, torch.zeros(2, 5, dtype=torch.long))


def test_head_habits_tell_planted_heads_apart():
    n = 6
    uniform = torch.tril(torch.ones(n, n)) / torch.arange(1, n + 1)[:, None]
    previous = torch.zeros(n, n)
    previous[0, 0] = 1
    previous[torch.arange(1, n), torch.arange(n - 1)] = 1
    own, first = torch.eye(n), torch.zeros(n, n)
    first[:, 0] = 1
    habits = head_habits(torch.stack([uniform, previous, own, first]).unsqueeze(0))  # one layer, four heads
    assert habits["previous"][0].tolist() == pytest.approx([sum(1 / (q + 1) for q in range(1, n)) / (n - 1), 1, 0, 1 / (n - 1)])
    assert habits["self"][0].tolist() == pytest.approx([sum(1 / (q + 1) for q in range(1, n)) / (n - 1), 0, 1, 0])
    assert habits["first"][0, 3].item() == pytest.approx(1.0)
    assert habits["spread"][0].tolist() == pytest.approx([1, 0, 0, 0], abs=1e-6)
    with pytest.raises(ValueError, match="at least 3 tokens"):
        head_habits(torch.ones(1, 1, 2, 2))


def test_nearest_tokens_rank_by_direction_and_skip_the_token_itself():
    table = torch.tensor([[1.0, 0.0], [10.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    neighbours = nearest_tokens(table, 0, k=3)
    assert [i for i, _ in neighbours] == [1, 2, 3], "length does not matter, direction does"
    assert neighbours[0][1] == pytest.approx(10 / math.sqrt(101)) and neighbours[2][1] == pytest.approx(-1.0)


def test_project_2d_keeps_the_two_directions_of_largest_variance():
    generator = torch.Generator().manual_seed(0)
    coordinates = torch.randn(200, 3, generator=generator) * torch.tensor([5.0, 2.0, 0.01])
    rotation, _ = torch.linalg.qr(torch.randn(3, 3, generator=generator))
    data = coordinates @ rotation.T + 7.0  # rotated and shifted: PCA must undo both
    points = project_2d(data)
    assert points.shape == (200, 2)
    # an independent statement of PCA: the eigenvectors of the covariance with the two largest eigenvalues
    centered = data - data.mean(0)
    _, eigenvectors = torch.linalg.eigh(centered.T @ centered)  # ascending eigenvalues
    expected = centered @ eigenvectors[:, [2, 1]]
    for axis in range(2):  # each direction is defined up to its sign
        sign = torch.sign((points[:, axis] * expected[:, axis]).sum())
        assert torch.allclose(points[:, axis], sign * expected[:, axis], atol=1e-4)
    assert points[:, 0].var() > points[:, 1].var() > 1.0, "the first component carries the most variance"


def test_query_figure_draws_the_matrix_and_one_row_with_masked_keys_grey():
    weights = torch.tensor([[1.0, 0.0, 0.0], [0.4, 0.6, 0.0], [0.2, 0.3, 0.5]])
    fig = query_figure(weights, ["a", "b", "c"], query=1, title="t")
    left, right = fig.axes
    bars = right.patches
    assert [round(b.get_height(), 2) for b in bars] == [0.4, 0.6, 0.0]
    assert matplotlib.colors.to_hex(bars[2].get_facecolor()) == "#cccccc" != matplotlib.colors.to_hex(bars[0].get_facecolor())


def test_plot_head_grid_titles_each_head_once_and_names_a_few_tokens():
    tokens = [f" t{i}" for i in range(27)] + ["\n"]
    maps = torch.softmax(torch.randn(2, 3, 28, 28), dim=-1)
    fig = plot_head_grid({"untrained": maps[0], "trained": maps[1]}, tokens, "two rows")
    try:
        axes = fig.axes
        assert len(axes) == 6
        assert [ax.get_title() for ax in axes] == ["head 0", "head 1", "head 2", "", "", ""]  # on the top row only
        assert [axes[0].get_ylabel(), axes[3].get_ylabel()] == ["untrained: query", "trained: query"]
        labels = [label.get_text() for label in axes[3].get_yticklabels()]
        assert 4 <= len(labels) <= 8 and labels[0] == " t0"  # about eight labels, so they never overlap
        assert fig._suptitle.get_text() == "two rows"
    finally:
        import matplotlib.pyplot as plt
        plt.close(fig)
