"""Backups of a training run that survive the process being killed at any
moment.

`keras.callbacks.BackupAndRestore` overwrites one weights file in place, so
a run killed while it writes leaves a half-written file and nothing else
(the next start then fails inside h5py). Here every backup is a new pair of
files beside the previous ones:

- `epoch-NNNNNN.weights.h5`: the model's and the optimizer's variables after
  Keras epoch N, written under a temporary name and renamed when complete;
- `epoch-NNNNNN.json`: the epoch, the SHA-256 of the weights file and the
  run's settings, written (then renamed) last: a backup exists once its
  `.json` does.

Only after a new backup is complete are the older ones deleted, and the one
before it is kept too, so a backup damaged later (a bad disk, a copy cut
short) still leaves one to fall back to. A restart picks the newest backup
whose checksum matches.

Paths go through `tf.io.gfile`, so a backup directory may be on `gs://`.
"""

import dataclasses
import hashlib
import json
import os
import re

import keras
import tensorflow as tf

#: Complete backups kept: the newest and the one before it.
KEEP = 2
_WEIGHTS_SUFFIX = ".weights.h5"
_NAME = re.compile(r"epoch-(\d+)\.json")
# Chunks read when checksumming (a ResNet-50 backup is ~200 MB).
_CHUNK_BYTES = 1 << 22


@dataclasses.dataclass(frozen=True)
class Backup:
    """One complete backup.

    Attributes:
        epoch: the Keras epochs done when it was taken (training resumes at
            this epoch).
        weights_path: its `.weights.h5` file.
        hparams: the settings of the run that wrote it.
    """

    epoch: int
    weights_path: str
    hparams: dict


@dataclasses.dataclass(frozen=True)
class Damaged:
    """A backup that cannot be used: its epoch and why."""

    epoch: int
    reason: str


def _stem(backup_dir, epoch):
    return os.path.join(backup_dir, f"epoch-{epoch:06d}")


def _sha256(path):
    digest = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _save_weights(model, path):
    # A seam of its own: tests replace it to kill the process mid-write.
    model.save_weights(path)


def save_weights_atomically(model, path):
    """`model.save_weights(path)` such that `path` is either absent, its
    previous content, or complete: written under another name, then renamed.

    Args:
        model: the Keras model.
        path: a `.weights.h5` file.
    """
    partial = path[: -len(_WEIGHTS_SUFFIX)] + ".partial" + _WEIGHTS_SUFFIX
    _save_weights(model, partial)
    tf.io.gfile.rename(partial, path, overwrite=True)


def _write_text_atomically(path, text):
    partial = path + ".partial"
    with tf.io.gfile.GFile(partial, "w") as f:
        f.write(text)
    tf.io.gfile.rename(partial, path, overwrite=True)


def write(model, backup_dir, epoch, hparams):
    """Writes the backup of `epoch`, then deletes those no longer kept.

    Args:
        model: the model being trained (weights and optimizer state).
        backup_dir: the directory of the run's backups.
        epoch: the Keras epochs done.
        hparams: the run's settings (JSON-friendly), checked on restore.

    Returns:
        The new `Backup`.
    """
    tf.io.gfile.makedirs(backup_dir)
    stem = _stem(backup_dir, epoch)
    weights_path = stem + _WEIGHTS_SUFFIX
    save_weights_atomically(model, weights_path)
    record = {"epoch": epoch, "sha256": _sha256(weights_path), "hparams": hparams}
    _write_text_atomically(stem + ".json", json.dumps(record))
    _delete_all_but(backup_dir, keep={epoch, _previous_epoch(backup_dir, epoch)})
    return Backup(epoch, weights_path, hparams)


def _epochs(backup_dir):
    """The epochs with a `.json` record, newest first."""
    if not tf.io.gfile.isdir(backup_dir):
        return []
    found = (_NAME.fullmatch(name) for name in tf.io.gfile.listdir(backup_dir))
    return sorted((int(match.group(1)) for match in found if match), reverse=True)


def _previous_epoch(backup_dir, epoch):
    older = [e for e in _epochs(backup_dir) if e < epoch]
    return older[0] if older else None


def _delete_all_but(backup_dir, keep):
    """Deletes every backup (and partial file) whose epoch is not in `keep`:
    older ones, and newer ones left by a run that fell back past them."""
    for name in tf.io.gfile.listdir(backup_dir):
        match = re.match(r"epoch-(\d+)\.", name)
        if match and int(match.group(1)) not in keep:
            tf.io.gfile.remove(os.path.join(backup_dir, name))


def read(backup_dir, epoch):
    """The backup of `epoch` in `backup_dir`, checked.

    Returns:
        The `Backup`, or a `Damaged` saying why it cannot be used.
    """
    stem = _stem(backup_dir, epoch)
    try:
        with tf.io.gfile.GFile(stem + ".json") as f:
            record = json.loads(f.read())
        expected = record["sha256"]
        hparams = record["hparams"]
    except (tf.errors.OpError, ValueError, KeyError, TypeError) as error:
        return Damaged(epoch, f"unreadable record ({type(error).__name__})")
    weights_path = stem + _WEIGHTS_SUFFIX
    if not tf.io.gfile.exists(weights_path):
        return Damaged(epoch, f"{os.path.basename(weights_path)} is missing")
    if _sha256(weights_path) != expected:
        return Damaged(epoch, f"{os.path.basename(weights_path)} does not match its checksum")
    return Backup(epoch, weights_path, hparams)


def scan(backup_dir):
    """The newest usable backup in `backup_dir`, and the damaged newer ones.

    Returns:
        `(backup, damaged)`: the newest `Backup` whose files are complete
        and match their checksum (None if there is none), and the `Damaged`
        backups newer than it, newest first.
    """
    damaged = []
    for epoch in _epochs(backup_dir):
        found = read(backup_dir, epoch)
        if isinstance(found, Backup):
            return found, damaged
        damaged.append(found)
    return None, damaged


def latest_epoch(backup_dir):
    """The epoch of the newest usable backup in `backup_dir` (0: none)."""
    backup, _ = scan(backup_dir)
    return 0 if backup is None else backup.epoch


class BackupCallback(keras.callbacks.Callback):
    """Restores a run from a backup when training begins, and writes one at
    the end of every Keras epoch.

    Pass the restored epoch to `fit` as `initial_epoch`; this callback only
    loads the variables.

    Args:
        backup_dir: where this process writes its backups.
        hparams: the run's settings, recorded in each backup.
        restore: the `Backup` to restore (None: a fresh start).
    """

    def __init__(self, backup_dir, hparams, restore=None):
        super().__init__()
        self.backup_dir = backup_dir
        self.hparams = hparams
        self.restore = restore

    def on_train_begin(self, logs=None):
        if self.restore is None:
            return
        # As `keras.callbacks.BackupAndRestore`: the file holds the
        # optimizer's variables, which exist only once it is built.
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        try:
            self.model.load_weights(self.restore.weights_path)
        except (ValueError, KeyError, OSError) as error:
            # Intact, but not this model's (written by other code).
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise ValueError(
                f"{self.restore.weights_path} does not fit this run's model "
                f"({type(error).__name__}: {first_line}): delete {self.backup_dir} "
                "to train from step 0, or pass --overwrite"
            ) from None

    def on_epoch_end(self, epoch, logs=None):
        write(self.model, self.backup_dir, epoch + 1, self.hparams)
