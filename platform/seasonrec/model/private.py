"""Differentially private training (DP-SGD) of the ranker, through Opacus.

`train(..., private=DPOptions(epsilon))` trains with Opacus's `PrivacyEngine`: per-sample gradients from its
`GradSampleModule`, each group's gradient clipped to `max_grad_norm` and Gaussian noise added by its
`DPOptimizer`, the noise multiplier calibrated by its accountant so that the planned epochs spend at most ε
at δ, and groups drawn by its Poisson sampler. The unit of privacy is a training group: one purchase with its
sampled negatives (and the buyer's history as its features). A shopper with k purchases in the window is
covered only by group privacy, about k·ε; the card says so. A warm start (`--init-from`) is not covered: the
guarantee is about this run's groups.

Nothing here clips or adds noise by hand. What is ours is the wiring, and two adaptations of the model that
Opacus needs (see `dp_model`); the checkpoint saved is the ordinary `SeasonalRanker` (see `plain_model`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from seasonrec.errors import SeasonrecError
from seasonrec.model.data import Arrays
from seasonrec.model.ranker import SeasonalRanker

# Each call of a model's first layers (embeddings of integer ids) would warn: Opacus's backward hooks need
# only the gradient of a layer's output, and ids carry none of their own.
_NO_INPUT_GRADIENT = "Full backward hook is firing when gradients are computed with respect to module outputs"


@contextlib.contextmanager
def _quiet_accountant() -> Iterator[None]:
    """Opacus's PRV accountant sizes its numeric domain from an RDP bound, which warns when its best order is
    the last one tried; that bound only sizes the domain, so the warning says nothing about the ε reported."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the", category=UserWarning)
        yield


@dataclass(frozen=True)
class DPOptions:
    """The privacy budget for one training run, (ε, δ), and the clipping bound of a group's gradient."""

    epsilon: float
    # None: 1 / the number of training groups. δ is the chance the ε bound fails; above 1/n, a mechanism that
    # publishes one random group whole would pass.
    delta: float | None = None
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        # NaN fails every comparison, so each check is written to reject it too.
        if not (self.epsilon > 0 and math.isfinite(self.epsilon)):
            raise SeasonrecError(f"--dp-epsilon: must be a positive number, not {self.epsilon}")
        if self.delta is not None and not 0 < self.delta < 1:
            raise SeasonrecError(f"train.dp_delta: must be between 0 and 1 (exclusive), not {self.delta}")
        if not (self.max_grad_norm > 0 and math.isfinite(self.max_grad_norm)):
            raise SeasonrecError(f"train.dp_max_grad_norm: must be a positive number, not {self.max_grad_norm}")


@functools.cache  # one class: Opacus is imported only when DP training is asked for
def _attention_class():
    from opacus.layers import DPMultiheadAttention

    class EncoderAttention(DPMultiheadAttention):
        """Opacus's `DPMultiheadAttention` (its q/k/v/out linears, its state-dict layout), with the batch-first
        self-attention that `nn.TransformerEncoderLayer` asks of it computed here.

        Opacus 1.6's own forward has two gaps, each of which would silently train another model than the one
        exported: it rejects the float key padding mask (0 or -inf, `F._canonical_mask`) that the encoder layer
        passes, and its `batch_first=True` path reshapes the heads' outputs without transposing them, splicing
        heads into positions (meta-pytorch/opacus#825). Its sequence-first path is right but would call the
        linears on [L, B, E] inputs, which Opacus's per-sample gradients (batch first) would misread. So the
        attention itself is the standard one, written out; the linears stay Opacus's to differentiate per sample.
        """

        def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None, is_causal=False):
            if attn_mask is not None or is_causal:
                raise SeasonrecError("DP attention: attention masks are not supported, only key padding masks")
            if key_padding_mask is not None and key_padding_mask.is_floating_point():
                padded = torch.isneginf(key_padding_mask)
                if not bool(((key_padding_mask == 0) | padded).all()):
                    raise SeasonrecError("DP attention: a float key padding mask must hold only 0 and -inf")
                key_padding_mask = padded
            batch, lq, width = query.shape
            lk, heads = key.shape[1], self.num_heads

            def split(x: torch.Tensor, length: int) -> torch.Tensor:  # [B, L, E] -> [B, heads, L, head_dim]
                return x.view(batch, length, heads, self.head_dim).transpose(1, 2)

            # Scaled as nn.MultiheadAttention and Opacus scale it: the query, before the product.
            q = split(self.qlinear(query), lq) * float(self.head_dim) ** -0.5
            k, v = split(self.klinear(key), lk), split(self.vlinear(value), lk)
            logits = q @ k.transpose(-2, -1)
            if key_padding_mask is not None:
                logits = logits.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
            weights = self.dropout(logits.softmax(-1))
            out = self.out_proj((weights @ v).transpose(1, 2).reshape(batch, lq, width))
            return out, weights.mean(1) if need_weights else None

    return EncoderAttention


def dp_model(model: SeasonalRanker) -> SeasonalRanker:
    """A copy of `model` that Opacus can compute per-sample gradients for; `model` is left as it is.

    - `ModuleValidator.fix` swaps each `nn.MultiheadAttention` (inside the encoder's layers) for Opacus's
      `DPMultiheadAttention`, weights copied; that is then swapped for `EncoderAttention` (see there), which
      keeps its layers and weights and replaces its forward.
    - `fused_scorer` off: the scorer's first layer is called on its input rather than read in place.
    `ModuleValidator.validate` then checks that nothing Opacus cannot handle is left.
    """
    from opacus.layers import DPMultiheadAttention
    from opacus.validators import ModuleValidator

    fixed = ModuleValidator.fix(model)
    attention = _attention_class()
    for name, module in list(fixed.named_modules()):
        if type(module) is DPMultiheadAttention:
            if not module.batch_first or module.add_bias_kv or module.add_zero_attn or module.kdim != module.vdim:
                raise SeasonrecError(f"--dp-epsilon: {name}: only batch-first self-attention is supported")
            swapped = attention(
                module.embed_dim,
                module.num_heads,
                dropout=module.dropout.p,
                bias=module.qlinear.bias is not None,
                add_bias_kv=module.add_bias_kv,
                add_zero_attn=module.add_zero_attn,
                kdim=module.kdim,
                vdim=module.vdim,
                batch_first=module.batch_first,
            ).to(module.qlinear.weight)
            # Its own `state_dict` is the nn.MultiheadAttention layout, which its `load_state_dict` takes.
            swapped.load_state_dict(module.state_dict())
            swapped.train(module.training)
            parent, _, child = name.rpartition(".")
            setattr(fixed.get_submodule(parent), child, swapped)
    fixed.fused_scorer = False
    # The validator checks a model in training mode only (`from_pretrained` returns one in eval mode).
    errors = ModuleValidator.validate(fixed.train(), strict=False)
    if errors:
        raise SeasonrecError(f"--dp-epsilon: Opacus cannot train this model: {errors[0]}")
    return fixed


def plain_model(model: torch.nn.Module) -> SeasonalRanker:
    """The ordinary `SeasonalRanker` with the weights of `model`, a `dp_model` copy, possibly Opacus-wrapped.

    What a checkpoint must hold: `from_pretrained`, export and serving know only the ordinary layers.
    """
    from opacus.layers import DPMultiheadAttention

    while hasattr(model, "_module"):  # GradSampleModule's wrapper
        model = model._module
    state = model.state_dict()
    # A DPMultiheadAttention inside a model is saved as its q/k/v linears; asked for its own state it gives
    # the nn.MultiheadAttention layout (in_proj_weight, ...), which the ordinary layer loads.
    for name, module in model.named_modules():
        if isinstance(module, DPMultiheadAttention):
            for key in [k for k in state if k.startswith(f"{name}.")]:
                del state[key]
            state.update({f"{name}.{k}": v for k, v in module.state_dict().items()})
    plain = SeasonalRanker(model.config)
    # Strict: a key left over or missing would be a layer Opacus changed that this does not undo.
    plain.load_state_dict(state)
    return plain.to(next(model.parameters()).device)


class PrivateTraining:
    """Opacus's DP-SGD for one `fit`: `attach` wraps the model and optimizer, `batches` draws the groups.

    Groups are drawn by Opacus's Poisson sampler (`DPDataLoader`): each group joins each step independently with
    probability q = 1 / steps per epoch, so batch sizes vary around the configured one. The accountant's
    privacy amplification by subsampling assumes exactly this; a shuffled fixed-size split (`shuffled_batches`)
    would spend more ε than the accountant says.
    """

    def __init__(self, arrays: Arrays, batch_size: int, epochs: int, options: DPOptions):
        from opacus import PrivacyEngine

        self.arrays = arrays
        self.n = len(arrays["region"])
        if self.n == 0:
            raise SeasonrecError("--dp-epsilon: no training groups")
        self.options = options
        self.delta = options.delta if options.delta is not None else 1 / self.n
        self.epochs = epochs
        with warnings.catch_warnings():
            # "Secure RNG turned off": the noise and the sampling come from torch's seeded generator, so a run
            # can be repeated; cryptographically secure noise (secure_mode, torchcsprng) is not offered here.
            warnings.filterwarnings("ignore", message="Secure RNG turned off", category=UserWarning)
            self.engine = PrivacyEngine()
        # Opacus samples from a DataLoader; the groups' indices are its dataset, and `batches` looks them up.
        self._loader = DataLoader(TensorDataset(torch.arange(self.n)), batch_size=batch_size)
        self.noise_multiplier: float | None = None
        self.sample_rate = 1 / len(self._loader)

    def attach(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer):
        """(model, optimizer) wrapped by Opacus, the noise calibrated to spend ε over the planned epochs."""
        warnings.filterwarnings("ignore", message=_NO_INPUT_GRADIENT, category=UserWarning)
        with _quiet_accountant():
            model, optimizer, self._dp_loader = self.engine.make_private_with_epsilon(
                # Opacus validates the model in training mode; `fit` sets the mode each epoch anyway.
                module=model.train(),
                optimizer=optimizer,
                data_loader=self._loader,
                target_epsilon=self.options.epsilon,
                target_delta=self.delta,
                epochs=self.epochs,
                max_grad_norm=self.options.max_grad_norm,
                poisson_sampling=True,
            )
        self.noise_multiplier = optimizer.noise_multiplier
        self.sample_rate = self._dp_loader.sample_rate
        return model, optimizer

    def batches(self, epoch: int) -> Iterator[Arrays]:
        """One epoch of Poisson-sampled groups (the epoch number is unused: the sampler draws afresh)."""
        for (index,) in self._dp_loader:
            index = index.numpy().astype(np.int64)
            yield {k: v[index] for k, v in self.arrays.items()}

    def spent(self) -> float:
        """ε spent so far, at δ, by the accountant's count of the optimizer's steps."""
        if not len(self.engine.accountant):
            return 0.0
        with _quiet_accountant():
            return float(self.engine.get_epsilon(self.delta))

    def record(self) -> dict:
        """What the checkpoint's training history and the model card say of the run's privacy."""
        return {
            "epsilon": self.options.epsilon,
            "delta": self.delta,
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": self.options.max_grad_norm,
            "sample_rate": self.sample_rate,
            "epsilon_spent": self.spent(),
            "accountant": self.engine.accountant.mechanism(),
            "groups": self.n,
            "unit": (
                "one purchase (a training group with its history and sampled negatives); a shopper with k purchases"
                " in the window is protected only at about k·ε"
            ),
        }
