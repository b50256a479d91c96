"""Runs `.tflite` files with LiteRT's interpreter (shared by the tests)."""

import numpy as np


def run_tflite(path, x):
    """The outputs of the `.tflite` file at `path` for the rows of `x`,
    invoked one row at a time (batch 1, as the file was converted)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    outputs = []
    for row in x:
        interpreter.set_tensor(source["index"], row[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(target["index"])[0])
    return np.stack(outputs)
