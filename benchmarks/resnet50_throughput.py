"""ResNet-50 training throughput on one GPU (Keras 3, JAX backend), dense and
90%-sparse (magnitude masks), and the cost of one mask update."""
import importlib.util, json, os, sys, time
os.environ.setdefault("KERAS_BACKEND", "jax")
spec = importlib.util.spec_from_file_location(
    "tf_sparsity_models", "models/__init__.py", submodule_search_locations=["models"])
module = importlib.util.module_from_spec(spec); sys.modules["tf_sparsity_models"] = module
spec.loader.exec_module(module)
import jax, keras, numpy as np
import tf_sparsity as tfs
from tf_sparsity_models.resnet50 import model as model_lib

TINY = os.environ.get("TINY") == "1"
OUT = os.environ.get("OUT", "/tmp")
START = time.time()
BUDGET = float(os.environ.get("BUDGET_S", "420"))
results = {"device": str(jax.devices()[0]), "backend": keras.backend.backend(),
           "keras": keras.__version__, "jax": jax.__version__, "runs": []}

def save():
    with open(os.path.join(OUT, "bench.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(json.dumps(results["runs"][-1] if results["runs"] else results), flush=True)

def bench(method, batch, policy, steps):
    keras.utils.clear_session()
    keras.mixed_precision.set_global_policy(policy)
    size, kwargs = (32, dict(blocks=(1, 1, 1, 1), base_width=8)) if TINY else (224, {})
    net = model_lib.resnet50(num_classes=1000, image_size=size, **kwargs)
    if method != "dense":
        schedule = tfs.ConstantSparsity(0.9, begin_step=0, frequency=1000)
        net = tfs.sparsify(net, tfs.MagnitudePruning(schedule))
    net.compile(keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
                keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
                jit_compile=True)
    rng = np.random.default_rng(0)
    x = jax.device_put(rng.normal(size=(batch, size, size, 3)).astype("float32"))
    y = jax.device_put(np.eye(1000, dtype="float32")[rng.integers(0, 1000, batch)])
    run = {"method": method, "batch": batch, "policy": policy}
    step = 0
    def one_step():
        nonlocal step
        if method != "dense":
            tfs.update_masks(net, step)
        loss = net.train_on_batch(x, y)
        step += 1
        return loss
    t = time.time(); one_step(); run["first_step_s"] = time.time() - t  # compile (+ mask update)
    for _ in range(3): one_step()
    t = time.time()
    for _ in range(steps): loss = one_step()
    elapsed = time.time() - t
    run.update(step_s=elapsed / steps, images_per_s=batch * steps / elapsed, loss=float(np.asarray(loss)))
    if method != "dense":
        t = time.time(); tfs.update_masks(net, 1000); jax.block_until_ready(net.weights[0].value)
        run["mask_update_s"] = time.time() - t
        run["sparsity"] = tfs.sparsity_summary(net, print_fn=None).global_sparsity
    results["runs"].append(run); save()

plan = [("dense", 256, "mixed_bfloat16"), ("magnitude", 256, "mixed_bfloat16"),
        ("dense", 256, "float32"), ("dense", 1024, "mixed_bfloat16"),
        ("magnitude", 1024, "mixed_bfloat16")]
for method, batch, policy in plan:
    if time.time() - START > BUDGET:
        results["skipped_for_time"] = results.get("skipped_for_time", []) + [[method, batch, policy]]
        continue
    try:
        bench(method, 8 if TINY else batch, policy, steps=3 if TINY else 20)
    except Exception as error:  # record and go on
        results["runs"].append({"method": method, "batch": batch, "policy": policy, "error": repr(error)[:500]}); save()
results["total_s"] = time.time() - START; save()
