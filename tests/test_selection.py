"""Direct tests of `tf_sparsity.selection` (`LayerInfo`, `matches`,
`match_all`, ...) and of the selectors where users meet them: `sparsify`'s
`layers=` and the distributions' `dense=` and `targets=`."""

import importlib

import keras
import pytest
from keras import layers

import tf_sparsity as tfs
from tests import models
from tf_sparsity import selection
from tf_sparsity.sparsify import layer_infos

pytestmark = pytest.mark.core


def info(*names, layer=None, shapes=(), ancestors=()):
    layer = layer if layer is not None else layers.Dense(2, name=names[-1])
    return selection.LayerInfo(
        layer=layer, name_path=tuple(names), shapes=list(shapes), ancestors=tuple(ancestors)
    )


def magnitude(sparsity=0.5):
    return tfs.MagnitudePruning(tfs.ConstantSparsity(sparsity, frequency=1))


def wrapped_paths(model):
    return sorted(path for path, _ in tfs.sparse_layers(model))


def targets(model):
    return {path: wrapper.target_sparsity for path, wrapper in tfs.sparse_layers(model)}


SUBCLASSED_PATHS = sorted(
    ["embed", "out"]
    + [f"block_{i}/{name}" for i in range(2) for name in ("up", "down")]
    + [f"attention/{p}" for p in ("query", "key", "value", "attention_output")]
)


# --- LayerInfo -------------------------------------------------------------


def test_layer_info_properties():
    dense = layers.Dense(3, name="up")
    item = info("outer", "block", "up", layer=dense, shapes=[(4, 3), (2, 5, 3)])
    assert item.name == "up"
    assert item.path == "outer/block/up"
    assert item.size == 4 * 3 + 2 * 5 * 3
    assert item.selected is True and item.ancestors == ()
    assert info("x").size == 0


def test_candidate_paths_are_every_stretch_ending_at_the_layer_or_a_block():
    item = info("a", "b", "c")
    assert item.candidate_paths() == ["a", "a/b", "b", "a/b/c", "b/c", "c"]
    assert info("c").candidate_paths() == ["c"]
    # No stretch skips a name or starts mid-name.
    assert "a/c" not in item.candidate_paths()


def test_layer_infos_of_a_model_carry_paths_shapes_and_ancestors():
    model = models.subclassed()
    infos = {i.path: i for i in layer_infos(model)}
    assert sorted(infos) == SUBCLASSED_PATHS
    query = infos["attention/query"]
    assert query.layer is model.attention._query_dense
    assert query.ancestors == (model.attention,)
    assert query.shapes == [tuple(model.attention._query_dense.kernel.shape)]
    assert infos["block_1/up"].ancestors == (model.blocks[1],)
    assert infos["embed"].ancestors == ()
    assert infos["embed"].size == 6 * 8


# --- matches ---------------------------------------------------------------


def test_exact_names_and_path_stretches_match():
    item = info("outer", "block_0", "up")
    for pattern in ["up", "block_0/up", "outer/block_0/up", "block_0", "outer", "outer/block_0"]:
        assert selection.matches(pattern, item), pattern


def test_partial_names_and_skipping_stretches_do_not_match():
    item = info("outer", "block_0", "up")
    for pattern in [
        "u", "bloc", "block_0/u", "lock_0/up", "outer/up", "up/", "/up", "down", "OUTER"
    ]:
        assert not selection.matches(pattern, item), pattern


def test_regexes_are_fullmatched_against_the_stretches():
    item = info("outer", "block_0", "up")
    for pattern, expected in [
        (r"block_\d/up", True),
        (r"block_\d", True),  # a block containing the layer
        (r".*up", True),
        (r"outer/.*", True),
        (r"(up|down)", True),
        (r"block", False),  # fullmatch, not search
        (r"lock_\d/up", False),
        (r"block_\d/down", False),
        (r"up.+", False),
    ]:
        assert selection.matches(pattern, item) is expected, pattern


def test_a_name_is_compared_before_it_is_compiled_as_a_regex():
    # "fc(1)" as a regex would need "fc1"; compared as a name it matches.
    assert selection.matches("fc(1)", info("model", "fc(1)"))
    assert selection.matches("fc(1)", info("model", "fc1"))  # and as a regex
    with pytest.raises(ValueError, match=r"Invalid layer regex 'fc\('"):
        selection.matches("fc(", info("model", "fc1"))


def test_classes_match_the_layer_or_any_ancestor():
    block = models.Block(4, name="block_0")
    dense = layers.Dense(2, name="up")
    item = info("block_0", "up", layer=dense, ancestors=(block,))
    assert selection.matches(layers.Dense, item)
    assert selection.matches(keras.layers.Layer, item)  # base classes too
    assert selection.matches(models.Block, item)
    assert not selection.matches(layers.EinsumDense, item)
    assert not selection.matches(layers.MultiHeadAttention, item)
    assert not selection.matches(int, item)


def test_a_selector_that_is_not_a_name_or_class_is_a_type_error():
    for bad in [3, None, 1.5, ["up"], ("up",)]:
        with pytest.raises(TypeError, match="Layer selection: layer selectors are names"):
            selection.matches(bad, info("up"))
        with pytest.raises(TypeError, match=r"^Uniform\(dense=\.\.\.\): "):
            selection.check_selector(bad, "Uniform(dense=...)")
    selection.check_selector("up", "x")  # names, classes and layer objects pass
    selection.check_selector(layers.Dense, "x")
    selection.check_selector(layers.Dense(2), "x")


def test_a_layer_object_selects_itself_and_the_layers_inside_it():
    infos = importlib.import_module("tf_sparsity.sparsify").layer_infos(models.subclassed())
    nested = next(info for info in infos if info.ancestors)
    assert selection.matches(nested.layer, nested)
    assert not any(selection.matches(nested.layer, other) for other in infos if other is not nested)
    block = nested.ancestors[-1]
    inside = [info for info in infos if selection.matches(block, info)]
    assert nested in inside and all(block in info.ancestors for info in inside)
    model = models.subclassed()
    chosen = importlib.import_module("tf_sparsity.sparsify").layer_infos(model)[0].layer
    tfs.sparsify(model, magnitude(), layers=[chosen])
    assert [wrapper.layer for _, wrapper in tfs.sparse_layers(model)] == [chosen]


# --- match_all, describe, as_list -------------------------------------------


def test_match_all_returns_the_union_in_pattern_order_without_duplicates():
    a = info("a", "up")
    b = info("b", "up")
    c = info("b", "down")
    infos = [a, b, c]
    assert selection.match_all([], infos, "owner") == []
    matched = selection.match_all(["b", "up", r".*down"], infos, "owner")
    assert [m.path for m in matched] == ["b/up", "b/down", "a/up"]
    assert all(any(m is i for i in infos) for m in matched)
    assert [m.path for m in selection.match_all([layers.Dense], infos, "o")] == [
        "a/up", "b/up", "b/down"
    ]


def test_match_all_names_the_pattern_that_matches_nothing_and_the_layers():
    infos = [info("a", "up"), info("b", "down")]
    with pytest.raises(
        ValueError,
        match=r"^PerLayer: layer name or regex 'nope' matches no sparsifiable "
        r"layer\. Sparsifiable layers: a/up, b/down\.$",
    ):
        selection.match_all(["up", "nope"], infos, "PerLayer")
    with pytest.raises(ValueError, match=r"layer type EinsumDense matches no"):
        selection.match_all([layers.EinsumDense], infos, "owner")
    with pytest.raises(ValueError, match=r"Sparsifiable layers: \(none\)\."):
        selection.match_all(["up"], [], "owner")
    with pytest.raises(TypeError, match="^owner: layer selectors"):
        selection.match_all([3], infos, "owner")


def test_describe_and_as_list():
    assert selection.describe(layers.Dense) == "layer type Dense"
    assert selection.describe("up") == "layer name or regex 'up'"
    assert selection.as_list(None) == []
    assert selection.as_list("up") == ["up"]
    assert selection.as_list(layers.Dense) == [layers.Dense]
    assert selection.as_list(("a", layers.Dense)) == ["a", layers.Dense]
    assert selection.as_list(name for name in ["a", "b"]) == ["a", "b"]
    assert selection.as_list([]) == []


# --- sparsify(layers=...) -----------------------------------------------------


def test_layers_selects_by_exact_name_path_and_block():
    model = models.subclassed()
    tfs.sparsify(model, magnitude(), layers=["embed", "attention/query", "block_1"])
    assert wrapped_paths(model) == [
        "attention/query", "block_1/down", "block_1/up", "embed"
    ]
    assert isinstance(model.blocks[1].up, tfs.SparseWrapper)
    assert not isinstance(model.blocks[0].up, tfs.SparseWrapper)


def test_layers_selects_by_regex_and_by_class():
    model = models.subclassed()
    tfs.sparsify(model, magnitude(), layers=r"block_\d/(up|down)")  # one string
    assert wrapped_paths(model) == [
        "block_0/down", "block_0/up", "block_1/down", "block_1/up"
    ]
    model = models.subclassed()
    tfs.sparsify(model, magnitude(), layers=[layers.MultiHeadAttention, "out"])
    assert wrapped_paths(model) == sorted(
        ["out"] + [f"attention/{p}" for p in ("query", "key", "value", "attention_output")]
    )
    model = models.subclassed()
    tfs.sparsify(model, magnitude(), layers=(models.Block,))
    assert wrapped_paths(model) == [
        "block_0/down", "block_0/up", "block_1/down", "block_1/up"
    ]


def test_layers_selects_by_a_stretch_of_a_nested_functional_path():
    inner_in = keras.Input((4,))
    inner_out = models.Block(4, name="block")(inner_in)
    inner = keras.Model(inner_in, inner_out, name="functional_17")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, layers.Dense(2, name="head")(inner(inputs)), name="outer")
    tfs.sparsify(model, magnitude(), layers=["block/up"])
    assert wrapped_paths(model) == ["functional_17/block/up"]
    model_paths = [i.path for i in layer_infos(model)]
    assert "functional_17/block/down" in model_paths


# keras-hub models build slowly on JAX; the matching is not backend code.
@pytest.mark.tensorflow
def test_layers_path_stretch_skips_a_keras_hub_backbone_name():
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=40, num_layers=2, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=8, name="gpt2_backbone_2",
    )
    model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    tfs.sparsify(model, magnitude(), layers=["transformer_layer_1/self_attention/query"])
    assert wrapped_paths(model) == [
        "gpt2_backbone_2/transformer_layer_1/self_attention/query"
    ]
    (path, wrapper), = tfs.sparse_layers(model)
    assert backbone.transformer_layers[1]._self_attention_layer._query_dense is wrapper


# keras-hub models build slowly on JAX; the matching is not backend code.
@pytest.mark.tensorflow
def test_layers_selects_every_layer_inside_a_keras_hub_block_class():
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=40, num_layers=2, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=8,
    )
    tfs.sparsify(backbone, magnitude(), layers=[keras_hub.layers.TransformerDecoder])
    paths = wrapped_paths(backbone)
    assert len(paths) == 2 * (4 + 2)
    assert "token_embedding" not in paths
    assert all(p.startswith(("transformer_layer_0/", "transformer_layer_1/")) for p in paths)


def test_layers_errors_name_the_selector():
    with pytest.raises(ValueError, match=r"`layers=\[\]` selects no layer"):
        tfs.sparsify(models.subclassed(), magnitude(), layers=[])
    with pytest.raises(
        ValueError,
        match=r"Selector 'nope' in `layers=` matches no layer of model "
        r"'subclassed(_\d+)?'\. Sparsifiable layers: embed, ",
    ):
        tfs.sparsify(models.subclassed(), magnitude(), layers=["embed", "nope"])
    with pytest.raises(ValueError, match=r"Selector <class .*Conv2D'> in `layers=`"):
        tfs.sparsify(models.subclassed(), magnitude(), layers=[layers.Conv2D])
    with pytest.raises(ValueError, match=r"'block_0/norm'.*LayerNormalization"):
        tfs.sparsify(models.subclassed(), magnitude(), layers=["block_0/norm"])
    with pytest.raises(ValueError, match=r"Invalid layer regex '\['"):
        tfs.sparsify(models.subclassed(), magnitude(), layers=["["])
    with pytest.raises(TypeError, match=r"sparsify\(layers=\.\.\.\): .*got 3"):
        tfs.sparsify(models.subclassed(), magnitude(), layers=["embed", 3])
    with pytest.raises(TypeError, match=r"`layers=` takes a name, regex, layer class or layer object"):
        tfs.sparsify(models.subclassed(), magnitude(), layers=3)
    # A failed selection leaves the model as it was.
    model = models.subclassed()
    with pytest.raises(ValueError):
        tfs.sparsify(model, magnitude(), layers=["embed", "nope"])
    assert tfs.sparse_layers(model) == []


# --- dense= and targets= ------------------------------------------------------


def test_dense_keeps_matched_layers_unwrapped():
    model = models.subclassed()
    tfs.sparsify(model, magnitude(), distribution=tfs.Uniform(dense=["block_0", "out"]))
    assert wrapped_paths(model) == [
        p for p in SUBCLASSED_PATHS if not p.startswith("block_0/") and p != "out"
    ]
    model = models.subclassed()
    tfs.sparsify(model, magnitude(), distribution=tfs.Uniform(dense=[layers.EinsumDense]))
    assert wrapped_paths(model) == [p for p in SUBCLASSED_PATHS if not p.startswith("attention/")]


def test_dense_combines_with_layers():
    model = models.subclassed()
    tfs.sparsify(
        model,
        magnitude(),
        distribution=tfs.Uniform(dense=[r".*/down"]),
        layers=["block_0"],
    )
    assert wrapped_paths(model) == ["block_0/up"]


def test_targets_give_matched_layers_their_own_sparsity():
    model = models.subclassed()
    tfs.sparsify(
        model,
        magnitude(0.5),
        distribution=tfs.Uniform(targets={r"attention/.*": 0.8, "out": 0.3}),
    )
    expected = {p: 0.5 for p in SUBCLASSED_PATHS}
    expected.update({p: 0.8 for p in SUBCLASSED_PATHS if p.startswith("attention/")})
    expected["out"] = 0.3
    assert targets(model) == pytest.approx(expected)


def test_distribution_selectors_matching_nothing_are_errors_naming_them():
    with pytest.raises(
        ValueError,
        match=r"Uniform\(dense=\.\.\.\): layer name or regex 'nope' matches no "
        r"sparsifiable layer\. Sparsifiable layers: embed, ",
    ):
        tfs.sparsify(models.subclassed(), magnitude(), distribution=tfs.Uniform(dense=["nope"]))
    with pytest.raises(ValueError, match=r"Uniform\(targets=\.\.\.\): .*'atention/.\*'"):
        tfs.sparsify(
            models.subclassed(),
            magnitude(),
            distribution=tfs.Uniform(targets={"atention/.*": 0.8}),
        )
    with pytest.raises(ValueError, match=r"ERK\(dense=\.\.\.\): layer type Conv2D"):
        tfs.sparsify(models.subclassed(), magnitude(), distribution=tfs.ERK(dense=[layers.Conv2D]))
    with pytest.raises(TypeError, match=r"Uniform: `dense` entries must be"):
        tfs.Uniform(dense=[3])


def test_per_layer_targets_use_the_same_matching():
    model = models.subclassed()
    tfs.sparsify(
        model,
        magnitude(0.5),
        distribution=tfs.PerLayer({"block_0": 0.0, "attention/query": 0.9}),
    )
    found = targets(model)
    assert not any(p.startswith("block_0/") for p in found)  # 0.0 keeps dense
    assert found["attention/query"] == pytest.approx(0.9)
    with pytest.raises(ValueError, match=r"PerLayer: layer name or regex 'nope'"):
        tfs.sparsify(
            models.subclassed(), magnitude(0.5), distribution=tfs.PerLayer({"nope": 0.5})
        )
