"""Shared layers: shapes, pooling, gradients, the activation unit's dependence on the movie vector, FM,
and the adaptive regulariser (eq. 3)."""

import itertools

import numpy as np
import pytest
import torch

from models.nets.layers import (
    MLP,
    ActivationUnit,
    FeaturesEmbedding,
    FeaturesLinear,
    FMInteraction,
    adaptive_l2,
)

SIZES = {"directors": 6, "actors": 9, "genres": 5}


def batch(rows: dict[str, list[list[int]]]) -> dict[str, torch.Tensor]:
    return {g: torch.tensor(v, dtype=torch.long) for g, v in rows.items()}


X = batch({"directors": [[2], [3], [1]], "actors": [[2, 3, 0], [4, 0, 0], [5, 6, 7]], "genres": [[2, 4], [3, 0], [0, 0]]})


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_sum_pooling_adds_each_groups_embeddings_and_ignores_padding():
    emb = FeaturesEmbedding(SIZES, dim=4, pooling="sum", attention_hidden=None)
    pooled = emb(X)
    assert pooled.shape == (3, 3, 4)
    ids, mask, _ = emb.flat_ids(X)
    table = emb.embedding.weight
    # Film 0's actors are ids 2 and 3 of the actors group; padding contributes nothing.
    actors = [int(emb.offsets[1]) + i for i in (2, 3)]
    assert torch.allclose(pooled[0, 1], table[actors].sum(0))
    # A film with no genres pools to zero; the padding row is zero and never trained.
    assert torch.equal(pooled[2, 2], torch.zeros(4))
    assert torch.equal(table[0], torch.zeros(4))
    assert mask.sum().item() == sum(int((v > 0).sum()) for v in X.values())


def test_group_rows_do_not_collide():
    emb = FeaturesEmbedding(SIZES, dim=2, pooling="sum", attention_hidden=None)
    ids, mask, owner = emb.flat_ids(X)
    # The same id in two groups maps to two different rows; OOV (1) is a real row per group.
    assert ids[0, 0] != ids[0, 1]
    assert ids.max() < emb.embedding.num_embeddings
    assert emb.embedding.num_embeddings == 1 + sum(n - 1 for n in SIZES.values())
    assert owner.tolist() == [0, 1, 1, 1, 2, 2]


def test_attention_pooling_shapes_and_gradients_reach_every_part():
    emb = FeaturesEmbedding(SIZES, dim=4, pooling="attention", attention_hidden=5)
    pooled = emb(X)
    assert pooled.shape == (3, 3, 4)
    pooled.pow(2).sum().backward()
    for name, p in emb.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    # Rows of tokens absent from the batch get no gradient.
    ids, mask, _ = emb.flat_ids(X)
    absent = sorted(set(range(emb.embedding.num_embeddings)) - set(ids[mask].tolist()))
    assert absent and emb.embedding.weight.grad[absent].abs().sum() == 0


def test_activation_unit_matches_the_literal_formula():
    unit = ActivationUnit(dim=6, hidden=7)
    tokens, movie = torch.randn(11, 6), torch.randn(11, 6)
    assert torch.allclose(unit(tokens, movie), unit.reference(tokens, movie), atol=1e-5)
    assert unit.net[0].in_features == 4 * 6  # [e, v, e*v, e-v]
    assert isinstance(unit.net[1], torch.nn.PReLU)


def test_attention_weights_depend_on_the_movie_vector():
    unit = ActivationUnit(dim=4, hidden=8)
    token = torch.randn(1, 4)
    weights = [unit(token, torch.randn(1, 4)).item() for _ in range(5)]
    assert len({round(w, 6) for w in weights}) == 5
    # Inside the embedding: the same actor in two films with different other features (hence a different
    # v_A) gets a different weight; with equal films it gets the same weight. Weights are not normalised.
    emb = FeaturesEmbedding(SIZES, dim=4, pooling="attention", attention_hidden=8)
    films = batch({"directors": [[2], [3], [2]], "actors": [[4, 0, 0], [4, 0, 0], [4, 0, 0]],
                   "genres": [[2, 0], [3, 4], [2, 0]]})
    seen = {}

    def grab(module, args, out):
        seen["w"] = out

    emb.attention.register_forward_hook(grab)
    emb(films)
    w = seen["w"]  # one weight per real token, films in order: director, actor, genres...
    actor_w = [w[1].item(), w[4].item(), w[8].item()]
    assert actor_w[0] != pytest.approx(actor_w[1])
    assert actor_w[0] == pytest.approx(actor_w[2])


def test_fm_interaction_is_the_sum_of_pairwise_dot_products():
    tokens = torch.randn(2, 5, 3)
    tokens[1, 3:] = 0  # padding
    expected = torch.stack([sum((t[i] * t[j]).sum() for i, j in itertools.combinations(range(5), 2))
                            for t in tokens])
    assert torch.allclose(FMInteraction()(tokens), expected, atol=1e-5)


def test_linear_term_sums_token_weights_and_ignores_padding():
    lin = FeaturesLinear(10)
    with torch.no_grad():
        lin.weight.weight[1:] = torch.arange(1, 10, dtype=torch.float32).unsqueeze(-1)
        lin.bias.fill_(0.5)
    out = lin(torch.tensor([[2, 3, 0], [0, 0, 0]]))
    assert out.tolist() == [5.5, 0.5]


def test_mlp_shapes_and_prelu():
    mlp = MLP(12, [8, 4], 3, dropout=0.1)
    assert mlp(torch.randn(5, 12)).shape == (5, 3)
    assert sum(isinstance(m, torch.nn.PReLU) for m in mlp.modules()) == 2
    assert [m.out_features for m in mlp.modules() if isinstance(m, torch.nn.Linear)] == [8, 4, 3]


def test_adaptive_l2_touches_only_rows_in_the_batch_scaled_by_frequency():
    weight = torch.nn.Parameter(torch.randn(8, 3))
    freq = torch.tensor([0, 5, 1, 2, 10, 3, 1, 4], dtype=torch.float32)
    ids = torch.tensor([[2, 4, 0], [4, 6, 0]])
    mask = ids > 0
    penalty = adaptive_l2(weight, ids, mask, freq)
    penalty.backward()
    rows = [2, 4, 6]
    expected = 0.5 * sum(weight[i].pow(2).sum() / freq[i] for i in rows)
    assert penalty.item() == pytest.approx(expected.item())
    grad = weight.grad
    for i in range(8):
        if i in rows:  # d/dw of 0.5 ||w||^2 / n = w / n: a rare row is pulled harder
            assert torch.allclose(grad[i], weight[i].detach() / freq[i])
        else:
            assert torch.equal(grad[i], torch.zeros(3))
    # A row repeated in the batch is penalised once (I_i is an indicator), not per occurrence.
    assert np.isclose(adaptive_l2(weight, torch.tensor([[4, 4, 4]]), torch.tensor([[True] * 3]), freq).item(),
                      0.5 * weight[4].pow(2).sum().item() / 10)
