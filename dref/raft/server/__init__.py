"""The server side of a key/value node's client protocols: upstream `DRefRaft`, our
`DRefNative` (operations, watches, pipelines) and the operator RPCs."""
