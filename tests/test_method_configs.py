"""Every method folder has one shape (config.py, generator.py), configs round-trip through dicts and JSON files,
the public names say what the objects are, and the former names keep working."""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path

import pytest
from transformers import StoppingCriteria
from transformers.generation.candidate_generator import CandidateGenerator

import hf_specdecpp
from hf_specdecpp import methods
from hf_specdecpp.methods import MethodConfig, load_config, registry
from hf_specdecpp.testing import tiny_head

METHODS_DIR = Path(methods.__file__).parent
FOLDERS = sorted(p.name for p in METHODS_DIR.iterdir() if p.is_dir() and (p / "__init__.py").is_file())
HEAD = tiny_head()


def _build(name: str, **kwargs):
    extra = {"head": HEAD} if name == "specdec++" else {}
    return registry.build(name, **extra, **kwargs)


@pytest.mark.parametrize("folder", FOLDERS)
def test_every_method_folder_has_the_same_shape(folder):
    assert {"__init__.py", "config.py", "generator.py"} <= {p.name for p in (METHODS_DIR / folder).iterdir()}
    package = importlib.import_module(f"hf_specdecpp.methods.{folder}")
    config = importlib.import_module(f"hf_specdecpp.methods.{folder}.config")
    generator = importlib.import_module(f"hf_specdecpp.methods.{folder}.generator")
    configs = [v for v in vars(config).values() if isinstance(v, type) and issubclass(v, MethodConfig)
               and v is not MethodConfig]
    assert len(configs) == 1, configs
    (config_class,) = configs
    method_class = next(e.method_class for e in map(registry.get, registry.names()) if e.config_class is config_class)
    assert vars(generator)[method_class.__name__] is method_class
    assert getattr(package, config_class.__name__) is config_class
    assert getattr(package, method_class.__name__) is method_class
    assert method_class.__name__.endswith("Method") and config_class.__name__.endswith("Config")


@pytest.mark.parametrize("name", registry.names())
def test_registry_entries_use_their_config_class_and_description(name):
    entry = registry.get(name)
    assert entry.config_class is entry.method_class.config_class is registry.config_class(name)
    assert entry.config_class.method == name
    assert methods.available()[name] == entry.description and entry.description
    fields = dataclasses.fields(entry.config_class)
    assert all(f.metadata.get("help") for f in fields), entry.config_class  # help text on every field
    assert all(f"{f.name} (`" in entry.method_class.__doc__ for f in fields)  # and in the method's Args:
    assert all(f"{f.name} (`" in entry.config_class.__doc__ for f in fields)


@pytest.mark.parametrize("name", registry.names())
def test_configs_round_trip_through_dicts_and_files(name, tmp_path):
    method = _build(name)
    config = method.config
    data = config.to_dict()
    assert data["method"] == name and json.loads(json.dumps(data)) == data
    assert type(config).from_dict(data) == config
    path = method.save_pretrained(tmp_path)
    assert path == tmp_path / methods.CONFIG_NAME
    assert type(config).from_pretrained(tmp_path) == config == load_config(tmp_path) == load_config(path)
    again = type(method).from_pretrained(tmp_path, **({"head": HEAD} if name == "specdec++" else {}))
    assert type(again) is type(method) and again.config == config


def test_saving_never_replaces_another_config_silently(tmp_path):
    methods.FixedKConfig(3).save_pretrained(tmp_path)
    methods.FixedKConfig(3).save_pretrained(tmp_path)  # the same config: fine
    with pytest.raises(FileExistsError, match="overwrite=True"):
        methods.FixedKConfig(5).save_pretrained(tmp_path)
    assert methods.FixedKConfig.from_pretrained(tmp_path).num_candidates == 3
    methods.FixedKConfig(5).save_pretrained(tmp_path, overwrite=True)
    assert methods.FixedKConfig.from_pretrained(tmp_path).num_candidates == 5
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        methods.FixedKConfig(5).save_pretrained(tmp_path / "file")


def test_from_dict_refuses_other_methods_and_unknown_fields():
    with pytest.raises(ValueError, match="'entropy'"):
        methods.FixedKConfig.from_dict(methods.EntropyConfig().to_dict())
    with pytest.raises(ValueError, match="no field"):
        methods.FixedKConfig.from_dict({"num_candidates": 3, "budget": 4})
    with pytest.raises(TypeError, match="load_config"):
        MethodConfig.from_dict({"method": "fixed-k"})
    assert methods.FixedKConfig.from_dict({"num_candidates": 3}, num_candidates=6).num_candidates == 6


def test_literal_fields_are_checked():
    with pytest.raises(ValueError, match="estimator must be one of 'entropy', 'top1', 'svip'"):
        methods.EntropyConfig(estimator="adaedl")
    with pytest.raises(ValueError, match="recalibrate must be one of 'never', 'auto'"):
        methods.SpecDecPPConfig(recalibrate="always")
    with pytest.raises(dataclasses.FrozenInstanceError):
        methods.DySpecConfig().budget = 3


def test_constructors_take_fields_or_a_config():
    forms = [methods.FixedKMethod(3), methods.FixedKMethod(num_candidates=3),
             methods.FixedKMethod(methods.FixedKConfig(3)), methods.FixedKMethod(config=methods.FixedKConfig(3)),
             methods.FixedKMethod(config=methods.FixedKConfig(7), num_candidates=3)]
    assert {m.config for m in forms} == {methods.FixedKConfig(3)} and forms[0].num_candidates == 3
    spec = methods.SpecDecPPMethod(HEAD, 0.4, max_candidates=6)
    assert (spec.threshold, spec.min_candidates, spec.max_candidates, spec.head) == (0.4, 1, 6, HEAD)
    assert methods.DySpecMethod(4, head=HEAD).budget == 4
    with pytest.raises(TypeError, match="unexpected argument"):
        methods.FixedKMethod(num_candidate=3)
    with pytest.raises(TypeError, match="given twice"):
        methods.FixedKMethod(3, num_candidates=3)
    with pytest.raises(TypeError, match="positional"):
        methods.FixedKMethod(3, 4)
    with pytest.raises(TypeError, match="must be a FixedKConfig"):
        methods.FixedKMethod(config=methods.DySpecConfig())
    with pytest.raises(AttributeError, match="no attribute 'budget'"):
        methods.FixedKMethod(3).budget


def test_names_say_what_the_objects_are_and_the_former_names_still_work():
    for old, new in methods.ALIASES.items():
        assert getattr(methods, old) is getattr(methods, new) is getattr(hf_specdecpp, old) \
            is getattr(hf_specdecpp, new)
    for entry in map(registry.get, registry.names()):
        assert not issubclass(entry.method_class, CandidateGenerator)
    assert not issubclass(methods.RejectionThresholdRule, StoppingCriteria)
    old = hf_specdecpp.FixedLengthCandidateGenerator(num_candidates=2)  # the former names construct as before
    assert isinstance(old, methods.FixedKMethod) and registry.entry_for(old).name == "fixed-k"
    assert hf_specdecpp.SpecDecPPCandidateGenerator(head=HEAD, threshold=0.5).threshold == 0.5
    assert hf_specdecpp.EntropyStoppingCandidateGenerator(lam=0.3, estimator="svip").config.gamma == 0.15
    assert hf_specdecpp.GammaTuneCandidateGenerator(initial=2.0).config.initial == 2.0
    assert hf_specdecpp.DySpecCandidateGenerator(budget=4, head=HEAD).budget == 4
    assert hf_specdecpp.RejectionThresholdCriteria(HEAD, 0.5).threshold == 0.5


def test_the_methods_command_lists_descriptions_and_settings():
    from typer.testing import CliRunner

    from hf_specdecpp.cli import app

    listing = CliRunner().invoke(app, ["methods"])
    assert listing.exit_code == 0, listing.output
    for name, description in methods.available().items():
        assert name in listing.output and description[:40] in listing.output
    one = CliRunner().invoke(app, ["methods", "gammatune"])
    assert one.exit_code == 0 and "smoothing (`float`, *optional*, defaults to `0.5`)" in one.output
    assert CliRunner().invoke(app, ["methods", "nope"]).exit_code != 0
