"""The scorer's client: one async gRPC call to Triton per request, all candidates in it.

Failures become one of two errors the serving graph can act on:
`ScorerUnavailable` (Triton down, model not ready, timeout: fall back) and
`ScorerError` (Triton answered, but refused the request: a bug to surface).
"""

from __future__ import annotations

import numpy as np

from seasonrec import schema as s
from seasonrec.config import TritonConfig
from seasonrec.errors import SeasonrecError

# gRPC status codes that mean "no answer to be had right now", not "bad request".
UNAVAILABLE_CODES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "NOT_FOUND")
NOT_READY_HINTS = ("unknown model", "is not ready", "not found", "unavailable")


class ScorerError(SeasonrecError):
    """Triton answered but could not score the request."""


class ScorerUnavailable(ScorerError):
    """Triton is down, slow or has no ready model: the caller should fall back."""


def _wire_type(name: str) -> str:
    return s.RANKER_INPUTS[name][0].removeprefix("TYPE_")


class RankerClient:
    """Scores candidates with the ranker in Triton over async gRPC.

    Create it inside the event loop that uses it: gRPC's asyncio channel binds to that loop.
    """

    def __init__(self, cfg: TritonConfig, url: str | None = None):
        import tritonclient.grpc.aio as grpcclient

        self.url = url or f"{cfg.host}:{cfg.grpc_port}"
        self.model = cfg.model
        self.timeout_s = cfg.timeout_ms / 1000
        self._client = grpcclient.InferenceServerClient(self.url)

    async def score(self, batch: dict[str, np.ndarray], version: str = "") -> tuple[np.ndarray, str]:
        """(scores [B, C], the model version that answered) for B requests of C candidates each."""
        import tritonclient.grpc.aio as grpcclient
        from tritonclient.utils import InferenceServerException

        inputs = []
        for name in s.RANKER_INPUTS:
            value = np.ascontiguousarray(batch[name])
            tensor = grpcclient.InferInput(name, list(value.shape), _wire_type(name))
            tensor.set_data_from_numpy(value)
            inputs.append(tensor)
        try:
            result = await self._client.infer(
                self.model,
                inputs,
                model_version=version,
                outputs=[grpcclient.InferRequestedOutput(s.RANKER_OUTPUT)],
                client_timeout=self.timeout_s,
            )
        except InferenceServerException as exc:
            raise _classify(exc, self.url, self.model) from exc
        return result.as_numpy(s.RANKER_OUTPUT), result.get_response().model_version

    async def ready_versions(self) -> list[int]:
        """The versions of the model Triton has loaded and ready.

        From the model's metadata, not the repository index: the chart keys Triton's
        model-repository API (index, load, unload) to a Secret the Scorer does not hold.
        """
        try:
            metadata = await self._client.get_model_metadata(self.model, as_json=True, client_timeout=self.timeout_s)
        except Exception as exc:
            raise ScorerUnavailable(f"Triton at {self.url}: {type(exc).__name__}") from exc
        return sorted(int(v) for v in metadata.get("versions", []))

    async def ready(self) -> bool:
        try:
            return await self._client.is_model_ready(self.model, client_timeout=self.timeout_s)
        except Exception:
            return False

    async def close(self) -> None:
        await self._client.close()


def _classify(exc, url: str, model: str) -> ScorerError:
    status = str(exc.status() or "")
    message = (exc.message() or "").splitlines()[0] if exc.message() else status
    if any(code in status for code in UNAVAILABLE_CODES) or any(h in message.lower() for h in NOT_READY_HINTS):
        return ScorerUnavailable(f"Triton at {url}, model {model!r}: {message}")
    return ScorerError(f"Triton at {url}, model {model!r} refused the request: {message}")


def request_batch(user: dict[str, np.ndarray], items: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One request's tensors: a user's arrays (no batch axis) and its C candidates' arrays ([C, ...])."""
    batch = {k: np.asarray(v)[None] for k, v in user.items()}
    batch.update({k: np.asarray(v)[None] for k, v in items.items()})
    return batch
