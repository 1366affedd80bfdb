"""Runs mobilebench's exported files through the reference Python stacks.

Usage: check_exports.py INPUT.f32 EXPECTED.f32 TOLERANCE FILE...
INPUT is the raw little-endian float32 NHWC input, EXPECTED the native engine's logits on it.
For each .onnx: onnx.checker (full check) and onnxruntime (CPU, 1 thread); for each .tflite:
ai_edge_litert's Interpreter with XNNPACK and with the builtin kernels only. Prints one line
per run with the largest difference relative to the largest expected magnitude and the
cosine similarity with the expected logits; exits 1 if any difference exceeds TOLERANCE, or,
when TOLERANCE is written `cosine:C` (int8 files), if any cosine is below C.
"""
import sys

import numpy as np


def main():
    inp, exp, tol, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    min_cosine = float(tol.split(":")[1]) if tol.startswith("cosine:") else None
    tol = float("inf") if min_cosine is not None else float(tol)
    x_flat = np.fromfile(inp, dtype="<f4")
    expected = np.fromfile(exp, dtype="<f4")
    scale = float(np.abs(expected).max())
    worst = 0.0
    failed = False
    for path in files:
        if path.endswith(".onnx"):
            import onnx
            import onnxruntime as ort

            onnx.checker.check_model(onnx.load(path), full_check=True)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
            i = sess.get_inputs()[0]
            got = sess.run(None, {i.name: x_flat.reshape(i.shape)})[0]
            runs = [("onnx.checker+onnxruntime", got)]
        else:
            from ai_edge_litert.interpreter import Interpreter, OpResolverType

            runs = []
            for label, resolver in [
                ("ai_edge_litert xnnpack", OpResolverType.AUTO),
                ("ai_edge_litert builtin", OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES),
            ]:
                it = Interpreter(model_path=path, num_threads=1, experimental_op_resolver_type=resolver)
                it.allocate_tensors()
                d = it.get_input_details()[0]
                it.set_tensor(d["index"], x_flat.reshape(d["shape"]))
                it.invoke()
                runs.append((label, it.get_tensor(it.get_output_details()[0]["index"]).copy()))
        for label, got in runs:
            got = got.reshape(-1).astype(np.float64)
            rel = float(np.abs(got - expected).max()) / scale
            cos = float(got @ expected / (np.linalg.norm(got) * np.linalg.norm(expected)))
            worst = max(worst, rel)
            failed |= not (rel <= tol) or (min_cosine is not None and not cos >= min_cosine)
            print(f"{path}: {label}: max relative difference {rel:.2e} cosine {cos:.5f}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
