"""ResNet training under MultiWorkerMirroredStrategy: two worker processes
on localhost train the tiny ResNet and end with the same masks."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]

# Each worker trains through `runner.run` (what `tf-sparsity train` calls)
# and saves its masks for the test to compare. Global-scope pruning: its
# mask update compiles in seconds, a per-layer one of 18 kernels in ~30 s.
WORKER_SCRIPT = """
import sys
import numpy as np
from keras import ops
from tf_sparsity_models.common import runner as train
from tf_sparsity_models.resnet50 import configs

config = configs.make_config("tiny", {
    "method": "magnitude", "sparsity": 0.75, "strategy": "multi_worker",
    "steps": 6, "checkpoint_every": 3, "eval_steps": 1,
    "method_args": {"scope": "global"},
})
result = train.run(config, sys.argv[1], verbose=0, print_fn=lambda *a: None)
masks = {v.path: ops.convert_to_numpy(v) for v in result.model.weights
         if v.path.endswith("_mask")}
np.savez(sys.argv[2], **masks)
print("steps", result.row["steps"], "replicas", result.row["num_replicas"],
      "chief", result.is_chief)
"""


def free_ports(count):
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("localhost", 0))
        sockets.append(sock)
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def test_two_workers_train_and_agree_on_masks(tmp_path):
    workers = [f"localhost:{port}" for port in free_ports(2)]
    model_dir = tmp_path / "run"
    processes = []
    for index in range(2):
        tf_config = {
            "cluster": {"worker": workers},
            "task": {"type": "worker", "index": index},
        }
        env = dict(
            os.environ,
            TF_CONFIG=json.dumps(tf_config),
            TF_CPP_MIN_LOG_LEVEL="3",
            KERAS_BACKEND="tensorflow",
        )
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", WORKER_SCRIPT, str(model_dir),
                 str(tmp_path / f"masks{index}.npz")],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=300)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-4000:]
    assert "steps 6 replicas 2 chief True" in outputs[0]
    assert "steps 6 replicas 2 chief False" in outputs[1]

    chief_masks = np.load(tmp_path / "masks0.npz")
    other_masks = np.load(tmp_path / "masks1.npz")
    assert sorted(chief_masks.files) == sorted(other_masks.files)
    assert len(chief_masks.files) == 18  # 17 convolutions and the classifier
    for name in chief_masks.files:
        np.testing.assert_array_equal(chief_masks[name], other_masks[name], err_msg=name)
    pruned = sum(int((chief_masks[n] == 0).sum()) for n in chief_masks.files)
    total = sum(chief_masks[n].size for n in chief_masks.files)
    assert pruned / total == pytest.approx(0.75, abs=0.01)

    # Only the chief writes the shared outputs (row, model, export); the
    # other worker keeps its logs apart.
    row = json.loads((model_dir / "result.json").read_text())
    assert row["num_replicas"] == 2 and row["steps"] == 6
    assert (model_dir / "export" / "1" / "saved_model.pb").is_file()
    assert (model_dir / "workers" / "worker_1" / "logs").is_dir()
    assert not (model_dir / "workers" / "worker_1" / "result.json").exists()
