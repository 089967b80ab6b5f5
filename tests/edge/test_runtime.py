"""Finding the runtime and comparing minimum runtime versions."""
import pytest

from edge.runtime import Runtime, RuntimeMissingError, find_runtime, parse_version, tf_equivalent


def test_parse_version_pads_and_ignores_suffixes():
    assert parse_version("2.14") == (2, 14, 0)
    assert parse_version("2.21.0rc1") == (2, 21, 0)
    assert parse_version("1.5.0") < parse_version("2.14.0") < parse_version("2.20.0")


def test_litert_maps_to_the_tensorflow_release_it_was_cut_from():
    assert tf_equivalent("ai-edge-litert", "2.3.0") == "2.20.0"
    assert tf_equivalent("ai-edge-litert", "1.4.0") == "2.18.0"
    assert tf_equivalent("tflite-runtime", "2.14.0") == "2.14.0"


def test_supports_compares_with_the_tf_equivalent():
    old = Runtime("tflite-runtime", "2.14.0", "2.14.0", object)
    assert old.supports("2.14.0") and old.supports("1.5.0") and old.supports(None)
    assert not old.supports("2.17.0")


def test_ai_edge_litert_is_preferred():
    assert find_runtime().package == "ai-edge-litert"


def test_missing_runtime_names_what_to_install(monkeypatch):
    monkeypatch.setenv("EDGEQ_RUNTIME", "tflite-runtime")
    try:
        import tflite_runtime  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeMissingError, match="pip install"):
            find_runtime()
    else:
        assert find_runtime().package == "tflite-runtime"
