"""DP-SGD through Opacus: calibration, clipping and noise as Opacus applies them, Poisson batches, the model
copy Opacus trains and the ordinary model saved from it, the model card, and the CLI's one-line errors."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
import torch

from seasonrec import schema as s
from seasonrec.cli import main
from seasonrec.errors import SeasonrecError
from seasonrec.export.export import _card
from seasonrec.model.private import DPOptions, PrivateTraining, dp_model, plain_model
from seasonrec.model.ranker import PAD, SeasonalRanker, SeasonalRankerConfig
from seasonrec.model.train import HISTORY_FILE, TrainOptions, fit, group_loss

CFG = SeasonalRankerConfig(
    n_items=30, n_categories=5, n_regions=4, title_dim=8, d_model=16, n_heads=2, n_layers=1, history_length=4,
)  # fmt: skip


def _groups(n: int, candidates: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    history = rng.integers(2, CFG.n_items, (n, CFG.history_length))
    history[:, :1] = PAD  # short histories are left-padded: the key padding mask is exercised
    return {
        "region": rng.integers(2, CFG.n_regions, n),
        "history_ids": history,
        "history_age_hours": rng.random((n, CFG.history_length), dtype=np.float32) * 100,
        "context": rng.standard_normal((n, CFG.context_dim), dtype=np.float32),
        "cand_ids": rng.integers(2, CFG.n_items, (n, candidates)),
        "cand_categories": rng.integers(2, CFG.n_categories, (n, candidates)),
        "cand_dense": rng.standard_normal((n, candidates, CFG.item_dense_dim), dtype=np.float32),
        "cand_personal": rng.standard_normal((n, candidates, CFG.personal_dim), dtype=np.float32),
    }


def _tensors(arrays) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(v) for k, v in arrays.items()}


def _attached(epsilon: float, n: int = 200, batch_size: int = 32, epochs: int = 2, max_grad_norm: float = 1.0):
    torch.manual_seed(0)
    private = PrivateTraining(_groups(n), batch_size, epochs, DPOptions(epsilon, max_grad_norm=max_grad_norm))
    model = dp_model(SeasonalRanker(CFG))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model, optimizer = private.attach(model, optimizer)
    return private, model, optimizer


def test_the_noise_multiplier_grows_as_epsilon_shrinks():
    sigmas = [_attached(epsilon)[0].noise_multiplier for epsilon in (8.0, 2.0, 0.5)]
    assert 0 < sigmas[0] < sigmas[1] < sigmas[2]


def test_opacus_clips_each_groups_gradient_and_adds_noise_of_the_calibrated_size():
    bound = 1e-3  # far below the raw gradients' norms, so every group is clipped
    private, model, optimizer = _attached(8.0, max_grad_norm=bound)
    params = [p for p in model.parameters() if p.requires_grad]
    batch = _tensors(_groups(6, seed=1))
    loss = group_loss(model, batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    # Opacus's per-sample gradients (its hooks): one per group, each larger than the bound before clipping.
    raw = torch.stack([p.grad_sample.flatten(1).norm(dim=1) for p in params], 1).norm(dim=1)
    assert raw.shape == (6,) and bool((raw > 10 * bound).all())
    optimizer.step()
    # After its step, `summed_grad` is the sum of the clipped per-sample gradients, before the noise: at most
    # the bound per group. Unclipped it would be about the sum of the raw norms.
    clipped = math.sqrt(sum(float(p.summed_grad.pow(2).sum()) for p in params))
    assert clipped <= 6 * bound * (1 + 1e-5)
    # The gradient the inner optimizer used is (clipped sum + noise) / expected batch size: the noise Opacus
    # added has the calibrated standard deviation, noise multiplier x bound.
    expected = optimizer.expected_batch_size
    noise = torch.cat([(p.grad * expected - p.summed_grad).flatten() for p in params])
    assert noise.numel() > 5_000
    assert float(noise.std()) == pytest.approx(private.noise_multiplier * bound, rel=0.05)


def test_groups_are_poisson_sampled_with_the_planned_rate():
    n, batch_size = 400, 40
    private, _, _ = _attached(8.0, n=n, batch_size=batch_size)
    assert private.sample_rate == pytest.approx(batch_size / n)
    torch.manual_seed(1)
    sizes = [len(b["region"]) for epoch in range(5) for b in private.batches(epoch)]
    # Steps per epoch are fixed (1 / q); the batch sizes vary, around q * n, as independent draws do.
    assert len(sizes) == 5 * n // batch_size
    assert len(set(sizes)) > 3
    assert np.mean(sizes) == pytest.approx(batch_size, rel=0.2)


def test_dp_training_spends_at_most_the_budget_and_records_it():
    private = PrivateTraining(_groups(200), 32, 2, DPOptions(4.0))
    torch.manual_seed(0)
    history = fit(
        dp_model(SeasonalRanker(CFG)),
        private.batches,
        _groups(40, seed=2),
        TrainOptions(epochs=2, batch_size=32, patience=5),
        torch.device("cpu"),
        lambda *_: None,
        private=private,
    )
    spent = [epoch["epsilon_spent"] for epoch in history]
    assert 0 < spent[0] < spent[1] <= 4.0
    record = private.record()
    assert record["epsilon"] == 4.0 and record["delta"] == pytest.approx(1 / 200)
    assert record["noise_multiplier"] > 0 and record["max_grad_norm"] == 1.0
    assert record["epsilon_spent"] == pytest.approx(spent[-1])


def test_the_dp_copy_scores_as_the_model_and_saves_as_the_ordinary_one():
    torch.manual_seed(0)
    model = SeasonalRanker(CFG).eval()
    batch = _tensors(_groups(6, seed=3))
    copy = dp_model(model)
    assert type(model.encoder.layers[0].self_attn) is torch.nn.MultiheadAttention, "the original is left alone"
    assert type(copy.encoder.layers[0].self_attn).__name__ == "EncoderAttention"
    with torch.no_grad():
        assert torch.allclose(copy.eval()(**batch), model(**batch), atol=1e-5)
    # A few DP steps move the copy's weights; the plain model must carry them all, and score as the copy does.
    private = PrivateTraining(_groups(100), 32, 1, DPOptions(8.0))
    val, cpu = _groups(20, seed=4), torch.device("cpu")
    fit(copy, private.batches, val, TrainOptions(epochs=1), cpu, lambda *_: None, private=private)
    plain = plain_model(copy).eval()
    assert type(plain) is SeasonalRanker and type(plain.encoder.layers[0].self_attn) is torch.nn.MultiheadAttention
    assert set(plain.state_dict()) == set(model.state_dict())
    with torch.no_grad():
        assert not torch.allclose(plain(**batch), model(**batch), atol=1e-4), "training changed nothing"
        assert torch.allclose(plain(**batch), copy.eval()(**batch), atol=1e-5)


def test_the_unfused_scorer_is_the_same_function():
    torch.manual_seed(0)
    model = SeasonalRanker(CFG).eval()
    batch = _tensors(_groups(4, candidates=9, seed=5))
    with torch.no_grad():
        fused = model(**batch)
        model.fused_scorer = False
        assert torch.allclose(model(**batch), fused, atol=1e-5)


@pytest.mark.parametrize(
    ("options", "flag"),
    [
        (dict(epsilon=0.0), "--dp-epsilon"),
        (dict(epsilon=-1.0), "--dp-epsilon"),
        (dict(epsilon=float("nan")), "--dp-epsilon"),
        (dict(epsilon=float("inf")), "--dp-epsilon"),
        (dict(epsilon=1.0, delta=1.0), "train.dp_delta"),
        (dict(epsilon=1.0, max_grad_norm=0.0), "train.dp_max_grad_norm"),
    ],
)
def test_bad_options_name_their_setting(options, flag):
    with pytest.raises(SeasonrecError, match=f"^{flag}: "):
        DPOptions(**options)


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text(f"paths:\n  data_dir: {tmp_path / 'data'}\n")
    return path


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--dp-epsilon", "0", "--workers", "0"], "--dp-epsilon: must be a positive number"),
        (["--dp-epsilon", "-2", "--workers", "0"], "--dp-epsilon: must be a positive number"),
        (["--dp-epsilon", "nan", "--workers", "0"], "--dp-epsilon: must be a positive number"),
        (["--dp-epsilon", "1", "--workers", "2"], "--dp-epsilon: needs --workers 0"),
    ],
)
def test_bad_dp_epsilon_is_one_cli_error_line(config, capsys, argv, says):
    # Refused before anything is built or read: the data folder does not even exist.
    code = main(["--config", str(config), "train", *argv])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {says}"), err


def test_a_non_number_dp_epsilon_is_a_usage_error(config, capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(["--config", str(config), "train", "--dp-epsilon", "lots"])
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert "--dp-epsilon" in err and "lots" in err and "Traceback" not in err


def _card_for(tmp_path, history: dict) -> dict:
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir(parents=True)
    (checkpoint / HISTORY_FILE).write_text(json.dumps(history))
    training_set = tmp_path / "train.parquet"
    pl.DataFrame({s.REQUEST_TS: [1_700_000_000, 1_700_100_000]}).write_parquet(training_set)
    return _card(checkpoint, training_set, 0.0, {}, None)


def test_the_model_card_records_dp_or_says_there_was_none(tmp_path):
    epochs = [{"epoch": 0, "val_loss": 1.0}]
    assert _card_for(tmp_path / "plain", {"options": {}, "epochs": epochs})["dp"] is None
    record = {
        "epsilon": 2.0, "delta": 1e-3, "noise_multiplier": 1.1, "max_grad_norm": 1.0, "sample_rate": 0.1,
        "epsilon_spent": 1.98, "accountant": "prv", "unit": "training group", "groups": 1000,
    }  # fmt: skip
    dp = _card_for(tmp_path / "dp", {"options": {}, "epochs": epochs, "dp": record})["dp"]
    assert {k: dp[k] for k in ("epsilon", "delta", "noise_multiplier", "max_grad_norm", "sample_rate")} == {
        "epsilon": 2.0, "delta": 1e-3, "noise_multiplier": 1.1, "max_grad_norm": 1.0, "sample_rate": 0.1,
    }  # fmt: skip
