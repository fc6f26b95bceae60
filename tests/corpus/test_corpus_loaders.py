"""Every malformed input of the corpus, read in-process by its loader: the declared ptycho error, nothing else.

The message must name the file and the key/field/problem (the case's ``words``), and the
loader must leave no file behind in the case directory.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from corpus_cases import CASES, Case

from ptycho_core.errors import PtychoInputError

NEEDS_DATA = {"npz", "hdf5", "evaluate"}


def _snapshot(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_size for p in sorted(directory.rglob("*")) if p.is_file()}


def _require(c: Case) -> None:
    if c.kind in NEEDS_DATA:
        pytest.importorskip("ptycho_data", reason=f"{c.kind} cases are read by ptycho-data (not installed here)")
    if c.kind == "evaluate":
        pytest.importorskip("ptycho.cli_workflow", reason="`ptycho evaluate` is a command of the ptycho application "
                                                          "(not installed here)")
    for module in c.requires:
        pytest.importorskip(module, reason=f"case {c.name} needs {module}")


def read_case(c: Case, files: dict[str, Path]) -> object:
    """Call the loader of ``c.kind`` on the written files (it is expected to raise)."""
    if c.kind == "npz":
        from ptycho_data.npz import load_dataset

        return load_dataset(files["data"])
    if c.kind == "hdf5":
        from ptycho_data.hdf5 import read_product

        return read_product(files["product"], files["patterns"])
    if c.kind == "config":
        from ptycho_core.serialize import load_config

        return load_config(files["config"])
    if c.kind == "bundle":
        from ptycho_core.bundle import load_bundle

        return load_bundle(files["bundle"])
    if c.kind == "evaluate":
        from ptycho.cli_workflow import _cmd_evaluate

        args = argparse.Namespace(reconstruction=files["reconstruction"], ground_truth=files["truth"],
                                  register=False, output=None)
        return _cmd_evaluate(args)
    raise AssertionError(f"no loader for kind {c.kind!r}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_loader_refuses_case(name: str, tmp_path: Path) -> None:
    c = CASES[name]
    _require(c)
    files = c.write(tmp_path)
    before = _snapshot(tmp_path)
    with pytest.raises(PtychoInputError) as info:
        read_case(c, files)
    err = info.value
    assert type(err) is c.error, f"{name}: expected {c.error.__name__}, got {type(err).__name__}: {err}"
    message = str(err)
    missing = [w for w in c.words if w not in message]
    assert not missing, f"{name}: message lacks {missing}: {message}"
    assert _snapshot(tmp_path) == before, f"{name}: the loader changed files in {tmp_path}"


def test_corpus_covers_every_kind_and_enough_cases() -> None:
    kinds = {c.kind for c in CASES.values()}
    assert kinds == {"npz", "hdf5", "config", "bundle", "evaluate"}
    assert len(CASES) >= 30
    for c in CASES.values():
        assert c.words, f"{c.name}: declares no message words"
        assert issubclass(c.error, PtychoInputError), f"{c.name}: {c.error} is not a bad-input error"


def test_zip_traversal_writes_nothing_outside(tmp_path: Path) -> None:
    from corpus_cases import write_case

    from ptycho_core.bundle import load_bundle
    from ptycho_core.errors import BundleError

    files = write_case("bundle_traversal", tmp_path / "case")
    with pytest.raises(BundleError):
        load_bundle(files["bundle"])
    assert not (tmp_path / "evil.txt").exists()
    assert not any(p.name == "evil.txt" for p in tmp_path.rglob("*"))


def test_generator_main_writes_whole_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from corpus_cases import main

    out = tmp_path / "corpus"
    assert main([str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == len(CASES)
    written = {p.name for p in out.iterdir()}
    runnable = {n for n, c in CASES.items() if not c.missing_requirements()}
    assert written == runnable
    assert (out / "npz_truncated" / "npz_truncated.npz").is_file()
    with pytest.raises(SystemExit):
        main([str(out)])  # refuses a non-empty output directory
