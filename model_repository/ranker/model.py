"""Triton Python backend for the embedded CPU default: runs this version's model.onnx.

It only converts tensors: the graph, its tensor names and every score come
from the exported ONNX file. `seasonrec export` copies this file into each version.
"""

import json
import os

import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(parameters.get("intra_op_threads", "0"))
        # ONNX Runtime's threads spin while they wait for work. Beside Serve replicas on a few
        # cores that spinning cost the stub 4x its CPU a request (docs/benchmarks.md, bench serve).
        options.add_session_config_entry("session.intra_op.allow_spinning", parameters.get("allow_spinning", "0"))
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o["name"] for o in config["output"]]

    def execute(self, requests):
        responses = []
        for request in requests:
            feed = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.inputs}
            try:
                results = self.session.run(self.outputs, feed)
            except Exception as exc:  # a bad shape or type: this request fails, the model stays up
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc).splitlines()[0])))
                continue
            tensors = [pb_utils.Tensor(name, value) for name, value in zip(self.outputs, results)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
