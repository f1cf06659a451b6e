"""Encodings: MsgPack and JSON codecs, lock tokens, change payloads, protobuf and gRPC."""
