"""The resume identity covers every option that changes the weights: generated over every field of the four
argument dataclasses (each is classified; each weight option changes the identity and a resume lists it)."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from llava_structlora.rundir import ResumeMismatchError, RunDir, check_resume_identity
from llava_structlora.train.cli import parse_config
from llava_structlora.train.identity import NOT_WEIGHTS, run_identity, weight_options
from llava_structlora.utils.io import atomic_write_json


def _default():
    return parse_config(["--output_dir", "/tmp/unused", "--report_to", "none"], check_paths=False)


def _fields(cfg):
    return [(i, f.name) for i, obj in enumerate(cfg.args) for f in dataclasses.fields(obj) if f.init]


DEFAULT = _default()
WEIGHT_FIELDS = [(i, n) for i, n in _fields(DEFAULT) if n not in NOT_WEIGHTS[type(DEFAULT.args[i]).__name__]]


@pytest.fixture(scope="module")
def cfg():
    return DEFAULT


def _changed(cfg, index: int, name: str):
    """The four argument objects with one field set to a value no real option has (no validation runs)."""
    args = list(cfg.args)
    obj = copy.copy(args[index])
    object.__setattr__(obj, name, f"<changed {name}>")
    args[index] = obj
    return args


def test_every_field_is_classified_and_the_exclusions_are_real_fields(cfg):
    for obj in cfg.args:
        names = {f.name for f in dataclasses.fields(obj) if f.init}
        stale = NOT_WEIGHTS[type(obj).__name__] - names
        assert not stale, f"{type(obj).__name__}: NOT_WEIGHTS names no such field: {sorted(stale)}"
    ident = weight_options(*cfg.args)
    for i, name in _fields(cfg):
        excluded = name in NOT_WEIGHTS[type(cfg.args[i]).__name__]
        assert (name in ident) != excluded, name


@pytest.mark.parametrize("index, name", WEIGHT_FIELDS, ids=[n for _, n in WEIGHT_FIELDS])
def test_each_weight_option_changes_the_identity_and_is_listed(cfg, index, name, tmp_path):
    run = RunDir(tmp_path)
    atomic_write_json(run.identity_json, run_identity(*cfg.args))
    check_resume_identity(run, run_identity(*cfg.args))  # the same config resumes
    with pytest.raises(ResumeMismatchError) as e:
        check_resume_identity(run, run_identity(*_changed(cfg, index, name)))
    assert f"\n  {name}: " in str(e.value)


def test_options_that_do_not_change_the_weights_resume(cfg, tmp_path):
    run = RunDir(tmp_path)
    atomic_write_json(run.identity_json, run_identity(*cfg.args))
    for i, name in _fields(cfg):
        if name in NOT_WEIGHTS[type(cfg.args[i]).__name__]:
            check_resume_identity(run, run_identity(*_changed(cfg, i, name)))


def test_a_changed_learning_rate_is_refused_with_the_difference(cfg, tmp_path):
    run = RunDir(tmp_path)
    atomic_write_json(run.identity_json, run_identity(*cfg.args))
    other = parse_config(["--output_dir", "/tmp/unused", "--learning_rate", "1e-2"], check_paths=False)
    with pytest.raises(ResumeMismatchError, match=r"learning_rate: 0\.0002 -> 0\.01"):
        check_resume_identity(run, run_identity(*other.args))


def test_identity_recorded_before_version_2_is_compared_on_its_own_keys(cfg, tmp_path):
    run = RunDir(tmp_path)
    old = {k: v for k, v in run_identity(*cfg.args).items() if k in ("lora_r", "method", "open_threshold")}
    atomic_write_json(run.identity_json, old)  # v1 recorded open_threshold, which v2 leaves out
    check_resume_identity(run, run_identity(*cfg.args))
