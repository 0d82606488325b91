"""Caffe's protobuf schema (see caffe.proto): `caffe_pb2` is the program's one representation of
a net; `caffe_round_mode_pb2` differs only in PoolingParameter field 13 (BVLC master's
`round_mode` enum) and is used to read and write that dialect."""

from caffezoo.proto import caffe_pb2, caffe_round_mode_pb2

__all__ = ["caffe_pb2", "caffe_round_mode_pb2"]
