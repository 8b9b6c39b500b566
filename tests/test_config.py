"""The typed run config: profiles load, mistakes are named with a suggestion, overrides work."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, RunConfig, load_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize("profile", ["tiny", "demo", "full"])
def test_profiles_load(profile: str) -> None:
    cfg = load_config(CONFIGS / f"{profile}.yaml")
    assert cfg.profile == profile
    assert len(cfg.hash()) == 64


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.y*ml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path: Path, tmp_path: Path) -> None:
    """Every YAML a user may copy (examples for own data, BSData too) passes the loader."""
    cfg = load_config(path, [f"runtime.output_root={tmp_path}"])
    assert cfg.profile != "custom"  # each file names its profile (it goes into every manifest)
    saved = tmp_path / "resolved.yaml"
    saved.write_text(cfg.to_yaml())
    assert load_config(saved).hash() == cfg.hash()


def test_shipped_configs_are_all_covered() -> None:
    names = {p.name for p in CONFIGS.glob("*.y*ml")}
    assert {"tiny.yaml", "demo.yaml", "full.yaml", "bsdata.yaml", "example-own-data.yaml"} <= names


def test_unknown_key_names_path_and_closest_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("gan:\n  iteratons: 5\n")
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    assert "gan.iteratons" in str(e.value)
    assert "did you mean 'gan.iterations'" in str(e.value)
    assert str(bad) in str(e.value)


def test_unknown_section_suggests_section() -> None:
    with pytest.raises(ConfigError, match="did you mean 'detect'"):
        load_config(None, ["detekt.epochs=3"])


def test_override_errors_name_the_override_not_the_file() -> None:
    tiny = CONFIGS / "tiny.yaml"
    with pytest.raises(ConfigError) as e:
        load_config(tiny, ["gan.iteratons=5"])
    msg = str(e.value)
    assert msg.startswith("override 'gan.iteratons=5': unknown key 'gan.iteratons'"), msg
    assert "did you mean 'gan.iterations'" in msg and str(tiny) not in msg
    with pytest.raises(ConfigError, match=r"^override 'detekt.epochs=3': unknown key 'detekt'"):
        load_config(tiny, ["detekt.epochs=3"])
    # A section-level check fails because of the override: the override is named.
    with pytest.raises(ConfigError, match=r"^override 'data.split.train=0.5': 'data.split'.*sum to 1"):
        load_config(tiny, ["data.split.train=0.5"])


def test_file_errors_still_name_the_file_when_overrides_are_given(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("gan:\n  iteratons: 5\n")
    with pytest.raises(ConfigError) as e:
        load_config(bad, ["gan.iterations=3", "detect.epoch=2"])
    msg = str(e.value)
    assert f"{bad}: unknown key 'gan.iteratons'" in msg
    assert "override 'detect.epoch=2': unknown key 'detect.epoch' (did you mean 'detect.epochs'?)" in msg


def test_wrong_type_is_named() -> None:
    with pytest.raises(ConfigError, match=r"'gan.iterations'.*integer"):
        load_config(None, ["gan.iterations=many"])


def test_negative_size_rejected() -> None:
    with pytest.raises(ConfigError, match="data.demo.image_size"):
        load_config(None, ["data.demo.image_size=-4"])


def test_translation_border_must_keep_the_generator_in_phase() -> None:
    assert load_config(None, []).gan.translate_border == 8
    with pytest.raises(ConfigError, match=r"'gan.translate_border'.*multiple of 4"):
        load_config(None, ["gan.translate_border=6"])


def test_overrides_use_config_names_and_yaml_values() -> None:
    cfg = load_config(CONFIGS / "tiny.yaml", ["gan.iterations=3", "detect.seeds=[1, 2]", "gan.compile=true"])
    assert cfg.gan.iterations == 3 and cfg.detect.seeds == [1, 2] and cfg.gan.compile is True


def test_malformed_override_and_missing_file() -> None:
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_config(None, ["gan.iterations"])
    with pytest.raises(ConfigError, match="not found"):
        load_config("no/such/config.yaml")


def test_bad_yaml_and_non_mapping(tmp_path: Path) -> None:
    p = tmp_path / "x.yaml"
    p.write_text("gan: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p)


def test_hash_changes_with_values_and_round_trips_yaml(tmp_path: Path) -> None:
    a = load_config(CONFIGS / "tiny.yaml")
    b = load_config(CONFIGS / "tiny.yaml", ["gan.iterations=13"])
    assert a.hash() != b.hash()
    assert a.section_hash("data") == b.section_hash("data")
    assert a.section_hash("gan") != b.section_hash("gan")
    saved = tmp_path / "resolved.yaml"
    saved.write_text(a.to_yaml())
    assert load_config(saved).hash() == a.hash()


def test_detect_keys_ignore_when_runs_train_but_not_what_they_train() -> None:
    """Side by side or one at a time, ahead of the GAN or not: the same runs, the same comparison."""
    a = load_config(CONFIGS / "demo.yaml")
    for override in ("detect.parallel_arms=1", "detect.baselines_ahead=false"):
        assert load_config(CONFIGS / "demo.yaml", [override]).detect.keyed() == a.detect.keyed(), override
    assert load_config(CONFIGS / "demo.yaml", ["detect.epochs=49"]).detect.keyed() != a.detect.keyed()


def test_split_fractions_must_sum_to_one() -> None:
    with pytest.raises(ConfigError, match="sum to 1"):
        load_config(None, ["data.split.train=0.5"])


def test_defaults_are_paper_cyclegan() -> None:
    g = RunConfig().gan
    assert (g.ngf, g.n_blocks, g.lambda_cycle, g.lambda_identity, g.pool_size, g.lr, g.beta1) == (
        64, 9, 10.0, 0.5, 50, 2e-4, 0.5,
    )


def test_an_output_root_inside_an_input_folder_is_refused(tmp_path: Path, monkeypatch) -> None:
    from pipeline.config import output_root_problem, validate_config

    photos, labels = tmp_path / "photos", tmp_path / "labels"
    photos.mkdir()
    labels.mkdir()
    (tmp_path / "link").symlink_to(photos, target_is_directory=True)

    def config(out: Path | str, **source) -> dict:
        src = {"images": str(photos), "format": "none", **source}
        return {"data": {"source": "folders", "a": [src], "b": [dict(src)]}, "runtime": {"output_root": str(out)}}

    for out in (photos, photos / "metalize", tmp_path / "link" / "out"):  # the folder, below it, via a link
        with pytest.raises(ConfigError, match=r"runtime.output_root .* is inside data.a\[0\].images .*: outputs "
                                               r"would be written into your inputs"):
            validate_config(config(out))
    with pytest.raises(ConfigError, match=r"inside data.a\[0\].annotations"):
        validate_config(config(labels / "out", annotations=str(labels), format="labelme"))
    monkeypatch.chdir(photos)  # relative paths resolve against the working directory, as ingest opens them
    with pytest.raises(ConfigError, match="inside"):
        validate_config(config("out"))
    ok = validate_config(config(tmp_path / "out"))  # beside the inputs: fine
    assert output_root_problem(ok) is None
    demo = validate_config({"runtime": {"output_root": str(tmp_path)}})  # demo sources live under the root
    assert output_root_problem(demo) is None


def test_min_image_side_is_a_positive_data_setting() -> None:
    assert load_config(None, ["data.min_image_side=16"]).data.min_image_side == 16
    with pytest.raises(ConfigError, match="data.min_image_side"):
        load_config(None, ["data.min_image_side=0"])


# ------------------------------------------------------------------- config files (issue 14)
@pytest.mark.parametrize("content, message", [
    (b"", r"config file is empty"),
    (b"  \n\t\n", r"config file is empty"),
    (b"# gan:\n#   iterations: 5\n", r"holds no settings \(only comments or blank lines\)"),
    (b"null\n", r"holds no settings"),
    (b"data:\n  name: caf\xe9\n", r"not UTF-8 text \(byte 0xe9 at offset 17\); save it as UTF-8"),
    ("data:\n  name: x\n".encode("utf-16"), r"not UTF-8 text"),
    (b"gan:\n  ngf: 8\ngan:\n  ndf: 8\n", r"not valid YAML: line 3, column 1: key 'gan' given twice"),
    (b"gan:\n\tngf: 8\n", r"not valid YAML: line 2, column 1: found character '\\t'"),
    (b"- a\n", r"top level must be a mapping, got list"),
])
def test_bad_config_files_are_errors_naming_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "my.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=rf"^{path}: {message}"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"is a folder, not a config file"):
        load_config(tmp_path)


def test_relative_paths_in_a_config_are_relative_to_its_folder(tmp_path: Path, monkeypatch) -> None:
    """Overrides stay relative to the working directory; every path comes out absolute."""
    folder = tmp_path / "project" / "configs"
    folder.mkdir(parents=True)
    (folder / "mine.yaml").write_text(
        "runtime:\n  output_root: ../outputs\n"
        "data:\n  source: folders\n  b:\n    - images: ../photos\n      annotations: ~/labels.json\n"
        "      format: yolo\n      names: [classes.txt]\n      split_file: split.json\n"
        "synth:\n  checkpoints: [../models/G.safetensors]\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(folder / "mine.yaml", ["detect.weights=w.pt"])
    src = cfg.data.b[0]
    assert cfg.runtime.output_root == tmp_path / "project" / "outputs"
    assert src.images == tmp_path / "project" / "photos" and src.split_file == folder / "split.json"
    assert src.annotations == Path.home() / "labels.json" and src.names == [str(folder / "classes.txt")]
    assert cfg.synth.checkpoints == [str(tmp_path / "project" / "models" / "G.safetensors")]
    assert cfg.detect.weights == elsewhere / "w.pt"  # an override: from the working directory
    assert load_config(None).runtime.output_root == elsewhere  # the default "." is the working directory


def test_bsdata_config_works_from_any_working_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config(CONFIGS / "bsdata.yaml")
    src = cfg.data.b[0]
    assert src.images == CONFIGS.parent.parent / "shared" / "data" / "bsdata" / "images"
    if (CONFIGS.parent.parent / "shared" / "data" / "bsdata").is_dir():  # beside the checkout
        assert src.images.is_dir() and src.annotations.is_dir() and src.split_file.is_file()


def test_translate_batch_is_auto_or_a_positive_int() -> None:
    assert load_config(None).gan.translate_batch == "auto"
    assert load_config(None, ["gan.translate_batch=4"]).gan.translate_batch == 4
    with pytest.raises(ConfigError, match="gan.translate_batch"):
        load_config(None, ["gan.translate_batch=0"])
