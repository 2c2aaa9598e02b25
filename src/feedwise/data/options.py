"""How a workload's dataset is loaded: the options that are part of what defines a study."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from feedwise.data.sources import MIN_MNIST1D_SAMPLES, Dataset, check_fraction, check_seed
from feedwise.errors import FeedwiseError


@dataclass
class DataOptions:
    """How the workload's dataset is loaded (part of what defines a study).

    Checked when made (and again by :meth:`validate`): a bad value is one :class:`FeedwiseError`
    before any data is read or any folder written. ``data_dir`` is made absolute (``~`` expanded,
    symlinks resolved), so ``./d.npz`` and ``d.npz`` are the same study. A study puts
    :meth:`identity` (these options plus the fingerprint of the data's bytes) in its config."""

    data_dir: str | None = None
    label_noise: float = 0.0
    noise_seed: int = 0
    split_seed: int = 0
    max_train: int | None = None
    num_samples: int | None = None
    val_fraction: float | None = None    # validation split carved from the training rows (default: the workload's)
    test_fraction: float | None = None   # test split carved from a file without one (npz; default 0.2)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "DataOptions":
        if self.data_dir is not None:
            if not str(self.data_dir).strip():
                raise FeedwiseError("--data-dir is empty: give a folder (IDX, CIFAR-10) or a .npz file")
            self.data_dir = str(Path(str(self.data_dir)).expanduser().resolve())
        if not (0.0 <= self.label_noise < 1.0):   # NaN fails too
            raise FeedwiseError(f"label noise must be in [0, 1), got {self.label_noise}")
        check_seed(self.noise_seed, "--noise-seed")
        check_seed(self.split_seed, "--split-seed")
        if self.max_train is not None and self.max_train < 1:
            raise FeedwiseError(f"--max-train must be positive, got {self.max_train}")
        for option, v in (("--val-fraction", self.val_fraction), ("--test-fraction", self.test_fraction)):
            if v is not None:
                check_fraction(v, option)
        if self.num_samples is not None and self.num_samples < MIN_MNIST1D_SAMPLES:
            raise FeedwiseError(f"--num-samples must be at least {MIN_MNIST1D_SAMPLES}, got {self.num_samples}")
        return self

    def identity(self, data: Dataset) -> dict:
        """What defines the data of a study: these options, plus ``fingerprint`` (SHA-256 of the files
        read, see :func:`feedwise.data.sources.fingerprint_files`) when the data came from files.
        Generated data (mnist1d) has no fingerprint: its options define it, and older studies resume."""
        d = asdict(self)
        for k in ("val_fraction", "test_fraction"):   # absent when not given: older studies resume
            if d[k] is None:
                d.pop(k)
        if data.info.get("fingerprint"):
            d["fingerprint"] = data.info["fingerprint"]
        return d
