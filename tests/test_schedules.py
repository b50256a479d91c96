import inspect

import keras
import pytest

import tf_sparsity as tfs
from tf_sparsity.compat import tfmot

pytestmark = pytest.mark.core


def test_polynomial_decay_follows_zhu_gupta_formula():
    s = tfs.PolynomialDecay(0.1, 0.9, begin_step=100, end_step=500, frequency=50)
    for step in (0, 100, 150, 300, 499, 500, 10_000):
        p = min(max((step - 100) / 400, 0.0), 1.0)
        assert s.sparsity(step) == pytest.approx(0.9 + (0.1 - 0.9) * (1 - p) ** 3)
    assert s.sparsity(500) == 0.9
    assert s.final_sparsity == 0.9


def test_polynomial_decay_update_steps_include_begin_every_frequency_and_end():
    s = tfs.PolynomialDecay(0.0, 0.9, begin_step=10, end_step=45, frequency=10)
    updates = [t for t in range(100) if s.should_update(t)]
    assert updates == [10, 20, 30, 40, 45]


def test_due_update_catches_updates_skipped_by_steps_per_execution():
    s = tfs.PolynomialDecay(0.0, 0.9, begin_step=10, end_step=45, frequency=10)
    assert s.due_update(last_checked=8, step=12) == 10
    assert s.due_update(last_checked=12, step=16) is None
    assert s.due_update(last_checked=40, step=48) == 45
    assert s.due_update(last_checked=45, step=1000) is None


def test_constant_sparsity_and_one_shot():
    c = tfs.ConstantSparsity(0.5, begin_step=5, end_step=25, frequency=10)
    assert [t for t in range(40) if c.should_update(t)] == [5, 15, 25]
    assert c.sparsity(0) == 0.5
    forever = tfs.ConstantSparsity(0.5, frequency=100)
    assert forever.should_update(100_000)
    one = tfs.OneShot(0.7, step=3)
    assert [t for t in range(10) if one.should_update(t)] == [3]
    assert one.sparsity(2) == 0.0 and one.sparsity(3) == 0.7


@pytest.mark.parametrize(
    "schedule",
    [
        tfs.PolynomialDecay(0.2, 0.8, 1, 9, 2, exponent=2.0),
        tfs.ConstantSparsity(0.3, 4, 40, 4),
        tfs.OneShot(0.6, 7),
    ],
)
def test_schedules_round_trip_through_keras_serialization(schedule):
    config = keras.saving.serialize_keras_object(schedule)
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()
    assert restored == schedule


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: tfs.PolynomialDecay(0.0, 1.0, 0, 10, 1), "final_sparsity"),
        (lambda: tfs.PolynomialDecay(-0.1, 0.5, 0, 10, 1), "initial_sparsity"),
        (lambda: tfs.PolynomialDecay(0.0, 0.5, 10, 10, 1), "end_step"),
        (lambda: tfs.PolynomialDecay(0.0, 0.5, 10, 5, 1), "end_step"),
        (lambda: tfs.PolynomialDecay(0.0, 0.5, 0, 10, 0), "frequency"),
        (lambda: tfs.ConstantSparsity(1.5), "sparsity"),
        (lambda: tfs.ConstantSparsity(0.5, frequency=0), "frequency"),
        (lambda: tfs.ConstantSparsity(0.5, begin_step=10, end_step=3), "end_step"),
        (lambda: tfs.OneShot(1.0), "sparsity"),
    ],
)
def test_bad_schedule_arguments_raise_value_errors_naming_them(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_non_numeric_sparsity_is_a_type_error():
    with pytest.raises(TypeError, match="final_sparsity"):
        tfs.PolynomialDecay(0.0, "0.9", 0, 10, 1)


# One instance of every schedule class of the library (with non-default
# arguments): a new schedule class must be added here.
EVERY_SCHEDULE = [
    tfs.PolynomialDecay(0.1, 0.8, begin_step=3, end_step=40, frequency=4, exponent=2.0),
    tfs.ConstantSparsity(0.6, begin_step=2, end_step=30, frequency=7),
    tfs.ConstantSparsity(0.6, frequency=7),
    tfs.OneShot(0.4, step=9),
    tfs.Ramp(5, 25, shape="cubic", updates=6),
    tfmot.sparsity.keras.PolynomialDecay(0.1, 0.7, begin_step=2, end_step=33, power=2, frequency=5),
    tfmot.sparsity.keras.ConstantSparsity(0.4, begin_step=3, end_step=-1, frequency=6),
]


@pytest.mark.parametrize("schedule", EVERY_SCHEDULE, ids=repr)
def test_every_schedule_round_trips_its_config(schedule):
    rebuilt = type(schedule).from_config(schedule.get_config())
    assert rebuilt == schedule
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert restored == schedule
    assert [restored.last_update_step(t) for t in range(60)] == [schedule.last_update_step(t) for t in range(60)]


def test_every_schedule_class_is_in_the_round_trip_list():
    from tf_sparsity import schedules

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    library = {c for c in subclasses(schedules.StepSchedule) if c.__module__.startswith("tf_sparsity")}
    concrete = {c for c in library if "get_config" in vars(c) and not inspect.isabstract(c)}
    assert concrete <= {type(s) for s in EVERY_SCHEDULE}, concrete - {type(s) for s in EVERY_SCHEDULE}


@pytest.mark.parametrize("name", sorted(tfs.METHODS))
def test_every_methods_step_schedule_round_trips(name):
    method = tfs.make_method(name, 0.5, 100, num_examples=10, seed=0)
    schedule = method.step_schedule
    if schedule is not None:
        assert type(schedule).from_config(schedule.get_config()) == schedule


def test_end_step_is_the_last_update_in_every_schedule():
    for schedule in (
        tfs.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=10, frequency=3),
        tfs.ConstantSparsity(0.5, begin_step=0, end_step=10, frequency=3),
        tfs.Ramp(0, 10, updates=4),
        tfs.SET(0.5, update_frequency=5, end_step=10, seed=0).step_schedule,
    ):
        updates = [t for t in range(30) if schedule.should_update(t)]
        assert updates[-1] == 10, (schedule, updates)
    assert tfs.ConstantSparsity(0.5, end_step=-1) == tfs.ConstantSparsity(0.5, end_step=None)
