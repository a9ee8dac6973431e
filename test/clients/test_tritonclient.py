"""Client conformance: NVIDIA's unmodified tritonclient.http against Pinion.

Run by `npm run test:clients` (test/clients/run.ts), which starts `npm start`'s
server (`wrangler dev` with the demo models on a fresh local R2) and runs this
file under Debian's /usr/bin/python3 with the client on PYTHONPATH. It uses the
client as its users do: defaults first (binary tensor data both ways), then
JSON, mixed, classification, FP16, BYTES, INT64, compression, async calls, the
model configuration and repository extensions, and the errors a user meets.
Numbers are compared with the fixtures PyTorch produced, not just statuses.

Environment: PINION_URL (host:port), PINION_FIXTURES (the fixtures folder).
"""

import asyncio
import json
import os
import time
import unittest

import numpy as np
import tritonclient.http as httpclient
import tritonclient.http.aio as aioclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

URL = os.environ["PINION_URL"]
FIXTURES = os.environ["PINION_FIXTURES"]


def fixture(path):
    with open(os.path.join(FIXTURES, path), encoding="utf-8") as f:
        return json.load(f)


SIMPLE = fixture("seed-simple/cases.json")
DIGITS_MLP = fixture("digits-mlp/testset.json")
DIGITS_CNN = fixture("digits-cnn/testset.json")
TEXT = fixture("text-small/testset.json")
with open(os.path.join(FIXTURES, "digits-labels.txt"), encoding="utf-8") as f:
    DIGIT_LABELS = f.read().split()

# Every demo model: its input, the fixture's rows (as the model's dtype) and
# what PyTorch answered. `exact` versions (fp32 on onnxruntime) must match
# PyTorch to float32 rounding; int8 versions within their quantisation error.
DEMO = {
    "simple": dict(
        input="input",
        output="output",
        x=np.array(SIMPLE["inputs"], dtype=np.float32),
        expected=np.array(SIMPLE["expected"], dtype=np.float32),
    ),
    "digits-mlp": dict(
        input="input",
        output="logits",
        x=np.array(DIGITS_MLP["inputs"], dtype=np.float32),
        expected=np.array(DIGITS_MLP["logits"], dtype=np.float32),
    ),
    "digits-cnn": dict(
        input="input",
        output="logits",
        x=np.array(DIGITS_CNN["inputs"], dtype=np.float32),
        expected=np.array(DIGITS_CNN["logits"], dtype=np.float32),
    ),
    "text-small": dict(
        input="input_ids",
        output="logits",
        x=np.array(TEXT["inputs"], dtype=np.int64),
        expected=np.array(TEXT["logits"], dtype=np.float32),
    ),
}


def make_input(name, array, binary_data=True, datatype=None):
    tensor = httpclient.InferInput(name, list(array.shape), datatype or np_to_triton_dtype(array.dtype))
    tensor.set_data_from_numpy(array, binary_data=binary_data)
    return tensor


class ClientCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = httpclient.InferenceServerClient(URL, network_timeout=120.0, connection_timeout=30.0)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()

    def assertRefused(self, status, pattern, call, *args, **kwargs):
        """The call raises the client's exception with this HTTP status and a readable message."""
        with self.assertRaises(InferenceServerException) as caught:
            call(*args, **kwargs)
        self.assertEqual(caught.exception.status(), str(status), caught.exception.message())
        self.assertRegex(caught.exception.message(), pattern)
        return caught.exception

    def assertMatchesPyTorch(self, model, version, got):
        """fp32 versions match PyTorch to float32 rounding; int8 ones within quantisation error."""
        expected = DEMO[model]["expected"][: got.shape[0]]
        self.assertEqual(got.shape, expected.shape)
        self.assertEqual(got.dtype, np.float32)
        worst = float(np.max(np.abs(got - expected)))
        if version == "int8":
            # Within 5 % of the outputs' range, and the same top class almost everywhere.
            self.assertLess(worst, 0.05 * float(np.ptp(expected)), model)
            if model != "simple":
                agreement = np.mean(np.argmax(got, 1) == np.argmax(expected, 1))
                self.assertGreaterEqual(agreement, 0.97, model)
        else:
            self.assertLess(worst, 1e-4, model)


class ServerTest(ClientCase):
    def test_health_and_metadata(self):
        self.assertTrue(self.client.is_server_live())
        self.assertTrue(self.client.is_server_ready())
        metadata = self.client.get_server_metadata()
        self.assertEqual(metadata["name"], "pinion")
        for extension in [
            "binary_tensor_data",
            "classification",
            "model_configuration",
            "model_repository",
            "parameters",
        ]:
            self.assertIn(extension, metadata["extensions"])

    def test_model_metadata_and_readiness(self):
        for model, spec in DEMO.items():
            self.assertTrue(self.client.is_model_ready(model), model)
            metadata = self.client.get_model_metadata(model)
            self.assertEqual(metadata["name"], model)
            self.assertEqual(metadata["inputs"][0]["name"], spec["input"])
            self.assertEqual(metadata["inputs"][0]["datatype"], np_to_triton_dtype(spec["x"].dtype))
            self.assertEqual(metadata["inputs"][0]["shape"], [-1, *spec["x"].shape[1:]])
            self.assertEqual(metadata["outputs"][0]["name"], spec["output"])


class DefaultInferTest(ClientCase):
    """The client's defaults: set_data_from_numpy sends binary data; no outputs named asks for binary outputs."""

    def test_every_demo_model_with_the_clients_defaults(self):
        for model, spec in DEMO.items():
            with self.subTest(model=model):
                result = self.client.infer(model, [make_input(spec["input"], spec["x"])])
                response = result.get_response()
                self.assertEqual(response["model_name"], model)
                # The outputs came back as binary data, as the client asked.
                self.assertIn("binary_data_size", response["outputs"][0]["parameters"])
                # What ran it, as the model configuration says (pinion_int8 or onnxruntime).
                config = self.client.get_model_config(model, model_version=response["model_version"])
                runtime = "int8" if config["backend"] == "pinion_int8" else "fp32"
                self.assertMatchesPyTorch(model, runtime, result.as_numpy(spec["output"]))

    def test_pinned_fp32_versions_answer_as_pytorch(self):
        for model in ["simple", "digits-mlp"]:
            spec = DEMO[model]
            result = self.client.infer(model, [make_input(spec["input"], spec["x"])], model_version="1")
            self.assertEqual(result.get_response()["model_version"], "1")
            self.assertMatchesPyTorch(model, "fp32", result.as_numpy(spec["output"]))


class WireFormatTest(ClientCase):
    def infer_simple(self, input_binary, output_binary, version="1"):
        spec = DEMO["simple"]
        output = httpclient.InferRequestedOutput("output", binary_data=output_binary)
        return self.client.infer(
            "simple",
            [make_input("input", spec["x"][:10], binary_data=input_binary)],
            model_version=version,
            outputs=[output],
        )

    def test_json_both_ways(self):
        result = self.infer_simple(False, False)
        self.assertIn("data", result.get_response()["outputs"][0])
        self.assertMatchesPyTorch("simple", "fp32", result.as_numpy("output"))

    def test_mixed_json_and_binary(self):
        binary_in = self.infer_simple(True, False)
        binary_out = self.infer_simple(False, True)
        self.assertIn("data", binary_in.get_response()["outputs"][0])
        self.assertIn("binary_data_size", binary_out.get_response()["outputs"][0]["parameters"])
        # Every combination carries the same float32 values.
        np.testing.assert_array_equal(binary_in.as_numpy("output"), binary_out.as_numpy("output"))
        np.testing.assert_array_equal(
            binary_in.as_numpy("output"), self.infer_simple(True, True).as_numpy("output")
        )

    def test_int8_binary_and_json_agree(self):
        np.testing.assert_array_equal(
            self.infer_simple(True, True, version="2").as_numpy("output"),
            self.client.infer(
                "simple", [make_input("input", DEMO["simple"]["x"][:10], binary_data=False)], model_version="2"
            ).as_numpy("output"),
        )

    def test_int64_token_ids_binary_and_json(self):
        spec = DEMO["text-small"]
        # Version 1 runs on onnxruntime (fp32), version 2 on the int8 text plan.
        for version, kind in [("1", "fp32"), ("2", "int8")]:
            for binary in [True, False]:
                with self.subTest(binary=binary, version=version):
                    result = self.client.infer(
                        "text-small",
                        [make_input("input_ids", spec["x"], binary_data=binary)],
                        model_version=version,
                        outputs=[httpclient.InferRequestedOutput("logits", binary_data=binary)],
                    )
                    self.assertMatchesPyTorch("text-small", kind, result.as_numpy("logits"))

    def test_fp16_in(self):
        spec = DEMO["simple"]
        half = spec["x"][:20].astype(np.float16)
        for binary in [True, False]:
            with self.subTest(binary=binary):
                result = self.client.infer(
                    "simple",
                    [make_input("input", half, binary_data=binary)],
                    model_version="1",
                    outputs=[httpclient.InferRequestedOutput("output", binary_data=binary)],
                )
                # The model saw exactly the FP16 values: compare with the same values sent as FP32.
                as_fp32 = self.client.infer(
                    "simple", [make_input("input", half.astype(np.float32))], model_version="1"
                )
                np.testing.assert_array_equal(result.as_numpy("output"), as_fp32.as_numpy("output"))
                # And FP16 input loses little against PyTorch's FP32 answer.
                self.assertLess(float(np.max(np.abs(result.as_numpy("output") - spec["expected"][:20]))), 0.01)

    def test_fp16_out(self):
        # Pinion's output parameter "datatype": "FP16" (the client has no public setter for
        # an output's parameters, so it is set on the object it serialises).
        spec = DEMO["simple"]
        for binary in [True, False]:
            with self.subTest(binary=binary):
                output = httpclient.InferRequestedOutput("output", binary_data=binary)
                output._parameters["datatype"] = "FP16"
                result = self.client.infer(
                    "simple", [make_input("input", spec["x"][:10])], model_version="1", outputs=[output]
                )
                self.assertEqual(result.get_output("output")["datatype"], "FP16")
                half = result.as_numpy("output")
                self.assertEqual(half.dtype, np.float16)
                full = self.infer_simple(True, True).as_numpy("output")
                np.testing.assert_array_equal(half, full.astype(np.float16))

    def test_bytes_input_is_read_and_refused_clearly(self):
        words = np.array([[b"seven", b"eight"]], dtype=np.object_)
        for binary in [True, False]:
            with self.subTest(binary=binary):
                self.assertRefused(
                    400,
                    r"input 'input' is BYTES; Pinion's models take numeric tensors",
                    self.client.infer,
                    "simple",
                    [make_input("input", words, binary_data=binary)],
                )


class ClassificationTest(ClientCase):
    def test_class_count_answers_top_k_with_labels(self):
        spec = DEMO["digits-cnn"]
        rows = spec["x"][:12]
        for binary in [True, False]:
            with self.subTest(binary=binary):
                # Version 1 (fp32) so the scores can be compared with PyTorch's to 3 places.
                result = self.client.infer(
                    "digits-cnn",
                    [make_input("input", rows)],
                    model_version="1",
                    outputs=[httpclient.InferRequestedOutput("logits", binary_data=binary, class_count=3)],
                )
                self.assertEqual(result.get_output("logits")["datatype"], "BYTES")
                top = result.as_numpy("logits")
                self.assertEqual(top.shape, (12, 3))
                expected = spec["expected"][:12]
                for row in range(12):
                    order = np.argsort(-expected[row])[:3]
                    for rank in range(3):
                        # Binary BYTES come back as bytes, JSON ones as str.
                        entry = top[row, rank]
                        text = entry.decode("utf-8") if isinstance(entry, bytes) else str(entry)
                        score, index, label = text.split(":")
                        self.assertEqual(int(index), order[rank])
                        self.assertEqual(label, DIGIT_LABELS[order[rank]])
                        self.assertAlmostEqual(float(score), float(expected[row, order[rank]]), places=3)

    def test_class_count_beyond_the_classes_is_refused(self):
        spec = DEMO["digits-cnn"]
        self.assertRefused(
            400,
            r"classification",
            self.client.infer,
            "digits-cnn",
            [make_input("input", spec["x"][:1])],
            outputs=[httpclient.InferRequestedOutput("logits", class_count=11)],
        )


class CompressionTest(ClientCase):
    def test_compressed_requests_and_responses(self):
        spec = DEMO["digits-mlp"]
        plain = self.client.infer("digits-mlp", [make_input("input", spec["x"])], model_version="1")
        for request in ["gzip", "deflate", None]:
            for response in ["gzip", "deflate", None]:
                with self.subTest(request=request, response=response):
                    result = self.client.infer(
                        "digits-mlp",
                        [make_input("input", spec["x"])],
                        model_version="1",
                        request_compression_algorithm=request,
                        response_compression_algorithm=response,
                    )
                    np.testing.assert_array_equal(result.as_numpy("logits"), plain.as_numpy("logits"))

    def test_errors_are_readable_whatever_the_client_accepts(self):
        spec = DEMO["digits-mlp"]
        for response in ["gzip", "deflate"]:
            with self.subTest(response=response):
                self.assertRefused(
                    400,
                    r"shape",
                    self.client.infer,
                    "digits-mlp",
                    [make_input("input", spec["x"][:, :32].copy())],
                    request_compression_algorithm="gzip",
                    response_compression_algorithm=response,
                )


class AsyncTest(ClientCase):
    def test_async_infer(self):
        spec = DEMO["digits-mlp"]
        pending = [
            self.client.async_infer("digits-mlp", [make_input("input", spec["x"][i : i + 30])], model_version="1")
            for i in range(0, 120, 30)
        ]
        got = np.concatenate([request.get_result(timeout=120).as_numpy("logits") for request in pending])
        self.assertMatchesPyTorch("digits-mlp", "fp32", got)

    def test_aio_client(self):
        async def run():
            async with aioclient.InferenceServerClient(URL) as client:
                self.assertTrue(await client.is_server_live())
                spec = DEMO["text-small"]
                calls = [
                    client.infer("text-small", [make_input("input_ids", spec["x"][i : i + 50])], model_version="1")
                    for i in range(0, 200, 50)
                ]
                results = await asyncio.gather(*calls)
                return np.concatenate([r.as_numpy("logits") for r in results])

        self.assertMatchesPyTorch("text-small", "fp32", asyncio.run(run()))


class ExtensionTest(ClientCase):
    def test_model_config(self):
        config = self.client.get_model_config("digits-cnn")
        self.assertEqual(config["name"], "digits-cnn")
        self.assertGreater(config["max_batch_size"], 0)
        self.assertEqual(config["input"], [{"name": "input", "data_type": "TYPE_FP32", "dims": [1, 8, 8]}])
        self.assertEqual(config["output"][0]["dims"], [10])
        self.assertEqual(config["output"][0]["label_filename"], "labels.txt")
        self.assertEqual(config["parameters"]["labels"]["string_value"].split("\n"), DIGIT_LABELS)
        text = self.client.get_model_config("text-small", model_version="1")
        self.assertEqual(text["input"], [{"name": "input_ids", "data_type": "TYPE_INT64", "dims": [8]}])
        int8 = self.client.get_model_config("simple", model_version="2")
        self.assertEqual(int8["backend"], "pinion_int8")

    def test_model_repository_index(self):
        index = self.client.get_model_repository_index()
        rows = {(row["name"], row["version"]): row for row in index}
        for model in DEMO:
            self.assertEqual(rows[(model, "1")]["state"], "READY", model)
        self.assertEqual(rows[("simple", "2")]["state"], "READY")

    def test_load_warms_and_unload_explains(self):
        self.client.load_model("digits-cnn")
        self.assertTrue(self.client.is_model_ready("digits-cnn"))
        self.assertRefused(409, r"immutable", self.client.unload_model, "digits-cnn")

    def test_statistics_count_the_requests_sent(self):
        before = self.client.get_inference_statistics("simple", model_version="2")
        count = lambda stats: stats["model_stats"][0]["inference_stats"]["success"]["count"]
        for _ in range(3):
            self.client.infer(
                "simple", [make_input("input", DEMO["simple"]["x"][:10], binary_data=False)], model_version="2"
            )
        # The edge writes its counters within METRICS_FLUSH_MS (test:clients runs with 100 ms) of a response.
        deadline = time.monotonic() + 5
        while count(self.client.get_inference_statistics("simple", model_version="2")) < count(before) + 3:
            self.assertLess(time.monotonic(), deadline, "statistics did not count the requests")
            time.sleep(0.1)
        after = self.client.get_inference_statistics("simple", model_version="2")
        self.assertEqual(count(after), count(before) + 3)
        self.assertEqual(after["model_stats"][0]["name"], "simple")
        self.assertEqual(after["model_stats"][0]["version"], "2")
        every = self.client.get_inference_statistics()
        self.assertNotIn("stats", [s["name"] for s in every["model_stats"]])


class ErrorTest(ClientCase):
    def test_unknown_model(self):
        self.assertRefused(
            404,
            r"model 'no-such-model' not found",
            self.client.infer,
            "no-such-model",
            [make_input("input", DEMO["simple"]["x"][:1])],
        )
        self.assertRefused(404, r"not found", self.client.get_model_metadata, "no-such-model")
        self.assertRefused(
            404, r"model 'simple' has no version 99", self.client.get_model_config, "simple", model_version="99"
        )

    def test_wrong_shape(self):
        self.assertRefused(
            400,
            r"input 'input' has shape \[1, 9\]; the model expects \[-1, 10\]",
            self.client.infer,
            "simple",
            [make_input("input", DEMO["simple"]["x"][:1, :9].copy())],
        )

    def test_wrong_datatype(self):
        self.assertRefused(
            400,
            r"input 'input' has datatype FP64; the model expects FP32",
            self.client.infer,
            "simple",
            [make_input("input", DEMO["simple"]["x"][:1].astype(np.float64))],
        )

    def test_wrong_input_name(self):
        self.assertRefused(
            400,
            r"'pixels'",
            self.client.infer,
            "simple",
            [make_input("pixels", DEMO["simple"]["x"][:1])],
        )

    def test_bad_framing(self):
        # The client frames what it is given: a binary_data_size that lies about the bytes
        # that follow is the framing error a broken client would send.
        x = DEMO["simple"]["x"][:2]
        lying = make_input("input", x)
        lying._parameters["binary_data_size"] = x.nbytes + 4
        self.assertRefused(400, r"binary", self.client.infer, "simple", [lying])
        short = make_input("input", x)
        short._raw_data = short._raw_data[:-4]
        self.assertRefused(400, r"binary", self.client.infer, "simple", [short])
        # The server keeps answering.
        self.assertTrue(self.client.is_model_ready("simple"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
