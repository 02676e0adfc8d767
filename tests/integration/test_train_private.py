"""DP-SGD on the tiny shop: the history and the model card record ε, δ and the noise, the accountant's spent ε
stays within the budget, and the checkpoint is the ordinary ranker, which exports."""

from __future__ import annotations

import json

import pytest
import torch

from seasonrec.export.export import DP_CARD_KEYS, TOLERANCE, export_model
from seasonrec.export.repository import CARD_FILE
from seasonrec.model.private import DPOptions
from seasonrec.model.train import HISTORY_FILE, TrainOptions, load_model, train

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EPSILON = 8.0


def test_dp_training_records_its_budget_stays_within_it_and_exports(training_set, tmp_path):
    settings, path = training_set
    checkpoint = tmp_path / "ckpt"
    result = train(
        settings, path, checkpoint, TrainOptions(epochs=2, batch_size=128, patience=5), private=DPOptions(EPSILON)
    )

    history = json.loads((checkpoint / HISTORY_FILE).read_text())
    dp = history["dp"]
    assert result["dp"] == dp
    assert dp["epsilon"] == EPSILON and dp["delta"] == pytest.approx(1 / dp["groups"])
    assert dp["noise_multiplier"] > 0 and dp["max_grad_norm"] == settings.train.dp_max_grad_norm
    assert 0 < dp["sample_rate"] < 1
    # Opacus's accountant, over the steps actually taken: within the budget the noise was calibrated for.
    spent = [epoch["epsilon_spent"] for epoch in history["epochs"]]
    assert len(spent) == 2 and 0 < spent[0] < spent[1] == dp["epsilon_spent"] <= EPSILON

    # The checkpoint is the ordinary architecture: `from_pretrained` builds nn.MultiheadAttention, no wrapper.
    model, _ = load_model(checkpoint)
    assert type(model.encoder.layers[0].self_attn) is torch.nn.MultiheadAttention and model.fused_scorer

    settings = settings.model_copy(
        update={"triton": settings.triton.model_copy(update={"repository": tmp_path / "repo"})}
    )
    exported = export_model(settings, checkpoint, training_set=path)
    assert exported["max_abs_diff"] <= TOLERANCE
    card = json.loads((tmp_path / "repo" / "ranker" / str(exported["version"]) / CARD_FILE).read_text())
    assert card["dp"] == {k: dp[k] for k in DP_CARD_KEYS}
