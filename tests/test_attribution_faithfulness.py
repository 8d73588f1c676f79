"""Faithfulness, measured: deletion and insertion curves, AOPC, the model-randomization check."""

import numpy as np
import torch
from test_attribution import TEXT, CumulativeLinearLM, tiny_gpt, trained  # noqa: F401  (a fixture)

from nanogpt.attribution.faithfulness import (
    faithfulness,
    perturbation_curves,
    rank_agreement,
    rank_orders,
    reinitialized,
    spearman,
)
from nanogpt.attribution.methods import attribute

IDS = torch.tensor([0, 3, 1, 5, 2, 2, 4, 0, 1, 3, 5])


def test_spearman_is_the_rank_correlation_with_ties_sharing_their_rank():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert abs(spearman([1, 2, 3, 4], [1, 3, 2, 4]) - 0.8) < 1e-12
    assert abs(spearman([1, 1, 2, 3], [1, 2, 3, 4]) - 0.9486832980505138) < 1e-12  # scipy's value
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_on_a_linear_model_the_curves_are_sums_of_the_top_scores():
    """F is linear in the embeddings: removing a set of characters takes away exactly their scores."""
    model = CumulativeLinearLM()
    r = attribute(model, IDS, target="logit", baseline=4, steps=2)
    orders = {"ig": rank_orders(r, 5)}
    ks, deletion, insertion = perturbation_curves(model, IDS, orders, most=3, target="logit", baseline=4)
    top = [np.mean([np.sort(r.row(t)[max(0, t - 5):t])[::-1][:k].sum() for t in r.targets]) for k in ks]
    assert np.allclose(deletion["ig"], top, atol=1e-12) and np.allclose(insertion["ig"], top, atol=1e-12)


def test_ranking_by_a_methods_scores_beats_random_orders_on_a_linear_model():
    model = CumulativeLinearLM()
    report = faithfulness(model, IDS, methods=("ig", "occlusion"), most=4, n_random=8, sanity=False,
                          target="logit", steps=2)
    for method in ("ig", "occlusion"):
        deletion, insertion = report.aopc(method)
        assert deletion > 0 and insertion > 0
    assert report.aopc("random") == (0.0, 0.0)
    table = report.table()
    assert "| ig |" in table and "| random |" in table and "deletion AOPC" in table


def test_a_reinitialized_model_has_fresh_weights_from_the_seed_and_leaves_the_original_alone():
    model = tiny_gpt()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a, b, c = reinitialized(model, 0), reinitialized(model, 0), reinitialized(model, 1)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    for name, p in a.named_parameters():
        assert torch.equal(p, dict(b.named_parameters())[name])  # the seed decides
        if p.dim() > 1:  # every weight matrix re-drawn (LayerNorm gains come back to 1)
            assert not torch.equal(p, dict(model.named_parameters())[name])
            assert not torch.equal(p, dict(c.named_parameters())[name])
    assert next(a.parameters()).dtype == torch.float64


def test_the_sanity_check_finds_that_scores_depend_on_the_trained_weights(trained):  # noqa: F811
    model, tok = trained
    ids = tok.encode(TEXT)
    report = faithfulness(model, ids, methods=("ig", "occlusion"), most=3, n_random=2, steps=8)
    r = report.results["ig"]
    assert rank_agreement(r, r, model.config.block_size) == dict(spearman=1.0, spearman_abs=1.0)
    for method in ("ig", "occlusion"):
        assert report.sanity[method]["spearman"] < 0.5, report.sanity  # far from the trained ranking
    assert report.deletion["ig"].shape == (4,) and report.deletion["ig"][0] == 0
