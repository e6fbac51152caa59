from tests.media import encode_h264
from vergence.media import h264


def test_nal_units_split_on_three_and_four_byte_start_codes():
    data = b"\x00\x00\x00\x01\x67\xaa\xbb\x00\x00\x01\x68\xcc\x00\x00\x00\x01\x65\xdd\xee"
    assert list(h264.iter_nal_units(data)) == [b"\x67\xaa\xbb", b"\x68\xcc", b"\x65\xdd\xee"]
    assert h264.nal_types(data) == [h264.NAL_SPS, h264.NAL_PPS, h264.NAL_IDR]


def test_codec_string_comes_from_the_sps():
    data = b"\x00\x00\x00\x01\x67\x42\xc0\x1f\x99\x00\x00\x00\x01\x68\xce"
    assert h264.codec_string(data) == "avc1.42C01F"
    assert h264.codec_string(b"\x00\x00\x01\x65\x88") is None


def test_keyframes_and_parameter_sets_of_real_encoder_output():
    units = encode_h264(frames=6, gop=5)
    assert h264.is_keyframe(units[0]) and not h264.is_keyframe(units[1]) and h264.is_keyframe(units[5])
    sets = h264.parameter_sets(units[0])
    assert h264.nal_types(sets) == [h264.NAL_SPS, h264.NAL_PPS]
    assert h264.parameter_sets(units[1]) == b""
    assert h264.codec_string(units[0]).startswith("avc1.")
