"""The upstream `.proto` files and the Python modules grpcio-tools generated from them.

Regenerate with `python -m dref.wire.generate_protos` (needs the `dev` extra); a test
fails when the committed modules differ from a fresh generation.
"""
