"""The pure-Python flatbuffer reader: ops, versions, minimum runtime, broken files."""
import pytest

from edge import contract
from edge.runtime import parse_version
from edge.tflite_info import TFLiteFormatError, read_info, read_info_file


def test_reads_ops_and_minimum_runtime_of_every_variant(edge_bundles):
    for variant, bundle in edge_bundles.items():
        info = read_info_file(bundle / contract.MODEL_FILE)
        assert "CONV_2D" in dict(info.ops), variant
        assert parse_version(info.min_runtime_version) >= (1, 5, 0), variant


def test_quantized_models_declare_their_quantize_ops(edge_bundles):
    assert "QUANTIZE" in dict(read_info_file(edge_bundles["int8"] / contract.MODEL_FILE).ops)
    assert "DEQUANTIZE" in dict(read_info_file(edge_bundles["fp16"] / contract.MODEL_FILE).ops)


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.1])
def test_truncated_model_is_a_format_error(edge_bundles, cut):
    data = (edge_bundles["fp32"] / contract.MODEL_FILE).read_bytes()
    with pytest.raises(TFLiteFormatError):
        read_info(data[: int(len(data) * cut)])


def test_other_bytes_are_a_format_error():
    with pytest.raises(TFLiteFormatError, match="TFL3"):
        read_info(b"\x00" * 64)
    with pytest.raises(TFLiteFormatError):
        read_info(b"")
