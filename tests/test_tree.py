"""Direct tests of `tf_sparsity.tree`: walking a model's layer tree and
replacing a layer in every slot that holds it.

Replacements here are a plain Keras wrapper (`Doubled`) that doubles its
layer's output, so each test can say exactly what the rewritten model must
compute, independently of tf_sparsity's own wrapper.
"""

import collections

import keras
import numpy as np
import pytest
from keras import layers
from keras import ops

import tf_sparsity as tfs
from tests import models
from tf_sparsity import tree

pytestmark = pytest.mark.core


class Doubled(keras.layers.Wrapper):
    """Calls the wrapped layer and doubles its output."""

    def call(self, inputs, **kwargs):
        return self.layer(inputs) * 2.0


def doubled(layer):
    return Doubled(layer, name=f"{layer.name}_x2")


def replace_named(*names):
    """A `replace_fn` doubling the layers with these names."""
    return lambda layer, key_path, name_path: (
        doubled(layer) if layer.name in names else None
    )


def name_paths(model, **kwargs):
    return [tree.path_string(node.name_path) for node in tree.walk(model, **kwargs)]


def numpy(x):
    return ops.convert_to_numpy(x)


def assert_graph_uses(model, new, old):
    """Every view of `model`'s graph holds `new`, none holds `old`."""
    assert any(layer is new for layer in model.layers)
    assert not any(layer is old for layer in model.layers)
    assert any(op is new for op in model.operations)
    assert not any(op is old for op in model._operations)
    for operations in model._operations_by_depth.values():
        assert not any(op is old for op in operations)
    for nodes in model._nodes_by_depth.values():
        assert not any(node.operation is old for node in nodes)
    # Node keys are "<id(operation)>_ib-<index>": all name live operations.
    live = {str(id(op)) for op in model._operations}
    assert {key.split("_ib-")[0] for key in model._nodes} <= live
    assert f"{id(new)}_ib-0" in model._nodes
    assert new._inbound_nodes and all(n.operation is new for n in new._inbound_nodes)
    assert old._inbound_nodes == [] and old._outbound_nodes == []
    assert model.get_layer(new.name) is new


def assert_tracker_consistent(layer):
    """`layer._layers` and its tracker's ids describe the same objects."""
    tracker = layer._tracker
    for name, (_, store) in tracker.config.items():
        assert tracker.stored_ids[name] == {id(item) for item in store}, name


# --- helpers and walking ---------------------------------------------------


def test_path_string_joins_names_with_slashes():
    assert tree.path_string(("outer", "block", "up")) == "outer/block/up"
    assert tree.path_string(["up"]) == "up"
    assert tree.path_string(()) == ""


def test_is_graph_model_is_true_only_for_functional_and_sequential():
    assert tree.is_graph_model(models.sequential())
    assert tree.is_graph_model(models.functional_with_nested())

    class FunctionalSubclass(keras.Model):  # keras-hub backbones are these.
        def __init__(self):
            inputs = keras.Input((3,))
            super().__init__(inputs, layers.Dense(2)(inputs))

    assert tree.is_graph_model(FunctionalSubclass())
    assert not tree.is_graph_model(models.subclassed())
    assert not tree.is_graph_model(layers.Dense(2))
    assert not tree.is_graph_model(models.Block(4))


def test_children_of_a_graph_model_are_its_graph_layers_without_inputs():
    model = models.functional_with_nested()
    children = list(tree.children(model))
    graph = [(step, child) for step, child in children if step[0] == "layer"]
    assert [step for step, _ in graph] == [
        ("layer", "first"),
        ("layer", "inner_model"),
        ("layer", "head"),
    ]
    assert [child for _, child in graph] == [
        model.get_layer("first"),
        model.get_layer("inner_model"),
        model.get_layer("head"),
    ]
    assert not any(isinstance(child, layers.InputLayer) for _, child in children)


def test_walk_nested_functional_model_breadth_first_with_owners():
    model = models.functional_with_nested()
    nodes = list(tree.walk(model))
    inner = model.get_layer("inner_model")
    assert [node.key_path for node in nodes] == [
        (("layer", "first"),),
        (("layer", "inner_model"),),
        (("layer", "head"),),
        (("layer", "inner_model"), ("layer", "inner_dense")),
    ]
    assert [node.name_path for node in nodes] == [
        ("first",),
        ("inner_model",),
        ("head",),
        ("inner_model", "inner_dense"),
    ]
    assert [node.owner for node in nodes] == [model, model, model, inner]
    assert nodes[3].layer is inner.get_layer("inner_dense")
    # The root itself is not yielded; a leaf layer has nothing under it.
    assert all(node.layer is not model for node in nodes)
    assert list(tree.walk(model.get_layer("head"))) == []


def test_walk_subclassed_model_reaches_attributes_lists_and_attention_projections():
    model = models.subclassed()
    nodes = {tree.path_string(node.name_path): node for node in tree.walk(model)}
    expected = {
        "embed", "attention", "out", "block_0", "block_1",
        "block_0/up", "block_0/down", "block_0/norm",
        "block_1/up", "block_1/down", "block_1/norm",
        "attention/query", "attention/key", "attention/value",
        "attention/attention_output",
    }
    assert expected <= set(nodes)
    # Besides those only the attention's softmax and dropout.
    others = {path: type(nodes[path].layer) for path in set(nodes) - expected}
    assert sorted(cls.__name__ for cls in others.values()) == ["Dropout", "Softmax"]
    assert all(path.startswith("attention/") for path in others)
    # Every layer once.
    assert len({id(node.layer) for node in nodes.values()}) == len(nodes)
    attention = model.attention
    for path, attribute in [
        ("attention/query", "_query_dense"),
        ("attention/key", "_key_dense"),
        ("attention/value", "_value_dense"),
        ("attention/attention_output", "_output_dense"),
    ]:
        node = nodes[path]
        assert node.layer is getattr(attention, attribute)
        assert isinstance(node.layer, layers.EinsumDense)
        assert node.owner is attention
        assert node.key_path[:-1] == nodes["attention"].key_path
    assert nodes["block_1/up"].layer is model.blocks[1].up
    assert nodes["block_1/up"].owner is model.blocks[1]
    assert nodes["block_0"].key_path == (("item", "blocks", 0),)
    assert nodes["block_1"].key_path == (("item", "blocks", 1),)


class Holder(keras.Model):
    """Bias-free Dense layers in every kind of slot, called in a chain."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        dense = lambda name: layers.Dense(4, use_bias=False, name=name)
        self.single = dense("single")
        self.in_list = [dense("in_list")]
        self.in_tuple = (dense("in_tuple"),)
        self.in_dict = {"k": dense("in_dict")}

    def call(self, x):
        x = self.single(x)
        x = self.in_list[0](x)
        x = self.in_tuple[0](x)
        return self.in_dict["k"](x)


def holder():
    model = Holder()
    model(np.zeros((1, 4), "float32"))
    return model


def test_walk_key_paths_of_list_tuple_and_dict_slots():
    model = holder()
    keys = {node.layer.name: node.key_path for node in tree.walk(model)}
    assert keys["in_list"] == (("item", "in_list", 0),)
    assert keys["in_tuple"] == (("item", "in_tuple", 0),)
    assert keys["in_dict"] == (("item", "in_dict", "k"),)
    assert set(keys) == {"single", "in_list", "in_tuple", "in_dict"}


def test_walk_key_paths_reach_into_nested_containers():
    class Nested(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.groups = [[layers.Dense(2, name="deep")], ({"k": layers.Dense(2, name="deeper")},)]

    owner = Nested()
    keys = {node.layer.name: node.key_path for node in tree.walk(owner)}
    assert keys == {
        "deep": (("item", "groups", 0, 0),),
        "deeper": (("item", "groups", 1, 0, "k"),),
    }
    assert tree.layer_at(owner, keys["deeper"]) is owner.groups[1][0]["k"]


def test_walk_key_path_of_a_layer_held_only_by_the_tracker():
    class InSet(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.group = {layers.Dense(2, name="unordered")}

    owner = InSet()
    (node,) = list(tree.walk(owner))
    step = node.key_path[0]
    assert step[0] == "tracked"
    assert owner._layers[step[1]] is node.layer
    assert node.layer in owner.group


def test_layer_at_follows_any_slot_and_returns_none_for_a_missing_path():
    model = models.subclassed()
    assert tree.layer_at(model, ()) is model
    assert tree.layer_at(model, [["item", "blocks", 1], ["attr", "up"]]) is model.blocks[1].up
    assert tree.layer_at(model, (("attr", "attention"), ("attr", "_query_dense"))) is (
        model.attention._query_dense
    )
    assert tree.layer_at(model, (("attr", "nothing"),)) is None
    assert tree.layer_at(model, (("item", "blocks", 5),)) is None
    nested = models.functional_with_nested()
    assert tree.layer_at(nested, (("layer", "inner_model"), ("layer", "inner_dense"))) is (
        nested.get_layer("inner_model").get_layer("inner_dense")
    )

    # A layer held twice is reached through either slot, not only the first.
    class TwoSlots(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.dense = layers.Dense(2)
            self.listed = [self.dense]

    owner = TwoSlots()
    assert tree.layer_at(owner, (("attr", "dense"),)) is owner.dense
    assert tree.layer_at(owner, (("item", "listed", 0),)) is owner.dense


def test_attribute_key_paths_are_attr_steps_on_every_backend():
    model = models.subclassed()
    keys = {tree.path_string(node.name_path): node.key_path for node in tree.walk(model)}
    assert keys["embed"] == (("attr", "embed"),)
    assert keys["attention/query"] == (("attr", "attention"), ("attr", "_query_dense"))
    assert keys["block_0/up"] == (("item", "blocks", 0), ("attr", "up"))


def test_walk_of_sequential_yields_only_its_own_layers():
    model = models.sequential()
    assert name_paths(model) == ["hidden", "bn", "logits"]


def test_key_paths_are_the_same_for_a_model_rebuilt_from_its_config():
    for build in (models.functional_with_attention, models.subclassed):
        model = build()
        rebuilt = model.__class__.from_config(model.get_config())
        if not rebuilt.built:
            rebuilt(np.zeros((1, 5, 6), "float32"))
        original = [(n.key_path, n.name_path) for n in tree.walk(model)]
        again = [(n.key_path, n.name_path) for n in tree.walk(rebuilt)]
        # Auto-numbered names (softmax_1) may differ; key paths may not.
        assert [k for k, _ in original] == [k for k, _ in again]


def test_walk_is_each_layer_once_at_its_first_path():
    model = models.functional_with_nested()
    # The same layer used twice in a graph is one node.
    shared = layers.Dense(4, name="shared")
    inputs = keras.Input((4,))
    twice = keras.Model(inputs, shared(shared(inputs)))
    assert name_paths(twice) == ["shared"]

    class TwoHolders(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = layers.Dense(4, name="dense")
            self.again = [self.dense]

        def call(self, x):
            return self.again[0](self.dense(x))

    model = TwoHolders()
    model(np.zeros((1, 4), "float32"))
    nodes = list(tree.walk(model))
    assert [node.layer for node in nodes] == [model.dense]


def test_walk_stop_prunes_descent_but_yields_the_stopped_layer():
    model = models.subclassed()
    is_attention = lambda layer: isinstance(layer, layers.MultiHeadAttention)
    paths = name_paths(model, stop=is_attention)
    assert "attention" in paths
    assert not any(path.startswith("attention/") for path in paths)
    assert "block_0/up" in paths  # other layers are still descended into
    # `stop` never applies to the root.
    inner = name_paths(model.attention, stop=lambda layer: True)
    assert {"query", "key", "value", "attention_output"} <= set(inner)


# --- transform: graph models ----------------------------------------------


def test_transform_functional_model_rewires_the_graph(rng):
    model = models.functional_with_nested()
    x = rng.normal(size=(3, 8)).astype("float32")
    before = numpy(model(x))
    head = model.get_layer("head")
    calls = []

    def replace_fn(layer, key_path, name_path):
        calls.append(name_path)
        return doubled(layer) if layer is head else None

    replacements = tree.transform(model, replace_fn)
    new = replacements[id(head)]
    assert list(replacements) == [id(head)]
    assert isinstance(new, Doubled) and new.layer is head
    assert type(model).__name__ == "Functional"  # same model, same class
    assert_graph_uses(model, new, head)
    assert model.layers[-1] is new  # same position in the graph
    assert model.outputs[0]._keras_history.operation is new
    np.testing.assert_allclose(numpy(model(x)), 2 * before, rtol=1e-6)
    # replace_fn saw every layer once, not the replacement or its inner layer.
    assert sorted(calls) == sorted(
        [("first",), ("inner_model",), ("head",), ("inner_model", "inner_dense")]
    )
    # The model's config (built from node keys) wires the replacement.
    config = model.get_config()
    (entry,) = [c for c in config["layers"] if c["name"] == new.name]
    assert len(entry["inbound_nodes"]) == 1


def test_transform_reaches_a_layer_inside_a_nested_functional_model(rng):
    model = models.functional_with_nested()
    x = rng.normal(size=(3, 8)).astype("float32")
    first, head = model.get_layer("first"), model.get_layer("head")
    inner = model.get_layer("inner_model")
    inner_dense = inner.get_layer("inner_dense")
    expected = numpy(head(2.0 * inner_dense(first(x))))
    replacements = tree.transform(model, replace_named("inner_dense"))
    new = replacements[id(inner_dense)]
    assert_graph_uses(inner, new, inner_dense)
    assert model.get_layer("inner_model") is inner  # the nested model stays
    np.testing.assert_allclose(numpy(model(x)), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        numpy(inner(numpy(first(x)))), 2.0 * numpy(inner_dense(first(x))), rtol=1e-6
    )
    assert [tree.path_string(n.name_path) for n in tree.walk(model)][-2:] == [
        "inner_model/inner_dense_x2",
        "inner_model/inner_dense_x2/inner_dense",
    ]


def test_transform_layer_called_twice_in_a_graph_is_one_replacement(rng):
    shared = layers.Dense(4, activation="tanh", name="shared")
    inputs = keras.Input((4,))
    head = layers.Dense(2, name="head")
    model = keras.Model(inputs, head(shared(shared(inputs))), name="twice")
    x = rng.normal(size=(3, 4)).astype("float32")
    expected = numpy(head(2.0 * shared(2.0 * shared(x))))
    calls = []

    def replace_fn(layer, key_path, name_path):
        calls.append(layer.name)
        return doubled(layer) if layer is shared else None

    new = tree.transform(model, replace_fn)[id(shared)]
    assert calls.count("shared") == 1
    assert_graph_uses(model, new, shared)
    assert len(new._inbound_nodes) == 2
    assert {f"{id(new)}_ib-0", f"{id(new)}_ib-1"} <= model._nodes
    np.testing.assert_allclose(numpy(model(x)), expected, rtol=1e-5, atol=1e-6)
    (entry,) = [c for c in model.get_config()["layers"] if c["name"] == new.name]
    assert len(entry["inbound_nodes"]) == 2


def test_transform_sequential_model(rng):
    model = models.sequential()
    x = rng.normal(size=(3, 8)).astype("float32")
    before = numpy(model(x))
    logits = model.get_layer("logits")
    new = tree.transform(model, replace_named("logits"))[id(logits)]
    assert isinstance(model, keras.Sequential)
    assert model.layers[-1] is new
    assert [layer.name for layer in model.layers] == ["hidden", "bn", "logits_x2"]
    assert any(layer is new for layer in model._layers)
    assert_tracker_consistent(model)
    assert_graph_uses(model._functional, new, logits)
    np.testing.assert_allclose(numpy(model(x)), 2 * before, rtol=1e-6)
    # Its config (rebuilt from its own layer list) has the replacement.
    names = [c["config"]["name"] for c in model.get_config()["layers"]]
    assert names[-1] == "logits_x2"


def test_transform_sequential_updates_its_internal_functional_layer_list():
    model = models.sequential()
    logits = model.get_layer("logits")
    new = tree.transform(model, replace_named("logits"))[id(logits)]
    functional = model._functional
    assert any(layer is new for layer in functional._layers)
    assert not any(layer is logits for layer in functional._layers)
    assert_tracker_consistent(functional)


def test_transform_leaves_a_model_sharing_the_graph_consistent(rng):
    inputs = keras.Input((8,))
    base = keras.Model(inputs, layers.Dense(6, name="feat")(inputs), name="base")
    model = keras.Model(base.input, layers.Dense(2, name="head")(base.output))
    assert [layer.name for layer in model.layers] == ["input_layer", "feat", "head"]
    x = rng.normal(size=(3, 8)).astype("float32")
    feat = base.get_layer("feat")
    features = numpy(base(x))
    new = tree.transform(model, replace_named("feat"))[id(feat)]
    # The nodes are shared, so `base` now calls the replacement too: its
    # graph, its layer lists and its config all say so.
    listed = {id(op) for op in base._operations}
    for nodes in base._nodes_by_depth.values():
        assert all(id(node.operation) in listed for node in nodes)
    assert_graph_uses(base, new, feat)
    assert_tracker_consistent(base)
    np.testing.assert_allclose(numpy(base(x)), 2 * features, rtol=1e-6)
    with keras.saving.custom_object_scope({"Doubled": Doubled}):
        rebuilt = keras.Model.from_config(base.get_config())
    assert isinstance(rebuilt.get_layer("feat_x2"), Doubled)


def test_transform_updates_a_sequential_whose_graph_another_model_shares(rng):
    base = models.sequential()
    model = keras.Model(base.inputs, layers.Dense(2, name="head")(base.outputs[0]))
    logits = base.get_layer("logits")
    new = tree.transform(model, replace_named("logits"))[id(logits)]
    assert base.layers[-1] is new
    assert_tracker_consistent(base)
    assert_graph_uses(base._functional, new, logits)
    assert_tracker_consistent(base._functional)
    assert [c["config"]["name"] for c in base.get_config()["layers"]][-1] == "logits_x2"


def test_transform_of_an_unshared_graph_leaves_other_models_alone():
    first, second = models.sequential(), models.sequential()
    logits = second.get_layer("logits")
    tree.transform(first, replace_named("logits"))
    assert second.layers[-1] is logits
    assert second._functional.layers[-1] is logits


# --- transform: attributes, lists, dicts, trackers --------------------------


def test_transform_subclassed_slots_attribute_list_tuple_dict(rng):
    model = holder()
    x = rng.normal(size=(3, 4)).astype("float32")
    before = numpy(model(x))
    old = {layer.name: layer for layer in model._layers}
    weights_before = {id(w) for w in model.weights}
    replacements = tree.transform(
        model, replace_named("single", "in_list", "in_tuple", "in_dict")
    )
    assert len(replacements) == 4
    new = {name: replacements[id(layer)] for name, layer in old.items()}
    assert model.single is new["single"]
    assert model.in_list[0] is new["in_list"]
    assert model.in_tuple[0] is new["in_tuple"]
    assert model.in_dict["k"] is new["in_dict"]
    assert [layer.name for layer in model._layers] == [
        "single_x2", "in_list_x2", "in_tuple_x2", "in_dict_x2"
    ]
    assert_tracker_consistent(model)
    # Bias-free linear chain: four doublings.
    np.testing.assert_allclose(numpy(model(x)), 16 * before, rtol=1e-5)
    # The replacements hold the old layers: same variables, each once.
    assert {id(w) for w in model.weights} == weights_before
    assert len(model.weights) == len(weights_before)


def test_transform_attention_projections_inside_multi_head_attention(rng):
    inputs = keras.Input((5, 6))
    mha = layers.MultiHeadAttention(2, 4, name="mha")
    model = keras.Model(inputs, mha(inputs, inputs))
    x = rng.normal(size=(2, 5, 6)).astype("float32")
    before = numpy(model(x))
    projections = {
        "query": mha._query_dense,
        "key": mha._key_dense,
        "value": mha._value_dense,
        "attention_output": mha._output_dense,
    }
    replacements = tree.transform(
        model,
        lambda layer, key_path, name_path: doubled(layer)
        if isinstance(layer, layers.EinsumDense)
        else None,
    )
    assert set(replacements) == {id(layer) for layer in projections.values()}
    assert model.get_layer("mha") is mha  # the attention layer itself stays
    for attribute, name in [
        ("_query_dense", "query"),
        ("_key_dense", "key"),
        ("_value_dense", "value"),
        ("_output_dense", "attention_output"),
    ]:
        new = getattr(mha, attribute)
        assert isinstance(new, Doubled) and new.layer is projections[name]
        assert any(layer is new for layer in mha._layers)
        assert not any(layer is projections[name] for layer in mha._layers)
    assert_tracker_consistent(mha)
    paths = name_paths(model)
    assert "mha/query_x2" in paths and "mha/query_x2/query" in paths
    # Doubled q and k scale the logits by 4; doubled v and output by 4.
    q = numpy(projections["query"](x)) * 2
    k = numpy(projections["key"](x)) * 2
    v = numpy(projections["value"](x)) * 2
    scores = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(4.0)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    attended = np.einsum("bhqk,bkhd->bqhd", weights, v)
    expected = 2 * numpy(projections["attention_output"](attended))
    np.testing.assert_allclose(numpy(model(x)), expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(numpy(model(x)), before)


def test_transform_layer_shared_by_two_owners_is_replaced_in_both(rng):
    class Owner(keras.layers.Layer):
        def __init__(self, proj, **kwargs):
            super().__init__(**kwargs)
            self.proj = proj

        def call(self, x):
            return self.proj(x)

    class TwoOwners(keras.Model):
        def __init__(self):
            super().__init__()
            self.proj = layers.Dense(4, use_bias=False, name="proj")
            self.a = Owner(self.proj, name="a")
            self.b = Owner(self.proj, name="b")
            self.listed = [self.proj]

        def call(self, x):
            return self.b(self.a(x))

    model = TwoOwners()
    x = rng.normal(size=(3, 4)).astype("float32")
    before = numpy(model(x))
    seen = []

    def replace_fn(layer, key_path, name_path):
        seen.append(layer)
        return doubled(layer) if layer is model.proj else None

    proj = model.proj
    replacements = tree.transform(model, replace_fn)
    new = replacements[id(proj)]
    assert len(replacements) == 1 and sum(layer is proj for layer in seen) == 1
    assert model.proj is new and model.a.proj is new and model.b.proj is new
    assert model.listed[0] is new
    for owner in (model, model.a, model.b):
        assert any(layer is new for layer in owner._layers)
        assert not any(layer is proj for layer in owner._layers)
        assert_tracker_consistent(owner)
    np.testing.assert_allclose(numpy(model(x)), 4 * before, rtol=1e-5)
    assert len(model.weights) == 1


def test_transform_replaces_a_layer_in_a_nested_list(rng):
    class Stages(keras.Model):
        def __init__(self):
            super().__init__()
            self.stages = [[layers.Dense(4, use_bias=False, name="deep")]]

        def call(self, x):
            for stage in self.stages:
                for layer in stage:
                    x = layer(x)
            return x

    model = Stages()
    x = rng.normal(size=(3, 4)).astype("float32")
    before = numpy(model(x))
    deep = model.stages[0][0]
    new = tree.transform(model, replace_named("deep"))[id(deep)]
    assert any(layer is new for layer in model._layers)
    assert model.stages[0][0] is new
    np.testing.assert_allclose(numpy(model(x)), 2 * before, rtol=1e-6)


def test_transform_replaces_a_layer_in_a_namedtuple(rng):
    Pair = collections.namedtuple("Pair", ["first", "second"])

    class Paired(keras.Model):
        def __init__(self):
            super().__init__()
            self.pair = Pair(
                layers.Dense(4, use_bias=False, name="first"),
                layers.Dense(4, use_bias=False, name="second"),
            )

        def call(self, x):
            return self.pair.second(self.pair.first(x))

    model = Paired()
    x = rng.normal(size=(3, 4)).astype("float32")
    before = numpy(model(x))
    tree.transform(model, replace_named("first"))
    assert isinstance(model.pair.first, Doubled)
    np.testing.assert_allclose(numpy(model(x)), 2 * before, rtol=1e-6)


class Nested(keras.Model):
    """Bias-free Dense layers in nested containers, called in a chain."""

    Pair = collections.namedtuple("Pair", ["first", "second"])

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        dense = lambda name: layers.Dense(4, use_bias=False, name=name)
        self.stages = [[dense("a"), dense("b")], [dense("c")]]
        self.heads = ({"up": dense("d")}, [dense("e")])
        self.pairs = [self.Pair(dense("f"), dense("g"))]

    def call(self, x):
        for stage in self.stages:
            for layer in stage:
                x = layer(x)
        x = self.heads[1][0](self.heads[0]["up"](x))
        return self.pairs[0].second(self.pairs[0].first(x))


def test_transform_replaces_layers_in_nested_lists_tuples_dicts_and_namedtuples(rng):
    model = Nested()
    x = rng.normal(size=(3, 4)).astype("float32")
    before = numpy(model(x))
    heads = model.heads
    replacements = tree.transform(model, replace_named("a", "c", "d", "e", "g"))
    assert len(replacements) == 5
    assert [layer.name for layer in model.stages[0]] == ["a_x2", "b"]
    assert model.stages[1][0].name == "c_x2"
    assert model.heads[0]["up"].name == "d_x2" and model.heads[1][0].name == "e_x2"
    assert heads[0] is model.heads[0]  # changed in place where Python allows
    assert type(model.pairs[0]) is Nested.Pair
    assert (model.pairs[0].first.name, model.pairs[0].second.name) == ("f", "g_x2")
    assert_tracker_consistent(model)
    assert sorted(layer.name for layer in model._layers) == [
        "a_x2", "b", "c_x2", "d_x2", "e_x2", "f", "g_x2"
    ]
    np.testing.assert_allclose(numpy(model(x)), 32 * before, rtol=1e-5)
    keys = {node.layer.name: node.key_path for node in tree.walk(model)}
    assert keys["c_x2"] == (("item", "stages", 1, 0),)
    assert keys["d_x2"] == (("item", "heads", 0, "up"),)
    assert keys["g_x2"] == (("item", "pairs", 0, 1),)


def test_transform_replaces_a_layer_held_in_a_set(rng):
    class InSet(keras.Model):
        def __init__(self):
            super().__init__()
            self.group = {layers.Dense(4, use_bias=False, name="only")}

        def call(self, x):
            (layer,) = self.group
            return layer(x)

    model = InSet()
    x = rng.normal(size=(3, 4)).astype("float32")
    before = numpy(model(x))
    (old,) = model.group
    new = tree.transform(model, replace_named("only"))[id(old)]
    assert model.group == {new}
    assert_tracker_consistent(model)
    np.testing.assert_allclose(numpy(model(x)), 2 * before, rtol=1e-6)


@pytest.mark.tensorflow
def test_transform_keeps_tensorflows_attribute_records(tmp_path):
    """TensorFlow checkpoints and SavedModels see attributes through TF's own
    record of them, which must name the replacements too."""
    import tensorflow as tf

    model = holder()
    single, in_tuple = model.single, model.in_tuple[0]
    replacements = tree.transform(model, replace_named("single", "in_tuple"))
    children = model._trackable_children()
    assert children["single"] is replacements[id(single)] is model.single
    assert children["in_tuple"][0] is replacements[id(in_tuple)]
    assert model._self_unconditional_dependency_names["single"] is model.single
    # A checkpoint round trip reaches their weights through those records
    # (TF does not see into Keras's own lists and dicts, replaced or not).
    weights = model.single.weights + model.in_tuple[0].weights
    values = [numpy(w) for w in weights]
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    for weight in weights:
        weight.assign(np.zeros(weight.shape, "float32"))
    tf.train.Checkpoint(model=model).read(path)
    for weight, value in zip(weights, values):
        np.testing.assert_array_equal(numpy(weight), value)


# --- transform: arguments and bookkeeping -----------------------------------


def test_transform_without_replacements_changes_nothing_and_matches_walk():
    model = models.subclassed()
    layers_before = list(model._layers)
    calls = []

    def replace_fn(layer, key_path, name_path):
        calls.append((layer, key_path, name_path))
        return None

    assert tree.transform(model, replace_fn) == {}
    walked = [(n.layer, n.key_path, n.name_path) for n in tree.walk(model)]
    assert len(calls) == len(walked)
    for (a, ka, na), (b, kb, nb) in zip(calls, walked):
        assert a is b and ka == kb and na == nb
    assert all(a is b for a, b in zip(model._layers, layers_before))


def test_transform_stop_hides_the_inside_of_a_layer_from_replace_fn():
    model = models.subclassed()
    seen = []

    def replace_fn(layer, key_path, name_path):
        seen.append(tree.path_string(name_path))
        return None

    tree.transform(
        model, replace_fn, stop=lambda layer: isinstance(layer, layers.MultiHeadAttention)
    )
    assert "attention" in seen  # replace_fn still sees the stopped layer
    assert not any(path.startswith("attention/") for path in seen)
    assert "block_1/down" in seen


def test_transform_does_not_descend_into_a_replacement():
    model = models.functional_with_nested()
    inner = model.get_layer("inner_model")
    seen = []

    def replace_fn(layer, key_path, name_path):
        seen.append(layer)
        if layer is inner:
            return doubled(layer)
        return None

    tree.transform(model, replace_fn)
    # The nested model was replaced, so its own layer was never offered.
    assert not any(layer is inner.get_layer("inner_dense") for layer in seen)
    assert isinstance(model.get_layer("inner_model_x2"), Doubled)


def test_transform_forgets_traced_functions_and_cached_updaters(rng):
    model = models.sequential()
    x = rng.normal(size=(8, 8)).astype("float32")
    y = rng.normal(size=(8, 4)).astype("float32")
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, y, epochs=1, verbose=0)
    model.predict(x, verbose=0)
    assert model.train_function is not None and model.predict_function is not None
    object.__setattr__(model, tree.UPDATER_ATTRIBUTE, object())
    before = numpy(model(x))
    tree.transform(model, replace_named("logits"))
    assert model.train_function is None
    assert model.predict_function is None
    assert model.test_function is None
    assert tree.UPDATER_ATTRIBUTE not in vars(model)
    # Traced afresh: predict uses the replacement.
    np.testing.assert_allclose(model.predict(x, verbose=0), 2 * before, rtol=1e-5)


def test_transform_back_restores_the_original_layer(rng):
    model = models.functional_with_nested()
    x = rng.normal(size=(3, 8)).astype("float32")
    before = numpy(model(x))
    head = model.get_layer("head")
    new = tree.transform(model, replace_named("head"))[id(head)]
    restored = tree.transform(model, lambda layer, *_: layer.layer if layer is new else None)
    assert restored == {id(new): head}
    assert_graph_uses(model, head, new)
    np.testing.assert_allclose(numpy(model(x)), before, rtol=1e-6)


def test_sparsify_through_transform_wraps_every_slot_of_a_shared_layer(rng):
    shared = layers.Dense(6, activation="tanh", name="shared")
    inputs = keras.Input((6,))
    model = keras.Model(inputs, layers.Dense(2, name="head")(shared(shared(inputs))))
    x = rng.normal(size=(3, 6)).astype("float32")
    before = numpy(model(x))
    tfs.sparsify(model, tfs.MagnitudePruning(tfs.ConstantSparsity(0.5, frequency=1)))
    wrapper = model.get_layer("shared")
    assert isinstance(wrapper, tfs.SparseWrapper) and wrapper.layer is shared
    assert_graph_uses(model, wrapper, shared)
    assert len(wrapper._inbound_nodes) == 2
    np.testing.assert_allclose(numpy(model(x)), before, rtol=1e-5, atol=1e-6)


def test_sparsify_computes_with_the_masks_of_layers_in_nested_containers(rng):
    model = Nested()
    x = rng.normal(size=(3, 4)).astype("float32")
    dense = numpy(model(x))
    tfs.sparsify(model, tfs.MagnitudePruning(tfs.ConstantSparsity(0.75, frequency=1)))
    tfs.update_masks(model, 0)
    wrappers = {wrapper.layer.name: wrapper for _, wrapper in tfs.sparse_layers(model)}
    assert sorted(wrappers) == list("abcdefg")
    assert model.stages[1][0] is wrappers["c"] and model.pairs[0].second is wrappers["g"]
    # The model computes with every masked kernel, in call order.
    expected = x
    for name in "abcdefg":
        (kernel,) = wrappers[name].kernels
        folded = numpy(kernel.inference_value())
        assert (folded == 0).mean() == 0.75
        expected = expected @ folded
    np.testing.assert_allclose(numpy(model(x)), expected, rtol=1e-4, atol=1e-6)
    assert not np.allclose(numpy(model(x)), dense, atol=1e-3)
    assert tfs.sparsity_summary(model, print_fn=None).global_sparsity == pytest.approx(0.75)
    np.testing.assert_allclose(numpy(tfs.strip(model)(x)), expected, rtol=1e-4, atol=1e-6)


def test_sparsify_a_model_built_on_another_models_tensors_makes_both_sparse(rng, tmp_path):
    inputs = keras.Input((8,))
    base = keras.Model(inputs, layers.Dense(6, name="feat")(inputs), name="base")
    model = keras.Model(base.input, layers.Dense(2, name="head")(base.output))
    tfs.sparsify(model, tfs.MagnitudePruning(tfs.ConstantSparsity(0.5, frequency=1)))
    tfs.update_masks(model, 0)
    wrapper = model.get_layer("feat")
    assert base.get_layer("feat") is wrapper
    assert [path for path, _ in tfs.sparse_layers(base)] == ["feat"]
    x = rng.normal(size=(3, 8)).astype("float32")
    (kernel,) = wrapper.kernels
    expected = x @ numpy(kernel.inference_value()) + numpy(wrapper.layer.bias)
    np.testing.assert_allclose(numpy(base(x)), expected, rtol=1e-5, atol=1e-6)
    base.save(tmp_path / "base.keras")
    restored = keras.saving.load_model(tmp_path / "base.keras")
    np.testing.assert_allclose(numpy(restored(x)), expected, rtol=1e-5, atol=1e-6)
    # Stripping the outer model strips the shared graph for both.
    tfs.strip(model, in_place=True)
    assert base.get_layer("feat") is wrapper.layer
    base.get_config()

