"""Every committed config.pbtxt parses with Triton's own protobuf and agrees with schema.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from seasonrec import schema as s

RANKER = Path(__file__).resolve().parents[3] / "model_repository" / s.RANKER_MODEL
CONFIGS = sorted([RANKER / "config.pbtxt", *RANKER.glob("configs/*.pbtxt")])
TYPES = model_config_pb2.DataType


def _parse(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_the_cpu_default_and_both_gpu_variants_are_committed():
    assert {p.name for p in CONFIGS} == {"config.pbtxt", "onnxruntime_trt.pbtxt", "tensorrt_plan.pbtxt"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_tensor_names_types_and_ranks_match_the_schema(path):
    config = _parse(path)
    assert config.name == s.RANKER_MODEL
    batch_axis = 0 if config.max_batch_size > 0 else 1  # without Triton batching the batch axis is in dims
    inputs = {t.name: t for t in config.input}
    assert list(inputs) == list(s.RANKER_INPUTS)
    for name, (dtype, shape) in s.RANKER_INPUTS.items():
        tensor = inputs[name]
        assert TYPES.Name(tensor.data_type) == dtype, name
        rank = len(tensor.reshape.shape) if tensor.HasField("reshape") else len(tensor.dims)
        assert rank == len(shape) + batch_axis, name
    assert [t.name for t in config.output] == [s.RANKER_OUTPUT]
    assert TYPES.Name(config.output[0].data_type) == "TYPE_FP32"
    assert config.HasField("version_policy") and config.instance_group


@pytest.mark.parametrize("name", ["onnxruntime_trt.pbtxt", "tensorrt_plan.pbtxt"])
def test_gpu_variants_batch_dynamically_on_a_gpu(name):
    config = _parse(RANKER / "configs" / name)
    assert config.HasField("dynamic_batching") and config.max_batch_size > 0
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU


def test_onnxruntime_variant_turns_on_the_tensorrt_accelerator():
    config = _parse(RANKER / "configs" / "onnxruntime_trt.pbtxt")
    assert config.platform == "onnxruntime_onnx"
    accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert [a.name for a in accelerators] == ["tensorrt"]
    assert accelerators[0].parameters["precision_mode"] == "FP16"


def test_the_embedded_default_is_the_python_backend_on_cpu():
    config = _parse(RANKER / "config.pbtxt")
    assert config.backend == "python"
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert (RANKER / "model.py").is_file()
