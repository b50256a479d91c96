"""Value semantics for the small configuration objects (schedules, methods).

Two schedules or methods with the same type and config are interchangeable:
they compare equal, print as their constructor call and rebuild from their
config, which is what Keras serialization and resumed runs rely on.
"""


class ConfigObject:
    """Base of objects fully described by `get_config()`."""

    def get_config(self):
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        # Configs can hold unhashable values (nested configs, lists); the
        # type name is a valid, if coarse, hash for equal objects.
        return hash(type(self).__name__)

    def __repr__(self):
        config = self.get_config()
        for key in config:
            # Show nested objects as themselves, not as serialized dicts.
            value = getattr(self, key, None)
            if isinstance(value, ConfigObject):
                config[key] = value
        args = ", ".join(f"{k}={v!r}" for k, v in config.items())
        return f"{type(self).__name__}({args})"
